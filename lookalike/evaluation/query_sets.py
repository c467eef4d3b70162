"""Query sets: each query photo ranks its own positives and hard negatives (`oxford_hard`).

Why a second protocol: the dev photos (`landmarks/`) ask every photo to find its landmark
among many unrelated ones, which a global descriptor does well. A landmark's users face
something else: the next college with the same Gothic windows, and photos where the landmark
fills a tenth of the frame. A query-set dataset holds, per query, the photos that show its
object (`positive`, with polygons of where the object is) and photos of *other* buildings
that retrieval systems confuse with it (`negative`), listed in `manifest.csv` with a `role`
column (query, positive, negative).

For each method, each query ranks its own positives and negatives; we report per-query AP,
mAP, P@1 (the expected share at the top, ties split) and P@5. For the pipeline (`fused`):

- **localisation**: each positive is verified against the query by the pipeline's local
  matcher; its region is the convex hull of the inliers in the positive (what a user is
  shown), compared with the union of the annotated polygons (IoU), and the share verified;
- **open set with one reference a landmark**: an index whose landmarks are the query photos
  alone; every positive should name its query, every negative should not name its own
  query, through the preset's identify calibration and threshold.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from lookalike.evaluation.compare import score_matrix
from lookalike.evaluation.metrics import average_precision, precision_at_1
from lookalike.features.cache import open_cache
from lookalike.features.extract import extract_features
from lookalike.features.registry import get_method, parse_methods

MANIFEST = "manifest.csv"
ROLES = ("query", "positive", "negative")


@dataclasses.dataclass
class QuerySet:
    """One query photo and the photos it must rank: positives first, then negatives."""

    name: str
    query: str
    positives: list[str]
    negatives: list[str]

    @property
    def gallery(self) -> list[str]:
        return self.positives + self.negatives

    def relevant(self) -> np.ndarray:
        return np.array([True] * len(self.positives) + [False] * len(self.negatives))


def manifest_of(dataset: str | os.PathLike) -> Path | None:
    """The dataset's manifest when it is a query-set dataset (a `role` column), else None."""
    path = Path(dataset)
    manifest = path / MANIFEST if path.is_dir() else path
    if not manifest.is_file() or manifest.suffix.lower() != ".csv":
        return None
    with open(manifest, newline="", encoding="utf-8-sig") as handle:
        fields = csv.DictReader(handle).fieldnames or []
    return manifest if {"query", "path", "role"} <= set(fields) else None


def load_query_sets(dataset: str | os.PathLike, only: Sequence[str] | None = None
                    ) -> list[QuerySet]:
    """The query sets of a manifest with `query,path,role` columns (paths relative to it),
    in manifest order; `only` keeps those queries."""
    from lookalike.evaluation.evaluate import DatasetError

    manifest = manifest_of(dataset)
    if manifest is None:
        raise DatasetError(f"{dataset}: no manifest.csv with query, path and role columns")
    sets: dict[str, QuerySet] = {}
    with open(manifest, newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            name, role = row["query"].strip(), row["role"].strip()
            if role not in ROLES:
                raise DatasetError(f"{manifest}: role {role!r} is not one of {', '.join(ROLES)}")
            found = sets.setdefault(name, QuerySet(name, "", [], []))
            path = str(manifest.parent / row["path"].strip())
            if role == "query":
                found.query = path
            else:
                (found.positives if role == "positive" else found.negatives).append(path)
    if only:
        unknown = sorted(set(only) - set(sets))
        if unknown:
            raise DatasetError(f"{dataset}: no query named {', '.join(unknown)}")
        sets = {name: sets[name] for name in only}
    for found in sets.values():
        if not found.query or not found.positives:
            raise DatasetError(f"{dataset}: query {found.name} needs a query photo and positives")
    return list(sets.values())


def polygons_of(photo: str) -> list[np.ndarray]:
    """The annotated object polygons beside a positive (`<photo>.json`), in its pixels."""
    path = Path(photo).with_suffix(".json")
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [np.asarray(polygon, np.float64).reshape(-1, 2)
            for polygon in data.get("query_object_polygons", []) if len(polygon) >= 3]


def region_iou(region: np.ndarray | None, polygons: Sequence[np.ndarray],
               size: tuple[int, int]) -> float:
    """IoU of a region (polygon, original pixels) with the union of `polygons`, on a raster
    of the photo (`size` = width, height, scaled so the long side is at most 1,000 cells)."""
    if region is None or len(region) < 3 or not polygons:
        return 0.0
    factor = min(1.0, 1000.0 / max(size))
    shape = (max(1, round(size[1] * factor)), max(1, round(size[0] * factor)))

    def mask(shapes):
        canvas = np.zeros(shape, np.uint8)
        cv2.fillPoly(canvas, [np.round(np.asarray(s) * factor).astype(np.int32) for s in shapes],
                     1)
        return canvas.astype(bool)

    found, truth = mask([region]), mask(polygons)
    union = (found | truth).sum()
    return float((found & truth).sum() / union) if union else 0.0


def hull(points: np.ndarray) -> np.ndarray | None:
    """The convex hull of points (N x 2), None under three."""
    points = np.asarray(points, np.float32).reshape(-1, 2)
    if len(points) < 3:
        return None
    return cv2.convexHull(points).reshape(-1, 2).astype(np.float64)


def query_metrics(scores: np.ndarray, relevant: np.ndarray) -> dict[str, float]:
    """AP, P@1 (ties split) and P@5 (the five best, ties broken against the method)."""
    scores = np.asarray(scores, np.float64)
    worst_first = np.lexsort((relevant, -scores))  # among ties, negatives first
    return {"ap": average_precision(scores, relevant),
            "p_at_1": precision_at_1(scores, relevant),
            "p_at_5": float(relevant[worst_first[:5]].mean())}


def summarise(per_query: dict[str, dict[str, float]]) -> dict[str, float]:
    rows = list(per_query.values())
    return {"map": float(np.mean([r["ap"] for r in rows])),
            "p_at_1": float(np.mean([r["p_at_1"] for r in rows])),
            "p_at_5": float(np.mean([r["p_at_5"] for r in rows]))}


def evaluate_query_sets(dataset: str | os.PathLike, methods: str | Sequence[str] = "all",
                        outdir: str | os.PathLike | None = None, cache: Any = None,
                        jobs: int = 1, quiet: bool = True, queries: Sequence[str] | None = None,
                        method_settings: dict[str, Any] | None = None,
                        use_text: bool = False) -> dict[str, Any]:
    """Every method on every query set (see the module's doc); with `outdir`, write
    results.md, results.json and per_query.csv. With `use_text`, the pipeline's open set is
    also measured with the text each query's photo teaches (`learned_text_log_odds`)."""
    sets = load_query_sets(dataset, queries)
    store = open_cache(cache)
    paths = list(dict.fromkeys(p for s in sets for p in [s.query, *s.gallery]))
    result: dict[str, Any] = {"dataset": str(dataset), "queries": [s.name for s in sets],
                              "methods": {}, "errors": {}}
    for name in parse_methods(methods):
        method = get_method(name, method_settings)
        asked = method.query_method()  # a query may be described in fewer views
        started = time.perf_counter()
        features = extract_features(method, paths, store, jobs, quiet)
        as_queries = features if asked is method else \
            extract_features(asked, paths, store, jobs, quiet)
        result["errors"].update(features.errors)
        result["errors"].update(as_queries.errors)
        feature_of = dict(zip(features.paths, features.features))
        query_of = {path: feature for path, feature in zip(as_queries.paths, as_queries.features)
                    if path in feature_of}
        key_of = dict(zip(features.paths, features.content_keys))
        per_query = {}
        for chosen in sets:
            gallery = [p for p in chosen.gallery if p in feature_of]
            if chosen.query not in query_of or not gallery:
                continue
            relevant = np.isin(gallery, chosen.positives)
            row = score_matrix(method, [query_of[chosen.query]],
                               [feature_of[p] for p in gallery], cache=store,
                               query_keys=[key_of[chosen.query]],
                               gallery_keys=[key_of[p] for p in gallery])[0]
            per_query[chosen.name] = query_metrics(row, relevant)
        entry: dict[str, Any] = {"label": method.label(), **summarise(per_query),
                                 "per_query": per_query,
                                 "seconds": round(time.perf_counter() - started, 1)}
        if name == "fused":
            entry["localisation"] = localisation(method, sets, query_of, feature_of)
            entry["open_set"] = open_set(method, sets, query_of, feature_of)
            if use_text:
                text, learned = learned_text_log_odds(sets, store, jobs, quiet)
                entry["open_set_text"] = {**open_set(method, sets, query_of, feature_of, text),
                                          "learned_text": learned,
                                          "raised": sum(any(v > 0 for v in added.values())
                                                        for added in text.values())}
        result["methods"][name] = entry
    if outdir is not None:
        write_results(result, Path(outdir))
    return result


def localisation(fused, sets: Sequence[QuerySet], queries: dict,
                 items: dict | None = None) -> dict[str, Any]:
    """Each positive verified against its query by the pipeline's local matcher: the share
    verified, and the IoU of the inliers' hull (in the positive) with the object's polygons,
    over the verified positives and over all (an unverified positive counts 0). `queries`:
    photos' items as queries, `items`: as gallery photos (the same unless a gallery photo is
    described in more views)."""
    items = queries if items is None else items
    from lookalike.gallery.identify import feature_scale

    pipeline = fused.pipeline()
    rows = []
    for chosen in sets:
        query = queries.get(chosen.query)
        for photo in chosen.positives:
            item = items.get(photo)
            if query is None or item is None:
                continue
            match = pipeline.match(query, item)
            scale = feature_scale(item.local_feature)
            local = item.local_feature
            with Image.open(photo) as image:  # the header only
                size = image.size
            region = hull(np.asarray(match.points_b, np.float64) / scale)
            polygons = polygons_of(photo)
            keypoints = np.asarray(local["keypoints"], np.float64)[:, :2] / scale
            rows.append({
                "query": chosen.name, "photo": os.path.basename(photo),
                "verified": bool(match.verified), "inliers": int(match.inliers),
                "iou": region_iou(region, polygons, size) if match.verified else 0.0,
                "region_iou": region_iou(region, polygons, size),  # verified or not
                "keypoints_inside": keypoints_inside(keypoints, polygons),
                "object_share": region_iou(np.array([[0, 0], [size[0], 0], [size[0], size[1]],
                                                     [0, size[1]]], np.float64), polygons, size),
            })
    verified = [r for r in rows if r["verified"]]
    regions = [r for r in rows if r["inliers"] >= 3]
    return {"positives": len(rows), "verified": len(verified),
            "with_region": len(regions),
            "mean_iou_with_region": float(np.mean([r["region_iou"] for r in regions]))
            if regions else 0.0,
            "verified_share": len(verified) / max(1, len(rows)),
            "mean_iou_verified": float(np.mean([r["iou"] for r in verified])) if verified
            else 0.0,
            "iou_at_least_0.5": sum(r["iou"] >= 0.5 for r in rows) / max(1, len(rows)),
            "mean_keypoints_inside": float(np.mean([r["keypoints_inside"] for r in rows]))
            if rows else 0.0,
            "rows": rows}


def keypoints_inside(points: np.ndarray, polygons: Sequence[np.ndarray]) -> int:
    """How many keypoints (original pixels) fall inside any of the polygons."""
    inside = np.zeros(len(points), bool)
    for polygon in polygons:
        contour = np.asarray(polygon, np.float32).reshape(-1, 1, 2)
        inside |= np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0
                            for x, y in points], bool) if len(points) else inside
    return int(inside.sum())


def open_set(fused, sets: Sequence[QuerySet], queries: dict, items: dict | None = None,
             text: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """An index of the query photos alone (one reference a landmark): each positive should
    name its query, each negative should not name its own query (the preset's identify
    calibration and threshold decide what is named). `queries`/`items`: photos' items as
    queries and as references (the same unless a reference is described in more views).
    `text` ({photo: {query: log-odds}}, `learned_text_log_odds`) is added to the candidates'
    logits as `identify --use-text` adds it."""
    from lookalike.retrieval.calibration import sigmoid

    items = queries if items is None else items
    from lookalike.retrieval.pipeline import ReferenceSet, landmark_candidates

    preset = fused._preset
    pipeline = fused.pipeline()
    global_part, local_part = fused.parts()
    calibration = preset.calibration("identify")
    calibration.check_methods(**{"global": global_part, "local": local_part})
    references = [s for s in sets if s.query in items]
    gallery = ReferenceSet([items[s.query] for s in references], pipeline.global_method)
    landmark_of = [s.name for s in references]
    rows = []
    for chosen in references:
        for role, photos in (("positive", chosen.positives), ("negative", chosen.negatives)):
            for photo in photos:
                if photo not in queries:
                    continue
                candidates = landmark_candidates(pipeline, queries[photo], gallery, landmark_of,
                                                 preset.verify_landmarks,
                                                 preset.verify_per_landmark)
                added = (text or {}).get(photo, {})
                scored = [(float(sigmoid(calibration.logit(np.array(
                    [c.evidence(calibration.features)]))[0] + added.get(c.landmark, 0.0))),
                           c.landmark) for c in candidates]
                probability, best = max(scored) if scored else (0.0, "")
                named = best if probability >= calibration.threshold else ""
                rows.append({"query": chosen.name, "photo": os.path.basename(photo),
                             "role": role, "named": named, "probability": probability})
    positives = [r for r in rows if r["role"] == "positive"]
    negatives = [r for r in rows if r["role"] == "negative"]
    return {
        "threshold": calibration.threshold,
        "positives_named": sum(r["named"] == r["query"] for r in positives)
        / max(1, len(positives)),
        "positives_wrong": sum(r["named"] not in ("", r["query"]) for r in positives)
        / max(1, len(positives)),
        "negatives_naming_own_query": sum(r["named"] == r["query"] for r in negatives)
        / max(1, len(negatives)),
        "negatives_naming_any": sum(bool(r["named"]) for r in negatives) / max(1, len(negatives)),
        "rows": rows,
    }


def learned_text_log_odds(sets: Sequence[QuerySet], cache: Any = None, jobs: int = 1,
                          quiet: bool = True) -> tuple[dict[str, dict[str, float]], dict]:
    """What each photo's text adds to each query in the open set with one reference a
    landmark: every photo read (OCR, through the cache), each query learning its photo's
    specific lines as `index build --read-text` learns a landmark with one reference
    (`lookalike.ocr.learned`). Returns ({photo: {query: log-odds}}, {query: phrases})."""
    from lookalike.gallery.learned_text import gallery_phrases
    from lookalike.ocr.learned import gallery_learned_log_odds, learn_phrases, reference_lines

    paths = list(dict.fromkeys(p for s in sets for p in [s.query, *s.gallery]))
    found = extract_features(get_method("text"), paths, cache, jobs, quiet)
    feature_of = dict(zip(found.paths, found.features))
    learned = {s.name: learn_phrases([reference_lines(feature_of.get(s.query))]) for s in sets}
    phrases = gallery_phrases({name: ([], found) for name, found in learned.items()})
    return ({photo: gallery_learned_log_odds(feature_of.get(photo), phrases)
             for s in sets for photo in s.gallery}, learned)


def markdown(result: dict[str, Any]) -> str:
    """The tables of a query-set evaluation (methods; the pipeline's localisation, open set)."""
    lines = ["| method | mAP | P@1 | P@5 | seconds |", "|---|---:|---:|---:|---:|"]
    for entry in result["methods"].values():
        lines.append(f"| {entry['label']} | {entry['map']:.3f} | {entry['p_at_1']:.3f} | "
                     f"{entry['p_at_5']:.3f} | {entry['seconds']:.0f} |")
    fused = result["methods"].get("fused")
    if fused:
        loc, ops = fused["localisation"], fused["open_set"]
        lines += ["", "| pipeline | positives verified | IoU (verified) | IoU >= 0.5 | "
                  "keypoints in object | any inliers: IoU | named (open set) | wrong landmark | negatives naming "
                  "own query | negatives naming any |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {fused['label']} | {loc['verified']}/{loc['positives']} "
                  f"({loc['verified_share']:.0%}) | {loc['mean_iou_verified']:.2f} | "
                  f"{loc['iou_at_least_0.5']:.0%} | {loc['mean_keypoints_inside']:.0f} | "
                  f"{loc['with_region']}: {loc['mean_iou_with_region']:.2f} | "
                  f"{ops['positives_named']:.0%} | {ops['positives_wrong']:.0%} | "
                  f"{ops['negatives_naming_own_query']:.1%} | {ops['negatives_naming_any']:.0%} |"]
        if "open_set_text" in fused:
            text = fused["open_set_text"]
            lines += ["", "| open set, one reference a landmark | named | wrong landmark | "
                      "negatives naming own query | negatives naming any |",
                      "|---|---:|---:|---:|---:|"]
            for label, row in (("image", ops), ("image + learned text", text)):
                lines.append(f"| {label} | {row['positives_named']:.0%} | "
                             f"{row['positives_wrong']:.0%} | "
                             f"{row['negatives_naming_own_query']:.1%} | "
                             f"{row['negatives_naming_any']:.0%} |")
            lines.append(f"\nqueries that learned text: "
                         f"{sum(bool(p) for p in text['learned_text'].values())} of "
                         f"{len(text['learned_text'])}; photos whose text raised a query: "
                         f"{text['raised']}")
    names = result["queries"]
    lines += ["", "| AP per query | " + " | ".join(names) + " |",
              "|---|" + "---:|" * len(names)]
    for entry in result["methods"].values():
        cells = [entry["per_query"].get(n, {}).get("ap", math.nan) for n in names]
        lines.append(f"| {entry['label']} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return "\n".join(lines)


def write_results(result: dict[str, Any], outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (outdir / "results.md").write_text(markdown(result) + "\n", encoding="utf-8")
    with open(outdir / "per_query.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "query", "ap", "p_at_1", "p_at_5"])
        for name, entry in result["methods"].items():
            for query, m in entry["per_query"].items():
                writer.writerow([name, query, f"{m['ap']:.4f}", f"{m['p_at_1']:.4f}",
                                 f"{m['p_at_5']:.4f}"])
