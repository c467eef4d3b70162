"""Galleries as users lay them out: one folder per landmark (with an optional landmark.json of
names, location, regions and inscriptions), or a manifest CSV, and photos that show no landmark."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookalike.errors import InputError
from lookalike.imaging.loading import IMAGE_EXTENSIONS, find_images, folder_skip_reason

LANDMARK_FILE = "landmark.json"


class GalleryError(InputError):
    """A problem with an index file or a gallery, with a message meant for the user."""


@dataclass
class Landmark:
    """One landmark: an id (its folder name), display names by language, optional location."""

    id: str
    names: dict[str, str] = field(default_factory=dict)
    location: tuple[float, float] | None = None  # (latitude, longitude) in degrees
    regions: dict[str, Any] | None = None
    # Text written on the landmark (landmark.json's `inscriptions`), matched with a photo's
    # text by `identify --use-text`; None: not given (an edit keeps the stored ones).
    inscriptions: list[str] | None = None

    def name(self, language: str = "en") -> str:
        return self.names.get(language) or self.names.get("en") or self.id

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "names": self.names}
        if self.location is not None:
            data["location"] = {"lat": self.location[0], "lon": self.location[1]}
        if self.regions:
            data["regions"] = self.regions
        if self.inscriptions:
            data["inscriptions"] = list(self.inscriptions)
        return data


@dataclass
class GalleryEntry:
    landmark: Landmark
    photos: list[str]


def read_landmark_json(folder: Path, landmark_id: str) -> Landmark:
    path = folder / LANDMARK_FILE
    if not path.is_file():
        return Landmark(landmark_id)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise GalleryError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise GalleryError(f"{path}: expected a JSON object")
    names = {k: str(v) for k, v in data.items() if isinstance(v, str)}
    names.update({k: str(v) for k, v in (data.get("names") or {}).items()})
    location = None
    loc = data.get("location")
    if loc is not None:
        try:
            lat, lon = float(loc["lat"]), float(loc["lon"])
        except (TypeError, KeyError, ValueError):
            raise GalleryError(f"{path}: location must be {{\"lat\": ..., \"lon\": ...}}") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise GalleryError(f"{path}: location {lat}, {lon} is not on Earth")
        location = (lat, lon)
    regions = data.get("regions") if isinstance(data.get("regions"), dict) else None
    inscriptions = data.get("inscriptions", [])
    if isinstance(inscriptions, str):
        inscriptions = [inscriptions]
    if not isinstance(inscriptions, list) or not all(isinstance(t, str) for t in inscriptions):
        raise GalleryError(f"{path}: inscriptions must be a list of strings (text written on "
                           "the landmark)")
    return Landmark(landmark_id, names, location, regions, inscriptions)


NEGATIVES = "_negatives"  # the reserved landmark id of photos that show no landmark
NEGATIVE_FOLDERS = ("_negatives", "distractors")


def negatives_entry(photos: Sequence[str]) -> GalleryEntry:
    """Photos of no landmark (streets, other buildings): kept in the index so that a query
    most like one of them leans towards `unknown`; never an answer."""
    return GalleryEntry(Landmark(NEGATIVES, {"en": "no landmark (negatives)",
                                             "ja": "ランドマークなし"}), list(photos))


def read_gallery(source: str | os.PathLike, include: Sequence[str] | None = None,
                 negatives: str | os.PathLike | None = None, exclude: Sequence[str] = ()
                 ) -> list[GalleryEntry]:
    """A gallery folder (one subfolder per landmark) or a manifest CSV (`path,label`).

    Photos of no landmark are negatives: a `_negatives/` or `distractors/` folder, rows
    labelled `distractor` in a manifest, or the photos under `negatives`. In folders, what
    `find_images` skips is skipped (NAS and system folders, hidden ones, `exclude` globs).
    """
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        entries, negative_photos = _read_manifest_gallery(source)
    elif source.is_dir():
        entries, negative_photos = _read_folder_gallery(source, exclude)
    else:
        raise GalleryError(f"{source}: not a gallery folder or a manifest .csv")
    if include is not None:
        entries = {k: v for k, v in entries.items() if k in set(include)}
    if not entries:
        raise GalleryError(f"{source}: no landmark folders with photos found")
    if negatives is not None:
        if not Path(negatives).is_dir():
            raise GalleryError(f"{negatives}: --negatives must be a folder of photos")
        negative_photos += find_images([negatives], exclude)
    if negative_photos:
        entries[NEGATIVES] = negatives_entry(negative_photos)
    return list(entries.values())


def _read_manifest_gallery(manifest: Path) -> tuple[dict[str, GalleryEntry], list[str]]:
    """Landmarks and negative photos of a `path,label` manifest (paths relative to it); a
    landmark's names come from `<label>/landmark.json` beside the manifest, if there."""
    entries: dict[str, GalleryEntry] = {}
    negative_photos: list[str] = []
    with open(manifest, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            label = (row.get("label") or "").strip()
            if not label:
                continue
            path = str(manifest.parent / row["path"])
            if label == "distractor":
                negative_photos.append(path)
            else:
                entries.setdefault(label, GalleryEntry(Landmark(label), [])).photos.append(path)
    for label, entry in entries.items():
        if (manifest.parent / label / LANDMARK_FILE).is_file():
            entry.landmark = read_landmark_json(manifest.parent / label, label)
    return entries, negative_photos


def _read_folder_gallery(root: Path, exclude: Sequence[str] = ()
                         ) -> tuple[dict[str, GalleryEntry], list[str]]:
    """Landmarks (one subfolder each; hidden, NAS, system and excluded ones skipped) and the
    negative folders' photos."""
    entries: dict[str, GalleryEntry] = {}
    negative_photos: list[str] = []
    for folder in sorted(p for p in root.iterdir()
                         if p.is_dir() and folder_skip_reason(p.name, exclude) is None):
        photos = [p for p in find_images([folder], exclude)
                  if Path(p).suffix.lower() in IMAGE_EXTENSIONS]
        if not photos:
            continue
        if folder.name in NEGATIVE_FOLDERS:
            negative_photos += photos
        else:
            entries[folder.name] = GalleryEntry(read_landmark_json(folder, folder.name), photos)
    return entries, negative_photos
