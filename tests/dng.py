"""A small, valid DNG written by hand for the camera RAW tests: a Bayer mosaic (RGGB, 16 bit)
with, optionally, an embedded JPEG preview, as cameras and converters write them (the preview
in IFD 0, the raw data in a SubIFD). No RAW sample ships with our packages, and the TIFF
layout is short enough to write here."""

from __future__ import annotations

import struct

import numpy as np

BYTE, ASCII, SHORT, LONG, SRATIONAL = 1, 2, 3, 4, 10
SIZES = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, SRATIONAL: 8}
FORMATS = {BYTE: "B", ASCII: "B", SHORT: "H", LONG: "I", SRATIONAL: "i"}


def mosaic(rgb: np.ndarray) -> np.ndarray:
    """An RGB photo (8 bit) sampled through an RGGB colour filter, on 16 bits."""
    height, width = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
    rgb = rgb[:height, :width].astype(np.uint16) * 257
    cfa = np.empty((height, width), np.uint16)
    cfa[0::2, 0::2] = rgb[0::2, 0::2, 0]
    cfa[0::2, 1::2] = rgb[0::2, 1::2, 1]
    cfa[1::2, 0::2] = rgb[1::2, 0::2, 1]
    cfa[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return cfa


def _values(kind: int, values) -> bytes:
    if kind == ASCII:
        values = list(values.encode("ascii") + b"\0")
    if kind == SRATIONAL:  # (numerator, denominator) pairs
        values = [part for pair in values for part in pair]
    return struct.pack(f"<{len(values)}{FORMATS[kind]}", *values)


def _ifd(entries: dict[int, tuple[int, object]], offset: int) -> bytes:
    """One IFD at file offset `offset`, its long values right after it; no next IFD."""
    count = len(entries)
    extra_at = offset + 2 + 12 * count + 4
    table, extra = b"", b""
    for tag in sorted(entries):
        kind, values = entries[tag]
        data = _values(kind, values)
        number = len(data) // SIZES[kind]
        if len(data) <= 4:
            field = data.ljust(4, b"\0")
        else:
            field = struct.pack("<I", extra_at + len(extra))
            extra += data + b"\0" * (len(data) % 2)
        table += struct.pack("<HHI", tag, kind, number) + field
    return struct.pack("<H", count) + table + struct.pack("<I", 0) + extra


def _raw_entries(cfa: np.ndarray, data_at: int) -> dict[int, tuple[int, object]]:
    height, width = cfa.shape
    return {
        254: (LONG, [0]), 256: (LONG, [width]), 257: (LONG, [height]),
        258: (SHORT, [16]), 259: (SHORT, [1]), 262: (SHORT, [32803]),
        273: (LONG, [data_at]), 277: (SHORT, [1]), 278: (LONG, [height]),
        279: (LONG, [cfa.nbytes]), 33421: (SHORT, [2, 2]), 33422: (BYTE, [0, 1, 1, 2]),
        50717: (LONG, [65535]),
    }


def _camera_entries(orientation: int) -> dict[int, tuple[int, object]]:
    identity = [(1, 1), (0, 1), (0, 1), (0, 1), (1, 1), (0, 1), (0, 1), (0, 1), (1, 1)]
    return {
        271: (ASCII, "lookalike"), 272: (ASCII, "test camera"), 274: (SHORT, [orientation]),
        50706: (BYTE, [1, 4, 0, 0]), 50708: (ASCII, "lookalike test camera"),
        50721: (SRATIONAL, identity), 50778: (SHORT, [21]),
    }


def make_dng(cfa: np.ndarray, preview: tuple[bytes, int, int] | None = None,
             orientation: int = 1) -> bytes:
    """DNG bytes: `cfa` (uint16 RGGB mosaic) as the raw image, and `preview` (JPEG bytes,
    width, height) as IFD 0 when given; the raw image is IFD 0 itself otherwise."""
    cfa = np.ascontiguousarray(cfa, dtype="<u2")
    header = 8
    if preview is None:
        data_at = header
        ifd_at = data_at + cfa.nbytes
        entries = {**_raw_entries(cfa, data_at), **_camera_entries(orientation)}
        return b"II*\0" + struct.pack("<I", ifd_at) + cfa.tobytes() + _ifd(entries, ifd_at)
    jpeg, width, height = preview
    jpeg_at = header
    cfa_at = jpeg_at + len(jpeg) + len(jpeg) % 2
    sub_at = cfa_at + cfa.nbytes
    sub = _ifd(_raw_entries(cfa, cfa_at), sub_at)
    ifd0_at = sub_at + len(sub)
    entries = {
        254: (LONG, [1]), 256: (LONG, [width]), 257: (LONG, [height]),
        258: (SHORT, [8, 8, 8]), 259: (SHORT, [7]), 262: (SHORT, [6]),
        273: (LONG, [jpeg_at]), 277: (SHORT, [3]), 278: (LONG, [height]),
        279: (LONG, [len(jpeg)]), 330: (LONG, [sub_at]), **_camera_entries(orientation),
    }
    body = jpeg + b"\0" * (len(jpeg) % 2) + cfa.tobytes() + sub
    return b"II*\0" + struct.pack("<I", ifd0_at) + body + _ifd(entries, ifd0_at)
