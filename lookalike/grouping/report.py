"""What `lookalike group` writes: groups.csv, errors.csv, contact sheets, gallery folders.

Why files a person can open: the study's author sorted trip photos by hand, so the result
must be checkable by eye. The contact sheets are plain HTML with thumbnail files beside them
(no script, no CDN: they open offline from a file manager), and `--into-gallery` gives the
folder-per-landmark layout that `lookalike index build` reads. The user's photos are never
moved: gallery folders hold hard links, or copies where a link cannot be made.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import os
import shutil
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from lookalike.grouping.groups import UNGROUPED, Group, Grouping
from lookalike.imaging.loading import ImageLoadError, LoadOptions, load_image

THUMBNAIL_SIDE = 240
INDEX_PREVIEW = 6  # thumbnails per group on the index page
STYLE = """body{font-family:sans-serif;margin:1.5em;background:#fafafa;color:#222}
.sheet{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;width:250px;background:#fff;border:1px solid #ddd;padding:4px}
figure img{max-width:240px;max-height:240px;display:block;margin:auto}
figcaption{font-size:12px;word-break:break-all}
.dup{border:2px solid #e69500}.keep{border:3px solid #2a8a2a}
section{margin-bottom:2em}"""


def write_groups_csv(grouping: Grouping, path: str | os.PathLike) -> None:
    """One row per photo read: photo, group ('' = ungrouped), near_duplicate_set, keep
    (1 = keep it: the chosen photo of its near-duplicate set, or in no set; 0 = a duplicate)."""
    group_of = grouping.group_of()
    duplicates = grouping.near_duplicate_of()
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["photo", "group", "near_duplicate_set", "keep"])
        for photo in grouping.photos:
            found = duplicates.get(photo)
            writer.writerow([photo, group_of.get(photo, UNGROUPED),
                             found.name if found else "",
                             int(found is None or found.keep == photo)])


# -- contact sheets ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Thumbnail:
    """A photo as the pages show it: its thumbnail file and a link to the photo itself, both
    relative to the pages' folder (so the folder can be moved together with the photos)."""

    source: str | None  # None: the photo could not be read again (changed meanwhile)
    href: str


def write_thumbnails(photos: Sequence[str], outdir: Path) -> dict[str, Thumbnail]:
    """A small JPEG per photo in outdir/thumbs/, named by its position."""
    folder = outdir / "thumbs"
    folder.mkdir(parents=True, exist_ok=True)
    thumbnails = {}
    for number, photo in enumerate(photos, start=1):
        name = f"{number:05d}.jpg"
        href = urllib.parse.quote(os.path.relpath(os.path.abspath(photo), os.path.abspath(outdir)))
        try:
            image = load_image(photo, LoadOptions(min_long_side=THUMBNAIL_SIDE * 2))
        except ImageLoadError:
            thumbnails[photo] = Thumbnail(None, href)
            continue
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        image.save(folder / name, quality=85)
        thumbnails[photo] = Thumbnail(f"thumbs/{name}", href)
    return thumbnails


def _figure(photo: str, thumbnail: Thumbnail | None, css: str = "", note: str = "") -> str:
    image = "<p>(no thumbnail)</p>"
    if thumbnail is not None and thumbnail.source:
        image = (f'<a href="{html.escape(thumbnail.href)}"><img src="'
                 f'{html.escape(thumbnail.source)}" alt="" loading="lazy"></a>')
    caption = html.escape(os.path.basename(photo)) + (f"<br><b>{html.escape(note)}</b>"
                                                      if note else "")
    return (f'<figure class="{css}" title="{html.escape(photo)}">{image}'
            f"<figcaption>{caption}</figcaption></figure>")


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n")


def group_sheet(group: Group, thumbnails: dict[str, Thumbnail]) -> str:
    """A group's page: every photo, near-duplicate sets framed, the one to keep marked."""
    duplicates = {photo: found for found in group.near_duplicates for photo in found.photos}
    figures = []
    for photo in group.photos:
        found = duplicates.get(photo)
        if found is None:
            figures.append(_figure(photo, thumbnails.get(photo)))
        elif found.keep == photo:
            figures.append(_figure(photo, thumbnails.get(photo), "keep",
                                   f"keep ({found.name})"))
        else:
            figures.append(_figure(photo, thumbnails.get(photo), "dup",
                                   f"near-duplicate ({found.name})"))
    intro = (f"<p>{len(group.photos)} photos, {len(group.near_duplicates)} near-duplicate "
             'set(s). <a href="index.html">All groups</a></p>')
    return _page(group.name, intro + f'<div class="sheet">{"".join(figures)}</div>')


def index_page(grouping: Grouping, thumbnails: dict[str, Thumbnail]) -> str:
    sections = []
    for group in grouping.groups:
        preview = "".join(_figure(photo, thumbnails.get(photo))
                          for photo in group.photos[:INDEX_PREVIEW])
        sections.append(f'<section><h2><a href="{group.name}.html">{group.name}</a> '
                        f"({len(group.photos)} photos)</h2>"
                        f'<div class="sheet">{preview}</div></section>')
    if grouping.ungrouped:
        sections.append(f'<section><h2><a href="ungrouped.html">ungrouped</a> '
                        f"({len(grouping.ungrouped)} photos linked to no other)</h2></section>")
    summary = (f"<p>{len(grouping.photos)} photos: {len(grouping.groups)} groups, "
               f"{len(grouping.ungrouped)} ungrouped, {len(grouping.errors)} unreadable "
               f"(errors.csv). Preset {html.escape(grouping.preset)}, link probability "
               f"&ge; {grouping.threshold:g} from both photos.</p>")
    return _page("lookalike groups", summary + "".join(sections))


def write_contact_sheets(grouping: Grouping, outdir: str | os.PathLike) -> None:
    """index.html, one <group>.html per group and ungrouped.html, thumbnails in thumbs/."""
    outdir = Path(outdir)
    thumbnails = write_thumbnails(grouping.photos, outdir)
    (outdir / "index.html").write_text(index_page(grouping, thumbnails), encoding="utf-8")
    for group in grouping.groups:
        (outdir / f"{group.name}.html").write_text(group_sheet(group, thumbnails),
                                                   encoding="utf-8")
    loose = Group("ungrouped", grouping.ungrouped)
    (outdir / "ungrouped.html").write_text(group_sheet(loose, thumbnails), encoding="utf-8")


# -- gallery folders -----------------------------------------------------------------------------
def link_or_copy(source: str, target: Path) -> None:
    """A hard link to the user's photo (no space used), or a copy across file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def write_gallery(grouping: Grouping, folder: str | os.PathLike) -> list[Path]:
    """A folder per group (group-001, ...) holding its photos, near-duplicates left out but
    the one kept, ready for `lookalike index build FOLDER`. Ungrouped photos are left out: one
    photo with nothing confirming it is not a landmark yet."""
    folder = Path(folder)
    duplicates = grouping.near_duplicate_of()
    written = []
    for group in grouping.groups:
        target = folder / group.name
        target.mkdir(parents=True, exist_ok=True)
        used: set[str] = set()
        for photo in group.photos:
            found = duplicates.get(photo)
            if found is not None and found.keep != photo:
                continue
            name = unique_name(os.path.basename(photo), used)
            link_or_copy(photo, target / name)
            written.append(target / name)
    return written


def unique_name(name: str, used: set[str]) -> str:
    """`name`, or `name` with a number before the extension when the folder already has it."""
    stem, suffix = os.path.splitext(name)
    candidate, number = name, 1
    while candidate.lower() in used:
        number += 1
        candidate = f"{stem}-{number}{suffix}"
    used.add(candidate.lower())
    return candidate
