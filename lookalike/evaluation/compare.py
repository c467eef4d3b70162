"""Similarity matrices: every query against every gallery photo, per method.

`compare()` is the Python face of `lookalike compare`: it expands files and folders, extracts
features through the cache, computes one matrix per method and (optionally) writes the CSVs,
the XLSX and `errors.csv`.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from lookalike.evaluation.results import CompareResult, SimilarityMatrix
from lookalike.features.cache import FeatureCache, NoCache, open_cache
from lookalike.features.contract import FeatureSet, Method
from lookalike.features.extract import extract_feature_sets
from lookalike.features.progress import progress_bar
from lookalike.features.registry import get_method, parse_methods
from lookalike.imaging.loading import DEFAULT_MAX_PIXELS, find_images
from lookalike.retrieval.pipeline import Item, Pipeline, ReferenceSet

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
    cache: FeatureCache | NoCache | None = None,
    query_keys: Sequence[str] | None = None,
    gallery_keys: Sequence[str] | None = None,
) -> np.ndarray:
    """`method.score_matrix`, split by rows over `jobs` forked processes for slow methods.

    With a cache and the content keys of both sides, pair scores of methods that declare
    `cache_scores` are read from and written to the cache, so a re-run scores nothing twice.
    """
    if not len(queries) or not len(gallery):
        return np.zeros((len(queries), len(gallery)))
    ranker = method.gallery_ranker()
    if ranker is not None:  # a local matcher with a ranker verifies each query's shortlist
        return score_by_shortlist(method, ranker, queries, gallery, cache, query_keys,
                                  gallery_keys)
    if cache is None or not method.cache_scores or query_keys is None or gallery_keys is None:
        return _score_rows_parallel(method, queries, gallery, range(len(queries)), jobs, quiet, desc)
    prefix = method.score_key()
    pair_keys = [[f"{prefix}:{q}:{g}" for g in gallery_keys] for q in query_keys]
    found = cache.get_many((key for row in pair_keys for key in row), table="scores")
    matrix = np.array([[found.get(key, np.nan) for key in row] for row in pair_keys], np.float64)
    todo = [i for i in range(len(queries)) if np.isnan(matrix[i]).any()]
    if todo:
        matrix[todo] = _score_rows_parallel(method, queries, gallery, todo, jobs, quiet, desc)
        cache.put_many(((pair_keys[i][j], float(matrix[i, j])) for i in todo
                        for j in range(len(gallery))), table="scores")
    return matrix


def score_by_shortlist(method: Method, ranker: Method, queries, gallery, cache=None,
                       query_keys=None, gallery_keys=None) -> np.ndarray:
    """All query x gallery scores of a local matcher, verifying only each query's
    `gallery_shortlist()` most similar gallery photos by its ranker (ASMK of the same
    descriptors); the others keep their ranker similarity (below 1, so every verified pair
    with an inlier ranks above them). Pair results go through the cache under the same keys as
    the pipeline's, so `fused` of the same preset re-reads them."""
    def items(features, keys):
        keys = list(keys) if keys else [None] * len(features)
        return [Item(ranker.aggregate(f), f, k) for f, k in zip(features, keys)]

    shortlist = method.gallery_shortlist()
    query_items = items(queries, query_keys)
    gallery_items = query_items if gallery is queries and query_keys == gallery_keys \
        else items(gallery, gallery_keys)
    view = ReferenceSet(gallery_items, ranker)
    store = cache if cache is not None and query_keys and gallery_keys else None
    pipeline = Pipeline(ranker, method, None, shortlist, 0, store)
    matrix = np.zeros((len(query_items), len(gallery_items)))
    for row, item in enumerate(query_items):
        similarities = np.asarray(view.index.scores(item.global_feature), np.float64)
        top = np.argsort(-similarities, kind="stable")[:shortlist]
        matrix[row] = similarities
        for position, match in pipeline.verify(item, view, top).items():
            matrix[row, position] += match.score
    return matrix


def score_sets(method: Method, query_set: FeatureSet, gallery_set: FeatureSet, cache=None,
               jobs: int = 1, quiet: bool = True, errors: dict[str, str] | None = None
               ) -> np.ndarray:
    """Score two `FeatureSet`s of one method, reusing cached pair scores where possible.

    When scoring fails, the pairs are scored one by one: a pair that fails gets -inf (ranked
    last) and its reason goes to `errors` under "A vs B", and the run goes on."""
    try:
        return score_matrix(method, query_set.features, gallery_set.features, jobs=jobs,
                            quiet=quiet, cache=cache, query_keys=query_set.content_keys,
                            gallery_keys=gallery_set.content_keys)
    except Exception:  # one pair's failure must cost that pair, not the run
        matrix = np.empty((len(query_set.features), len(gallery_set.features)))
        for i, query in enumerate(query_set.features):
            for j, item in enumerate(gallery_set.features):
                try:
                    matrix[i, j] = method.score(query, item)
                except Exception as error:
                    matrix[i, j] = -np.inf
                    if errors is not None:
                        pair = f"{query_set.paths[i]} vs {gallery_set.paths[j]}"
                        errors[pair] = f"{method.name} failed: {type(error).__name__}: {error}"
        return matrix


def _score_rows_parallel(method, queries, gallery, rows, jobs, quiet, desc) -> np.ndarray:
    rows = list(rows)
    if method.feature_kind not in ("local", "segments") or len(rows) < 2:
        return method.score_matrix([queries[i] for i in rows], gallery)
    position = {row: index for index, row in enumerate(rows)}
    matrix = np.empty((len(rows), len(gallery)))
    step = max(1, min(8, len(rows) // (4 * max(jobs, 1))))
    chunks = [rows[i:i + step] for i in range(0, len(rows), step)]
    bar = progress_bar(len(rows), desc or f"{method.label()} scoring", quiet, unit="row")
    _WORKER_STATE.update(method=method, queries=queries, gallery=gallery)
    try:
        if jobs <= 1:
            results = map(_score_rows, chunks)
            for chunk_rows, block in results:
                matrix[[position[r] for r in chunk_rows]] = block
                bar.update(len(chunk_rows))
        else:
            with multiprocessing.get_context("fork").Pool(jobs) as pool:
                for chunk_rows, block in pool.imap_unordered(_score_rows, chunks):
                    matrix[[position[r] for r in chunk_rows]] = block
                    bar.update(len(chunk_rows))
    finally:
        _WORKER_STATE.clear()
        bar.close()
    return matrix


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
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> CompareResult:
    """Compare query photos with a gallery (or with each other) by each method; photos over
    `max_pixels` (0: no limit) are reported as errors."""
    query_paths = find_images(queries)
    gallery_paths = find_images(against) if against else None
    feature_cache = open_cache(cache)
    matrices: dict[str, SimilarityMatrix] = {}
    errors: dict[str, str] = {}
    chosen = [get_method(name, method_settings, gray=gray)
              for name in parse_methods(methods)]
    # queries against a gallery: each side described as the method describes it (a query
    # may take fewer views than a gallery photo); photos against each other: as a gallery
    asked = [method.query_method() for method in chosen] if gallery_paths is not None \
        else chosen
    query_sets = extract_feature_sets(asked, query_paths, feature_cache, jobs, quiet, max_pixels)
    gallery_sets = (extract_feature_sets(chosen, gallery_paths, feature_cache, jobs, quiet,
                                         max_pixels)
                    if gallery_paths is not None else query_sets)
    sets = list(zip(chosen, query_sets, gallery_sets))
    for _, query_set, gallery_set in sets:
        errors.update(query_set.errors)
        errors.update(gallery_set.errors)
    # A file that failed for any method is left out of every matrix, so all share their rows.
    for method, query_set, gallery_set in sets:
        query_set, gallery_set = query_set.without(errors), gallery_set.without(errors)
        scores = score_sets(method, query_set, gallery_set, feature_cache, jobs, quiet, errors)
        matrices[method.label()] = SimilarityMatrix(
            method.label(), query_set.paths, gallery_set.paths, scores
        )
    result = CompareResult(matrices, errors)
    if outdir is not None:
        from lookalike.evaluation.compare_report import write_compare_outputs

        write_compare_outputs(result, outdir)
    return result
