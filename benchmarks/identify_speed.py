"""Speed of `identify` per preset against galleries of 1,000 and 10,000 references.

    .venv/bin/python benchmarks/identify_speed.py --presets fast,default,accurate --queries 30

The dev set has 105 landmark references. Larger galleries add variants made in feature space
from them, so that every reference costs what a real one costs to search and to verify:
- an ASMK feature keeps a random 85 % of its visual words and flips 3 % of their residual bits;
- a vector (AugNet) gets Gaussian noise to a cosine of ~0.9 with its source;
- local features keep a random 85 % of their keypoints, moved by a random similarity
  transform, with their descriptors jittered and renormalised.
Queries are real dev photos (landmarks and distractors), read and decoded each time.
Reported: end to end (read, decode, features, ranking, verification, calibration) and the
part after features (shortlist + verification + calibration), p50 and p95 in ms.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lookalike.engines.local import local_extractor  # noqa: E402
from lookalike.evaluation.evaluate import load_dataset  # noqa: E402
from lookalike.features.cache import open_cache  # noqa: E402
from lookalike.gallery.folders import GalleryEntry, Landmark  # noqa: E402
from lookalike.gallery.identify import Identifier  # noqa: E402
from lookalike.gallery.index import GalleryIndex, create_index, write_changes  # noqa: E402
from lookalike.gallery.roles import pipeline_methods  # noqa: E402
from lookalike.imaging.loading import read_bytes  # noqa: E402

MANIFEST = REPO.parent / "shared" / "data" / "landmarks" / "manifest.csv"


def global_variant(feature, rng: np.random.Generator):
    if isinstance(feature, dict):  # ASMK: words and residual bits
        keep = rng.random(len(feature["words"])) < 0.85
        bits = np.unpackbits(feature["bits"][keep], axis=1)
        flip = rng.random(bits.shape) < 0.03
        return {"words": feature["words"][keep], "bits": np.packbits(bits ^ flip, axis=1)}
    vector = np.asarray(feature, np.float32)
    vector = vector / (np.linalg.norm(vector) + 1e-12)
    noise = rng.normal(size=vector.shape).astype(np.float32)
    noise -= noise.dot(vector) * vector
    noise /= np.linalg.norm(noise) + 1e-12
    return 0.9 * vector + np.sqrt(1 - 0.81) * noise


def local_variant(local: dict, rng: np.random.Generator) -> dict:
    keep = rng.random(len(local["keypoints"])) < 0.85
    keypoints = local["keypoints"][keep].astype(np.float32).copy()
    angle, scale = np.radians(rng.uniform(-10, 10)), rng.uniform(0.8, 1.2)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    keypoints[:, :2] = keypoints[:, :2] @ rotation.T + rng.uniform(-40, 40, size=2)
    descriptors = np.asarray(local["descriptors"], np.float32)[keep]
    descriptors = descriptors + rng.normal(0, 0.02, descriptors.shape).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True) + 1e-7
    variant = {key: value[keep] if len(value) == len(keep) else value
               for key, value in local.items()}
    variant.update(keypoints=keypoints, descriptors=descriptors.astype(np.float16))
    return variant


def gallery_index(path: Path, preset: str, size: int, references, seed: int = 0) -> Path:
    """An index of `size` references: the real ones plus feature-space variants."""
    global_method, local_method = pipeline_methods(preset)
    paths = [p for p, _ in references]
    globals_, locals_, errors = local_extractor(open_cache(None), 2)(paths, global_method,
                                                                     local_method)
    assert not errors, errors
    labels = sorted({label for _, label in references})
    create_index(path, global_method, local_method, preset)
    rows = [(label, p, f"real{i}", globals_[p], locals_[p])
            for i, (p, label) in enumerate(references)]
    rng = np.random.default_rng(seed)
    decoded = {p: (global_method.decode(globals_[p]), local_method.decode(locals_[p]))
               for p in paths}
    while len(rows) < size:
        p, label = references[int(rng.integers(len(references)))]
        g, loc = decoded[p]
        rows.append((label, p, f"variant{len(rows)}",
                     global_method.encode(global_variant(g, rng)),
                     local_method.encode(local_variant(loc, rng))))
    with GalleryIndex(path) as index:
        write_changes(index.connection, [GalleryEntry(Landmark(label), []) for label in labels],
                      rows, remove_ids=())
    return path


def timed(identifier: Identifier, queries, repeats: int = 1):
    end_to_end, after_features = [], []
    for _ in range(repeats):
        for path in queries:
            started = time.perf_counter()
            query = identifier.features_from_bytes(read_bytes(path), path)
            middle = time.perf_counter()
            identifier.identify_features(path, query)
            done = time.perf_counter()
            end_to_end.append(done - started)
            after_features.append(done - middle)
    return end_to_end, after_features


def ms(values, q) -> float:
    return 1000 * float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="fast,default")
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    paths, labels = load_dataset(MANIFEST)
    references = [(p, lab) for p, lab in zip(paths, labels) if lab != "distractor"]
    rng = random.Random(0)
    queries = rng.sample(paths, args.queries)
    print("| preset | references | end to end p50 / p95 (ms) | after features p50 / p95 (ms) |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for preset in args.presets.split(","):
            for size in map(int, args.sizes.split(",")):
                index = gallery_index(Path(folder) / f"{preset}-{size}.lkidx", preset, size,
                                      references)
                identifier = Identifier(index)
                timed(identifier, queries[:3])  # warm up: models loaded, first buffers
                total, after = timed(identifier, queries)
                print(f"| {preset} | {size:,} | {ms(total, 50):.0f} / {ms(total, 95):.0f} | "
                      f"{ms(after, 50):.0f} / {ms(after, 95):.0f} |", flush=True)


if __name__ == "__main__":
    main()
