"""Learned local matchers (ALIKED, DISK, XFeat) and ASMK on the dev photos, fully offline."""

from __future__ import annotations

import io
import socket

import numpy as np
import pytest
from PIL import Image

from lookalike.features.registry import get_method
from lookalike.imaging.loading import load_image
from lookalike.matching import asmk
from lookalike.matching.geometry import fit_model, mutual_nearest
from lookalike.nets import learned

SCEAUX = "chateau_de_sceaux/imagedataset_sceauxcastle__images_100_7102.jpg"
SCEAUX_2 = "chateau_de_sceaux/imagedataset_sceauxcastle__images_100_7103.jpg"
OTHER_CHURCH = "distractors/image-matching-webui__kn-church_01.jpg"
METHODS = ["aliked", "xfeat", "disk"]


def test_models_load_from_the_wheels_without_any_download(monkeypatch):
    """Every detector and matcher builds with the network and kornia's downloader blocked."""
    import kornia.core.download
    import torch.hub

    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args[:1]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(kornia.core.download, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    learned.detector.cache_clear()
    learned.matcher.cache_clear()
    for name in ("aliked-n16", "aliked-n16rot", "disk", "xfeat"):
        assert learned.detector(name, 256) is not None
    for name in learned.MATCHER_CONFIGS:
        assert learned.matcher(name) is not None


def test_unknown_model_names_fail_clearly():
    with pytest.raises(ValueError, match="unknown model"):
        learned.weights_path("superpoint")
    with pytest.raises(ValueError, match="matcher must be one of"):
        get_method("aliked", matcher="nearest")


def rotated(image: Image.Image, degrees: float) -> Image.Image:
    turned = image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True)
    turned.info["original_size"] = turned.size
    return turned


def zoomed(image: Image.Image) -> Image.Image:
    w, h = image.size
    crop = image.crop((w // 5, h // 5, w - w // 5, h - h // 5)).resize((w, h))
    crop.info["original_size"] = crop.size
    return crop


def reencoded(image: Image.Image, quality: int = 60) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    again = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    again.info["original_size"] = again.size
    return again


@pytest.fixture(scope="module")
def photos(landmarks_dir):
    return {name: load_image(landmarks_dir / path) for name, path in
            (("sceaux", SCEAUX), ("sceaux_2", SCEAUX_2), ("church", OTHER_CHURCH))}


@pytest.mark.parametrize("name", METHODS)
def test_learned_matcher_verifies_views_and_rejects_another_building(name, photos):
    method = get_method(name, max_keypoints=512)
    base = method.extract(photos["sceaux"])
    for label, view in (("rotated 15 degrees", rotated(photos["sceaux"], 15)),
                        ("zoomed crop", zoomed(photos["sceaux"])),
                        ("JPEG re-encode", reencoded(photos["sceaux"])),
                        ("another photo", photos["sceaux_2"])):
        match = method.match(base, method.extract(view))
        assert match.verified, f"{name}: {label} did not verify ({match.inliers_h} H inliers)"
    church = method.match(base, method.extract(photos["church"]))
    assert not church.verified, f"{name}: a different church verified ({church.inliers_h})"


def test_rotation_trained_aliked_verifies_a_tilted_photo(photos):
    """n16rot is trained with in-plane rotations up to 45 degrees; n16 holds to ~30."""
    method = get_method("aliked", variant="aliked-n16rot", max_keypoints=512)
    match = method.match(method.extract(photos["sceaux"]),
                         method.extract(rotated(photos["sceaux"], 40)))
    assert match.verified


def test_a_photo_stored_sideways_with_its_exif_orientation_verifies(photos, tmp_path):
    """Quarter turns are the camera's: the loader applies EXIF orientation before features."""
    method = get_method("xfeat", max_keypoints=512)
    sideways = photos["sceaux"].transpose(Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = 8  # the viewer turns it back a quarter (as lookalike.imaging.loading does)
    sideways.save(tmp_path / "sideways.jpg", exif=exif, quality=90)
    upright = load_image(tmp_path / "sideways.jpg")
    assert upright.size == photos["sceaux"].size
    assert method.match(method.extract(photos["sceaux"]), method.extract(upright)).verified


def test_lightglue_matches_and_scores_are_symmetric(photos):
    method = get_method("aliked", matcher="lightglue", max_keypoints=256)
    a, b = method.extract(photos["sceaux"]), method.extract(photos["sceaux_2"])
    forward, backward = method.match(a, b), method.match(b, a)
    assert forward.verified and forward.score == backward.score
    assert np.allclose(forward.points_a, backward.points_b)


def test_local_features_survive_encoding(photos):
    method = get_method("xfeat", max_keypoints=256)
    feature = method.extract(photos["sceaux"])
    again = method.decode(method.encode(feature))
    assert again["descriptors"].dtype == np.float32
    assert np.array_equal(again["keypoints"], feature["keypoints"])
    assert method.match(feature, again).verified


def test_degenerate_points_give_no_model_instead_of_an_opencv_error():
    line = np.stack([np.arange(30, dtype=np.float32)] * 2, axis=1)
    model, mask = fit_model("fundamental", line, line.copy(), 1.0)
    assert not mask.any() or model is not None
    assert len(mutual_nearest(np.zeros((1, 8)), np.zeros((3, 8)))) == 0


# -- ASMK --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def asmk_features(photos):
    method = get_method("asmk", max_keypoints=512)
    return method, [method.extract(photos[name]) for name in ("sceaux", "sceaux_2", "church")]


def test_asmk_scores_a_photo_one_with_itself_and_ranks_its_landmark_first(asmk_features):
    method, (sceaux, sceaux_2, church) = asmk_features
    assert method.score(sceaux, sceaux) == pytest.approx(1.0)
    assert method.score(sceaux, sceaux_2) > method.score(sceaux, church)


def test_asmk_inverted_file_gives_the_direct_scores(asmk_features):
    method, features = asmk_features
    index = method.search_index(features)
    for query in features:
        direct = [method.score(query, item) for item in features]
        assert np.allclose(index.scores(query), direct)
    positions, scores = index.search(features[1], 2)
    assert positions[0] == 1 and scores[0] == pytest.approx(1.0)


def test_asmk_cache_key_follows_the_codebook_and_the_weights(tmp_path, monkeypatch):
    shipped = get_method("asmk")
    other = asmk.save_codebook(shipped.words().centroids[::-1] * 0.5, tmp_path / "other.npy")
    shipped_key = shipped.cache_key()
    assert get_method("asmk", codebook=other.path).cache_key() != shipped_key
    before = get_method("aliked").cache_key()
    monkeypatch.setattr(learned, "weights_digest", lambda name: "retrained")
    assert get_method("aliked").cache_key() != before
    assert get_method("asmk").cache_key() != shipped_key


def test_codebook_fit_refuses_too_few_descriptors():
    with pytest.raises(ValueError, match="cannot make"):
        asmk.fit_codebook([np.zeros((10, 8), np.float32)], words=64)


def test_multiple_assignment_votes_on_the_query_side_and_scores_like_the_inverted_file(photos):
    """Each query descriptor votes for its 3 nearest words: the query meets more words of the
    gallery's single-assignment postings, the scale stays a photo's own (a self-score near 1),
    and the inverted file gives the direct scores."""
    single = get_method("asmk", max_keypoints=512)
    multiple = get_method("asmk", max_keypoints=512, multiple_assignment=3)
    assert multiple.cache_key() != single.cache_key()
    local = single.local_method()
    descriptors = {name: local.extract(photos[name]) for name in ("sceaux", "sceaux_2", "church")}
    gallery = [single.aggregate(f) for f in descriptors.values()]
    queries = [multiple.aggregate(f) for f in descriptors.values()]
    for query, plain in zip(queries, gallery, strict=True):
        assert np.array_equal(query["words"], plain["words"])  # the gallery side is unchanged
        assert set(plain["words"]) < set(query["query_words"])
        assert len(query["query_words"]) > 1.5 * len(plain["words"])
    index = multiple.search_index(gallery)
    for query in queries:
        assert np.allclose(index.scores(query), [multiple.score(query, g) for g in gallery])
    sceaux = queries[0]
    assert multiple.score(sceaux, gallery[0]) == pytest.approx(1.0)
    for item in gallery[1:]:  # the added words only add agreement
        assert multiple.score(sceaux, item) >= single.score(gallery[0], item)
    assert multiple.score(sceaux, gallery[1]) > multiple.score(sceaux, gallery[2])


def test_a_larger_codebook_fits_on_sampled_descriptors(photos, tmp_path):
    local = get_method("aliked", max_keypoints=512)
    descriptors = [local.extract(photos[name])["descriptors"] for name in ("sceaux", "church")]
    centroids = asmk.fit_codebook(descriptors, words=128, max_points=600)  # a sample of 600
    codebook = asmk.save_codebook(centroids, tmp_path / "words.npy")
    assert codebook.size == 128 and codebook.centroids.dtype == np.float32
    method = get_method("asmk", max_keypoints=512, codebook=codebook.path)
    assert method.visual_words() == 128 and method.inverted_file_shape() == (128, 128)
    feature = method.extract(photos["sceaux"])
    assert feature["words"].max() < 128 and method.score(feature, feature) == pytest.approx(1.0)
