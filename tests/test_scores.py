"""Pair scores at their edges: a photo against its own re-save, a feature against itself."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lookalike.evaluation.compare import compare
from lookalike.features.registry import get_method
from lookalike.imaging.loading import load_image
from lookalike.matching.geometry import fit_model
from lookalike.methods.verified import verify_pair

# One of the dev photos whose q90 re-save made cv2.findFundamentalMat assert `!model.empty()`.
NEAR_DUPLICATE = "sacre_coeur/hierarchical-localization__mapping_02928139_3448003521.jpg"


@pytest.fixture(scope="module")
def resaved(tmp_path_factory, landmarks_dir):
    """The dev photo (linked) and its Pillow quality-90 re-save, side by side in a folder."""
    folder = tmp_path_factory.mktemp("near-duplicate")
    original = landmarks_dir / NEAR_DUPLICATE
    (folder / "original.jpg").symlink_to(original)
    Image.open(original).save(folder / "resaved_q90.jpg", "JPEG", quality=90)
    return folder / "original.jpg", folder / "resaved_q90.jpg"


def test_near_duplicate_verifies_without_an_opencv_error(resaved):
    method = get_method("verified")
    a, b = (method.extract(load_image(path, method.load_options())) for path in resaved)
    result = verify_pair(a, b)
    assert result.verified and result.score > 500 and result.inliers > 500
    assert result.model is not None and result.model_kind == "homography"
    assert method.score(a, b) == method.score(b, a) > 500


def test_near_duplicate_through_compare(resaved, tmp_path):
    result = compare([str(resaved[0].parent)], methods="verified", outdir=tmp_path / "out",
                     cache=False)
    assert result.errors == {}
    scores = result.matrices["verified"].scores
    assert scores.shape == (2, 2) and scores.min() > 500


def test_degenerate_points_fit_no_model():
    same = np.repeat(np.array([[10.0, 20.0]], np.float32), 30, axis=0)
    line = np.stack([np.arange(30), np.arange(30)], axis=1).astype(np.float32)
    for kind in ("homography", "fundamental"):
        for pa, pb in ((same, same), (line, line), (same[:3], same[:3])):
            model, mask = fit_model(kind, pa, pb, 2.0, 200)
            assert model is None or model.shape == (3, 3)
            assert mask.shape == (len(pa),) and mask.dtype == bool


@pytest.mark.parametrize("metric, itself", [("l2", 0.0), ("cosine", 1.0)])
def test_augnet_self_score_is_exact(metric, itself):
    method = get_method("augnet", metric=metric)
    rng = np.random.default_rng(0)
    vectors = [np.tanh(rng.normal(size=768)).astype(np.float32) for _ in range(12)]
    matrix = method.score_matrix(vectors, vectors)
    assert np.all(np.diag(matrix) == itself)
    assert method.score(vectors[3], vectors[3]) == itself
    assert str(method.score(vectors[3], vectors[3])) == str(itself)  # no "-0.0"
    off = matrix[~np.eye(len(vectors), dtype=bool)]
    assert np.all(off < itself)
    if metric == "l2":  # the product form still gives the true distances elsewhere
        exact = -np.linalg.norm(np.float64(vectors[0]) - np.float64(vectors[1]))
        assert matrix[0, 1] == pytest.approx(exact, abs=1e-9)
    near = vectors[0] + np.float32(1e-4)  # a near-duplicate ranks below the photo itself
    row = method.score_matrix([vectors[0]], [vectors[0], near])[0]
    assert row[0] == itself and row[1] < itself


def test_augnet_zero_vector_is_not_a_nan():
    method = get_method("augnet", metric="cosine")
    zero = np.zeros(768, np.float32)
    assert np.isfinite(method.score_matrix([zero], [zero, np.ones(768, np.float32)])).all()


def test_resave_is_really_different_bytes(resaved):
    data = [path.read_bytes() for path in resaved]
    assert data[0] != data[1]
    assert Image.open(io.BytesIO(data[1])).size == Image.open(io.BytesIO(data[0])).size
