"""`lookalike calibrate DATASET -o pairs.json`: fit a preset's `fused` calibration on labelled photos.

Every photo is ranked against all the others exactly as `fused` ranks at run time (through
`lookalike.retrieval.pipeline.Pipeline`: shortlist, verification, expansion); each (query, gallery
photo) pair gives one evidence row and a same-landmark flag, and `lookalike.retrieval.calibration.fit`
turns evidence into a probability.

The fit is monotone (every coefficient >= 0: more of any evidence never lowers the
probability), on `PAIR_EVIDENCE`, the few features that carried over best to held-out
landmarks (benchmarks/carryover.py, issue 24).

Fitting and measuring on the same photos flatters the model, so the fit also reports
cross-validated metrics: landmarks are split into folds, and each fold's queries are scored
by a model fitted without any pair that touches that fold's landmarks. Those numbers are
stored in the calibration's `info` and printed; they are the honest estimate for unseen
landmarks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lookalike.evaluation.metrics import DISTRACTOR, retrieval_metrics
from lookalike.features.progress import progress_bar
from lookalike.imaging.loading import DEFAULT_MAX_PIXELS
from lookalike.retrieval.calibration import Calibration, fit, method_spec
from lookalike.retrieval.pipeline import PAIR_EVIDENCE, Item, Pipeline, ReferenceSet

FOLDS = 5
METRICS = ("map", "p_at_1", "roc_auc", "tpr_at_fpr1")


def evidence_matrix(items: Sequence[Item], pipeline: Pipeline, quiet: bool = True
                    ) -> np.ndarray:
    """N x N x F evidence: row i = photo i ranked against every photo (itself included)."""
    gallery = ReferenceSet(items, pipeline.global_method)
    rows = []
    for query in progress_bar(desc="ranking", quiet=quiet, unit="photo", iterable=items):
        rows.append(pipeline.evidence(query, gallery).evidence)
    return np.stack(rows) if rows else np.zeros((0, 0, len(PAIR_EVIDENCE)))


def landmark_folds(labels: Sequence[str], folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Fold number per photo: whole landmarks per fold; distractors spread at random."""
    landmarks = sorted(set(labels) - {DISTRACTOR})
    fold_of = {label: k % folds for k, label in enumerate(landmarks)}
    rng = np.random.default_rng(seed)
    return np.array([fold_of[label] if label != DISTRACTOR else int(rng.integers(folds))
                     for label in labels])


def same_landmark(labels: Sequence[str]) -> np.ndarray:
    array = np.asarray(labels, dtype=object)
    return (array[:, None] == array[None, :]) & (array[:, None] != DISTRACTOR)


def cross_validate(evidence: np.ndarray, labels: Sequence[str], folds: int = FOLDS,
                   features: Sequence[str] = PAIR_EVIDENCE, monotone: bool = True
                   ) -> np.ndarray:
    """Out-of-fold probabilities: each row scored by a model that never saw its landmark."""
    n = len(labels)
    same = same_landmark(labels)
    fold = landmark_folds(labels, folds)
    off_diagonal = ~np.eye(n, dtype=bool)
    probabilities = np.zeros((n, n))
    for k in range(folds):
        train = fold != k
        if not train.any() or train.all():
            continue
        mask = train[:, None] & train[None, :] & off_diagonal
        if same[mask].all() or not same[mask].any():
            continue
        model = fit(evidence[mask], same[mask], features, monotone=monotone)
        test = ~train
        probabilities[test] = model.probability(evidence[test]).reshape(test.sum(), n)
    return probabilities


def calibrate(labels: Sequence[str], items: Sequence[Item], pipeline: Pipeline,
              source: str = "", preset: str = "", quiet: bool = True) -> Calibration:
    """Fit the pair calibration on labelled items; `info` records data and CV metrics."""
    evidence = evidence_matrix(items, pipeline, quiet)
    n = len(labels)
    off_diagonal = ~np.eye(n, dtype=bool)
    same = same_landmark(labels)
    info: dict[str, Any] = {
        "trained_on": source, "preset": preset, "photos": n,
        "landmarks": len(set(labels) - {DISTRACTOR}), "shortlist": pipeline.shortlist,
        "expansion": pipeline.expansion,
        "pairs": int(off_diagonal.sum()), "positive_pairs": int(same[off_diagonal].sum()),
    }
    if len(set(labels) - {DISTRACTOR}) >= 2:
        metrics = retrieval_metrics(cross_validate(evidence, labels, FOLDS, pipeline.features),
                                    labels)
        info["cross_validated"] = {key: metrics[key] for key in METRICS}
    methods = {"global": method_spec(pipeline.global_method),
               "local": method_spec(pipeline.local_method)}
    model = fit(evidence[off_diagonal], same[off_diagonal], pipeline.features, methods,
                info={**info, "monotone": True}, monotone=True)
    metrics = retrieval_metrics(model.probability(evidence).reshape(n, n), labels)
    model.info["fitted"] = {key: metrics[key] for key in METRICS}
    return model


@dataclass
class DatasetCalibration:
    """A calibration fitted on a labelled dataset, and the photos that could not be used."""

    calibration: Calibration
    errors: dict[str, str]


def calibrate_dataset(dataset: str | os.PathLike, preset: str | None = None,
                      negatives: str | os.PathLike | None = None, gray: bool = False,
                      shortlist: int | None = None, expansion: int | None = None,
                      method_settings: dict[str, Any] | None = None, cache=None, jobs: int = 1,
                      quiet: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS
                      ) -> DatasetCalibration:
    """Fit a preset's `fused` calibration on a labelled dataset (folder or manifest).

    The photos go through the same feature extraction as everywhere (cache, `jobs`); the
    shortlist and expansion are the preset's unless given."""
    from lookalike.evaluation.evaluate import DatasetError, load_dataset
    from lookalike.features.extract import extract_features
    from lookalike.features.registry import get_method

    paths, labels = load_dataset(dataset, negatives)
    method = get_method("fused", method_settings, gray=gray, preset=preset or "default")
    if not any(label != DISTRACTOR for label in labels):
        raise DatasetError(f"{dataset}: no labelled landmark photos to calibrate on")
    features = extract_features(method, paths, cache, jobs, quiet, max_pixels)
    kept = [labels[i] for i, path in enumerate(paths) if path not in features.errors]
    global_part, local_part = method.parts()
    chosen = method._preset
    pipeline = Pipeline(global_part, local_part, None, shortlist or chosen.shortlist,
                        chosen.expansion if expansion is None else expansion, cache)
    model = calibrate(kept, features.features, pipeline, source=str(dataset),
                      preset=chosen.name, quiet=quiet)
    return DatasetCalibration(model, dict(features.errors))
