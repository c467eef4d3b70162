"""`lookalike train` on the command line, and the settings that decide a training run.

Kept apart from `lookalike.train` (which needs torch) so that the CLI starts without importing
torch; the training code is imported when the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any


@dataclass
class TrainSettings:
    """Everything that decides the result; saved in the checkpoint and the model file."""

    epochs: int = 150  # one epoch = every photo is an anchor once
    minutes: float | None = None  # stop (and save) once the whole run has taken this long
    seed: int = 0
    batch_size: int = 32
    lr: float = 1e-3
    temperature: float = 0.05
    views: int = 0  # augmented copies per photo; measured no gain on the dev photos (docs)
    short_side: int = 350  # the augnet method's input size; smaller only for quick tests
    view_side: int = 256  # short side of the augmented copies
    pair_prob: float = 0.5  # chance that an anchor with verified partners uses one
    full_prob: float = 0.5  # chance that a view is the whole photo rather than a crop
    neighbours: int = 10  # above `all_pairs_limit` photos, verify only this many neighbours
    all_pairs_limit: int = 200

    def prep_key(self) -> dict[str, Any]:
        """The settings the cached feature maps and pairs depend on."""
        return {"seed": self.seed, "views": self.views, "short_side": self.short_side,
                "view_side": self.view_side, "neighbours": self.neighbours,
                "all_pairs_limit": self.all_pairs_limit}



def run_train(args: argparse.Namespace) -> int:
    from lookalike.cli import UsageError, cache_from_args, report_errors
    from lookalike.train import train

    if args.epochs < 1:
        raise UsageError("--epochs must be at least 1")
    if args.weights:
        raise UsageError("train always starts from imgsim's weights; --weights is for the "
                         "commands that use the trained model")
    settings = TrainSettings(epochs=args.epochs, minutes=args.minutes, seed=args.seed,
                             views=args.views, short_side=args.size)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    try:
        result = train(args.photos, args.output, settings, args.resume, cache_from_args(args),
                       args.jobs, args.quiet)
    except ValueError as error:
        raise UsageError(str(error)) from error
    if not args.quiet:
        first, last = result.losses[0], result.losses[-1]
        print(f"trained {result.epochs_done} epochs on {result.photos} photos "
              f"({result.pairs} verified pairs) in {result.seconds / 60:.1f} min; "
              f"loss {first:.3f} -> {last:.3f}; wrote {args.output} "
              f"(use it with --weights {args.output})", file=sys.stderr)
    return report_errors(result.errors)


def add_command(subparsers) -> None:
    from lookalike.cli import add_common_options

    parser = subparsers.add_parser(
        "train", help="adapt the augnet model to your photos (self-supervised, no labels)",
        description="Fine-tune AugNet's projection head on unlabelled photos: views of the same "
                    "photo and photos verified by geometry to show the same scene must embed "
                    "alike. Writes MODEL.pt for `--weights` (plus MODEL.pt.prep.pt and "
                    "MODEL.pt.ckpt for --resume).",
    )
    parser.add_argument("photos", nargs="+", metavar="PHOTOS", help="image files or folders")
    parser.add_argument("--output", "-o", required=True, metavar="MODEL.pt")
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs,
                        help=f"passes over the photos (default: {TrainSettings.epochs})")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop after this many minutes in all and save what was learnt")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--views", type=int, default=TrainSettings.views,
                        help="augmented copies per photo (default: %(default)s)")
    parser.add_argument("--size", type=int, default=TrainSettings.short_side, metavar="PX",
                        help="short side of the photos while training (default: %(default)s, "
                             "the size augnet embeds at; smaller is faster but less faithful)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from MODEL.pt.ckpt (and reuse MODEL.pt.prep.pt)")
    add_common_options(parser, gray=False)
    parser.set_defaults(handler=run_train)

