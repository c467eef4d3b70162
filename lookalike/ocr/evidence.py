"""Signboard text as evidence that ignores the background: readings, text matched with text
and with landmark names, calibrated per OCR engine (the `text` method's features).

Feature: the lines read by `lookalike.ocr.reader.read_signs` with the chosen engine (`scene` by
default, or `tesseract`): normalised text, box, confidence, direction, other readings and the
doubtful readings, with their confidences. Two photos are compared by the character-bigram
similarity of their texts (a plaque read in both). A photo is compared with a landmark's names
(`landmark.json`: `ja`, `en`, ... and `aliases`) by fuzzy substring matching: the share of the
name found in a reading (`name_similarity`), allowing for OCR's wrong, missing and extra
characters.

Neither similarity nor confidence alone is evidence: a whole name read at confidence 0.49 is
good evidence, texture read as kana at 0.8 spells nothing, and most of a name read with
certainty is another word. So `text_evidence(feature, names)` is a calibrated probability that
the name really is on the photo, from a logistic fit of the similarity, the recogniser's
confidence and their product on `benchmarks/signboard_bench.py` (one fit per engine,
`lookalike/data/text_calibration.json`), where each plaque names one of 15 landmarks (a prior
of about 1/15). `text_log_odds(evidence)` takes that prior out again: the likelihood ratio of
the reading, what a read name adds to a candidate's log-odds; a photo without text (evidence
None) adds nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import InputError
from lookalike.ocr import reader as ocr

# Evidence (a calibrated probability, see `text_evidence`) at or above this counts as the name
# read: a likelihood ratio of about 40 (3 at the fit's prior of 1/15). Also the bigram Dice at
# which two photos' texts count as the same (fused).
TEXT_MATCH_THRESHOLD = 0.75
# Shorter names (after normalisation) are ignored: they would match by chance. Two kanji (雷門)
# are specific; two or three Latin letters are not.
MIN_NAME_CHARS_JAPANESE = 2
MIN_NAME_CHARS_LATIN = 4
# A line of one photo is looked for in another's text (`text_pair_evidence`) only if it is
# this long (shorter lines - a house number, two kana of texture - are common to many photos)
# and half its characters are different.
MIN_PAIR_CHARS_JAPANESE = 3
MIN_PAIR_CHARS_LATIN = 6
# Keys of landmark.json that hold names besides language codes.
NAME_KEYS = ("name", "names", "aliases", "alias")
CALIBRATION_FILE = Path(__file__).resolve().parents[1] / "data" / "text_calibration.json"


@dataclasses.dataclass(frozen=True)
class TextMatch:
    """The best match of a photo's text with one landmark's names."""

    score: float  # the evidence: calibrated probability that the name is on the photo
    name: str  # the name (as written in landmark.json) that matched best
    matched: bool  # score >= TEXT_MATCH_THRESHOLD
    similarity: float = 0.0  # share of the name found in the reading (`name_similarity`)
    confidence: float = 1.0  # the recogniser's confidence in that reading


# -- features -------------------------------------------------------------------------------------
def make_feature(lines: Iterable[ocr.TextLine], doubtful: Iterable[tuple[str, float]] = (),
                 engine: str = ocr.DEFAULT_ENGINE) -> dict[str, np.ndarray]:
    """A `text` feature (dict of arrays, cacheable without pickle) from lines read by `ocr`
    (and the doubtful readings of `ocr.read_signs`, used only to look for names in); `engine`
    says whose confidences they are, as each engine has its own calibration."""
    lines = list(lines)
    doubtful = [(str(text), float(confidence)) for text, confidence in doubtful]
    alternatives = [(alt, conf, i) for i, line in enumerate(lines) for alt, conf in line.alternatives]
    return {
        "engine": np.array(engine),
        "text": np.array(ocr.joined_text(lines)),
        "lines": _strings(line.text for line in lines),
        "raw": _strings(line.raw for line in lines),
        "boxes": np.array([line.box for line in lines], np.int32).reshape(-1, 4),
        "confidence": np.array([line.confidence for line in lines], np.float32),
        "vertical": np.array([line.vertical for line in lines], np.uint8),
        # Other readings of the lines, their confidence, and which line each belongs to.
        "alternatives": _strings(alt for alt, _, _ in alternatives),
        "alternative_confidence": np.array([conf for _, conf, _ in alternatives], np.float32),
        "alternative_line": np.array([i for _, _, i in alternatives], np.int32),
        "doubtful": _strings(text for text, _ in doubtful),
        "doubtful_confidence": np.array([conf for _, conf in doubtful], np.float32),
    }


def _strings(values: Iterable[str]) -> np.ndarray:
    values = list(values)
    return np.array(values or [""], dtype=str)[:len(values)]


def feature_lines(feature: Mapping[str, np.ndarray]) -> list[ocr.TextLine]:
    """The lines of a `text` feature, back as `TextLine`s (e.g. for `ocr.draw_text_boxes`)."""
    alternatives: dict[int, list[tuple[str, float]]] = {}
    for alt, conf, index in zip(feature.get("alternatives", ()),
                                feature.get("alternative_confidence", ()),
                                feature.get("alternative_line", ())):
        alternatives.setdefault(int(index), []).append((str(alt), float(conf)))
    return [
        ocr.TextLine(str(text), str(raw), tuple(int(v) for v in box), float(conf), bool(vertical),
                     tuple(alternatives.get(i, ())))
        for i, (text, raw, box, conf, vertical) in enumerate(zip(
            feature["lines"], feature["raw"], feature["boxes"], feature["confidence"],
            feature["vertical"]))
    ]


Readings = Mapping[str, np.ndarray] | str | list[tuple[str, float]]  # what a name is looked for in


def feature_readings(feature: Readings) -> list[tuple[str, float]]:
    """Every reading a name is looked for in, with its confidence: the joined text of all lines
    (a name may be split over lines; its confidence the lines' letter-weighted mean), each
    line, the other readings and the doubtful ones. A plain string is one certain reading; a
    list of (text, confidence) is taken as it is."""
    if isinstance(feature, str):
        return [(feature, 1.0)] if ocr.compact(feature) else []
    if isinstance(feature, list):
        return [(str(text), float(conf)) for text, conf in feature if ocr.compact(str(text))]
    lines = [str(text) for text in feature["lines"]]
    confidences = [float(conf) for conf in feature["confidence"]]
    readings = []
    if lines:
        weights = [max(1, ocr.letter_count(text)) for text in lines]
        joined = sum(w * c for w, c in zip(weights, confidences)) / sum(weights)
        readings.append((feature_text(feature), joined))
        if len(lines) > 1:
            readings.extend(zip(lines, confidences))
    readings.extend(zip((str(a) for a in feature.get("alternatives", ())),
                        (float(c) for c in feature.get("alternative_confidence", ()))))
    readings.extend(zip((str(d) for d in feature.get("doubtful", ())),
                        (float(c) for c in feature.get("doubtful_confidence", ()))))
    return [(text, conf) for text, conf in readings if ocr.compact(text)]


def feature_engine(feature: Readings) -> str:
    """The engine that read a feature (a string or a list of readings: the default engine)."""
    if not isinstance(feature, Mapping) or "engine" not in feature:
        return ocr.DEFAULT_ENGINE
    return str(feature["engine"])


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
    return max(0.0, 1.0 - substring_edits(name, text) / len(name))


def substring_edits(pattern: str, text: str) -> int:
    """Fewest edits (misread, missing or extra characters) turning some substring of `text`
    into `pattern` (Sellers' dynamic programme; text around the match costs nothing)."""
    # column[i] = fewest edits matching pattern[:i] to a substring of text ending here
    column = list(range(len(pattern) + 1))
    best = column[-1]
    for char in text:
        previous_diagonal, column[0] = column[0], 0
        for i in range(1, len(pattern) + 1):
            current = min(column[i] + 1, column[i - 1] + 1,
                          previous_diagonal + (pattern[i - 1] != char))
            previous_diagonal, column[i] = column[i], current
        best = min(best, column[-1])
    return best


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


# -- calibrated evidence --------------------------------------------------------------------------
@functools.cache
def text_calibration() -> dict[str, Any]:
    """The fitted logistic models (`lookalike/data/text_calibration.json`, written by
    `benchmarks/signboard_bench.py --fit`)."""
    with open(CALIBRATION_FILE, encoding="utf-8") as handle:
        return json.load(handle)


class TextCalibrationError(InputError):
    """An OCR engine without its fit in `text_calibration.json`."""


def engine_model(calibration: Mapping[str, Any], engine: str) -> Mapping[str, Any]:
    """The fitted model of `engine`; an engine that was never fitted fails loudly, as a preset
    without its calibration does, rather than borrowing another engine's."""
    models = calibration["engines"]
    if engine not in models:
        raise TextCalibrationError(
            f"OCR engine {engine!r} has no fit in {CALIBRATION_FILE.name} (fitted: "
            f"{', '.join(sorted(models))}); fit it with `benchmarks/signboard_bench.py --fit`")
    return models[engine]


def read_probability(similarity: float, confidence: float, engine: str = ocr.DEFAULT_ENGINE) -> float:
    """Calibrated probability that a name is on the photo, given the share of it found in a
    reading and the recogniser's confidence in that reading (at the fit's prior of about 1/15).

    It rises with similarity at any confidence. Confidence cuts both ways, as fitted: it never
    lowers the evidence of a reading of the whole name, and it lowers that of a reading of only
    most of it - read confidently, that is another word (伊能忠敬旧宅 is not 伊能忠敬像), read
    unsurely, it may be the name with a character misread.
    """
    calibration = text_calibration()
    model = engine_model(calibration, engine)
    values = {"similarity": similarity, "confidence": confidence,
              "similarity*confidence": similarity * confidence}
    logit = model["intercept"] + sum(coef * values[name] for name, coef in
                                     zip(calibration["features"], model["coef"]))
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit))))


def match_names(feature: Readings, names: Iterable[str]) -> TextMatch | None:
    """Best match of a photo's text (a `text` feature, a string or readings) with a landmark's names,
    over every reading of the photo; None when no legible text was read or the landmark has
    no usable name."""
    return match_readings(feature_readings(feature), names, feature_engine(feature))


def match_readings(readings: Iterable[tuple[str, float]], names: Iterable[str],
                   engine: str = ocr.DEFAULT_ENGINE) -> TextMatch | None:
    """`match_names` on readings (text, confidence) as `feature_readings` gives them."""
    readings = [(text, confidence) for text, confidence in readings if ocr.compact(text)]
    names = [name for name in names if usable_name(name)]
    if not readings or not names:
        return None
    best: TextMatch | None = None
    for name in names:
        for text, confidence in readings:
            similarity = name_similarity(text, name)
            evidence = read_probability(similarity, confidence, engine)
            if best is None or (evidence, similarity) > (best.score, best.similarity):
                best = TextMatch(evidence, name, evidence >= TEXT_MATCH_THRESHOLD, similarity,
                                 confidence)
    return best


def text_evidence(feature: Readings, landmark_names: Iterable[str]) -> float | None:
    """How sure it is that the photo's text names the landmark: a calibrated probability in
    0..1, >= TEXT_MATCH_THRESHOLD meaning the name was read; None when nothing was read at all
    (no line, no doubtful reading) or the landmark has no usable name - it must then change
    nothing.

    `feature` is the `text` method's feature (`extract_features(get_method("text"), ...)`)
    and `landmark_names` e.g. `landmark_names(json.load(open("landmark.json")))`. Turn it into
    log-odds with `text_log_odds`.
    """
    match = match_names(feature, landmark_names)
    return None if match is None else match.score


def text_evidence_among(feature: Readings, gallery: Mapping[str, Iterable[str]]
                        ) -> dict[str, float | None]:
    """`text_evidence` for every landmark of a gallery ({landmark: names}), each reading
    counting only for the landmarks it matches best: "St Paul's Cathedral" read whole is
    evidence for St Paul's, not 60% evidence for Berlin Cathedral, and 伊能忠敬旧宅 is not 80%
    of 伊能忠敬像. (A reading that matches two landmarks equally - an alias inside another's
    name - counts for both.) None where nothing was read or a landmark has no usable name."""
    readings = feature_readings(feature)
    engine = feature_engine(feature)
    usable = {landmark: [n for n in names if usable_name(n)] for landmark, names in gallery.items()}
    similarity = {landmark: [max((name_similarity(text, n) for n in names), default=0.0)
                             for text, _ in readings] for landmark, names in usable.items()}
    best = [max((similarity[landmark][i] for landmark in usable if usable[landmark]), default=0.0)
            for i in range(len(readings))]
    out: dict[str, float | None] = {}
    for landmark, names in usable.items():
        if not readings or not names:
            out[landmark] = None
            continue
        own = [reading for i, reading in enumerate(readings)
               if similarity[landmark][i] >= best[i] - 1e-9]
        match = match_readings(own, names, engine) if own else None
        out[landmark] = match.score if match else read_probability(0.0, 1.0, engine)
    return out


def text_log_odds(evidence: float | None) -> float:
    """The log-odds a landmark gains from `text_evidence` (or `text_pair_evidence`): the fitted
    likelihood ratio of the reading, logit(evidence) minus the fit's prior log-odds, between 0
    and the calibration's `max_log_odds`. Never negative - a photo may show another sign
    nearby, or none - and 0 for None (nothing read). The cap is the ratio measured for reads
    at or above TEXT_MATCH_THRESHOLD with one false match added (the benchmark had too few to
    measure certainty)."""
    if evidence is None:
        return 0.0
    calibration = text_calibration()
    evidence = min(max(float(evidence), 1e-12), 1.0 - 1e-12)
    ratio = math.log(evidence / (1.0 - evidence)) - calibration["prior_log_odds"]
    return float(min(max(0.0, ratio), calibration["max_log_odds"]))


def gallery_text_log_odds(feature: Readings | None, gallery: Mapping[str, Iterable[str]]
                          ) -> dict[str, float]:
    """The log-odds each landmark of a gallery ({landmark: names}) gains from a photo's text:
    `text_log_odds` of `text_evidence_among`, so a reading counts for the landmark it names
    best. `identify --use-text` and `evaluate --identify --use-text` both add exactly this."""
    if feature is None:
        return {}
    return {landmark: text_log_odds(evidence)
            for landmark, evidence in text_evidence_among(feature, gallery).items()}


def text_pair_evidence(a: Readings, b: Readings) -> float | None:
    """Evidence (as `text_evidence`) that two photos show the same sign: each line one photo
    shows (not its doubtful readings), if long enough to be specific, is taken as a name and
    looked for in all the other's readings; the better direction counts. None when either
    photo has no legible text."""
    if not feature_readings(a) or not feature_readings(b):
        return None
    best = 0.0
    for one, other in ((a, b), (b, a)):
        lines = [text for text in _shown_lines(one) if _pair_usable(text)]
        if lines:
            match = match_names(other, lines)
            best = max(best, match.score if match else 0.0)
    return best


def _shown_lines(feature: Readings) -> list[str]:
    if isinstance(feature, Mapping):
        return [feature_text(feature), *(str(line) for line in feature["lines"])]
    return [text for text, _ in feature_readings(feature)]


def _pair_usable(text: str) -> bool:
    """Long enough to be specific, and not a run of a few characters repeated: window grids
    and railings read as 十十十十 or iaiaiaia, the same on every photo of a facade."""
    text = ocr.compact(text)
    long_enough = len(text) >= (MIN_PAIR_CHARS_LATIN if text.isascii() else MIN_PAIR_CHARS_JAPANESE)
    return long_enough and len(set(text)) >= max(3, len(text) / 2)
