"""Landmark focus: which keypoints of a reference photo belong to the landmark.

Why: a reference photo shows the landmark *and* a street, a crowd, trees and sky. Matches on
those parts say nothing about the landmark. Two ways to tell them apart:

- From several references of one landmark: what they have in common is the landmark. A
  keypoint that is a verified inlier against at least one *other* reference (so it is seen in
  two or more photos) gets weight 1; the rest get `outside` (default 0.25), so they still
  count, but less.
- From a sidecar JSON of regions drawn by hand, for users who want to mark the statue:
  keypoints inside a box or polygon get weight 1, the rest `outside` (default 0).

The weights go to `verify_pair(..., weights_a=...)`, which counts each inlier of the reference
by its weight. Sidecar format (coordinates in the photo's original pixels; keys are file
names or paths relative to the JSON):

    {"front.jpg": [{"box": [x0, y0, x1, y1]}, {"polygon": [[x, y], [x, y], [x, y]]}]}
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lookalike.errors import InputError
from lookalike.matching.geometry import Match
from lookalike.methods.verified import Verified


class RegionError(InputError, ValueError):
    """A sidecar JSON that cannot be read as regions."""


@dataclass(frozen=True)
class Region:
    """A polygon in original image pixels (a box is stored as its four corners)."""

    points: tuple[tuple[float, float], ...]

    def contains(self, xy: np.ndarray) -> np.ndarray:
        polygon = np.array(self.points, np.float32).reshape(-1, 1, 2)
        return np.array([cv2.pointPolygonTest(polygon, (float(x), float(y)), False) >= 0
                         for x, y in xy], bool).reshape(len(xy))


def parse_region(item: dict, where: str) -> Region:
    if not isinstance(item, dict):
        raise RegionError(f"{where}: a region must be an object with 'box' or 'polygon'")
    if "box" in item:
        box = item["box"]
        if not (isinstance(box, list) and len(box) == 4):
            raise RegionError(f"{where}: 'box' must be [x0, y0, x1, y1]")
        x0, y0, x1, y1 = (float(v) for v in box)
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        return Region(((x0, y0), (x1, y0), (x1, y1), (x0, y1)))
    if "polygon" in item:
        polygon = item["polygon"]
        if not (isinstance(polygon, list) and len(polygon) >= 3
                and all(isinstance(p, list) and len(p) == 2 for p in polygon)):
            raise RegionError(f"{where}: 'polygon' must be a list of at least 3 [x, y] points")
        return Region(tuple((float(x), float(y)) for x, y in polygon))
    raise RegionError(f"{where}: a region needs 'box' or 'polygon'")


def read_regions(path: str | os.PathLike) -> dict[str, list[Region]]:
    """Regions per photo from a sidecar JSON; keys are resolved against the JSON's folder."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as error:
        raise RegionError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise RegionError(f"{path}: expected an object mapping photo names to region lists")
    regions: dict[str, list[Region]] = {}
    for name, items in data.items():
        items = items if isinstance(items, list) else [items]
        regions[name] = [parse_region(item, f"{path}: {name}") for item in items]
    return regions


def regions_for(photo: str | os.PathLike, regions: dict[str, list[Region]],
                sidecar: str | os.PathLike | None = None) -> list[Region] | None:
    """The regions drawn for `photo` (matched by relative path, then by file name), or None."""
    photo = Path(photo)
    if sidecar is not None:
        try:
            relative = photo.resolve().relative_to(Path(sidecar).resolve().parent).as_posix()
            if relative in regions:
                return regions[relative]
        except ValueError:
            pass
    return regions.get(str(photo), regions.get(photo.name))


def region_weights(feature: dict, regions: Sequence[Region] | None,
                   outside: float = 0.0) -> np.ndarray:
    """Weight 1 for keypoints inside any region (original pixels), `outside` for the rest."""
    count = len(feature["keypoints"])
    if not regions:
        return np.ones(count)
    scale = float(feature["scale"][0]) if "scale" in feature else 1.0
    xy = feature["keypoints"][:, :2] / scale
    inside = np.zeros(count, bool)
    for region in regions:
        inside |= region.contains(xy)
    return np.where(inside, 1.0, outside)


def landmark_weights(features: Sequence[dict], verifier: Verified | None = None,
                     outside: float = 0.25) -> list[np.ndarray]:
    """Per reference, weight 1 for keypoints verified in another reference, `outside` otherwise.

    Costs one verification per pair of references. A reference that verifies with no other
    one keeps weight 1 everywhere: with nothing in common there is nothing to focus on.
    """
    verifier = verifier or Verified()
    seen = [np.zeros(len(f["keypoints"]), bool) for f in features]
    for i in range(len(features)):
        for j in range(i + 1, len(features)):
            result: Match = verifier.verify(features[i], features[j])
            if result.verified:
                seen[i][result.index_a] = True
                seen[j][result.index_b] = True
    return [np.where(mask, 1.0, outside) if mask.any() else np.ones(len(mask)) for mask in seen]


def landmark_hull(feature: dict, weights: np.ndarray) -> np.ndarray:
    """Convex hull (original pixels) of the keypoints with full weight, for drawing; may be empty."""
    scale = float(feature["scale"][0]) if "scale" in feature else 1.0
    points = feature["keypoints"][weights >= 1.0, :2] / scale
    if len(points) < 3:
        return np.zeros((0, 2), np.float32)
    return cv2.convexHull(points.astype(np.float32)).reshape(-1, 2)
