"""`lookalike calibrate DATASET -o pairs.json`: fit a preset's `fused` calibration on labelled photos.

Every photo is ranked against all the others exactly as `fused` ranks at run time (through
`lookalike.retrieval.Pipeline`: shortlist, verification, expansion); each (query, gallery
photo) pair gives one evidence row and a same-landmark flag, and `lookalike.calibration.fit`
turns evidence into a probability.

Fitting and measuring on the same photos flatters the model, so the fit also reports
cross-validated metrics: landmarks are split into folds, and each fold's queries are scored
by a model fitted without any pair that touches that fold's landmarks. Those numbers are
stored in the calibration's `info` and printed; they are the honest estimate for unseen
landmarks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from lookalike.calibration import Calibration, fit, method_spec
from lookalike.features import show_progress
from lookalike.metrics import DISTRACTOR, retrieval_metrics
from lookalike.retrieval import PAIR_EVIDENCE, Gallery, Item, Pipeline

FOLDS = 5
METRICS = ("map", "p_at_1", "roc_auc", "tpr_at_fpr1")


def evidence_matrix(items: Sequence[Item], pipeline: Pipeline, quiet: bool = True
                    ) -> np.ndarray:
    """N x N x F evidence: row i = photo i ranked against every photo (itself included)."""
    gallery = Gallery(items, pipeline.global_method)
    rows = []
    for query in tqdm(items, desc="ranking", unit="photo", disable=not show_progress(quiet),
                      file=sys.stderr, leave=False):
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


def cross_validate(evidence: np.ndarray, labels: Sequence[str], folds: int = FOLDS
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
        model = fit(evidence[mask], same[mask], PAIR_EVIDENCE)
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
        metrics = retrieval_metrics(cross_validate(evidence, labels), labels)
        info["cross_validated"] = {key: metrics[key] for key in METRICS}
    methods = {"global": method_spec(pipeline.global_method),
               "local": method_spec(pipeline.local_method)}
    model = fit(evidence[off_diagonal], same[off_diagonal], PAIR_EVIDENCE, methods, info=info)
    metrics = retrieval_metrics(model.probability(evidence).reshape(n, n), labels)
    model.info["fitted"] = {key: metrics[key] for key in METRICS}
    return model


def run_calibrate(args: argparse.Namespace) -> int:
    from lookalike.cli import UsageError, cache_from_args, method_settings_from_args, report_errors
    from lookalike.evaluation import DatasetError, load_dataset
    from lookalike.features import extract_features
    from lookalike.methods import get_method
    from lookalike.presets import UnknownPresetError

    try:
        paths, labels = load_dataset(args.dataset, args.negatives)
        settings = {**method_settings_from_args(args), "preset": args.preset or "default"}
        method = get_method("fused", gray=args.gray, **settings)
    except (DatasetError, UnknownPresetError) as error:
        raise UsageError(str(error)) from None
    if not any(label != DISTRACTOR for label in labels):
        raise UsageError(f"{args.dataset}: no labelled landmark photos to calibrate on")
    cache = cache_from_args(args)
    features = extract_features(method, paths, cache, args.jobs, args.quiet)
    kept = [labels[i] for i, path in enumerate(paths) if path not in features.errors]
    global_part, local_part = method.parts()
    preset = method._preset
    pipeline = Pipeline(global_part, local_part, None, args.shortlist or preset.shortlist,
                        preset.expansion if args.expansion is None else args.expansion, cache)
    model = calibrate(kept, features.features, pipeline, source=str(args.dataset),
                      preset=preset.name, quiet=args.quiet)
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
        "calibrate", help="fit the fused probabilities of a preset on labelled photos",
        description="Rank every labelled photo against the others as `fused` does and fit a "
                    "logistic model from the evidence to same-landmark probability. Prints "
                    "fitted and landmark-cross-validated metrics. Use the result with "
                    "`--methods fused` through `get_method('fused', calibration=FILE)`.",
    )
    parser.add_argument("dataset", metavar="DATASET",
                        help="folder of landmark subfolders (+ distractors/) or a manifest CSV")
    parser.add_argument("--output", "-o", required=True, metavar="PAIRS.json")
    parser.add_argument("--negatives", metavar="DIR", help="extra photos of no landmark")
    parser.add_argument("--shortlist", type=int, default=None, metavar="K",
                        help="gallery photos verified per query (default: the preset's)")
    parser.add_argument("--expansion", type=int, default=None, metavar="N",
                        help="verified photos averaged into the query (default: the preset's)")
    add_common_options(parser)
    parser.set_defaults(handler=run_calibrate)
