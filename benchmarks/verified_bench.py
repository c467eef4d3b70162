"""Speed of `verified` and `fused` with cached features, beside the study's brute-force AKAZE.

    .venv/bin/python benchmarks/verified_bench.py --data ../shared/data/landmarks [--pairs 200]

Times, in the same process and run: one pair scored by the study's AKAZE (brute-force Hamming
kNN + ratio test), one pair verified by `verified` (matching + MAGSAC++), and `fused` ranking
one query against the whole dev set (global similarity, shortlist verification, expansion,
logistic model). Features come from the cache (LOOKALIKE_CACHE), so extraction is not timed.
The machine load is printed with the numbers: on a shared machine they vary with it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from lookalike.evaluation.evaluate import load_dataset
from lookalike.features.cache import open_cache
from lookalike.features.extract import extract_features
from lookalike.features.registry import get_method


def median_ms(function, items) -> float:
    times = []
    for item in items:
        start = time.perf_counter()
        function(*item)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/landmarks")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--photos", type=int, default=40,
                        help="pairs are drawn among this many photos (their features extracted)")
    args = parser.parse_args()
    paths, _ = load_dataset(args.data)
    cache = open_cache(None)
    rng = np.random.default_rng(0)
    sample = [paths[i] for i in rng.choice(len(paths), min(args.photos, len(paths)), replace=False)]
    pairs = [tuple(rng.choice(len(sample), 2, replace=False)) for _ in range(args.pairs)]
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    for name in ("akaze", "verified"):
        method = get_method(name)
        features = extract_features(method, sample, cache, quiet=True).features
        ms = median_ms(method.score, [(features[i], features[j]) for i, j in pairs])
        print(f"{name:>9}: {ms:6.1f} ms per pair (median of {len(pairs)} pairs)")
    fused = get_method("fused")
    features = extract_features(fused, paths, cache, quiet=True).features
    scorer = fused.scorer()
    scorer.store = None  # time real verifications, not counts kept in the cache by earlier runs
    vectors = np.stack([f["global"] for f in features])
    queries = rng.choice(len(paths), args.queries, replace=False)
    ms = median_ms(lambda q: scorer.rank(features[q], features, vectors), [(q,) for q in queries])
    print(f"    fused: {ms:6.1f} ms to rank one query against {len(paths)} photos "
          f"(median of {len(queries)} queries, shortlist {scorer.model.shortlist})")
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
