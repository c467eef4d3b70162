"""`lookalike features`: one method's features of many photos, exported as a `.npz` matrix."""

from __future__ import annotations

import argparse
import os
import sys

from lookalike.commands.common import (
    UsageError,
    add_common_options,
    cache_from_args,
    existing_inputs,
    method_settings_from_args,
    report_errors,
)


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "features", help="export one method's features to .npz",
        description="Export features with their paths: arrays `paths` (N strings) and "
                    "`features` (N x D float32 for vectors, N x bits uint8 0/1 for hashes).",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    parser.add_argument("--method", "-m", required=True, help="method name")
    parser.add_argument("--output", "-o", required=True, metavar="FEATURES.npz")
    add_common_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from lookalike.features.contract import BITS, VECTOR
    from lookalike.features.extract import extract_features
    from lookalike.features.registry import get_method

    method = get_method(args.method, method_settings_from_args(args), gray=args.gray)
    if method.feature_kind not in (BITS, VECTOR):
        raise UsageError(
            f"{method.name} features are sets of local keypoints, not fixed-length vectors; "
            "nothing to export as a matrix (use `compare` to score them)"
        )
    paths = existing_inputs(args.images, args.exclude)
    if not paths:
        raise UsageError("no image files found in the given paths")
    features = extract_features(method, paths, cache_from_args(args), args.jobs, args.quiet,
                                args.max_pixels)
    dtype = np.uint8 if method.feature_kind == BITS else np.float32
    width = len(features.features[0]) if features.features else 0
    matrix = np.stack(features.features).astype(dtype) if features.features \
        else np.zeros((0, width), dtype)
    output = args.output if args.output.endswith(".npz") else args.output + ".npz"
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    np.savez(output, paths=np.array(features.paths, dtype=str), features=matrix)
    if not args.quiet:
        print(f"wrote {matrix.shape[0]} x {matrix.shape[1]} {method.label()} features to {output}",
              file=sys.stderr)
    return report_errors(features.errors)
