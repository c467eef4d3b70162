"""Synthetic signboards drawn onto real photos: material for the OCR tests and benchmarks.

No labelled photos of Japanese plaques come with the project, so the tests and
`benchmarks/ocr_bench.py` make them: a plate with a landmark's name (Japanese across or down,
or English), in Debian's Noto CJK fonts, at a chosen size, angle and contrast, pasted onto a
dev photo. `benchmarks/signboard_bench.py` draws harder ones (`hard_sign`): serif, bold,
engraved, embossed, bronze and weathered plates, DejaVu faces for English, turned up to 45
degrees away from the camera, half in shadow, partly hidden by a post or a branch, blurred,
the photo saved at JPEG quality 50. Everything is driven by the `Sign` description (its
textures by its `seed`), so a failure can be reproduced.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import random

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIRS = ("/usr/share/fonts/opentype/noto", "/usr/share/fonts/noto-cjk",
             "/usr/share/fonts/google-noto-cjk", "/usr/share/fonts/truetype/noto")
FONT_FILES = {"sans": "NotoSansCJK-Regular.ttc", "sans-bold": "NotoSansCJK-Bold.ttc",
              "serif": "NotoSerifCJK-Regular.ttc", "serif-bold": "NotoSerifCJK-Bold.ttc"}
LATIN_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu",
                   "/usr/share/fonts/TTF")
LATIN_FONT_FILES = {"sans": "DejaVuSans.ttf", "sans-bold": "DejaVuSans-Bold.ttf",
                    "serif": "DejaVuSerif.ttf", "serif-bold": "DejaVuSerif-Bold.ttf"}
FINISHES = ("print", "engraved", "embossed", "bronze", "weathered")

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


def font(size: int, style: str = "sans", family: str = "noto") -> ImageFont.FreeTypeFont:
    """A Noto CJK font, Japanese face (index 0 of the collection), or a DejaVu one."""
    if family == "dejavu":
        for folder in LATIN_FONT_DIRS:
            path = os.path.join(folder, LATIN_FONT_FILES[style])
            if os.path.isfile(path):
                return ImageFont.truetype(path, size)
        raise FontMissing(f"{LATIN_FONT_FILES[style]} not found; install fonts-dejavu-core")
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
    # The harder looks (benchmarks/signboard_bench.py); the defaults draw a plain printed plate.
    family: str = "noto"  # noto (CJK faces) | dejavu (Latin only)
    finish: str = "print"  # see FINISHES
    tilt: float = 0.0  # degrees the plate is turned away from the camera (about its upright axis)
    shadow: float = 0.0  # how much light a shadow over part of the plate takes away (0..1)
    occlusion: float = 0.0  # width of a post or branch in front of the text, in character heights
    jpeg: int = 0  # the whole photo is saved at this JPEG quality afterwards (0: not)
    seed: int = 0  # textures, shadow and occluder placement


def draw_plate(sign: Sign, char_size: int) -> Image.Image:
    """The upright plate for `sign` with characters `char_size` pixels high."""
    ink, ground = PALETTES[sign.contrast][sign.palette % len(PALETTES[sign.contrast])]
    mask = _text_mask(sign, char_size)
    if sign.finish == "print":
        plate = Image.composite(Image.new("RGB", mask.size, ink), Image.new("RGB", mask.size, ground),
                                mask)
    else:
        plate = Image.fromarray(_finish(sign, np.asarray(mask, np.float32) / 255.0, char_size))
    if sign.shadow > 0 or sign.occlusion > 0:
        plate = Image.fromarray(_shadow_and_occluder(sign, np.asarray(plate), char_size))
    if sign.blur > 0:
        plate = plate.filter(ImageFilter.GaussianBlur(sign.blur))
    return plate


def _text_mask(sign: Sign, char_size: int) -> Image.Image:
    """The plate's ink (text and a thin frame) as an 8-bit coverage mask."""
    face = font(char_size, sign.style, sign.family)
    pad = char_size // 2
    if sign.vertical:
        step = int(char_size * 1.08)
        width, height = char_size + 2 * pad, step * len(sign.text) + 2 * pad - (step - char_size)
        mask = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(mask)
        for i, char in enumerate(sign.text):
            draw.text((width / 2, pad + i * step + char_size / 2), char, font=face, fill=255,
                      anchor="mm")
    else:
        left, _top, right, _bottom = face.getbbox(sign.text, anchor="ls")
        width, height = right - left + 2 * pad, int(char_size * 1.25) + 2 * pad
        mask = Image.new("L", (width, height), 0)
        ImageDraw.Draw(mask).text((pad - left, pad + char_size), sign.text, font=face, fill=255,
                                  anchor="ls")
    # A thin frame, as most plates have one.
    ImageDraw.Draw(mask).rectangle((2, 2, width - 3, height - 3), outline=255,
                                   width=max(1, char_size // 16))
    return mask


def _noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth random texture in -1..1 with features about `cell` pixels across."""
    small = rng.uniform(-1, 1, (max(2, int(shape[0] / cell) + 2), max(2, int(shape[1] / cell) + 2)))
    return cv2.resize(small.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _relief(height: np.ndarray, char_size: int) -> np.ndarray:
    """Light falling from the top left on a height map: positive on slopes facing it."""
    height = cv2.GaussianBlur(height, (0, 0), max(0.6, char_size / 28))
    gy, gx = np.gradient(height)
    return -(gx + gy) * char_size / 6


def _finish(sign: Sign, ink: np.ndarray, char_size: int) -> np.ndarray:
    """The plate's pixels for a finish other than print: stone or metal, letters cut, raised,
    cast in bronze or faded, with a texture of their own."""
    rng = np.random.default_rng(sign.seed)
    shape = ink.shape
    grain = 0.6 * _noise(rng, shape, char_size / 2) + 0.4 * _noise(rng, shape, max(2, char_size / 12))
    ink_colour, ground = (np.array(c, np.float32) for c in
                          PALETTES[sign.contrast][sign.palette % len(PALETTES[sign.contrast])])
    if sign.finish == "bronze":
        ground = np.array((96, 70, 42), np.float32) * rng.uniform(0.8, 1.15)
        ink_colour = np.array((176, 140, 84), np.float32) * rng.uniform(0.85, 1.1)
        patina = np.clip(_noise(rng, shape, char_size * 0.8), 0, 1)[..., None]
        base = ground * (1 + 0.12 * grain[..., None])
        base = base * (1 - 0.6 * patina) + np.array((70, 120, 100), np.float32) * 0.6 * patina
        letters = ink_colour * (1 + 0.08 * grain[..., None])
        pixels = base * (1 - ink[..., None]) + letters * ink[..., None]
        pixels *= 1 + 0.5 * _relief(ink, char_size)[..., None]
    elif sign.finish in ("engraved", "embossed"):
        # Cut into or raised from stone or metal of the ground's colour: the letters differ
        # from the plate by their shading (and, cut, a little darker inside), not their colour.
        base = ground * (1 + 0.1 * grain[..., None])
        depth = -1.0 if sign.finish == "engraved" else 1.0
        darker = 0.25 if sign.finish == "engraved" else 0.05
        pixels = base * (1 - darker * ink[..., None])
        pixels *= 1 + 0.6 * _relief(depth * ink, char_size)[..., None]
    elif sign.finish == "weathered":
        # Printed, then faded in blotches and stained.
        fade = np.clip(0.75 + 0.5 * _noise(rng, shape, char_size / 1.5), 0.25, 1.0)
        stain = np.clip(_noise(rng, shape, char_size), 0, 1)[..., None] * 0.35
        alpha = (ink * fade)[..., None]
        pixels = ground * (1 + 0.08 * grain[..., None]) * (1 - alpha) + ink_colour * alpha
        pixels = pixels * (1 - stain) + np.array((90, 80, 60), np.float32) * stain
    else:
        raise ValueError(f"unknown finish {sign.finish!r}; choose one of {', '.join(FINISHES)}")
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _shadow_and_occluder(sign: Sign, pixels: np.ndarray, char_size: int) -> np.ndarray:
    """A soft-edged shadow over one side of the plate, and a post (across text) or a branch
    (down text) in front of it, `occlusion` character heights wide, somewhere on the text."""
    rng = np.random.default_rng(sign.seed + 1)
    height, width = pixels.shape[:2]
    out = pixels.astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if sign.shadow > 0:
        angle = rng.uniform(0, 2 * math.pi)
        # A boundary through the plate's middle third: part of the text stays lit.
        offset = rng.uniform(-0.15, 0.15) * max(width, height)
        side = (xx - width / 2) * math.cos(angle) + (yy - height / 2) * math.sin(angle) - offset
        edge = max(1.0, char_size / 3)
        dark = 1.0 / (1.0 + np.exp(-side / edge))
        out *= (1 - sign.shadow * dark)[..., None]
    if sign.occlusion > 0:
        bar = sign.occlusion * char_size
        pad = char_size / 2
        slant = math.radians(rng.uniform(-15, 15))
        colour = np.array(rng.choice([(45, 38, 30), (70, 72, 68), (95, 80, 60), (30, 45, 25)]),
                          np.float32)
        if sign.vertical:  # a branch across the column
            centre = rng.uniform(pad + char_size, height - pad - char_size)
            distance = np.abs((yy - centre) * math.cos(slant) - (xx - width / 2) * math.sin(slant))
        else:  # a post in front of the line
            centre = rng.uniform(pad + char_size, width - pad - char_size)
            distance = np.abs((xx - centre) * math.cos(slant) - (yy - height / 2) * math.sin(slant))
        cover = np.clip(bar / 2 - distance + 0.5, 0, 1)[..., None]
        texture = 1 + 0.15 * _noise(rng, (height, width), max(2, bar / 2))[..., None]
        out = out * (1 - cover) + colour * texture * cover
    return np.clip(out, 0, 255).astype(np.uint8)


def _turn(plate: Image.Image, tilt: float, angle: float) -> tuple[Image.Image, Image.Image]:
    """The plate and its mask as seen turned `tilt` degrees away about its upright axis (the
    far side smaller, a pinhole camera at twice the plate's size) and rotated by `angle`."""
    width, height = plate.size
    focal = 2.0 * max(width, height)
    theta = math.radians(tilt)
    corners = []
    for x, y in ((-width / 2, -height / 2), (width / 2, -height / 2), (width / 2, height / 2),
                 (-width / 2, height / 2)):
        depth = focal + x * math.sin(theta)
        px, py = focal * x * math.cos(theta) / depth, focal * y / depth
        rot = math.radians(-angle)
        corners.append((px * math.cos(rot) - py * math.sin(rot), px * math.sin(rot) + py * math.cos(rot)))
    corners = np.array(corners, np.float32)
    corners -= corners.min(axis=0)
    size = tuple(int(v) + 2 for v in np.ceil(corners.max(axis=0)))
    source = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    matrix = cv2.getPerspectiveTransform(source, corners + 1)
    warped = cv2.warpPerspective(np.asarray(plate), matrix, size, flags=cv2.INTER_CUBIC,
                                 borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpPerspective(np.full((height, width), 255, np.uint8), matrix, size,
                               flags=cv2.INTER_LINEAR)
    return Image.fromarray(warped), Image.fromarray(mask)


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
    if sign.tilt:
        plate, mask = _turn(plate, sign.tilt, sign.angle)
    else:
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
    if sign.jpeg:
        buffer = io.BytesIO()
        out.save(buffer, "JPEG", quality=sign.jpeg)
        out = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
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


# The harder benchmark's conditions: each case stresses one of them, on top of a plaque that is
# already small (0.5-2% of the photo), slightly rotated and turned, in any of four faces.
CONDITIONS = ("serif", "bold", "engraved", "embossed", "bronze", "weathered", "perspective",
              "small", "low-contrast", "blur", "jpeg50", "shadow", "occluded")


def hard_sign(rng: random.Random, text: str, condition: str, vertical: bool = False) -> Sign:
    """A sign for `benchmarks/signboard_bench.py`: 0.5-2% of the photo, +-8 degrees, turned
    up to 20 degrees, then `condition` (see CONDITIONS) pushed to its hard end."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; choose one of {', '.join(CONDITIONS)}")
    contrast = rng.choice(["high", "medium"])
    fields = dict(
        text=text, vertical=vertical, area=rng.uniform(0.005, 0.02),
        angle=rng.uniform(-8, 8), tilt=rng.choice([-1, 1]) * rng.uniform(0, 20),
        contrast=contrast, palette=rng.randrange(len(PALETTES[contrast])),
        style=rng.choice(list(FONT_FILES)),
        family="dejavu" if text.isascii() and rng.random() < 0.6 else "noto",
        position=(rng.uniform(0.2, 0.8), rng.uniform(0.25, 0.8)),
        blur=rng.choice([0.0, 0.0, 0.5]), seed=rng.randrange(1 << 30),
    )
    hard: dict = {
        "serif": dict(style=rng.choice(["serif", "serif-bold"])),
        "bold": dict(style=rng.choice(["sans-bold", "serif-bold"])),
        "engraved": dict(finish="engraved", contrast="medium"),
        "embossed": dict(finish="embossed", contrast="medium"),
        "bronze": dict(finish="bronze", style=rng.choice(["serif-bold", "sans-bold", "serif"])),
        "weathered": dict(finish="weathered"),
        "perspective": dict(tilt=rng.choice([-1, 1]) * rng.uniform(30, 45),
                            angle=rng.uniform(-12, 12), area=rng.uniform(0.01, 0.02)),
        "small": dict(area=rng.uniform(0.005, 0.007)),
        "low-contrast": dict(contrast="low"),
        "blur": dict(blur=rng.uniform(1.2, 2.0)),
        "jpeg50": dict(jpeg=50),
        "shadow": dict(shadow=rng.uniform(0.45, 0.7)),
        "occluded": dict(occlusion=rng.uniform(0.25, 0.5)),
    }[condition]
    fields.update(hard)
    if fields["contrast"] != contrast:
        fields["palette"] = rng.randrange(len(PALETTES[fields["contrast"]]))
    return Sign(**fields)
