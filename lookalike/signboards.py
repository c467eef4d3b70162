"""Synthetic signboards drawn onto real photos: material for the OCR tests and benchmark.

No labelled photos of Japanese plaques come with the project, so the tests and
`benchmarks/ocr_bench.py` make them: a plate with a landmark's name (Japanese across or down,
or English), in Debian's Noto CJK fonts, at a chosen size, angle and contrast, pasted onto a
dev photo. Everything is driven by the `Sign` description, so a failure can be reproduced.
"""

from __future__ import annotations

import dataclasses
import os
import random

from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIRS = ("/usr/share/fonts/opentype/noto", "/usr/share/fonts/noto-cjk",
             "/usr/share/fonts/google-noto-cjk", "/usr/share/fonts/truetype/noto")
FONT_FILES = {"sans": "NotoSansCJK-Regular.ttc", "sans-bold": "NotoSansCJK-Bold.ttc",
              "serif": "NotoSerifCJK-Regular.ttc", "serif-bold": "NotoSerifCJK-Bold.ttc"}

# (text colour, plate colour) by contrast: luminance differences of roughly 200, 120 and 70.
PALETTES = {
    "high": [((20, 20, 20), (245, 245, 240)), ((250, 250, 250), (20, 60, 130)),
             ((15, 15, 15), (240, 210, 60))],
    "medium": [((70, 50, 30), (225, 210, 180)), ((235, 235, 225), (70, 110, 80)),
               ((60, 60, 70), (190, 195, 200))],
    "low": [((110, 95, 80), (200, 190, 170)), ((200, 200, 190), (115, 115, 105)),
            ((95, 100, 110), (170, 175, 180))],
}


class FontMissing(RuntimeError):
    """Noto CJK fonts are not installed (Debian: fonts-noto-cjk)."""


def font_path(style: str = "sans") -> str:
    for folder in FONT_DIRS:
        path = os.path.join(folder, FONT_FILES[style])
        if os.path.isfile(path):
            return path
    raise FontMissing(f"{FONT_FILES[style]} not found; install fonts-noto-cjk")


def font(size: int, style: str = "sans") -> ImageFont.FreeTypeFont:
    """A Noto CJK font, Japanese face (index 0 of the collection)."""
    return ImageFont.truetype(font_path(style), size, index=0)


@dataclasses.dataclass(frozen=True)
class Sign:
    """One signboard: its text, layout and look, and how much of the photo it covers."""

    text: str
    vertical: bool = False
    area: float = 0.03  # share of the photo's area covered by the plate
    angle: float = 0.0  # degrees, counter-clockwise
    contrast: str = "high"  # high | medium | low (see PALETTES)
    palette: int = 0
    style: str = "sans"
    position: tuple[float, float] = (0.5, 0.5)  # plate centre, as a share of width and height
    blur: float = 0.0  # Gaussian blur radius in plate pixels (focus, motion)


def draw_plate(sign: Sign, char_size: int) -> Image.Image:
    """The upright plate for `sign` with characters `char_size` pixels high."""
    ink, ground = PALETTES[sign.contrast][sign.palette % len(PALETTES[sign.contrast])]
    face = font(char_size, sign.style)
    pad = char_size // 2
    if sign.vertical:
        step = int(char_size * 1.08)
        width, height = char_size + 2 * pad, step * len(sign.text) + 2 * pad - (step - char_size)
        plate = Image.new("RGB", (width, height), ground)
        draw = ImageDraw.Draw(plate)
        for i, char in enumerate(sign.text):
            draw.text((width / 2, pad + i * step + char_size / 2), char, font=face, fill=ink,
                      anchor="mm")
    else:
        left, _top, right, _bottom = face.getbbox(sign.text, anchor="ls")
        width, height = right - left + 2 * pad, int(char_size * 1.25) + 2 * pad
        plate = Image.new("RGB", (width, height), ground)
        ImageDraw.Draw(plate).text((pad - left, pad + char_size), sign.text, font=face, fill=ink,
                                   anchor="ls")
    # A thin frame, as most plates have one.
    ImageDraw.Draw(plate).rectangle((2, 2, width - 3, height - 3), outline=ink,
                                    width=max(1, char_size // 16))
    if sign.blur > 0:
        plate = plate.filter(ImageFilter.GaussianBlur(sign.blur))
    return plate


def paste_sign(photo: Image.Image, sign: Sign) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """`photo` with `sign` drawn on it, and the plate's (left, top, right, bottom) box."""
    photo = photo.convert("RGB")
    probe = draw_plate(sign, 100)  # the plate's shape does not depend on its size
    target = sign.area * photo.width * photo.height
    scale = (target / (probe.width * probe.height)) ** 0.5
    plate = draw_plate(sign, max(8, int(100 * scale)))
    # Shrink a plate that would not fit (a long name on a narrow photo).
    fit = min(1.0, 0.95 * photo.width / plate.width, 0.95 * photo.height / plate.height)
    if fit < 1.0:
        plate = plate.resize((max(1, int(plate.width * fit)), max(1, int(plate.height * fit))),
                             Image.Resampling.LANCZOS)
    mask = Image.new("L", plate.size, 255)
    if sign.angle:
        plate = plate.rotate(sign.angle, Image.Resampling.BICUBIC, expand=True)
        mask = mask.rotate(sign.angle, Image.Resampling.BICUBIC, expand=True)
    cx = int(sign.position[0] * photo.width)
    cy = int(sign.position[1] * photo.height)
    left = min(max(0, cx - plate.width // 2), max(0, photo.width - plate.width))
    top = min(max(0, cy - plate.height // 2), max(0, photo.height - plate.height))
    out = photo.copy()
    out.paste(plate, (left, top), mask)
    return out, (left, top, left + plate.width, top + plate.height)


def random_sign(rng: random.Random, text: str, vertical: bool = False,
                min_area: float = 0.02, max_area: float = 0.06, max_angle: float = 12.0) -> Sign:
    """A sign with random size, angle, contrast, palette, font, position and slight blur."""
    contrast = rng.choice(list(PALETTES))
    return Sign(
        text=text, vertical=vertical, area=rng.uniform(min_area, max_area),
        angle=rng.uniform(-max_angle, max_angle), contrast=contrast,
        palette=rng.randrange(len(PALETTES[contrast])), style=rng.choice(list(FONT_FILES)),
        position=(rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)), blur=rng.choice([0, 0, 0.6, 1.0]),
    )
