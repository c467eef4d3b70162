"""Retrieval and verification metrics, as pure functions on numpy arrays.

Every curve is taken over *distinct* score thresholds, with tied scores grouped into one step,
so that ties can neither flatter nor punish a method by the order of the files. Average
precision is the step-wise sum of scikit-learn's `average_precision_score`; ROC-AUC counts a
tied positive/negative pair as half right, as the trapezoid over the ROC points does.

`retrieval_metrics` applies lookalike's evaluation protocol to one similarity matrix; all
accuracy figures the project quotes come from it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

DISTRACTOR = "distractor"  # the label of photos that show no landmark; never a positive


def _as_arrays(scores: Sequence[float], labels: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return s, y


def threshold_counts(
    scores: Sequence[float], labels: Sequence[bool]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct score t, high to low: (t, positives with score >= t, all with score >= t)."""
    s, y = _as_arrays(scores, labels)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1] if s.size else np.array([], int)
    true_positives = np.cumsum(y)[last_of_group]
    predicted = last_of_group + 1
    return s[last_of_group], true_positives.astype(np.float64), predicted.astype(np.float64)


def average_precision(scores: Sequence[float], relevant: Sequence[bool]) -> float:
    """Sum over distinct thresholds of (recall gain) x precision; NaN when nothing is relevant."""
    _, tp, predicted = threshold_counts(scores, relevant)
    total = tp[-1] if tp.size else 0.0
    if total == 0:
        return float("nan")
    recall = tp / total
    precision = tp / predicted
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def precision_at_1(scores: Sequence[float], relevant: Sequence[bool]) -> float:
    """Share of relevant items among those tied at the top score (the expected P@1 under a
    random tie-break, so a method that gives everything the same score gets no free hit)."""
    s, y = _as_arrays(scores, relevant)
    if s.size == 0:
        return float("nan")
    top = s == s.max()
    return float(y[top].mean())


def roc_curve(
    scores: Sequence[float], labels: Sequence[bool]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) from (0, 0) at threshold +inf down to every distinct score."""
    thresholds, tp, predicted = threshold_counts(scores, labels)
    fp = predicted - tp
    positives = tp[-1] if tp.size else 0.0
    negatives = fp[-1] if fp.size else 0.0
    tpr = tp / positives if positives else np.zeros_like(tp)
    fpr = fp / negatives if negatives else np.zeros_like(fp)
    return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, thresholds]


def precision_recall_curve(
    scores: Sequence[float], labels: Sequence[bool]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) at every distinct score, high threshold first."""
    thresholds, tp, predicted = threshold_counts(scores, labels)
    positives = tp[-1] if tp.size else 0.0
    recall = tp / positives if positives else np.zeros_like(tp)
    return tp / predicted, recall, thresholds


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve; a tie between a positive and a negative counts one half."""
    fpr, tpr, _ = roc_curve(scores, labels)
    if tpr[-1] == 0 or fpr[-1] == 0:
        return float("nan")  # needs both classes
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def tpr_at_fpr(
    scores: Sequence[float], labels: Sequence[bool], max_fpr: float = 0.01
) -> tuple[float, float]:
    """Highest true-positive rate whose false-positive rate is <= `max_fpr`, and the threshold
    (accept score >= threshold) that gives it; +inf when no threshold accepts anything."""
    fpr, tpr, thresholds = roc_curve(scores, labels)
    allowed = np.flatnonzero(fpr <= max_fpr)
    best = allowed[np.argmax(tpr[allowed])]  # first maximum: the strictest such threshold
    return float(tpr[best]), float(thresholds[best])


def best_f1_threshold(scores: Sequence[float], labels: Sequence[bool]) -> tuple[float, float]:
    """Best F1 over all thresholds (accept score >= threshold), and that threshold."""
    thresholds, tp, predicted = threshold_counts(scores, labels)
    positives = tp[-1] if tp.size else 0.0
    if positives == 0:
        return float("nan"), float("nan")
    f1 = 2.0 * tp / (predicted + positives)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def pair_scores(matrix: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every unordered pair i < j: (mean of both directions' scores, same landmark?)."""
    m = np.asarray(matrix, dtype=np.float64)
    labels = np.asarray(labels, dtype=object)
    if m.shape != (labels.size, labels.size):
        raise ValueError(f"matrix is {m.shape}, expected {labels.size} x {labels.size}")
    i, j = np.triu_indices(labels.size, k=1)
    scores = (m[i, j] + m[j, i]) / 2.0
    positive = (labels[i] == labels[j]) & (labels[i] != DISTRACTOR)
    return scores, positive.astype(bool)


def query_indices(labels: Sequence[str]) -> list[int]:
    """Photos that are queries: their label is a landmark with at least two photos."""
    counts = Counter(labels)
    return [i for i, label in enumerate(labels) if label != DISTRACTOR and counts[label] >= 2]


def retrieval_metrics(matrix: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """The evaluation protocol on an N x N matrix (row = query, larger = more similar).

    Retrieval: each query ranks every other photo, distractors included, by its row's scores;
    mAP and P@1 average over queries, `ap_per_landmark` over each landmark's queries.
    Verification: every unordered pair, scored by the mean of both directions, positive when
    both photos show the same landmark.
    """
    m = np.asarray(matrix, dtype=np.float64)
    labels = list(labels)
    n = len(labels)
    if m.shape != (n, n):
        raise ValueError(f"matrix is {m.shape}, expected {n} x {n}")
    label_array = np.asarray(labels, dtype=object)
    queries = query_indices(labels)
    per_query_ap, per_query_p1 = [], []
    for q in queries:
        others = np.r_[0:q, q + 1:n]
        relevant = label_array[others] == labels[q]
        per_query_ap.append(average_precision(m[q, others], relevant))
        per_query_p1.append(precision_at_1(m[q, others], relevant))
    by_landmark: dict[str, list[float]] = {}
    for q, ap in zip(queries, per_query_ap):
        by_landmark.setdefault(labels[q], []).append(ap)
    scores, positive = pair_scores(m, labels)
    tpr1, threshold1 = tpr_at_fpr(scores, positive, 0.01)
    f1, threshold_f1 = best_f1_threshold(scores, positive)
    nan = float("nan")
    return {
        "photos": n,
        "queries": len(queries),
        "map": float(np.mean(per_query_ap)) if queries else nan,
        "p_at_1": float(np.mean(per_query_p1)) if queries else nan,
        "roc_auc": roc_auc(scores, positive),
        "pair_ap": average_precision(scores, positive) if positive.any() else nan,
        "tpr_at_fpr1": tpr1,
        "threshold_fpr1": threshold1,
        "best_f1": f1,
        "threshold_best_f1": threshold_f1,
        "positive_pairs": int(positive.sum()),
        "negative_pairs": int((~positive).sum()),
        "ap_per_landmark": {label: float(np.mean(aps)) for label, aps in sorted(by_landmark.items())},
        "ap_per_query": dict(zip(queries, map(float, per_query_ap))),
    }
