"""`lookalike explain A B -o match.png`: show why two photos were judged the same (or not).

The picture puts both photos side by side, draws a line for every verified inlier (the matches
that fit one geometry), outlines the region those inliers cover in each photo (the part of the
scene the two photos share, i.e. the landmark) and, where a regions sidecar is given, the
hand-drawn regions. The caption gives the verdict, the inlier counts and, when the fused model
is available, the calibrated probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lookalike.imaging.drawing import INLIER, draw_lines, side_by_side
from lookalike.imaging.loading import ImageLoadError, LoadOptions, load_image
from lookalike.matching.geometry import Match
from lookalike.retrieval.focus import Region, read_regions, regions_for

HEIGHT = 640  # each photo is drawn at this height
REJECTED = (200, 60, 60)
REGION = (255, 200, 0)
HAND = (0, 160, 255)


@dataclass
class Explanation:
    result: Match
    probability: float | None
    picture: Image.Image


def _hull(points: np.ndarray) -> list[tuple[float, float]]:
    if len(points) < 3:
        return []
    hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2)
    return [(float(x), float(y)) for x, y in hull]


def draw(image_a: Image.Image, image_b: Image.Image, result: Match, scale_a: float,
         scale_b: float, caption: str, regions_a: list[Region] | None = None,
         regions_b: list[Region] | None = None, max_lines: int = 150) -> Image.Image:
    """Side-by-side picture; `scale_*` = feature pixels per original pixel of each photo."""
    canvas, fa, fb = side_by_side(image_a, image_b, HEIGHT, footer=40)
    offset = np.array([round(image_a.width * fa), 0.0])
    pen = ImageDraw.Draw(canvas)
    pa = result.points_a / scale_a * fa
    pb = result.points_b / scale_b * fb + offset
    for regions, factor, shift in ((regions_a, fa, 0), (regions_b, fb, offset[0])):
        for region in regions or []:
            points = [(x * factor + shift, y * factor) for x, y in region.points]
            pen.line(points + points[:1], fill=HAND, width=3)
    if result.verified:
        for points in (pa, pb):
            hull = _hull(points)
            if hull:
                pen.line(hull + hull[:1], fill=REGION, width=3)
    draw_lines(canvas, pa, pb, INLIER if result.verified else REJECTED, max_lines)
    pen.text((8, HEIGHT + 12), caption, fill="black", font=ImageFont.load_default())
    return canvas


def explain(path_a: str, path_b: str, regions_path: str | None = None, cache=None,
            with_probability: bool = True, preset: str | None = None) -> Explanation:
    """Verify two photos with the preset's local matcher and draw the result, through the
    same pipeline as `fused` and `identify` (so the counts agree with theirs); raises
    `ImageLoadError` for an unreadable photo."""
    from lookalike.features.cache import open_cache
    from lookalike.features.extract import extract_features
    from lookalike.features.registry import get_method

    method = get_method("fused", preset=preset or "default")
    features = extract_features(method, [path_a, path_b], open_cache(cache), quiet=True)
    if features.errors:
        path, reason = next(iter(features.errors.items()))
        raise ImageLoadError(path, reason)
    item_a, item_b = features.features
    probability = None
    if with_probability:
        probability, result = method.pipeline().pair_probability(item_a, item_b)
    else:
        result = method.parts()[1].match(item_a.local_feature, item_b.local_feature)
    verdict = "same landmark" if result.verified else "not verified"
    caption = (f"{verdict} ({method.parts()[1].name}): {result.inliers} inliers "
               f"({result.model_kind or 'no model'}), homography {result.inliers_h}, "
               f"fundamental {result.inliers_f}, {result.matches} tentative matches")
    if probability is not None:
        caption += f"; fused probability {probability:.2f}"
    regions = read_regions(regions_path) if regions_path else {}
    image_a = load_image(path_a, LoadOptions())
    image_b = load_image(path_b, LoadOptions())
    fa, fb = item_a.local_feature, item_b.local_feature
    picture = draw(image_a, image_b, result, float(fa["scale"][0]), float(fb["scale"][0]),
                   caption, regions_for(path_a, regions, regions_path),
                   regions_for(path_b, regions, regions_path))
    return Explanation(result, probability, picture)
