"""lanczos_resize must give Pillow's LANCZOS pixels bit for bit: the hashes' bits depend on it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import LANDMARKS, manifest_rows
from lookalike.imaging.loading import LoadOptions, load_image
from lookalike.imaging.resample import _vertical_first, _weights, lanczos_resize

HASH_SIZES = [(8, 8), (9, 8), (32, 32)]  # ahash, dhash, phash


def pillow(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize(size, Image.LANCZOS))


def test_equals_pillow_on_dev_photos_of_both_orientations():
    photos = [LANDMARKS / row["path"] for row in manifest_rows()[::12]]
    images = [np.asarray(load_image(path, LoadOptions(luminance_only=True))) for path in photos]
    assert {image.shape[0] > image.shape[1] for image in images} == {True, False}
    for pixels in images:
        for size in HASH_SIZES:
            assert np.array_equal(lanczos_resize(pixels, size), pillow(pixels, size))


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (8, 8), (8, 9), (100, 8), (8, 100), (33, 7),
                                   (7, 33), (40, 31), (13, 4000), (2001, 100), (480, 640)])
def test_equals_pillow_on_odd_shapes(shape):
    """Upscaling, one axis unchanged, and very tall or wide images, where Pillow takes the
    vertical pass first (the pass order changes the rounding in between)."""
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    for size in [*HASH_SIZES, (1, 1), (16, 5)]:
        assert np.array_equal(lanczos_resize(pixels, size), pillow(pixels, size)), size


def test_extremes_are_clamped_like_pillow():
    """LANCZOS overshoots at hard edges; both must clip to 0..255 at each pass."""
    stripes = np.zeros((64, 64), np.uint8)
    stripes[:, ::2] = 255
    stripes[::3] = 0
    for size in HASH_SIZES:
        assert np.array_equal(lanczos_resize(stripes, size), pillow(stripes, size))


def test_pass_order_rule_covers_both_cases():
    assert not _vertical_first(640, 480, 8, 8)
    assert _vertical_first(100, 2001, 8, 8)


def test_wide_shrinks_use_bands_and_small_ones_one_product():
    """phash's 32 outputs are computed in bands of 8 (exactness is checked above on the same
    sizes); for 8 or 9 outputs the bands would overlap and one product is cheaper."""
    assert len(_weights(1000, 32)[3]) == 4
    assert len(_weights(1000, 8)[3]) == 1 and len(_weights(1000, 9)[3]) == 1
    first, end, out_first, out_end = _weights(1000, 32)[3][1]
    assert (out_first, out_end) == (8, 16) and end - first < 500
