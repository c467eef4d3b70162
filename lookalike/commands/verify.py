"""`lookalike verify`: does each photo show this one landmark of the index? (yes/no)"""

from __future__ import annotations

from lookalike.commands import identify


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "verify", help="does a photo show this landmark? (yes/no with probability and evidence)",
        description="Verify that photos show one landmark of the index.",
    )
    identify.add_answer_options(parser)
    parser.add_argument("--landmark", required=True, metavar="ID", help="landmark id")
    parser.add_argument("--match-picture", metavar="DIR",
                        help="also write a side-by-side picture of the matches per photo")
    parser.set_defaults(handler=identify.run, csv=None)
