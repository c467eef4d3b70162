"""Fuzzing the edges that take files from users (Hypothesis): the loader, `compare`, POST /identify.

Inputs are real dev-photo bytes, mutated: cut short, bits flipped, the header swapped for
another format's, two photos spliced, dimensions in a PNG header made huge, random garbage,
nothing at all. The properties: the loader answers an image or `ImageLoadError` and nothing
else; `compare` finishes and names a bad file in `result.errors`; the server answers 200 or an
error in its shape, never 500. Cases are kept cheap (small seed images, hash methods, a
network stand-in on the server) so that the suite's 2,000 cases run in about a minute.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from landmark_gallery import make_gallery
from PIL import Image

from conftest import LANDMARKS
from lookalike.evaluation.compare import compare
from lookalike.imaging.loading import ImageLoadError, LoadOptions, decode_image, load_image

SEED_PHOTOS = {  # one per landmark kind of file the dev set holds
    "sceaux": "chateau_de_sceaux/imagedataset_sceauxcastle__images_100_7104.jpg",
    "strecha": "strecha_castle/sfm_quality_evaluation__images_0012.jpg",
    "church": "distractors/image-matching-webui__kn-church_02.jpg",
}
SMALL_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")
MAGICS = [b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"GIF87a", b"BM", b"II*\x00",
          b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"\x00\x00\x00\x18ftypheic",
          b"\x00\x00\x00\x1cftypavif", b"<html>", b"%PDF-1.4", b"\x00\x00\x01\x00"]
# Cases per test: 2,000 in all in CI; LOOKALIKE_FUZZ_SCALE=10 runs ten times as many locally.
SCALE = float(os.environ.get("LOOKALIKE_FUZZ_SCALE", "1"))
EXAMPLES = {name: max(1, round(count * SCALE)) for name, count in
            {"loader": 1100, "load_image": 150, "compare": 350, "server": 400}.items()}
CASES = sum(EXAMPLES.values())
# Pillow warns about the damage it skips over (corrupt EXIF, truncated TIFF tags): expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def fuzz(examples: int) -> settings:
    """Cases at most as many as given, no per-case deadline (the machine is shared), no
    example database written into the work tree."""
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@cache
def seeds() -> dict[str, bytes]:
    """The dev photos' own bytes, and small re-encodings of them in each format the loader
    reads (cheap to decode, so most cases cost milliseconds)."""
    found: dict[str, bytes] = {}
    for name, relative in SEED_PHOTOS.items():
        data = (LANDMARKS / relative).read_bytes()
        found[f"{name}.jpg"] = data
        image = Image.open(io.BytesIO(data)).convert("RGB")
        image.thumbnail((96, 96))
        for fmt in SMALL_FORMATS:
            buffer = io.BytesIO()
            image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
            found[f"{name}-small.{fmt.lower()}"] = buffer.getvalue()
    return found


def small_seeds() -> list[str]:
    """The names of the small re-encodings (known without reading a file)."""
    return [f"{name}-small.{fmt.lower()}" for name in SEED_PHOTOS for fmt in SMALL_FORMATS]


ALL_SEEDS = [*(f"{name}.jpg" for name in SEED_PHOTOS), *small_seeds()]


def png_with_size(width: int, height: int) -> bytes:
    """A PNG header that claims `width` x `height` pixels (a decompression bomb's first bytes)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    body = zlib.compress(b"\x00" * 64)
    idat = struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(">I", zlib.crc32(
        b"IDAT" + body))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + b"\x00\x00\x00\x00IEND\xaeB`\x82"


@st.composite
def mutated_bytes(draw, names: list[str] | None = None) -> bytes:
    """Real photo bytes, mutated one of several ways (or garbage, or nothing)."""
    all_seeds = seeds()
    data = all_seeds[draw(st.sampled_from(names or ALL_SEEDS))]
    kind = draw(st.sampled_from(["truncate", "flip", "header", "splice", "garbage", "empty",
                                 "bomb", "overwrite", "intact"]))
    if kind == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    if kind == "flip":
        flipped = bytearray(data)
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=24)):
            flipped[position] ^= 1 << draw(st.integers(0, 7))
        return bytes(flipped)
    if kind == "header":
        magic = draw(st.sampled_from(MAGICS))
        return magic + data[draw(st.integers(0, 32)):]
    if kind == "splice":
        other = all_seeds[draw(st.sampled_from(ALL_SEEDS))]
        return data[:draw(st.integers(0, len(data)))] + other[draw(st.integers(0, len(other))):]
    if kind == "garbage":
        return draw(st.binary(min_size=1, max_size=4096))
    if kind == "empty":
        return b""
    if kind == "bomb":
        return png_with_size(draw(st.integers(1, 2**31 - 1)), draw(st.integers(1, 2**31 - 1)))
    if kind == "overwrite":  # a block of the file (headers included) replaced by random bytes
        start = draw(st.integers(0, max(0, len(data) - 1)))
        block = draw(st.binary(min_size=1, max_size=64))
        return data[:start] + block + data[start + len(block):]
    return data


def check_image(image: Image.Image, gray: bool) -> None:
    assert image.mode == ("L" if gray else "RGB")
    assert image.width >= 1 and image.height >= 1
    assert "original_size" in image.info


OPTIONS = st.sampled_from([
    LoadOptions(min_short_side=64), LoadOptions(gray=True, min_long_side=128),
    LoadOptions(luminance_only=True), LoadOptions(max_pixels=2_000_000, min_short_side=32),
])


@fuzz(EXAMPLES["loader"])
@given(data=mutated_bytes(), options=OPTIONS)
def test_loader_answers_an_image_or_image_load_error(data, options):
    try:
        image = decode_image(data, "fuzz.jpg", options)
    except ImageLoadError as error:
        assert error.path == "fuzz.jpg" and error.reason
        return
    check_image(image, options.gray or options.luminance_only)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@fuzz(EXAMPLES["load_image"])
@given(data=mutated_bytes(small_seeds()), suffix=st.sampled_from([".jpg", ".png", ".txt", ""]))
def test_load_image_from_a_file(fuzz_dir, data, suffix):
    path = fuzz_dir / f"case{suffix}"
    path.write_bytes(data)
    try:
        check_image(load_image(path, LoadOptions(min_short_side=64)), gray=False)
    except ImageLoadError as error:
        assert error.path == str(path) and error.reason


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory):
    """A folder with one good photo (small, so a case is cheap) beside the case's file."""
    folder = tmp_path_factory.mktemp("fuzz-compare")
    (folder / "good.png").write_bytes(seeds()["sceaux-small.png"])
    return folder


@fuzz(EXAMPLES["compare"])
@given(data=mutated_bytes(small_seeds()))
def test_compare_names_a_bad_file_and_finishes(compare_dir, data):
    bad = compare_dir / "suspect.jpg"
    bad.write_bytes(data)
    result = compare([str(compare_dir)], methods="ahash,dhash", cache=False)
    good = str(compare_dir / "good.png")
    for matrix in result.matrices.values():
        assert good in matrix.queries
        assert matrix.scores.shape == (len(matrix.queries), len(matrix.gallery))
        assert np.isfinite(matrix.scores).all()
    if str(bad) in result.errors:
        assert result.errors[str(bad)]
        assert all(str(bad) not in m.queries for m in result.matrices.values())
    else:
        assert all(str(bad) in m.queries for m in result.matrices.values())
    assert set(result.errors) <= {str(bad)}


# -- the server ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a small index of the fast preset, its queries' features computed on 160 px
    (the decoding, XFeat, ASMK search and verification are the real ones, only smaller)."""
    from fastapi.testclient import TestClient

    from lookalike.engines.local import local_extractor
    from lookalike.gallery.index import build_index
    from lookalike.server.app import ServerSettings, create_app

    root = tmp_path_factory.mktemp("fuzz-server")
    gallery = make_gallery(root / "gallery", ["strecha_castle"])
    build_index(gallery, root / "gallery.lkidx", local_extractor(), preset="fast")
    app = create_app(ServerSettings(root / "gallery.lkidx", root / "data", max_bytes=2_000_000,
                                    max_pixels=4_000_000, queue=64, max_wait=600))
    identifier = app.state.gallery.identifier
    identifier.local_method.max_side = 160  # this app's method objects only
    identifier.global_method.max_side = 160
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@fuzz(EXAMPLES["server"])
@given(data=mutated_bytes([*small_seeds(), "church.jpg"]),
       name=st.sampled_from(["photo.jpg", "x.png", "", "../../etc/passwd", "名前.heic"]),
       content_type=st.sampled_from(["image/jpeg", "text/plain", "application/octet-stream"]))
def test_identify_answers_200_or_the_error_shape_never_500(server, data, name, content_type):
    response = server.post("/identify", files={"file": (name or "upload", data, content_type)})
    event(f"status {response.status_code}")
    assert response.status_code in (200, 400, 413), (response.status_code, response.text)
    body = response.json()
    if response.status_code == 200:
        assert "landmark" in body and "candidates" in body
    else:
        assert set(body) == {"error", "message"} and body["error"] and body["message"]


def test_case_count_is_what_the_docs_report():
    assert CASES >= 2000 or SCALE < 1
