"""The seam between `lookalike.ocr.reader` and its engines: what an engine reads, and how it fails.

`lookalike.ocr.reader` picks an engine by name and turns its readings into text lines; the engines
(`lookalike.ocr.scenetext`, `lookalike.ocr.tesseract`) import only this module, so neither side
imports the other.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

OCR_ENGINES = ("scene", "tesseract")
DEFAULT_ENGINE = "scene"

class OcrUnavailable(RuntimeError):
    """An OCR engine's models or program are missing; the message says what to install."""


@dataclasses.dataclass(frozen=True)
class Reading:
    """What an engine read in one text box, before normalisation: its best reading, the
    other readings (text, confidence) of the same box, and the box in photo pixels."""

    raw: str
    confidence: float  # 0..1, the engine's own scale
    box: tuple[int, int, int, int]  # left, top, right, bottom
    vertical: bool = False
    alternatives: tuple[tuple[str, float], ...] = ()


class OcrEngine(Protocol):
    """What `read_signs` needs from an engine."""

    name: str
    min_confidence: float  # default: readings with less are only doubtful
    max_regions: int  # default: most boxes read per photo

    def check_available(self) -> None:
        """Raise `OcrUnavailable` with an install hint unless the engine can read."""

    def read(self, rgb: np.ndarray, max_regions: int) -> list[Reading]:
        """Every text box's readings in an RGB uint8 array."""


def boxes_overlap(a: tuple, b: tuple) -> tuple[float, float, float]:
    """Intersection area and the two areas of (x0, y0, x1, y1) boxes."""
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter, (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
