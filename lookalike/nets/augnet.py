"""The AugNet network in PyTorch: our own ResNet50 with imgsim's weights, no torchvision.

Kept apart from `lookalike.methods.augnet` so that only runs that use the network import
torch (about a second and 200 MB); hashes and keypoints start without it.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn


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


@lru_cache(maxsize=4)
def inference_model(weights: str | None = None, device: str = "cpu") -> nn.Module:
    """The model as extraction runs it. On a CPU: TorchScript frozen for inference, which
    folds each BatchNorm into its convolution and uses oneDNN layouts (~1.45x faster on the
    2-core dev machine; outputs agree with the eager model to ~2e-6). Falls back to the eager
    model if this torch build cannot script it."""
    model = load_augnet(weights, device)
    if device != "cpu":
        return model
    try:  # TorchScript is deprecated in favour of torch.compile, which needs a C++ toolchain
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.optimize_for_inference(torch.jit.script(model))
    except Exception:  # pragma: no cover - depends on the torch build
        return model
