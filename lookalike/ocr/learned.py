"""Text a gallery teaches: what recurs on a landmark's reference photos, and the inscriptions
its landmark.json lists, matched with a query's readings by a fuzzy score robust to fragments.

Why: a landmark's *names* are rarely what is written on it. The Panthéon's pediment says AUX
GRANDS HOMMES LA PATRIE RECONNAISSANTE, the Moulin Rouge's sign MOULIN ROUGE, a shop front
its own name; OCR reads them in pieces (`randshommes lapatriereconna`, `veor rouge`,
`frouge`). What a landmark's own references show again and again is what a visitor's photo
of it will show too.

**What is learned (the rule).** Each reference's confident lines (not the doubtful readings,
nor the other readings of a box) are compacted (`reader.compact`). A *phrase* of a landmark
is a stretch of one reference's line that another reference of the same landmark also shows,
approximately (`shared_spans`: blocks of equal characters with gaps of at most `MAX_GAP` on
either side, at least `MIN_DENSITY` of the stretch matched, and at least 6 Latin or 3
Japanese characters matched): text seen on >= 2 references, so a passer-by's T-shirt or a
one-off poster on one photo is not learned. A landmark with a single reference learns that
reference's specific lines (long enough, not a repeated run such as the iaiaiaia of a
railing), since nothing can recur there; `index info` shows what was learned. At most
`MAX_PHRASES` phrases are kept, the longest first, a phrase inside a longer kept one
dropped. A phrase that several landmarks learn (a watermark, the street both stand on) tells
them apart from nothing and is ignored (`distinctive`). `inscriptions` listed in
landmark.json are phrases as given.

**The score.** A reading and a phrase are aligned locally (`local_alignment`): the phrase
inside the reading (a sign read whole) or the reading inside the phrase (a fragment), what
was misread around either end costing nothing. `matched` is the alignment's score
(characters that agree, less one per edit); `share` is matched over the phrase's length and
`coverage` matched over the reading's (TOWER BRIDGE shares TOWER with NLE TOWER, 5 of its 8
letters, but explains only 5 of the reading's 11). A logistic model of share, coverage,
matched (saturating at `CHARS_SATURATE`) and the recogniser's confidence gives the
probability that the phrase is on the photo
(`lookalike/data/learned_text_calibration.json`, fitted on the dev photos as they are and with
drawn plaques, `benchmarks/learned_text_bench.py --fit`: leave-one-out learned phrases, whole
readings and fragments cut from them). As with names, a reading counts only for the landmarks
it matches best - its names taken as phrases too, so a name read whole is not a fragment of
another landmark's learned text - and `learned_log_odds` is the likelihood ratio of the best reading, never
negative.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.ocr import reader as ocr
from lookalike.ocr.evidence import (
    MIN_PAIR_CHARS_JAPANESE,
    MIN_PAIR_CHARS_LATIN,
    TextCalibrationError,
    feature_engine,
    feature_readings,
)

CALIBRATION_FILE = Path(__file__).resolve().parents[1] / "data" / "learned_text_calibration.json"
MAX_GAP = 2  # characters skipped on either side between two blocks of a shared stretch
MIN_DENSITY = 0.7  # share of a shared stretch made of equal characters
MAX_PHRASES = 24  # kept per landmark, longest first
MAX_PHRASE_CHARS = 64  # a longer stretch is cut (a paragraph of a notice board)
MAX_TEXT_REFERENCES = 40  # references with text compared pairwise per landmark
CHARS_SATURATE = 16  # matched characters beyond this add no specificity
# A Latin reading is aligned with a phrase only if they share this many bigrams (a run of
# four equal letters in a row, or two pairs): fewer agree on three letters at most, too little
# to tell one landmark's text from chance, and aligning them all would cost the most.
MIN_SHARED_BIGRAMS = 3
MATCH_THRESHOLD = 0.75  # evidence at or above it counts as the phrase read (as for names)


def min_chars(text: str) -> int:
    return MIN_PAIR_CHARS_LATIN if text.isascii() else MIN_PAIR_CHARS_JAPANESE


def trim_texture(text: str) -> str:
    """Without a run of >= 3 equal characters at either end: a window grid read as 十十十十
    or a railing as llll beside a real word is texture, not text."""
    return re.sub(r"^(.)\1{2,}", "", re.sub(r"(.)\1{2,}$", "", text))


def specific(text: str) -> bool:
    """Long enough to be specific, and not a few characters repeated (window grids and
    railings read as 十十十十 or iaiaiaia on every photo of a facade)."""
    return len(text) >= min_chars(text) and len(set(text)) >= max(3, len(text) / 2)


# -- what a reference shows ------------------------------------------------------------------------
def reference_lines(feature: Mapping[str, np.ndarray] | None) -> list[str]:
    """A reference's confident lines, compacted, and their joined text when there are
    several (a name may be split over lines); empty for no feature."""
    if feature is None:
        return []
    lines = [ocr.compact(str(line)) for line in feature["lines"]]
    lines = [line for line in lines if line]
    if len(lines) > 1:
        lines.append("".join(lines))
    return list(dict.fromkeys(lines))


def shared_spans(a: str, b: str) -> list[str]:
    """Stretches of `a` that `b` shows too, approximately (see the module's doc)."""
    if not a or not b:
        return []
    blocks = [block for block in SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()
              if block.size]
    spans, group = [], []
    for block in [*blocks, None]:
        if block is not None and group:
            last = group[-1]
            gap_a = block.a - (last.a + last.size)
            gap_b = block.b - (last.b + last.size)
            if 0 <= gap_a <= MAX_GAP and 0 <= gap_b <= MAX_GAP:
                group.append(block)
                continue
        if group:
            start, end = group[0].a, group[-1].a + group[-1].size
            matched = sum(g.size for g in group)
            span = trim_texture(a[start:end])
            if matched >= min_chars(span) and matched >= MIN_DENSITY * len(span) \
                    and specific(span):
                spans.append(span[:MAX_PHRASE_CHARS])
        group = [block] if block is not None else []
    return spans


def learn_phrases(references: Sequence[Sequence[str]]) -> list[str]:
    """A landmark's phrases from its references' `reference_lines` (one list per reference,
    empty where nothing was read): stretches shared by >= 2 references, or with a single
    reference its specific lines; the longest `MAX_PHRASES`, none inside another."""
    if len(references) == 1:
        found = [trim_texture(line)[:MAX_PHRASE_CHARS] for line in references[0]
                 if specific(trim_texture(line))]
    else:
        with_text = [lines for lines in references if lines][:MAX_TEXT_REFERENCES]
        found = []
        for one, other in itertools.combinations(with_text, 2):
            joined = "|".join(other)  # the bar never joins two lines into one stretch
            for line in one:
                found.extend(shared_spans(line, joined))
    kept: list[str] = []
    for phrase in sorted(set(found), key=lambda p: (-len(p), p)):
        if not any(phrase in longer for longer in kept):
            kept.append(phrase)
        if len(kept) == MAX_PHRASES:
            break
    return kept


def distinctive(phrases: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """{landmark: phrases} without the phrases that more than one landmark learned."""
    count: dict[str, int] = {}
    for found in phrases.values():
        for phrase in set(found):
            count[phrase] = count.get(phrase, 0) + 1
    return {landmark: [p for p in found if count[p] == 1] for landmark, found in phrases.items()}


def inscription_phrases(inscriptions: Iterable[str]) -> list[str]:
    """landmark.json's inscriptions, compacted, the usable ones (>= 4 Latin / 2 Japanese)."""
    out = []
    for text in inscriptions:
        phrase = ocr.compact(str(text))
        if len(phrase) >= (4 if phrase.isascii() else 2) and phrase not in out:
            out.append(phrase)
    return out


# -- matching ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PhraseMatch:
    """The best match of a photo's readings with one landmark's phrases."""

    score: float  # calibrated probability that the phrase is on the photo
    phrase: str
    reading: str
    share: float  # share of the phrase that agrees
    matched: int  # characters that agree (less one per edit)
    confidence: float

    @property
    def matched_phrase(self) -> bool:
        return self.score >= MATCH_THRESHOLD


def fragment_match(reading: str, phrase: str) -> tuple[float, int]:
    """(share, matched) of a compacted reading and phrase: `matched` is the score of their
    best local alignment (`local_alignment`: characters that agree less one per edit, over
    the stretches of both that agree best), so a fragment (`frouge`), a sign read whole
    among other text, and a fragment with misread characters around it (`veor rouge`) all
    count what they share; `share` is matched over the phrase's length."""
    if not reading or not phrase:
        return 0.0, 0
    matched = local_alignment(reading, phrase)
    return min(1.0, matched / len(phrase)), matched


def local_alignment(a: str, b: str) -> int:
    """Best local alignment score of two strings (Smith-Waterman): +1 for each equal
    character, -1 for each misread, missing or extra one, over the best-agreeing stretches of
    both; unrelated text scores a few points at most."""
    best = 0
    previous = [0] * (len(b) + 1)
    for char in a:
        current = [0] * (len(b) + 1)
        for j in range(1, len(b) + 1):
            value = max(0, previous[j - 1] + (1 if b[j - 1] == char else -1),
                        previous[j] - 1, current[j - 1] - 1)
            current[j] = value
            if value > best:
                best = value
        previous = current
    return best


def _grams(text: str) -> set[str]:
    return {text[i:i + 2] for i in range(max(1, len(text) - 1))}


@functools.cache
def learned_calibration() -> dict[str, Any]:
    """The fitted model (`lookalike/data/learned_text_calibration.json`, written by
    `benchmarks/learned_text_bench.py --fit`)."""
    with open(CALIBRATION_FILE, encoding="utf-8") as handle:
        return json.load(handle)


def learned_model(engine: str) -> Mapping[str, Any]:
    models = learned_calibration()["engines"]
    if engine not in models:
        raise TextCalibrationError(
            f"OCR engine {engine!r} has no learned-text fit in {CALIBRATION_FILE.name} "
            f"(fitted: {', '.join(sorted(models))}); fit it with "
            f"`benchmarks/learned_text_bench.py --fit`")
    return models[engine]


def match_features(reading: str, phrase: str, confidence: float) -> dict[str, float]:
    """What the calibration sees of a compacted reading and phrase."""
    share, matched = fragment_match(reading, phrase)
    return {"share": share, "coverage": min(1.0, matched / len(reading)) if reading else 0.0,
            "chars": min(matched, CHARS_SATURATE) / CHARS_SATURATE, "confidence": confidence,
            "matched": matched}


def phrase_probability(values: Mapping[str, float], engine: str) -> float:
    """Calibrated probability that a phrase is on the photo (at the fit's prior), from
    `match_features`."""
    model = learned_model(engine)
    logit = model["intercept"] + sum(coef * values[name] for name, coef in
                                     zip(learned_calibration()["features"], model["coef"]))
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit))))


Readings = Mapping[str, np.ndarray] | str | list[tuple[str, float]]


def compact_readings(feature: Readings) -> list[tuple[str, float]]:
    out: dict[str, float] = {}
    for text, confidence in feature_readings(feature):
        text = ocr.compact(text)
        if text:
            out[text] = max(confidence, out.get(text, 0.0))
    return list(out.items())


class PhraseIndex:
    """Every landmark's phrases (and names, which compete for readings), with an inverted
    file of their bigrams, so that a reading is aligned only with the phrases it shares at
    least `MIN_SHARED_BIGRAMS` bigrams with (one in Japanese, where two characters are a
    word). Built once per gallery state (`GalleryIndex.phrase_index`)."""

    def __init__(self, gallery: Mapping[str, Sequence[str]],
                 names: Mapping[str, Sequence[str]] | None = None):
        self.landmarks = list(gallery)
        self.entries: list[tuple[str, bool, str]] = []  # (landmark, is a phrase, text)
        for landmark, phrases in gallery.items():
            self.entries += [(landmark, True, p) for p in dict.fromkeys(phrases) if p]
        for landmark, found in (names or {}).items():
            compacted = dict.fromkeys(ocr.compact(n) for n in found)
            self.entries += [(landmark, False, p) for p in compacted if p]
        self.postings: dict[str, list[int]] = {}
        for number, (_, _, text) in enumerate(self.entries):
            for gram in _grams(text):
                self.postings.setdefault(gram, []).append(number)

    def candidates(self, reading: str) -> list[int]:
        shared: dict[int, int] = {}
        for gram in _grams(reading):
            for number in self.postings.get(gram, ()):
                shared[number] = shared.get(number, 0) + 1
        return [number for number, count in shared.items()
                if count >= (MIN_SHARED_BIGRAMS if self.entries[number][2].isascii() else 1)]

    def among(self, feature: Readings) -> dict[str, PhraseMatch | None]:
        """The best phrase match per landmark, each reading counting only for the landmarks
        that match it best by their phrases or their names; None where nothing matched."""
        readings = compact_readings(feature)
        engine = feature_engine(feature)
        best: dict[str, PhraseMatch] = {}
        for reading, confidence in readings:
            claims: dict[str, float] = {}
            matches: dict[str, PhraseMatch] = {}
            for number in self.candidates(reading):
                landmark, is_phrase, text = self.entries[number]
                values = match_features(reading, text, confidence)
                score = phrase_probability(values, engine)
                claims[landmark] = max(score, claims.get(landmark, 0.0))
                if is_phrase:
                    match = PhraseMatch(score, text, reading, values["share"],
                                        int(values["matched"]), confidence)
                    kept = matches.get(landmark)
                    if kept is None or (match.score, match.matched) > (kept.score, kept.matched):
                        matches[landmark] = match
            if not claims:
                continue
            top = max(claims.values())
            for landmark, match in matches.items():
                if claims[landmark] < top - 1e-9:
                    continue  # another landmark's phrase or name matches this reading better
                kept = best.get(landmark)
                if kept is None or (match.score, match.matched) > (kept.score, kept.matched):
                    best[landmark] = match
        return {landmark: best.get(landmark) for landmark in self.landmarks}


def learned_evidence_among(feature: Readings, gallery: Mapping[str, Sequence[str]],
                           names: Mapping[str, Sequence[str]] | None = None
                           ) -> dict[str, PhraseMatch | None]:
    """The best phrase match per landmark ({landmark: phrases}), each reading counting only
    for the landmarks that match it best by their phrases or their `names` (if given): TOWER
    BRIDGE read whole is Tower Bridge's, by its name, not a fragment of NLE Tower's learned
    NLETOWER. None where nothing matched at all (`PhraseIndex.among`)."""
    return PhraseIndex(gallery, names).among(feature)


def learned_log_odds(match: PhraseMatch | float | None) -> float:
    """What a phrase match adds to a landmark's log-odds: the fitted likelihood ratio
    (logit minus the fit's prior), between 0 and the fit's `max_log_odds`; 0 for None."""
    if match is None:
        return 0.0
    calibration = learned_calibration()
    p = match.score if isinstance(match, PhraseMatch) else float(match)
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    ratio = math.log(p / (1.0 - p)) - calibration["prior_log_odds"]
    return float(min(max(0.0, ratio), calibration["max_log_odds"]))


def gallery_learned_log_odds(feature: Readings | None, gallery: Mapping[str, Sequence[str]],
                             names: Mapping[str, Sequence[str]] | None = None
                             ) -> dict[str, float]:
    """{landmark: log-odds} a photo's text gains from the landmarks' phrases (`names`
    competing for each reading, see `learned_evidence_among`)."""
    if feature is None:
        return {}
    return {landmark: learned_log_odds(match)
            for landmark, match in learned_evidence_among(feature, gallery, names).items()}
