"""`lookalike evaluate`: how well each method tells the landmarks apart, on labelled photos.

The labelled set is read once (`load_dataset`); every method then goes through the same
feature extraction (`extract_features`, cache included) and matrix scoring (`score_matrix`)
as `compare`, so the numbers describe exactly what users run. Methods are taken from the
registry by name, so a method added later is evaluated with no change here. The protocol
itself lives in `lookalike.evaluation.metrics.retrieval_metrics`; the files written in `eval_report`.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lookalike.errors import InputError
from lookalike.evaluation.compare import score_matrix
from lookalike.evaluation.metrics import DISTRACTOR, retrieval_metrics
from lookalike.evaluation.options import GRAY_MODES
from lookalike.evaluation.results import EvaluationResult, SimilarityMatrix
from lookalike.features.cache import open_cache
from lookalike.features.contract import FeatureSet, Method
from lookalike.features.extract import extract_feature_sets, extract_features, extracted_together
from lookalike.features.registry import get_method, parse_methods
from lookalike.imaging.loading import DEFAULT_MAX_PIXELS, find_images

DISTRACTOR_FOLDER = "distractors"


class DatasetError(InputError, ValueError):
    """The dataset cannot be read as labelled photos (missing, empty, wrong columns)."""


def load_dataset(
    dataset: str | os.PathLike, negatives: str | os.PathLike | None = None
) -> tuple[list[str], list[str]]:
    """Photo paths and their labels, in dataset order (label `distractor` = no landmark).

    A folder holds one subfolder per landmark (the folder name is the label) and optionally
    `distractors/`; a CSV manifest has `path,label` columns, paths relative to the CSV's
    folder. Photos under `negatives` are added as distractors.
    """
    source = Path(dataset)
    if source.is_dir():
        paths, labels = _load_folder(source)
    elif source.is_file():
        paths, labels = _load_manifest(source)
    else:
        raise DatasetError(f"{dataset}: no such folder or manifest file")
    if negatives is not None:
        if not Path(negatives).is_dir():
            raise DatasetError(f"{negatives}: --negatives must be a folder")
        extra = [p for p in find_images([negatives]) if p not in set(paths)]
        paths += extra
        labels += [DISTRACTOR] * len(extra)
    if not paths:
        raise DatasetError(f"{dataset}: no labelled photos found")
    return paths, labels


def _load_folder(root: Path) -> tuple[list[str], list[str]]:
    paths: list[str] = []
    labels: list[str] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = find_images([str(sub)])
        paths += found
        labels += [DISTRACTOR if sub.name == DISTRACTOR_FOLDER else sub.name] * len(found)
    return paths, labels


def _load_manifest(manifest: Path) -> tuple[list[str], list[str]]:
    with open(manifest, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise DatasetError(f"{manifest}: a manifest needs 'path' and 'label' columns")
        rows = [row for row in reader if (row["path"] or "").strip()]
    base = manifest.parent
    paths = [str(base / row["path"].strip()) for row in rows]
    labels = [(row["label"] or "").strip() or DISTRACTOR for row in rows]
    return paths, labels


class _CountingCache:
    """Wraps the feature cache to count hits, so extraction times say how much was computed."""

    def __init__(self, cache):
        self.cache = cache
        self.hit_files: set[str] = set()  # content hashes of files with a cached feature

    @property
    def hits(self) -> int:
        return len(self.hit_files)

    def get_many(self, keys, table="features"):
        found = self.cache.get_many(keys, table=table)
        if table == "features":  # a method built from others looks up one key per part
            self.hit_files.update(key.rsplit(":", 1)[-1] for key in found)
        return found

    def __getattr__(self, name):
        return getattr(self.cache, name)


def evaluate(
    dataset: str | os.PathLike,
    methods: str | Sequence[str] = "all",
    gray: str = "no",
    outdir: str | os.PathLike | None = None,
    cache: Any = None,
    jobs: int = 1,
    quiet: bool = True,
    negatives: str | os.PathLike | None = None,
    method_settings: dict[str, Any] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> EvaluationResult:
    """Evaluate methods on a labelled dataset; with `outdir`, write tables, plots and HTML.

    `gray` is "no", "yes" or "both" (each method once per colour mode). A file that any
    method cannot read is left out of every matrix, as in `compare`, and listed in `.errors`.
    """
    if gray not in GRAY_MODES:
        raise ValueError(f"gray must be one of {', '.join(GRAY_MODES)}, not {gray!r}")
    names = parse_methods(methods)
    paths, labels = load_dataset(dataset, negatives)
    root = os.path.dirname(os.path.abspath(dataset)) if os.path.isfile(dataset) else str(dataset)
    feature_cache = _CountingCache(open_cache(cache))
    runs: list[tuple[Method, FeatureSet, float, int]] = []
    errors: dict[str, str] = {}
    for gray_mode in GRAY_MODES[gray]:
        chosen = [get_method(name, method_settings, gray=gray_mode) for name in names]
        # Plain methods are extracted together (one decode per file); a network or a method
        # built from others gets its own pass, so each row's time is its own where it can be.
        together = [m for m in chosen if extracted_together(m)]
        passes = ([together] if together else []) + [[m] for m in chosen if m not in together]
        for group in passes:
            feature_cache.hit_files = set()
            start = time.perf_counter()
            sets = extract_feature_sets(group, paths, feature_cache, jobs, quiet, max_pixels)
            seconds = (time.perf_counter() - start) / len(group)  # shared time, split evenly
            computed = max(0, len(paths) - feature_cache.hits)
            for method, features in zip(group, sets):
                errors.update(features.errors)
                runs.append((method, features, seconds, computed))
    order = {(name, mode): i for i, (name, mode) in
             enumerate((n, g) for n in names for g in GRAY_MODES[gray])}
    runs.sort(key=lambda run: order[(run[0].name, run[0].gray)])
    kept = [i for i, path in enumerate(paths) if path not in errors]
    kept_paths = [paths[i] for i in kept]
    kept_labels = [labels[i] for i in kept]
    shown = [_display_name(path, root) for path in kept_paths]
    rows: list[dict[str, Any]] = []
    matrices: dict[str, SimilarityMatrix] = {}
    for method, features, extract_seconds, computed in runs:
        items = [features.feature_of(path) for path in kept_paths]
        queries = items
        asked = method.query_method()
        if asked is not method:  # each photo as a query in fewer views than as a gallery photo
            as_queries = extract_features(asked, kept_paths, feature_cache, jobs, quiet,
                                          max_pixels)
            queries = [as_queries.feature_of(path) for path in kept_paths]
        start = time.perf_counter()
        scores = score_matrix(method, queries, items, jobs=jobs, quiet=quiet)
        score_seconds = time.perf_counter() - start
        matrices[method.label()] = SimilarityMatrix(method.label(), shown, shown, scores)
        metrics = retrieval_metrics(scores, kept_labels)
        metrics.pop("ap_per_query")
        rows.append({
            "method": method.label(), "name": method.name, "gray": method.gray,
            **metrics,
            "extract_s": extract_seconds, "extracted": computed,
            "extract_ms_per_image": 1000 * extract_seconds / computed if computed else None,
            "score_s": score_seconds, "scored_pairs": len(items) ** 2,
            "score_us_per_pair": 1e6 * score_seconds / len(items) ** 2 if items else None,
            "settings": _settings(method),
        })
    result = EvaluationResult(rows, kept_paths, kept_labels, matrices, errors, root)
    if outdir is not None:
        from lookalike.evaluation.report import write_evaluation

        write_evaluation(result, outdir, quiet=quiet)
    return result


def _display_name(path: str, root: str) -> str:
    """Paths as the manifest names them (relative to the dataset), so CSVs are portable."""
    relative = os.path.relpath(path, root)
    return path if relative.startswith("..") else relative.replace(os.sep, "/")


def _settings(method: Method) -> dict[str, Any]:
    return {k: v for k, v in method.settings().items() if k != "gray"}
