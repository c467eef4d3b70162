"""The one retrieval pipeline: shortlist, verify, expand, calibrate.

Why: a global descriptor is cheap and sees the whole gallery, but is fooled by shared
background; a local matcher with geometric verification is almost never fooled, but costs
10-250 ms a pair. So, as retrieval systems do (hloc, HOW/FIRe + ASMK re-ranking):

1. **shortlist**: the global method's search index ranks the gallery for the query;
2. **verify**: the local method matches the query against the `shortlist` best items only,
   and each pair's result is kept (in memory, and in the feature cache across runs);
3. **expand**: the verified items' own global similarities are averaged into the query's
   (query expansion in similarity space, which works for vectors and ASMK alike), so photos of
   the landmark that look unlike the query but like its verified matches move up;
4. **calibrate**: per gallery item the evidence (global and expanded similarity, inlier
   counts, spread) goes through one logistic `Calibration` to a probability.

`fused` (photo against photos), `identify`/`verify` (photo against landmarks), `evaluate
--identify`, `calibrate` and the server all rank through `Pipeline`. Which methods fill the two
roles is a preset (`lookalike.retrieval.presets`); nothing here names a network.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lookalike.features.cache import PairMemo
from lookalike.features.contract import Method, SearchIndex
from lookalike.matching.geometry import Match
from lookalike.retrieval.calibration import Calibration

# Every pair feature a calibration may choose (its `features` name them, in its order).
# Similarities enter as logs: ASMK's are heavy-tailed (most pairs near 0.001, the same
# landmark often 0.02 and up), and a logistic model on the raw values lost 0.05 mAP on the
# dev photos against their logs. Every feature is one where more means "more likely the
# same landmark", so calibrations are fitted monotone (coefficients >= 0):
# - `sqrt_area`: the share of the query that the inliers' convex hull covers (square root).
#   A look-alike's few inliers on one repeated window cover a sliver of the query; a real
#   match of the same object covers much of it (issue 24);
# - `sqrt_spread`: the grid cells the inliers cover in the less covered photo;
# - `inlier_ratio`: inliers of the reported model over the tentative matches;
# - `log_matches`: the tentative matches (the mutual nearest neighbours that pass the ratio
#   test, or LightGlue's). On hard look-alikes (oxford_hard), where MAGSAC++ finds
#   chance-level inliers (4-12) in true and false pairs alike, they still separate. A free
#   fit used them against unverified shortlisted pairs (ranked below pairs never verified);
#   a monotone one cannot.
PAIR_FEATURES = ("log_global", "log_global_expanded", "log_inliers_h", "log_inliers_f",
                 "sqrt_spread", "verified", "sqrt_area", "inlier_ratio", "log_matches")
# The evidence `lookalike calibrate` fits on: the few features that carried over best to
# held-out landmarks of both datasets (benchmarks/carryover.py; docs/benchmarks.md, issue 24).
PAIR_EVIDENCE = ["log_global", "log_global_expanded", "log_inliers_h", "log_inliers_f",
                 "log_matches", "sqrt_area"]
SIMILARITY_FLOOR = 1e-4  # added before the log: photos sharing no visual word score 0
SAME_PHOTO = 0.9999  # global similarity at which two items are taken as the same photo


@dataclasses.dataclass
class Item:
    """One photo as the pipeline sees it: its features of both roles and its content key
    (the feature cache's hash of the file, under which its pair results are kept)."""

    global_feature: Any
    local_feature: dict
    key: str | None = None
    text: str = ""  # signboard text read by OCR, when asked for


class ReferenceSet:
    """Items with the global method's search index over them, built once.

    Local features are read through `local_loader(position)` when given (an index keeps them
    on disk, only the verified few are read), else from the items."""

    def __init__(self, items: Sequence[Item], global_method: Method,
                 local_loader: Callable[[int], dict] | None = None,
                 index: SearchIndex | None = None):
        # a Sequence is kept as it is (an index's items are read when asked for)
        self.items = items if isinstance(items, Sequence) else list(items)
        self.index: SearchIndex = index if index is not None else \
            global_method.search_index([i.global_feature for i in self.items])
        self.local_loader = local_loader
        self._rows: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.items)

    def local(self, position: int) -> dict:
        if self.local_loader is not None:
            return self.local_loader(position)
        return self.items[position].local_feature

    def similarities_of(self, position: int) -> np.ndarray:
        """Global similarity of gallery item `position` with every item (kept: expansion
        asks for the same verified items again and again)."""
        row = self._rows.get(position)
        if row is None:
            row = self._rows[position] = self.index.scores(self.items[position].global_feature)
        return row


@dataclasses.dataclass
class Ranking:
    """One query against a gallery: a probability per item and the evidence behind it."""

    probabilities: np.ndarray
    similarities: np.ndarray
    expanded: np.ndarray
    evidence: np.ndarray  # items x the pipeline's features
    matches: dict[int, Match]  # the verified (shortlisted) items

    def order(self) -> np.ndarray:
        return np.argsort(-self.probabilities, kind="stable")


def log_similarity(similarity: float) -> float:
    return math.log(max(float(similarity), 0.0) + SIMILARITY_FLOOR)


def pair_evidence(similarity: float, expanded: float, match: Match | None,
                  features: Sequence[str] = PAIR_EVIDENCE) -> list[float]:
    """The calibration's inputs for one pair, in the order of `features` (names of
    PAIR_FEATURES); an item that was not verified has no matches (0 for each match feature)."""
    values = {"log_global": log_similarity(similarity),
              "log_global_expanded": log_similarity(expanded)}
    if match is not None:
        values.update(log_inliers_h=math.log1p(match.inliers_h),
                      log_inliers_f=math.log1p(match.inliers_f),
                      sqrt_spread=math.sqrt(match.spread), verified=float(match.verified),
                      sqrt_area=math.sqrt(max(match.area_a, 0.0)),
                      inlier_ratio=match.inlier_ratio, log_matches=math.log1p(match.matches))
    return [values.get(name, 0.0) for name in features]


def check_features(features: Sequence[str], known: Sequence[str] = PAIR_FEATURES,
                   kind: str = "pair") -> list[str]:
    """The features, if every one is a known feature of their kind (pair: PAIR_FEATURES,
    identify: IDENTIFY_FEATURES; else ValueError): a calibration names what it was fit on."""
    unknown = [name for name in features if name not in known]
    if unknown:
        raise ValueError(f"unknown {kind} evidence {unknown}; known: {', '.join(known)}")
    return list(features)


class Pipeline:
    """Shortlist with `global_method`, verify with `local_method`, expand, calibrate."""

    def __init__(self, global_method: Method, local_method: Method,
                 calibration: Calibration | None = None, shortlist: int = 30,
                 expansion: int = 5, store=None, features: Sequence[str] | None = None):
        self.global_method = global_method
        self.local_method = local_method
        self.calibration = calibration
        self.shortlist = shortlist
        self.expansion = expansion
        self.store = store  # a FeatureCache: match counts survive the run
        # The evidence each pair gives: the calibration's features, else PAIR_EVIDENCE.
        self.features = check_features(
            features if features is not None else
            calibration.features if calibration is not None else PAIR_EVIDENCE)
        self._memo = PairMemo()

    # -- verification ----------------------------------------------------------------------
    def match(self, a: Item, b: Item, local_a: dict | None = None,
              local_b: dict | None = None) -> Match:
        """The local method's verified matches of two items, each pair computed once while
        the pipeline lives (and its reverse read from it)."""
        def compute(x: Item, y: Item) -> Match:  # the memo calls it as compute(a, b)
            return self.local_method.match(x.local_feature if local_a is None else local_a,
                                           y.local_feature if local_b is None else local_b)

        return self._memo.get(a, b, compute, Match.swapped)

    def verify(self, query: Item, gallery: ReferenceSet, candidates: Sequence[int]
               ) -> dict[int, Match]:
        """Match the query with each candidate, through the store when both items carry keys.
        Results read back from the store hold the counts, not the inlier points. The pairs
        still to match go to the local method together (`Method.match_many`)."""
        candidates = [int(j) for j in candidates]
        keys = [gallery.items[j].key for j in candidates]
        if self.store is None or query.key is None or None in keys:
            return self._match_items(query, gallery, candidates)
        prefix = f"match2:{self.local_method.score_key()}"  # 2: with hull areas
        names = {j: f"{prefix}:{min(query.key, k)}:{max(query.key, k)}"
                 for j, k in zip(candidates, keys)}
        found = self.store.get_many(set(names.values()))
        results: dict[int, Match] = {}
        missing = []
        for j in candidates:
            if names[j] in found:
                try:
                    results[j] = Match.from_counts(json.loads(found[names[j]]))
                    continue
                except (ValueError, KeyError, TypeError):  # unreadable entry: match again
                    pass
            missing.append(j)
        fresh = self._match_items(query, gallery, missing)
        results.update(fresh)
        if fresh:
            self.store.put_many([(names[j], json.dumps(match.counts()).encode())
                                 for j, match in fresh.items()])
        return {j: results[j] for j in candidates}

    def _match_items(self, query: Item, gallery: ReferenceSet, positions: Sequence[int]
                     ) -> dict[int, Match]:
        """The query matched with the items at `positions`: pairs met before from the memo,
        the others in one `match_many` call (and then kept in the memo)."""
        results: dict[int, Match] = {}
        todo = []
        for j in positions:
            hit = self._memo.find(query, gallery.items[j], Match.swapped)
            if hit is not None:
                results[j] = hit
            elif j not in todo:
                todo.append(j)
        if todo:
            features = [gallery.local(j) for j in todo]
            for j, match in zip(todo, self.local_method.match_many(query.local_feature,
                                                                   features)):
                self._memo.put(query, gallery.items[j], match)
                results[j] = match
        return {j: results[j] for j in positions}

    # -- ranking ---------------------------------------------------------------------------
    def evidence(self, query: Item, gallery: ReferenceSet) -> Ranking:
        """Evidence rows for every gallery item (probabilities left at zero)."""
        similarities = gallery.index.scores(query.global_feature)
        candidates = np.argsort(-similarities, kind="stable")[:self.shortlist]
        matches = self.verify(query, gallery, candidates)
        confirmed = sorted((j for j, m in matches.items()
                            if m.verified and similarities[j] < SAME_PHOTO),
                           key=lambda j: -matches[j].score)[:self.expansion]
        expanded = similarities.astype(np.float64)
        if confirmed:
            expanded = (expanded + sum(gallery.similarities_of(j) for j in confirmed)) \
                / (1 + len(confirmed))
        rows = np.array([pair_evidence(similarities[j], expanded[j], matches.get(j),
                                       self.features)
                         for j in range(len(gallery))], np.float64)
        return Ranking(np.zeros(len(gallery)), similarities, expanded,
                       rows.reshape(len(gallery), len(self.features)), matches)

    def rank(self, query: Item, gallery: ReferenceSet) -> Ranking:
        """Probability that each gallery item shows the query's landmark."""
        if self.calibration is None:
            raise ValueError("this pipeline has no calibration; fit one with `lookalike "
                             "calibrate` or use a preset's")
        ranking = self.evidence(query, gallery)
        if len(gallery):
            ranking.probabilities = self.calibration.probability(ranking.evidence)
        return ranking

    def pair_probability(self, a: Item, b: Item) -> tuple[float, Match]:
        """One pair on its own evidence (no gallery to shortlist or expand with)."""
        similarity = float(self.global_method.score(a.global_feature, b.global_feature))
        match = self.match(a, b)
        row = np.array([pair_evidence(similarity, similarity, match, self.features)])
        return float(self.calibration.probability(row)[0]), match


# -- photo against landmarks (identify, verify) ----------------------------------------------------
IDENTIFY_FEATURES = ("log_similarity", "log_margin", "log_inliers_h", "log_inliers_f",
                     "sqrt_spread", "verified_references", "log_matches", "sqrt_area",
                     "inlier_ratio", "verified")
# The evidence `evaluate --identify --fit-calibration` fits on (monotone): the few features
# that carried over to held-out landmarks of both datasets with the fewest wrong answers
# (benchmarks/identify_carryover.py; docs/benchmarks.md, issue 24). A calibration may choose
# any of IDENTIFY_FEATURES.
IDENTIFY_EVIDENCE = ["log_similarity", "log_margin", "log_inliers_h", "log_inliers_f",
                     "log_matches", "sqrt_area"]


@dataclasses.dataclass
class LandmarkCandidate:
    """One landmark's case for a query: its references' best global similarity, the margin
    over the best other landmark, and the best verified match among its checked references."""

    landmark: str
    similarity: float
    margin: float
    match: Match | None = None
    reference: int | None = None  # gallery position of the best-matching reference
    verified_references: int = 0
    probability: float = 0.0
    logit: float = 0.0

    @property
    def inliers(self) -> int:
        return self.match.inliers if self.match is not None else 0

    def evidence(self, features: Sequence[str] = IDENTIFY_EVIDENCE) -> list[float]:
        """The calibration's inputs, in the order of `features` (names of IDENTIFY_FEATURES):
        similarity and margin as logs (see PAIR_EVIDENCE), then the best match's counts."""
        best = log_similarity(self.similarity)
        values = {"log_similarity": best,
                  "log_margin": best - log_similarity(self.similarity - self.margin),
                  "verified_references": float(self.verified_references)}
        m = self.match
        if m is not None:
            values.update(log_inliers_h=math.log1p(m.inliers_h),
                          log_inliers_f=math.log1p(m.inliers_f), sqrt_spread=math.sqrt(m.spread),
                          log_matches=math.log1p(m.matches),
                          sqrt_area=math.sqrt(max(m.area_a, 0.0)), inlier_ratio=m.inlier_ratio,
                          verified=float(m.verified))
        return [values.get(name, 0.0) for name in features]


def landmark_candidates(pipeline: Pipeline, query: Item, gallery: ReferenceSet,
                        landmark_of: Sequence[str], verify_landmarks: int = 4,
                        per_landmark: int = 2, only: str | None = None,
                        exclude: int | None = None, negative: str | None = None
                        ) -> list[LandmarkCandidate]:
    """The `verify_landmarks` landmarks whose references are globally most similar to the
    query (or just `only`), each verified on its `per_landmark` most similar references.
    `exclude` leaves one gallery position out (the query itself, in leave-one-out). The
    `negative` label's references (photos of no landmark) are never a candidate, but they
    compete in every candidate's margin: a query most like a negative leans to unknown."""
    similarities = np.asarray(gallery.index.scores(query.global_feature), np.float64)
    if exclude is not None:
        similarities[exclude] = -np.inf
    ranking = LandmarkRanking(similarities, landmark_of)
    chosen = [only] if only is not None else \
        [landmark for landmark in ranking.landmarks if landmark != negative][:verify_landmarks]
    references = {landmark: ranking.references(landmark, per_landmark) for landmark in chosen}
    # One verify call for every landmark's references: a batching matcher gets them together.
    matches = pipeline.verify(query, gallery, [j for refs in references.values() for j in refs])
    candidates = []
    for landmark in chosen:
        refs = references[landmark]
        similarity = ranking.best.get(landmark, 0.0)
        candidate = LandmarkCandidate(landmark, similarity, similarity - ranking.best_other(landmark),
                                      reference=refs[0] if refs else None)
        for position, match in ((j, matches[j]) for j in refs):
            candidate.verified_references += int(match.verified)
            if candidate.match is None or match.score > candidate.match.score:
                candidate.match, candidate.reference = match, position
        candidates.append(candidate)
    return candidates


class LandmarkRanking:
    """A query's gallery similarities grouped by landmark: the landmarks by their best
    reference, each one's best similarity, and its references best first.

    Vectorised over integer label codes (a Python loop over a 10,000-reference gallery cost
    10 ms a query); the codes of the last labels are kept, since a server asks with the same
    labels every time (compared by value: a list edited in place is not mistaken for it)."""

    _last: tuple = (None, None, None)

    def __init__(self, similarities: np.ndarray, landmark_of: Sequence[str]):
        names, codes = self._codes(landmark_of)
        order = np.argsort(-similarities, kind="stable")
        self.order = order[np.isfinite(similarities[order])]
        self.ranked_codes = codes[self.order]
        _, first = np.unique(self.ranked_codes, return_index=True)
        first.sort()
        self.names = names
        self.landmarks = [str(names[self.ranked_codes[i]]) for i in first]
        self.best = {landmark: float(similarities[self.order[i]])
                     for landmark, i in zip(self.landmarks, first)}

    @classmethod
    def _codes(cls, landmark_of: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        labels = tuple(landmark_of)
        last, names, codes = cls._last
        if last != labels:
            names, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
            cls._last = (labels, names, codes)
        return names, codes

    def references(self, landmark: str, count: int) -> list[int]:
        """The landmark's `count` most similar gallery positions, best first."""
        code = np.searchsorted(self.names, landmark)
        if code >= len(self.names) or self.names[code] != landmark:
            return []
        return self.order[self.ranked_codes == code][:count].tolist()

    def best_other(self, landmark: str) -> float:
        """The best similarity of any other landmark (0 when there is none)."""
        return next((self.best[other] for other in self.landmarks if other != landmark), 0.0)
