"""What every command shares: exit codes, the common options and errors turned into exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from lookalike.errors import InputError

EXIT_OK, EXIT_USAGE, EXIT_INPUT_ERRORS = 0, 1, 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A mistake in how the command was called; printed without a traceback, exit code 1."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with our exit code for usage errors: argparse's own 2 would read as "some
    inputs could not be read". Subcommand parsers are made of this class too."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def run_handler(args: argparse.Namespace) -> int:
    """Run the parsed command; a caller's mistake is one line on stderr and exit code 1."""
    try:
        return args.handler(args)
    except (UsageError, InputError, FileNotFoundError) as error:
        print(f"lookalike {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def add_common_options(parser: argparse.ArgumentParser, gray: bool = True,
                       deep: bool = True, folders: bool = True, pixels: bool = True,
                       views: bool = True) -> None:
    """Options every feature-extracting command shares (`deep`: it runs the deep methods, so
    `--weights` and `--device` mean something to it; `folders`: it walks folders of photos
    and honours `--exclude`; `pixels`: it honours `--max-pixels`; `views`: it describes
    gallery photos, `--views`)."""
    from lookalike.imaging.limits import DEFAULT_MAX_PIXELS

    group = parser.add_argument_group("common options")
    if gray:
        group.add_argument("--gray", action="store_true",
                           help="convert photos to grayscale before every method")
    group.add_argument("--cache", metavar="PATH",
                       help="feature cache file (default: ~/.cache/lookalike/features.sqlite)")
    group.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    group.add_argument("--jobs", "-j", type=int, default=default_jobs(), metavar="N",
                       help="parallel workers (default: number of CPU cores)")
    group.add_argument("--quiet", "-q", action="store_true",
                       help="no progress bars or progress lines")
    group.add_argument("--progress", action="store_true",
                       help="progress bars even when stderr is not a terminal (default: a bar "
                            "on a terminal, else a plain line every "
                            "LOOKALIKE_PROGRESS_SECONDS=10 seconds)")
    if pixels:
        group.add_argument("--max-pixels", type=pixel_count, default=DEFAULT_MAX_PIXELS,
                           metavar="N",
                           help=f"refuse photos of more pixels than this, a guard against "
                                f"decompression bombs (default {DEFAULT_MAX_PIXELS:_}, "
                                f"200 Mpx; 0: no limit)")
    if folders:
        group.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                           help="inside folders, skip files and folders whose name or path "
                                "below the given folder matches GLOB (repeatable), e.g. "
                                "'Screenshots', '2019/*', '*.png'; NAS and system folders "
                                "(@eaDir, #recycle, .Trash-*, ...) and hidden ones are always "
                                "skipped")
    if deep:
        group.add_argument("--weights", metavar="MODEL.pt",
                           help="fine-tuned AugNet weights from `lookalike train` for augnet")
        group.add_argument("--device", default=None, metavar="DEV",
                           help="torch device for deep methods: auto (default), cpu, cuda, cuda:1")
        group.add_argument("--preset", default=None, metavar="NAME",
                           help="pipeline for fused, index and evaluate --identify: fast, "
                                "default or accurate (see `lookalike presets`); identify and "
                                "verify use their index's and accept only that one")
    if deep and views:
        group.add_argument("--views", dest="gallery_views", choices=("whole", "tiles"),
                           default=None,
                           help="how the learned local features (aliked, asmk, fused, index "
                                "build) describe a gallery photo: whole (default) or tiles (the "
                                "whole photo + 2 x 2 overlapping tiles at 1.67x the resolution, "
                                "for small and distant landmarks); queries stay whole; "
                                "identify and verify use their index's")


def add_engine_option(parser: argparse.ArgumentParser, help: str) -> None:
    """`--engine local|ray`: where features are extracted (`lookalike.engines`)."""
    from lookalike.engines import COMPUTE_ENGINES

    parser.add_argument("--engine", choices=COMPUTE_ENGINES, default="local", help=help)


def pixel_count(text: str) -> int:
    """`--max-pixels`: a whole number of pixels (underscores allowed), 0 for no limit."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of pixels: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (no limit) or more")
    return value


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def existing_inputs(paths: Sequence[str] | None, exclude: Sequence[str] = ()) -> list[str]:
    """The image files in `paths` (files and folders, less what `exclude` globs match); a path
    that does not exist is a usage error, raised before any work or output, rather than a file
    reported unreadable."""
    from lookalike.imaging.loading import find_images

    missing = [path for path in paths or [] if not os.path.lexists(path)]
    if missing:
        raise UsageError(f"{missing[0]}: no such file or folder"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return find_images(paths or [], exclude)


def found_images(paths: Sequence[str], exclude: Sequence[str] = ()) -> list[str]:
    """The image files in `paths` (less what `exclude` globs match); none at all is a usage
    error."""
    from lookalike.imaging.loading import find_images

    found = find_images(paths, exclude)
    if not found:
        raise UsageError("no image files found in the given paths")
    return found


def cache_from_args(args: argparse.Namespace):
    """The feature cache the options ask for (`--cache PATH`, `--no-cache`)."""
    from lookalike.features.cache import open_cache

    return open_cache(False if args.no_cache else args.cache)


def cache_option(args: argparse.Namespace):
    """`--cache`/`--no-cache` as the library's `cache` argument (opened by the library)."""
    return False if args.no_cache else args.cache


def method_settings_from_args(args: argparse.Namespace) -> dict:
    """The common options (`--weights`, `--device`, `--preset`, `--views`) as `get_method`'s shared
    settings: each applies to the methods that have it."""
    return {"weights": getattr(args, "weights", None), "device": getattr(args, "device", None),
            "preset": getattr(args, "preset", None),
            "views": getattr(args, "gallery_views", None)}


def report_errors(errors: dict[str, str]) -> int:
    """Print each unreadable file on stderr; the exit code says whether any failed."""
    for path, reason in sorted(errors.items()):
        print(f"error: {path}: {reason}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} file(s) could not be used; the run went on without them",
              file=sys.stderr)
        return EXIT_INPUT_ERRORS
    return EXIT_OK
