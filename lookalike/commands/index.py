"""`lookalike index build|add|remove|info`: build and maintain a gallery index file."""

from __future__ import annotations

import argparse
import json
import os
import sys

from lookalike.commands.common import (
    EXIT_OK,
    UsageError,
    add_common_options,
    add_engine_option,
    cache_from_args,
    found_images,
    report_errors,
)


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "index", help="build and maintain a gallery index (build, add, remove, info)",
        description="A gallery index holds reference photos per landmark for `identify`, "
                    "`verify` and `serve`.",
    )
    actions = parser.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    _add_build(actions)
    _add_add(actions)
    _add_remove(actions)
    _add_info(actions)


def _add_build(actions) -> None:
    build = actions.add_parser(
        "build", help="build an index from a gallery folder",
        description="Build NAME.lkidx from GALLERY: a folder with one subfolder per landmark "
                    "(its id) holding reference photos and optionally landmark.json "
                    '({"en": ..., "ja": ..., "location": {"lat": ..., "lon": ...}, '
                    '"regions": {...}, "inscriptions": ["text written on it", ...]}), or a '
                    "manifest CSV with path,label columns. With --read-text, each reference's "
                    "text is read (OCR) and every landmark learns the text that recurs on its "
                    "references, which `identify --use-text` then looks for in a photo.",
    )
    build.add_argument("gallery", metavar="GALLERY", help="gallery folder or manifest .csv")
    build.add_argument("--output", "-o", required=True, metavar="NAME.lkidx")
    build.add_argument("--force", action="store_true",
                       help="replace NAME.lkidx if it exists (default: refuse, since it may "
                            "hold photos added since, e.g. over HTTP; `index add` adds to it)")
    add_engine_option(build, "extract features locally (default) or on a Ray cluster")
    build.add_argument("--global", dest="global_method", metavar="METHOD",
                       help="global descriptor instead of the preset's (e.g. asmk, augnet); "
                            "identify then needs a calibration fitted on it")
    build.add_argument("--local", dest="local_method", metavar="METHOD",
                       help="local matcher instead of the preset's (e.g. aliked, xfeat)")
    build.add_argument("--codebook", metavar="FILE.npy", help="ASMK codebook to use")
    build.add_argument("--negatives", metavar="DIR",
                       help="photos of no landmark (also: a _negatives/ or distractors/ folder "
                            "in GALLERY); a query most like them leans towards unknown")
    build.add_argument("--read-text", nargs="?", const="scene", metavar="ENGINE",
                       choices=("scene", "tesseract"),
                       help="also read each reference's text (OCR engine: scene, the default, "
                            "or tesseract; about 0.3-0.6 s a photo on 2 cores, cached, on "
                            "this machine) and keep per landmark the text seen on >= 2 of its "
                            "references (on its only one, for a landmark with one), for "
                            "`identify --use-text`; `index add` then reads new photos too")
    build.add_argument("--fit-codebook", action="store_true",
                       help="fit the ASMK codebook on this gallery's photos (large galleries)")
    build.add_argument("--shards", type=int, metavar="N",
                       help="also split the inverted file into N shards, which `identify "
                            "--engine ray` and `serve --engine ray` search with one Ray actor "
                            "each")
    build.add_argument("--codebook-words", type=int, metavar="N",
                       help="visual words of the codebook --fit-codebook fits (default: as "
                            "many as the codebook in use; 16384-65536 for 100,000+ photos)")
    add_common_options(build, gray=False)
    build.set_defaults(handler=run_build)


def _add_add(actions) -> None:
    add = actions.add_parser(
        "add", help="add landmarks or photos to an index (atomic)",
        description="Add a gallery folder (or manifest), or with --landmark ID the given photos "
                    "to that landmark. Photos already in the index are skipped. An index built "
                    "with --read-text reads the new photos' text too and renews what their "
                    "landmarks learned.",
    )
    add.add_argument("index", metavar="NAME.lkidx")
    add.add_argument("sources", nargs="+", metavar="SOURCE",
                     help="gallery folders / manifests, or photos with --landmark")
    add.add_argument("--landmark", metavar="ID", help="the photos show this landmark")
    add.add_argument("--landmark-json", metavar="FILE", help="names and location for --landmark")
    add_engine_option(add, "extract features locally (default) or on a Ray cluster")
    add_common_options(add, gray=False)
    add.set_defaults(handler=run_add)


def _add_remove(actions) -> None:
    remove = actions.add_parser("remove", help="remove landmarks or photos from an index",
                                description="Remove whole landmarks and/or single photos "
                                            "(and renew the text their landmarks learned).")
    remove.add_argument("index", metavar="NAME.lkidx")
    remove.add_argument("--landmark", action="append", metavar="ID", help="(repeatable)")
    remove.add_argument("--photo", action="append", metavar="PATH",
                        help="a reference photo, by its indexed path or its content (repeatable)")
    remove.add_argument("--quiet", "-q", action="store_true", help="no progress messages")
    remove.set_defaults(handler=run_remove)


def _add_info(actions) -> None:
    info = actions.add_parser("info", help="what an index holds",
                              description="Landmarks, photo counts, size and settings.")
    info.add_argument("index", metavar="NAME.lkidx")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=run_info)


def print_report(action: str, report, target, quiet: bool) -> int:
    """One line of what changed, then the unreadable photos; returns the exit code."""
    if not quiet:
        parts = [f"{report.added} added"] if action != "remove" else [f"{report.removed} removed"]
        if report.skipped:
            parts.append(f"{report.skipped} already present")
        print(f"{target}: {', '.join(parts)}", file=sys.stderr)
    return report_errors(report.errors)


def check_new_index(output: str, force: bool) -> None:
    """`index build` writes a new index; replacing one that exists (which may have gained
    landmarks and photos since it was built, by `index add` or over HTTP) needs --force."""
    if not os.path.lexists(output) or force:
        return
    if os.path.isdir(output):
        raise UsageError(f"{output}: is a folder, not an index file")
    held = ""
    try:
        from lookalike.gallery.index import GalleryIndex

        with GalleryIndex(output) as index:
            info = index.info()
        held = f" ({info['landmarks']} landmarks, {info['references']} photos, updated " \
               f"{info['updated']})"
    except Exception:  # not an index (or damaged): still not ours to replace unasked
        held = " (not a readable index)"
    raise UsageError(f"{output} exists{held}; it was left as it is. Add photos to it with "
                     f"`lookalike index add {output} ...`, or replace it with --force")


def run_build(args: argparse.Namespace) -> int:
    from lookalike.engines import extractor
    from lookalike.gallery.folders import read_gallery
    from lookalike.gallery.index import build_index
    from lookalike.gallery.roles import fit_gallery_codebook, pipeline_methods

    check_new_index(args.output, args.force)
    global_method, local_method = pipeline_methods(args.preset, args.global_method,
                                                   args.local_method, args.weights,
                                                   args.codebook, args.gallery_views)
    if args.shards is not None and (args.shards < 1 or
                                    not global_method.inverted_file_shape()[0]):
        raise UsageError(f"--shards: a positive count, for a global method with an inverted "
                         f"file (asmk), not {global_method.name}")
    extract = extractor(args.engine, cache_from_args(args), args.jobs, args.quiet,
                        args.max_pixels)
    entries = read_gallery(args.gallery, negatives=args.negatives, exclude=args.exclude)
    if args.fit_codebook:
        global_method = fit_gallery_codebook(entries, global_method, local_method, extract,
                                             args.output, args.quiet, args.codebook_words)
    elif args.codebook_words:
        raise UsageError("--codebook-words goes with --fit-codebook")
    read_text = None
    if args.read_text:
        from lookalike.gallery.learned_text import local_text_reader
        from lookalike.ocr.reader import OcrUnavailable, check_available

        try:
            check_available(args.read_text)
        except OcrUnavailable as error:
            raise UsageError(f"--read-text needs OCR: {error}") from None
        read_text = local_text_reader(cache_from_args(args), args.jobs, args.quiet)
    report = build_index(entries, args.output, extract, args.preset, global_method,
                         local_method, args.read_text, read_text)
    if args.shards:
        from lookalike.gallery.shortlist import write_shards

        write_shards(args.output, args.shards)
    if not args.quiet:
        rate = report.added / report.seconds if report.seconds else 0.0
        print(f"built {args.output} in {report.seconds:.1f} s ({rate:.2f} photos/s)",
              file=sys.stderr)
        if args.read_text:
            from lookalike.gallery.index import GalleryIndex

            with GalleryIndex(args.output) as index:
                learned = [lm for lm in index.info()["per_landmark"] if lm.get("learned_text")]
                total = len(index.info()["per_landmark"])
            print(f"text recurring on the references learned for {len(learned)} of {total} "
                  f"landmarks (`lookalike index info` lists it)", file=sys.stderr)
    return print_report("build", report, args.output, args.quiet)


def run_add(args: argparse.Namespace) -> int:
    from lookalike.engines import extractor
    from lookalike.gallery.folders import read_gallery
    from lookalike.gallery.index import GalleryIndex
    from lookalike.gallery.learned_text import local_text_reader

    entries = _landmark_entries(args) if args.landmark else \
        [entry for source in args.sources for entry in read_gallery(source, exclude=args.exclude)]
    with GalleryIndex(args.index) as index:
        report = index.add(entries, extractor(args.engine, cache_from_args(args), args.jobs,
                                              args.quiet, args.max_pixels),
                           local_text_reader(cache_from_args(args), args.jobs, args.quiet))
    return print_report("add", report, args.index, args.quiet)


def _landmark_entries(args: argparse.Namespace) -> list:
    """`index add --landmark ID PHOTO...`: the photos as one entry of that landmark, keeping
    its names and location unless `--landmark-json` gives new ones."""
    from pathlib import Path

    from lookalike.gallery.folders import GalleryEntry, Landmark, read_landmark_json
    from lookalike.gallery.index import GalleryIndex

    photos = found_images(args.sources, args.exclude)
    with GalleryIndex(args.index) as index:
        landmark = index.landmarks.get(args.landmark, Landmark(args.landmark))
    if args.landmark_json:
        landmark = read_landmark_json(Path(args.landmark_json).parent, args.landmark)
    return [GalleryEntry(landmark, photos)]


def run_remove(args: argparse.Namespace) -> int:
    from lookalike.gallery.index import GalleryIndex

    if not args.landmark and not args.photo:
        raise UsageError("say what to remove: --landmark ID and/or --photo PATH")
    with GalleryIndex(args.index) as index:
        report = index.remove(args.landmark or (), args.photo or ())
    return print_report("remove", report, args.index, args.quiet)


def run_info(args: argparse.Namespace) -> int:
    from lookalike.gallery.index import GalleryIndex

    with GalleryIndex(args.index) as index:
        info = index.info()
    if args.json:
        print(json.dumps(info, ensure_ascii=False, indent=2))
        return EXIT_OK
    print(f"{info['path']}: {info['landmarks']} landmarks, {info['references']} reference photos, "
          f"{info['negatives']} negatives (photos of no landmark), "
          f"{info['bytes'] / 1e6:.1f} MB ({info['bytes_per_reference'] / 1e3:.0f} kB per photo)")
    print(f"  preset: {info['preset'] or '(custom)'}; global: {info['global_method']['name']}; "
          f"local: {info['local_method']['name']}; updated {info['updated']}"
          + (f"; text read by {info['text_engine']}" if info.get("text_engine") else ""))
    for landmark in info["per_landmark"]:
        names = " / ".join(landmark["names"].get(k, "") for k in ("en", "ja")
                           if landmark["names"].get(k))
        where = ""
        if "location" in landmark:
            where = f"  @ {landmark['location']['lat']:.5f}, {landmark['location']['lon']:.5f}"
        print(f"  {landmark['id']:<28} {landmark['references']:>4} photos  {names}{where}")
        text = [*landmark.get("inscriptions", []), *landmark.get("learned_text", [])]
        if text:
            print(f"  {'':<28} text: {' / '.join(text)}")
    return EXIT_OK
