"""Similarity matrices: every query against every gallery photo, per method.

`compare()` is the Python face of `lookalike compare`: it expands files and folders, extracts
features through the cache, computes one matrix per method and (optionally) writes the CSVs,
the XLSX and `errors.csv`.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lookalike.cache import FeatureCache, NoCache
from lookalike.features import FeatureSet, extract_features, progress_bar
from lookalike.loading import find_images
from lookalike.methods import get_method, parse_methods
from lookalike.methods.base import Method


@dataclass
class SimilarityMatrix:
    """Scores of one method: rows are queries, columns gallery photos, larger = more similar."""

    method: str
    queries: list[str]
    gallery: list[str]
    scores: np.ndarray


@dataclass
class CompareResult:
    matrices: dict[str, SimilarityMatrix]
    errors: dict[str, str] = field(default_factory=dict)  # path -> reason


_WORKER_STATE: dict[str, Any] = {}


def _score_rows(rows: list[int]) -> tuple[list[int], np.ndarray]:
    method, queries, gallery = (_WORKER_STATE[k] for k in ("method", "queries", "gallery"))
    return rows, method.score_matrix([queries[i] for i in rows], gallery)


def score_matrix(
    method: Method,
    queries: Sequence[Any],
    gallery: Sequence[Any],
    jobs: int = 1,
    quiet: bool = True,
    desc: str | None = None,
) -> np.ndarray:
    """`method.score_matrix`, split by rows over `jobs` forked processes for slow methods."""
    if not queries or not gallery:
        return np.zeros((len(queries), len(gallery)))
    if method.feature_kind not in ("local", "segments") or len(queries) < 2:
        return method.score_matrix(queries, gallery)
    matrix = np.empty((len(queries), len(gallery)))
    step = max(1, min(8, len(queries) // (4 * max(jobs, 1))))
    chunks = [list(range(i, min(i + step, len(queries)))) for i in range(0, len(queries), step)]
    bar = progress_bar(len(queries), desc or f"{method.label()} scoring", quiet, unit="row")
    try:
        if jobs <= 1:
            _WORKER_STATE.update(method=method, queries=queries, gallery=gallery)
            for rows in chunks:
                _, block = _score_rows(rows)
                matrix[rows] = block
                bar.update(len(rows))
        else:
            _WORKER_STATE.update(method=method, queries=queries, gallery=gallery)
            with multiprocessing.get_context("fork").Pool(jobs) as pool:
                for rows, block in pool.imap_unordered(_score_rows, chunks):
                    matrix[rows] = block
                    bar.update(len(rows))
    finally:
        _WORKER_STATE.clear()
        bar.close()
    return matrix


def open_cache(cache: str | os.PathLike | FeatureCache | NoCache | bool | None = None):
    """None -> default cache file; False -> no cache; a path -> that file."""
    if cache is False:
        return NoCache()
    if isinstance(cache, (FeatureCache, NoCache)):
        return cache
    return FeatureCache(cache)


def compare(
    queries: Sequence[str],
    against: Sequence[str] | None = None,
    methods: str | Sequence[str] = "phash,akaze,augnet",
    gray: bool = False,
    outdir: str | os.PathLike | None = None,
    cache: Any = None,
    jobs: int = 1,
    quiet: bool = True,
    method_settings: dict[str, Any] | None = None,
) -> CompareResult:
    """Compare query photos with a gallery (or with each other) by each method."""
    query_paths = find_images(queries)
    gallery_paths = find_images(against) if against else None
    feature_cache = open_cache(cache)
    matrices: dict[str, SimilarityMatrix] = {}
    errors: dict[str, str] = {}
    sets: list[tuple[Method, FeatureSet, FeatureSet]] = []
    for name in parse_methods(methods):
        method = get_method(name, gray=gray, **(method_settings or {}))
        query_set = extract_features(method, query_paths, feature_cache, jobs, quiet)
        gallery_set = (
            extract_features(method, gallery_paths, feature_cache, jobs, quiet)
            if gallery_paths is not None else query_set
        )
        errors.update(query_set.errors)
        errors.update(gallery_set.errors)
        sets.append((method, query_set, gallery_set))
    # A file that failed for any method is left out of every matrix, so all share their rows.
    for method, query_set, gallery_set in sets:
        rows = [p for p in query_set.paths if p not in errors]
        cols = [p for p in gallery_set.paths if p not in errors]
        q = [query_set.feature_of(p) for p in rows] if rows != query_set.paths else query_set.features
        g = [gallery_set.feature_of(p) for p in cols] if cols != gallery_set.paths else gallery_set.features
        scores = score_matrix(method, q, g, jobs=jobs, quiet=quiet)
        matrices[method.label()] = SimilarityMatrix(method.label(), rows, cols, scores)
    result = CompareResult(matrices, errors)
    if outdir is not None:
        from lookalike.reports import write_compare_outputs

        write_compare_outputs(result, outdir)
    return result
