"""ALIKED's forward pass: kornia's stock `ALIKED.forward` against `aliked_sparse.forward`.

    .venv/bin/python benchmarks/aliked_speed.py --photos 20

Both run on the same dev photos bounded to 800 px (as the `aliked` method extracts them),
interleaved photo by photo in one process so that load on the machine falls on both alike.
Reported: p50 / p95 seconds per photo, the ratio, and whether the keypoints were identical.
Peak memory is measured in two child processes (one per forward pass, the same photos), as
the peak resident set size, since the dense map is the largest tensor either allocates.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lookalike.evaluation.evaluate import load_dataset  # noqa: E402
from lookalike.imaging.loading import load_image  # noqa: E402
from lookalike.methods.learned_local import bounded  # noqa: E402

MANIFEST = REPO.parent / "shared" / "data" / "landmarks" / "manifest.csv"


def tensors(count: int):
    import torch

    paths, _ = load_dataset(str(MANIFEST))
    for path in paths[::max(1, len(paths) // count)][:count]:
        image = bounded(load_image(path).convert("RGB"), 800)
        pixels = np.asarray(image, np.float32) / np.float32(255.0)
        yield torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]


def runners():
    from lookalike.nets import aliked_sparse
    from lookalike.nets.learned import detector

    model = detector("aliked-n16", 1024)

    def stock(tensor):
        found = model(tensor)[0]
        return found.keypoints, found.descriptors

    def sparse(tensor):
        keypoints, descriptors, _ = aliked_sparse.forward(model, tensor)
        return keypoints, descriptors

    return {"kornia": stock, "sparse": sparse}


def peak_memory(variant: str, count: int) -> float:
    """Peak RSS (MB) of a child process running one forward pass over the photos."""
    result = subprocess.run([sys.executable, __file__, "--child", variant, "--photos", str(count)],
                            capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    run = runners()
    if args.child:  # one variant, for its peak memory
        with torch.inference_mode():
            for tensor in tensors(args.photos):
                run[args.child](tensor)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return 0
    times = {name: [] for name in run}
    identical, largest = 0, 0.0
    with torch.inference_mode():
        run["kornia"](next(tensors(1)))  # warm-up: allocator and thread pool
        for tensor in tensors(args.photos):
            outputs = {}
            for name, forward in run.items():
                started = time.perf_counter()
                outputs[name] = forward(tensor)
                times[name].append(time.perf_counter() - started)
            identical += torch.equal(outputs["kornia"][0], outputs["sparse"][0])
            largest = max(largest, (outputs["kornia"][1] - outputs["sparse"][1]).abs().max().item())
    report = {name: {"p50_s": round(float(np.median(t)), 3),
                     "p95_s": round(float(np.percentile(t, 95)), 3)} for name, t in times.items()}
    report["ratio_p50"] = round(report["sparse"]["p50_s"] / report["kornia"]["p50_s"], 3)
    report["photos"] = len(times["kornia"])
    report["identical_keypoints"] = identical
    report["largest_descriptor_difference"] = largest
    for name in run:
        report[name]["peak_rss_mb"] = round(peak_memory(name, args.photos))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
