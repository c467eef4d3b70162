"""`lookalike evaluate`: accuracy of each method on labelled photos, or with `--identify` the
open-set accuracy of `identify` (leave-one-out, distractors must come back unknown)."""

from __future__ import annotations

import argparse
import sys

from lookalike.commands.common import (
    UsageError,
    add_common_options,
    cache_from_args,
    cache_option,
    method_settings_from_args,
    report_errors,
)


def add_command(subparsers) -> None:
    from lookalike.evaluation.options import GRAY_MODES

    parser = subparsers.add_parser(
        "evaluate", help="accuracy of each method on labelled photos (tables, plots, HTML)",
        description="Measure how well each method tells landmarks apart on labelled photos: "
                    "mAP and P@1 (each photo of a landmark with >= 2 photos queries all other "
                    "photos, distractors included) and pair metrics (ROC-AUC, AP, TPR at FPR "
                    "1%%, thresholds). Writes results.md/.csv/.json, <method>.csv matrices, "
                    "ROC/PR plots, score histograms and index.html to OUTDIR.",
    )
    parser.add_argument("dataset", metavar="DATASET",
                        help="folder with one subfolder per landmark (and distractors/), or a "
                             "manifest CSV with path,label columns")
    parser.add_argument("--methods", "-m", default="all",
                        help="comma-separated methods or 'all' (default: all)")
    parser.add_argument("--gray", choices=sorted(GRAY_MODES), default="no",
                        help="evaluate in colour (no), grayscale (yes) or both (default: no)")
    parser.add_argument("--negatives", metavar="DIR",
                        help="folder of extra photos that show none of the landmarks")
    parser.add_argument("--output", "-o", metavar="OUTDIR",
                        help="output folder (required, except with --identify)")
    parser.add_argument("--queries", metavar="Q1,Q2",
                        help="a query-set dataset (manifest with a role column, e.g. "
                             "oxford_hard): evaluate only these queries")
    add_common_options(parser, gray=False, folders=False)
    identify = parser.add_argument_group("open-set evaluation of identify")
    identify.add_argument("--identify", action="store_true",
                          help="open-set evaluation of `identify`: leave-one-out over the "
                               "labelled photos, distractors must come back unknown")
    identify.add_argument("--fit-calibration", metavar="FILE.json",
                          help="with --identify: also write the calibration fit on all queries")
    identify.add_argument("--global", dest="global_method", metavar="METHOD",
                          help="with --identify: global descriptor instead of the preset's")
    identify.add_argument("--local", dest="local_method", metavar="METHOD",
                          help="with --identify: local matcher instead of the preset's")
    identify.add_argument("--gallery-negatives", action="store_true",
                          help="with --identify: keep the other distractors in the gallery as "
                               "negatives (photos of no landmark), as `index build` does")
    identify.add_argument("--use-text", action="store_true",
                          help="with --identify: also read each photo's text (OCR, cached) "
                               "and add its fitted log-odds, as `identify --use-text` does: "
                               "by the landmarks' names and inscriptions (DATASET/<landmark>/"
                               "landmark.json) and by the text that recurs on each landmark's "
                               "other photos (learned leave-one-out, as `index build "
                               "--read-text` learns it). Reports the image alone, image + "
                               "names, image + learned text, and image + both. On a query-set "
                               "dataset (oxford_hard), without --identify: the pipeline's open "
                               "set also with the text each query photo teaches")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.identify:
        return run_identify_evaluation(args)
    if args.output is None:
        raise UsageError("the following arguments are required: --output/-o")
    return run_method_evaluation(args)


def run_method_evaluation(args: argparse.Namespace) -> int:
    from lookalike.evaluation.evaluate import evaluate
    from lookalike.evaluation.query_sets import manifest_of

    if manifest_of(args.dataset) is not None:
        return run_query_set_evaluation(args)
    if args.use_text:
        raise UsageError("--use-text goes with --identify, or with a query-set dataset "
                         "(oxford_hard)")

    result = evaluate(
        args.dataset, methods=args.methods, gray=args.gray, outdir=args.output,
        cache=cache_option(args), jobs=args.jobs, quiet=args.quiet,
        negatives=args.negatives, method_settings=method_settings_from_args(args),
        max_pixels=args.max_pixels,
    )
    if not args.quiet:
        from lookalike.evaluation.report import markdown_table

        print(markdown_table(result), file=sys.stderr)
        print(f"wrote results.md, results.csv, results.json, plots and index.html to "
              f"{args.output}", file=sys.stderr)
    return report_errors(result.errors)


def run_query_set_evaluation(args: argparse.Namespace) -> int:
    """A dataset of queries, each with its positives and hard negatives (`role` column)."""
    from lookalike.evaluation.query_sets import evaluate_query_sets, markdown

    queries = [q.strip() for q in args.queries.split(",") if q.strip()] if args.queries \
        else None
    if args.use_text:
        from lookalike.ocr.reader import OcrUnavailable, check_available

        try:
            check_available()
        except OcrUnavailable as error:
            raise UsageError(f"--use-text needs OCR: {error}") from None
    result = evaluate_query_sets(args.dataset, args.methods, args.output, cache_option(args),
                                 args.jobs, args.quiet, queries,
                                 method_settings_from_args(args), use_text=args.use_text)
    print(markdown(result))
    if not args.quiet:
        print(f"wrote results.md, results.json and per_query.csv to {args.output}",
              file=sys.stderr)
    return report_errors(result["errors"])


def run_identify_evaluation(args: argparse.Namespace) -> int:
    from lookalike.evaluation.identification import evaluate_identify, markdown_summary

    if args.use_text:
        from lookalike.ocr.reader import OcrUnavailable, check_available

        try:
            check_available()
        except OcrUnavailable as error:
            raise UsageError(f"--use-text needs OCR: {error}") from None
    summary = evaluate_identify(args.dataset, args.output, cache_from_args(args), args.jobs,
                                args.quiet, preset=args.preset,
                                fit_calibration=args.fit_calibration,
                                negatives=args.gallery_negatives,
                                methods=(args.global_method, args.local_method),
                                use_text=args.use_text, max_pixels=args.max_pixels)
    print(markdown_summary(summary))
    if args.output and not args.quiet:
        print(f"wrote identify_results.csv, identify_curve.csv/.png and identify_summary.json "
              f"to {args.output}", file=sys.stderr)
    return report_errors(summary["errors"])
