"""Which pair evidence and calibration carry over to landmarks they never saw (issue 24).

    PYTHONPATH=. .venv/bin/python benchmarks/carryover.py --preset default [--write]

Ranks both datasets through the preset's pipeline (shortlist, verification, expansion), once:

- `landmarks/`: every photo against all 144 (the dev protocol, as `lookalike calibrate`);
- `oxford_hard/`: each query against its own 5 positives and 15 hard negatives.

Then, for each candidate composition (which evidence, free or monotone logistic fit, which
data it is fitted on), scores every pair by a model fitted **without its landmark**: whole
landmarks per fold across both datasets together (an Oxford query and the dev photos of the
same building share a fold). Held-out mAP/P@1 on both datasets are the figures to select by;
the preset's local matcher alone (`aliked`: ASMK similarity + inliers on the shortlist) is
the floor `fused` must not fall below. `--write` saves the selected composition's fit on all
photos of both datasets as the preset's shipped pair calibration.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lookalike.evaluation.evaluate import load_dataset
from lookalike.evaluation.fit_calibration import landmark_folds, same_landmark
from lookalike.evaluation.metrics import retrieval_metrics
from lookalike.evaluation.query_sets import load_query_sets, query_metrics
from lookalike.features.cache import open_cache
from lookalike.features.extract import extract_features
from lookalike.features.registry import get_method
from lookalike.retrieval.calibration import fit, method_spec
from lookalike.retrieval.pipeline import PAIR_EVIDENCE, Pipeline, ReferenceSet
from lookalike.retrieval.presets import PRESETS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RAW = ["similarity", "expanded", "inliers_h", "inliers_f", "inliers", "matches", "cells_a",
       "cells_b", "area_a", "area_b", "verified", "shortlisted"]


def raw_rows(pipeline: Pipeline, query, gallery: ReferenceSet) -> np.ndarray:
    """One row of RAW per gallery item."""
    ranking = pipeline.evidence(query, gallery)
    rows = []
    for j in range(len(gallery)):
        m = ranking.matches.get(j)
        counts = [m.inliers_h, m.inliers_f, m.inliers, m.matches, m.cells_a, m.cells_b,
                  m.area_a, m.area_b, float(m.verified), 1.0] if m else [0.0] * 10
        rows.append([ranking.similarities[j], ranking.expanded[j], *counts])
    return np.array(rows, np.float64)


def oxford_landmarks() -> dict[str, str]:
    """Oxford query -> the dev label of the same building (from the dev manifest's sources)."""
    found = {}
    with open(SHARED / "landmarks" / "manifest.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            parts = row["source_path"].split("/")
            if "db" in parts:
                found.setdefault(parts[parts.index("db") + 1], row["label"])
    return found


# -- compositions: evidence from raw rows ---------------------------------------------------------
def log_sim(v):
    return np.log(np.maximum(v, 0.0) + 1e-4)


def current(r):  # the evidence shipped before issue 24
    return np.stack([log_sim(r[:, 0]), log_sim(r[:, 1]), np.log1p(r[:, 2]), np.log1p(r[:, 3]),
                     np.sqrt(np.minimum(r[:, 6], r[:, 7])), r[:, 10]], 1)


def coverage(r):  # monotone: similarity, expansion, inliers, what they cover and how they spread
    return np.stack([log_sim(r[:, 0]), log_sim(r[:, 1]), np.log1p(r[:, 2]), np.log1p(r[:, 3]),
                     np.sqrt(np.minimum(r[:, 6], r[:, 7])), np.sqrt(r[:, 8]),
                     r[:, 4] / np.maximum(r[:, 5], 1.0)], 1)


def coverage_no_expansion(r):
    return np.delete(coverage(r), 1, axis=1)


def verification_only(r):
    return coverage(r)[:, 2:]


def verified_cover(r):  # inliers weighted by what they cover: few inliers on one window stay low
    inl = np.log1p(np.maximum(r[:, 2], r[:, 3]))
    return np.stack([log_sim(r[:, 0]), log_sim(r[:, 1]), inl,
                     inl * np.sqrt(r[:, 8]), np.sqrt(np.minimum(r[:, 6], r[:, 7]))], 1)


def with_matches(r):  # the shipped evidence and the tentative matches (monotone: never below)
    return np.c_[current(r), np.log1p(r[:, 5])]


def coverage_matches(r):
    return np.c_[coverage(r), np.log1p(r[:, 5])]


def few(r):  # few monotone features: similarity, expansion, inliers, matches, coverage
    return np.stack([log_sim(r[:, 0]), log_sim(r[:, 1]), np.log1p(r[:, 2]), np.log1p(r[:, 3]),
                     np.log1p(r[:, 5]), np.sqrt(r[:, 8])], 1)


COMPOSITIONS = {"current": current, "with_matches": with_matches, "few": few,
                "coverage_matches": coverage_matches, "coverage": coverage,
                "coverage_no_expansion": coverage_no_expansion,
                "verification_only": verification_only, "verified_cover": verified_cover}


def local_alone(r):
    """The local matcher's own ranking (`aliked`'s score_gallery): ASMK similarity, plus
    the inlier score on the shortlist."""
    return r[:, 0] + (r[:, 2] + r[:, 3]) * r[:, 11]


def held_out(features, data, folds, fit_on, monotone, c, weigh):
    """Held-out scores for both datasets' rows: a model per fold, fitted on the other folds'
    rows (of the datasets in `fit_on`)."""
    lx, lfold, ly, ox, ofold, oy = data
    fl, fo = features(lx.reshape(-1, lx.shape[-1])), features(ox.reshape(-1, ox.shape[-1]))
    fl = fl.reshape(*lx.shape[:2], -1)
    fo = fo.reshape(*ox.shape[:2], -1)
    n = lx.shape[0]
    off = ~np.eye(n, dtype=bool)
    lp, op = np.zeros(lx.shape[:2]), np.zeros(ox.shape[:2])
    for k in range(folds):
        xs, ys, ws = [], [], []
        if "landmarks" in fit_on:
            mask = (lfold != k)[:, None] & (lfold != k)[None, :] & off
            xs.append(fl[mask])
            ys.append(ly[mask])
            ws.append(np.full(mask.sum(), 1.0 / mask.sum() if weigh else 1.0))
        if "oxford" in fit_on:
            keep = ofold != k
            xs.append(fo[keep].reshape(-1, fo.shape[-1]))
            ys.append(oy[keep].reshape(-1))
            ws.append(np.full(ys[-1].size, 1.0 / ys[-1].size if weigh else 1.0))
        w = np.concatenate(ws)
        model = fit(np.concatenate(xs), np.concatenate(ys), [str(i) for i in range(fl.shape[-1])],
                    monotone=monotone, c=c, weights=w / w.mean())
        test = lfold == k
        lp[test] = model.logit(fl[test].reshape(-1, fl.shape[-1])).reshape(test.sum(), n)
        otest = ofold == k
        if otest.any():
            op[otest] = model.logit(fo[otest].reshape(-1, fo.shape[-1])).reshape(otest.sum(), -1)
    return lp, op


def scores_of(lp, op, llabels, orelevant):
    lm = retrieval_metrics(lp, llabels)
    per = [query_metrics(op[q], orelevant[q]) for q in range(len(op))]
    return {"landmarks_map": lm["map"], "landmarks_p1": lm["p_at_1"],
            "oxford_map": float(np.mean([p["ap"] for p in per])),
            "oxford_p1": float(np.mean([p["p_at_1"] for p in per])),
            "oxford_p5": float(np.mean([p["p_at_5"] for p in per])),
            "oxford_ap": [round(p["ap"], 3) for p in per]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--cache", default=None)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--raw", help="keep the ranked rows in this .npz (re-runs only re-fit)")
    parser.add_argument("--write", metavar="COMPOSITION",
                        help="save this composition (monotone, both datasets) as the preset's "
                             "pair calibration")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    cache = open_cache(args.cache)
    fused = get_method("fused", preset=args.preset)
    global_part, local_part = fused.parts()
    lpaths, llabels = load_dataset(SHARED / "landmarks" / "manifest.csv")
    sets = load_query_sets(SHARED / "oxford_hard")
    building = oxford_landmarks()
    started = time.perf_counter()
    if args.raw and Path(args.raw).is_file():
        saved = np.load(args.raw)
        lx, ox = saved["lx"], saved["ox"]
    else:
        opaths = [p for s in sets for p in [s.query, *s.gallery]]
        items = extract_features(fused, lpaths + opaths, cache, args.jobs, quiet=True)
        assert not items.errors, items.errors
        item_of = dict(zip(items.paths, items.features))
        pipeline = Pipeline(global_part, local_part, None, preset.shortlist, preset.expansion)
        gallery = ReferenceSet([item_of[p] for p in lpaths], global_part)
        lx = np.stack([raw_rows(pipeline, item_of[p], gallery) for p in lpaths])
        ox = np.stack([raw_rows(pipeline, item_of[s.query],
                                ReferenceSet([item_of[p] for p in s.gallery], global_part))
                       for s in sets])
        if args.raw:
            np.savez(args.raw, lx=lx, ox=ox)
    ranked = time.perf_counter() - started
    groups = list(llabels) + [building.get(s.name, s.name) for s in sets]
    fold_all = landmark_folds(groups)
    lfold, ofold = fold_all[:len(llabels)], fold_all[len(llabels):]
    ly = same_landmark(llabels)
    orelevant = np.array([s.relevant() for s in sets])
    data = (lx, lfold, ly, ox, ofold, orelevant)
    print(f"ranked in {ranked:.0f} s; folds: 5 of whole landmarks over both datasets")
    print("| composition | fit | fitted on | landmarks mAP | P@1 | oxford_hard mAP | P@1 | P@5 "
          "| oxford AP per query |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    alone = scores_of(np.array([local_alone(r) for r in lx]),
                      np.array([local_alone(r) for r in ox]), llabels, orelevant)
    print(f"| {local_part.name} alone (ASMK + inliers) | - | - | {alone['landmarks_map']:.3f} | "
          f"{alone['landmarks_p1']:.3f} | {alone['oxford_map']:.3f} | {alone['oxford_p1']:.3f} | "
          f"{alone['oxford_p5']:.3f} | {alone['oxford_ap']} |", flush=True)
    results = {}
    for name, features in COMPOSITIONS.items():
        for monotone in (False, True):
            for fit_on in (("landmarks",), ("landmarks", "oxford")):
                lp, op = held_out(features, data, 5, fit_on, monotone, 1.0, True)
                found = scores_of(lp, op, llabels, orelevant)
                results[(name, monotone, fit_on)] = found
                print(f"| {name} | {'monotone' if monotone else 'free'} | {' + '.join(fit_on)} "
                      f"| {found['landmarks_map']:.3f} | {found['landmarks_p1']:.3f} | "
                      f"{found['oxford_map']:.3f} | {found['oxford_p1']:.3f} | "
                      f"{found['oxford_p5']:.3f} | {found['oxford_ap']} |", flush=True)
    if args.write:
        write(args, preset, global_part, local_part, lx, ly, ox, orelevant, llabels,
              results[(args.write, True, ("landmarks", "oxford"))])


def write(args, preset, global_part, local_part, lx, ly, ox, orelevant, llabels, held) -> None:
    """Fit the composition on all rows of both datasets (weighed equally) and save it."""
    features = COMPOSITIONS[args.write]
    n = lx.shape[0]
    off = ~np.eye(n, dtype=bool)
    fl = features(lx[off])
    fo = features(ox.reshape(-1, ox.shape[-1]))
    w = np.r_[np.full(len(fl), 1.0 / len(fl)), np.full(len(fo), 1.0 / len(fo))]
    names = EVIDENCE_NAMES[args.write]
    info = {"trained_on": "landmarks/manifest.csv (all pairs) + oxford_hard (each query "
                          "against its positives and negatives), weighed equally",
            "preset": preset.name, "shortlist": preset.shortlist,
            "expansion": preset.expansion, "monotone": True,
            "held_out": {k: v for k, v in held.items() if k != "oxford_ap"},
            "selection": "benchmarks/carryover.py: 5 folds of whole landmarks across both "
                         "datasets"}
    model = fit(np.r_[fl, fo], np.r_[ly[off], orelevant.reshape(-1)], names,
                {"global": method_spec(global_part), "local": method_spec(local_part)},
                info=info, monotone=True, weights=w / w.mean())
    lp = model.logit(features(lx.reshape(-1, lx.shape[-1]))).reshape(n, n)
    op = model.logit(fo).reshape(ox.shape[:2])
    model.info["fitted"] = {k: v for k, v in scores_of(lp, op, llabels, orelevant).items()
                            if k != "oxford_ap"}
    model.save(preset.calibration_path("pairs"))
    print(json.dumps(model.info, indent=1))


EVIDENCE_NAMES = {
    "current": ["log_global", "log_global_expanded", "log_inliers_h", "log_inliers_f",
                "sqrt_spread", "verified"],
    "with_matches": ["log_global", "log_global_expanded", "log_inliers_h", "log_inliers_f",
                     "sqrt_spread", "verified", "log_matches"],
    "few": PAIR_EVIDENCE,  # selected: `lookalike calibrate` fits on it too
    "coverage": ["log_global", "log_global_expanded", "log_inliers_h", "log_inliers_f",
                 "sqrt_spread", "sqrt_area", "inlier_ratio"],
    "coverage_matches": ["log_global", "log_global_expanded", "log_inliers_h",
                         "log_inliers_f", "sqrt_spread", "sqrt_area", "inlier_ratio",
                         "log_matches"],
}

if __name__ == "__main__":
    main()
