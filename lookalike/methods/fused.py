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

    def __post_init__(self):
        self._scorer = None

    def parts(self) -> tuple[Method, Verified]:
        global_part = get_method(self.global_method, gray=self.gray, weights=self.weights,
                                 device=self.device, metric="cosine")
        return global_part, Verified(gray=self.gray, max_keypoints=self.max_keypoints)

    def load_options(self) -> LoadOptions:
        return self.parts()[1].load_options()

    def cache_settings(self):
        global_part, local_part = self.parts()
        return {"global": [global_part.name, global_part.cache_settings()],
                "local": local_part.cache_settings()}

    def combine_features(self, paths: Sequence[str], cache=None, jobs: int = 1,
                         quiet: bool = False):
        """Features from the two parts' own extraction, so their cache entries are reused."""
        from lookalike.features import FeatureSet, extract_features

        global_part, local_part = self.parts()
        vectors = extract_features(global_part, paths, cache, jobs, quiet)
        local = extract_features(local_part, paths, cache, jobs, quiet)
        errors = {**vectors.errors, **local.errors}
        kept = [path for path in paths if path not in errors]
        features = [self.combine(vectors.feature_of(path), local.feature_of(path))
                    for path in kept]
        keys = dict(zip(local.paths, local.content_keys))
        return FeatureSet(self, kept, features, errors,
                          [keys[path] for path in kept] if keys else [])

    @staticmethod
    def combine(vector: np.ndarray, local: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vector = np.asarray(vector, np.float32)
        return dict(local, descriptors=np.asarray(local["descriptors"], np.float32),
                    **{"global": vector / (np.linalg.norm(vector) + 1e-12)})

    def extract(self, image: Image.Image) -> dict[str, np.ndarray]:
        return self.extract_many([image])[0]

    def extract_many(self, images: Sequence[Image.Image]) -> list[dict[str, np.ndarray]]:
        global_part, local_part = self.parts()
        vectors = global_part.extract_many(images)
        return [self.combine(vector, local_part.extract(image))
                for image, vector in zip(images, vectors)]

    def decode(self, data: bytes) -> dict[str, np.ndarray]:
        from lookalike.methods.verified import as_float32

        return as_float32(super().decode(data))

    def scorer(self):
        from lookalike.fusion import FusedScorer, FusionModel

        if self._scorer is None:
            self._scorer = FusedScorer(FusionModel.load(self.model), self.parts()[1],
                                       shortlist=self.shortlist)
        return self._scorer

    def score(self, a: dict, b: dict) -> float:
        """One pair on its own evidence (no gallery to shortlist or expand with)."""
        from lookalike.fusion import evidence_row

        scorer = self.scorer()
        similarity = float(np.dot(a["global"], b["global"]))
        row = evidence_row(similarity, similarity, scorer.verifier.verify(a, b))
        return float(scorer.model.probability(np.array([row]))[0])

    def score_matrix(self, queries, gallery) -> np.ndarray:
        scorer = self.scorer()
        vectors = np.stack([item["global"] for item in gallery])
        return np.stack([scorer.rank(query, gallery, vectors).probabilities
                         for query in queries]) if len(queries) else np.zeros((0, len(gallery)))
