"""`lookalike identify`: which landmark of an index each photo shows, if any.

The answers come from `lookalike.gallery.identify` (one `Identifier` per index); this module reads
the options, prints one line or JSON object per photo, and keeps the resumable `--csv` file.
`lookalike verify` (commands/verify.py) shares the options and the run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from lookalike.commands.common import (
    EXIT_INPUT_ERRORS,
    EXIT_OK,
    UsageError,
    add_common_options,
    add_engine_option,
    cache_from_args,
    found_images,
)
from lookalike.features.progress import on_terminal, progress_bar


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "identify", help="which landmark of an index a photo shows, if any",
        description="Identify landmarks: a global shortlist from the index, local geometric "
                    "verification of the best candidates, a calibrated probability per "
                    "landmark; `unknown` when none passes the threshold.",
    )
    add_answer_options(parser)
    parser.add_argument("--csv", metavar="OUT.csv",
                        help="write one row per photo; an interrupted run resumes where it "
                             "stopped. `probability` is the answer's (for unknown: that the "
                             "photo shows none of the candidates); best_candidate and "
                             "best_probability are the likeliest landmark's")
    parser.add_argument("--xmp", action="store_true",
                        help="write PHOTO.xmp beside each photo (digiKam, darktable, Immich, "
                             "PhotoPrism read it): the landmark's names as keywords, its "
                             "location as GPS (unless the photo has its own), the "
                             "probability; the photo is never modified, an existing "
                             "sidecar's other fields are kept; unknown photos get none")
    parser.set_defaults(handler=run, landmark=None, match_picture=None)


def add_answer_options(parser: argparse.ArgumentParser) -> None:
    """The options `identify` and `verify` share."""
    parser.add_argument("photos", nargs="+", metavar="PHOTO", help="photo files or folders")
    parser.add_argument("--index", required=True, metavar="NAME.lkidx", help="gallery index")
    parser.add_argument("--json", action="store_true", help="one JSON object per photo")
    parser.add_argument("--threshold", type=float, default=None, metavar="P",
                        help="probability below which the answer is no/unknown "
                             "(default: the calibration's)")
    parser.add_argument("--top", type=int, default=3, metavar="N", help="candidates reported")
    parser.add_argument("--use-gps", action="store_true",
                        help="let a photo's EXIF GPS position count as evidence (far = unlikely)")
    parser.add_argument("--gps-radius", type=float, default=1.0, metavar="KM",
                        help="distance within which GPS never counts against (default 1 km)")
    parser.add_argument("--use-text", action="store_true",
                        help="read the photo's text (OCR) and count as evidence a landmark's "
                             "names read, its landmark.json inscriptions, and the text the index "
                             "learned from its references (`index build --read-text`), each "
                             "with its fitted log-odds")
    parser.add_argument("--calibration", metavar="FILE.json",
                        help="calibration from `evaluate --identify --fit-calibration`")
    add_engine_option(parser, "local processes (default) or a Ray cluster (RAY_ADDRESS)")
    parser.add_argument("--shards", type=int, metavar="N",
                        help="with --engine ray: search the index's N shards, one Ray actor "
                             "each (default: the shards `index build --shards` wrote, if any)")
    add_common_options(parser)


def settings_from_args(args: argparse.Namespace):
    """The identify settings the options ask for."""
    from lookalike.gallery.identify import Settings

    return Settings(top=args.top, threshold=args.threshold, use_gps=args.use_gps,
                    gps_radius_km=args.gps_radius, use_text=args.use_text,
                    max_pixels=args.max_pixels)


def run(args: argparse.Namespace) -> int:
    """Answer every photo (identify, or verify with `args.landmark`); exit 2 if any failed."""
    paths = found_images(args.photos, args.exclude)
    identifier = open_identifier(args)
    names = identifier.names()
    results = ResultsCsv(args.csv, args.quiet) if getattr(args, "csv", None) else None
    sidecars = Sidecars(identifier) if getattr(args, "xmp", False) else None
    todo = [path for path in paths if results is None or path not in results.done]
    errors: dict[str, str] = {}
    # Answers printed one by one on a terminal show the run is alive; into a CSV or a log,
    # the progress bar or its plain lines do.
    progress = progress_bar(len(todo), "answered", args.quiet or (results is None and
                                                                  on_terminal()),
                            unit="photos")
    try:
        for photo, answer, error in answers(args, identifier, todo):
            progress.update(1)
            if results is not None:
                results.write(photo, answer, error, names)
            if answer is None:
                errors[photo] = error or "failed"
            elif sidecars is not None:
                error = sidecars.write(photo, answer)
                if error:
                    errors[photo] = error
            show(args, identifier, photo, answer, errors.get(photo), names,
                 to_terminal=results is None)
    finally:
        progress.close()
        if results is not None:
            results.close()
    if results is not None and not args.quiet:
        print(f"wrote {len(todo) - len(errors)} answer(s) to {args.csv}", file=sys.stderr)
    if sidecars is not None and not args.quiet:
        print(f"wrote {sidecars.written} XMP sidecar(s) beside the photos", file=sys.stderr)
    for photo, reason in sorted(errors.items()):
        print(f"error: {photo}: {reason}", file=sys.stderr)
    return EXIT_INPUT_ERRORS if errors else EXIT_OK


def open_identifier(args: argparse.Namespace):
    """The index opened for answering, after checking what the options need of it."""
    from lookalike.gallery.identify import Identifier
    from lookalike.retrieval.presets import get_preset

    if args.preset is not None:
        get_preset(args.preset)  # an unknown name is a usage error, as in `index build`
    identifier = Identifier(args.index, settings_from_args(args), args.calibration)
    check_preset(args.preset, identifier.index.preset, args.index)
    if args.use_text:
        from lookalike.ocr.reader import OcrUnavailable, check_available

        try:
            check_available()
        except OcrUnavailable as error:
            raise UsageError(f"--use-text needs OCR: {error}") from None
    if args.landmark is not None and args.landmark not in identifier.names():
        raise UsageError(f"no landmark {args.landmark!r} in {args.index}; "
                         f"choose from: {', '.join(identifier.names())}")
    return identifier


def check_preset(asked: str | None, built_with: str | None, index: str) -> None:
    """The index decides the pipeline (its methods are recorded in it): `--preset` may only
    name the preset it was built with; another is refused rather than ignored."""
    if asked is None or asked == built_with:
        return
    built = f"preset {built_with!r}" if built_with else "custom methods (--global/--local)"
    raise UsageError(f"{index} was built with {built}, not preset {asked!r}; the index "
                     f"decides the pipeline. Leave --preset out, or build an index of that "
                     f"preset: lookalike index build GALLERY -o {asked}.lkidx --preset {asked}")


def answers(args: argparse.Namespace, identifier, photos: list[str]) -> Iterable[tuple]:
    """(photo, answer or None, error) per photo, from the engine the options name."""
    if args.shards is not None and (args.engine != "ray" or args.shards < 1):
        raise UsageError("--shards N (a positive count) goes with --engine ray")
    if args.engine == "ray":
        from lookalike.engines.ray import ray_identify, ray_identify_sharded
        from lookalike.gallery.shortlist import shards_of

        shards = args.shards or shards_of(args.index)
        if shards:
            return ray_identify_sharded(args.index, photos, identifier.settings, shards,
                                        args.landmark, calibration=args.calibration)
        return ray_identify(args.index, photos, identifier.settings, args.landmark,
                            calibration=args.calibration)
    from lookalike.engines.local import local_extractor
    from lookalike.gallery.batch import identify_many

    cache = cache_from_args(args)
    extract = local_extractor(cache, args.jobs, args.quiet, args.max_pixels)
    return identify_many(identifier, photos, extract,
                         args.landmark, cache, args.jobs, args.quiet)


def show(args: argparse.Namespace, identifier, photo: str, answer, error: str | None,
         names: dict, to_terminal: bool) -> None:
    """Print one photo's answer (or its error, with --json) and draw its match if asked."""
    if answer is None:
        if args.json:  # a failed photo is an answer too, with its error
            print(json.dumps({"photo": photo, "error": error}, ensure_ascii=False), flush=True)
        return
    if args.json:
        print(json.dumps(answer.to_json(), ensure_ascii=False), flush=True)
    elif to_terminal:
        print(describe(answer, names), flush=True)
    if args.match_picture:
        write_match_picture(identifier, answer, photo, args.match_picture)


def describe(answer, names: dict[str, dict[str, str]]) -> str:
    """One line a person reads: the landmark (or yes/no) with its probability and inliers."""
    from lookalike.gallery.answers import UNKNOWN

    def label(landmark: str) -> str:
        return (names.get(landmark) or {}).get("en") or landmark

    best = answer.candidates[0] if answer.candidates else None
    if answer.verified is not None:
        verdict = "yes" if answer.verified else "no"
        return f"{answer.photo}: {verdict} ({label(answer.landmark)}, p={answer.probability:.2f}" \
               f", {best.inliers if best else 0} inliers)"
    if answer.landmark == UNKNOWN:
        hint = f"; best {label(best.landmark)} p={best.probability:.2f}" if best else ""
        return f"{answer.photo}: unknown{hint}"
    distance = f", {best.distance_km:.1f} km away" if best and best.distance_km is not None else ""
    return f"{answer.photo}: {label(answer.landmark)} (p={answer.probability:.2f}, " \
           f"{best.inliers if best else 0} inliers{distance})"


def write_match_picture(identifier, answer, photo: str, folder: str) -> None:
    """FOLDER/<photo>--<landmark>.png: the photo and its best reference, inliers joined."""
    from lookalike.imaging.loading import ImageLoadError, LoadOptions, decode_image, read_bytes

    try:
        image = decode_image(read_bytes(photo), photo, LoadOptions())
    except ImageLoadError:
        return
    picture = identifier.match_picture(answer, image)
    if picture is not None:
        os.makedirs(folder, exist_ok=True)
        picture.save(Path(folder) / f"{Path(photo).stem}--{answer.landmark}.png")


class Sidecars:
    """`--xmp`: each answer into PHOTO.xmp (`lookalike.gallery.xmp`)."""

    def __init__(self, identifier):
        from lookalike import __version__

        self.landmarks = identifier.index.landmarks
        self.version = __version__
        self.written = 0

    def write(self, photo: str, answer) -> str | None:
        """Write one photo's sidecar; the reason it failed, or None."""
        from lookalike.gallery.answers import UNKNOWN
        from lookalike.gallery.xmp import SidecarError, landmark_fields, write_sidecar

        fields = None
        if answer.landmark != UNKNOWN and answer.verified is None:
            landmark = self.landmarks.get(answer.landmark)
            names = landmark.names if landmark is not None else {}
            location = landmark.location if landmark is not None else None
            fields = landmark_fields(answer.landmark, names, location, answer.probability,
                                     self.version, photo_has_gps=answer.gps is not None)
        try:
            if write_sidecar(photo, fields) is not None:
                self.written += 1
        except SidecarError as error:
            return str(error)
        return None


class ResultsCsv:
    """The `--csv` results file: appended to photo by photo, so a stopped run resumes."""

    def __init__(self, path: str, quiet: bool):
        from lookalike.gallery.batch import CSV_COLUMNS, done_in_csv

        try:
            self.done = done_in_csv(path)
        except ValueError as error:
            raise UsageError(str(error)) from None
        fresh = not os.path.isfile(path) or os.path.getsize(path) == 0
        self.handle = open(path, "a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.handle)
        if fresh:
            self.writer.writerow(CSV_COLUMNS)
        if self.done and not quiet:
            print(f"resuming: {len(self.done)} photo(s) already in {path}", file=sys.stderr)

    def write(self, photo: str, answer, error: str | None, names: dict) -> None:
        from lookalike.gallery.batch import csv_row

        self.writer.writerow(csv_row(photo, answer, error, names))
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()
