"""Each study method on real photos: shapes, the contract, and behaviour that must hold."""

from __future__ import annotations

import ast
from pathlib import Path

import cv2
import imagehash
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import photos_of
from lookalike.features.registry import UnknownMethodError, get_method, method_names, parse_methods
from lookalike.imaging.loading import load_image
from lookalike.nets.augnet import load_augnet, stock_weights_path

HASHES = ["ahash", "phash", "dhash", "whash", "colorhash"]


def extract(name, path, **settings):
    method = get_method(name, **settings)
    return method, method.extract(load_image(path, method.load_options()))


def test_registry_lists_study_methods_and_rejects_unknown():
    assert {"ahash", "phash", "dhash", "whash", "colorhash", "crophash", "akaze", "augnet"} <= set(
        method_names()
    )
    assert parse_methods("phash, akaze") == ["phash", "akaze"]
    everything = parse_methods("all")
    assert {"akaze", "augnet", "asmk", "aliked", "xfeat", "fused"} <= set(everything)
    # all pairs of RootSIFT (superseded by aliked) and DISK are too slow for `all`: by name only
    assert "verified" not in everything and "disk" not in everything
    assert parse_methods("verified,disk") == ["verified", "disk"]
    with pytest.raises(UnknownMethodError, match="unknown method 'nope'"):
        parse_methods("phash,nope")


@pytest.mark.parametrize("name", HASHES)
def test_hashes_match_stock_imagehash_bits(name):
    stock = {"ahash": imagehash.average_hash, "phash": imagehash.phash, "dhash": imagehash.dhash,
             "whash": imagehash.whash, "colorhash": imagehash.colorhash}[name]
    paths = photos_of("sacre_coeur")[:4]
    for path in paths:
        method, bits = extract(name, path)
        reference = np.asarray(stock(Image.open(path)).hash, dtype=np.uint8).reshape(-1)
        assert bits.dtype == np.uint8 and bits.shape == reference.shape
        assert np.count_nonzero(bits != reference) <= 3
        assert method.score(bits, bits) == 1.0


def test_ahash_phash_dhash_give_imagehash_bits_exactly():
    """Our routes (lanczos_resize, then ImageHash's own arithmetic) must equal ImageHash on
    the same pixels; the stock test above allows a few bits for EXIF rotation only."""
    stock = {"ahash": imagehash.average_hash, "phash": imagehash.phash, "dhash": imagehash.dhash}
    images = [Image.open(path).convert("L") for path in photos_of("tower_bridge")[:4]]
    images += [Image.new("L", (300, 200), 128), Image.new("L", (5, 7), 9)]
    for name, stock_hash in stock.items():
        for hash_size in (8, 12):
            method = get_method(name, hash_size=hash_size)
            for image in images:
                assert np.array_equal(method.compute(image).hash,
                                      stock_hash(image, hash_size=hash_size).hash), name


def test_crophash_segments_equal_imagehash_exactly():
    """Regions by connected-component labelling, same boxes, same order, same segment bits."""
    method = get_method("crophash")
    images = [Image.open(path).convert("L") for path in photos_of("sacre_coeur")[:3]]
    images += [Image.open(photos_of("tower_bridge")[1]).convert("L"),
               Image.new("L", (320, 240), 200),  # one bright region: the whole image
               Image.new("L", (64, 48), 10)]  # too small for any region: the fallback box
    noise = np.random.default_rng(3).integers(0, 256, (120, 160), dtype=np.uint8)
    images.append(Image.fromarray(noise))  # many one-pixel regions: ImageHash's stop quirk
    for image in images:
        stock = imagehash.crop_resistant_hash(image)
        expected = np.stack([np.asarray(h.hash, np.uint8).reshape(-1)
                             for h in stock.segment_hashes])
        assert np.array_equal(method.extract(image), expected)


def test_whash_and_colorhash_shortcuts_give_imagehash_bits_exactly():
    """whash and colorhash are computed by our own exact routes; they must equal ImageHash."""
    from lookalike.methods.hashes import color_hash_bits, wavelet_hash_bits

    images = [Image.open(path).convert("RGB") for path in photos_of("piazza_san_marco")[:3]]
    images += [Image.new("RGB", (300, 200), (120, 120, 120)),  # flat: every block ties
               Image.new("RGB", (64, 64), (250, 10, 10)),  # saturated colour
               Image.open(photos_of("hertford_bridge")[0]).convert("L").convert("RGB")]
    gradient = np.add.outer(np.arange(90), np.arange(130)).astype(np.uint8)
    images.append(Image.fromarray(np.dstack([gradient, 255 - gradient, gradient // 2])))
    for image in images:
        assert np.array_equal(wavelet_hash_bits(image), imagehash.whash(image).hash)
        assert np.array_equal(color_hash_bits(image), imagehash.colorhash(image).hash)
        assert np.array_equal(color_hash_bits(image, 4), imagehash.colorhash(image, 4).hash)


def test_colorhash_bin_counts_equal_bincount_below_and_above_float32_exact_range():
    from lookalike.methods.hashes import _pixels_per_bin

    for size in (1000, (1 << 24) + 5):  # OpenCV below 2^24 pixels, np.bincount above
        bins = np.random.default_rng(size).integers(0, 15, (size, 1), dtype=np.uint8)
        assert np.array_equal(_pixels_per_bin(bins), np.bincount(bins.ravel(), minlength=15))


def test_hash_matrix_equals_pairwise_scores():
    paths = photos_of("tower_bridge")
    method = get_method("dhash")
    bits = [method.extract(load_image(p, method.load_options())) for p in paths]
    matrix = method.score_matrix(bits, bits)
    for i, a in enumerate(bits):
        for j, b in enumerate(bits):
            assert matrix[i, j] == pytest.approx(method.score(a, b))


def test_crophash_matches_a_crop_of_itself_better_than_another_landmark():
    path = photos_of("berlin_cathedral")[2]
    method = get_method("crophash")
    image = load_image(path, method.load_options())
    crop = image.crop((0, 0, int(image.width * 0.8), int(image.height * 0.8)))
    full, cropped = method.extract(image), method.extract(crop)
    other = method.extract(load_image(photos_of("tower_bridge")[0], method.load_options()))
    assert method.score(cropped, full) > method.score(other, full)


def test_akaze_same_landmark_beats_distractor():
    a, b = photos_of("sacre_coeur")[:2]
    distractor = photos_of("distractor")[0]
    method, fa = extract("akaze", a)
    _, fb = extract("akaze", b)
    _, fd = extract("akaze", distractor)
    assert fa["descriptors"].dtype == np.uint8 and len(fa["keypoints"]) == len(fa["descriptors"])
    assert max(fa["size"]) <= 1024
    assert method.score(fa, fb) > method.score(fa, fd)


def opencv_good_matches(query: np.ndarray, train: np.ndarray, ratio: float) -> int:
    """The study's own count: OpenCV BFMatcher (Hamming) kNN k=2 and Lowe's ratio test."""
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query, train, k=2)
    return sum(1 for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance)


def test_akaze_count_equals_opencv_bruteforce():
    """The FAISS search behind `akaze` must give the study's OpenCV count exactly, both ways."""
    paths = photos_of("sacre_coeur")[:2] + photos_of("distractor")[:1]
    method = get_method("akaze")
    features = [method.extract(load_image(p, method.load_options())) for p in paths]
    for a in features:
        for b in features:
            expected = opencv_good_matches(a["descriptors"], b["descriptors"], method.ratio)
            assert method.score(a, b) == expected
    assert method.score(features[0], features[1]) > 20  # a real count, not a run of zeros


def stock_imgsim_steps():
    """imgsim's own `resize_short` and `normalize`, taken from its source without importing it
    (importing imgsim imports torchvision, which does not load here)."""
    source_path = Path(stock_weights_path()).with_name("imgsim.py")
    tree = ast.parse(source_path.read_text())
    wanted = [node for node in tree.body
              if isinstance(node, ast.FunctionDef) and node.name in ("resize_short", "normalize")]
    namespace = {"cv2": cv2, "np": np}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), str(source_path), "exec"), namespace)
    return namespace["resize_short"], namespace["normalize"]


def test_augnet_vectors_equal_stock_pipeline():
    resize_short, normalize = stock_imgsim_steps()
    paths = photos_of("tower_bridge")[:1] + photos_of("berlin_cathedral")[:1]
    method = get_method("augnet", device="cpu")
    ours = method.extract_many([load_image(p, method.load_options()) for p in paths])
    model = load_augnet(None, "cpu")
    for path, vector in zip(paths, ours):
        # The stock Vectorizer.vectorize steps on a cv2-read BGR image, one image at a time.
        image = cv2.imread(str(path))
        batch = np.array([resize_short(image, 350)[..., ::-1] / 255.0])
        inputs = normalize(batch.transpose([0, 3, 1, 2]), mean=[0.485, 0.456, 0.406],
                           std=[0.229, 0.224, 0.225]).astype(np.float32)
        with torch.no_grad():
            stock = model(torch.from_numpy(inputs)).numpy()[0]
        assert vector.shape == (768,) and vector.dtype == np.float32
        np.testing.assert_allclose(vector, stock, atol=1e-4)


def test_augnet_batch_equals_single_and_scores():
    paths = photos_of("sacre_coeur")[:2]
    method = get_method("augnet", device="cpu")
    images = [load_image(p) for p in paths]
    batched = method.extract_many(images)
    for image, vector in zip(images, batched):
        np.testing.assert_allclose(method.extract(image), vector, atol=1e-4)
    matrix = method.score_matrix(batched, batched)
    assert np.allclose(np.diag(matrix), 0, atol=1e-3) and (matrix <= 1e-6).all()
    cosine = get_method("augnet", metric="cosine")
    assert np.allclose(np.diag(cosine.score_matrix(batched, batched)), 1.0)


def test_gray_changes_the_cache_key_and_pixels():
    colour, gray = get_method("augnet"), get_method("augnet", gray=True)
    assert colour.cache_key() != gray.cache_key()
    assert gray.label() == "augnet-gray"
    assert load_image(photos_of("tower_bridge")[0], gray.load_options()).mode == "L"
