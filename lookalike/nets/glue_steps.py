"""Adaptive LightGlue on ONNX Runtime: the layers run one by one, with early exit and pruning.

Why: LightGlue's cost is its nine transformer layers on every keypoint (~80 GFLOP a pair at
1,024 a side; ~1 s on two cores as one exported graph). LightGlue itself (and kornia's eager
model, what `accurate` ran before ONNX) does much less on most pairs:

- **depth confidence** (early exit): after each layer but the last, a small head says how
  sure each point is of its fate; when more than `depth_confidence` (0.95) of the pair's
  points (counted against all its keypoints) are sure, the pair stops and is assigned with
  that layer's head. Unrelated photos stop after two or three layers.
- **width confidence** (point pruning): between layers, a point whose matchability is below
  1 - `width_confidence` (0.01) and that is sure of it leaves the pair for good, so every
  later layer attends over fewer points (attention is quadratic in them).

Those are decisions on data between layers, so the network is exported in steps
(lookalike.nets.export_glue: input, one graph per layer, one assignment graph per layer) and
this module drives them from numpy with kornia's thresholds and rules, to kornia's matches
(tests/test_lightglue_onnx.py says how close). Several pairs can step through the layers
together (`batch`), padded to the longest with masks; a pair leaves the batch when it exits.
On a 2-core CPU the work is compute-bound, so padding costs more than the shared calls save,
and one pair a call is the default (benchmarks/runtime_speed.py, glue section, measures both).

The step graphs are exported on first use and cached as the other graphs are
(lookalike.nets.runtime.model_path: weights digest, export version, opset, runtime version,
plus the step and `STEPS_VERSION`). Running needs numpy and onnxruntime only.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import numpy as np

from lookalike.nets.runtime import (
    ensure_exported,
    model_path,
    normalised_keypoints,
    open_session,
    run_options,
)

STEPS_VERSION = 3  # bump when lookalike.nets.export_glue changes what a step computes
GLUE_STEP_BATCH = 1  # pairs a layer call (measured: batching does not pay on 2 cores)

# kornia's LightGlue.default_conf for what the driver decides (the learned.MATCHER_CONFIGS
# entry of a matcher overrides it; a test checks both against kornia's model).
DEFAULTS = {"n_layers": 9, "depth_confidence": 0.95, "width_confidence": 0.99}


def glue_config(name: str) -> dict:
    """n_layers, depth_confidence, width_confidence of matcher `name` (as kornia builds it)."""
    from lookalike.nets.learned import MATCHER_CONFIGS

    config = dict(DEFAULTS)
    config.update({key: value for key, value in MATCHER_CONFIGS[name].items()
                   if key in DEFAULTS})
    return config


def confidence_thresholds(layers: int) -> np.ndarray:
    """kornia's LightGlue.confidence_threshold of each layer (float32, as its buffer)."""
    return np.array([min(max(0.8 + 0.1 * math.exp(-4.0 * i / layers), 0.0), 1.0)
                     for i in range(layers)], np.float32)


def _export_step(name: str, step: str, index: int, path: Path) -> None:
    from lookalike.nets.export_glue import export_glue_step
    from lookalike.nets.learned import matcher

    export_glue_step(matcher(name), step, index, path)


@functools.cache
def step_session(name: str, step: str, index: int = 0):
    """ONNX Runtime's session of one step of LightGlue `name`: "start", "layer" `index`
    or "assign" `index`."""
    path = model_path("lightglue-steps", name, step=f"{step}{index}", v=STEPS_VERSION)
    ensure_exported(path, functools.partial(_export_step, name, step, index),
                    f"{name} {step} {index}")
    return open_session(path)


@dataclasses.dataclass
class _Pair:
    """One pair on its way through the layers: what is left of each side."""

    desc: list[np.ndarray]  # k x d per side
    encoding: list[np.ndarray]  # 2 x k x d_head per side
    kept: list[np.ndarray]  # the original indices of the k points left, per side
    total: int  # both sides' keypoints at the start: what early exit counts against


def _padded(arrays: list[np.ndarray], axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Arrays stacked on a new batch axis and padded with zeros along `axis` (the point
    axis) to the longest; and B x K valid masks."""
    length = max(a.shape[axis] for a in arrays)
    if all(a.shape[axis] == length for a in arrays):
        stacked = np.stack(arrays, axis=1 if axis == 1 else 0)
        return stacked, np.ones((len(arrays), length), bool)
    shape = list(arrays[0].shape)
    shape[axis] = length
    out = np.zeros([len(arrays), *shape], np.float32)
    valid = np.zeros((len(arrays), length), bool)
    for row, a in enumerate(arrays):
        index = [row] + [slice(None)] * a.ndim
        index[1 + axis] = slice(0, a.shape[axis])
        out[tuple(index)] = a
        valid[row, :a.shape[axis]] = True
    if axis == 1:  # encodings: 2 x k x d -> B x 2 x K x d -> 2 x B x K x d
        out = out.transpose(1, 0, 2, 3)
    return out, valid


def _start(name: str, a: dict, b: dict) -> _Pair:
    session = step_session(name, "start")
    desc, encoding, kept = [], [], []
    for feature in (a, b):
        out_desc, out_encoding = session.run(None, {
            "keypoints": normalised_keypoints(feature)[None],
            "descriptors": np.asarray(feature["descriptors"], np.float32)[None]},
            run_options())
        desc.append(out_desc[0])
        encoding.append(out_encoding[:, 0, 0])
        kept.append(np.arange(len(feature["keypoints"])))
    return _Pair(desc, encoding, kept, len(a["keypoints"]) + len(b["keypoints"]))


def _layer(name: str, index: int, chunk: list[_Pair]) -> list[np.ndarray]:
    inputs = {}
    for side in (0, 1):
        desc, valid = _padded([p.desc[side] for p in chunk], 0)
        encoding, _ = _padded([p.encoding[side] for p in chunk], 1)
        inputs.update({f"desc{side}": desc, f"encoding{side}": encoding[:, :, None],
                       f"valid{side}": valid})
    return step_session(name, "layer", index).run(None, inputs, run_options())


def _assign(name: str, index: int, chunk: list[_Pair]) -> list[np.ndarray]:
    """The K x 2 matches (original indices) of each pair, by the head of layer `index`."""
    inputs = {}
    for side in (0, 1):
        desc, valid = _padded([p.desc[side] for p in chunk], 0)
        inputs.update({f"desc{side}": desc, f"valid{side}": valid})
    matches0, _ = step_session(name, "assign", index).run(None, inputs, run_options())
    found = []
    for row, pair in enumerate(chunk):
        to = matches0[row, :len(pair.kept[0])]
        rows = np.flatnonzero(to >= 0)
        found.append(np.stack([pair.kept[0][rows], pair.kept[1][to[rows]]], axis=1)
                     .astype(np.int64))
    return found


@dataclasses.dataclass(frozen=True)
class _Rules:
    """kornia's early exit and pruning: when a pair stops, which points it drops."""

    layers: int
    depth: float  # depth_confidence; <= 0: no early exit
    width: float  # width_confidence; <= 0: no pruning

    @functools.cached_property
    def thresholds(self) -> np.ndarray:
        return confidence_thresholds(self.layers)

    def step(self, pair: _Pair, index: int, outputs: list[np.ndarray], row: int) -> str:
        """Take layer `index`'s outputs (row `row` of the batch) into `pair`; "exit" when the
        pair is to be assigned now, "empty" when pruning left a side with no point, else
        "on"."""
        counts = [len(pair.kept[0]), len(pair.kept[1])]
        pair.desc = [outputs[side][row, :counts[side]] for side in (0, 1)]
        if index == self.layers - 1:
            return "exit"
        confidence = [outputs[2 + side][row, :counts[side]] for side in (0, 1)]
        threshold = self.thresholds[index]
        if self.depth > 0:
            unsure = sum(int((c < threshold).sum()) for c in confidence)
            if np.float32(1.0) - np.float32(unsure) / np.float32(pair.total) \
                    > np.float32(self.depth):
                return "exit"
        if self.width > 0:
            for side in (0, 1):
                keep = outputs[4 + side][row, :counts[side]] > np.float32(1 - self.width)
                if self.depth > 0:  # an unsure point is never pruned
                    keep |= confidence[side] <= threshold
                pair.desc[side] = pair.desc[side][keep]
                pair.encoding[side] = pair.encoding[side][:, keep]
                pair.kept[side] = pair.kept[side][keep]
            if min(len(pair.kept[0]), len(pair.kept[1])) == 0:
                return "empty"
        return "on"


def _chunks(ids: list[int], size: int):
    for begin in range(0, len(ids), max(1, size)):
        yield ids[begin:begin + max(1, size)]


def run_adaptive(name: str, pairs: list[tuple[dict, dict]], batch: int = GLUE_STEP_BATCH,
                 depth_confidence: float | None = None,
                 width_confidence: float | None = None, trace: list | None = None
                 ) -> list[np.ndarray]:
    """LightGlue's matches (K x 2 index pairs into A's and B's keypoints) of each (A, B)
    feature pair, with early exit and point pruning as kornia's LightGlue takes them
    (its settings for `name` unless given; -1 turns one off). `batch` pairs step through a
    layer together, padded to the longest. `trace`, if given, gets (pair, layer, points of
    A, points of B) for each layer a pair runs (benchmarks count the work with it)."""
    config = glue_config(name)
    rules = _Rules(int(config["n_layers"]),
                   config["depth_confidence"] if depth_confidence is None else depth_confidence,
                   config["width_confidence"] if width_confidence is None else width_confidence)
    results: list[np.ndarray] = [np.zeros((0, 2), np.int64)] * len(pairs)
    active = {i: _start(name, a, b) for i, (a, b) in enumerate(pairs)
              if len(a["keypoints"]) >= 2 and len(b["keypoints"]) >= 2}
    for index in range(rules.layers):
        exits = []
        for ids in _chunks(list(active), batch):
            if trace is not None:
                trace += [(i, index, len(active[i].kept[0]), len(active[i].kept[1]))
                          for i in ids]
            outputs = _layer(name, index, [active[i] for i in ids])
            for row, i in enumerate(ids):
                verdict = rules.step(active[i], index, outputs, row)
                if verdict == "exit":
                    exits.append(i)
                elif verdict == "empty":  # nothing left to match on one side: no matches
                    del active[i]
        for ids in _chunks(exits, batch):
            for i, found in zip(ids, _assign(name, index, [active[i] for i in ids])):
                results[i] = found
                del active[i]
    return results


def layer_flops(points0: int, points1: int, dim: int = 256) -> int:
    """Multiply-adds x 2 of one LightGlue layer (self blocks on both sides, cross block) on
    that many points: the projections, the attention products and the feed-forward nets."""
    flops = 0
    for k in (points0, points1):  # self: Wqkv, q.k, attention x v, out_proj, ffn
        flops += 2 * k * dim * 3 * dim + 4 * k * k * dim + 2 * k * dim * dim + 12 * k * dim * dim
    total = points0 + points1  # cross: to_qk, to_v, to_out, ffn; sim and two products
    flops += 6 * total * dim * dim + 12 * total * dim * dim + 6 * points0 * points1 * dim
    return flops


def export_steps(name: str) -> list[Path]:
    """Export (if needed) every step of LightGlue `name`; their paths."""
    layers = int(glue_config(name)["n_layers"])
    steps = [("start", 0)] + [(step, i) for i in range(layers) for step in ("layer", "assign")]
    for step, index in steps:
        step_session(name, step, index)
    return [model_path("lightglue-steps", name, step=f"{step}{index}", v=STEPS_VERSION)
            for step, index in steps]
