"""Feature cache: an embedded SQLite database keyed by file content + method + settings.

Re-runs reuse extracted features; renaming or moving a photo still hits the cache, editing it
misses. WAL mode and short transactions make it safe with two processes at once and after a
kill mid-run (a transaction is either in the file or not). A damaged database file is moved
aside (only the newest damaged copy is kept) and rebuilt instead of crashing the run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


def default_cache_path() -> Path:
    """$LOOKALIKE_CACHE, else $XDG_CACHE_HOME/lookalike/features.sqlite, else ~/.cache/..."""
    if os.environ.get("LOOKALIKE_CACHE"):
        return Path(os.environ["LOOKALIKE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lookalike" / "features.sqlite"


def content_hash(data: bytes) -> str:
    """A file's identity in cache keys: 128 bits of SHA-256 of its bytes.

    Every extraction hashes every file, so the hash's speed counts: with the SHA instructions
    of current x86 and ARM CPUs, SHA-256 takes ~0.2 ms for a 400 kB photo, half of BLAKE2b's
    time (which this used before; those entries simply miss once). It stays a cryptographic
    hash: a cache shared between users or machines must not hand one photo another's features
    through a crafted collision.
    """
    return hashlib.sha256(data).hexdigest()[:32]


class FeatureCache:
    """Key-value store of encoded features: key = '<method cache key>:<content hash>'."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as error:
            return self._rebuild(error)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        connection.execute("PRAGMA busy_timeout = 60000")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS features (key TEXT PRIMARY KEY, value BLOB NOT NULL)"
        )
        connection.execute(
            "CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, value REAL NOT NULL)"
        )
        connection.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        connection.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
        )
        row = connection.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        if row is None or row[0] != str(SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"unexpected cache schema {row}")
        connection.execute("SELECT count(*) FROM features LIMIT 1").fetchone()
        return connection

    def _rebuild(self, error: Exception) -> sqlite3.Connection:
        aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
        log.warning("feature cache %s is damaged (%s); moved to %s and rebuilt", self.path, error, aside)
        for suffix in ("", "-wal", "-shm"):
            source = Path(str(self.path) + suffix)
            if source.exists():
                os.replace(source, Path(str(aside) + suffix))
        self._remove_older_damaged(aside)
        return self._connect()

    def _remove_older_damaged(self, newest: Path) -> None:
        """Keep only the newest damaged copy: each is as large as the cache, and a cache that
        keeps breaking (a full disk, a bad network share) would otherwise fill the disk."""
        prefix = f"{self.path.name}.damaged-"
        keep = {newest.name + suffix for suffix in ("", "-wal", "-shm")}
        for name in os.listdir(self.path.parent):
            if name.startswith(prefix) and name not in keep:
                try:
                    os.remove(self.path.parent / name)
                except OSError as error:  # another process removed it, or it is not ours to
                    log.warning("could not remove %s: %s", name, error)

    def get_many(self, keys: Iterable[str], table: str = "features") -> dict[str, bytes]:
        keys = list(keys)
        found: dict[str, bytes] = {}
        try:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for key, value in self.connection.execute(
                    f"SELECT key, value FROM {table} WHERE key IN ({marks})", chunk
                ):
                    found[key] = value
        except sqlite3.DatabaseError as error:
            self.connection.close()
            self.connection = self._rebuild(error)
            return {}
        return found

    def put_many(self, items: Iterable[tuple[str, bytes]], table: str = "features") -> None:
        """Store features (or pair scores) in one transaction: all of them land, or none."""
        items = list(items)
        if not items:
            return
        try:
            with self.connection:
                self.connection.execute("BEGIN IMMEDIATE")
                self.connection.executemany(
                    f"INSERT OR REPLACE INTO {table} (key, value) VALUES (?, ?)", items
                )
        except sqlite3.DatabaseError as error:
            self.connection.close()
            self.connection = self._rebuild(error)

    def delete(self, key: str) -> None:
        with self.connection:
            self.connection.execute("DELETE FROM features WHERE key = ?", (key,))

    def __len__(self) -> int:
        return self.connection.execute("SELECT count(*) FROM features").fetchone()[0]

    def close(self) -> None:
        self.connection.close()


class NoCache:
    """Stands in for `FeatureCache` when caching is turned off (`--no-cache`)."""

    path = None

    def get_many(self, keys, table="features"):
        return {}

    def put_many(self, items, table="features"):
        pass

    def delete(self, key):
        pass

    def close(self):
        pass


def open_cache(cache: str | os.PathLike | FeatureCache | NoCache | bool | None = None):
    """None -> default cache file; False -> no cache; a path -> that file."""
    if cache is False:
        return NoCache()
    if isinstance(cache, (FeatureCache, NoCache)):
        return cache
    return FeatureCache(cache)


class PairMemo:
    """Results of a symmetric pair computation, found again whichever item comes first.

    Keys are the two items' ids; the memo holds the items, so their ids stay unique while it
    lives, and it starts over past `limit` pairs to bound its memory.
    """

    def __init__(self, limit: int = 200_000):
        self.limit = limit
        self.pairs: dict[tuple[int, int], tuple] = {}

    def get(self, a, b, compute, reverse=lambda result: result):
        """compute(a, b), or a stored result for (a, b), or `reverse` of the one for (b, a)."""
        hit = self.find(a, b, reverse)
        if hit is not None:
            return hit
        result = compute(a, b)
        self.put(a, b, result)
        return result

    def find(self, a, b, reverse=lambda result: result):
        """The stored result for (a, b), or `reverse` of the one for (b, a), or None."""
        hit = self.pairs.get((id(a), id(b)))
        if hit is not None:
            return hit[0]
        hit = self.pairs.get((id(b), id(a)))
        return reverse(hit[0]) if hit is not None else None

    def put(self, a, b, result) -> None:
        """Keep result as that of (a, b)."""
        if len(self.pairs) >= self.limit:
            self.pairs.clear()
        self.pairs[(id(a), id(b))] = (result, a, b)
