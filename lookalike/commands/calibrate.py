"""`lookalike calibrate DATASET -o pairs.json`: fit a preset's `fused` probabilities on
labelled photos (`lookalike.evaluation.fit_calibration`), and print the fitted and cross-validated metrics."""

from __future__ import annotations

import argparse
import sys

from lookalike.commands.common import (
    add_common_options,
    cache_from_args,
    method_settings_from_args,
    report_errors,
)


def add_command(subparsers) -> None:
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
    add_common_options(parser, folders=False)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from lookalike.evaluation.fit_calibration import calibrate_dataset

    settings = {key: value for key, value in method_settings_from_args(args).items()
                if key != "preset"}
    fitted = calibrate_dataset(args.dataset, args.preset, args.negatives, args.gray,
                               args.shortlist, args.expansion, settings, cache_from_args(args),
                               args.jobs, args.quiet, args.max_pixels)
    model = fitted.calibration
    model.save(args.output)
    for name, numbers in (("fitted", model.info.get("fitted")),
                          ("cross-validated", model.info.get("cross_validated"))):
        if numbers:
            print(f"{name:>16}: mAP {numbers['map']:.3f}  P@1 {numbers['p_at_1']:.3f}  "
                  f"ROC-AUC {numbers['roc_auc']:.3f}  TPR@FPR1% {numbers['tpr_at_fpr1']:.3f}")
    if not args.quiet:
        print(f"wrote {args.output}", file=sys.stderr)
    return report_errors(fitted.errors)
