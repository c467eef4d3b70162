"""The `lookalike` command line: argument parsing at the edge, work in the library.

Exit codes: 0 all well, 1 usage error, 2 some inputs could not be read (listed on stderr).
Commands of other concerns live beside their code: a module listed in `COMMAND_MODULES`
defines `add_command(subparsers)`, which registers its parser and sets `handler`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

import numpy as np

EXIT_OK, EXIT_USAGE, EXIT_INPUT_ERRORS = 0, 1, 2

# Modules that add their own subcommands (see `add_command` in each).
COMMAND_MODULES: list[str] = ["lookalike.evaluation", "lookalike.index", "lookalike.identify",
                              "lookalike.server", "lookalike.ocr_command", "lookalike.explain",
                              "lookalike.calibrate", "lookalike.train_command",
                              "lookalike.group_command"]


class UsageError(Exception):
    """A mistake in how the command was called; printed without a traceback, exit code 1."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with our exit code for usage errors: argparse's own 2 would read as "some
    inputs could not be read". Subcommand parsers are made of this class too."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def add_common_options(parser: argparse.ArgumentParser, gray: bool = True,
                       deep: bool = True) -> None:
    """Options every feature-extracting command shares (`deep`: it runs the deep methods, so
    `--weights` and `--device` mean something to it)."""
    group = parser.add_argument_group("common options")
    if gray:
        group.add_argument("--gray", action="store_true",
                           help="convert photos to grayscale before every method")
    group.add_argument("--cache", metavar="PATH",
                       help="feature cache file (default: ~/.cache/lookalike/features.sqlite)")
    group.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    group.add_argument("--jobs", "-j", type=int, default=default_jobs(), metavar="N",
                       help="parallel workers (default: number of CPU cores)")
    group.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    group.add_argument("--progress", action="store_true",
                       help="progress bars even when stderr is not a terminal (default: only "
                            "on a terminal)")
    if deep:
        group.add_argument("--weights", metavar="MODEL.pt",
                           help="fine-tuned AugNet weights from `lookalike train` for augnet")
        group.add_argument("--device", default=None, metavar="DEV",
                           help="torch device for deep methods: auto (default), cpu, cuda, cuda:1")
        group.add_argument("--preset", default=None, metavar="NAME",
                           help="pipeline for fused, index and evaluate --identify: fast, "
                                "default or accurate (see `lookalike presets`)")


def existing_inputs(paths: Sequence[str] | None) -> list[str]:
    """The image files in `paths` (files and folders); a path that does not exist is a usage
    error, raised before any work or output, rather than a file reported unreadable."""
    from lookalike.loading import find_images

    missing = [path for path in paths or [] if not os.path.lexists(path)]
    if missing:
        raise UsageError(f"{missing[0]}: no such file or folder"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return find_images(paths or [])


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cache_from_args(args: argparse.Namespace):
    from lookalike.compare import open_cache

    return open_cache(False if args.no_cache else args.cache)


def method_settings_from_args(args: argparse.Namespace) -> dict:
    return {"weights": getattr(args, "weights", None), "device": getattr(args, "device", None),
            "preset": getattr(args, "preset", None)}


def report_errors(errors: dict[str, str]) -> int:
    """Print each unreadable file on stderr; the exit code says whether any failed."""
    for path, reason in sorted(errors.items()):
        print(f"error: {path}: {reason}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} file(s) could not be used; the run went on without them",
              file=sys.stderr)
        return EXIT_INPUT_ERRORS
    return EXIT_OK


# -- compare ---------------------------------------------------------------------------------------
def run_compare(args: argparse.Namespace) -> int:
    from lookalike.compare import compare
    from lookalike.methods import parse_methods

    parse_methods(args.methods)  # an unknown method is named first: it is the likelier slip
    queries = existing_inputs(args.queries)
    gallery = existing_inputs(args.against) if args.against else None
    if not queries or gallery == []:
        raise UsageError("no image files found in the given paths")
    result = compare(
        queries, against=gallery, methods=args.methods, gray=args.gray,
        outdir=args.output, cache=False if args.no_cache else args.cache, jobs=args.jobs,
        quiet=args.quiet, method_settings=method_settings_from_args(args),
    )
    if not args.quiet:
        names = ", ".join(f"{name}.csv" for name in result.matrices)
        print(f"wrote {names} and similarity.xlsx to {args.output}", file=sys.stderr)
    return report_errors(result.errors)


# -- features --------------------------------------------------------------------------------------
def run_features(args: argparse.Namespace) -> int:
    from lookalike.features import extract_features
    from lookalike.methods import BITS, VECTOR, get_method

    method = get_method(args.method, gray=args.gray, **method_settings_from_args(args))
    if method.feature_kind not in (BITS, VECTOR):
        raise UsageError(
            f"{method.name} features are sets of local keypoints, not fixed-length vectors; "
            "nothing to export as a matrix (use `compare` to score them)"
        )
    paths = existing_inputs(args.images)
    if not paths:
        raise UsageError("no image files found in the given paths")
    features = extract_features(method, paths, cache_from_args(args), args.jobs, args.quiet)
    dtype = np.uint8 if method.feature_kind == BITS else np.float32
    width = len(features.features[0]) if features.features else 0
    matrix = np.stack(features.features).astype(dtype) if features.features else np.zeros((0, width), dtype)
    output = args.output if args.output.endswith(".npz") else args.output + ".npz"
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    np.savez(output, paths=np.array(features.paths, dtype=str), features=matrix)
    if not args.quiet:
        print(f"wrote {matrix.shape[0]} x {matrix.shape[1]} {method.label()} features to {output}",
              file=sys.stderr)
    return report_errors(features.errors)


# -- methods ---------------------------------------------------------------------------------------
def run_methods(args: argparse.Namespace) -> int:
    from lookalike.methods import method_classes

    for name, cls in method_classes().items():
        print(f"{name:<10} {cls.role:<8} {cls.description}")
    return EXIT_OK


def run_presets(args: argparse.Namespace) -> int:
    from lookalike.presets import DEFAULT_PRESET, PRESETS

    for preset in PRESETS.values():
        mark = " (default)" if preset.name == DEFAULT_PRESET else ""
        print(f"{preset.name:<9} global {preset.global_method} {preset.global_settings}, "
              f"local {preset.local_method} {preset.local_settings}, shortlist "
              f"{preset.shortlist}{mark}\n          {preset.description}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from lookalike import __version__

    parser = ArgumentParser(
        prog="lookalike",
        description="Offline landmark similarity and recognition: does this photo show this "
                    "landmark, and which landmark is it?",
        epilog="Run `lookalike COMMAND --help` for each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"lookalike {__version__}")
    parser.add_argument("--verbose", "-v", action="store_true", help="log more detail")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=ArgumentParser)

    compare = subparsers.add_parser(
        "compare", help="similarity tables (CSV per method + XLSX) for photos",
        description="Compare photos with each other (or with --against photos) by each method "
                    "and write <method>.csv matrices, similarity.xlsx and errors.csv.",
    )
    compare.add_argument("queries", nargs="+", metavar="QUERY", help="image files or folders")
    compare.add_argument("--against", nargs="+", metavar="GALLERY",
                         help="gallery files or folders (default: the queries themselves)")
    compare.add_argument("--methods", "-m", default="all",
                         help="comma-separated methods or 'all' (default: all); see `lookalike methods`")
    compare.add_argument("--output", "-o", required=True, metavar="OUTDIR", help="output folder")
    add_common_options(compare)
    compare.set_defaults(handler=run_compare)

    features = subparsers.add_parser(
        "features", help="export one method's features to .npz",
        description="Export features with their paths: arrays `paths` (N strings) and "
                    "`features` (N x D float32 for vectors, N x bits uint8 0/1 for hashes).",
    )
    features.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    features.add_argument("--method", "-m", required=True, help="method name")
    features.add_argument("--output", "-o", required=True, metavar="FEATURES.npz")
    add_common_options(features)
    features.set_defaults(handler=run_features)

    methods = subparsers.add_parser(
        "methods", help="list the available methods",
        description="List methods: name, role (global descriptor, local matcher or pairwise "
                    "score), description.")
    methods.set_defaults(handler=run_methods)

    presets = subparsers.add_parser(
        "presets", help="list the named pipelines (--preset)",
        description="List presets: which global descriptor shortlists and which local matcher "
                    "verifies.")
    presets.set_defaults(handler=run_presets)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "progress", False) or "lookalike.features" in sys.modules:
        from lookalike import features  # not imported otherwise: `methods` need not pay for it

        features.FORCE_PROGRESS = True if getattr(args, "progress", False) else None
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    from lookalike.extras import MissingExtra
    from lookalike.learned import WeightsMissing
    from lookalike.methods import UnknownMethodError

    try:
        return args.handler(args)
    except (UsageError, UnknownMethodError, FileNotFoundError, MissingExtra,
            WeightsMissing) as error:
        print(f"lookalike {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
