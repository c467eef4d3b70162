"""XFeat and DISK on ONNX Runtime: their exported graphs (lookalike.nets.local_export), run
without torch.

The graphs are exported once and kept as ALIKED's are (lookalike.nets.runtime: the models
folder, file names keyed by the weights' digest, the export version, the opset and ONNX
Runtime's version, written atomically). Each returns what kornia's eager model returns for one
photo (tests/test_local_onnx.py says how close); XFeat's matcher, LighterGlue, runs as a
LightGlue graph (lookalike.nets.runtime.run_lightglue).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from lookalike.nets.runtime import ensure_exported, model_path, open_session, run_options

LOCAL_EXPORT_VERSION = 1  # bump when lookalike.nets.local_export changes what a graph computes
XFEAT_STRIDE = 32  # XFeat resizes the image to multiples of it
DISK_PAD = 16  # DISK's U-Net needs multiples of it (zero padding at the bottom and right)


def _export(kind: str, top_k: int, path: Path) -> None:
    from lookalike.nets import local_export
    from lookalike.nets.learned import detector

    model = detector(kind, top_k)
    {"xfeat": local_export.export_xfeat, "disk": local_export.export_disk}[kind](
        model, top_k, path)


def graph_path(kind: str, top_k: int) -> Path:
    """The file of `kind`'s graph ("xfeat" or "disk") with at most `top_k` keypoints."""
    return model_path(kind, kind, k=top_k, v=LOCAL_EXPORT_VERSION)


@functools.cache
def session(kind: str, top_k: int):
    """ONNX Runtime's session of `kind` ("xfeat" or "disk") with at most `top_k` keypoints."""
    path = graph_path(kind, top_k)
    ensure_exported(path, functools.partial(_export, kind, top_k), f"{kind} ({top_k} keypoints)")
    return open_session(path)


def _image(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)


def xfeat_size(height: int, width: int) -> tuple[int, int]:
    """The size XFeat resizes an image to: each side down to a multiple of 32, at least 32."""
    return (max(XFEAT_STRIDE, height // XFEAT_STRIDE * XFEAT_STRIDE),
            max(XFEAT_STRIDE, width // XFEAT_STRIDE * XFEAT_STRIDE))


def run_xfeat(top_k: int, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keypoints N x 2 in pixels, unit descriptors N x 64, scores N) of an H x W x 3 float32
    image in [0, 1]: kornia's `XFeat.detectAndCompute` output, best first."""
    height, width = pixels.shape[:2]
    keypoints, descriptors, scores = session("xfeat", top_k).run(
        None, {"image": _image(pixels)}, run_options())
    resized_h, resized_w = xfeat_size(height, width)
    ratio = np.array([width / resized_w, height / resized_h], np.float32)
    return keypoints * ratio, descriptors, scores


def run_disk(top_k: int, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keypoints N x 2 in pixels, unit descriptors N x 128, heat N) of an H x W x 3 float32
    image in [0, 1]: kornia's `DISK.forward(n=top_k, pad_if_not_divisible=True)`, best first
    (kornia lists them in raster order)."""
    height, width = pixels.shape[:2]
    image = np.pad(pixels, ((0, (-height) % DISK_PAD), (0, (-width) % DISK_PAD), (0, 0)))
    return tuple(session("disk", top_k).run(
        None, {"image": _image(image), "size": np.array([height, width], np.int64)},
        run_options()))


def export_all() -> list[Path]:
    """Export the graphs the shipped presets run (XFeat at 1,024 keypoints, as `fast`)."""
    session("xfeat", 1024)
    return [graph_path("xfeat", 1024)]
