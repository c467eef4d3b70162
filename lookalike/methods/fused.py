"""`fused`: the calibrated probability that two photos show the same landmark.

The feature of a photo is its global vector ("global", from the `global_method`) plus its
`verified` local features; scoring is `lookalike.fusion.FusedScorer` (shortlist by global
similarity, verify the shortlist, expand the query by its verified matches, logistic model).
`score(a, b)` for a single pair has no gallery to shortlist or expand with, so it uses the
pair's own evidence only; `score_matrix` ranks each query against the whole gallery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from PIL import Image

from lookalike.loading import LoadOptions
from lookalike.methods import get_method, register
from lookalike.methods.base import LOCAL, Method
from lookalike.methods.verified import Verified

# Log-odds added when two photos' signboards read the same text: text ignores the background
# entirely, so a shared legible name is strong evidence. Not fitted (the dev photos carry no
# signs); identify uses the same value for a landmark's name read on a sign.
TEXT_LOG_ODDS = 3.0


def with_text_evidence(probability: float, text_a: str, text_b: str) -> float:
    """Raise the probability when both photos carry legible text that matches; else unchanged."""
    from lookalike.methods.text import TEXT_MATCH_THRESHOLD, text_similarity

    if not text_a or not text_b or text_similarity(text_a, text_b) < TEXT_MATCH_THRESHOLD:
        return probability
    p = min(max(probability, 1e-9), 1 - 1e-9)
    return float(1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) + TEXT_LOG_ODDS))))


@register
@dataclasses.dataclass
class Fused(Method):
    name: ClassVar[str] = "fused"
    description: ClassVar[str] = (
        "calibrated probability: global shortlist + verified + query expansion (lookalike calibrate)"
    )
    feature_kind: ClassVar[str] = LOCAL
    order: ClassVar[int] = 60
    batch_size: ClassVar[int] = 8
    model: str | None = None  # a model JSON from `lookalike calibrate`; None = the shipped one
    shortlist: int | None = None  # None = the model's
    global_method: str = "augnet"
    weights: str | None = None
    device: str = "auto"
    max_keypoints: int = 1500
    use_text: bool = False  # read signboards (OCR): the same legible text raises the probability

    def __post_init__(self):
        self._scorer = None
        self._store = None

    def parts(self) -> tuple[Method, Verified]:
        global_part = get_method(self.global_method, gray=self.gray, weights=self.weights,
                                 device=self.device, metric="cosine")
        return global_part, Verified(gray=self.gray, max_keypoints=self.max_keypoints)

    def load_options(self) -> LoadOptions:
        return self.parts()[1].load_options()

    def cache_settings(self):
        global_part, local_part = self.parts()
        return {"global": [global_part.name, global_part.cache_settings()],
                "local": local_part.cache_settings(), "text": self.use_text}

    def combine_features(self, paths: Sequence[str], cache=None, jobs: int = 1,
                         quiet: bool = False):
        """Features from the two parts' own extraction, so their cache entries are reused."""
        from lookalike.features import FeatureSet, extract_features

        global_part, local_part = self.parts()
        vectors = extract_features(global_part, paths, cache, jobs, quiet)
        local = extract_features(local_part, paths, cache, jobs, quiet)
        texts = (extract_features(get_method("text", gray=self.gray), paths, cache, jobs, quiet)
                 if self.use_text else None)
        errors = {**vectors.errors, **local.errors, **(texts.errors if texts else {})}
        kept = [path for path in paths if path not in errors]
        features = [self.combine(vectors.feature_of(path), local.feature_of(path),
                                 texts.feature_of(path) if texts else None)
                    for path in kept]
        keys = dict(zip(local.paths, local.content_keys))
        for path, feature in zip(kept, features):
            if path in keys:  # lets the scorer keep each verification in the cache
                feature["content_key"] = np.array(keys[path])
        self._store = cache  # scoring these features reads and writes verifications there
        return FeatureSet(self, kept, features, errors,
                          [keys[path] for path in kept] if keys else [])

    @staticmethod
    def combine(vector: np.ndarray, local: dict[str, np.ndarray],
                text: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        vector = np.asarray(vector, np.float32)
        combined = dict(local, descriptors=np.asarray(local["descriptors"], np.float32),
                        **{"global": vector / (np.linalg.norm(vector) + 1e-12)})
        if text is not None:
            from lookalike.methods.text import feature_text

            combined["text"] = np.array(feature_text(text))
        return combined

    def extract(self, image: Image.Image) -> dict[str, np.ndarray]:
        return self.extract_many([image])[0]

    def extract_many(self, images: Sequence[Image.Image]) -> list[dict[str, np.ndarray]]:
        global_part, local_part = self.parts()
        vectors = global_part.extract_many(images)
        reader = get_method("text", gray=self.gray) if self.use_text else None
        return [self.combine(vector, local_part.extract(image),
                             reader.extract(image) if reader else None)
                for image, vector in zip(images, vectors)]

    def decode(self, data: bytes) -> dict[str, np.ndarray]:
        from lookalike.methods.verified import as_float32

        return as_float32(super().decode(data))

    def scorer(self):
        from lookalike.fusion import FusedScorer, FusionModel

        if self._scorer is None:
            self._scorer = FusedScorer(FusionModel.load(self.model), self.parts()[1],
                                       shortlist=self.shortlist)
        self._scorer.store = self._store
        return self._scorer

    def score(self, a: dict, b: dict) -> float:
        """One pair on its own evidence (no gallery to shortlist or expand with)."""
        from lookalike.fusion import evidence_row

        scorer = self.scorer()
        similarity = float(np.dot(a["global"], b["global"]))
        row = evidence_row(similarity, similarity, scorer.verifier.verify_either_way(a, b))
        probability = float(scorer.model.probability(np.array([row]))[0])
        return with_text_evidence(probability, _text(a), _text(b))

    def score_matrix(self, queries, gallery) -> np.ndarray:
        scorer = self.scorer()
        vectors = np.stack([item["global"] for item in gallery])
        if not len(queries):
            return np.zeros((0, len(gallery)))
        matrix = np.stack([scorer.rank(query, gallery, vectors).probabilities
                           for query in queries])
        if self.use_text:
            for i, query in enumerate(queries):
                for j, item in enumerate(gallery):
                    matrix[i, j] = with_text_evidence(matrix[i, j], _text(query), _text(item))
        return matrix


def _text(feature: dict[str, np.ndarray]) -> str:
    return str(feature["text"]) if "text" in feature else ""
