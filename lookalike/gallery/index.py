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

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from lookalike.features.contract import Method, SearchIndex
from lookalike.gallery.folders import NEGATIVES, GalleryEntry, GalleryError, Landmark, read_gallery
from lookalike.gallery.roles import (
    Extractor,
    check_roles,
    is_preset,
    method_from_spec,
    method_record,
    pipeline_methods,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
LOCAL_CACHE_SIZE = 256  # references whose local features stay in memory


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
    def add(self, entries: Sequence[GalleryEntry], extract: Extractor) -> ChangeReport:
        """Add landmarks and photos in one transaction; photos already present are skipped.
        `extract` computes the features: the caller's engine (`lookalike.engines`)."""
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
                extract: Extractor, preset: str | None = None,
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
