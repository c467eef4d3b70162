"""Image loading in one place: every method sees the same, correctly oriented pixels.

Handles JPEG, PNG, WebP, TIFF, BMP, GIF (first frame), HEIC and camera RAW (`raw.py`);
applies EXIF orientation; converts palette, alpha (onto white), 16-bit, CMYK and grayscale
images to 8-bit RGB (or L in grayscale mode); refuses images over the caller's pixel limit
(`LoadOptions.max_pixels`, the command line's `--max-pixels`) before decoding them; and
decodes JPEGs at reduced size (Pillow `draft`) when a method only needs a small image. Every
failure raises `ImageLoadError`, which names the file and the reason, so a run can report it
and go on. `find_images` walks folders as a photo library holds them (NAS and system folders
skipped, `--exclude` globs honoured).
"""

from __future__ import annotations

import fnmatch
import io
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from lookalike.imaging.limits import DEFAULT_MAX_PIXELS
from lookalike.imaging.raw import RAW_EXTENSIONS, RawDecodeError, is_raw, read_raw

try:  # HEIC/HEIF support is optional at import time but installed by default.
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - exercised only without pillow-heif
    pillow_heif = None

IMAGE_EXTENSIONS = frozenset(
    [".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif"]
) | RAW_EXTENSIONS
# Folders of a photo library that hold no photos of its own: NAS thumbnails and recycle bins
# (Synology, QNAP), Windows and Linux system folders. Hidden folders (".Trash-1000",
# ".thumbnails", ".@__thumb") are skipped too.
SYSTEM_FOLDERS = frozenset(
    ["@eaDir", "@tmp", "@sharebin", "@Recycle", "@Recently-Snapshot", "#recycle", "#snapshot",
     "$RECYCLE.BIN", "System Volume Information", "lost+found"]
)
log = logging.getLogger(__name__)


class ImageLoadError(Exception):
    """A file that could not be turned into pixels; `str()` reads `path: reason`."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# A function (width, height) -> (min_width, min_height) that a method needs, or None for full size.
DecodeSize = Callable[[int, int], tuple[int, int]]


@dataclass(frozen=True)
class LoadOptions:
    """How a method wants its pixels: gray or colour, and how small a JPEG may be decoded."""

    gray: bool = False
    min_short_side: int | None = None  # decode at least this short side (hashes)
    min_long_side: int | None = None  # decode at least this long side (keypoints)
    luminance_only: bool = False  # the method reads only brightness: decode JPEG luma directly
    max_pixels: int = DEFAULT_MAX_PIXELS

    def draft_size(self, width: int, height: int) -> tuple[int, int] | None:
        factor = 0.0
        if self.min_short_side:
            factor = max(factor, self.min_short_side / min(width, height))
        if self.min_long_side:
            factor = max(factor, self.min_long_side / max(width, height))
        if factor == 0.0 or factor >= 1.0:
            return None
        return max(1, int(width * factor + 0.999)), max(1, int(height * factor + 0.999))


# EXIF orientation -> the transpose that shows the photo upright (as ImageOps.exif_transpose).
ORIENTATION_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90,
}


def _jpeg_luma(data: bytes) -> np.ndarray | None:
    """A JPEG's full-size luma plane decoded by OpenCV, or None to let Pillow decode it.

    Both bundle libjpeg-turbo, so the pixels are the same (tested) and so is the decode itself;
    OpenCV saves what Pillow adds around it, a block-by-block Python loop and a copy out of its
    own storage (~0.5 ms of a hash's ~5 ms a photo). OpenCV fills a truncated file with
    gray instead of failing, so only files that end with the end-of-image marker come here;
    Pillow decodes (and reports) the rest. Damaged data inside a complete file is decoded as
    Pillow would, except that libjpeg prints its warning ("Corrupt JPEG data: ...") on stderr
    where Pillow stays silent.
    """
    if data[-2:] != b"\xff\xd9":
        return None
    flags = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION
    luma = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    return luma if luma is not None and luma.ndim == 2 else None


def _describe_start(data: bytes) -> str:
    head = data[:16]
    text = head.decode("latin-1")
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"starts with {text[:12]!r}"
    return "starts with bytes " + head[:8].hex(" ")


def _to_8bit(image: Image.Image) -> Image.Image:
    """Bring any Pillow mode to RGB (or L) with 8 bits per channel, alpha composited on white."""
    mode = image.mode
    if mode in ("RGB", "L"):
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode == "1":
        return image.convert("L")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and array.max(initial=0) > 255):
            array = array / 257.0  # 16-bit range onto 8 bits
        return Image.fromarray(np.clip(array + 0.5, 0, 255).astype(np.uint8), "L")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        return image.convert("RGB")
    return image.convert("RGB")


def decode_image(data: bytes, name: str | os.PathLike, options: LoadOptions = LoadOptions()) -> Image.Image:
    """Decode image bytes into an oriented 8-bit RGB (or L when `options.gray`) image."""
    if not data:
        raise ImageLoadError(name, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # The pixel limit is ours (`options.max_pixels`), checked before decoding; Pillow's
            # warning at its own 89.5 Mpx is not a refusal here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if is_raw(name, data):
                image, original_size = _decode_raw(data, name, options)
            else:
                image, original_size = _decode_oriented(data, name, options)
    except ImageLoadError:
        raise
    except RawDecodeError as error:
        raise ImageLoadError(name, str(error)) from None
    except UnidentifiedImageError:
        raise ImageLoadError(name, f"not an image ({_describe_start(data)})") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as error:
        reason = str(error) or type(error).__name__
        if "truncated" in reason.lower():
            reason = f"truncated or damaged image data ({reason})"
        raise ImageLoadError(name, f"cannot decode: {reason}") from None
    if image.width < 1 or image.height < 1:
        raise ImageLoadError(name, "image has no pixels")
    image = _to_8bit(image)
    if options.gray or options.luminance_only:
        image = image.convert("L") if image.mode != "L" else image
    else:
        image = image.convert("RGB") if image.mode != "RGB" else image
    # Methods whose result depends on the file's full size (e.g. whash's scale) read this.
    image.info["original_size"] = original_size
    return image


def too_large(width: int, height: int, max_pixels: int) -> str | None:
    """Why a `width` x `height` image is refused under `max_pixels` (0: no limit), or None."""
    if not max_pixels or width * height <= max_pixels:
        return None
    return (f"too large: {width}x{height} = {width * height:,} pixels exceeds the limit of "
            f"{max_pixels:,} (a decompression bomb?); raise it with --max-pixels N "
            f"(0: no limit)")


def _decode_oriented(data: bytes, name: str | os.PathLike, options: LoadOptions,
                     default_orientation: int = 1) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded pixels turned upright by their EXIF orientation (or `default_orientation`
    when the file has none), and the upright size of the full image (JPEGs may be decoded
    smaller); refuses more pixels than `options.max_pixels` before decoding any."""
    try:
        return _decode_within_limit(data, name, options, default_orientation)
    except Image.DecompressionBombError:
        # Pillow's own hard limit (twice its MAX_IMAGE_PIXELS: 179 Mpx) is a module global;
        # ours may be higher. Such an image (rare) is decoded with Pillow's limit lifted,
        # under a lock, and the global restored after; every other image leaves it alone.
        with _PILLOW_LIMIT_LOCK:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                return _decode_within_limit(data, name, options, default_orientation)
            finally:
                Image.MAX_IMAGE_PIXELS = saved


_PILLOW_LIMIT_LOCK = threading.Lock()


def _decode_within_limit(data: bytes, name: str | os.PathLike, options: LoadOptions,
                         default_orientation: int) -> tuple[Image.Image, tuple[int, int]]:
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    reason = too_large(width, height, options.max_pixels)
    if reason:
        raise ImageLoadError(name, reason)
    orientation = image.getexif().get(0x0112, 1)
    orientation = orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1
    orientation = orientation if orientation != 1 else default_orientation
    original_size = (width, height) if orientation < 5 else (height, width)
    image = _decode_pixels(image, data, options)
    if orientation != 1:
        image = image.transpose(ORIENTATION_TRANSPOSES[orientation])
    return image, original_size


def _decode_raw(data: bytes, name: str | os.PathLike, options: LoadOptions
                ) -> tuple[Image.Image, tuple[int, int]]:
    """A camera RAW file's embedded preview (decoded as any JPEG, with the RAW's orientation
    when the preview has none), or its demosaiced pixels when the preview is missing or small."""
    contents = read_raw(data, options.max_pixels, options.min_long_side)
    if contents.jpeg is not None:
        return _decode_oriented(contents.jpeg, name, options, contents.orientation)
    image = Image.fromarray(contents.pixels, "RGB")
    reason = too_large(image.width, image.height, options.max_pixels)
    if reason:
        raise ImageLoadError(name, reason)
    if contents.orientation != 1:
        image = image.transpose(ORIENTATION_TRANSPOSES[contents.orientation])
    return image, image.size


def _decode_pixels(image: Image.Image, data: bytes, options: LoadOptions) -> Image.Image:
    """Decode an opened image; a JPEG at reduced size (draft) when the options allow, and
    only its luma when one channel is wanted."""
    single_channel = options.gray or options.luminance_only
    if image.format == "JPEG":
        width, height = image.size
        size = options.draft_size(width, height)
        luma = _jpeg_luma(data) if size is None and single_channel and \
            image.mode in ("L", "RGB") else None
        if luma is not None:
            return Image.fromarray(luma, "L")
        if size is not None or single_channel:
            image.draft("L" if single_channel else "RGB", size or (width, height))
    image.load()
    return image


def read_bytes(path: str | os.PathLike) -> bytes:
    """Read a file, turning OS errors into `ImageLoadError` that names the file."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except IsADirectoryError:
        raise ImageLoadError(path, "is a directory, not an image file") from None
    except FileNotFoundError:
        raise ImageLoadError(path, "no such file") from None
    except OSError as error:
        raise ImageLoadError(path, f"cannot read: {error.strerror or error}") from None


def load_image(path: str | os.PathLike, options: LoadOptions = LoadOptions()) -> Image.Image:
    """Load one image file; raises `ImageLoadError` naming the file on any failure."""
    return decode_image(read_bytes(path), path, options)


def find_images(inputs: Iterable[str | os.PathLike], exclude: Sequence[str] = ()) -> list[str]:
    """Expand files and folders (recursively, sorted) into image paths, keeping paths as given.

    Files named explicitly are always returned, whatever their extension, so that a wrong file
    is reported rather than silently ignored; inside folders only image extensions are taken,
    and what is not part of a photo library is skipped: hidden files and folders, NAS and
    system folders (`SYSTEM_FOLDERS`), and every file or folder that an `exclude` glob matches
    (by its name, or by its path below the given folder, e.g. `Screenshots`, `2019/*`,
    `*.png`). Each skip is logged at debug level, their count at info level.
    """
    found: list[str] = []
    skipped = _Skipped(tuple(exclude))
    for item in inputs:
        item = str(item)
        if os.path.isdir(item):
            found += _walk(item, skipped)
        else:
            found.append(item)
    skipped.report()
    return list(dict.fromkeys(found))


def folder_skip_reason(name: str, exclude: Sequence[str] = ()) -> str | None:
    """Why `find_images` would skip a folder of this name (hidden, NAS or system folder, an
    `exclude` glob), or None; for callers that walk folders of their own (galleries)."""
    return _Skipped(tuple(exclude)).reason(name, name, folder=True)


class _Skipped:
    """What `find_images` left out, and why."""

    def __init__(self, exclude: tuple[str, ...]):
        self.exclude = exclude
        self.counts: dict[str, int] = {}

    def reason(self, name: str, relative: str, folder: bool) -> str | None:
        if name.startswith("."):
            return "hidden"
        if folder and name in SYSTEM_FOLDERS:
            return "NAS or system folder"
        for pattern in self.exclude:
            if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(relative, pattern):
                return f"--exclude {pattern}"
        return None

    def skip(self, path: str, name: str, relative: str, folder: bool) -> bool:
        reason = self.reason(name, relative, folder)
        if reason is None:
            return False
        kind = "folder" if folder else "file"
        log.debug("skipped %s %s (%s)", kind, path, reason)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return True

    def report(self) -> None:
        if self.counts:
            told = " and ".join(f"{count} {kind}(s)" for kind, count in sorted(self.counts.items()))
            log.info("skipped %s: hidden, NAS or system folders, or --exclude "
                     "(-vv lists them)", told)


def _walk(top: str, skipped: _Skipped) -> list[str]:
    found = []
    for root, dirs, files in os.walk(top):
        below = os.path.relpath(root, top)
        below = "" if below == "." else below.replace(os.sep, "/") + "/"
        dirs[:] = sorted(d for d in dirs
                         if not skipped.skip(os.path.join(root, d), d, below + d, folder=True))
        for name in sorted(files):
            if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if not skipped.skip(os.path.join(root, name), name, below + name, folder=False):
                found.append(os.path.join(root, name))
    return found
