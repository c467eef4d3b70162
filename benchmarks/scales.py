"""Does more detail find small and distant landmarks? (issue 24, oxford_hard positives)

    PYTHONPATH=. .venv/bin/python benchmarks/scales.py --cache /tmp/cache.sqlite [--sides 800,1600]

Each positive of `oxford_hard` is described at several sizes (long side, keypoints scaled
with the area: 1,024 at 800 px), and matched against its query at the default 800 px by the
default matcher (MNN + MAGSAC++). Per size: keypoints inside the object's polygons, inliers,
the share verified, the IoU of the inliers' hull with the polygons, and the extraction time
per photo. The gallery side at twice the resolution is what overlapping 2 x 2 tiles of the
photo at 800 px each would describe.

    PYTHONPATH=. .venv/bin/python benchmarks/scales.py --views whole,tiles [--presets default]

With `--views`, the gallery (each query's 5 positives and 15 negatives) is described in each
way (`views`: "whole", or "tiles" = whole + 2 x 2 overlapping tiles at 1.67x, one photo to the
pipeline), the queries whole, and `lookalike evaluate`'s query-set protocol runs for asmk,
aliked and fused (lookalike.evaluation.query_sets): mAP, P@1, P@5, per-query AP, keypoints in
the polygons, positives verified, their IoU, the open set, and the extraction time per photo
(`--time N` photos extracted afresh, no cache), and the verification time per pair.
With `--matcher lightglue` (or mnn) it only verifies each positive against its query, with
the gallery described in each of `--views`: the localisation part, for the `accurate`
preset's matcher at a fraction of the cost. With `--dev DATASET` (e.g. the dev photos or a
manifest of some of them) it runs `lookalike evaluate`'s protocol there for `--methods`, each
photo a query (whole) against the others described in each of `--views`. With
`--rank-matcher lightglue`, aliked alone ranks (ASMK top 30 verified by LightGlue, as
`accurate` verifies), without fused's open set.
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


def extraction_seconds(method, photos: list[str]) -> float:
    """Seconds per photo to decode and describe `photos` (no cache; one warm-up first)."""
    from lookalike.imaging.loading import decode_image, read_bytes

    def describe(photo):
        return method.extract(decode_image(read_bytes(photo), photo, method.load_options()))

    describe(photos[0])  # sessions and models loaded outside the timing
    started = time.perf_counter()
    for photo in photos:
        describe(photo)
    return (time.perf_counter() - started) / len(photos)


def verification_ms(preset: str, views: str, sets, cache) -> float:
    """Milliseconds per pair for the preset's local matcher to verify each query (whole)
    against its 20 photos (features from the cache), matched as the pipeline does
    (`match_many`, no pair cache)."""
    from lookalike.features.registry import get_method

    local = get_method("fused", preset=preset, views=views).parts()[1]
    store = open_cache(cache)
    queries = extract_features(local.query_method(), [s.query for s in sets], store, 1, True)
    pairs, spent = 0, 0.0
    for chosen in sets:
        gallery = extract_features(local, chosen.gallery, store, 1, True)
        started = time.perf_counter()
        local.match_many(queries.feature_of(chosen.query), gallery.features)
        spent += time.perf_counter() - started
        pairs += len(gallery.features)
    return 1000 * spent / max(1, pairs)


def localise_views(args, sets) -> None:
    """Each positive verified against its query (whole) by `--matcher` with the gallery
    described in each of `--views`: positives verified, their IoU with the polygons, and the
    time per pair (features from the cache)."""
    import os

    from lookalike.features.registry import get_method

    store = open_cache(args.cache)
    print("| matcher | gallery views | keypoints in the object | positives with inliers | "
          "mean inliers | verified | IoU (verified) | ms/pair | load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for views in args.views.split(","):
        method = get_method("aliked", matcher=args.matcher, views=views,
                            query_views=args.query_views)
        queries = extract_features(method.query_method(), [s.query for s in sets], store, 1,
                                   True)
        photos = [p for s in sets for p in s.positives]
        found = extract_features(method, photos, store, 1, True)
        found_of = {p: found.feature_of(p) for p in photos}
        inside, inliers, verified, ious, spent = localise(
            sets, queries.feature_of, found_of,
            lambda query, feature, method=method: method.match_many(query, [feature])[0])
        print(f"| {args.matcher} | {views} (queries {args.query_views}) | "
              f"{np.mean(inside):.0f} | "
              f"{np.mean(np.array(inliers) > 0):.0%} | {np.mean(inliers):.1f} | "
              f"{sum(verified)}/{len(verified)} | {np.mean(ious) if ious else 0:.2f} | "
              f"{1000 * spent / len(photos):.0f} | {os.getloadavg()[0]:.1f} |", flush=True)


def dev_views(args) -> None:
    """`lookalike evaluate`'s dev protocol (every photo a query, whole, against the others as
    gallery photos in each of `--views`) on `--dev` (a folder or manifest), side by side."""
    import os

    from lookalike.evaluation.evaluate import evaluate

    print("| dataset | gallery views | method | mAP | P@1 | pair AP | score s | load |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for views in args.views.split(","):
        result = evaluate(args.dev, args.methods, cache=args.cache,
                          method_settings={"views": views, "search_views": args.search_views})
        for row in result:
            print(f"| {Path(args.dev).name} ({len(result.paths)} photos) | {views} | "
                  f"{row['method']} | {row['map']:.3f} | {row['p_at_1']:.3f} | "
                  f"{row['pair_ap']:.3f} | {row['score_s']:.0f} | {os.getloadavg()[0]:.1f} |",
                  flush=True)


def rank_views(args, sets) -> None:
    """aliked alone (ASMK top 30, verified by `--rank-matcher`) ranking each query's photos
    described in each of `--views`: mAP, P@1, P@5 and AP per query (no open set)."""
    import os

    from lookalike.evaluation.query_sets import evaluate_query_sets

    print(f"| aliked, {args.rank_matcher} | gallery views | mAP | P@1 | P@5 | "
          + " | ".join(s.name for s in sets) + " | run s | load |")
    print("|---|---|---:|---:|---:|" + "---:|" * len(sets) + "---:|---:|")
    for views in args.views.split(","):
        result = evaluate_query_sets(DATA, "aliked", cache=args.cache,
                                     queries=[s.name for s in sets],
                                     method_settings={"views": views,
                                                      "matcher": args.rank_matcher})
        entry = result["methods"]["aliked"]
        print(f"| aliked | {views} | {entry['map']:.3f} | {entry['p_at_1']:.3f} | "
              f"{entry['p_at_5']:.3f} | "
              + " | ".join(f"{entry['per_query'][s.name]['ap']:.3f}" for s in sets)
              + f" | {entry['seconds']:.0f} | {os.getloadavg()[0]:.1f} |", flush=True)


def compare_views(args, sets) -> None:
    """Each gallery description (`--views`) through evaluate's query-set protocol, side by
    side: the figures as Markdown rows, and the per-query AP."""
    import json
    import os

    from lookalike.evaluation.query_sets import evaluate_query_sets
    from lookalike.features.registry import get_method

    photos = [p for s in sets for p in s.gallery][::max(1, 160 // max(1, args.time))]
    photos = photos[:args.time]
    rows, per_query, results = [], [], {}
    for preset in args.presets.split(","):
        for views in args.views.split(","):
            started = time.perf_counter()
            result = evaluate_query_sets(DATA, "asmk,aliked,fused", cache=args.cache,
                                         queries=[s.name for s in sets],
                                         method_settings={"views": views, "preset": preset,
                                                          "search_views": args.search_views})
            seconds = time.perf_counter() - started
            results[f"{preset}/{views}"] = result
            local = get_method("fused", preset=preset, views=views,
                               search_views=args.search_views).parts()[1]
            cost = extraction_seconds(local, photos) if args.time else float("nan")
            pair_ms = verification_ms(preset, views, sets, args.cache)
            methods = result["methods"]
            fused = methods["fused"]
            loc, ops = fused["localisation"], fused["open_set"]
            load = os.getloadavg()[0]
            rows.append(
                f"| {preset} | {views} | {methods['asmk']['map']:.3f} | "
                f"{methods['aliked']['map']:.3f} / {methods['aliked']['p_at_1']:.3f} | "
                f"{fused['map']:.3f} | {fused['p_at_1']:.3f} | {fused['p_at_5']:.3f} | "
                f"{loc['mean_keypoints_inside']:.0f} | {loc['verified']}/{loc['positives']} | "
                f"{loc['mean_iou_verified']:.2f} | {ops['positives_named']:.0%} | "
                f"{ops['negatives_naming_own_query']:.1%} | {cost:.2f} | {pair_ms:.0f} | "
                f"{seconds:.0f} | "
                f"{load:.1f} |")
            per_query.append(f"| {preset} fused, {views} | " + " | ".join(
                f"{fused['per_query'][s.name]['ap']:.3f}" for s in sets) + " |")
            print(rows[-1], flush=True)
    print("\n| preset | gallery views | asmk mAP | aliked mAP / P@1 | fused mAP | fused P@1 | "
          "fused P@5 | keypoints in the object | positives verified | IoU (verified) | "
          "open set: positives named | negatives naming own query | extraction s/photo | "
          "verification ms/pair | run s | load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print("\n| AP per query | " + " | ".join(s.name for s in sets) + " |")
    print("|---|" + "---:|" * len(sets))
    print("\n".join(per_query))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1, default=str) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="800,1600")
    parser.add_argument("--views", default=None,
                        help="compare gallery descriptions, e.g. whole,tiles (evaluate's protocol)")
    parser.add_argument("--presets", default="default")
    parser.add_argument("--query-views", default="whole", help="with --matcher")
    parser.add_argument("--search-views", default="all",
                        help="which views ASMK searches: all, or whole (tiles verify only)")
    parser.add_argument("--rank-matcher", default=None,
                        help="with --views: aliked's ranking alone, verified by this matcher")
    parser.add_argument("--dev", default=None,
                        help="with --views: evaluate's dev protocol on this dataset instead")
    parser.add_argument("--methods", default="asmk,aliked", help="with --dev")
    parser.add_argument("--matcher", default=None,
                        help="with --views: localisation only, by this matcher (mnn, "
                             "lightglue), positives against their query")
    parser.add_argument("--time", type=int, default=8,
                        help="photos extracted afresh to time each description (0: none)")
    parser.add_argument("--output", default=None, help="--views: all results as JSON")
    parser.add_argument("--cache", default=None)
    parser.add_argument("--queries", default=None)
    args = parser.parse_args()
    sets = load_query_sets(DATA, args.queries.split(",") if args.queries else None)
    if args.views and args.dev:
        dev_views(args)
        return
    if args.views and args.rank_matcher:
        rank_views(args, sets)
        return
    if args.views and args.matcher:
        localise_views(args, sets)
        return
    if args.views:
        compare_views(args, sets)
        return
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
        # geometry thresholds of the query's frame: `base` matches
        inside, inliers, verified, ious, _ = localise(sets, query_of.__getitem__, feature_of,
                                                      base.match)
        print(f"| {side} px, {keypoints} keypoints | {keypoints} | {np.mean(inside):.0f} | "
              f"{np.mean(np.array(inliers) > 0):.0%} | {np.mean(inliers):.1f} | "
              f"{sum(verified)}/{len(verified)} | "
              f"{np.mean(ious) if ious else 0:.2f} | {seconds:.2f} |", flush=True)


def localise(sets, query_of, feature_of, match):
    """Each positive against its query: (keypoints inside the object, inliers, verified,
    IoU of the verified regions with the polygons, seconds matching)."""
    inside, inliers, verified, ious, spent = [], [], [], [], 0.0
    for chosen in sets:
        query = query_of(chosen.query)
        for photo in chosen.positives:
            feature = feature_of[photo]
            scale = float(feature["scale"][0])
            polygons = polygons_of(photo)
            inside.append(keypoints_inside(feature["keypoints"][:, :2] / scale, polygons))
            started = time.perf_counter()
            found = match(query, feature)
            spent += time.perf_counter() - started
            inliers.append(found.inliers)
            verified.append(found.verified)
            if found.verified:
                with Image.open(photo) as image:
                    size = image.size
                ious.append(region_iou(hull(found.points_b / scale), polygons, size))
    return inside, inliers, verified, ious, spent


if __name__ == "__main__":
    main()
