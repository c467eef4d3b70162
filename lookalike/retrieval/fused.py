"""`fused`: the calibrated probability that two photos show the same landmark.

A photo's feature is an `Item` of the preset's two methods: its global descriptor (the
shortlist) and its local features (verification). `score_matrix` ranks each query against the
whole gallery through `lookalike.retrieval.pipeline.Pipeline`: shortlist, verify the shortlist, expand,
calibrate. Pairs outside a query's shortlist keep the probability their global similarity
alone gives, as retrieval systems do. `score(a, b)` for a single pair has no gallery to
shortlist or expand with, so it uses the pair's own evidence.

With `use_text`, photos whose signboards read the same legible text gain log-odds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from PIL import Image

from lookalike.features.contract import (
    LOCAL,
    FeatureSet,
    Method,
    decode_arrays,
    encode_arrays,
    shares_local,
)
from lookalike.features.registry import get_method, register
from lookalike.imaging.loading import DEFAULT_MAX_PIXELS, LoadOptions
from lookalike.ocr.evidence import feature_text
from lookalike.retrieval.calibration import CalibrationError
from lookalike.retrieval.pipeline import Item, Pipeline, ReferenceSet, check_features


def with_text_evidence(probability: float, text_a: str, text_b: str) -> float:
    """Add the fitted log-odds of two photos' signboards reading the same text
    (`lookalike.methods.text`: `text_pair_evidence`, `text_log_odds`); unchanged when either
    reads nothing legible or the texts differ."""
    from lookalike.ocr.evidence import text_log_odds, text_pair_evidence

    if not text_a or not text_b:
        return probability
    log_odds = text_log_odds(text_pair_evidence(text_a, text_b))
    if log_odds == 0.0:
        return probability
    p = min(max(probability, 1e-9), 1 - 1e-9)
    return float(1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) + log_odds))))


def pack_item(item: Item) -> dict[str, np.ndarray]:
    """An item as one flat dict of arrays: `g` or `g/<key>` global, `l/<key>` local."""
    arrays: dict[str, np.ndarray] = {}
    if isinstance(item.global_feature, dict):
        arrays.update({f"g/{key}": value for key, value in item.global_feature.items()})
    else:
        arrays["g"] = np.asarray(item.global_feature)
    arrays.update({f"l/{key}": value for key, value in item.local_feature.items()})
    if item.key is not None:
        arrays["key"] = np.array(item.key)
    if item.text:
        arrays["text"] = np.array(item.text)
    return arrays


def unpack_item(arrays: dict[str, np.ndarray]) -> Item:
    global_feature = arrays["g"] if "g" in arrays else \
        {key[2:]: value for key, value in arrays.items() if key.startswith("g/")}
    local = {key[2:]: value for key, value in arrays.items() if key.startswith("l/")}
    if "descriptors" in local:
        local["descriptors"] = np.asarray(local["descriptors"], np.float32)
    return Item(global_feature, local, str(arrays["key"]) if "key" in arrays else None,
                str(arrays["text"]) if "text" in arrays else "")


@register
@dataclasses.dataclass
class Fused(Method):
    name: ClassVar[str] = "fused"
    description: ClassVar[str] = (
        "calibrated probability: preset's global shortlist + local verification + expansion"
    )
    feature_kind: ClassVar[str] = LOCAL
    order: ClassVar[int] = 60
    batch_size: ClassVar[int] = 4
    composed: ClassVar[bool] = True  # items from the two parts' own (cached) extraction
    preset: str = "default"
    calibration: str | None = None  # a JSON from `lookalike calibrate`; None = the preset's
    shortlist: int | None = None  # None = the preset's
    weights: str | None = None  # fine-tuned AugNet weights, for a preset that uses AugNet
    device: str = "auto"
    use_text: bool = False  # read signboards (OCR): the same legible text raises the probability
    # how the parts describe a gallery photo and a query (None: the preset's; see
    # lookalike.methods.learned_local: "whole" or "tiles")
    views: str | None = None
    query_views: str | None = None
    search_views: str | None = None  # "whole": ASMK searches the whole views only

    def __post_init__(self):
        from lookalike.retrieval.presets import get_preset

        self._preset = get_preset(self.preset)  # fails early on an unknown name
        self._pipeline = None
        self._store = None

    def parts(self) -> tuple[Method, Method]:
        """The preset's (global method, local method) with this method's common settings."""
        cached = self.__dict__.get("_parts")
        if cached is None:
            common = {"gray": self.gray, "device": self.device, "weights": self.weights,
                      "views": self.views, "query_views": self.query_views,
                      "search_views": self.search_views}
            cached = self.__dict__["_parts"] = self._preset.methods(**common)
        return cached

    def load_options(self) -> LoadOptions:
        return self.parts()[1].load_options()

    def query_method(self) -> Method:
        """The same pipeline, its parts describing a query (e.g. the whole photo only)."""
        global_part, local_part = self.parts()
        if global_part.query_method() is global_part and local_part.query_method() is local_part:
            return self
        query = dataclasses.replace(self, views=self.query_views or "whole")
        query._store = self._store
        return query

    def cache_settings(self):
        global_part, local_part = self.parts()
        return {"global": [global_part.name, global_part.cache_settings()],
                "local": [local_part.name, local_part.cache_settings()], "text": self.use_text}

    # -- features --------------------------------------------------------------------------
    def combine_features(self, paths: Sequence[str], cache=None, jobs: int = 1,
                         quiet: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS):
        """Features from the two parts' own extraction, so their cache entries are reused
        (local first: a global method aggregated from it then reads it from the cache)."""
        from lookalike.features.extract import extract_features

        global_part, local_part = self.parts()
        local = extract_features(local_part, paths, cache, jobs, quiet, max_pixels)
        global_ = extract_features(global_part, local.paths, cache, jobs, quiet, max_pixels)
        texts = (extract_features(get_method("text", gray=self.gray), paths, cache, jobs, quiet,
                                  max_pixels) if self.use_text else None)
        errors = {**local.errors, **global_.errors, **(texts.errors if texts else {})}
        kept = [path for path in local.paths if path not in errors]
        keys = dict(zip(local.paths, local.content_keys))
        items = [Item(global_.feature_of(path), local.feature_of(path), keys.get(path),
                      feature_text(texts.feature_of(path)) if texts else "")
                 for path in kept]
        self._store = cache  # ranking these items reads and writes verifications there
        return FeatureSet(self, kept, items, errors, [keys[path] for path in kept])

    def extract(self, image: Image.Image) -> Item:
        return self.extract_many([image])[0]

    def extract_many(self, images: Sequence[Image.Image]) -> list[Item]:
        global_part, local_part = self.parts()
        reader = get_method("text", gray=self.gray) if self.use_text else None
        items = []
        for image in images:
            local = local_part.extract(image)
            global_feature = global_part.aggregate(local) \
                if shares_local(global_part, local_part) else global_part.extract(image)
            text = feature_text(reader.extract(image)) if reader else ""
            items.append(Item(global_feature, local, None, text))
        return items

    def encode(self, feature: Item) -> bytes:
        return encode_arrays(pack_item(feature))

    def decode(self, data: bytes) -> Item:
        return unpack_item(decode_arrays(data))

    # -- scoring ---------------------------------------------------------------------------
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            global_part, local_part = self.parts()
            if self.calibration:
                from lookalike.retrieval.calibration import Calibration

                calibration = Calibration.load(self.calibration)
            else:
                calibration = self._preset.calibration("pairs")
            try:
                check_features(calibration.features)
            except ValueError as error:
                raise CalibrationError(f"not a pair calibration: {error}") from None
            calibration.check_methods(**{"global": global_part, "local": local_part})
            self._pipeline = Pipeline(global_part, local_part, calibration,
                                      self.shortlist or self._preset.shortlist,
                                      self._preset.expansion)
        self._pipeline.store = self._store
        return self._pipeline

    def score(self, a: Item, b: Item) -> float:
        """One pair on its own evidence (no gallery to shortlist or expand with)."""
        probability, _ = self.pipeline().pair_probability(a, b)
        return with_text_evidence(probability, a.text, b.text) if self.use_text else probability

    def score_matrix(self, queries, gallery) -> np.ndarray:
        if not len(queries):
            return np.zeros((0, len(gallery)))
        pipeline = self.pipeline()
        view = ReferenceSet(gallery, pipeline.global_method)
        matrix = np.stack([pipeline.rank(query, view).probabilities for query in queries])
        if self.use_text:
            for i, query in enumerate(queries):
                for j, item in enumerate(gallery):
                    matrix[i, j] = with_text_evidence(matrix[i, j], query.text, item.text)
        return matrix
