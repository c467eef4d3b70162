"""The study's deep embedding: imgsim's AugNet (ResNet50 + Linear(2048, 768) + tanh).

The weights come from the imgsim wheel (located without importing imgsim, which would import
torchvision); the network is our own ResNet50 with the same parameter names. Preprocessing is
exactly the stock `Vectorizer.vectorize`: short side resized to 350 with OpenCV's bilinear
resize, RGB scaled to [0, 1], ImageNet mean/std. Unlike the stock code, batches work (images
of the same resized shape are stacked), inference runs under `torch.inference_mode`, and a GPU
is used when present. Score = -L2 distance (the study's measure), or cosine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from lookalike.methods import register
from lookalike.methods.base import VECTOR, Method

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
SHORT_SIDE = 350


# -- the network ---------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet50 with torchvision's parameter names, so its state dicts load unchanged."""

    def __init__(self, num_outputs: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for index, (width, blocks, stride) in enumerate(
            [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1
        ):
            layers = []
            for block in range(blocks):
                layers.append(Bottleneck(channels, width, stride if block == 0 else 1))
                channels = width * Bottleneck.expansion
            setattr(self, f"layer{index}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_outputs)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature map (N, 2048, H/32, W/32), for pooling experiments."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.feature_map(x)), 1))


class AugNet(nn.Module):
    """imgsim's `Net`: ResNet50 whose fc outputs 768 values, squashed by tanh."""

    def __init__(self):
        super().__init__()
        self.pre = ResNet50(num_outputs=768)
        self.act = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.pre(x))


def stock_weights_path() -> Path:
    """Path of imgsim's model.pth, found without importing imgsim (it imports torchvision)."""
    spec = importlib.util.find_spec("imgsim")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the imgsim package is not installed; run `pip install --no-deps imgsim==0.1.2`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model.pth"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: imgsim's model.pth is missing")
    return path


def load_state_dict(path: str | os.PathLike) -> OrderedDict[str, torch.Tensor]:
    """Load a state dict saved by imgsim (DataParallel `module.` prefix) or by lookalike."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a lookalike training checkpoint
    return OrderedDict((key.removeprefix("module."), value) for key, value in state.items())


@lru_cache(maxsize=4)
def load_augnet(weights: str | None = None, device: str = "cpu") -> AugNet:
    """The AugNet model in eval mode, from imgsim's weights or a fine-tuned file."""
    model = AugNet()
    model.load_state_dict(load_state_dict(weights or stock_weights_path()))
    return model.eval().to(device)


@lru_cache(maxsize=16)
def file_digest(path: str) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


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


def configure_threads() -> None:
    """Use every core for intra-op work (torch defaults can be lower in containers)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores and torch.get_num_threads() != cores:
        torch.set_num_threads(cores)


@register
@dataclasses.dataclass
class AugNetMethod(Method):
    name: ClassVar[str] = "augnet"
    description: ClassVar[str] = "imgsim AugNet 768-d embedding (ResNet50); score = -L2 (or cosine)"
    feature_kind: ClassVar[str] = VECTOR
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

    def model(self) -> AugNet:
        configure_threads()
        return load_augnet(os.path.abspath(self.weights) if self.weights else None,
                           resolve_device(self.device))

    def extract(self, image: Image.Image) -> np.ndarray:
        return self.extract_many([image])[0]

    def extract_many(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """Embed images, stacking those whose resized shapes agree into one forward pass."""
        model = self.model()
        device = next(model.parameters()).device
        arrays = [preprocess(image) for image in images]
        results: list[np.ndarray | None] = [None] * len(arrays)
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, array in enumerate(arrays):
            groups.setdefault(array.shape, []).append(index)
        with torch.inference_mode():
            for indices in groups.values():
                batch = torch.from_numpy(np.stack([arrays[i] for i in indices])).to(device)
                output = model(batch).float().cpu().numpy()
                for row, index in enumerate(indices):
                    results[index] = output[row]
        return results  # type: ignore[return-value]

    def score(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(self.score_matrix([a], [b])[0, 0])

    def score_matrix(self, queries, gallery) -> np.ndarray:
        q = np.stack(queries).astype(np.float64)
        g = np.stack(gallery).astype(np.float64)
        if self.metric == "cosine":
            q /= np.linalg.norm(q, axis=1, keepdims=True) + 1e-12
            g /= np.linalg.norm(g, axis=1, keepdims=True) + 1e-12
            return q @ g.T
        squared = (q * q).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2.0 * q @ g.T
        return -np.sqrt(np.maximum(squared, 0.0))
