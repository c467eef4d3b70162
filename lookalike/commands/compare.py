"""`lookalike compare`: every photo against every photo (or a gallery), one table per method."""

from __future__ import annotations

import argparse
import sys

from lookalike.commands.common import (
    UsageError,
    add_common_options,
    cache_option,
    existing_inputs,
    method_settings_from_args,
    report_errors,
)


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help="similarity tables (CSV per method + XLSX) for photos",
        description="Compare photos with each other (or with --against photos) by each method "
                    "and write <method>.csv matrices, similarity.xlsx and errors.csv.",
    )
    parser.add_argument("queries", nargs="+", metavar="QUERY", help="image files or folders")
    parser.add_argument("--against", nargs="+", metavar="GALLERY",
                        help="gallery files or folders (default: the queries themselves)")
    parser.add_argument("--methods", "-m", default="all",
                        help="comma-separated methods or 'all' (default: all); see `lookalike methods`")
    parser.add_argument("--output", "-o", required=True, metavar="OUTDIR", help="output folder")
    add_common_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from lookalike.evaluation.compare import compare
    from lookalike.features.registry import parse_methods

    parse_methods(args.methods)  # an unknown method is named first: it is the likelier slip
    queries = existing_inputs(args.queries, args.exclude)
    gallery = existing_inputs(args.against, args.exclude) if args.against else None
    if not queries or gallery == []:
        raise UsageError("no image files found in the given paths")
    result = compare(
        queries, against=gallery, methods=args.methods, gray=args.gray,
        outdir=args.output, cache=cache_option(args), jobs=args.jobs,
        quiet=args.quiet, method_settings=method_settings_from_args(args),
        max_pixels=args.max_pixels,
    )
    if not args.quiet:
        names = ", ".join(f"{name}.csv" for name in result.matrices)
        print(f"wrote {names} and similarity.xlsx to {args.output}", file=sys.stderr)
    return report_errors(result.errors)
