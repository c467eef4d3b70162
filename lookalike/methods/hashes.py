"""Perceptual hashes from ImageHash, the study's first method family.

Each hash is a bit string; similarity = 1 - Hamming distance / bits. `crophash` is a set of
segment hashes matched with ImageHash's own segment matching. Every hash gives ImageHash's
bits for the same pixels (tested against ImageHash), but by shorter routes: Pillow's LANCZOS
shrink as matrix products (`lookalike.imaging.resample`), whash from block sums, colorhash from a
colour-to-bin table, crophash's regions by connected-component labelling. ImageHash spends most
of its time on work that cannot change the result.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import ClassVar

import imagehash
import numpy as np
from PIL import Image

from lookalike.features.contract import BITS, SEGMENTS, Method
from lookalike.features.registry import register
from lookalike.imaging.loading import LoadOptions
from lookalike.imaging.resample import lanczos_resize

# Why full-size decoding: hash bits near their threshold flip under any pixel change, and
# reduced-size (DCT-scaled) decoding at 1/2 scale left only 86-92% of ahash/phash/dhash results
# identical to stock ImageHash on the dev photos. Decoding JPEG luma directly (no colour
# conversion) keeps ~99% of the hashes bit-identical while skipping the chroma work.


def hamming_similarity_matrix(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """1 - Hamming/bits for every pair of 0/1 rows, as two float matrix products."""
    q = queries.astype(np.float32)
    g = gallery.astype(np.float32)
    agree = q @ g.T + (1.0 - q) @ (1.0 - g).T
    return agree.astype(np.float64) / max(q.shape[1], 1)


@dataclasses.dataclass
class HashMethod(Method):
    """A single-hash method; subclasses only say which ImageHash function to call."""

    feature_kind: ClassVar[str] = BITS
    order: ClassVar[int] = 10
    parallel: ClassVar[str] = "threads"  # Pillow decodes and resizes without holding the GIL
    hash_size: int = 8

    def load_options(self) -> LoadOptions:
        return LoadOptions(gray=self.gray, luminance_only=True)

    def compute(self, image: Image.Image) -> imagehash.ImageHash:
        raise NotImplementedError

    def extract(self, image: Image.Image) -> np.ndarray:
        return np.asarray(self.compute(image).hash, dtype=np.uint8).reshape(-1)

    def score(self, a: np.ndarray, b: np.ndarray) -> float:
        return 1.0 - float(np.count_nonzero(a != b)) / a.size

    def score_matrix(self, queries: Sequence[np.ndarray], gallery: Sequence[np.ndarray]) -> np.ndarray:
        return hamming_similarity_matrix(np.stack(queries), np.stack(gallery))


@register
@dataclasses.dataclass
class AverageHash(HashMethod):
    name: ClassVar[str] = "ahash"
    description: ClassVar[str] = "average hash (ImageHash), 1 - Hamming/bits"

    def compute(self, image):
        pixels = _shrunk(image, self.hash_size, self.hash_size)
        return imagehash.ImageHash(pixels > pixels.mean())


@register
@dataclasses.dataclass
class PerceptualHash(HashMethod):
    name: ClassVar[str] = "phash"
    description: ClassVar[str] = "DCT perceptual hash (ImageHash), 1 - Hamming/bits"

    def compute(self, image):
        import scipy.fftpack  # as ImageHash computes it, so the floats (and bits) are the same

        pixels = _shrunk(image, 4 * self.hash_size, 4 * self.hash_size)
        low = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)[:self.hash_size,
                                                                           :self.hash_size]
        return imagehash.ImageHash(low > np.median(low))


@register
@dataclasses.dataclass
class DifferenceHash(HashMethod):
    name: ClassVar[str] = "dhash"
    description: ClassVar[str] = "difference hash (ImageHash), 1 - Hamming/bits"

    def compute(self, image):
        pixels = _shrunk(image, self.hash_size + 1, self.hash_size)
        return imagehash.ImageHash(pixels[:, 1:] > pixels[:, :-1])


def _shrunk(image: Image.Image, width: int, height: int) -> np.ndarray:
    """The gray image at width x height, exactly as ImageHash's `convert("L").resize(...)`."""
    return lanczos_resize(np.asarray(image if image.mode == "L" else image.convert("L")),
                          (width, height))


@register
@dataclasses.dataclass
class WaveletHash(HashMethod):
    name: ClassVar[str] = "whash"
    description: ClassVar[str] = "Haar wavelet hash (ImageHash), 1 - Hamming/bits"

    def compute(self, image):
        return imagehash.ImageHash(wavelet_hash_bits(image, self.hash_size))


def wavelet_hash_bits(image: Image.Image, hash_size: int = 8) -> np.ndarray:
    """ImageHash's `whash` (Haar, top level removed), by block sums instead of two transforms.

    Stock whash resizes to the largest power of two below the short side, removes the Haar
    LL coefficient (the image mean) and takes the Haar LL band at hash_size x hash_size, which
    is each block's mean up to a constant factor, then compares it with the median. Subtracting
    the mean shifts every block and the median alike, so integer block sums compared with their
    median give the same bits, exactly and without floating-point noise.
    """
    width, height = image.info.get("original_size", image.size)  # the file's size picks the scale
    scale = max(2 ** int(math.log2(min(width, height))), hash_size)
    pixels = np.asarray(image.convert("L").resize((scale, scale), Image.LANCZOS), dtype=np.int64)
    block = scale // hash_size
    sums = pixels.reshape(hash_size, block, hash_size, block).sum(axis=(1, 3))
    return sums > np.median(sums)


@register
@dataclasses.dataclass
class ColorHash(HashMethod):
    name: ClassVar[str] = "colorhash"
    description: ClassVar[str] = "colour-histogram hash (ImageHash), 1 - Hamming/bits"
    binbits: int = 3

    def load_options(self) -> LoadOptions:
        return LoadOptions(gray=self.gray)  # needs colour

    def compute(self, image):
        return imagehash.ImageHash(color_hash_bits(image, self.binbits))


# colorhash sorts each pixel into one of these bins, by its intensity, saturation and hue.
_GRAY, _FAINT, _BRIGHT, _OTHER_COLOUR, _BLACK = 0, 1, 7, 13, 14
_HUE_BINS = 6


@functools.lru_cache(maxsize=1)
def _colorhash_bin_of_rgb() -> np.ndarray:
    """The colorhash bin of every 24-bit colour (16 MB, built once in ~0.5 s).

    Built by running Pillow's own L and HSV conversions over all 2^24 colours, so each pixel's
    bin is exactly what ImageHash computes from `convert("L")` and `convert("HSV")`; an image
    then needs one table lookup per pixel instead of a float HSV conversion.
    """
    edges = np.linspace(0, 255, _HUE_BINS + 1)  # np.histogram's bins, as ImageHash calls it
    hue_bin = np.minimum(np.searchsorted(edges, np.arange(256), side="right") - 1, _HUE_BINS - 1)
    bins = np.empty(1 << 24, np.uint8)
    reds_per_slice = 16  # 1M colours at a time keeps the peak memory small
    slab = np.empty((reds_per_slice, 256, 256, 3), np.uint8)
    levels = np.arange(256, dtype=np.uint8)
    slab[..., 1], slab[..., 2] = levels[None, :, None], levels[None, None, :]
    for red in range(0, 256, reds_per_slice):
        slab[..., 0] = np.arange(red, red + reds_per_slice, dtype=np.uint8)[:, None, None]
        # Table index = r << 16 | g << 8 | b here; lookups below use b << 16 | g << 8 | r.
        colours = Image.fromarray(slab.reshape(-1, 256, 3), "RGB")
        intensity = np.asarray(colours.convert("L")).ravel()
        hue, saturation, _ = (np.asarray(band).ravel() for band in colours.convert("HSV").split())
        part = np.full(intensity.size, _OTHER_COLOUR, np.uint8)  # saturation 170: no bin
        faint = (saturation >= 85) & (saturation < 170)
        bright = saturation > 170
        part[faint] = _FAINT + hue_bin[hue[faint]]
        part[bright] = _BRIGHT + hue_bin[hue[bright]]
        part[saturation < 85] = _GRAY
        part[intensity < 32] = _BLACK
        bins[red << 16:(red + reds_per_slice) << 16] = part
    # Reorder so that a little-endian RGBX pixel read as uint32, less its X byte, is the index.
    return np.ascontiguousarray(bins.reshape(256, 256, 256).transpose(2, 1, 0)).ravel()


def color_hash_bits(image: Image.Image, binbits: int = 3) -> np.ndarray:
    """ImageHash's `colorhash`, with the per-pixel work done as one lookup into a colour table."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    # Pillow keeps RGB as 4 bytes a pixel; "RGBX" raw bytes are that storage, copied once.
    packed = np.frombuffer(rgb.tobytes("raw", "RGBX"), "<u4").reshape(rgb.height, rgb.width)
    bins = _colorhash_bin_of_rgb()[packed & 0xFFFFFF]
    counts = _pixels_per_bin(bins.reshape(-1, 1))
    pixels = bins.size
    colours = max(1, pixels - counts[_BLACK] - counts[_GRAY])
    top = 2 ** binbits
    values = [min(top - 1, int(counts[_BLACK] / pixels * top)),
              min(top - 1, int(counts[_GRAY] / pixels * top))]
    values += [min(top - 1, int(count * top * 1.0 / colours))
               for count in counts[_FAINT:_OTHER_COLOUR]]
    bits = [value // (2 ** (binbits - i - 1)) % 2 ** (binbits - i) > 0
            for value in values for i in range(binbits)]
    return np.asarray(bits).reshape((-1, binbits))


def _pixels_per_bin(bins: np.ndarray) -> np.ndarray:
    """How many pixels fall in each colorhash bin. OpenCV counts 8-bit values directly, where
    np.bincount first copies them to 8-byte integers; its float32 counts are exact below 2^24."""
    if bins.size >= 1 << 24:
        return np.bincount(bins.ravel(), minlength=_BLACK + 1)
    import cv2

    counts = cv2.calcHist([bins], [0], None, [_BLACK + 1], [0, _BLACK + 1])
    return counts.ravel().astype(np.int64)


@register
@dataclasses.dataclass
class CropResistantHash(Method):
    """Segment hashes (dhash per bright/dark segment), matched like ImageMultiHash."""

    name: ClassVar[str] = "crophash"
    description: ClassVar[str] = "crop-resistant segment hashes (ImageHash), matched segments"
    feature_kind: ClassVar[str] = SEGMENTS
    cache_scores: ClassVar[bool] = True
    order: ClassVar[int] = 11
    parallel: ClassVar[str] = "threads"  # Pillow and scipy.ndimage do the work
    bit_error_rate: float = 0.25

    def load_options(self) -> LoadOptions:
        return LoadOptions(gray=self.gray, luminance_only=True)

    def cache_settings(self):
        return {"gray": self.gray}

    def settings(self):
        return {"gray": self.gray, "bit_error_rate": self.bit_error_rate}

    def extract(self, image: Image.Image) -> np.ndarray:
        dhash = DifferenceHash()
        boxes = crop_resistant_boxes(image)
        return np.stack([dhash.extract(image.crop(box)) for box in boxes])

    def score(self, a: np.ndarray, b: np.ndarray) -> float:
        """ImageMultiHash matching, as a similarity in [0, 1]: share of a's segments that
        have a match in b within the bit error rate, less a tie-breaker for their distance."""
        bits = a.shape[1]
        distances = bits * (1.0 - hamming_similarity_matrix(a, b))
        lowest = distances.min(axis=1)
        matched = lowest[lowest <= bits * self.bit_error_rate]
        if matched.size == 0:
            return 0.0
        tie_breaker = float(matched.sum()) / (matched.size * bits)
        return (matched.size - tie_breaker) / a.shape[0]


# ImageHash's crop_resistant_hash defaults: segment on a 300 x 300 blurred copy, bright
# ("hill") and dark ("valley") regions split at 128, regions above 500 pixels hashed.
_SEGMENTATION_SIZE = 300
_SEGMENT_THRESHOLD = 128
_MIN_SEGMENT_PIXELS = 500


def crop_resistant_boxes(image: Image.Image) -> list[tuple[float, float, float, float]]:
    """The crop boxes (in `image` pixels) of ImageHash's `crop_resistant_hash`, in its order.

    ImageHash finds the regions by a flood fill in Python sets (~190 ms a photo); they are the
    4-connected components of the thresholded image, which `scipy.ndimage.label` finds in
    raster order of their first pixel, the order ImageHash finds them in. The one quirk kept
    is when ImageHash stops looking for dark regions: its count of finished pixels includes
    the 2 x (w + h) sentinels around the border and misses each one-pixel region's pixel.
    """
    from PIL import ImageFilter
    from scipy import ndimage

    size = _SEGMENTATION_SIZE
    small = image.convert("L").resize((size, size), Image.LANCZOS)
    small = small.filter(ImageFilter.GaussianBlur()).filter(ImageFilter.MedianFilter())
    bright = np.asarray(small) > _SEGMENT_THRESHOLD
    segments = []
    counted = 4 * size  # ImageHash's border sentinels
    for mask, is_dark in ((bright, False), (~bright, True)):
        labels, found = ndimage.label(mask)  # 4-connected, numbered in raster order
        pixels = np.bincount(labels.ravel(), minlength=found + 1)
        for number, region in enumerate(ndimage.find_objects(labels), start=1):
            if is_dark and counted >= size * size:
                break
            counted += pixels[number] - (pixels[number] == 1)
            if pixels[number] > _MIN_SEGMENT_PIXELS:
                segments.append(region)
    scale_x, scale_y = image.width / size, image.height / size
    if not segments:  # ImageHash: one segment spanning the whole image
        return [(0.0, 0.0, size * scale_x, size * scale_y)]
    return [(rows_cols[1].start * scale_x, rows_cols[0].start * scale_y,
             rows_cols[1].stop * scale_x, rows_cols[0].stop * scale_y) for rows_cols in segments]

