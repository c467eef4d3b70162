"""`lookalike methods`: the registered methods, one line each (name, role, description)."""

from __future__ import annotations

import argparse

from lookalike.commands.common import EXIT_OK


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "methods", help="list the available methods",
        description="List methods: name, role (global descriptor, local matcher or pairwise "
                    "score), description.")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from lookalike.features.registry import method_classes

    for name, cls in method_classes().items():
        print(f"{name:<10} {cls.role:<8} {cls.description}")
    return EXIT_OK
