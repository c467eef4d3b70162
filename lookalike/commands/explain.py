"""`lookalike explain A B -o match.png`: draw why two photos were judged the same (or not)."""

from __future__ import annotations

import argparse
import os
import sys

from lookalike.commands.common import EXIT_INPUT_ERRORS, EXIT_OK, add_common_options, cache_option


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain", help="draw the verified matches between two photos",
        description="Verify two photos with the preset's local matcher (ALIKED by default) and "
                    "draw the inliers, the region they cover (the shared landmark) and any "
                    "hand-drawn regions.",
    )
    parser.add_argument("photo_a", metavar="A", help="first photo")
    parser.add_argument("photo_b", metavar="B", help="second photo")
    parser.add_argument("--output", "-o", required=True, metavar="MATCH.png", help="picture to write")
    parser.add_argument("--regions", metavar="ROI.json",
                        help="sidecar JSON of boxes/polygons per photo (see lookalike.retrieval.focus)")
    parser.add_argument("--no-fused", action="store_true",
                        help="skip the fused probability (only the local matcher is run)")
    add_common_options(parser, gray=False, folders=False, pixels=False)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from lookalike.imaging.loading import ImageLoadError
    from lookalike.retrieval.explain import explain

    try:
        explanation = explain(args.photo_a, args.photo_b, args.regions, cache=cache_option(args),
                              with_probability=not args.no_fused, preset=args.preset)
    except ImageLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERRORS
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    explanation.picture.save(args.output)
    result = explanation.result
    line = f"{'verified' if result.verified else 'not verified'}: {result.inliers} inliers"
    if explanation.probability is not None:
        line += f", fused probability {explanation.probability:.3f}"
    print(line)
    if not args.quiet:
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK
