"""`lookalike calibrate DATASET -o model.json`: fit the `fused` model on labelled photos.

Every photo is ranked against all the others exactly as `fused` ranks at run time (shortlist,
verification, query expansion); each (query, gallery photo) pair gives one evidence row and a
same-landmark flag, and a logistic regression turns evidence into a probability.

Fitting and measuring on the same photos flatters the model, so the fit also reports
cross-validated metrics: landmarks are split into folds, and each fold's queries are scored
by a model fitted without any pair that touches that fold's landmarks. Those numbers are
stored in the model's `info` and printed; they are the honest estimate for unseen landmarks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from lookalike.fusion import FEATURE_NAMES, FusedScorer, FusionModel, fit_model
from lookalike.metrics import DISTRACTOR, retrieval_metrics

FOLDS = 5


def evidence_matrix(features: Sequence[dict], scorer: FusedScorer) -> np.ndarray:
    """N x N x F evidence: row i = photo i ranked against every photo (itself included)."""
    vectors = np.stack([item["global"] for item in features])
    return np.stack([scorer.evidence(query, features, vectors)[0] for query in features])


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


def cross_validate(evidence: np.ndarray, labels: Sequence[str], shortlist: int, expansion: int,
                   folds: int = FOLDS) -> np.ndarray:
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
        model = fit_model(evidence[mask], same[mask], shortlist, expansion)
        test = ~train
        probabilities[test] = model.probability(evidence[test].reshape(-1, len(FEATURE_NAMES))
                                                ).reshape(test.sum(), n)
    return probabilities


def calibrate(paths: Sequence[str], labels: Sequence[str], features: Sequence[dict],
              shortlist: int = 150, expansion: int = 5, source: str = "") -> FusionModel:
    """Fit the fused model on labelled features; `info` records data and CV metrics."""
    scorer = FusedScorer(None, shortlist=shortlist, expansion=expansion)
    evidence = evidence_matrix(features, scorer)
    n = len(labels)
    off_diagonal = ~np.eye(n, dtype=bool)
    same = same_landmark(labels)
    info: dict[str, Any] = {
        "trained_on": source, "photos": n,
        "landmarks": len(set(labels) - {DISTRACTOR}),
        "pairs": int(off_diagonal.sum()), "positive_pairs": int(same[off_diagonal].sum()),
    }
    if len(set(labels) - {DISTRACTOR}) >= 2:
        held_out = cross_validate(evidence, labels, shortlist, expansion)
        metrics = retrieval_metrics(held_out, labels)
        info["cross_validated"] = {key: metrics[key] for key in
                                   ("map", "p_at_1", "roc_auc", "tpr_at_fpr1")}
    model = fit_model(evidence[off_diagonal], same[off_diagonal], shortlist, expansion, info)
    fitted = model.probability(evidence.reshape(-1, len(FEATURE_NAMES))).reshape(n, n)
    metrics = retrieval_metrics(fitted, labels)
    model.info["fitted"] = {key: metrics[key] for key in ("map", "p_at_1", "roc_auc",
                                                          "tpr_at_fpr1")}
    return model


def run_calibrate(args: argparse.Namespace) -> int:
    from lookalike.cli import UsageError, cache_from_args, method_settings_from_args, report_errors
    from lookalike.evaluation import DatasetError, load_dataset
    from lookalike.features import extract_features
    from lookalike.methods import get_method

    try:
        paths, labels = load_dataset(args.dataset, args.negatives)
    except DatasetError as error:
        raise UsageError(str(error)) from None
    if not any(label != DISTRACTOR for label in labels):
        raise UsageError(f"{args.dataset}: no labelled landmark photos to calibrate on")
    method = get_method("fused", gray=args.gray, **method_settings_from_args(args))
    features = extract_features(method, paths, cache_from_args(args), args.jobs, args.quiet)
    kept = [labels[i] for i, path in enumerate(paths) if path not in features.errors]
    model = calibrate(features.paths, kept, features.features, args.shortlist, args.expansion,
                      source=str(args.dataset))
    model.save(args.output)
    for name, numbers in (("fitted", model.info.get("fitted")),
                          ("cross-validated", model.info.get("cross_validated"))):
        if numbers:
            print(f"{name:>16}: mAP {numbers['map']:.3f}  P@1 {numbers['p_at_1']:.3f}  "
                  f"ROC-AUC {numbers['roc_auc']:.3f}  TPR@FPR1% {numbers['tpr_at_fpr1']:.3f}")
    if not args.quiet:
        print(f"wrote {args.output}", file=sys.stderr)
    return report_errors(features.errors)


def add_command(subparsers) -> None:
    from lookalike.cli import add_common_options

    parser = subparsers.add_parser(
        "calibrate", help="fit the fused model's probabilities on labelled photos",
        description="Rank every labelled photo against the others as `fused` does and fit a "
                    "logistic model from the evidence to same-landmark probability. Prints "
                    "fitted and landmark-cross-validated metrics.",
    )
    parser.add_argument("dataset", metavar="DATASET",
                        help="folder of landmark subfolders (+ distractors/) or a manifest CSV")
    parser.add_argument("--output", "-o", required=True, metavar="MODEL.json")
    parser.add_argument("--negatives", metavar="DIR", help="extra photos of no landmark")
    parser.add_argument("--shortlist", type=int, default=150, metavar="K",
                        help="gallery photos verified per query (default 150)")
    parser.add_argument("--expansion", type=int, default=5, metavar="N",
                        help="verified photos averaged into the query (default 5)")
    add_common_options(parser)
    parser.set_defaults(handler=run_calibrate)
