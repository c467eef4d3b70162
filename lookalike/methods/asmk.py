"""`asmk`: ASMK* over learned local descriptors, the global descriptor of the pipelines.

A photo's local descriptors (by default `aliked`'s, so a pipeline that verifies with ALIKED
extracts once) are aggregated with a shipped 1,024-word codebook (see `lookalike.matching.asmk`). Score =
ASMK similarity, 1 for a photo with itself and 0 for photos that share no visual word. As a
global descriptor it searches a gallery through an inverted file.

The shipped codebooks were fitted with FAISS k-means on the dev photos' descriptors
(`benchmarks/fit_codebook.py`); `index build --fit-codebook` fits one on your own gallery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from PIL import Image

from lookalike.features.contract import GLOBAL, LOCAL, FeatureSet, Method, SearchIndex
from lookalike.features.registry import get_method, register
from lookalike.imaging.loading import DEFAULT_MAX_PIXELS, LoadOptions
from lookalike.matching import asmk


class AsmkIndex(SearchIndex):
    """An `asmk.InvertedFile` behind the global-descriptor contract."""

    def __init__(self, features: Sequence[dict], alpha: float, threshold: float,
                 postings: asmk.Postings | None = None):
        self.inverted = asmk.InvertedFile(features, alpha, threshold, postings)
        self.size = self.inverted.size

    def scores(self, query: dict) -> np.ndarray:
        return self.inverted.scores(query)


@register
@dataclasses.dataclass
class Asmk(Method):
    name: ClassVar[str] = "asmk"
    description: ClassVar[str] = "ASMK* of learned local descriptors (inverted file); global"
    feature_kind: ClassVar[str] = LOCAL  # a set of (visual word, residual bits), not a vector
    role: ClassVar[str] = GLOBAL
    order: ClassVar[int] = 35
    composed: ClassVar[bool] = True  # aggregated from the local method's cached features
    local: str = "aliked"  # the local method whose descriptors are aggregated
    codebook: str | None = None  # an .npy of centroids; None = the one shipped for `local`
    # each query descriptor votes for this many nearest words (1: off; see asmk.aggregate)
    multiple_assignment: int = 1
    alpha: float = asmk.ALPHA
    threshold: float = asmk.THRESHOLD
    max_side: int | None = None  # settings passed to the local method (None: its default)
    max_keypoints: int | None = None
    device: str = "auto"
    runtime: str | None = None  # the local method's runtime (None: its default)
    views: str | None = None  # the local method's views of a gallery photo and of a query
    query_views: str | None = None
    # which of a photo's views are searched: "all", or "whole" (the whole view's descriptors
    # only; the other views then serve verification alone)
    search_views: str = "all"

    def local_method(self) -> Method:
        views = {key: value for key, value in (("views", self.views),
                                                ("query_views", self.query_views)) if value}
        return get_method(self.local, gray=self.gray, max_side=self.max_side,
                          max_keypoints=self.max_keypoints, device=self.device,
                          runtime=self.runtime, **views)

    def query_method(self) -> Method:
        """ASMK of the local method's query features (e.g. the whole view only)."""
        local = self.local_method()
        if local.query_method() is local:
            return self
        return dataclasses.replace(self, views=self.query_views or "whole")

    def words(self) -> asmk.Codebook:
        cached = self.__dict__.get("_codebook")
        if cached is None:
            local = self.local_method()
            path = self.codebook or asmk.shipped_codebook(f"{local.network}-1024")
            cached = self.__dict__["_codebook"] = asmk.load_codebook(path)
        return cached

    def visual_words(self) -> int:
        return self.words().size

    def load_options(self) -> LoadOptions:
        return self.local_method().load_options()

    def cache_settings(self):
        settings = {"local": [self.local, self.local_method().cache_settings()],
                    "codebook": self.words().digest}
        if self.multiple_assignment > 1:  # older cache keys stay valid without it
            settings["multiple_assignment"] = self.multiple_assignment
        if self.search_views != "all":
            settings["search_views"] = self.search_views
        return settings

    def calibration_settings(self):
        settings = dict(self.cache_settings())
        settings["local"] = [self.local, self.local_method().calibration_settings()]
        settings.pop("search_views", None)  # how much of a photo is searched, as views
        return settings

    def extract(self, image: Image.Image) -> dict[str, np.ndarray]:
        return self.aggregate(self.local_method().extract(image))

    def aggregate(self, local: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        descriptors = local["descriptors"]
        if self.search_views == "whole" and "view" in local:
            descriptors = descriptors[local["view"] == 0]
        return asmk.aggregate(descriptors, self.words(), self.multiple_assignment)

    def combine_features(self, paths: Sequence[str], cache=None, jobs: int = 1,
                         quiet: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS):
        """Aggregate the local method's features, so its cache entries are reused."""
        from lookalike.features.extract import extract_features

        local = extract_features(self.local_method(), paths, cache, jobs, quiet, max_pixels)
        return FeatureSet(self, local.paths, [self.aggregate(f) for f in local.features],
                          local.errors, local.content_keys)

    def score(self, a: dict, b: dict) -> float:
        return asmk.similarity(a, b, self.alpha, self.threshold)

    def search_index(self, features: Sequence[dict]) -> AsmkIndex:
        return AsmkIndex(features, self.alpha, self.threshold)

    def inverted_file_shape(self) -> tuple[int, int]:
        return self.words().size, self.words().dim

    def stored_search_index(self, postings: asmk.Postings) -> AsmkIndex:
        return AsmkIndex((), self.alpha, self.threshold, postings)

    def score_matrix(self, queries, gallery) -> np.ndarray:
        index = self.search_index(gallery)
        return np.stack([index.scores(q) for q in queries]) if len(queries) else \
            np.zeros((0, len(gallery)))
