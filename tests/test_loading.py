"""Loading: every format and mode the issue names, and every failure named by file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import photos_of
from lookalike.imaging.loading import (
    ImageLoadError,
    LoadOptions,
    decode_image,
    find_images,
    load_image,
)


def gradient(width=64, height=48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.dstack([x, y, 255 - x]), "RGB")


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF"])
def test_common_formats_decode_to_rgb(fmt):
    image = decode_image(encoded(gradient(), fmt), f"x.{fmt.lower()}")
    assert image.mode == "RGB" and image.size == (64, 48)


def test_heic_decodes(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    path = tmp_path / "photo.heic"
    pillow_heif.from_pillow(gradient()).save(path, quality=90)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (64, 48)


def test_gif_takes_first_frame():
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    data = io.BytesIO()
    red.save(data, "GIF", save_all=True, append_images=[blue])
    pixel = decode_image(data.getvalue(), "anim.gif").getpixel((4, 4))
    assert pixel[0] > 200 and pixel[2] < 50


@pytest.mark.parametrize("options", [LoadOptions(), LoadOptions(luminance_only=True)])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(options, orientation):
    image = gradient(80, 40)
    exif = Image.Exif()
    exif[0x0112] = orientation  # 6: rotate 90 degrees clockwise on display
    data = encoded(image, "JPEG", exif=exif, quality=95)
    loaded = decode_image(data, "rotated.jpg", options)
    upright = (80, 40) if orientation < 5 else (40, 80)
    assert loaded.size == upright and loaded.info["original_size"] == upright
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(data)).convert(loaded.mode))
    assert np.abs(np.asarray(loaded, np.int16) - np.asarray(reference, np.int16)).max() <= 1


def test_jpeg_luma_equals_pillows_decode(landmarks_dir):
    """Luma comes from OpenCV's decoder when it can; the pixels are Pillow's, exactly."""
    for path in sorted(landmarks_dir.glob("*/*.jpg"))[:6]:
        data = path.read_bytes()
        ours = decode_image(data, path.name, LoadOptions(luminance_only=True))
        pillow = Image.open(io.BytesIO(data))
        pillow.draft("L", pillow.size)
        pillow = ImageOps.exif_transpose(pillow.convert("L"))
        assert ours.mode == "L" and np.array_equal(np.asarray(ours), np.asarray(pillow)), path


def test_rgba_is_composited_on_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert decode_image(encoded(image, "PNG"), "clear.png").getpixel((0, 0)) == (255, 255, 255)


def test_palette_with_transparency_and_cmyk_and_gray():
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([10, 20, 30] * 256)
    palette.info["transparency"] = 0
    assert decode_image(encoded(palette, "PNG", transparency=0), "p.png").getpixel((0, 0)) == (255, 255, 255)
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red
    red = decode_image(encoded(cmyk, "JPEG"), "cmyk.jpg").getpixel((0, 0))
    assert red[0] > 200 and red[1] < 60
    gray = Image.new("L", (4, 4), 128)
    assert decode_image(encoded(gray, "PNG"), "g.png").getpixel((0, 0)) == (128, 128, 128)


def test_16bit_is_scaled_not_clipped():
    array = np.full((4, 4), 65535 // 2, dtype=np.uint16)
    image = Image.fromarray(array)
    assert image.mode.startswith("I")
    value = decode_image(encoded(image, "PNG"), "deep.png", LoadOptions(gray=True)).getpixel((0, 0))
    assert 120 <= value <= 135


def test_gray_mode_gives_luminance():
    image = decode_image(encoded(gradient(), "PNG"), "c.png", LoadOptions(gray=True))
    assert image.mode == "L"


def test_reduced_size_jpeg_decoding_keeps_requested_size():
    data = encoded(gradient(1600, 1200), "JPEG")
    small = decode_image(data, "big.jpg", LoadOptions(min_long_side=400))
    assert 400 <= small.width < 1600 and small.info["original_size"] == (1600, 1200)


def test_truncated_jpeg_is_named_error(landmarks_dir, tmp_path):
    source = next(landmarks_dir.glob("*/*.jpg")).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(source[: len(source) // 3])
    with pytest.raises(ImageLoadError) as error:
        load_image(path)
    assert str(path) in str(error.value) and "truncated" in error.value.reason


def test_zero_byte_and_text_file_named_jpg(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty file"):
        load_image(empty)
    html = tmp_path / "page.jpg"
    html.write_text("<html><body>not a photo</body></html>")
    with pytest.raises(ImageLoadError, match=r"not an image .*<html"):
        load_image(html)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)


def test_decompression_bomb_is_refused(tmp_path):
    bomb = Image.new("1", (20000, 20000))  # 50 MB of pixels compresses to a tiny PNG
    path = tmp_path / "bomb.png"
    bomb.save(path, optimize=True)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path)


def test_find_images_recurses_sorted_and_keeps_given_paths(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "b" / "c.PNG").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.jpg").write_bytes(b"x")
    found = find_images([str(tmp_path), str(tmp_path / "notes.txt")])
    assert found == [str(tmp_path / "a.jpg"), str(tmp_path / "b" / "c.PNG"), str(tmp_path / "notes.txt")]


def test_damaged_but_complete_jpeg_decodes_like_pillow():
    """Corrupt entropy-coded data with an intact end marker: both decoders go on (libjpeg
    fills what it cannot read), so the photo is kept, in colour and in luma."""
    data = bytearray(encoded(gradient(64, 64), "JPEG"))
    middle = len(data) // 2
    data[middle:middle + 8] = b"\xff\x00\x12\x34\xff\xd0\x00\x00"
    for options in (LoadOptions(), LoadOptions(luminance_only=True)):
        assert decode_image(bytes(data), "damaged.jpg", options).size == (64, 64)


def test_find_images_skips_nas_system_and_hidden_folders(tmp_path, caplog):
    import logging

    photo = photos_of("magdalen_tower")[0].read_bytes()
    for folder in ["2024", "2024/@eaDir/IMG_1.jpg", "#recycle", ".Trash-1000", ".thumbnails",
                   "$RECYCLE.BIN", "2024/Screenshots", "2023/raw"]:
        (tmp_path / folder).mkdir(parents=True)
    keep = [tmp_path / "2024" / "IMG_1.jpg", tmp_path / "2023" / "IMG_9.jpg"]
    skip = [tmp_path / "2024" / "@eaDir" / "IMG_1.jpg" / "SYNOFILE_THUMB_XL.jpg",
            tmp_path / "#recycle" / "old.jpg", tmp_path / ".Trash-1000" / "gone.jpg",
            tmp_path / ".thumbnails" / "t.png", tmp_path / "$RECYCLE.BIN" / "x.jpg",
            tmp_path / "2024" / "Screenshots" / "s.png", tmp_path / "2023" / "raw" / "r.jpg",
            tmp_path / "2024" / "IMG_2.tmp.jpg"]
    for path in keep + skip:
        path.write_bytes(photo)
    with caplog.at_level(logging.DEBUG, logger="lookalike.imaging.loading"):
        found = find_images([tmp_path], exclude=["Screenshots", "2023/raw", "*.tmp.jpg"])
    assert found == [str(path) for path in sorted(keep)]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("@eaDir" in line and "NAS or system folder" in line for line in debug)
    assert any("Screenshots" in line and "--exclude Screenshots" in line for line in debug)
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert info == ["skipped 1 file(s) and 7 folder(s): hidden, NAS or system folders, or "
                    "--exclude (-vv lists them)"]
    # a folder given by name is walked as asked, whatever its name
    assert find_images([tmp_path / "#recycle"]) == [str(tmp_path / "#recycle" / "old.jpg")]


@pytest.fixture(scope="module")
def huge_jpeg(tmp_path_factory):
    """A 13400 x 13400 JPEG (180 Mpx, past Pillow's own hard limit of 179 Mpx): 400 kB."""
    path = tmp_path_factory.mktemp("huge") / "panorama.jpg"
    image = Image.new("L", (13400, 13400), 128)
    image.paste(255, (0, 0, 6700, 6700))
    image.save(path, quality=50)
    return path


def test_pixel_limit_is_the_callers_and_can_be_lifted(huge_jpeg):
    before = Image.MAX_IMAGE_PIXELS
    small = LoadOptions(min_long_side=1000)  # decoded at 1/8 scale, as a method would
    image = load_image(huge_jpeg, small)  # the default limit (200 Mpx) lets it through
    assert image.info["original_size"] == (13400, 13400) and max(image.size) < 2000
    with pytest.raises(ImageLoadError) as refused:
        load_image(huge_jpeg, LoadOptions(min_long_side=1000, max_pixels=100_000_000))
    message = str(refused.value)
    assert message.startswith(f"{huge_jpeg}: too large: 13400x13400 = 179,560,000 pixels")
    assert "limit of 100,000,000" in message and "--max-pixels" in message
    assert "decompression bomb DOS" not in message  # our words, not Pillow's
    assert load_image(huge_jpeg, LoadOptions(min_long_side=1000, max_pixels=0)).size == image.size
    assert Image.MAX_IMAGE_PIXELS == before  # Pillow's global is left as it was


def test_pillow_warning_size_is_not_a_refusal(tmp_path):
    """Pillow warns at 89.5 Mpx; that used to refuse a 100 Mpx photo with its wording."""
    path = tmp_path / "tall.jpg"
    Image.new("L", (10000, 9000), 90).save(path, quality=50)
    assert load_image(path, LoadOptions(min_long_side=500)).info["original_size"] == (10000, 9000)
    with pytest.raises(ImageLoadError, match="limit of 50,000,000"):
        load_image(path, LoadOptions(max_pixels=50_000_000))
