"""Geometric verification on the dev photos: true pairs verify, look-alike buildings do not."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lookalike.features.contract import decode_arrays, encode_arrays
from lookalike.features.registry import get_method
from lookalike.imaging.loading import LoadOptions, load_image
from lookalike.methods.verified import Verified, occupied_cells, verify_pair
from lookalike.retrieval.focus import landmark_weights, read_regions, region_weights, regions_for

SCEAUX = "chateau_de_sceaux/imagedataset_sceauxcastle__images_100_7102.jpg"
SCEAUX_2 = "chateau_de_sceaux/imagedataset_sceauxcastle__images_100_7103.jpg"
OTHER_CHURCH = "distractors/image-matching-webui__kn-church_01.jpg"


@pytest.fixture(scope="module")
def method() -> Verified:
    return get_method("verified")


def features_of(method: Verified, image: Image.Image) -> dict:
    return method.extract(image)


@pytest.fixture(scope="module")
def sceaux(method, landmarks_dir):
    image = load_image(landmarks_dir / SCEAUX, method.load_options())
    other = load_image(landmarks_dir / SCEAUX_2, method.load_options())
    return image, method.extract(image), method.extract(other)


def test_true_pair_verifies_with_geometry(method, sceaux):
    _, a, b = sceaux
    result = method.verify(a, b)
    assert result.verified
    assert result.inliers >= 30
    assert result.model is not None and result.model.shape == (3, 3)
    assert len(result.points_a) == len(result.points_b) == result.inliers
    assert result.score > 0
    # The score verifies from one fixed photo of the pair, so both orders agree.
    assert method.score(a, b) == method.score(b, a) == method.verify_either_way(a, b).score
    assert abs(method.score(a, b) - result.score) <= 0.05 * result.score


@pytest.mark.parametrize("turn", [Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
                                  Image.Transpose.ROTATE_270])
def test_rotated_copy_still_verifies(method, sceaux, turn):
    image, a, b = sceaux
    rotated = method.extract(image.transpose(turn))
    assert method.verify(a, rotated).verified
    assert method.verify(rotated, b).verified  # and against another photo of the landmark


def test_zoomed_detail_verifies(method, sceaux):
    """A crop of a third of the photo, upscaled (a zoomed detail) still fits one geometry."""
    image, a, _ = sceaux
    w, h = image.size
    detail = image.crop((w // 3, h // 3, 2 * w // 3, 2 * h // 3)).resize((w, h))
    assert method.verify(method.extract(detail), a).verified


def test_different_church_is_not_verified(method, landmarks_dir, manifest):
    other = method.extract(load_image(landmarks_dir / OTHER_CHURCH, method.load_options()))
    churches = [row["path"] for row in manifest if row["label"] == "berlin_cathedral"]
    for path in churches:
        result = method.verify(other, method.extract(load_image(landmarks_dir / path,
                                                                method.load_options())))
        assert not result.verified, path


def test_features_survive_the_cache_encoding(method, sceaux):
    _, a, b = sceaux
    decoded = decode_arrays(encode_arrays(a))
    assert set(decoded) == {"keypoints", "descriptors", "size", "scale"}
    assert method.verify(decoded, b).inliers == method.verify(a, b).inliers


def test_occupied_cells_counts_spread():
    size = np.array([800, 800])
    clustered = np.array([[10.0, 10.0], [20.0, 15.0], [30.0, 30.0]])
    spread = np.array([[10.0, 10.0], [790.0, 10.0], [400.0, 400.0], [10.0, 790.0]])
    assert occupied_cells(clustered, size) == 1
    assert occupied_cells(spread, size) == 4


def test_too_few_matches_gives_zero(method, sceaux):
    _, a, _ = sceaux
    few = {key: value[:5] if key in ("keypoints", "descriptors") else value
           for key, value in a.items()}
    result = verify_pair(a, few)
    assert result.score == 0 and not result.verified


def test_landmark_focus_marks_common_keypoints(method, sceaux):
    _, a, b = sceaux
    weights = landmark_weights([a, b], method, outside=0.25)
    assert set(np.unique(weights[0])) == {0.25, 1.0}
    shared = method.verify(a, b).index_a
    assert np.all(weights[0][shared] == 1.0)
    # Weighted verification never counts more than the unweighted one.
    weighted = method.verify(a, b, weights_a=weights[0], weights_b=weights[1])
    assert weighted.score <= method.verify(a, b).score


def test_region_sidecar_weights_keypoints(tmp_path, method, sceaux, landmarks_dir):
    image, a, b = sceaux
    w, h = image.info["original_size"]
    sidecar = tmp_path / "roi.json"
    sidecar.write_text(json.dumps({
        "imagedataset_sceauxcastle__images_100_7102.jpg": [{"box": [0, 0, w // 2, h]}],
    }))
    regions = regions_for(landmarks_dir / SCEAUX, read_regions(sidecar), sidecar)
    assert regions is not None
    weights = region_weights(a, regions)
    x = a["keypoints"][:, 0] / a["scale"][0]
    assert np.all(weights[x < w / 2 - 2] == 1.0) and np.all(weights[x > w / 2 + 2] == 0.0)
    full = method.verify(a, b)
    left = method.verify(a, b, weights_a=weights)
    assert 0 < left.score < full.score


def test_load_options_bound_decoding(method):
    assert method.load_options() == LoadOptions(gray=False, min_long_side=1024)


def test_scores_are_symmetric_and_do_not_depend_on_jobs(landmarks_dir):
    """Matching looks from one side, so each pair is verified from one fixed photo: the matrix
    is symmetric and the same however the rows are split over workers."""
    from conftest import photos_of
    from lookalike.evaluation.compare import compare

    paths = [str(p) for p in photos_of("st_pauls_cathedral")[:4] + photos_of("distractor")[:3]]
    one = compare(paths, methods="verified", cache=False, jobs=1).matrices["verified"].scores
    two = compare(paths, methods="verified", cache=False, jobs=2).matrices["verified"].scores
    assert np.array_equal(one, two)
    assert np.array_equal(two, two.T)


def test_pair_memo_computes_each_pair_once_in_either_order():
    from lookalike.features.cache import PairMemo

    calls = []
    memo = PairMemo(limit=3)
    a, b, c = object(), object(), object()
    compute = lambda x, y: calls.append((x, y)) or len(calls)  # noqa: E731
    assert memo.get(a, b, compute) == 1
    assert memo.get(a, b, compute) == 1 and memo.get(b, a, compute, lambda r: -r) == -1
    assert memo.get(a, c, compute) == 2 and memo.get(b, c, compute) == 3 and len(calls) == 3
    memo.get(c, c, compute)  # past the limit the memo starts over
    assert len(memo.pairs) == 1
