"""Fit the ASMK codebook shipped in lookalike/data/ from the dev photos' local descriptors.

    .venv/bin/python benchmarks/fit_codebook.py --local aliked --words 1024

Writes lookalike/data/asmk-<network>-<words>.npy (float16 centroids). The local features go
through the feature cache, so a later `evaluate` reuses them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lookalike.evaluation.evaluate import load_dataset
from lookalike.features.cache import open_cache
from lookalike.features.extract import extract_features
from lookalike.features.registry import get_method
from lookalike.matching import asmk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" /
                                              "data" / "landmarks" / "manifest.csv"))
    parser.add_argument("--local", default="aliked")
    parser.add_argument("--words", type=int, default=1024)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    paths, _ = load_dataset(args.data)
    method = get_method(args.local)
    features = extract_features(method, paths, open_cache(None), args.jobs)
    centroids = asmk.fit_codebook([f["descriptors"] for f in features.features], args.words)
    target = asmk.shipped_codebook(f"{method.network}-{args.words}")
    codebook = asmk.save_codebook(centroids, target)
    print(f"wrote {target} ({codebook.size} words, digest {codebook.digest}) from "
          f"{len(features.features)} photos")


if __name__ == "__main__":
    main()
