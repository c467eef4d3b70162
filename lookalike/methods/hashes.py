"""Perceptual hashes from ImageHash, the study's first method family.

Each hash is a bit string; similarity = 1 - Hamming distance / bits. `crophash` is a set of
segment hashes matched with ImageHash's own segment matching. Hashes only need a small image,
so JPEGs are decoded at reduced size (`draft`), which is where most of the speed-up over
opening full-size files with Pillow comes from.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import ClassVar

import imagehash
import numpy as np
from PIL import Image

from lookalike.loading import LoadOptions
from lookalike.methods import register
from lookalike.methods.base import BITS, SEGMENTS, Method

# Why full-size decoding: hash bits near their threshold flip under any pixel change, and
# reduced-size (DCT-scaled) decoding changed 10-15% of dhash/colorhash results against stock
# ImageHash on the dev photos. Decoding JPEG luma directly (no colour conversion) keeps ~99% of
# the hashes bit-identical while skipping the chroma work.


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
        return imagehash.average_hash(image, hash_size=self.hash_size)


@register
@dataclasses.dataclass
class PerceptualHash(HashMethod):
    name: ClassVar[str] = "phash"
    description: ClassVar[str] = "DCT perceptual hash (ImageHash), 1 - Hamming/bits"

    def compute(self, image):
        return imagehash.phash(image, hash_size=self.hash_size)


@register
@dataclasses.dataclass
class DifferenceHash(HashMethod):
    name: ClassVar[str] = "dhash"
    description: ClassVar[str] = "difference hash (ImageHash), 1 - Hamming/bits"

    def compute(self, image):
        return imagehash.dhash(image, hash_size=self.hash_size)


@register
@dataclasses.dataclass
class WaveletHash(HashMethod):
    name: ClassVar[str] = "whash"
    description: ClassVar[str] = "Haar wavelet hash (ImageHash), 1 - Hamming/bits"

    def compute(self, image):
        # Stock whash picks its working scale from the image size; use the original file's
        # size so that reduced-size decoding does not change the scale.
        width, height = image.info.get("original_size", image.size)
        scale = max(2 ** int(math.log2(min(width, height))), self.hash_size)
        return imagehash.whash(image, hash_size=self.hash_size, image_scale=scale)


@register
@dataclasses.dataclass
class ColorHash(HashMethod):
    name: ClassVar[str] = "colorhash"
    description: ClassVar[str] = "colour-histogram hash (ImageHash), 1 - Hamming/bits"
    binbits: int = 3

    def load_options(self) -> LoadOptions:
        return LoadOptions(gray=self.gray)  # needs colour

    def compute(self, image):
        return imagehash.colorhash(image, binbits=self.binbits)


@register
@dataclasses.dataclass
class CropResistantHash(Method):
    """Segment hashes (dhash per bright/dark segment), matched like ImageMultiHash."""

    name: ClassVar[str] = "crophash"
    description: ClassVar[str] = "crop-resistant segment hashes (ImageHash), matched segments"
    feature_kind: ClassVar[str] = SEGMENTS
    cache_scores: ClassVar[bool] = True
    order: ClassVar[int] = 11
    bit_error_rate: float = 0.25

    def load_options(self) -> LoadOptions:
        return LoadOptions(gray=self.gray, luminance_only=True)

    def cache_settings(self):
        return {"gray": self.gray}

    def settings(self):
        return {"gray": self.gray, "bit_error_rate": self.bit_error_rate}

    def extract(self, image: Image.Image) -> np.ndarray:
        multi = imagehash.crop_resistant_hash(image)
        return np.stack([np.asarray(h.hash, dtype=np.uint8).reshape(-1) for h in multi.segment_hashes])

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
