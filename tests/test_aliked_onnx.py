"""ALIKED on ONNX Runtime gives kornia's eager ALIKED output, and runs without torch.

Tolerance: the exported graph computes in a different order (fused kernels, ONNX's
DeformConv), so the score map differs from eager PyTorch's by ~1e-5; keypoints are strict
local maxima of it, so in principle a near-tie could swap. On the dev photos every keypoint is
found again within 1e-3 px, and required here: at least 99% of kornia's keypoints within 1e-3
px of one of ours, and their descriptors at cosine >= 0.999 (measured: >= 0.9999996).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from lookalike.features.registry import get_method
from lookalike.imaging.loading import load_image
from lookalike.methods.learned_local import bounded
from lookalike.nets import runtime
from lookalike.nets.learned import detector
from tests.conftest import LANDMARKS, REPO, manifest_rows


def pixels_of(path) -> np.ndarray:
    image = bounded(load_image(path).convert("RGB"), 800)
    return np.asarray(image, np.float32) / np.float32(255.0)


def kornia_output(pixels: np.ndarray, top_k: int = 1024):
    tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]
    with torch.inference_mode():
        found = detector("aliked-n16", top_k)(tensor)[0]
    return (found.keypoints.numpy(), found.descriptors.numpy(),
            found.keypoint_scores.numpy())


def agreement(ours, theirs) -> tuple[float, float, float]:
    """(share of kornia's keypoints with one of ours within 1e-3 px, the lowest descriptor
    cosine among those, the largest score difference among those)."""
    keypoints, descriptors, scores = ours
    ref_keypoints, ref_descriptors, ref_scores = theirs
    if len(ref_keypoints) == 0:
        return float(len(keypoints) == 0), 1.0, 0.0
    distance = np.linalg.norm(ref_keypoints[:, None, :].astype(np.float64)
                              - keypoints[None, :, :], axis=2)
    nearest = distance.argmin(axis=1)
    close = distance[np.arange(len(ref_keypoints)), nearest] < 1e-3
    cosine = np.sum(ref_descriptors[close] * descriptors[nearest[close]], axis=1)
    score_gap = np.abs(ref_scores[close] - scores[nearest[close]])
    return close.mean(), float(cosine.min(initial=1.0)), float(score_gap.max(initial=0.0))


@pytest.mark.parametrize("index", [0, 29, 77])  # portrait (padded both ways), landscapes
def test_onnx_aliked_matches_kornia_on_dev_photos(index, landmarks_dir):
    pixels = pixels_of(LANDMARKS / manifest_rows()[index]["path"])
    ours = runtime.run_aliked("aliked-n16", 1024, pixels)
    theirs = kornia_output(pixels)
    assert len(ours[0]) == len(theirs[0]) == 1024
    share, cosine, score_gap = agreement(ours, theirs)
    assert share >= 0.99, share
    assert cosine >= 0.999, cosine
    assert score_gap < 1e-3, score_gap
    assert np.allclose(np.linalg.norm(ours[1], axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (16, 16), (8, 500), (300, 400), (97, 61)])
def test_onnx_aliked_odd_sizes_and_blank_images_match_kornia(shape):
    """Fewer keypoints than asked, none at all, patches clamped at the window's border, one
    graph for every size and padding."""
    if shape == (300, 400):
        pixels = np.full((*shape, 3), 0.5, np.float32)
    else:
        pixels = np.random.default_rng(1).random((*shape, 3), dtype=np.float32)
    ours = runtime.run_aliked("aliked-n16", 1024, pixels)
    theirs = kornia_output(pixels)
    assert len(ours[0]) == len(theirs[0])
    assert ours[1].shape == theirs[1].shape
    share, cosine, _ = agreement(ours, theirs)
    assert share >= 0.99 and cosine >= 0.999


def test_the_method_runs_onnx_by_default_and_keys_its_cache_by_runtime(landmarks_dir):
    onnx, eager = get_method("aliked"), get_method("aliked", runtime="torch")
    assert onnx.runtime == "onnx"
    assert onnx.cache_key() != eager.cache_key()
    with pytest.raises(ValueError, match="runtime must be one of"):
        get_method("aliked", runtime="tensorrt")
    image = load_image(LANDMARKS / manifest_rows()[5]["path"])
    a, b = onnx.extract(image), eager.extract(image)
    assert a.keys() == b.keys() and a["keypoints"].shape == b["keypoints"].shape
    assert np.array_equal(a["size"], b["size"]) and np.array_equal(a["scale"], b["scale"])
    assert onnx.match(a, b).verified


def test_models_are_exported_once_atomically_and_keyed(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_MODELS", str(tmp_path))
    path = runtime.model_path("aliked", "aliked-n16", k=64)
    assert path.parent == tmp_path and "aliked-n16" in path.name
    assert runtime.model_path("aliked", "aliked-n16", k=128) != path
    monkeypatch.setattr(runtime, "EXPORT_VERSION", runtime.EXPORT_VERSION + 1)
    assert runtime.model_path("aliked", "aliked-n16", k=64) != path
    monkeypatch.undo()
    monkeypatch.setenv("LOOKALIKE_MODELS", str(tmp_path))

    def crash(temporary):
        temporary.write_bytes(b"half a model")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runtime.ensure_exported(path, crash, "test")
    assert list(tmp_path.iterdir()) == []  # neither the model nor a temporary file
    calls = []
    runtime.ensure_exported(path, lambda temporary: calls.append(temporary.write_bytes(b"x")),
                            "test")
    runtime.ensure_exported(path, lambda temporary: calls.append(1), "test")
    assert path.read_bytes() == b"x" and len(calls) == 1


def test_without_torch_a_missing_model_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_MODELS", str(tmp_path))
    monkeypatch.setattr(runtime.importlib.util, "find_spec",
                        lambda name: None if name == "torch" else object())
    with pytest.raises(runtime.RuntimeMissing, match=r"torch is not installed.*"
                                                     r"python -m lookalike.nets\b"):
        runtime.ensure_exported(tmp_path / "m.onnx", lambda temporary: None, "aliked")


NO_TORCH = """
import sys
class NoTorch:  # any import of torch (or kornia, which needs it) fails
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "kornia"):
            raise ImportError("torch is hidden in this test")
sys.meta_path.insert(0, NoTorch())
{body}
assert "torch" not in sys.modules, "torch was imported"
"""


def run_without_torch(body: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH.format(body=body)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("preset", ["default", "accurate", "fast"])
def test_identify_verify_compare_and_serve_run_without_torch_once_exported(preset, tmp_path,
                                                                          landmarks_dir):
    """The shipped presets' learned path imports no torch at run time: the index is built
    (and the models exported) here, then a child process in which any import of torch fails
    runs `identify`, `verify`, `compare` and the server's /identify."""
    from lookalike.api import build_index
    from tests.landmark_gallery import QUERIES, make_gallery, photo

    env = dict(os.environ, PYTHONPATH=str(REPO), LOOKALIKE_CACHE=str(tmp_path / "f.sqlite"))
    exported = subprocess.run([sys.executable, "-m", "lookalike.nets"], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr
    index = tmp_path / "gallery.lkidx"
    build_index(make_gallery(tmp_path / "gallery", ["chateau_de_sceaux", "strecha_castle"]),
                index, preset=preset)
    query = str(photo(QUERIES["chateau_de_sceaux"]))
    other = str(photo(QUERIES["strecha_castle"]))
    local = "xfeat" if preset == "fast" else "aliked"
    body = f"""
from lookalike.cli import main
index, query, other = {str(index)!r}, {query!r}, {other!r}
assert main(["identify", "--index", index, "--preset", {preset!r}, "--json", query]) == 0
assert main(["verify", "--index", index, "--preset", {preset!r}, "--landmark",
             "chateau_de_sceaux", query]) == 0
assert main(["compare", "--methods", {local!r}, query, other, "-o", {str(tmp_path / "c")!r}]) == 0
from pathlib import Path
from fastapi.testclient import TestClient
from lookalike.server.app import create_app
from lookalike.server.settings import ServerSettings
with TestClient(create_app(ServerSettings(Path(index)))) as client:
    answer = client.post("/identify", files={{"file": ("q.jpg", open(query, "rb"), "image/jpeg")}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["landmark"] == "chateau_de_sceaux", answer.json()
"""
    result = run_without_torch(body, env)
    assert result.returncode == 0, result.stderr[-3000:]
