"""XFeat, DISK and LighterGlue on ONNX Runtime give kornia's eager output.

Tolerance, as for ALIKED (tests/test_aliked_onnx.py): the exported graphs compute in another
order, so heat maps differ from eager PyTorch's by float rounding and a near-tie of the strict
5 x 5 maxima could in principle swap. Required: at least 99% of kornia's keypoints found
within 1e-3 px, the same count, descriptors at cosine >= 0.999, scores within 1e-3 (XFeat's
scores are in [0, 1]) or 1e-3 relative (DISK's are logits). Measured on these photos: every
keypoint (the integer pixels come out identical), cosine >= 0.9999996. LighterGlue (the
exported graph runs all layers) is compared with kornia's LighterGlue with early exit and
pruning off: at least 98% of its matches found and no more than 2% others (measured: the
same sets).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lookalike.features.registry import get_method
from lookalike.imaging.loading import load_image
from lookalike.methods.learned_local import bounded
from lookalike.nets import local_runtime, runtime
from lookalike.nets.learned import detector, matcher
from tests.conftest import LANDMARKS, manifest_rows


def pixels_of(index: int, side: int = 800) -> np.ndarray:
    image = bounded(load_image(LANDMARKS / manifest_rows()[index]["path"]).convert("RGB"), side)
    return np.asarray(image, np.float32) / np.float32(255.0)


def tensor_of(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]


def kornia_xfeat(pixels: np.ndarray, top_k: int = 1024):
    with torch.inference_mode():
        found = detector("xfeat", top_k).detectAndCompute(tensor_of(pixels), top_k=top_k)[0]
    return found["keypoints"].numpy(), found["descriptors"].numpy(), found["scores"].numpy()


def kornia_disk(pixels: np.ndarray, top_k: int = 1024):
    with torch.inference_mode():
        found = detector("disk", top_k)(tensor_of(pixels), n=top_k, pad_if_not_divisible=True)[0]
    return found.keypoints.numpy(), found.descriptors.numpy(), found.detection_scores.numpy()


def agree(ours, theirs, score_tolerance) -> None:
    keypoints, descriptors, scores = ours
    ref_keypoints, ref_descriptors, ref_scores = theirs
    assert len(keypoints) == len(ref_keypoints)
    assert descriptors.shape == ref_descriptors.shape
    if len(ref_keypoints) == 0:
        return
    distance = np.linalg.norm(ref_keypoints[:, None, :].astype(np.float64)
                              - keypoints[None, :, :], axis=2)
    nearest = distance.argmin(axis=1)
    close = distance[np.arange(len(ref_keypoints)), nearest] < 1e-3
    assert close.mean() >= 0.99, close.mean()
    cosine = np.sum(ref_descriptors[close] * descriptors[nearest[close]], axis=1)
    assert cosine.min() >= 0.999, cosine.min()
    gap = np.abs(ref_scores[close] - scores[nearest[close]])
    assert np.all(gap <= score_tolerance(ref_scores[close])), gap.max()
    assert np.allclose(np.linalg.norm(descriptors, axis=1), 1.0, atol=1e-5)
    assert np.all(np.diff(scores) <= 0)  # best first


def absolute(_):
    return 1e-3


def relative(reference):
    return 1e-3 * np.maximum(1.0, np.abs(reference))


@pytest.mark.parametrize("index", [0, 29, 77])  # portrait and landscapes, resized both ways
def test_onnx_xfeat_matches_kornia_on_dev_photos(index, landmarks_dir):
    pixels = pixels_of(index)
    ours = local_runtime.run_xfeat(1024, pixels)
    assert len(ours[0]) == 1024
    agree(ours, kornia_xfeat(pixels), absolute)


@pytest.mark.parametrize("shape", [(1, 1), (20, 500), (97, 61), (300, 400), (64, 64)])
def test_onnx_xfeat_odd_sizes_and_blank_images_match_kornia(shape):
    """Sides under 32 (resized up), not multiples of 32, a blank image (no keypoint)."""
    if shape == (300, 400):
        pixels = np.full((*shape, 3), 0.5, np.float32)
    else:
        pixels = np.random.default_rng(2).random((*shape, 3), dtype=np.float32)
    agree(local_runtime.run_xfeat(1024, pixels), kornia_xfeat(pixels), absolute)


@pytest.mark.parametrize("index, side", [(29, 480), (0, 320)])  # eager DISK is slow: small
def test_onnx_disk_matches_kornia_on_dev_photos(index, side, landmarks_dir):
    pixels = pixels_of(index, side)
    agree(local_runtime.run_disk(1024, pixels), kornia_disk(pixels), relative)


@pytest.mark.parametrize("shape", [(20, 100), (97, 61), (64, 64)])  # eager fails under 16 px
def test_onnx_disk_odd_sizes_match_kornia(shape):
    pixels = np.random.default_rng(3).random((*shape, 3), dtype=np.float32)
    agree(local_runtime.run_disk(256, pixels), kornia_disk(pixels, 256), relative)


def test_xfeat_and_disk_run_onnx_by_default_and_key_their_cache_by_runtime(landmarks_dir):
    for name in ("xfeat", "disk"):
        onnx, eager = get_method(name), get_method(name, runtime="torch")
        assert onnx.runtime == "onnx" and onnx.cache_key() != eager.cache_key()
    # ASMK passes its runtime on to its local method, so the `fast` preset's two stages agree.
    assert get_method("asmk", local="xfeat").local_method().runtime == "onnx"
    eager_asmk = get_method("asmk", local="xfeat", runtime="torch")
    assert eager_asmk.local_method().runtime == "torch"
    assert eager_asmk.cache_key() != get_method("asmk", local="xfeat").cache_key()
    onnx, eager = get_method("xfeat"), get_method("xfeat", runtime="torch")
    image = load_image(LANDMARKS / manifest_rows()[5]["path"])
    a, b = onnx.extract(image), eager.extract(image)
    def raster(keypoints):  # near-tied scores may order two keypoints either way
        return keypoints[np.lexsort(keypoints.T)]

    assert np.allclose(raster(a["keypoints"]), raster(b["keypoints"]), atol=1e-3)
    assert np.array_equal(a["size"], b["size"]) and np.array_equal(a["scale"], b["scale"])
    assert onnx.match(a, b).verified


@pytest.fixture(scope="module")
def xfeat_features(landmarks_dir, tmp_path_factory):
    method = get_method("xfeat", max_keypoints=512)
    with pytest.MonkeyPatch.context() as patch:  # exported models go to the tests' folder
        patch.setenv("LOOKALIKE_MODELS", str(tmp_path_factory.getbasetemp() / "models"))
        found = [method.extract(load_image(LANDMARKS / manifest_rows()[i]["path"]))
                 for i in (0, 1, 2, 40)]  # three of one landmark, one of another
    return [dict(f, descriptors=f["descriptors"].astype(np.float32)) for f in found]


def eager_lighterglue(a: dict, b: dict) -> set[tuple[int, int]]:
    model = copy.deepcopy(matcher("lighterglue-xfeat"))
    model.conf.depth_confidence = model.conf.width_confidence = -1

    def side(feature):
        return {"keypoints": torch.from_numpy(feature["keypoints"])[None],
                "descriptors": torch.from_numpy(feature["descriptors"])[None],
                "image_size": torch.from_numpy(feature["size"].astype(np.float32))[None]}

    with torch.inference_mode():
        out = model({"image0": side(a), "image1": side(b)})
    return {tuple(pair) for pair in out["matches"][0].tolist()}


def test_batched_onnx_lighterglue_matches_eager_lighterglue(xfeat_features):
    f = xfeat_features
    pairs = [(f[0], f[1]), (f[0], f[2]), (f[1], f[2]), (f[0], f[3])]
    pairs[1] = (pairs[1][0], {key: (value[:300] if key in ("keypoints", "descriptors",
                                                             "scores") else value)
                              for key, value in pairs[1][1].items()})  # uneven: padded
    found = runtime.run_lightglue("lighterglue-xfeat", pairs)
    total = 0
    for (a, b), ours in zip(pairs, found):
        ours = {tuple(pair) for pair in ours.tolist()}
        theirs = eager_lighterglue(a, b)
        total += len(theirs)
        assert len(ours & theirs) >= 0.98 * len(theirs), (len(ours & theirs), len(theirs))
        assert len(ours - theirs) <= 0.02 * max(1, len(theirs))
    assert total > 100  # same-landmark pairs do match
    method = get_method("xfeat", matcher="lightglue")
    batched = method.match_many(f[2], [f[0], f[1], f[3]])
    assert [m.inliers for m in batched] == [method.match(f[2], c).inliers for c in f[:2] + f[3:]]
    assert batched[0].verified or batched[1].verified
