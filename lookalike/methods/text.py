"""The `text` method: what a photo's signboards say (`lookalike.ocr`), scored by the bigram
similarity of two photos' texts. The evidence it gives about landmarks is
`lookalike.ocr.evidence`."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
from PIL import Image

from lookalike.features.contract import LOCAL, Method
from lookalike.features.registry import register
from lookalike.imaging.loading import LoadOptions
from lookalike.ocr import reader as ocr
from lookalike.ocr.evidence import (
    engine_model,
    feature_text,
    make_feature,
    text_calibration,
    text_similarity,
)


@register
@dataclasses.dataclass
class TextMethod(Method):
    name: ClassVar[str] = "text"
    description: ClassVar[str] = ("signboard text (PP-OCR scene text, or Tesseract); "
                                  "score = bigram Dice")
    feature_kind: ClassVar[str] = LOCAL
    order: ClassVar[int] = 70
    version: ClassVar[int] = 4
    # About 0.3-0.5 s per photo: too slow to join `--methods all` on 2 cores; ask for it by name.
    in_all: ClassVar[bool] = False
    max_side: int = ocr.MAX_SIDE
    engine: str = ocr.DEFAULT_ENGINE  # scene | tesseract
    min_confidence: float | None = None  # None: the engine's own (see ocr.read_signs)

    def __post_init__(self) -> None:
        ocr.check_engine_name(self.engine)
        engine_model(text_calibration(), self.engine)  # an engine never fitted fails here

    def load_options(self) -> LoadOptions:
        return LoadOptions(gray=self.gray, min_long_side=self.max_side)

    def extract(self, image: Image.Image) -> dict[str, np.ndarray]:
        lines, doubtful = ocr.read_signs(image, max_side=self.max_side,
                                         min_confidence=self.min_confidence, engine=self.engine)
        return make_feature(lines, doubtful, self.engine)

    def score(self, a: dict, b: dict) -> float:
        return text_similarity(feature_text(a), feature_text(b))
