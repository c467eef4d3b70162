"""`lookalike ocr PHOTO...`: print the text read from each photo, one JSON object per line.

    {"photo": "...", "engine": "scene", "text": "<all text, normalised>",
     "lines": [{"text", "raw", "box": [left, top, right, bottom], "confidence", "vertical",
                "alternatives"}]}

`--ocr-engine scene` (default: PP-OCR scene text) or `tesseract`. With `--landmark
landmark.json` each object also says how well the text names that landmark (`"match":
{"score", "name", "matched", "similarity", "confidence", "log_odds"}`: the calibrated
evidence, the share of the name found, the recogniser's confidence in that reading, and the
log-odds it adds in identify); with `--draw OUTDIR` an annotated PNG per photo is written.
Reads go through the `text` method, so they are cached like every other feature.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from lookalike.commands.common import (
    EXIT_INPUT_ERRORS,
    EXIT_OK,
    UsageError,
    add_common_options,
    cache_from_args,
    found_images,
)


def add_command(subparsers) -> None:
    from lookalike.ocr.engine import DEFAULT_ENGINE, OCR_ENGINES

    parser = subparsers.add_parser(
        "ocr", help="read signboard text (Japanese and English) from photos",
        description="Read the text in photos (Japanese across and down, English) with a "
                    "scene-text reader (PP-OCR, default) or Tesseract, and print one JSON "
                    "object per photo: photo, text (normalised), lines (text, box [left, top, "
                    "right, bottom] in pixels, confidence 0..1).",
    )
    parser.add_argument("photos", nargs="+", metavar="PHOTO", help="image files or folders")
    parser.add_argument("--draw", metavar="OUTDIR",
                        help="also write each photo with its text boxes drawn, as OUTDIR/<name>.png")
    parser.add_argument("--landmark", metavar="LANDMARK.json",
                        help="report how well the text names this landmark (its names/aliases)")
    parser.add_argument("--ocr-engine", choices=OCR_ENGINES, default=DEFAULT_ENGINE,
                        help="scene: PP-OCR scene-text models on onnxruntime (default); "
                             "tesseract: classic text detection, then Tesseract")
    parser.add_argument("--min-confidence", type=float, default=None, metavar="C",
                        help="show only lines read with at least this confidence (0..1; "
                             "default the engine's: scene 0.5, tesseract 0.55)")
    add_common_options(parser, gray=False, deep=False)  # OCR runs no network: no --weights
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from lookalike.features.extract import extract_features
    from lookalike.features.registry import get_method
    from lookalike.ocr import reader as ocr

    paths = found_images(args.photos, args.exclude)
    names = landmark_names_from_args(args)
    try:
        ocr.check_available(args.ocr_engine)
    except ocr.OcrUnavailable as error:
        raise UsageError(str(error)) from None
    method = get_method("text", engine=args.ocr_engine, min_confidence=args.min_confidence)
    features = extract_features(method, paths, cache_from_args(args), args.jobs, args.quiet,
                                args.max_pixels)
    errors = dict(features.errors)
    if args.draw:
        os.makedirs(args.draw, exist_ok=True)
    for path, feature in zip(features.paths, features.features):
        print(json.dumps(reading_record(path, feature, args.ocr_engine, names),
                         ensure_ascii=False), flush=True)
        if args.draw:
            error = draw_reading(path, feature, args.draw)
            if error:
                errors[path] = error
    for path, reason in sorted(errors.items()):
        print(f"error: {path}: {reason}", file=sys.stderr)
    return EXIT_INPUT_ERRORS if errors else EXIT_OK


def landmark_names_from_args(args: argparse.Namespace) -> list[str] | None:
    """The names and aliases of `--landmark`, or None without it."""
    from lookalike.ocr.evidence import load_landmark_names

    if not args.landmark:
        return None
    try:
        return load_landmark_names(args.landmark)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {args.landmark}: {error}") from None


def reading_record(path: str, feature, engine: str, names) -> dict:
    """The JSON object printed for one photo (with `match` when a landmark was given)."""
    from lookalike.ocr.evidence import feature_lines, feature_text, match_names, text_log_odds

    record = {"photo": path, "engine": engine, "text": feature_text(feature),
              "lines": [line.to_json() for line in feature_lines(feature)]}
    if names is not None:
        match = match_names(feature, names)
        record["match"] = None if match is None else {
            "score": round(match.score, 3), "name": match.name, "matched": match.matched,
            "similarity": round(match.similarity, 3), "confidence": round(match.confidence, 3),
            "log_odds": round(text_log_odds(match.score), 3)}
    return record


def draw_reading(path: str, feature, folder: str) -> str | None:
    """FOLDER/<name>.png with the text boxes drawn; the reason when the photo cannot be read."""
    from lookalike.imaging.loading import ImageLoadError, LoadOptions, load_image
    from lookalike.ocr import reader as ocr
    from lookalike.ocr.evidence import feature_lines

    try:
        image = load_image(path, LoadOptions())
    except ImageLoadError as error:
        return error.reason
    stem = os.path.splitext(os.path.basename(path))[0]
    ocr.draw_text_boxes(image, feature_lines(feature)).save(os.path.join(folder, f"{stem}.png"))
    return None
