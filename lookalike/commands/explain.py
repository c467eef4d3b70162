"""`lookalike explain A B -o match.png`: draw why two photos were judged the same (or not).

The judgement is `verify`'s, for a landmark whose only reference photo is B
(`lookalike.gallery.pair`): the same verdict, probability, inliers and region.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from lookalike.commands.common import (
    EXIT_INPUT_ERRORS,
    EXIT_OK,
    add_common_options,
    cache_from_args,
)


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "explain", help="draw the verified matches between two photos",
        description="Verify photo A against photo B as `verify` does (the preset's methods and "
                    "calibration) and draw the inliers, the region they cover (the shared "
                    "landmark) and any hand-drawn regions.",
    )
    parser.add_argument("photo_a", metavar="A", help="the photo asked about")
    parser.add_argument("photo_b", metavar="B", help="the reference photo")
    parser.add_argument("--output", "-o", required=True, metavar="MATCH.png", help="picture to write")
    parser.add_argument("--regions", metavar="ROI.json",
                        help="sidecar JSON of boxes/polygons per photo (see lookalike.retrieval.focus)")
    parser.add_argument("--json", action="store_true",
                        help="print verify's answer as JSON (verdict, probability, region)")
    parser.add_argument("--threshold", type=float, default=None, metavar="P",
                        help="probability below which the pair is not verified "
                             "(default: the calibration's)")
    parser.add_argument("--calibration", metavar="FILE.json",
                        help="calibration from `evaluate --identify --fit-calibration`")
    add_common_options(parser, gray=False, folders=False, pixels=False)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from lookalike.engines.local import local_extractor
    from lookalike.gallery.identify import Settings
    from lookalike.gallery.pair import explain
    from lookalike.imaging.loading import ImageLoadError

    extract = local_extractor(cache_from_args(args), args.jobs, args.quiet)
    try:
        explanation = explain(args.photo_a, args.photo_b, extract, args.preset, args.regions,
                              Settings(threshold=args.threshold), args.calibration,
                              args.gallery_views)
    except ImageLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERRORS
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    explanation.picture.save(args.output)
    answer = explanation.answer
    if args.json:
        print(json.dumps(answer.to_json(), ensure_ascii=False))
    else:
        best = answer.candidates[0]
        print(f"{'verified' if answer.verified else 'not verified'}: {best.inliers} inliers, "
              f"probability {answer.probability:.3f}")
    if not args.quiet:
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK
