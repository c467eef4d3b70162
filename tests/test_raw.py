"""Camera RAW files: a DNG made here (the Bayer mosaic of a dev photo, with and without the
camera's JPEG preview) decodes to the photo, in any command that walks a folder."""

from __future__ import annotations

import io

import numpy as np
import pytest
from dng import make_dng, mosaic
from PIL import Image

from conftest import photos_of
from lookalike.imaging.loading import (
    IMAGE_EXTENSIONS,
    ImageLoadError,
    LoadOptions,
    decode_image,
    find_images,
    load_image,
)

pytest.importorskip("rawpy")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(photos_of("all_souls_college")[2]).convert("RGB")


def jpeg_of(image: Image.Image, exif: Image.Exif | None = None) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **({"exif": exif} if exif else {}))
    return buffer.getvalue()


def luma_correlation(a: Image.Image, b: Image.Image) -> float:
    size = (96, 96)
    x = np.asarray(a.convert("L").resize(size), np.float64).ravel()
    y = np.asarray(b.convert("L").resize(size), np.float64).ravel()
    return float(np.corrcoef(x, y)[0, 1])


def test_raw_extensions_are_found_in_folders(tmp_path):
    for name in ["a.CR2", "b.nef", "c.arw", "d.dng", "e.raf", "f.orf", "g.rw2", "notes.xmp"]:
        (tmp_path / name).write_bytes(b"x")
    found = [p.rsplit("/", 1)[1] for p in find_images([tmp_path])]
    assert found == ["a.CR2", "b.nef", "c.arw", "d.dng", "e.raf", "f.orf", "g.rw2"]
    assert {".cr2", ".nef", ".arw", ".dng", ".raf", ".orf", ".rw2"} <= IMAGE_EXTENSIONS


def test_dng_decodes_to_its_embedded_preview(tmp_path, photo):
    preview = jpeg_of(photo)
    path = tmp_path / "IMG_0001.dng"
    small = photo.resize((photo.width // 4, photo.height // 4))
    path.write_bytes(make_dng(mosaic(np.asarray(small)), (preview, *photo.size)))
    image = load_image(path)
    assert image.size == photo.size  # the preview, not the quarter-size mosaic
    assert np.array_equal(np.asarray(image), np.asarray(decode_image(preview, "preview.jpg")))
    # the preview is a JPEG: a method that needs a small image gets it decoded small
    assert max(load_image(path, LoadOptions(min_long_side=200)).size) < max(photo.size)


def test_raw_orientation_turns_a_preview_without_its_own(tmp_path, photo):
    path = tmp_path / "portrait.dng"
    small = photo.resize((photo.width // 4, photo.height // 4))
    path.write_bytes(make_dng(mosaic(np.asarray(small)), (jpeg_of(photo), *photo.size),
                              orientation=6))
    assert load_image(path).size == (photo.height, photo.width)
    exif = Image.Exif()
    exif[0x0112] = 1  # the preview says it is upright: it wins
    path.write_bytes(make_dng(mosaic(np.asarray(small)), (jpeg_of(photo, exif), *photo.size),
                              orientation=6))
    assert load_image(path).size == (photo.height, photo.width)  # 1 means "none said"


def test_dng_without_preview_is_demosaiced(tmp_path, photo):
    small = photo.resize((photo.width // 2, photo.height // 2))
    data = make_dng(mosaic(np.asarray(small)))
    path = tmp_path / "no_preview.dng"
    path.write_bytes(data)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == small.size
    assert luma_correlation(image, small) > 0.95
    # an upload without a name is recognised by its bytes (Pillow alone reads the mosaic as
    # a 16-bit gray TIFF)
    unnamed = decode_image(data, "upload")
    assert unnamed.size == small.size and luma_correlation(unnamed, small) > 0.95


def test_a_tiny_preview_does_not_stand_for_the_photo(tmp_path, photo):
    small = photo.resize((photo.width // 2, photo.height // 2))
    thumb = photo.resize((photo.width // 8, photo.height // 8))
    path = tmp_path / "thumb_only.dng"
    path.write_bytes(make_dng(mosaic(np.asarray(small)), (jpeg_of(thumb), *thumb.size)))
    assert load_image(path).size == small.size  # demosaiced, not the 96-pixel thumbnail


def test_raw_pixel_limit_and_damage_are_named(tmp_path, photo):
    small = photo.resize((photo.width // 2, photo.height // 2))
    path = tmp_path / "big.dng"
    path.write_bytes(make_dng(mosaic(np.asarray(small))))
    with pytest.raises(ImageLoadError, match=r"big\.dng: too large: .*--max-pixels"):
        load_image(path, LoadOptions(max_pixels=1000))
    broken = tmp_path / "broken.nef"
    broken.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageLoadError, match=r"broken\.nef: "):
        load_image(broken)


def test_a_raw_photo_gets_the_features_of_its_jpeg(tmp_path, photo):
    """End to end through the extraction runner: the DNG's hash is the JPEG's."""
    from lookalike.features.extract import extract_features
    from lookalike.features.registry import get_method

    jpeg = tmp_path / "photo.jpg"
    jpeg.write_bytes(jpeg_of(photo))
    small = photo.resize((photo.width // 4, photo.height // 4))
    (tmp_path / "photo.dng").write_bytes(make_dng(mosaic(np.asarray(small)),
                                                  (jpeg.read_bytes(), *photo.size)))
    found = extract_features(get_method("phash"), find_images([tmp_path]))
    assert not found.errors and len(found.features) == 2
    assert np.array_equal(found.features[0], found.features[1])
