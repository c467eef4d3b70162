"""Tentative matches to verified matches: what a local matcher returns, and how it is found.

Why one module: every local method (RootSIFT, ALIKED, DISK, XFeat) ends the same way. Its
tentative matches, from mutual nearest neighbours or a learned matcher, must fit one geometry:
a homography (facades, rotations, zoom) or a fundamental matrix (general 3-D views), both fitted
with OpenCV's USAC MAGSAC++. Chance matches of unrelated photos rarely agree on either. The
result is a `Match`: inlier counts, the inlier points in both photos, their spread, and the
numbers the calibration reads (`evidence`).

OpenCV can raise on degenerate input (a near-duplicate whose matches all lie on a line makes
`findFundamentalMat` fail with `!model.empty()`); such a fit counts as finding no model, so one
odd pair never ends a batch.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

GRID = 8  # inlier spread is counted on a GRID x GRID grid over each image
MIN_MATCHES = 12  # below this many tentative matches no geometry is fitted


@dataclasses.dataclass
class Match:
    """What verification found between photos A and B.

    `inliers_h`/`inliers_f`: matches that fit the homography / the fundamental matrix;
    `points_a`/`points_b` are the inliers of the reported `model` ("homography" A -> B or
    "fundamental") in each feature's pixel frame; `index_a`/`index_b` index them into each
    feature's keypoints; `cells_a`/`cells_b` count the grid cells they cover; `area_a`/
    `area_b` are the share of each image that their convex hull covers (a handful of inliers
    on one repeated window covers little; a real match of the same object covers it).
    """

    score: float
    inliers: int
    matches: int
    inliers_h: int
    inliers_f: int
    cells_a: int
    cells_b: int
    index_a: np.ndarray
    index_b: np.ndarray
    points_a: np.ndarray
    points_b: np.ndarray
    model: np.ndarray | None = None
    model_kind: str = ""
    verified: bool = False
    area_a: float = 0.0
    area_b: float = 0.0

    @property
    def spread(self) -> int:
        return min(self.cells_a, self.cells_b)

    @property
    def inlier_ratio(self) -> float:
        """Inliers of the reported model over the tentative matches."""
        return self.inliers / self.matches if self.matches else 0.0

    def evidence(self) -> dict[str, float]:
        """The pair's numbers for a calibration (log counts: their effect saturates)."""
        return {"log_inliers_h": math.log1p(self.inliers_h),
                "log_inliers_f": math.log1p(self.inliers_f),
                "log_matches": math.log1p(self.matches),
                "sqrt_spread": math.sqrt(self.spread), "verified": float(self.verified)}

    def swapped(self) -> Match:
        """The same verification seen from B to A: points, indices and model swap sides."""
        model = self.model
        if model is not None:
            model = np.linalg.inv(model) if self.model_kind == "homography" else model.T
        return dataclasses.replace(
            self, cells_a=self.cells_b, cells_b=self.cells_a, area_a=self.area_b,
            area_b=self.area_a, index_a=self.index_b,
            index_b=self.index_a, points_a=self.points_b, points_b=self.points_a, model=model)

    def in_original_pixels(self, scale_a: float, scale_b: float) -> Match:
        """The same match with its points in each photo's original pixels, given each
        feature's scale (feature pixels per original pixel)."""
        return dataclasses.replace(
            self, points_a=np.asarray(self.points_a, np.float32) / np.float32(scale_a),
            points_b=np.asarray(self.points_b, np.float32) / np.float32(scale_b))

    def counts(self) -> dict[str, float]:
        return {name: float(getattr(self, name))
                for name in ("score", "inliers", "matches", "inliers_h", "inliers_f",
                             "cells_a", "cells_b", "verified", "area_a", "area_b")}

    @classmethod
    def from_counts(cls, counts: dict[str, float]) -> Match:
        """A match rebuilt from `counts()` (a cache entry): numbers only, no points."""
        empty_points = np.zeros((0, 2), np.float32)
        empty_index = np.zeros(0, np.int64)
        return cls(float(counts["score"]), int(counts["inliers"]), int(counts["matches"]),
                   int(counts["inliers_h"]), int(counts["inliers_f"]),
                   int(counts.get("cells_a", 0)), int(counts.get("cells_b", 0)),
                   empty_index, empty_index, empty_points, empty_points,
                   verified=bool(counts["verified"]), area_a=float(counts.get("area_a", 0.0)),
                   area_b=float(counts.get("area_b", 0.0)))


def no_match(matches: int = 0) -> Match:
    empty = np.zeros((0,), np.int64)
    return Match(0.0, 0, matches, 0, 0, 0, 0, empty, empty,
                 np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32))


def mutual_nearest(a: np.ndarray, b: np.ndarray, ratio: float = 1.0,
                   groups_b: np.ndarray | None = None) -> np.ndarray:
    """(index in a, index in b) of mutual nearest neighbours whose distance ratio to the
    second-nearest is below `ratio` (1.0: no ratio test). Descriptors have unit norm, so one
    matrix product gives every distance. With `groups_b` (a group id per row of b: the views
    of one photo, which describe the same corners more than once), the second-nearest is
    sought within the nearest's group only."""
    if len(a) < 2 or len(b) < 2:
        return np.zeros((0, 2), np.int64)
    similarity = np.asarray(a, np.float32) @ np.asarray(b, np.float32).T
    rows = np.arange(len(a))
    best_b = similarity.argmax(axis=1)
    best_a = similarity.argmax(axis=0)
    keep = best_a[best_b] == rows
    if ratio < 1.0:
        top = similarity[rows, best_b].copy()
        similarity[rows, best_b] = -2.0
        if groups_b is not None and len(np.unique(groups_b)) > 1:
            groups_b = np.asarray(groups_b)
            order = np.argsort(groups_b, kind="stable")  # the views' rows are in order already
            if (order != np.arange(len(order))).any():
                similarity, best_in = similarity[:, order], np.argsort(order)[best_b]
            else:
                best_in = best_b
            grouped = groups_b[order]
            starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
            group_max = np.maximum.reduceat(similarity, starts, axis=1)  # rows x groups
            which = np.searchsorted(starts, best_in, side="right") - 1
            second = group_max[rows, which]
        else:
            second = similarity.max(axis=1)
        d1 = np.sqrt(np.maximum(2.0 - 2.0 * top, 0.0))
        d2 = np.sqrt(np.maximum(2.0 - 2.0 * second, 0.0))
        keep &= d1 < ratio * d2
    return np.stack([rows[keep], best_b[keep]], axis=1)


def occupied_cells(points: np.ndarray, size: np.ndarray, grid: int = GRID) -> int:
    """How many cells of a grid x grid partition of the image hold at least one point."""
    if len(points) == 0:
        return 0
    cells = np.floor(points / np.maximum(np.asarray(size, np.float64), 1.0) * grid)
    cells = np.clip(cells, 0, grid - 1).astype(np.int64)
    return len(np.unique(cells[:, 0] * grid + cells[:, 1]))


def hull_area(points: np.ndarray, size: np.ndarray) -> float:
    """The share of a `size` (width, height) image that the points' convex hull covers."""
    if len(points) < 3:
        return 0.0
    area = cv2.contourArea(cv2.convexHull(np.asarray(points, np.float32).reshape(-1, 1, 2)))
    return float(min(1.0, area / max(1.0, float(np.prod(np.asarray(size, np.float64)[:2])))))


def fit_model(kind: str, points_a: np.ndarray, points_b: np.ndarray, threshold: float,
              max_iters: int = 2000) -> tuple[np.ndarray | None, np.ndarray]:
    """(model, inlier mask) of a MAGSAC++ fit; (None, all False) when none can be fitted.

    OpenCV raises instead of answering "no model" on degenerate input: a photo against its
    own re-save (every match at the same position) fails inside USAC with `!model.empty()`,
    and too few distinct points with `sample_size <= points_size_`. Too few distinct points,
    an OpenCV error and a non-finite model all count as no model."""
    nothing = None, np.zeros(len(points_a), bool)
    needed = 4 if kind == "homography" else 8
    if len(points_a) < needed or min(len(np.unique(points_a, axis=0)),
                                     len(np.unique(points_b, axis=0))) < needed:
        return nothing
    try:
        if kind == "homography":
            model, mask = cv2.findHomography(points_a, points_b, cv2.USAC_MAGSAC, threshold,
                                             maxIters=max_iters, confidence=0.999)
        else:
            model, mask = cv2.findFundamentalMat(points_a, points_b, cv2.USAC_MAGSAC, threshold,
                                                 0.999, max_iters)
    except cv2.error:  # degenerate input (collinear or duplicate points): no model
        return nothing
    if model is None or mask is None or model.shape != (3, 3) or not np.isfinite(model).all():
        return nothing
    return model, mask.ravel().astype(bool)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Thresholds of geometric verification, in pixels of the feature frame, and the inlier
    counts above which a pair is verified (above what unrelated photos reach)."""

    threshold_h: float = 6.0
    threshold_f: float = 2.0
    min_inliers_h: int = 25
    min_inliers_f: int = 40
    max_iters: int = 2000


def verify_matches(pairs: np.ndarray, points_a: np.ndarray, points_b: np.ndarray,
                   size_a: np.ndarray, size_b: np.ndarray,
                   geometry: Geometry = Geometry()) -> Match:
    """Keep the tentative `pairs` (indices into points_a, points_b) that fit one geometry."""
    if len(pairs) < MIN_MATCHES:
        return no_match(len(pairs))
    pa = np.ascontiguousarray(points_a[pairs[:, 0], :2], np.float32)
    pb = np.ascontiguousarray(points_b[pairs[:, 1], :2], np.float32)
    homography, mask_h = fit_model("homography", pa, pb, geometry.threshold_h, geometry.max_iters)
    fundamental, mask_f = fit_model("fundamental", pa, pb, geometry.threshold_f,
                                    geometry.max_iters)
    inliers_h, inliers_f = int(mask_h.sum()), int(mask_f.sum())
    verified = inliers_h >= geometry.min_inliers_h or inliers_f >= geometry.min_inliers_f
    if homography is not None and inliers_h >= 0.5 * inliers_f:
        mask, model, kind = mask_h, homography, "homography"
    else:
        mask, model = mask_f, fundamental
        kind = "fundamental" if fundamental is not None else ""
    return Match(
        score=float(inliers_h + inliers_f), inliers=int(mask.sum()), matches=len(pairs),
        inliers_h=inliers_h, inliers_f=inliers_f,
        cells_a=occupied_cells(pa[mask], size_a), cells_b=occupied_cells(pb[mask], size_b),
        area_a=hull_area(pa[mask], size_a), area_b=hull_area(pb[mask], size_b),
        index_a=pairs[mask, 0], index_b=pairs[mask, 1], points_a=pa[mask], points_b=pb[mask],
        model=model, model_kind=kind, verified=bool(verified))
