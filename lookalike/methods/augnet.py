"""The study's deep embedding: imgsim's AugNet (ResNet50 + Linear(2048, 768) + tanh).

The weights come from the imgsim wheel (located without importing imgsim, which would import
torchvision); the network is our own ResNet50 with the same parameter names, in
`lookalike.nets.augnet`, imported only when a vector is computed. Preprocessing is
exactly the stock `Vectorizer.vectorize`: short side resized to 350 with OpenCV's bilinear
resize, RGB scaled to [0, 1], ImageNet mean/std. Unlike the stock code, inference runs under
`torch.inference_mode` (on a CPU through a TorchScript copy frozen for inference), and a GPU is
used when present, with images of the same resized shape stacked into batches. Score = -L2
distance (the study's measure), or cosine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from functools import lru_cache
from typing import ClassVar

import cv2
import numpy as np
from PIL import Image

from lookalike.features.contract import GLOBAL, VECTOR, Method, VectorIndex
from lookalike.features.registry import register

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
SHORT_SIDE = 350


@lru_cache(maxsize=16)
def file_digest(path: str) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]



# -- preprocessing, identical to imgsim's Vectorizer.vectorize -------------------------------------
def resize_short_side(pixels: np.ndarray, size: int = SHORT_SIDE) -> np.ndarray:
    """imgsim's `resize_short`: scale so the short side is `size`, with cv2's default resize."""
    scale = size / min(pixels.shape[:2])
    shape = (int(max(pixels.shape[1] * scale, size)), int(max(pixels.shape[0] * scale, size)))
    return cv2.resize(pixels, shape)


def preprocess(image: Image.Image) -> np.ndarray:
    """PIL image -> normalised float32 CHW array, as the stock pipeline computes it."""
    rgb = np.asarray(image.convert("RGB"))
    resized = resize_short_side(rgb).astype(np.float32) / np.float32(255.0)
    normalised = (resized - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


@register
@dataclasses.dataclass
class AugNetMethod(Method):
    name: ClassVar[str] = "augnet"
    description: ClassVar[str] = "imgsim AugNet 768-d embedding (ResNet50); score = -L2 (or cosine)"
    feature_kind: ClassVar[str] = VECTOR
    role: ClassVar[str] = GLOBAL
    dim: ClassVar[int] = 768
    order: ClassVar[int] = 30
    batch_size: ClassVar[int] = 8
    metric: str = "l2"  # "l2" (the study) or "cosine"
    weights: str | None = None  # a fine-tuned model from `lookalike train`; None = imgsim's
    device: str = "auto"

    def __post_init__(self):
        if self.metric not in ("l2", "cosine"):
            raise ValueError(f"augnet metric must be 'l2' or 'cosine', not {self.metric!r}")
        if self.weights is not None and not os.path.isfile(self.weights):
            raise FileNotFoundError(f"{self.weights}: no such weights file")

    def cache_settings(self):
        weights = file_digest(os.path.abspath(self.weights)) if self.weights else "imgsim-0.1.2"
        return {"gray": self.gray, "weights": weights}

    def model(self):
        from lookalike.nets.augnet import inference_model
        from lookalike.nets.threads import configure_threads, resolve_device

        configure_threads()
        return inference_model(os.path.abspath(self.weights) if self.weights else None,
                               resolve_device(self.device))

    def extract(self, image: Image.Image) -> np.ndarray:
        return self.extract_many([image])[0]

    def extract_many(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """Embed images. On a GPU, images whose resized shapes agree share a forward pass; on a
        CPU each runs alone, which measured faster per image than batches (cache-bound)."""
        import torch

        from lookalike.nets.threads import resolve_device

        model = self.model()
        device = resolve_device(self.device)
        arrays = [preprocess(image) for image in images]
        results: list[np.ndarray | None] = [None] * len(arrays)
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, array in enumerate(arrays):
            key = array.shape if device != "cpu" else (index,)
            groups.setdefault(key, []).append(index)
        with torch.inference_mode():
            for indices in groups.values():
                batch = torch.from_numpy(np.stack([arrays[i] for i in indices])).to(device)
                output = model(batch).float().cpu().numpy()
                for row, index in enumerate(indices):
                    results[index] = output[row]
        return results  # type: ignore[return-value]

    def score(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(self.score_matrix([a], [b])[0, 0])

    def search_index(self, features) -> VectorIndex:
        """As a global descriptor, photos are searched by cosine similarity."""
        return VectorIndex(features)

    def score_matrix(self, queries, gallery) -> np.ndarray:
        """-L2 (or cosine) of every pair through one matrix product.

        The product form |q|^2 + |g|^2 - 2 q.g cancels to rounding noise (~1e-6 after the
        square root) where two vectors are equal, so pairs within that noise of each other are
        computed again from their difference: a photo scores exactly 0 (cosine exactly 1)
        against itself, and near-duplicates keep their true order.
        """
        q = np.stack(queries).astype(np.float64)
        g = np.stack(gallery).astype(np.float64)
        if self.metric == "cosine":
            q, g = unit_rows(q), unit_rows(g)
        sizes = (q * q).sum(1)[:, None] + (g * g).sum(1)[None, :]
        products = q @ g.T
        squared = sizes - 2.0 * products
        rows, cols = np.nonzero(squared < 1e-8 * sizes)
        for start in range(0, len(rows), 4096):  # bounded memory even if all photos are equal
            r, c = rows[start:start + 4096], cols[start:start + 4096]
            squared[r, c] = ((q[r] - g[c]) ** 2).sum(1)
        if self.metric == "cosine":
            products[rows, cols] = 1.0 - 0.5 * squared[rows, cols]  # unit vectors: cos = 1 - d²/2
            return np.clip(products, -1.0, 1.0)
        return 0.0 - np.sqrt(np.maximum(squared, 0.0))  # 0.0, not -0.0, for equal vectors


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)
