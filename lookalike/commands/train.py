"""`lookalike train`: adapt AugNet to a photo collection without labels (`lookalike.training.train`).

The training code needs torch, so it is imported only when the command runs; its settings
(`lookalike.training.settings.TrainSettings`) are not, so `--help` shows their defaults at no cost.
"""

from __future__ import annotations

import argparse
import os
import sys

from lookalike.commands.common import (
    UsageError,
    add_common_options,
    cache_from_args,
    report_errors,
)
from lookalike.training.settings import TrainSettings


def add_command(subparsers) -> None:
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
    add_common_options(parser, gray=False, folders=False, pixels=False, views=False)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from lookalike.training.train import train

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
