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

from lookalike.imaging.loading import ImageLoadError, LoadOptions, load_image
from lookalike.matching.geometry import Match as VerifyResult
from lookalike.retrieval.focus import Region, read_regions, regions_for

HEIGHT = 640  # each photo is drawn at this height
INLIER = (40, 220, 60)
REGION = (255, 200, 0)
HAND = (0, 160, 255)


@dataclass
class Explanation:
    result: VerifyResult
    probability: float | None
    picture: Image.Image


def _scaled(image: Image.Image) -> tuple[Image.Image, float]:
    factor = HEIGHT / image.height
    size = (max(1, round(image.width * factor)), HEIGHT)
    return image.convert("RGB").resize(size, Image.Resampling.BILINEAR), factor


def _hull(points: np.ndarray) -> list[tuple[float, float]]:
    if len(points) < 3:
        return []
    hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2)
    return [(float(x), float(y)) for x, y in hull]


def draw(image_a: Image.Image, image_b: Image.Image, result: VerifyResult, scale_a: float,
         scale_b: float, caption: str, regions_a: list[Region] | None = None,
         regions_b: list[Region] | None = None, max_lines: int = 150) -> Image.Image:
    """Side-by-side picture; `scale_*` = feature pixels per original pixel of each photo."""
    left, fa = _scaled(image_a)
    right, fb = _scaled(image_b)
    canvas = Image.new("RGB", (left.width + right.width, HEIGHT + 40), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    pen = ImageDraw.Draw(canvas)
    pa = result.points_a / scale_a * fa
    pb = result.points_b / scale_b * fb + np.array([left.width, 0.0])
    for regions, factor, offset in ((regions_a, fa, 0), (regions_b, fb, left.width)):
        for region in regions or []:
            points = [(x * factor + offset, y * factor) for x, y in region.points]
            pen.line(points + points[:1], fill=HAND, width=3)
    if result.verified:
        for points in (pa, pb):
            hull = _hull(points)
            if hull:
                pen.line(hull + hull[:1], fill=REGION, width=3)
    step = max(1, len(pa) // max_lines)
    colour = INLIER if result.verified else (200, 60, 60)
    for (xa, ya), (xb, yb) in zip(pa[::step], pb[::step]):
        pen.line([(xa, ya), (xb, yb)], fill=colour, width=1)
        pen.ellipse([xa - 2, ya - 2, xa + 2, ya + 2], outline=colour)
        pen.ellipse([xb - 2, yb - 2, xb + 2, yb + 2], outline=colour)
    pen.text((8, HEIGHT + 12), caption, fill="black", font=ImageFont.load_default())
    return canvas


def explain(path_a: str, path_b: str, regions_path: str | None = None, cache=None,
            with_probability: bool = True, preset: str | None = None) -> Explanation:
    """Verify two photos with the preset's local matcher and draw the result, through the
    same pipeline as `fused` and `identify` (so the counts agree with theirs); raises
    `ImageLoadError` for an unreadable photo."""
    from lookalike.evaluation.compare import open_cache
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
