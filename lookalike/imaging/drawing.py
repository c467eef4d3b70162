"""Two photos side by side with their matched points joined by lines: the one drawing that
`identify --draw`, the web answer's picture and `explain` share."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

INLIER = (40, 220, 60)


def side_by_side(image_a: Image.Image, image_b: Image.Image, height: int, footer: int = 0
                 ) -> tuple[Image.Image, float, float]:
    """Both photos at `height` pixels on one white canvas (with `footer` pixels below for a
    caption), and each photo's drawing scale (canvas pixels per photo pixel)."""
    scale_a, scale_b = height / image_a.height, height / image_b.height
    left = image_a.convert("RGB").resize((max(1, round(image_a.width * scale_a)), height),
                                         Image.Resampling.BILINEAR)
    right = image_b.convert("RGB").resize((max(1, round(image_b.width * scale_b)), height),
                                          Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (left.width + right.width, height + footer), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    return canvas, scale_a, scale_b


def draw_lines(canvas: Image.Image, points_a: np.ndarray, points_b: np.ndarray,
               colour: tuple[int, int, int] = INLIER, max_lines: int = 300) -> None:
    """Join each canvas point of the left photo to its match in the right one (at most
    `max_lines`, evenly picked), with a small circle at both ends."""
    pen = ImageDraw.Draw(canvas)
    step = max(1, len(points_a) // max(1, max_lines))
    for (xa, ya), (xb, yb) in zip(points_a[::step], points_b[::step]):
        pen.line([(xa, ya), (xb, yb)], fill=colour, width=1)
        pen.ellipse([xa - 2, ya - 2, xa + 2, ya + 2], outline=colour)
        pen.ellipse([xb - 2, yb - 2, xb + 2, yb + 2], outline=colour)
