"""One calibrated probability that two photos show the same landmark, from several methods.

Why: each method fails differently. The global embedding finds night shots and distant views
that share too few keypoints, but also likes the same sky and street; geometric verification
is almost never fooled, but finds nothing when the views differ too much. A logistic model
over per-pair evidence (global similarity, similarity after query expansion, verified inliers)
turns both into one probability, fitted on labelled pairs by `lookalike calibrate`.

Ranking stays fast: every gallery photo gets the cheap global similarity, only the `shortlist`
most similar ones are verified, and the gallery photos that verify become a query expansion
(their global vectors are averaged into the query's), so photos of the same landmark that
look unlike the query but like its verified matches move up: retrieval by the gallery itself.
The shipped model verifies up to 150 candidates (all of the dev set): with the AugNet global
vector as shortlist, verifying only the top 40 lost too many true pairs (dev mAP 0.51 against
0.65). A smaller shortlist trades accuracy for speed: `lookalike calibrate --shortlist K`.

API for other modules (the index, `fused` method, calibrate):
- `FusionModel.load(path=None)`: the model (default: the one shipped in `lookalike/data/`).
- `FusedScorer(model, verifier).rank(query, gallery)`: a `Ranking` with the probability of
  every gallery item, the global similarities and the `VerifyResult` of the shortlisted ones.
  `query`/`gallery` items are feature dicts holding "global" (unit vector) and the `verified`
  local arrays ("keypoints", "descriptors", "size", "scale"). With a `store` (the feature
  cache) and a "content_key" in each item, the counts of every verification are kept across
  runs, so a re-run ranks without verifying again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.methods.verified import PairMemo, Verified, VerifyResult

DEFAULT_MODEL = Path(__file__).resolve().parent / "data" / "fused_model.json"
FEATURE_NAMES = ["global", "global_expanded", "log_inliers_h", "log_inliers_f", "log_matches",
                 "verified"]
SAME_PHOTO = 0.9999  # global similarity at which two items are taken as the same photo


@dataclasses.dataclass
class FusionModel:
    """Logistic regression over standardised pair evidence; JSON so it can be read and diffed."""

    coef: list[float]
    intercept: float
    mean: list[float]
    scale: list[float]
    features: list[str] = dataclasses.field(default_factory=lambda: list(FEATURE_NAMES))
    shortlist: int = 150
    expansion: int = 5
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def logit(self, evidence: np.ndarray) -> np.ndarray:
        z = (np.asarray(evidence, np.float64) - np.array(self.mean)) / np.array(self.scale)
        return z @ np.array(self.coef) + self.intercept

    def probability(self, evidence: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logit(evidence)))

    def save(self, path: str | os.PathLike) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(dataclasses.asdict(self), handle, indent=2)
            handle.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> FusionModel:
        with open(path or DEFAULT_MODEL, encoding="utf-8") as handle:
            data = json.load(handle)
        model = cls(**data)
        if model.features != FEATURE_NAMES:
            raise ValueError(f"{path}: model features {model.features} != {FEATURE_NAMES}")
        return model


@dataclasses.dataclass
class Ranking:
    """One query against a gallery: probability per gallery item, and the evidence behind it."""

    probabilities: np.ndarray
    similarities: np.ndarray
    expanded: np.ndarray
    evidence: np.ndarray
    verified: dict[int, VerifyResult]

    def order(self) -> np.ndarray:
        return np.argsort(-self.probabilities, kind="stable")


def evidence_row(similarity: float, expanded: float, result: VerifyResult | None) -> list[float]:
    """The model's inputs for one pair; an unverified (not shortlisted) pair has no matches."""
    if result is None:
        return [similarity, expanded, 0.0, 0.0, 0.0, 0.0]
    return [similarity, expanded, math.log1p(result.inliers_h), math.log1p(result.inliers_f),
            math.log1p(result.matches), float(result.verified)]


_COUNTS = ("score", "inliers", "matches", "inliers_h", "inliers_f", "verified")


def result_counts(result: VerifyResult) -> bytes:
    """What the ranking reads of a verification, as a small JSON record for the cache."""
    return json.dumps({name: float(getattr(result, name)) for name in _COUNTS}).encode()


def counts_result(data: bytes) -> VerifyResult:
    counts = json.loads(data)
    empty_points = np.zeros((0, 2), np.float32)
    empty_index = np.zeros(0, np.int64)
    return VerifyResult(
        score=counts["score"], inliers=int(counts["inliers"]), matches=int(counts["matches"]),
        inliers_h=int(counts["inliers_h"]), inliers_f=int(counts["inliers_f"]), cells_a=0,
        cells_b=0, index_a=empty_index, index_b=empty_index, points_a=empty_points,
        points_b=empty_points, verified=bool(counts["verified"]))


def _content_key(item: dict) -> str | None:
    key = item.get("content_key")
    return None if key is None else str(key)


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float64)
    return vectors / (np.linalg.norm(vectors, axis=-1, keepdims=True) + 1e-12)


class FusedScorer:
    """Shortlist by global similarity, verify the shortlist, expand the query, then calibrate."""

    def __init__(self, model: FusionModel | None = None, verifier: Verified | None = None,
                 shortlist: int | None = None, expansion: int | None = None, store=None):
        self.model = model
        self.verifier = verifier or Verified()
        self.shortlist = shortlist
        self.expansion = expansion
        self.store = store  # a FeatureCache: verification counts survive the run

    def verify_candidates(self, query: dict, gallery: Sequence[dict],
                          candidates: Sequence[int]) -> dict[int, VerifyResult]:
        """Verify the query against each candidate, reading and writing the store when the
        items carry their content keys (a pair's counts do not depend on which photo is the
        query: see `Verified.verify_either_way`). Results read back hold the counts the
        ranking uses, not the inlier points."""
        candidates = [int(j) for j in candidates]
        query_key = _content_key(query)
        keys = [_content_key(gallery[j]) for j in candidates]
        if self.store is None or query_key is None or None in keys:
            return {j: self.verify(query, gallery[j]) for j in candidates}
        prefix = f"verify:{self.verifier.score_key()}"
        names = {j: f"{prefix}:{min(query_key, key)}:{max(query_key, key)}"
                 for j, key in zip(candidates, keys)}
        found = self.store.get_many(set(names.values()))
        results, fresh = {}, []
        for j in candidates:
            if names[j] in found:
                try:
                    results[j] = counts_result(found[names[j]])
                    continue
                except (ValueError, KeyError, TypeError):  # unreadable entry: verify again
                    pass
            results[j] = self.verify(query, gallery[j])
            fresh.append((names[j], result_counts(results[j])))
        self.store.put_many(fresh)
        return results

    def verify(self, a: dict, b: dict) -> VerifyResult:
        """`verifier.verify_either_way`, each pair (and its reverse) verified once while the
        scorer lives."""
        memo = self.__dict__.setdefault("_pairs", PairMemo(200_000))
        return memo.get(a, b, self.verifier.verify_either_way, VerifyResult.swapped)

    def _settings(self) -> tuple[int, int]:
        model = self.model
        shortlist = self.shortlist if self.shortlist is not None else (
            model.shortlist if model else 150)
        expansion = self.expansion if self.expansion is not None else (
            model.expansion if model else 5)
        return shortlist, expansion

    def evidence(self, query: dict, gallery: Sequence[dict],
                 gallery_vectors: np.ndarray | None = None) -> tuple[np.ndarray, Ranking]:
        """Evidence rows (one per gallery item) and the partial ranking they came from."""
        shortlist, expansion = self._settings()
        vectors = unit(gallery_vectors if gallery_vectors is not None
                       else np.stack([item["global"] for item in gallery]))
        q = unit(query["global"])
        similarities = vectors @ q
        candidates = np.argsort(-similarities, kind="stable")[:shortlist]
        results = self.verify_candidates(query, gallery, candidates)
        # Query expansion by the verified gallery photos (never by the query itself).
        confirmed = sorted((j for j, r in results.items()
                            if r.verified and similarities[j] < SAME_PHOTO),
                           key=lambda j: -results[j].score)[:expansion]
        expanded_query = unit(q + vectors[confirmed].sum(axis=0)) if confirmed else q
        expanded = vectors @ expanded_query
        rows = np.array([evidence_row(similarities[j], expanded[j], results.get(j))
                         for j in range(len(gallery))], np.float64).reshape(-1, len(FEATURE_NAMES))
        ranking = Ranking(np.zeros(len(gallery)), similarities, expanded, rows, results)
        return rows, ranking

    def rank(self, query: dict, gallery: Sequence[dict],
             gallery_vectors: np.ndarray | None = None) -> Ranking:
        """Probability that each gallery item shows the query's landmark."""
        if self.model is None:
            self.model = FusionModel.load()
        rows, ranking = self.evidence(query, gallery, gallery_vectors)
        ranking.probabilities = self.model.probability(rows) if len(rows) else np.zeros(0)
        return ranking

    def probability(self, query: dict, gallery: Sequence[dict]) -> np.ndarray:
        return self.rank(query, gallery).probabilities


def fit_model(rows: np.ndarray, same: np.ndarray, shortlist: int, expansion: int,
              info: dict[str, Any] | None = None, c: float = 1.0) -> FusionModel:
    """Logistic regression on evidence rows (one per query-gallery pair) and same-landmark flags."""
    from sklearn.linear_model import LogisticRegression

    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale < 1e-9] = 1.0
    classifier = LogisticRegression(C=c, max_iter=1000)
    classifier.fit((rows - mean) / scale, same.astype(int))
    return FusionModel(classifier.coef_[0].tolist(), float(classifier.intercept_[0]),
                       mean.tolist(), scale.tolist(), list(FEATURE_NAMES), shortlist, expansion,
                       dict(info or {}))
