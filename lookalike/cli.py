"""The `lookalike` command line: assembles the commands of `lookalike/commands/`.

Each command is one module there, with its parser (`add_command`) and its `run`; this file
only lists them, builds the top-level parser and runs the chosen one. Exit codes: 0 all
well, 1 usage error, 2 some inputs could not be read (listed on stderr).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from lookalike.commands.common import ArgumentParser, run_handler
from lookalike.features import progress

# The commands, in the order `lookalike --help` lists them: module lookalike.commands.NAME.
COMMANDS: tuple[str, ...] = (
    "compare", "features", "methods", "presets", "evaluate", "index", "identify", "verify",
    "serve", "ocr", "explain", "calibrate", "train", "group",
)


def build_parser() -> argparse.ArgumentParser:
    from lookalike import __version__

    parser = ArgumentParser(
        prog="lookalike",
        description="Offline landmark similarity and recognition: does this photo show this "
                    "landmark, and which landmark is it?",
        epilog="Run `lookalike COMMAND --help` for each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"lookalike {__version__}")
    parser.add_argument("--verbose", "-v", action="count", default=0,
                        help="log more detail (-vv: debug detail, e.g. each folder skipped)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=ArgumentParser)
    for name in COMMANDS:
        importlib.import_module(f"lookalike.commands.{name}").add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress.configure(True if getattr(args, "progress", False) else None,
                       f"lookalike {args.command}")

    levels = {0: logging.WARNING, 1: logging.INFO}
    logging.basicConfig(level=levels.get(args.verbose, logging.DEBUG),
                        format="%(levelname)s: %(message)s")
    return run_handler(args)


if __name__ == "__main__":
    sys.exit(main())
