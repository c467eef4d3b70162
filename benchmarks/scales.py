"""Does more detail find small and distant landmarks? (issue 24, oxford_hard positives)

    PYTHONPATH=. .venv/bin/python benchmarks/scales.py --cache /tmp/cache.sqlite [--sides 800,1600]

Each positive of `oxford_hard` is described at several sizes (long side, keypoints scaled
with the area: 1,024 at 800 px), and matched against its query at the default 800 px by the
default matcher (MNN + MAGSAC++). Per size: keypoints inside the object's polygons, inliers,
the share verified, the IoU of the inliers' hull with the polygons, and the extraction time
per photo. The gallery side at twice the resolution is what overlapping 2 x 2 tiles of the
photo at 800 px each would describe.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lookalike.evaluation.query_sets import (
    hull,
    keypoints_inside,
    load_query_sets,
    polygons_of,
    region_iou,
)
from lookalike.features.cache import open_cache
from lookalike.features.extract import extract_features
from lookalike.features.registry import get_method

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "oxford_hard"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="800,1600")
    parser.add_argument("--cache", default=None)
    parser.add_argument("--queries", default=None)
    args = parser.parse_args()
    sets = load_query_sets(DATA, args.queries.split(",") if args.queries else None)
    cache = open_cache(args.cache)
    base = get_method("aliked")
    queries = extract_features(base, [s.query for s in sets], cache, 1, quiet=True)
    query_of = dict(zip(queries.paths, queries.features))
    print("| positives at | keypoints | in the object | with inliers | mean inliers | verified "
          "| IoU (verified) | extraction s/photo |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for side in (int(s) for s in args.sides.split(",")):
        keypoints = int(1024 * (side / 800) ** 2)
        method = get_method("aliked", max_side=side, max_keypoints=keypoints)
        photos = [p for s in sets for p in s.positives]
        started = time.perf_counter()
        found = extract_features(method, photos, cache, 1, quiet=True)
        seconds = (time.perf_counter() - started) / len(photos)
        feature_of = dict(zip(found.paths, found.features))
        inside, inliers, verified, ious = [], [], [], []
        for chosen in sets:
            query = query_of[chosen.query]
            for photo in chosen.positives:
                feature = feature_of[photo]
                scale = float(feature["scale"][0])
                polygons = polygons_of(photo)
                inside.append(keypoints_inside(feature["keypoints"][:, :2] / scale, polygons))
                match = base.match(query, feature)  # geometry thresholds of the query's frame
                inliers.append(match.inliers)
                verified.append(match.verified)
                if match.verified:
                    with Image.open(photo) as image:
                        size = image.size
                    ious.append(region_iou(hull(match.points_b / scale), polygons, size))
        print(f"| {side} px, {keypoints} keypoints | {keypoints} | {np.mean(inside):.0f} | "
              f"{np.mean(np.array(inliers) > 0):.0%} | {np.mean(inliers):.1f} | "
              f"{sum(verified)}/{len(verified)} | "
              f"{np.mean(ious) if ious else 0:.2f} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
