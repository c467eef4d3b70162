"""The `tesseract` OCR engine: classic text detectors, then Tesseract on each cleaned region.

Tesseract reads a clean line well but does poorly on a whole photo, where a plaque is a small
part of a busy scene. So text regions are found first, by two classic detectors:

- plates: flat, roughly rectangular areas with holes (connected components of the non-edge
  pixels), i.e. signboards and plaques, found whatever their frame or surroundings;
- lines: edges, minus long straight lines (borders), closed along the reading direction into
  elongated blobs, at three scales - text without a plate around it.

Each region is cut out along its own angle (levelled), cleaned (ink touching the cut, frames,
specks removed), scaled so that its characters are a standard height, dark on light, and read
with Tesseract: `jpn` across (re-read with `eng` when Latin), and vertical text both as a
column with `jpn_vert` and with its characters set side by side and read by `jpn`, which is
far more reliable for a single column. A plate that reads with little confidence is read again
at other text sizes; the other readings are kept as alternatives, since each drops different
characters. Tesseract is driven through tesserocr, which keeps the models loaded in the
process: a line costs tens of milliseconds instead of a new Tesseract process per line.

It is the alternative to the default `scene` engine (lookalike.ocr.scenetext): a document reader,
it needs dark print on a plain ground, which engraved, bronze or shadowed plaques are not.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading

import cv2
import numpy as np
from PIL import Image

from lookalike.extras import optional_import
from lookalike.ocr.engine import OcrUnavailable, Reading, boxes_overlap

# -- tunables (measured with benchmarks/ocr_bench.py) -------------------------------------------
LEVELS = (1, 2, 4)  # detection scales: text 12..64 px high at each of them
MIN_THICK, MAX_THICK = 10, 64  # line height (px) accepted at one detection level
MIN_ELONGATION = 1.3  # a line is at least this much longer than high (two characters or more)
CLOSE_LENGTH = 17  # gap (px, per level) closed between characters of one line
BORDER_LENGTH = 80  # straight edges longer than this (px, per level) are plate borders, not text
MIN_FILL = 0.3  # share of a candidate's box covered by its blob
PLATE_SIDE = 800  # plates are looked for at about this size
PLATE_MIN_AREA, PLATE_MAX_AREA = 0.004, 0.4  # plate size as a share of the photo
MAX_PLATES = 6  # plates read per photo (each orientation counts)
MAX_REGIONS = 24  # most text-like candidates read per photo (bounds the time per photo)
PLATE_LINE_HEIGHTS = (48, 32, 64)  # text sizes a plate is read at ...
RETRY_BELOW = 0.9  # ... unless the first reading is at least this confident
LINE_HEIGHT = 48  # candidates are scaled so that their text is this high for Tesseract
MAX_LINE_CHARS, MAX_LINES = 48, 8  # a region holding more (in character heights) is not a sign
SPECK = 0.15  # ink smaller than this share of the character height is noise

LANG_ACROSS, LANG_DOWN, LANG_LATIN = "jpn", "jpn_vert", "eng"
TESSDATA_DIRS = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
    "/opt/homebrew/share/tessdata",
)


@dataclasses.dataclass(frozen=True)
class Region:
    """A candidate text line: a rotated rectangle in full-image pixels."""

    center: tuple[float, float]
    length: float  # along the reading direction
    thickness: float  # across it
    angle: float  # degrees, rotation of the reading direction from the x axis (or y for down)
    vertical: bool
    score: float
    plate: bool = False  # a whole plate: may hold several lines, and a frame

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        w, h = (self.thickness, self.length) if self.vertical else (self.length, self.thickness)
        corners = cv2.boxPoints((self.center, (w, h), self.angle))
        x0, y0 = np.floor(corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
        return max(0, x0), max(0, y0), min(width, x1), min(height, y1)



# -- Tesseract --------------------------------------------------------------------------------------
def tessdata_dir() -> str:
    """The folder holding jpn/jpn_vert/eng.traineddata: $TESSDATA_PREFIX or a usual place."""
    places = [os.environ.get("TESSDATA_PREFIX", ""), *list(TESSDATA_DIRS)]
    for place in places:
        for folder in (place, os.path.join(place, "tessdata")):
            if folder and os.path.isfile(os.path.join(folder, f"{LANG_ACROSS}.traineddata")):
                return folder
    raise OcrUnavailable(
        "Tesseract's Japanese language data was not found; install the Debian packages "
        "tesseract-ocr-jpn tesseract-ocr-jpn-vert tesseract-ocr-eng (`make system`) or set "
        "TESSDATA_PREFIX to the folder holding jpn.traineddata"
    )


class _Engines:
    """One tesserocr API per model, per process (they are neither fork- nor thread-safe)."""

    def __init__(self) -> None:
        self.pid = -1
        self.apis: dict[str, object] = {}
        self.lock = threading.Lock()

    def api(self, model: str):
        if self.pid != os.getpid():
            self.pid, self.apis = os.getpid(), {}
        if model not in self.apis:
            tesserocr = optional_import("tesserocr", "ocr", OcrUnavailable)
            folder = tessdata_dir()
            if not os.path.isfile(os.path.join(folder, f"{model}.traineddata")):
                raise OcrUnavailable(f"no {model}.traineddata in {folder}; install "
                                     f"tesseract-ocr-{model.replace('_', '-')}")
            api = tesserocr.PyTessBaseAPI(path=folder, lang=model, oem=tesserocr.OEM.LSTM_ONLY)
            api.SetVariable("user_defined_dpi", "300")  # crops carry no resolution; stop guessing
            self.apis[model] = api
        return self.apis[model]

    def read(self, model: str, image: Image.Image, block: bool = False) -> tuple[str, float]:
        """Text and mean word confidence (0..1) of one prepared image: a single line, or a
        block of lines (always a block for vertical text)."""
        import tesserocr

        if model == LANG_DOWN:
            psm = tesserocr.PSM.SINGLE_BLOCK_VERT_TEXT
        else:
            psm = tesserocr.PSM.SINGLE_BLOCK if block else tesserocr.PSM.SINGLE_LINE
        with self.lock:
            api = self.api(model)
            api.SetPageSegMode(psm)
            api.SetImage(image)
            api.Recognize()
            words = []
            iterator = api.GetIterator()
            level = tesserocr.RIL.WORD
            if iterator is not None:
                for word in tesserocr.iterate_level(iterator, level):
                    try:
                        text = word.GetUTF8Text(level)
                    except RuntimeError:  # an empty word
                        continue
                    if text and text.strip():
                        words.append((text.strip(), word.Confidence(level) / 100.0))
        # Every word is kept: dropping doubtful ones loses real characters of a name more often
        # than it removes junk (which name matching tolerates anyway).
        if not words:
            return "", 0.0
        return " ".join(text for text, _ in words), float(np.mean([conf for _, conf in words]))


_ENGINES = _Engines()


def check_available() -> None:
    """Raise `OcrUnavailable` with an install hint unless all three models can be loaded."""
    for lang in (LANG_ACROSS, LANG_DOWN, LANG_LATIN):
        _ENGINES.api(lang)


# -- detection ----------------------------------------------------------------------------------------
def _level_candidates(gray: np.ndarray, level: int) -> list[Region]:
    height, width = gray.shape
    small = gray if level == 1 else cv2.resize(
        gray, (width // level, height // level), interpolation=cv2.INTER_AREA)
    ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    gradient = cv2.morphologyEx(small, cv2.MORPH_GRADIENT, ellipse)
    threshold, edges = cv2.threshold(gradient, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    if threshold < 20:  # a flat image: Otsu would call noise an edge
        edges = np.where(gradient >= 20, 255, 0).astype(np.uint8)
    for kernel in ((BORDER_LENGTH, 1), (1, BORDER_LENGTH)):
        lines = cv2.morphologyEx(edges, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, kernel))
        edges = cv2.subtract(edges, cv2.dilate(lines, ellipse))
    regions = []
    for vertical in (False, True):
        kernel = (1, CLOSE_LENGTH) if vertical else (CLOSE_LENGTH, 1)
        closed = cv2.morphologyEx(edges, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, kernel))
        count, labels, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
        for index in range(1, count):
            x, y, w, h, area = stats[index]
            thick, long = (w, h) if vertical else (h, w)
            if not (MIN_THICK <= thick <= MAX_THICK * 1.5) or long < MIN_ELONGATION * thick:
                continue
            points = np.argwhere(labels[y:y + h, x:x + w] == index)[:, ::-1] + (x, y)
            (cx, cy), (rw, rh), angle = cv2.minAreaRect(points.astype(np.float32))
            # Express the rectangle as (length along reading direction, thickness, angle).
            if (rw < rh) != vertical:
                rw, rh, angle = rh, rw, angle - 90
            angle = (angle + 90) % 180 - 90
            if abs(angle) > 35:
                continue
            long, thick = (rh, rw) if vertical else (rw, rh)
            if not (MIN_THICK <= thick <= MAX_THICK) or long < MIN_ELONGATION * thick:
                continue
            fill = area / max(1.0, rw * rh)
            if fill < MIN_FILL:
                continue
            density = float(np.count_nonzero(edges[y:y + h, x:x + w])) / max(1, w * h)
            regions.append(Region(
                center=((cx + 0.5) * level - 0.5, (cy + 0.5) * level - 0.5),
                length=(long + 2) * level, thickness=(thick + 2) * level, angle=float(angle),
                vertical=vertical, score=density * fill,
            ))
    return regions


def _plate_candidates(gray: np.ndarray) -> list[Region]:
    """Plates: flat, roughly rectangular areas with holes (the text) - signboards and plaques.

    Found as connected components of the *non-edge* pixels, so a plate is found whatever its
    frame and however busy the scene around it; its text is read as a block.
    """
    height, width = gray.shape
    level = max(1, max(height, width) // PLATE_SIDE)
    small = gray if level == 1 else cv2.resize(
        gray, (width // level, height // level), interpolation=cv2.INTER_AREA)
    ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    gradient = cv2.morphologyEx(small, cv2.MORPH_GRADIENT, ellipse)
    threshold, _ = cv2.threshold(gradient, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    # A low edge threshold, and edges thickened, so that a faint or blurred frame still closes
    # the plate off from what is around it.
    edges = np.where(gradient >= max(0.5 * threshold, 12), 255, 0).astype(np.uint8)
    flat = 255 - cv2.dilate(edges, ellipse)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(flat, connectivity=4)
    total = small.shape[0] * small.shape[1]
    regions = []
    for index in range(1, count):
        x, y, w, h, area = stats[index]
        if not (PLATE_MIN_AREA * total <= w * h <= PLATE_MAX_AREA * total) or min(w, h) < 12:
            continue
        mask = (labels[y:y + h, x:x + w] == index).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        contour = max(contours, key=cv2.contourArea)
        filled = cv2.contourArea(contour)
        holes = 1.0 - area / max(1.0, filled)
        (cx, cy), (rw, rh), angle = cv2.minAreaRect(contour.astype(np.float32))
        if not (0.04 <= holes <= 0.6) or filled < 0.8 * rw * rh:
            continue
        for vertical in (False, True):
            if (rw < rh) != vertical:
                rw, rh, angle = rh, rw, angle - 90
            angle = (angle + 90) % 180 - 90
            long, thick = (rh, rw) if vertical else (rw, rh)
            if abs(angle) > 35 or long < 0.8 * thick:
                continue
            regions.append(Region(
                center=((cx + x + 0.5) * level - 0.5, (cy + y + 0.5) * level - 0.5),
                length=long * level, thickness=thick * level, angle=float(angle),
                vertical=vertical, score=1.0 + holes, plate=True,
            ))
    regions.sort(key=lambda r: -r.score)
    return regions[:MAX_PLATES]


def _iou(a: Region, b: Region) -> float:
    inter, area_a, area_b = boxes_overlap(a.box(10**6, 10**6), b.box(10**6, 10**6))
    return inter / max(1, area_a + area_b - inter)


def find_text_regions(gray: np.ndarray, max_regions: int = MAX_REGIONS) -> list[Region]:
    """Candidate text lines in an 8-bit grayscale image, most text-like first.

    A line found at two scales with nearly the same extent is kept once; regions that merely
    overlap (a line and the plate around it) are both kept, and `read_text` keeps the better read.
    """
    found: list[Region] = _plate_candidates(gray)
    for level in LEVELS:
        if min(gray.shape) // level >= 2 * MIN_THICK:
            found.extend(_level_candidates(gray, level))
    found.sort(key=lambda r: -r.score)
    kept: list[Region] = []
    for region in found:
        if all(region.vertical != other.vertical or _iou(region, other) < 0.7 for other in kept):
            kept.append(region)
        if len(kept) >= max_regions:
            break
    return kept


# -- reading ------------------------------------------------------------------------------------------
def _warp(gray: np.ndarray, region: Region, margin: float, scale: float) -> np.ndarray:
    """The region (plus `margin` px all round) cut out upright, its reading direction along x
    (across) or y (down), scaled by `scale`."""
    length, thick = region.length + 2 * margin, region.thickness + 2 * margin
    out_w, out_h = (thick, length) if region.vertical else (length, thick)
    out_w, out_h = max(8, round(out_w * scale)), max(8, round(out_h * scale))
    # Affine map: output pixel -> rotate back about the region centre -> source pixel.
    theta = math.radians(region.angle)
    cos, sin = math.cos(theta) / scale, math.sin(theta) / scale
    cx, cy = region.center
    matrix = np.array([[cos, -sin, cx - cos * out_w / 2 + sin * out_h / 2],
                       [sin, cos, cy - sin * out_w / 2 - cos * out_h / 2]], np.float64)
    return cv2.warpAffine(gray, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def prepare_line(gray: np.ndarray, region: Region, line_height: int = 0) -> Image.Image | None:
    """Cut a region out, level it, clean it and scale its characters to LINE_HEIGHT, dark text
    on a light ground; None when nothing like text is left in it.

    Cleaning removes the ink that is not this region's text: whatever touches the cut (the
    neighbouring clutter) and frames (a plate's border, an underline). The characters' height
    is then measured on what is left, since a region may be a whole plate around its text.
    """
    line_height = line_height or LINE_HEIGHT
    # A line is cut with some of its surroundings (the detector's box is tight); a plate exactly
    # (what is around it is clutter; the frame touching the cut is then removed).
    margin = -0.02 * region.thickness if region.plate else 0.3 * region.thickness
    scale = min(1.0, 4 * LINE_HEIGHT / max(1.0, region.thickness))  # bound the work on huge plates
    scale = max(scale, LINE_HEIGHT / max(1.0, region.thickness))
    line = _warp(gray, region, margin, scale)
    # Contrast, threshold and polarity come from the region's inside (the plate without what is
    # around it; the line without its neighbours), then apply to the whole cut.
    height, width = line.shape
    cut = int(margin * scale + 0.1 * region.thickness * scale)
    inner = line[min(cut, height // 3):max(height - cut, height * 2 // 3),
                 min(cut, width // 3):max(width - cut, width * 2 // 3)]
    low, high = np.percentile(inner, (2, 98))
    if high - low < 8:
        return None
    line = np.clip((line.astype(np.float32) - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)
    inner = np.clip((inner.astype(np.float32) - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)
    threshold, inner_binary = cv2.threshold(inner, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    binary = np.where(line > threshold, 255, 0).astype(np.uint8)
    if np.count_nonzero(inner_binary) < inner_binary.size / 2:  # the text is light: invert
        line, binary = 255 - line, 255 - binary
    ground = int(np.median(line[binary > 0])) if np.any(binary) else 255
    ink = 255 - binary
    if region.plate:  # a plate's frame, now level with the axes: long straight lines
        thick = region.thickness * scale
        along_kernel = max(3, int(min(2 * thick, 0.6 * max(ink.shape))))
        across_kernel = max(3, int(0.8 * thick))
        for length, across in ((along_kernel, False), (across_kernel, True)):
            horizontal = across == region.vertical
            shape = (length, 1) if horizontal else (1, length)
            lines = cv2.morphologyEx(ink, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, shape))
            ink = cv2.subtract(ink, cv2.dilate(lines, np.ones((3, 3), np.uint8)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    along_size, across_size = (height, width) if region.vertical else (width, height)
    keep = np.zeros(count, bool)
    for index in range(1, count):
        x, y, w, h, area = stats[index]
        along, across = (h, w) if region.vertical else (w, h)
        touches = x == 0 or y == 0 or x + w >= width or y + h >= height
        frame = along > 0.6 * along_size and (across > 0.5 * across_size or across < 0.1 * across_size)
        keep[index] = not touches and not frame and area >= 4
    if not keep.any():
        return None
    # Character height: the tallest components (parts of a kanji are smaller than the kanji).
    across_sizes = stats[:, 2] if region.vertical else stats[:, 3]
    char = float(np.percentile(across_sizes[keep], 90))
    # Specks (texture, noise) confuse Tesseract's layout analysis; dakuten are larger than this.
    keep &= np.maximum(stats[:, 2], stats[:, 3]) >= SPECK * char
    # A bar across the line at either end is what is left of a plate's frame, not a letter.
    along_start = stats[:, 1] if region.vertical else stats[:, 0]
    along_extent = stats[:, 3] if region.vertical else stats[:, 2]
    bars = keep & (along_extent < 0.15 * char) & (across_sizes > 0.8 * char)
    if keep.any():
        first, last = along_start[keep].min(), (along_start + along_extent)[keep].max()
        keep &= ~(bars & ((along_start == first) | (along_start + along_extent == last)))
    if not keep.any():
        return None
    line = line.copy()
    line[~keep[labels]] = ground
    kept = stats[keep]
    x0, y0 = kept[:, 0].min(), kept[:, 1].min()
    x1, y1 = (kept[:, 0] + kept[:, 2]).max(), (kept[:, 1] + kept[:, 3]).max()
    along_chars = ((y1 - y0) if region.vertical else (x1 - x0)) / max(1.0, char)
    across_chars = ((x1 - x0) if region.vertical else (y1 - y0)) / max(1.0, char)
    if along_chars > MAX_LINE_CHARS or across_chars > MAX_LINES:
        return None  # texture, not a sign: its "characters" are specks in a large area
    pad = int(0.3 * char) + 1
    line = line[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad]
    factor = line_height / max(4.0, char)
    size = (max(8, round(line.shape[1] * factor)), max(8, round(line.shape[0] * factor)))
    line = cv2.resize(line, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
    # Tesseract's layout analysis wants room around the text, vertical text more so.
    border = line_height * 3 // 2 if region.vertical else line_height // 2
    line = cv2.copyMakeBorder(line, border, border, border, border, cv2.BORDER_CONSTANT,
                              value=ground)
    return Image.fromarray(line)


def _read_region(gray: np.ndarray, region: Region) -> list[tuple[str, float]]:
    """All readings of one region, best first (by confidence). A plate is read at several text
    sizes unless a reading is confident, since Tesseract's layout analysis of a block is
    sensitive to it; a line is read once."""
    reads: list[tuple[str, float]] = []
    for line_height in PLATE_LINE_HEIGHTS if region.plate else (LINE_HEIGHT,):
        image = prepare_line(gray, region, line_height)
        if image is None:
            break
        reads.extend(_read_image(image, region))
        if max(confidence for _, confidence in reads) >= RETRY_BELOW:
            break
    return sorted(reads, key=lambda read: -read[1])


def _read_image(image: Image.Image, region: Region) -> list[tuple[str, float]]:
    """Readings of one prepared image. Vertical text is read twice: its characters laid out
    in a row and read across (Tesseract's `jpn` reads single lines far more reliably than its
    vertical layout analysis finds a single column), and as a column with `jpn_vert`."""
    if region.vertical:
        reads = []
        row = vertical_to_row(image)
        if row is not None:
            reads.append(_ENGINES.read(LANG_ACROSS, row))
        if not reads or reads[0][1] < RETRY_BELOW:
            reads.append(_ENGINES.read(LANG_DOWN, image))
        return reads
    text, confidence = _ENGINES.read(LANG_ACROSS, image, region.plate)
    letters = [char for char in text if char.isalnum()]
    if letters and sum(char.isascii() for char in letters) >= 0.6 * len(letters):
        latin, latin_confidence = _ENGINES.read(LANG_LATIN, image, region.plate)
        if latin_confidence > confidence:
            return [(latin, latin_confidence)]
    return [(text, confidence)]


def vertical_to_row(image: Image.Image) -> Image.Image | None:
    """A prepared single column of vertical text with its characters set side by side.

    Characters are cut at blank rows; pieces are merged while they stay no taller than the
    column is wide (kanji are square; 宀 over 呂 is one character). Japanese characters are
    upright in vertical writing, so the row reads as ordinary horizontal text.
    """
    pixels = np.asarray(image.convert("L"))
    _, ink = cv2.threshold(pixels, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    columns = np.flatnonzero(ink.any(axis=0))
    rows = ink.any(axis=1)
    if len(columns) == 0 or not rows.any():
        return None
    left, right = columns[0], columns[-1] + 1
    width = right - left
    pieces: list[list[int]] = []  # [top, bottom) of runs of inked rows
    for y in np.flatnonzero(rows):
        if pieces and y == pieces[-1][1]:
            pieces[-1][1] = y + 1
        else:
            pieces.append([y, y + 1])
    chars: list[list[int]] = []
    for top, bottom in pieces:
        if chars and bottom - chars[-1][0] <= 1.15 * width:
            chars[-1][1] = bottom
        else:
            chars.append([top, bottom])
    if len(chars) < 2:
        return None
    ground = int(np.median(pixels[ink == 0])) if np.any(ink == 0) else 255
    gap = max(2, width // 8)
    height = max(bottom - top for top, bottom in chars)
    border = LINE_HEIGHT // 2
    row = np.full((height + 2 * border, len(chars) * (width + gap) - gap + 2 * border), ground,
                  np.uint8)
    x = border
    for top, bottom in chars:
        y = border + (height - (bottom - top)) // 2
        row[y:y + bottom - top, x:x + width] = pixels[top:bottom, left:right]
        x += width + gap
    return Image.fromarray(row)


class TesseractEngine:
    """The `tesseract` OCR engine: `read` gives every candidate region's readings."""

    name = "tesseract"
    min_confidence = 0.55  # Tesseract's mean word confidence below which a line is only doubtful
    max_regions = MAX_REGIONS

    def check_available(self) -> None:
        check_available()

    def read(self, rgb: np.ndarray, max_regions: int) -> list[Reading]:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
        readings = []
        for region in find_text_regions(gray, max_regions):
            reads = _read_region(gray, region)
            if not reads:
                continue
            (raw, confidence), others = reads[0], reads[1:]
            readings.append(Reading(raw, confidence, region.box(gray.shape[1], gray.shape[0]),
                                    region.vertical, tuple(others)))
        return readings
