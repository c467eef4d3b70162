"""The stored inverted file: an index's ASMK postings in a sidecar file, read memory-mapped.

Why a sidecar: opening an index used to read every reference's global feature from SQLite and
rebuild the inverted file in memory, ~20 kB and some CPU per reference, in every process
(each Ray actor, each server worker). `NAME.lkidx.ivf` holds the same arrays
(`lookalike.matching.asmk.Postings`) already sorted by visual word, so opening maps the file
(pages are read when a query touches their words, and shared between processes) and a query
reads one contiguous slice per word.

Layout: 8 bytes of magic, an 8-byte little-endian header length, a JSON header, then the
arrays, each at a 64-byte aligned offset the header gives (dtype, shape, offset):
`ids` (int64, the reference id at each gallery position, ascending), `landmark_codes` (int32,
each reference's landmark as an index into the header's `landmarks`), `counts` (int32, words
per reference), `offsets` (int64, vocabulary + 1), `positions` (int32, per posting), `bits`
(uint64, postings x dim / 64).

The SQLite file stays the truth: the header records the index's `instance` (a random id given
at creation) and `generation` (counted up by every committed change, in the same
transaction), and the global method's record. A sidecar whose three values differ from the
SQLite file's (a kill between the commit and the sidecar's rename, a copied index, a changed
codebook) is rebuilt from the SQLite rows. A sidecar is always written to a temporary file
and renamed over the old one, so a reader sees the old or the new, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.matching.asmk import Postings, merge_postings, merged_offsets, postings_of

log = logging.getLogger(__name__)

MAGIC = b"LKIVF01\n"
ALIGN = 64
BATCH = 50_000  # references decoded at a time when the sidecar is rebuilt from SQLite


def sidecar_path(index_path: str | os.PathLike) -> Path:
    return Path(f"{index_path}.ivf")


@dataclass
class Sidecar:
    """An open sidecar: its header and arrays (memory-mapped, read-only)."""

    path: Path
    header: dict[str, Any]
    ids: np.ndarray
    landmark_codes: np.ndarray
    postings: Postings

    def matches(self, instance: str, generation: int, method: str) -> bool:
        return (self.header.get("instance") == instance and
                self.header.get("generation") == generation and
                self.header.get("global_method") == method)


def _layout(specs: dict[str, tuple[str, tuple[int, ...]]]) -> tuple[dict, int]:
    layout, offset = {}, 0
    for name, (dtype, shape) in specs.items():
        offset = -(-offset // ALIGN) * ALIGN
        layout[name] = {"dtype": dtype, "shape": list(shape), "offset": offset}
        offset += int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return layout, offset


def _header_bytes(header: dict, layout: dict) -> tuple[bytes, int]:
    text = json.dumps({**header, "arrays": layout}).encode()
    start = -(-(len(MAGIC) + 8 + len(text)) // ALIGN) * ALIGN
    return MAGIC + struct.pack("<Q", len(text)) + text, start


def _map(path: Path, spec: dict, start: int, mode: str) -> np.ndarray:
    shape = tuple(spec["shape"])
    if int(np.prod(shape, dtype=np.int64)) == 0:
        return np.zeros(shape, spec["dtype"])
    return np.memmap(path, dtype=spec["dtype"], mode=mode, offset=start + spec["offset"],
                     shape=shape)


def read_sidecar(path: str | os.PathLike) -> Sidecar | None:
    """The sidecar at `path`, or None when it is missing or unreadable."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            if handle.read(len(MAGIC)) != MAGIC:
                return None
            (length,) = struct.unpack("<Q", handle.read(8))
            meta = json.loads(handle.read(length))
        start = -(-(len(MAGIC) + 8 + length) // ALIGN) * ALIGN
        layout = meta.pop("arrays")
        end = max(start + spec["offset"] + int(np.prod(spec["shape"], dtype=np.int64)) *
                  np.dtype(spec["dtype"]).itemsize for spec in layout.values())
        if path.stat().st_size < end:
            return None
        arrays = {name: _map(path, spec, start, "r") for name, spec in layout.items()}
    except (OSError, ValueError, KeyError, struct.error):
        return None
    postings = Postings(arrays["offsets"], arrays["positions"], arrays["bits"],
                        arrays["counts"], int(meta["dim"]))
    return Sidecar(path, meta, arrays["ids"], arrays["landmark_codes"], postings)


def write_sidecar(path: Path, header: dict, ids: np.ndarray, landmark_codes: np.ndarray,
                  counts: np.ndarray, parts: Sequence[tuple[Postings, np.ndarray | None]],
                  vocabulary: int, dim: int) -> None:
    """Merge `parts` (see `asmk.merge_postings`) into a new sidecar, renamed over `path`."""
    offsets = merged_offsets(parts, vocabulary)
    total, width = int(offsets[-1]), max(1, dim // 64)
    layout, size = _layout({
        "ids": ("int64", (len(ids),)), "landmark_codes": ("int32", (len(ids),)),
        "counts": ("int32", (len(ids),)), "offsets": ("int64", (vocabulary + 1,)),
        "positions": ("int32", (total,)), "bits": ("uint64", (total, width))})
    head, start = _header_bytes({**header, "dim": dim}, layout)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with temporary.open("wb") as handle:
            handle.write(head)
            handle.truncate(start + size)
        arrays = {name: _map(temporary, spec, start, "r+") for name, spec in layout.items()}
        arrays["ids"][:] = ids
        arrays["landmark_codes"][:] = landmark_codes
        arrays["counts"][:] = counts
        arrays["offsets"][:] = offsets
        out = Postings(arrays["offsets"], arrays["positions"], arrays["bits"],
                       arrays["counts"], dim)
        merge_postings(parts, out)
        for array in arrays.values():
            if isinstance(array, np.memmap):
                array.flush()
        del arrays, out
        with temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        with contextlib.suppress(OSError):  # the rename itself survives a power cut
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
    finally:
        temporary.unlink(missing_ok=True)


def remove_stale_temporaries(path: Path) -> None:
    """Temporary sidecars left by killed writers (their process is gone)."""
    for leftover in path.parent.glob(f".{path.name}.tmp-*"):
        try:
            pid = int(leftover.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            leftover.unlink(missing_ok=True)
        except (ValueError, OSError):
            continue


def segments(rows: Iterable[tuple[int, int, Any]], vocabulary: int, dim: int, folder: Path,
             first_position: int = 0):
    """Postings of (id, landmark code, global feature) rows, ascending ids, a batch at a time:
    yields (ids, codes, counts, Postings). Batches past the first are spilled to temporary
    files in `folder` (deleted when the generator closes) so memory stays bounded."""
    batch: list[tuple[int, int, Any]] = []
    position = first_position
    spilled: list[Path] = []
    try:
        for row in rows:
            batch.append(row)
            if len(batch) == BATCH:
                yield _segment(batch, position, vocabulary, dim, folder, spilled)
                position += len(batch)
                batch = []
        if batch or position == first_position:
            yield _segment(batch, position, vocabulary, dim, folder, spilled)
    finally:
        for path in spilled:
            path.unlink(missing_ok=True)


def _segment(batch, position, vocabulary, dim, folder, spilled):
    ids = np.array([row[0] for row in batch], np.int64)
    codes = np.array([row[1] for row in batch], np.int32)
    postings = postings_of([row[2] for row in batch], vocabulary, position, dim)
    if len(batch) < BATCH and not spilled:  # one small batch: stays in memory
        return ids, codes, postings.counts, postings
    path = folder / f".segment-{os.getpid()}-{len(spilled)}.ivf"
    spilled.append(path)
    write_sidecar(path, {}, ids, codes, postings.counts, [(postings, None)], vocabulary, dim)
    stored = read_sidecar(path)
    assert stored is not None
    return ids, codes, stored.postings.counts, stored.postings
