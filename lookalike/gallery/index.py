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

Built with `--read-text`, the index also keeps each reference's text (OCR) and, per landmark,
the text that recurs on its references, with landmark.json's inscriptions
(`lookalike.gallery.learned_text`), updated in the same transactions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from lookalike.features.contract import Method, SearchIndex
from lookalike.gallery.folders import NEGATIVES, GalleryEntry, GalleryError, Landmark, read_gallery
from lookalike.gallery.learned_text import (
    TEXT_SCHEMA,
    TextReader,
    gallery_phrases,
    local_text_reader,
    read_landmark_text,
    write_text_changes,
)
from lookalike.gallery.postings_file import (
    Sidecar,
    read_sidecar,
    remove_stale_temporaries,
    segments,
    sidecar_path,
    write_sidecar,
)
from lookalike.gallery.roles import (
    Extractor,
    check_roles,
    is_preset,
    method_from_spec,
    method_record,
    pipeline_methods,
)
from lookalike.ocr.evidence import landmark_names
from lookalike.ocr.learned import PhraseIndex

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
        # The OCR engine that read the references (`index build --read-text`), or None.
        self.text_engine = self.meta.get("text_engine") or None
        self._local_cache: OrderedDict[int, bytes] = OrderedDict()
        self.reload()

    # -- reading ---------------------------------------------------------------------------
    def reload(self) -> None:
        """Read the landmarks and the references' ids, and open the global search: the stored
        inverted file (memory-mapped, rebuilt first when it does not match the SQLite
        state) for methods that have one, else an index over every global feature."""
        with self._lock:
            self.meta = dict(self.connection.execute("SELECT name, value FROM meta"))
            self.landmarks: dict[str, Landmark] = {}
            for lid, names, lat, lon, regions in self.connection.execute(
                "SELECT id, names, lat, lon, regions FROM landmarks ORDER BY id"
            ):
                location = (lat, lon) if lat is not None and lon is not None else None
                self.landmarks[lid] = Landmark(lid, json.loads(names), location,
                                               json.loads(regions) if regions else None)
            self.landmark_text = read_landmark_text(self.connection)
            for lid, (inscriptions, _) in self.landmark_text.items():
                if lid in self.landmarks:
                    self.landmarks[lid].inscriptions = inscriptions
            self._phrases: dict[str, list[str]] | None = None
            self._phrase_index: PhraseIndex | bool | None = None
            self._local_cache.clear()
            self.sidecar = self._stored_postings() if self.global_method.inverted_file_shape()[0] \
                else None
            if self.sidecar is not None:
                ids = self.sidecar.ids
                landmark_names = list(self.sidecar.header["landmarks"])
                codes = self.sidecar.landmark_codes
                self.search_index: SearchIndex = \
                    self.global_method.stored_search_index(self.sidecar.postings)
            else:
                rows = self.connection.execute(
                    "SELECT id, landmark FROM refs ORDER BY id").fetchall()
                landmark_names = sorted({landmark for _, landmark in rows})
                code_of = {name: code for code, name in enumerate(landmark_names)}
                ids = np.array([rid for rid, _ in rows], np.int64)
                codes = np.array([code_of[landmark] for _, landmark in rows], np.int32)
            self.ids = ids  # gallery position -> reference id, ascending
            self.references = ReferenceTable(self, ids, codes, landmark_names)
            self.global_features = GlobalFeatures(self, ids)
            if self.sidecar is None:
                self.search_index = self.global_method.search_index(list(self.global_features))

    def generation(self) -> tuple[str, int]:
        """(instance, generation) of the SQLite state, which a matching sidecar records."""
        meta = dict(self.connection.execute(
            "SELECT name, value FROM meta WHERE name IN ('instance', 'generation')"))
        return meta.get("instance", ""), int(meta.get("generation", 0))

    def _stored_postings(self) -> Sidecar | None:
        """The sidecar of this SQLite state, rebuilt from the rows when it is missing or
        stale; None when it cannot be written (a read-only folder: searched in memory)."""
        path = sidecar_path(self.path)
        instance, generation = self.generation()
        method = self.meta["global_method"]
        stored = read_sidecar(path)
        if stored is not None and stored.matches(instance, generation, method):
            return stored
        try:
            self._write_sidecar(instance, generation)
        except OSError as error:
            log.warning("%s: cannot write the inverted file (%s); searching in memory",
                        path, error)
            return None
        return read_sidecar(path)

    def _landmark_names(self) -> list[str]:
        return [lid for (lid,) in self.connection.execute(
            "SELECT DISTINCT landmark FROM refs ORDER BY landmark")]

    def _write_sidecar(self, instance: str, generation: int,
                       previous: Sidecar | None = None, removed: Sequence[int] = ()) -> None:
        """Write the sidecar of the current SQLite state: from `previous` (the sidecar of the
        state before one change: its postings minus the `removed` ids, plus the rows added
        since, whose ids are all larger) or else from every row."""
        path = sidecar_path(self.path)
        remove_stale_temporaries(path)
        vocabulary, dim = self.global_method.inverted_file_shape()
        names = self._landmark_names()
        code_of = {name: code for code, name in enumerate(names)}
        header = {"instance": instance, "generation": generation,
                  "global_method": self.meta["global_method"], "landmarks": names}
        decode = self.global_method.decode
        parts, ids, codes, counts = [], [], [], []
        after = -1
        if previous is not None:
            old_ids = np.asarray(previous.ids)
            gone = np.isin(old_ids, np.asarray(list(removed), np.int64))
            remap = np.where(gone, -1, np.cumsum(~gone) - 1).astype(np.int64)
            old_names = np.array(previous.header["landmarks"] + [""], dtype=object)
            kept_codes = old_names[np.asarray(previous.landmark_codes)[~gone]]
            parts.append((previous.postings, remap))
            ids.append(old_ids[~gone])
            codes.append(np.array([code_of[name] for name in kept_codes], np.int32))
            counts.append(np.asarray(previous.postings.counts)[~gone])
            after = int(old_ids.max()) if len(old_ids) else -1
        first = sum(len(chunk) for chunk in ids)
        rows = ((rid, code_of[landmark], decode(blob)) for rid, landmark, blob in
                self.connection.execute("SELECT id, landmark, global FROM refs WHERE id > ? "
                                        "ORDER BY id", (after,)))
        batches = segments(rows, vocabulary, dim, path.parent, first)
        try:
            for batch_ids, batch_codes, batch_counts, postings in batches:
                ids.append(batch_ids)
                codes.append(batch_codes)
                counts.append(np.asarray(batch_counts))
                parts.append((postings, None))
            write_sidecar(path, header, np.concatenate(ids), np.concatenate(codes),
                          np.concatenate(counts), parts, vocabulary, dim)
        finally:
            batches.close()

    def text_phrases(self) -> dict[str, list[str]]:
        """{landmark: phrases} a query's text is matched with (`identify --use-text`): each
        landmark's inscriptions and the distinctive text learned from its references."""
        with self._lock:
            if self._phrases is None:
                self._phrases = gallery_phrases(self.landmark_text)
            return self._phrases

    def phrase_index(self) -> PhraseIndex | None:
        """`text_phrases` (with every landmark's names competing for readings), searchable;
        None when no landmark has any."""
        with self._lock:
            if self._phrase_index is None:
                phrases = self.text_phrases()
                names = {lid: landmark_names(lm.names) for lid, lm in self.landmarks.items()}
                self._phrase_index = PhraseIndex(phrases, names) if any(phrases.values()) \
                    else False
            return self._phrase_index or None

    def search(self, query_feature, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k most similar references: (ids, similarities), best first."""
        positions, scores = self.search_index.search(query_feature, k)
        return np.asarray(self.ids)[positions], scores

    def landmark_codes(self) -> tuple[list[str], np.ndarray]:
        """Each gallery position's landmark, as (names, codes into names)."""
        return self.references.landmark_names, self.references.codes

    def references_of(self, landmark: str) -> list[int]:
        return self.references.ids_of(landmark)

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
        counts = dict(self.connection.execute(
            "SELECT landmark, COUNT(*) FROM refs GROUP BY landmark"))
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
            "text_engine": self.text_engine,
            "created": self.meta.get("created"),
            "updated": self.meta.get("updated"),
            "negatives": counts.get(NEGATIVES, 0),
            "per_landmark": [
                {**self.landmarks[lid].to_json(), "references": counts.get(lid, 0),
                 **({"learned_text": self.landmark_text[lid][1]}
                    if self.landmark_text.get(lid, ([], []))[1] else {})}
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
    def add(self, entries: Sequence[GalleryEntry], extract: Extractor,
            read_text: TextReader | None = None) -> ChangeReport:
        """Add landmarks and photos in one transaction; photos already present are skipped.
        `extract` computes the features: the caller's engine (`lookalike.engines`). An index
        that reads text (`text_engine`) reads the new photos' text with `read_text` (default:
        on this machine, no cache); a photo whose text cannot be read is kept without."""
        started = time.perf_counter()
        report = ChangeReport()
        known = set(self.connection.execute("SELECT landmark, content_hash FROM refs"))
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
        texts: dict[str, bytes] = {}
        if self.text_engine and rows:
            reader = read_text or local_text_reader()
            texts, text_errors = reader([row[1] for row in rows], self.text_engine)
            for path, reason in text_errors.items():
                log.warning("%s: text not read (%s); kept without", path, reason)
        with self._lock:
            self._commit(entries, rows, (), texts=texts)
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
        ids = {rid for landmark in landmarks for rid in self.references_of(landmark)}
        ids |= set(reference_ids)
        for photo in photos:
            matched = {rid for (rid,) in self.connection.execute(
                "SELECT id FROM refs WHERE path IN (?, ?)", (str(photo), os.path.abspath(photo)))}
            if not matched and os.path.isfile(photo):
                digest = photo_digest(Path(photo).read_bytes())
                matched = {rid for (rid,) in self.connection.execute(
                    "SELECT id FROM refs WHERE content_hash = ?", (digest,))}
            if not matched:
                report.errors[str(photo)] = "not a reference photo of this index"
            ids |= matched
        with self._lock:
            self._commit((), (), sorted(ids), landmarks)
        report.removed = len(ids)
        return report

    def _commit(self, entries, rows, remove_ids, drop_landmarks=(), texts=None) -> None:
        """One transaction, then the sidecar brought to the new generation (from the old
        sidecar when it was current, so only the change is decoded), then reload."""
        previous = self.sidecar
        if previous is not None and not previous.matches(*self.generation(),
                                                         self.meta["global_method"]):
            previous = None
        removed = list(remove_ids) + [rid for landmark in drop_landmarks
                                      for rid in self.references_of(landmark)]
        write_changes(self.connection, entries, rows, remove_ids, drop_landmarks, texts,
                      self.text_engine)
        if self.global_method.inverted_file_shape()[0]:
            instance, generation = self.generation()
            if previous is None or previous.header["generation"] != generation - 1:
                previous = None
            try:
                self._write_sidecar(instance, generation, previous, removed)
            except OSError as error:  # reload searches in memory
                log.warning("%s: cannot write the inverted file (%s)", self.path, error)
        self.reload()


class ReferenceTable(Mapping):
    """The references of an open index by id, read from SQLite when asked for: opening an
    index of a million references holds two arrays (ids and landmark codes), not a million
    objects. Iterates ids ascending (gallery order)."""

    def __init__(self, index: GalleryIndex, ids: np.ndarray, codes: np.ndarray,
                 landmark_names: list[str]):
        self.index, self.ids, self.codes = index, ids, codes
        self.landmark_names = landmark_names

    def __getitem__(self, rid: int) -> Reference:
        with self.index._lock:
            row = self.index.connection.execute(
                "SELECT id, landmark, path, content_hash FROM refs WHERE id = ?",
                (int(rid),)).fetchone()
        if row is None or int(rid) not in self:
            raise KeyError(rid)
        return Reference(*row)

    def __contains__(self, rid: object) -> bool:
        try:
            rid = int(rid)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return False
        at = int(np.searchsorted(self.ids, rid))
        return at < len(self.ids) and int(self.ids[at]) == rid

    def __iter__(self) -> Iterator[int]:
        return iter(np.asarray(self.ids).tolist())

    def __len__(self) -> int:
        return len(self.ids)

    def values(self) -> list[Reference]:  # type: ignore[override]
        """Every reference, in one query (a small gallery's listing)."""
        with self.index._lock:
            rows = self.index.connection.execute(
                "SELECT id, landmark, path, content_hash FROM refs ORDER BY id").fetchall()
        return [Reference(*row) for row in rows if row[0] in self]

    def landmark_at(self, position: int) -> str:
        return self.landmark_names[int(self.codes[position])]

    def ids_of(self, landmark: str) -> list[int]:
        if landmark not in self.landmark_names:
            return []
        code = self.landmark_names.index(landmark)
        return np.asarray(self.ids)[np.asarray(self.codes) == code].tolist()


class GlobalFeatures(Sequence):
    """The references' global features by gallery position, decoded from SQLite on demand."""

    def __init__(self, index: GalleryIndex, ids: np.ndarray):
        self.index, self.ids = index, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, position):  # type: ignore[override]
        if isinstance(position, slice):
            return [self[i] for i in range(*position.indices(len(self)))]
        with self.index._lock:
            row = self.index.connection.execute(
                "SELECT global FROM refs WHERE id = ?", (int(self.ids[position]),)).fetchone()
        if row is None:
            raise IndexError(position)
        return self.index.global_method.decode(row[0])

    def __iter__(self):
        """All of them in one query (an index searched in memory reads them at open)."""
        with self.index._lock:
            rows = self.index.connection.execute(
                "SELECT id, global FROM refs ORDER BY id").fetchall()
        wanted = set(np.asarray(self.ids).tolist())
        decode = self.index.global_method.decode
        return iter([decode(blob) for rid, blob in rows if rid in wanted])


def write_changes(connection: sqlite3.Connection, entries: Iterable[GalleryEntry],
                  rows: Sequence[tuple[str, str, str, bytes, bytes]],
                  remove_ids: Sequence[int], drop_landmarks: Sequence[str] = (),
                  texts: Mapping[str, bytes] | None = None, text_engine: str | None = None
                  ) -> None:
    """Apply every change in one transaction (all or nothing); `texts`: the new photos'
    text (by path), which with `text_engine` set also renews the touched landmarks' phrases."""
    entries = list(entries)
    with connection:
        connection.execute("BEGIN IMMEDIATE")
        touched = {entry.landmark.id for entry in entries} | {row[0] for row in rows}
        for start in range(0, len(remove_ids), 500):
            chunk = list(remove_ids[start:start + 500])
            touched |= {lid for (lid,) in connection.execute(
                f"SELECT DISTINCT landmark FROM refs WHERE id IN ({','.join('?' * len(chunk))})",
                chunk)}
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
        new_texts = {}
        for lid, path, digest, _, _ in rows:
            if texts and path in texts:
                (rid,) = connection.execute("SELECT id FROM refs WHERE landmark = ? AND "
                                            "content_hash = ?", (lid, digest)).fetchone()
                new_texts[rid] = texts[path]
        write_text_changes(connection, {entry.landmark.id: entry.landmark.inscriptions
                                        for entry in entries
                                        if entry.landmark.inscriptions is not None},
                           new_texts, touched, text_engine)
        # The generation ties the sidecar (NAME.lkidx.ivf) to this state (postings_file).
        connection.execute("INSERT INTO meta VALUES ('generation', '1') ON CONFLICT(name) DO "
                           "UPDATE SET value = CAST(value AS INTEGER) + 1")
        connection.execute("INSERT OR REPLACE INTO meta VALUES ('updated', ?)",
                           (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),))


def create_index(output: str | os.PathLike, global_method: Method, local_method: Method,
                 preset: str | None = None, text_engine: str | None = None) -> None:
    """An empty index file with its methods and their settings recorded, and the preset's
    name when they are exactly a preset's; with `text_engine`, the references' text is read
    with that OCR engine (`index build --read-text`)."""
    check_roles(global_method, local_method)
    preset = is_preset(preset, global_method, local_method)
    connection = _connect(output)
    try:
        connection.executescript(SCHEMA + ";\n".join(TEXT_SCHEMA) + ";\n")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        settings = {
            "format": str(FORMAT_VERSION),
            "preset": preset or "",
            "global_method": json.dumps(method_record(global_method)),
            "local_method": json.dumps(method_record(local_method)),
            "created": now,
            "updated": now,
            "instance": uuid.uuid4().hex,
            "generation": "0",
            **({"text_engine": text_engine} if text_engine else {}),
        }
        with connection:
            connection.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", settings.items())
    finally:
        connection.close()


def build_index(gallery: str | os.PathLike | Sequence[GalleryEntry], output: str | os.PathLike,
                extract: Extractor, preset: str | None = None,
                global_method: Method | None = None, local_method: Method | None = None,
                text_engine: str | None = None, read_text: TextReader | None = None
                ) -> ChangeReport:
    """Build an index from a gallery into a temporary file, then rename it over `output`.

    The methods are the preset's (default: the default preset) unless given. With
    `text_engine`, every reference's text is read (`read_text`, default on this machine) and
    each landmark learns what recurs on its references."""
    entries = gallery if isinstance(gallery, (list, tuple)) else read_gallery(gallery)
    if global_method is None or local_method is None:
        default_global, default_local = pipeline_methods(preset)
        global_method = global_method or default_global
        local_method = local_method or default_local
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    suffixes = ("", "-journal", ".ivf")
    for suffix in suffixes:
        Path(str(temporary) + suffix).unlink(missing_ok=True)
    try:
        create_index(temporary, global_method, local_method, preset, text_engine)
        with GalleryIndex(temporary) as index:
            report = index.add(entries, extract, read_text)
        # The sidecar first: a kill between the renames leaves the old index with a sidecar
        # of another instance, which its next open replaces.
        if sidecar_path(temporary).exists():
            os.replace(sidecar_path(temporary), sidecar_path(output))
        os.replace(temporary, output)
    finally:
        for suffix in suffixes:
            Path(str(temporary) + suffix).unlink(missing_ok=True)
    return report
