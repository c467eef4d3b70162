"""Gallery index: reference photos per landmark, stored so that a query needs one file.

Why one SQLite file: the landmarks (names in several languages, location, regions), each
reference photo's content hash, its global feature and its local features travel together,
and SQLite transactions make every update atomic: `add` and `remove` extract features first,
then write everything in one transaction, so a crash part way leaves the index exactly as it
was (the rollback journal is replayed on the next open). `build` writes a temporary file
beside the target and renames it.

Which methods fill the two roles is recorded in the file (a preset's, or `--global` and
`--local`), with their settings: the global descriptor's features are stored as the method
encodes them and searched by its own `search_index` (an ASMK inverted file, or exact cosine
search of vectors), and each local feature is stored as its method encodes it (float16
descriptors), read on demand for the few references a query verifies. Feature extraction is
handed in as a callable (`lookalike.engines`), so storage never picks a compute engine.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import sqlite3
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from lookalike.errors import InputError
from lookalike.features.contract import GLOBAL, LOCAL_MATCHER, Method, SearchIndex
from lookalike.features.registry import get_method
from lookalike.imaging.loading import IMAGE_EXTENSIONS, find_images

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
LANDMARK_FILE = "landmark.json"
LOCAL_CACHE_SIZE = 256  # references whose local features stay in memory

# (path -> encoded global feature, path -> encoded local feature, path -> error)
Extracted = tuple[dict[str, bytes], dict[str, bytes], dict[str, str]]
Extractor = Callable[[Sequence[str], Method, Method], Extracted]


class GalleryError(InputError):
    """A problem with an index file or a gallery, with a message meant for the user."""


def check_roles(global_method: Method, local_method: Method) -> None:
    if global_method.role != GLOBAL:
        raise GalleryError(f"{global_method.name} is not a global descriptor; choose one of "
                           f"the methods listed by `lookalike methods` as global")
    if local_method.role != LOCAL_MATCHER:
        raise GalleryError(f"{local_method.name} is not a local matcher; choose one of the "
                           f"methods listed by `lookalike methods` as local")


# -- galleries -------------------------------------------------------------------------------------
@dataclass
class Landmark:
    """One landmark: an id (its folder name), display names by language, optional location."""

    id: str
    names: dict[str, str] = field(default_factory=dict)
    location: tuple[float, float] | None = None  # (latitude, longitude) in degrees
    regions: dict[str, Any] | None = None

    def name(self, language: str = "en") -> str:
        return self.names.get(language) or self.names.get("en") or self.id

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "names": self.names}
        if self.location is not None:
            data["location"] = {"lat": self.location[0], "lon": self.location[1]}
        if self.regions:
            data["regions"] = self.regions
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
    return Landmark(landmark_id, names, location, regions)


NEGATIVES = "_negatives"  # the reserved landmark id of photos that show no landmark
NEGATIVE_FOLDERS = ("_negatives", "distractors")


def negatives_entry(photos: Sequence[str]) -> GalleryEntry:
    """Photos of no landmark (streets, other buildings): kept in the index so that a query
    most like one of them leans towards `unknown`; never an answer."""
    return GalleryEntry(Landmark(NEGATIVES, {"en": "no landmark (negatives)",
                                             "ja": "ランドマークなし"}), list(photos))


def read_gallery(source: str | os.PathLike, include: Sequence[str] | None = None,
                 negatives: str | os.PathLike | None = None) -> list[GalleryEntry]:
    """A gallery folder (one subfolder per landmark) or a manifest CSV (`path,label`).

    Photos of no landmark are negatives: a `_negatives/` or `distractors/` folder, rows
    labelled `distractor` in a manifest, or the photos under `negatives`.
    """
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        entries, negative_photos = _read_manifest_gallery(source)
    elif source.is_dir():
        entries, negative_photos = _read_folder_gallery(source)
    else:
        raise GalleryError(f"{source}: not a gallery folder or a manifest .csv")
    if include is not None:
        entries = {k: v for k, v in entries.items() if k in set(include)}
    if not entries:
        raise GalleryError(f"{source}: no landmark folders with photos found")
    if negatives is not None:
        if not Path(negatives).is_dir():
            raise GalleryError(f"{negatives}: --negatives must be a folder of photos")
        negative_photos += find_images([negatives])
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


def _read_folder_gallery(root: Path) -> tuple[dict[str, GalleryEntry], list[str]]:
    """Landmarks (one subfolder each, hidden ones skipped) and the negative folders' photos."""
    entries: dict[str, GalleryEntry] = {}
    negative_photos: list[str] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        photos = [p for p in find_images([folder]) if Path(p).suffix.lower() in IMAGE_EXTENSIONS]
        if not photos:
            continue
        if folder.name in NEGATIVE_FOLDERS:
            negative_photos += photos
        else:
            entries[folder.name] = GalleryEntry(read_landmark_json(folder, folder.name), photos)
    return entries, negative_photos


# -- the index file --------------------------------------------------------------------------------
def photo_digest(data: bytes) -> str:
    """A reference photo's identity in the index (adding it twice is skipped, and removing it
    by its file works after a move). Stored in the index file, so unlike the feature cache's
    key it never changes: BLAKE2b, 128 bits."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS landmarks (
    id TEXT PRIMARY KEY, names TEXT NOT NULL, lat REAL, lon REAL, regions TEXT);
CREATE TABLE IF NOT EXISTS refs (
    id INTEGER PRIMARY KEY, landmark TEXT NOT NULL REFERENCES landmarks(id),
    path TEXT NOT NULL, content_hash TEXT NOT NULL, global BLOB NOT NULL, local BLOB NOT NULL,
    UNIQUE (landmark, content_hash));
CREATE TABLE IF NOT EXISTS blobs (name TEXT PRIMARY KEY, value BLOB NOT NULL);
"""


@dataclass
class Reference:
    id: int
    landmark: str
    path: str
    content_hash: str


@dataclass
class ChangeReport:
    """What a build/add/remove did: counts, and files that could not be used (path -> reason)."""

    added: int = 0
    removed: int = 0
    skipped: int = 0  # already in the index
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _connect(path: str | os.PathLike) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA busy_timeout = 60000")
    connection.execute("PRAGMA journal_mode = DELETE")  # one self-contained file when idle
    connection.execute("PRAGMA synchronous = FULL")
    return connection


def method_from_spec(spec: dict[str, Any]) -> Method:
    """A method rebuilt from what the index recorded (name and settings)."""
    return get_method(spec["name"], **spec.get("settings", {}))


def method_record(method: Method) -> dict[str, Any]:
    return {"name": method.name,
            "settings": json.loads(json.dumps(method.settings(), default=str))}


class GalleryIndex:
    """An open `.lkidx` file: landmarks, references, global search and local features."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise GalleryError(f"{self.path}: no such index (build one with `lookalike index build`)")
        self._lock = threading.RLock()
        try:
            self.connection = _connect(self.path)
            self.meta = dict(self.connection.execute("SELECT name, value FROM meta"))
        except sqlite3.DatabaseError as error:
            raise GalleryError(f"{self.path}: not a lookalike index ({error})") from None
        if self.meta.get("format") != str(FORMAT_VERSION):
            raise GalleryError(f"{self.path}: index format {self.meta.get('format')!r}, "
                               f"expected {FORMAT_VERSION}; rebuild it with `lookalike index "
                               f"build`")
        self.global_method = method_from_spec(json.loads(self.meta["global_method"]))
        self.local_method = method_from_spec(json.loads(self.meta["local_method"]))
        self.preset = self.meta.get("preset") or None
        self._local_cache: OrderedDict[int, bytes] = OrderedDict()
        self.reload()

    # -- reading ---------------------------------------------------------------------------
    def reload(self) -> None:
        with self._lock:
            self.landmarks: dict[str, Landmark] = {}
            for lid, names, lat, lon, regions in self.connection.execute(
                "SELECT id, names, lat, lon, regions FROM landmarks ORDER BY id"
            ):
                location = (lat, lon) if lat is not None and lon is not None else None
                self.landmarks[lid] = Landmark(lid, json.loads(names), location,
                                               json.loads(regions) if regions else None)
            self.references: dict[int, Reference] = {}
            globals_ = []
            for rid, landmark, path, digest, blob in self.connection.execute(
                    "SELECT id, landmark, path, content_hash, global FROM refs ORDER BY id"):
                self.references[rid] = Reference(rid, landmark, path, digest)
                globals_.append(self.global_method.decode(blob))
            self.ids = np.array(list(self.references), np.int64)  # gallery position -> ref id
            self.global_features = globals_
            self.search_index: SearchIndex = self.global_method.search_index(globals_)
            self._local_cache.clear()

    def search(self, query_feature, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k most similar references: (ids, similarities), best first."""
        positions, scores = self.search_index.search(query_feature, k)
        return self.ids[positions], scores

    def references_of(self, landmark: str) -> list[int]:
        return [r.id for r in self.references.values() if r.landmark == landmark]

    def local_features(self, ref_id: int) -> dict[str, np.ndarray]:
        """Local features of one reference, read on demand.

        A bounded LRU cache keeps the encoded form (~400 kB per reference), so memory stays
        flat however many queries a server answers.
        """
        with self._lock:
            if ref_id in self._local_cache:
                self._local_cache.move_to_end(ref_id)
                return self.local_method.decode(self._local_cache[ref_id])
            row = self.connection.execute("SELECT local FROM refs WHERE id = ?", (ref_id,)).fetchone()
            if row is None:
                raise KeyError(ref_id)
            self._local_cache[ref_id] = row[0]
            while len(self._local_cache) > LOCAL_CACHE_SIZE:
                self._local_cache.popitem(last=False)
        return self.local_method.decode(row[0])

    def info(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for reference in self.references.values():
            counts[reference.landmark] = counts.get(reference.landmark, 0) + 1
        size = self.path.stat().st_size
        return {
            "path": str(self.path),
            "format": FORMAT_VERSION,
            "landmarks": len([lid for lid in self.landmarks if lid != NEGATIVES]),
            "references": len(self.references) - counts.get(NEGATIVES, 0),
            "bytes": size,
            "bytes_per_reference": round(size / max(1, len(self.references))),
            "preset": self.preset,
            "global_method": json.loads(self.meta["global_method"]),
            "local_method": json.loads(self.meta["local_method"]),
            "created": self.meta.get("created"),
            "updated": self.meta.get("updated"),
            "negatives": counts.get(NEGATIVES, 0),
            "per_landmark": [
                {**self.landmarks[lid].to_json(), "references": counts.get(lid, 0)}
                for lid in self.landmarks if lid != NEGATIVES
            ],
        }

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------
    def add(self, entries: Sequence[GalleryEntry], extract: Extractor | None = None
            ) -> ChangeReport:
        """Add landmarks and photos in one transaction; photos already present are skipped.
        `extract` computes the features (default: this machine's, `lookalike.engines.local`)."""
        started = time.perf_counter()
        report = ChangeReport()
        known = {(r.landmark, r.content_hash) for r in self.references.values()}
        todo: list[tuple[str, str, str]] = []  # (landmark, path, hash)
        for entry in entries:
            for path in entry.photos:
                try:
                    digest = photo_digest(Path(path).read_bytes())
                except OSError as error:
                    report.errors[path] = f"cannot read: {error.strerror or error}"
                    continue
                if (entry.landmark.id, digest) in known:
                    report.skipped += 1
                    continue
                known.add((entry.landmark.id, digest))
                todo.append((entry.landmark.id, path, digest))
        if extract is None:
            from lookalike.engines.local import local_extractor

            extract = local_extractor()
        paths = [path for _, path, _ in todo]
        globals_, locals_, errors = extract(paths, self.global_method, self.local_method) \
            if paths else ({}, {}, {})
        report.errors.update(errors)
        rows = [(lid, path, digest, globals_[path], locals_[path]) for lid, path, digest in todo
                if path in globals_ and path in locals_]
        with self._lock:
            write_changes(self.connection, entries, rows, remove_ids=())
            self.meta = dict(self.connection.execute("SELECT name, value FROM meta"))
            self.reload()
        report.added = len(rows)
        report.seconds = time.perf_counter() - started
        return report

    def remove(self, landmarks: Sequence[str] = (), photos: Sequence[str] = (),
               reference_ids: Sequence[int] = ()) -> ChangeReport:
        """Remove whole landmarks and/or single reference photos (by path or content, or by
        their ids in this index)."""
        report = ChangeReport()
        unknown = [lid for lid in landmarks if lid not in self.landmarks]
        if unknown:
            raise GalleryError(f"no such landmark(s) in {self.path}: {', '.join(unknown)}")
        missing = [str(rid) for rid in reference_ids if rid not in self.references]
        if missing:
            raise GalleryError(f"no such reference id(s) in {self.path}: {', '.join(missing)}")
        ids = {r.id for r in self.references.values() if r.landmark in set(landmarks)}
        ids |= set(reference_ids)
        for photo in photos:
            matched = {r.id for r in self.references.values()
                       if r.path in (str(photo), os.path.abspath(photo))}
            if not matched and os.path.isfile(photo):
                digest = photo_digest(Path(photo).read_bytes())
                matched = {r.id for r in self.references.values() if r.content_hash == digest}
            if not matched:
                report.errors[str(photo)] = "not a reference photo of this index"
            ids |= matched
        with self._lock:
            write_changes(self.connection, (), (), remove_ids=sorted(ids),
                          drop_landmarks=landmarks)
            self.meta = dict(self.connection.execute("SELECT name, value FROM meta"))
            self.reload()
        report.removed = len(ids)
        return report


def write_changes(connection: sqlite3.Connection, entries: Iterable[GalleryEntry],
                  rows: Sequence[tuple[str, str, str, bytes, bytes]],
                  remove_ids: Sequence[int], drop_landmarks: Sequence[str] = ()) -> None:
    """Apply every change in one transaction (all or nothing)."""
    with connection:
        connection.execute("BEGIN IMMEDIATE")
        for entry in entries:
            lm = entry.landmark
            lat, lon = lm.location if lm.location else (None, None)
            connection.execute(
                "INSERT INTO landmarks (id, names, lat, lon, regions) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET names=excluded.names, lat=excluded.lat, "
                "lon=excluded.lon, regions=excluded.regions",
                (lm.id, json.dumps(lm.names, ensure_ascii=False), lat, lon,
                 json.dumps(lm.regions, ensure_ascii=False) if lm.regions else None))
        connection.executemany(
            "INSERT INTO refs (landmark, path, content_hash, global, local) VALUES (?, ?, ?, ?, ?)",
            [(lid, os.path.abspath(path), digest, global_, local)
             for lid, path, digest, global_, local in rows])
        for start in range(0, len(remove_ids), 500):
            chunk = list(remove_ids[start:start + 500])
            connection.execute(f"DELETE FROM refs WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        for lid in drop_landmarks:
            connection.execute("DELETE FROM refs WHERE landmark = ?", (lid,))
            connection.execute("DELETE FROM landmarks WHERE id = ?", (lid,))
        connection.execute("INSERT OR REPLACE INTO meta VALUES ('updated', ?)",
                           (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),))


def pipeline_methods(preset: str | None = None, global_name: str | None = None,
                     local_name: str | None = None, weights: str | None = None,
                     codebook: str | None = None) -> tuple[Method, Method]:
    """The (global, local) methods of a preset, with either replaced by name if asked (an
    index built so records no preset: `is_preset` tells)."""
    from lookalike.retrieval.presets import get_preset

    chosen = get_preset(preset)
    global_method, local_method = chosen.methods()
    if global_name is not None and global_name != global_method.name:
        global_method = get_method(global_name)
    if local_name is not None and local_name != local_method.name:
        local_method = get_method(local_name)
    if weights is not None and hasattr(global_method, "weights"):
        global_method = get_method(global_method.name, **{**global_method.settings(),
                                                          "weights": weights})
    if codebook is not None and hasattr(global_method, "codebook"):
        global_method = get_method(global_method.name, **{**global_method.settings(),
                                                          "codebook": codebook})
    check_roles(global_method, local_method)
    return global_method, local_method


def is_preset(name: str | None, global_method: Method, local_method: Method) -> str | None:
    """The preset's name when these are exactly its methods, else None."""
    from lookalike.retrieval.presets import get_preset

    expected = get_preset(name).methods()
    same = [method_record(m) for m in expected] == [method_record(global_method),
                                                     method_record(local_method)]
    return get_preset(name).name if same else None


def create_index(output: str | os.PathLike, global_method: Method, local_method: Method,
                 preset: str | None = None) -> None:
    """An empty index file with its methods and their settings recorded, and the preset's
    name when they are exactly a preset's."""
    check_roles(global_method, local_method)
    preset = is_preset(preset, global_method, local_method)
    connection = _connect(output)
    try:
        connection.executescript(SCHEMA)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        settings = {
            "format": str(FORMAT_VERSION),
            "preset": preset or "",
            "global_method": json.dumps(method_record(global_method)),
            "local_method": json.dumps(method_record(local_method)),
            "created": now,
            "updated": now,
        }
        with connection:
            connection.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", settings.items())
    finally:
        connection.close()


def build_index(gallery: str | os.PathLike | Sequence[GalleryEntry], output: str | os.PathLike,
                extract: Extractor | None = None, preset: str | None = None,
                global_method: Method | None = None, local_method: Method | None = None
                ) -> ChangeReport:
    """Build an index from a gallery into a temporary file, then rename it over `output`.

    The methods are the preset's (default: the default preset) unless given."""
    entries = gallery if isinstance(gallery, (list, tuple)) else read_gallery(gallery)
    if global_method is None or local_method is None:
        default_global, default_local = pipeline_methods(preset)
        global_method = global_method or default_global
        local_method = local_method or default_local
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    for suffix in ("", "-journal"):
        Path(str(temporary) + suffix).unlink(missing_ok=True)
    try:
        create_index(temporary, global_method, local_method, preset)
        with GalleryIndex(temporary) as index:
            report = index.add(entries, extract)
        os.replace(temporary, output)
    finally:
        for suffix in ("", "-journal"):
            Path(str(temporary) + suffix).unlink(missing_ok=True)
    return report


def fit_gallery_codebook(entries: Sequence[GalleryEntry], global_method: Method,
                         local_method: Method, extract: Extractor, output: str | os.PathLike,
                         quiet: bool = True) -> Method:
    """Fit the ASMK codebook on the gallery's own local descriptors, saved beside the index
    (NAME.lkidx.codebook.npy), and return the global method that uses it."""
    from lookalike.matching import asmk

    if not hasattr(global_method, "codebook"):
        raise GalleryError(f"--fit-codebook: {global_method.name} has no codebook")
    paths = [path for entry in entries for path in entry.photos]
    _, locals_, _ = extract(paths, global_method, local_method)
    descriptors = [local_method.decode(data)["descriptors"] for data in locals_.values()]
    words = global_method.words().size
    try:
        centroids = asmk.fit_codebook(descriptors, words)
    except ValueError as error:
        raise GalleryError(f"--fit-codebook: {error}") from None
    target = Path(f"{output}.codebook.npy").resolve()
    codebook = asmk.save_codebook(centroids, target)
    if not quiet:
        print(f"fitted a {codebook.size}-word codebook on {len(descriptors)} photos: {target}",
              file=sys.stderr)
    return get_method(global_method.name, **{**global_method.settings(),
                                             "codebook": str(target)})
