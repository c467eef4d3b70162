"""Camera RAW files (.cr2 .nef .arw .dng .raf .orf .rw2 ...): their pixels for `loading`.

A RAW file carries the camera's JPEG preview, the photo as the camera showed it, usually at
full or near-full size. That preview is what we decode: it is fast (no demosaicing), and its
colours are the camera's own. A file whose preview is missing or too small for the photo is
demosaiced with LibRaw (through `rawpy`), at half size when that is enough. The preview's own
EXIF orientation wins; without one, the RAW's orientation is applied (cameras store the
preview as the sensor saw it).
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RAW_EXTENSIONS = frozenset(
    [".cr2", ".cr3", ".nef", ".nrw", ".arw", ".dng", ".raf", ".orf", ".rw2", ".pef", ".srw"]
)
# A preview at least this long (or as long as the RAW) stands for the photo.
PREVIEW_LONG_SIDE = 1024
# LibRaw's `flip` (dcraw's) -> the EXIF orientation that means the same.
EXIF_ORIENTATION_OF_FLIP = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}
DNG_VERSION_TAG = 50706


class RawDecodeError(ValueError):
    """A RAW file that could not be read; `str()` is the reason."""


@dataclass(frozen=True)
class RawContents:
    """What a RAW file gives: its JPEG preview (bytes), or decoded RGB pixels (already
    upright), and the orientation the preview should be shown in when it carries none."""

    jpeg: bytes | None
    pixels: np.ndarray | None
    orientation: int


def is_raw(name: str | os.PathLike, data: bytes) -> bool:
    """Whether these bytes are a camera RAW file: by its name, or by its first bytes (an
    upload may have no name; Pillow would read a TIFF-based RAW's tiny thumbnail instead)."""
    if Path(str(name)).suffix.lower() in RAW_EXTENSIONS:
        return True
    head = data[:16]
    return (head.startswith((b"FUJIFILMCCD-RAW", b"IIRO", b"IIRS", b"MMOR", b"IIU\0"))
            or head[4:12] == b"ftypcrx "  # Canon CR3
            or (head.startswith(b"II*\0") and head[8:10] == b"CR")  # Canon CR2
            or _tiff_has_dng_version(data))


def _tiff_has_dng_version(data: bytes) -> bool:
    """A TIFF whose first IFD carries the DNGVersion tag: a DNG, whatever its name."""
    if data[:4] not in (b"II*\0", b"MM\0*"):
        return False
    order = "<" if data[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, offset)
        for index in range(min(count, 512)):
            (tag,) = struct.unpack_from(order + "H", data, offset + 2 + 12 * index)
            if tag == DNG_VERSION_TAG:
                return True
    except struct.error:
        return False
    return False


def read_raw(data: bytes, max_pixels: int, min_long_side: int | None = None) -> RawContents:
    """The preview or the demosaiced pixels of a RAW file (see the module's docstring);
    `max_pixels` bounds the sensor size that may be demosaiced (0: no bound), and
    `min_long_side` is how long a side the caller needs (None: the full photo)."""
    try:
        import rawpy
    except ImportError:  # pragma: no cover - rawpy is a dependency
        raise RawDecodeError("camera RAW files need rawpy (pip install rawpy)") from None
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            sizes = raw.sizes
            orientation = EXIF_ORIENTATION_OF_FLIP.get(sizes.flip & 7, 1)
            long_side = max(sizes.width, sizes.height)
            preview = _preview(raw, rawpy)
            if preview is not None and _long_side(preview) >= min(PREVIEW_LONG_SIDE, long_side):
                return RawContents(*preview, orientation)
            if max_pixels and sizes.width * sizes.height > max_pixels:
                raise RawDecodeError(
                    f"too large: {sizes.width}x{sizes.height} = {sizes.width * sizes.height:,} "
                    f"pixels exceeds the limit of {max_pixels:,}; raise it with --max-pixels")
            half = min_long_side is not None and min_long_side <= long_side // 2
            pixels = raw.postprocess(use_camera_wb=True, half_size=half, output_bps=8)
            return RawContents(None, np.ascontiguousarray(pixels), 1)
    except RawDecodeError:
        raise
    except rawpy.LibRawFileUnsupportedError:
        raise RawDecodeError("not a camera RAW file that LibRaw can read") from None
    except (rawpy.LibRawError, OSError, ValueError) as error:
        raise RawDecodeError(f"cannot decode camera RAW: {error}") from None


def _preview(raw, rawpy) -> tuple[bytes | None, np.ndarray | None] | None:
    """The embedded preview as (JPEG bytes, None) or (None, RGB pixels); None without one."""
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        return bytes(thumb.data), None
    pixels = np.asarray(thumb.data)
    return (None, pixels) if pixels.ndim == 3 and pixels.shape[2] == 3 else None


def _long_side(preview: tuple[bytes | None, np.ndarray | None]) -> int:
    jpeg, pixels = preview
    if pixels is not None:
        return max(pixels.shape[:2])
    from PIL import Image, UnidentifiedImageError

    try:
        return max(Image.open(io.BytesIO(jpeg)).size)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return 0  # a damaged preview: demosaic the RAW instead
