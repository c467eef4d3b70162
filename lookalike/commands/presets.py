"""`lookalike presets`: the named pipelines that `--preset` chooses from."""

from __future__ import annotations

import argparse

from lookalike.commands.common import EXIT_OK


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "presets", help="list the named pipelines (--preset)",
        description="List presets: which global descriptor shortlists and which local matcher "
                    "verifies.")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from lookalike.retrieval.presets import DEFAULT_PRESET, PRESETS

    for preset in PRESETS.values():
        mark = " (default)" if preset.name == DEFAULT_PRESET else ""
        print(f"{preset.name:<9} global {preset.global_method} {preset.global_settings}, "
              f"local {preset.local_method} {preset.local_settings}, shortlist "
              f"{preset.shortlist}{mark}\n          {preset.description}")
    return EXIT_OK
