"""Gallery index: reference photos per landmark, stored so that a query needs one file.

Why one SQLite file: the landmarks (names in several languages, location, regions), each
reference photo's content hash, its global vector and its local features, and the FAISS
vector index (serialised as a blob) travel together, and SQLite transactions make every
update atomic: `add` and `remove` extract features first, then write everything in one
transaction, so a crash part way leaves the index exactly as it was (the rollback journal is
replayed on the next open). `build` writes a temporary file beside the target and renames it.

Global vectors are AugNet embeddings, L2-normalised, searched by inner product (= cosine) in a
FAISS `IndexFlatIP` (exact; ~1 ms at 10,000 references) or HNSW for much larger galleries.
Local features come from the `verified` method (RootSIFT) when present, else AKAZE, and are
stored with descriptors quantised to 8 bits to keep the index small.
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from lookalike.features import extract_features
from lookalike.loading import IMAGE_EXTENSIONS, find_images
from lookalike.methods import get_method, method_names
from lookalike.methods.base import Method, decode_arrays, encode_arrays

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
LANDMARK_FILE = "landmark.json"
HNSW_AUTO = 50_000
LOCAL_CACHE_SIZE = 256  # references whose local features stay in memory  # galleries larger than this get an HNSW index unless told otherwise


class GalleryError(Exception):
    """A problem with an index file or a gallery, with a message meant for the user."""


# -- the two feature extractors --------------------------------------------------------------------
def global_method(weights: str | None = None, device: str | None = None) -> Method:
    """AugNet with cosine similarity: the shortlist stage."""
    return get_method("augnet", metric="cosine", weights=weights, device=device)


def local_method(name: str | None = None) -> Method:
    """`verified` (RootSIFT + MAGSAC) when installed, else AKAZE: the verification stage."""
    if name is None:
        name = "verified" if "verified" in method_names() else "akaze"
    return get_method(name)


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32).reshape(len(vectors), -1)
    return vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)


def pack_local(feature: dict[str, np.ndarray]) -> bytes:
    """Local features for storage; float descriptors in [0, 1] (RootSIFT) become uint8."""
    stored = dict(feature)
    descriptors = np.asarray(feature["descriptors"])
    if descriptors.dtype.kind == "f":
        stored["descriptors"] = np.clip(np.rint(descriptors.astype(np.float32) * 255), 0, 255) \
            .astype(np.uint8)
        stored["quantised"] = np.array([1], np.uint8)
    return encode_arrays(stored)


def unpack_local(data: bytes | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stored bytes (or their decoded arrays) -> local features ready for verification."""
    feature = dict(decode_arrays(data) if isinstance(data, bytes) else data)
    if "quantised" in feature:
        feature.pop("quantised")
        descriptors = feature["descriptors"].astype(np.float32) / 255.0
        descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True) + 1e-7
        feature["descriptors"] = descriptors
    return feature


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


def read_gallery(source: str | os.PathLike, include: Sequence[str] | None = None) -> list[GalleryEntry]:
    """A gallery folder (one subfolder per landmark) or a manifest CSV (`path,label`).

    A manifest lets tests and benchmarks use the dev photos in place; rows labelled
    `distractor` are not landmarks and are skipped.
    """
    source = Path(source)
    entries: dict[str, GalleryEntry] = {}
    if source.is_file() and source.suffix.lower() == ".csv":
        with open(source, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                label = (row.get("label") or "").strip()
                if not label or label == "distractor":
                    continue
                entry = entries.setdefault(label, GalleryEntry(Landmark(label), []))
                entry.photos.append(str(source.parent / row["path"]))
        for label, entry in entries.items():
            folder = source.parent / label
            if (folder / LANDMARK_FILE).is_file():
                entry.landmark = read_landmark_json(folder, label)
    elif source.is_dir():
        for folder in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
            photos = [p for p in find_images([folder]) if Path(p).suffix.lower() in IMAGE_EXTENSIONS]
            if photos:
                entries[folder.name] = GalleryEntry(read_landmark_json(folder, folder.name), photos)
    else:
        raise GalleryError(f"{source}: not a gallery folder or a manifest .csv")
    if include is not None:
        entries = {k: v for k, v in entries.items() if k in set(include)}
    if not entries:
        raise GalleryError(f"{source}: no landmark folders with photos found")
    return list(entries.values())


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
    path TEXT NOT NULL, content_hash TEXT NOT NULL, vector BLOB NOT NULL, local BLOB NOT NULL,
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


def _vector_index(vectors: np.ndarray, ids: np.ndarray, kind: str):
    import faiss  # imported on use: the CLI starts faster

    dim = vectors.shape[1] if len(vectors) else 768
    if kind == "hnsw":
        base = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efSearch = 128
    else:
        base = faiss.IndexFlatIP(dim)
    index = faiss.IndexIDMap2(base)
    if len(vectors):
        index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids.astype(np.int64))
    return index


class GalleryIndex:
    """An open `.lkidx` file: landmarks, references, vector search and local features."""

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
                              f"expected {FORMAT_VERSION}; rebuild it")
        self._local_cache: OrderedDict[int, dict] = OrderedDict()
        self.reload()

    # -- reading ---------------------------------------------------------------------------------
    def reload(self) -> None:
        with self._lock:
            self.landmarks: dict[str, Landmark] = {}
            for lid, names, lat, lon, regions in self.connection.execute(
                "SELECT id, names, lat, lon, regions FROM landmarks ORDER BY id"
            ):
                location = (lat, lon) if lat is not None and lon is not None else None
                self.landmarks[lid] = Landmark(lid, json.loads(names), location,
                                               json.loads(regions) if regions else None)
            self.references: dict[int, Reference] = {
                rid: Reference(rid, landmark, path, digest)
                for rid, landmark, path, digest in self.connection.execute(
                    "SELECT id, landmark, path, content_hash FROM refs ORDER BY id")
            }
            import faiss

            # One query at a time gains nothing from OpenMP threads, and on a busy machine
            # their spin-waiting costs 20x (2 ms -> 40 ms at 10,000 references).
            faiss.omp_set_num_threads(1)
            row = self.connection.execute("SELECT value FROM blobs WHERE name = 'faiss'").fetchone()
            if row is None:
                self.vectors = _vector_index(np.zeros((0, 768), np.float32), np.zeros(0), "flat")
            else:
                self.vectors = faiss.deserialize_index(np.frombuffer(row[0], np.uint8))
            self._local_cache.clear()

    @property
    def global_settings(self) -> dict[str, Any]:
        return json.loads(self.meta.get("global_settings", "{}"))

    def global_method(self) -> Method:
        settings = self.global_settings
        return global_method(settings.get("weights"), None)

    def local_method(self) -> Method:
        return get_method(self.meta["local_method"], **json.loads(self.meta["local_settings"]))

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k most similar references: (ids, cosine similarities), best first."""
        k = min(k, self.vectors.ntotal)
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        sims, ids = self.vectors.search(normalise(vector[None, :]), k)
        keep = ids[0] >= 0
        return ids[0][keep], sims[0][keep]

    def vectors_of(self, ids: Iterable[int]) -> np.ndarray:
        ids = list(ids)
        return np.stack([self.vectors.reconstruct(int(i)) for i in ids]) if ids else \
            np.zeros((0, self.vectors.d), np.float32)

    def references_of(self, landmark: str) -> list[int]:
        return [r.id for r in self.references.values() if r.landmark == landmark]

    def local_features(self, ref_id: int) -> dict[str, np.ndarray]:
        """Local features of one reference, read on demand.

        A bounded LRU cache keeps the compact 8-bit form (~200 kB per reference), so memory
        stays flat however many queries a server answers.
        """
        with self._lock:
            if ref_id in self._local_cache:
                self._local_cache.move_to_end(ref_id)
                return unpack_local(self._local_cache[ref_id])
            row = self.connection.execute("SELECT local FROM refs WHERE id = ?", (ref_id,)).fetchone()
            if row is None:
                raise KeyError(ref_id)
            compact = decode_arrays(row[0])
            self._local_cache[ref_id] = compact
            while len(self._local_cache) > LOCAL_CACHE_SIZE:
                self._local_cache.popitem(last=False)
        return unpack_local(compact)

    def info(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for reference in self.references.values():
            counts[reference.landmark] = counts.get(reference.landmark, 0) + 1
        size = self.path.stat().st_size
        return {
            "path": str(self.path),
            "format": FORMAT_VERSION,
            "landmarks": len(self.landmarks),
            "references": len(self.references),
            "bytes": size,
            "bytes_per_reference": round(size / max(1, len(self.references))),
            "vector_index": self.meta.get("vector_index", "flat"),
            "global_method": "augnet (cosine)",
            "local_method": self.meta.get("local_method"),
            "created": self.meta.get("created"),
            "updated": self.meta.get("updated"),
            "per_landmark": [
                {**self.landmarks[lid].to_json(), "references": counts.get(lid, 0)}
                for lid in self.landmarks
            ],
        }

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------
    def add(self, entries: Sequence[GalleryEntry], cache=None, jobs: int = 1, quiet: bool = True,
            engine: str = "local") -> ChangeReport:
        """Add landmarks and photos in one transaction; photos already present are skipped."""
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
        vectors, locals_, errors = compute_features(
            [path for _, path, _ in todo], self.global_method(), self.local_method(),
            cache=cache, jobs=jobs, quiet=quiet, engine=engine)
        report.errors.update(errors)
        rows = [(lid, path, digest, vectors[path], locals_[path]) for lid, path, digest in todo
                if path in vectors and path in locals_]
        with self._lock:
            write_changes(self.connection, entries, rows, remove_ids=(), meta=self.meta)
            self.meta = dict(self.connection.execute("SELECT name, value FROM meta"))
            self.reload()
        report.added = len(rows)
        report.seconds = time.perf_counter() - started
        return report

    def remove(self, landmarks: Sequence[str] = (), photos: Sequence[str] = ()) -> ChangeReport:
        """Remove whole landmarks and/or single reference photos (by path or content)."""
        report = ChangeReport()
        unknown = [lid for lid in landmarks if lid not in self.landmarks]
        if unknown:
            raise GalleryError(f"no such landmark(s) in {self.path}: {', '.join(unknown)}")
        ids = {r.id for r in self.references.values() if r.landmark in set(landmarks)}
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
            write_changes(self.connection, (), (), remove_ids=sorted(ids), meta=self.meta,
                          drop_landmarks=landmarks)
            self.meta = dict(self.connection.execute("SELECT name, value FROM meta"))
            self.reload()
        report.removed = len(ids)
        return report


def compute_features(paths: Sequence[str], gmethod: Method, lmethod: Method, cache=None,
                     jobs: int = 1, quiet: bool = True, engine: str = "local"
                     ) -> tuple[dict[str, np.ndarray], dict[str, bytes], dict[str, str]]:
    """Normalised global vectors and packed local features per path, plus errors."""
    if not paths:
        return {}, {}, {}
    if engine == "ray":
        from lookalike.scale import ray_features

        return ray_features(paths, gmethod, lmethod)
    if engine != "local":
        raise GalleryError(f"unknown engine {engine!r}; choose local or ray")
    global_set = extract_features(gmethod, list(paths), cache, jobs, quiet)
    local_set = extract_features(lmethod, list(paths), cache, jobs, quiet)
    errors = {**global_set.errors, **local_set.errors}
    vectors = {}
    if global_set.features:
        normalised = normalise(np.stack(global_set.features))
        vectors = {p: normalised[i] for i, p in enumerate(global_set.paths)}
    locals_ = {p: pack_local(f) for p, f in zip(local_set.paths, local_set.features)}
    return vectors, locals_, errors


def write_changes(connection: sqlite3.Connection, entries: Iterable[GalleryEntry],
                  rows: Sequence[tuple[str, str, str, np.ndarray, bytes]],
                  remove_ids: Sequence[int], meta: dict[str, str],
                  drop_landmarks: Sequence[str] = ()) -> None:
    """Apply every change and the rebuilt vector index in one transaction (all or nothing)."""
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
            "INSERT INTO refs (landmark, path, content_hash, vector, local) VALUES (?, ?, ?, ?, ?)",
            [(lid, os.path.abspath(path), digest, np.asarray(vector, np.float32).tobytes(), local)
             for lid, path, digest, vector, local in rows])
        for start in range(0, len(remove_ids), 500):
            chunk = list(remove_ids[start:start + 500])
            connection.execute(f"DELETE FROM refs WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        for lid in drop_landmarks:
            connection.execute("DELETE FROM refs WHERE landmark = ?", (lid,))
            connection.execute("DELETE FROM landmarks WHERE id = ?", (lid,))
        store_vector_index(connection, meta.get("vector_index_request", "auto"))
        connection.execute("INSERT OR REPLACE INTO meta VALUES ('updated', ?)",
                           (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),))


def store_vector_index(connection: sqlite3.Connection, request: str = "auto") -> str:
    """Rebuild the FAISS index from the stored vectors (inside the caller's transaction)."""
    import faiss

    ids, vectors = [], []
    for rid, blob in connection.execute("SELECT id, vector FROM refs ORDER BY id"):
        ids.append(rid)
        vectors.append(np.frombuffer(blob, np.float32))
    matrix = np.stack(vectors) if vectors else np.zeros((0, 768), np.float32)
    kind = request if request in ("flat", "hnsw") else ("hnsw" if len(ids) > HNSW_AUTO else "flat")
    index = _vector_index(matrix, np.array(ids, np.int64), kind)
    connection.execute("INSERT OR REPLACE INTO blobs VALUES ('faiss', ?)",
                       (faiss.serialize_index(index).tobytes(),))
    connection.execute("INSERT OR REPLACE INTO meta VALUES ('vector_index', ?)", (kind,))
    return kind


def create_index(output: str | os.PathLike, local: Method | None = None,
                 weights: str | None = None, vector_index: str = "auto") -> None:
    """An empty index file with its settings recorded."""
    local = local or local_method()
    connection = _connect(output)
    try:
        connection.executescript(SCHEMA)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        settings = {
            "format": str(FORMAT_VERSION),
            "global_settings": json.dumps({"metric": "cosine", "weights": weights}),
            "local_method": local.name,
            "local_settings": json.dumps(local.settings()),
            "vector_index_request": vector_index,
            "created": now,
            "updated": now,
        }
        with connection:
            connection.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", settings.items())
            store_vector_index(connection, vector_index)
    finally:
        connection.close()


def build_index(gallery: str | os.PathLike | Sequence[GalleryEntry], output: str | os.PathLike,
                cache=None, jobs: int = 1, quiet: bool = True, engine: str = "local",
                weights: str | None = None, vector_index: str = "auto",
                local: str | None = None) -> ChangeReport:
    """Build an index from a gallery into a temporary file, then rename it over `output`."""
    entries = gallery if isinstance(gallery, (list, tuple)) else read_gallery(gallery)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    for suffix in ("", "-journal"):
        Path(str(temporary) + suffix).unlink(missing_ok=True)
    try:
        create_index(temporary, local_method(local), weights, vector_index)
        with GalleryIndex(temporary) as index:
            report = index.add(entries, cache=cache, jobs=jobs, quiet=quiet, engine=engine)
        os.replace(temporary, output)
    finally:
        for suffix in ("", "-journal"):
            Path(str(temporary) + suffix).unlink(missing_ok=True)
    return report


# -- command line ----------------------------------------------------------------------------------
def _print_report(action: str, report: ChangeReport, target, quiet: bool) -> int:
    from lookalike.cli import report_errors

    if not quiet:
        parts = [f"{report.added} added"] if action != "remove" else [f"{report.removed} removed"]
        if report.skipped:
            parts.append(f"{report.skipped} already present")
        print(f"{target}: {', '.join(parts)}", file=sys.stderr)
    return report_errors(report.errors)


def run_build(args) -> int:
    from lookalike.cli import UsageError, cache_from_args

    try:
        report = build_index(args.gallery, args.output, cache=cache_from_args(args),
                             jobs=args.jobs, quiet=args.quiet, engine=args.engine,
                             weights=args.weights, vector_index=args.vector_index)
    except GalleryError as error:
        raise UsageError(str(error)) from None
    if not args.quiet:
        rate = report.added / report.seconds if report.seconds else 0.0
        print(f"built {args.output} in {report.seconds:.1f} s ({rate:.2f} photos/s)",
              file=sys.stderr)
    return _print_report("build", report, args.output, args.quiet)


def run_add(args) -> int:
    from lookalike.cli import UsageError, cache_from_args

    try:
        if args.landmark:
            photos = find_images(args.sources)
            if not photos:
                raise UsageError("no image files found in the given paths")
            landmark = Landmark(args.landmark)
            with GalleryIndex(args.index) as index:
                landmark = index.landmarks.get(args.landmark, landmark)
            if args.landmark_json:
                landmark = read_landmark_json(Path(args.landmark_json).parent, args.landmark)
            entries = [GalleryEntry(landmark, photos)]
        else:
            entries = [entry for source in args.sources for entry in read_gallery(source)]
        with GalleryIndex(args.index) as index:
            report = index.add(entries, cache=cache_from_args(args), jobs=args.jobs,
                               quiet=args.quiet, engine=args.engine)
    except GalleryError as error:
        raise UsageError(str(error)) from None
    return _print_report("add", report, args.index, args.quiet)


def run_remove(args) -> int:
    from lookalike.cli import UsageError

    if not args.landmark and not args.photo:
        raise UsageError("say what to remove: --landmark ID and/or --photo PATH")
    try:
        with GalleryIndex(args.index) as index:
            report = index.remove(args.landmark or (), args.photo or ())
    except GalleryError as error:
        raise UsageError(str(error)) from None
    return _print_report("remove", report, args.index, args.quiet)


def run_info(args) -> int:
    from lookalike.cli import UsageError

    try:
        with GalleryIndex(args.index) as index:
            info = index.info()
    except GalleryError as error:
        raise UsageError(str(error)) from None
    if args.json:
        print(json.dumps(info, ensure_ascii=False, indent=2))
        return 0
    print(f"{info['path']}: {info['landmarks']} landmarks, {info['references']} reference photos, "
          f"{info['bytes'] / 1e6:.1f} MB ({info['bytes_per_reference'] / 1e3:.0f} kB per photo)")
    print(f"  global: {info['global_method']}, FAISS {info['vector_index']}; "
          f"local: {info['local_method']}; updated {info['updated']}")
    for landmark in info["per_landmark"]:
        names = " / ".join(landmark["names"].get(k, "") for k in ("en", "ja")
                           if landmark["names"].get(k))
        where = ""
        if "location" in landmark:
            where = f"  @ {landmark['location']['lat']:.5f}, {landmark['location']['lon']:.5f}"
        print(f"  {landmark['id']:<28} {landmark['references']:>4} photos  {names}{where}")
    return 0


def add_command(subparsers) -> None:
    from lookalike.cli import add_common_options

    parser = subparsers.add_parser(
        "index", help="build and maintain a gallery index (build, add, remove, info)",
        description="A gallery index holds reference photos per landmark for `identify`, "
                    "`verify` and `serve`.",
    )
    commands = parser.add_subparsers(dest="index_command", metavar="ACTION", required=True)

    build = commands.add_parser(
        "build", help="build an index from a gallery folder",
        description="Build NAME.lkidx from GALLERY: a folder with one subfolder per landmark "
                    "(its id) holding reference photos and optionally landmark.json "
                    '({"en": ..., "ja": ..., "location": {"lat": ..., "lon": ...}, '
                    '"regions": {...}}), or a manifest CSV with path,label columns.',
    )
    build.add_argument("gallery", metavar="GALLERY", help="gallery folder or manifest .csv")
    build.add_argument("--output", "-o", required=True, metavar="NAME.lkidx")
    build.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="extract features locally (default) or on a Ray cluster")
    build.add_argument("--vector-index", choices=["auto", "flat", "hnsw"], default="auto",
                       help=f"FAISS index kind (auto: flat up to {HNSW_AUTO:,} photos)")
    add_common_options(build, gray=False)
    build.set_defaults(handler=run_build)

    add = commands.add_parser(
        "add", help="add landmarks or photos to an index (atomic)",
        description="Add a gallery folder (or manifest), or with --landmark ID the given photos "
                    "to that landmark. Photos already in the index are skipped.",
    )
    add.add_argument("index", metavar="NAME.lkidx")
    add.add_argument("sources", nargs="+", metavar="SOURCE",
                     help="gallery folders / manifests, or photos with --landmark")
    add.add_argument("--landmark", metavar="ID", help="the photos show this landmark")
    add.add_argument("--landmark-json", metavar="FILE", help="names and location for --landmark")
    add.add_argument("--engine", choices=["local", "ray"], default="local")
    add_common_options(add, gray=False)
    add.set_defaults(handler=run_add)

    remove = commands.add_parser("remove", help="remove landmarks or photos from an index",
                                 description="Remove whole landmarks and/or single photos.")
    remove.add_argument("index", metavar="NAME.lkidx")
    remove.add_argument("--landmark", action="append", metavar="ID", help="(repeatable)")
    remove.add_argument("--photo", action="append", metavar="PATH",
                        help="a reference photo, by its indexed path or its content (repeatable)")
    remove.add_argument("--quiet", "-q", action="store_true")
    remove.set_defaults(handler=run_remove)

    info = commands.add_parser("info", help="what an index holds",
                               description="Landmarks, photo counts, size and settings.")
    info.add_argument("index", metavar="NAME.lkidx")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=run_info)
