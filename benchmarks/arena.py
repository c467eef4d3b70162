"""ALIKED on ONNX Runtime with its memory arena kept between runs, or given back after each.

    PYTHONPATH=. .venv/bin/python benchmarks/arena.py [--photos 6] [--rounds 2]

Each setting runs in its own process (interleaved by round, so load drifts hit both alike):
the same dev photos at 800 px through `lookalike.nets.runtime.run_aliked`, one warm-up
photo first. Printed per setting: wall and CPU time per photo (median), minor page faults
per photo, and the resident memory after the last photo (what a server holds between
requests). CPU time is the steadier figure on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LANDMARKS = ROOT.parent / "shared" / "data" / "landmarks"
SETTINGS = {"kept (default)": "0", "given back after each run": "1"}


def child(count: int) -> None:
    """Measure in this process (the environment says which setting)."""
    import resource
    import time

    import numpy as np

    from lookalike.imaging.loading import load_image
    from lookalike.nets.runtime import run_aliked

    def pixels_of(path):
        image = load_image(path).convert("RGB")
        image.thumbnail((800, 800))
        return np.asarray(image, np.float32) / 255.0

    photos = sorted(LANDMARKS.glob("*/*.jpg"))[::9][:count + 1]
    pixels = [pixels_of(p) for p in photos]
    run_aliked("aliked-n16", 1024, pixels[0])  # export or load the model, warm up
    walls, cpus = [], []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for image in pixels[1:]:
        wall, cpu = time.perf_counter(), time.process_time()
        run_aliked("aliked-n16", 1024, image)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    with open("/proc/self/status", encoding="ascii") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    print(json.dumps({"wall_ms": 1000 * float(np.median(walls)),
                      "cpu_ms": 1000 * float(np.median(cpus)),
                      "faults": faults / len(walls), "rss_mb": rss / 1024,
                      "load": os.getloadavg()[0]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.photos)
        return
    print("| arena | round | wall ms/photo | CPU ms/photo | page faults/photo | RSS after (MB) "
          "| load |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for round_ in range(1, args.rounds + 1):
        for name, release in SETTINGS.items():
            env = {**os.environ, "LOOKALIKE_RELEASE_MODEL_MEMORY": release,
                   "PYTHONPATH": str(ROOT)}
            out = subprocess.run([sys.executable, __file__, "--child", "--photos",
                                  str(args.photos)], env=env, capture_output=True, text=True,
                                 check=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            print(f"| {name} | {round_} | {r['wall_ms']:.0f} | {r['cpu_ms']:.0f} | "
                  f"{r['faults']:.0f} | {r['rss_mb']:.0f} | {r['load']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
