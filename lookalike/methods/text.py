"""The `text` method: what a photo's signboards say, as evidence that ignores the background.

Feature: the lines read by `lookalike.ocr.read_text` (normalised text, box, confidence,
direction) and their joined text. Two photos are compared by the character-bigram similarity
of their texts (a plaque read in both). A photo is compared with a landmark's names
(`landmark.json`: `ja`, `en`, ... and `aliases`) by fuzzy substring matching: the share of the
name found in the text, allowing for OCR's wrong, missing and extra characters. A name counts
as read when that share reaches `TEXT_MATCH_THRESHOLD`.

Fusion and identification call `text_evidence(feature, names)`: a score in 0..1, or None when
no legible text was read, so that a photo without text changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from lookalike import ocr
from lookalike.loading import LoadOptions
from lookalike.methods import register
from lookalike.methods.base import LOCAL, Method

# A name is recognised when at least this share of it is found in the text (1 - edits / length):
# a 5-character Japanese name survives one misread character, a 20-letter English name four.
TEXT_MATCH_THRESHOLD = 0.75
# Shorter names (after normalisation) are ignored: they would match by chance. Two kanji (雷門)
# are specific; two or three Latin letters are not.
MIN_NAME_CHARS_JAPANESE = 2
MIN_NAME_CHARS_LATIN = 4
# Keys of landmark.json that hold names besides language codes.
NAME_KEYS = ("name", "names", "aliases", "alias")


@dataclasses.dataclass(frozen=True)
class TextMatch:
    """The best match of a photo's text with one landmark's names."""

    score: float  # 0..1, share of the name found in the text
    name: str  # the name (as written in landmark.json) that matched best
    matched: bool  # score >= TEXT_MATCH_THRESHOLD


# -- features -------------------------------------------------------------------------------------
def make_feature(lines: Iterable[ocr.TextLine], doubtful: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """A `text` feature (dict of arrays, cacheable without pickle) from lines read by `ocr`
    (and the doubtful readings of `ocr.read_signs`, used only to look for names in)."""
    lines = list(lines)
    doubtful = list(doubtful)
    return {
        "text": np.array(ocr.joined_text(lines)),
        "lines": np.array([line.text for line in lines] or [""], dtype=str)[:len(lines)],
        "raw": np.array([line.raw for line in lines] or [""], dtype=str)[:len(lines)],
        "boxes": np.array([line.box for line in lines], np.int32).reshape(-1, 4),
        "confidence": np.array([line.confidence for line in lines], np.float32),
        "vertical": np.array([line.vertical for line in lines], np.uint8),
        # Other readings of the lines, and which line each belongs to.
        "alternatives": np.array([alt for line in lines for alt in line.alternatives] or [""],
                                 dtype=str)[:sum(len(line.alternatives) for line in lines)],
        "alternative_line": np.array([i for i, line in enumerate(lines) for _ in line.alternatives],
                                     np.int32),
        "doubtful": np.array(doubtful or [""], dtype=str)[:len(doubtful)],
    }


def feature_lines(feature: Mapping[str, np.ndarray]) -> list[ocr.TextLine]:
    """The lines of a `text` feature, back as `TextLine`s (e.g. for `ocr.draw_text_boxes`)."""
    alternatives: dict[int, list[str]] = {}
    for alt, index in zip(feature.get("alternatives", ()), feature.get("alternative_line", ())):
        alternatives.setdefault(int(index), []).append(str(alt))
    return [
        ocr.TextLine(str(text), str(raw), tuple(int(v) for v in box), float(conf), bool(vertical),
                     tuple(alternatives.get(i, ())))
        for i, (text, raw, box, conf, vertical) in enumerate(zip(
            feature["lines"], feature["raw"], feature["boxes"], feature["confidence"],
            feature["vertical"]))
    ]


def feature_text(feature: Mapping[str, np.ndarray]) -> str:
    return str(feature["text"])


# -- similarity -----------------------------------------------------------------------------------
def bigrams(text: str) -> Counter:
    """Character bigrams of the compacted text (a one-character text is its own 'bigram')."""
    text = ocr.compact(text)
    return Counter(text[i:i + 2] for i in range(max(1, len(text) - 1))) if text else Counter()


def text_similarity(a: str, b: str) -> float:
    """Dice coefficient of character bigrams, 0..1; 0 when either text is empty."""
    grams_a, grams_b = bigrams(a), bigrams(b)
    total = sum(grams_a.values()) + sum(grams_b.values())
    if not grams_a or not grams_b:
        return 0.0
    return 2.0 * sum((grams_a & grams_b).values()) / total


def name_similarity(text: str, name: str) -> float:
    """Share of `name` found in `text`: 1 - (fewest edits turning some substring of the text
    into the name) / name length, on compacted (normalised, space-free) strings.

    Approximate substring matching (Sellers' dynamic programme): extra text around the name
    costs nothing, each misread, missing or extra character inside it costs one edit.
    """
    name, text = ocr.compact(name), ocr.compact(text)
    if not usable_name(name) or not text:
        return 0.0
    # column[i] = fewest edits matching name[:i] to a substring of text ending at this position
    column = list(range(len(name) + 1))
    best = column[-1]
    for char in text:
        previous_diagonal, column[0] = column[0], 0
        for i in range(1, len(name) + 1):
            current = min(column[i] + 1, column[i - 1] + 1,
                          previous_diagonal + (name[i - 1] != char))
            previous_diagonal, column[i] = column[i], current
        best = min(best, column[-1])
    return max(0.0, 1.0 - best / len(name))


def usable_name(name: str) -> bool:
    """Whether a name is long enough to be evidence when read."""
    name = ocr.compact(name)
    return len(name) >= (MIN_NAME_CHARS_LATIN if name.isascii() else MIN_NAME_CHARS_JAPANESE)


# -- landmark names -------------------------------------------------------------------------------
def landmark_names(meta: Mapping[str, Any]) -> list[str]:
    """Every name a landmark.json gives: language codes (`ja`, `en`, ...), `name`, `names`
    (a string, list or {lang: name} mapping) and `aliases`; other keys (location, regions) are
    ignored."""
    names: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, str):
            if value.strip() and value not in names:
                names.append(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                add(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                add(item)

    for key, value in meta.items():
        is_language = isinstance(key, str) and 2 <= len(key) <= 3 and key.isalpha() and key.islower()
        if key in NAME_KEYS or (is_language and isinstance(value, str)):
            add(value)
    return names


def load_landmark_names(path: str | os.PathLike) -> list[str]:
    """Names from a landmark.json file (or the landmark.json inside a folder)."""
    if os.path.isdir(path):
        path = os.path.join(path, "landmark.json")
    with open(path, encoding="utf-8") as handle:
        return landmark_names(json.load(handle))


def match_names(feature: Mapping[str, np.ndarray] | str, names: Iterable[str]) -> TextMatch | None:
    """Best match of a photo's text (a `text` feature or a string) with a landmark's names;
    None when no legible text was read or the landmark has no usable name."""
    if isinstance(feature, str):
        texts = [feature]
    else:
        texts = [feature_text(feature)] + [str(alt) for alt in feature.get("alternatives", ())]
        texts += [str(text) for text in feature.get("doubtful", ())]
    texts = [text for text in texts if ocr.compact(text)]
    if not texts:
        return None
    scored = [(max(name_similarity(text, name) for text in texts), name) for name in names
              if usable_name(name)]
    if not scored:
        return None
    score, name = max(scored, key=lambda item: item[0])
    return TextMatch(score, name, score >= TEXT_MATCH_THRESHOLD)


def text_evidence(feature: Mapping[str, np.ndarray] | str, landmark_names: Iterable[str]) -> float | None:
    """How well the text read in a photo names the landmark: 0..1, >= TEXT_MATCH_THRESHOLD
    meaning the name was read; None when nothing was read at all (no line, no doubtful
    reading) or the landmark has no usable name - it must then change nothing.

    `feature` is the `text` method's feature (`extract_features(get_method("text"), ...)`)
    and `landmark_names` e.g. `landmark_names(json.load(open("landmark.json")))`. Use a score
    below the threshold as no evidence either way: a photo may show another sign nearby.
    """
    match = match_names(feature, landmark_names)
    return None if match is None else match.score


# -- the method -----------------------------------------------------------------------------------
@register
@dataclasses.dataclass
class TextMethod(Method):
    name: ClassVar[str] = "text"
    description: ClassVar[str] = "signboard text (Tesseract jpn/jpn_vert/eng); score = bigram Dice"
    feature_kind: ClassVar[str] = LOCAL
    order: ClassVar[int] = 70
    version: ClassVar[int] = 3
    # About 0.5-1 s per photo: too slow to join `--methods all` on 2 cores; ask for it by name.
    in_all: ClassVar[bool] = False
    max_side: int = ocr.MAX_SIDE
    min_confidence: float = ocr.MIN_CONFIDENCE

    def load_options(self) -> LoadOptions:
        return LoadOptions(gray=self.gray, min_long_side=self.max_side)

    def extract(self, image: Image.Image) -> dict[str, np.ndarray]:
        return make_feature(*ocr.read_signs(image, max_side=self.max_side,
                                            min_confidence=self.min_confidence))

    def score(self, a: dict, b: dict) -> float:
        return text_similarity(feature_text(a), feature_text(b))
