"""`lookalike group PHOTOS -o OUTDIR`: sort an unlabelled collection into landmark groups.

Writes OUTDIR/groups.csv (photo, group, near_duplicate_set, keep), OUTDIR/index.html with a
contact sheet per group (thumbnails in OUTDIR/thumbs/, no network needed), errors.csv when a
file could not be read, and with `--into-gallery DIR` a folder per group ready for
`lookalike index build DIR`. How the groups are found: `lookalike.grouping.groups`.
"""

from __future__ import annotations

import argparse
import os
import sys

from lookalike.commands.common import (
    UsageError,
    add_common_options,
    add_engine_option,
    cache_from_args,
    existing_inputs,
    report_errors,
)


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "group", help="find the landmarks in unlabelled photos: groups, near-duplicates",
        description="Group photos by landmark without labels. Each photo is ranked against "
                    "the collection by the preset's pipeline (global shortlist, local "
                    "verification, calibrated probability); two photos are linked when each "
                    "gives the other a probability of at least --threshold, and linked photos "
                    "form a group (a lone weak link between two parts is cut). Inside a "
                    "group, near-duplicates (the same shot re-saved or resized) form sets "
                    "with the one to keep: the most pixels, then the sharpest.",
        epilog="Outputs: OUTDIR/groups.csv (photo, group ('' = linked to no other photo), "
               "near_duplicate_set, keep 1/0), OUTDIR/index.html and <group>.html contact "
               "sheets, OUTDIR/errors.csv for unreadable files. Exit code 2 when some files "
               "could not be read (they are named on stderr and skipped).",
    )
    parser.add_argument("photos", nargs="+", metavar="PHOTOS", help="image files or folders")
    parser.add_argument("--output", "-o", required=True, metavar="OUTDIR", help="output folder")
    parser.add_argument("--into-gallery", metavar="DIR",
                        help="also write a folder per group (group-001, ...) into DIR, hard "
                             "links or copies of the photos (never moved; near-duplicates but "
                             "the kept one left out), ready for `lookalike index build DIR`")
    parser.add_argument("--threshold", type=float, default=None, metavar="P",
                        help="calibrated probability a link needs from both photos (default "
                             "0.5, even odds)")
    parser.add_argument("--xmp", action="store_true",
                        help="write PHOTO.xmp beside each grouped photo: `lookalike group-001` "
                             "as a keyword (and `lookalike near-duplicate` for a repeat of a "
                             "shot); the photos are never modified, existing sidecars keep "
                             "their other fields, ungrouped photos get none")
    add_engine_option(parser, "extract and rank locally (default) or on a Ray cluster "
                              "(RAY_ADDRESS or a local Ray)")
    add_common_options(parser, gray=False)  # the shipped calibrations are fitted in colour
    parser.set_defaults(handler=run)


def check_gallery_folder(folder: str | None) -> None:
    """Gallery folders are written into an empty or new folder only, so groups of two runs
    never mix."""
    if folder and os.path.exists(folder) and (not os.path.isdir(folder) or os.listdir(folder)):
        raise UsageError(f"{folder}: --into-gallery needs a new or empty folder")


def run(args: argparse.Namespace) -> int:
    from lookalike.errors import write_errors_csv
    from lookalike.grouping.groups import THRESHOLD, group_photos
    from lookalike.grouping.report import write_contact_sheets, write_gallery, write_groups_csv
    from lookalike.retrieval.calibration import CalibrationError
    from lookalike.retrieval.presets import UnknownPresetError, get_preset

    threshold = THRESHOLD if args.threshold is None else args.threshold
    if not 0.0 < threshold < 1.0:
        raise UsageError("--threshold must be a probability between 0 and 1")
    try:
        preset = get_preset(args.preset).name
        get_preset(preset).calibration("pairs")  # a preset without one: say so up front
    except (UnknownPresetError, CalibrationError) as error:
        raise UsageError(str(error)) from None
    check_gallery_folder(args.into_gallery)
    paths = existing_inputs(args.photos, args.exclude)
    if not paths:
        raise UsageError("no image files found in the given paths")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise UsageError(f"{args.output}: exists and is not a folder")
    grouping = group_photos(paths, preset=preset, cache=cache_from_args(args), jobs=args.jobs,
                            quiet=args.quiet, threshold=threshold, max_pixels=args.max_pixels,
                            engine=args.engine)
    os.makedirs(args.output, exist_ok=True)
    write_groups_csv(grouping, os.path.join(args.output, "groups.csv"))
    if grouping.errors:
        write_errors_csv(grouping.errors, os.path.join(args.output, "errors.csv"))
    write_contact_sheets(grouping, args.output)
    if args.into_gallery:
        write_gallery(grouping, args.into_gallery)
    errors = dict(grouping.errors)
    if args.xmp:
        written, failed = write_group_sidecars(grouping)
        errors.update(failed)
        if not args.quiet:
            print(f"wrote {written} XMP sidecar(s) beside the photos", file=sys.stderr)
    if not args.quiet:
        print(f"{len(grouping.photos)} photos: {len(grouping.groups)} groups, "
              f"{len(grouping.ungrouped)} ungrouped; wrote groups.csv and index.html to "
              f"{args.output}" + (f", gallery folders to {args.into_gallery}"
                                  if args.into_gallery else ""), file=sys.stderr)
    return report_errors(errors)


def write_group_sidecars(grouping) -> tuple[int, dict[str, str]]:
    """`--xmp`: each grouped photo's group into PHOTO.xmp; an ungrouped photo's sidecar loses
    what an earlier run wrote. Returns (sidecars written, photo -> why its sidecar failed)."""
    from lookalike import __version__
    from lookalike.gallery.xmp import SidecarError, group_fields, write_sidecar

    fields_of = {}
    for group in grouping.groups:
        repeats = {photo: duplicates.keep for duplicates in group.near_duplicates
                   for photo in duplicates.photos if photo != duplicates.keep}
        for photo in group.photos:
            fields_of[photo] = group_fields(group.name, repeats.get(photo), __version__)
    written, failed = 0, {}
    for photo in grouping.photos:
        try:
            written += write_sidecar(photo, fields_of.get(photo)) is not None
        except SidecarError as error:
            failed[photo] = str(error)
    return written, failed
