"""The picture of `lookalike explain A B -o match.png`: why two photos were judged the same.

The picture puts both photos side by side, draws a line for every verified inlier (the matches
that fit one geometry), outlines the region those inliers cover in each photo (the part of the
scene the two photos share, i.e. the landmark) and, where a regions sidecar is given, the
hand-drawn regions. The caption gives the verdict, the inlier counts and the probability. The
judgement itself is `verify`'s (`lookalike.gallery.pair`), so the two never disagree.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lookalike.imaging.drawing import INLIER, draw_lines, side_by_side
from lookalike.matching.geometry import Match
from lookalike.retrieval.focus import Region

HEIGHT = 640  # each photo is drawn at this height
REJECTED = (200, 60, 60)
REGION = (255, 200, 0)
HAND = (0, 160, 255)


def _hull(points: np.ndarray) -> list[tuple[float, float]]:
    if len(points) < 3:
        return []
    hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2)
    return [(float(x), float(y)) for x, y in hull]


def draw(image_a: Image.Image, image_b: Image.Image, result: Match | None, scale_a: float,
         scale_b: float, caption: str, regions_a: list[Region] | None = None,
         regions_b: list[Region] | None = None, max_lines: int = 150) -> Image.Image:
    """Side-by-side picture; `scale_*` = feature pixels per original pixel of each photo."""
    canvas, fa, fb = side_by_side(image_a, image_b, HEIGHT, footer=40)
    offset = np.array([round(image_a.width * fa), 0.0])
    pen = ImageDraw.Draw(canvas)
    empty = np.zeros((0, 2), np.float32)
    pa = (result.points_a if result is not None else empty) / scale_a * fa
    pb = (result.points_b if result is not None else empty) / scale_b * fb + offset
    for regions, factor, shift in ((regions_a, fa, 0), (regions_b, fb, offset[0])):
        for region in regions or []:
            points = [(x * factor + shift, y * factor) for x, y in region.points]
            pen.line(points + points[:1], fill=HAND, width=3)
    verified = result is not None and result.verified
    if verified:
        for points in (pa, pb):
            hull = _hull(points)
            if hull:
                pen.line(hull + hull[:1], fill=REGION, width=3)
    draw_lines(canvas, pa, pb, INLIER if verified else REJECTED, max_lines)
    pen.text((8, HEIGHT + 12), caption, fill="black", font=ImageFont.load_default())
    return canvas
