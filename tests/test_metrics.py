"""Metrics on hand-computed cases (ties included) and against scikit-learn's implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from lookalike.evaluation.metrics import (
    DISTRACTOR,
    average_precision,
    best_f1_threshold,
    pair_scores,
    precision_at_1,
    query_indices,
    retrieval_metrics,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)


# -- average precision ---------------------------------------------------------------------------
def test_average_precision_without_ties():
    # relevant at ranks 1 and 3: (1/1 + 2/3) / 2
    assert average_precision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)


def test_average_precision_groups_ties_whatever_the_file_order():
    # Ranks 1-2 tied (one relevant), rank 3 relevant. Grouped: at the tie 1/2 precision for
    # recall 1/2, then 2/3 for the rest: (1/2 + 2/3) / 2. Neither order may change that.
    expected = (1 / 2 + 2 / 3) / 2
    assert average_precision([0.9, 0.9, 0.5], [1, 0, 1]) == pytest.approx(expected)
    assert average_precision([0.9, 0.9, 0.5], [0, 1, 1]) == pytest.approx(expected)


def test_average_precision_all_tied_is_the_base_rate():
    assert average_precision([1, 1, 1, 1], [1, 0, 0, 0]) == pytest.approx(0.25)


def test_average_precision_of_nothing_relevant_is_nan():
    assert math.isnan(average_precision([0.3, 0.2], [0, 0]))


# -- precision at 1 --------------------------------------------------------------------------------
def test_precision_at_1():
    assert precision_at_1([0.2, 0.9, 0.5], [0, 1, 0]) == 1.0
    assert precision_at_1([0.2, 0.9, 0.5], [1, 0, 1]) == 0.0


def test_precision_at_1_shares_a_tied_top_fairly():
    assert precision_at_1([0.9, 0.9, 0.9, 0.1], [1, 0, 0, 1]) == pytest.approx(1 / 3)


# -- ROC ---------------------------------------------------------------------------------------------
def test_roc_auc_counts_ties_as_half():
    # positives 3, 2; negatives 2, 1: pairs (3>2), (3>1), (2=2 -> 1/2), (2>1) -> 3.5 / 4
    assert roc_auc([3, 2, 2, 1], [1, 1, 0, 0]) == pytest.approx(3.5 / 4)
    assert roc_auc([5, 5, 5], [1, 0, 1]) == pytest.approx(0.5)


def test_roc_curve_points():
    fpr, tpr, thresholds = roc_curve([3, 2, 2, 1], [1, 1, 0, 0])
    assert fpr.tolist() == [0, 0, 0.5, 1]
    assert tpr.tolist() == [0, 0.5, 1, 1]
    assert thresholds.tolist() == [math.inf, 3, 2, 1]


def test_tpr_at_fpr_and_its_threshold():
    # 100 negatives at 0..99, 4 positives at 99.5, 98.5, 50.5, 10.5.
    # At threshold 98.5, one negative (99) passes: FPR 1/100 = 1%, TPR 2/4.
    negatives = np.arange(100, dtype=float)
    positives = np.array([99.5, 98.5, 50.5, 10.5])
    scores = np.r_[negatives, positives]
    labels = np.r_[np.zeros(100), np.ones(4)]
    assert tpr_at_fpr(scores, labels, 0.01) == (0.5, 98.5)
    # below 1% nothing but the top positive: threshold 99.5, TPR 1/4
    assert tpr_at_fpr(scores, labels, 0.005) == (0.25, 99.5)


def test_tpr_at_fpr_when_no_threshold_qualifies():
    tpr, threshold = tpr_at_fpr([1, 1, 0], [1, 0, 0], 0.01)
    assert tpr == 0.0 and threshold == math.inf


def test_best_f1_threshold():
    # threshold 0.8 -> tp 2, fp 1, fn 0 -> F1 = 4/5; any other threshold is worse
    f1, threshold = best_f1_threshold([0.9, 0.8, 0.8, 0.1], [1, 1, 0, 0])
    assert (f1, threshold) == (pytest.approx(0.8), 0.8)


# -- against scikit-learn --------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(25))
def test_agrees_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(5, 80))
    scores = rng.integers(0, 8, size).astype(float)  # few distinct values: plenty of ties
    if seed % 2:
        scores = scores + rng.normal(0, 0.01, size)
    labels = rng.random(size) < 0.35
    labels[:2] = [True, False]
    assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores))
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    sk_fpr, sk_tpr, sk_thresholds = sk_roc_curve(labels, scores, drop_intermediate=False)
    fpr, tpr, thresholds = roc_curve(scores, labels)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thresholds[1:], sk_thresholds[1:])
    f1, threshold = best_f1_threshold(scores, labels)
    assert f1 == pytest.approx(f1_score(labels, scores >= threshold))
    best_brute = max(f1_score(labels, scores >= t) for t in np.unique(scores))
    assert f1 == pytest.approx(best_brute)
    tpr1, threshold1 = tpr_at_fpr(scores, labels, 0.1)
    accepted = scores >= threshold1
    assert (accepted & ~labels).sum() / (~labels).sum() <= 0.1
    assert tpr1 == pytest.approx((accepted & labels).sum() / labels.sum())
    assert tpr1 == pytest.approx(sk_tpr[sk_fpr <= 0.1].max())


# -- the protocol ----------------------------------------------------------------------------------
def test_pair_scores_average_both_directions_and_never_pair_distractors():
    labels = ["a", "a", DISTRACTOR, DISTRACTOR]
    matrix = np.array([[9, 4, 1, 0], [2, 9, 0, 0], [1, 0, 9, 6], [0, 0, 8, 9]], float)
    scores, positive = pair_scores(matrix, labels)
    # pairs in order (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    assert scores.tolist() == [3, 1, 0, 0, 0, 7]
    assert positive.tolist() == [True, False, False, False, False, False]


def test_queries_are_photos_of_landmarks_with_two_or_more_photos():
    assert query_indices(["a", "b", "a", DISTRACTOR, "c", "c"]) == [0, 2, 4, 5]


def test_retrieval_metrics_by_hand():
    labels = ["a", "a", "b", "b", DISTRACTOR]
    matrix = np.array([
        [0, 5, 1, 1, 6],  # a0: distractor first, then a1 -> AP 1/2, P@1 0
        [5, 0, 1, 1, 0],  # a1: a0 first -> AP 1
        [1, 1, 0, 3, 3],  # b2: b3 tied with the distractor at the top -> AP 1/2, P@1 1/2
        [1, 1, 3, 0, 0],  # b3: b2 first -> AP 1
        [0, 0, 0, 0, 0],  # the distractor is no query
    ], float)
    result = retrieval_metrics(matrix, labels)
    assert result["queries"] == 4
    assert result["map"] == pytest.approx((0.5 + 1 + 0.5 + 1) / 4)
    assert result["p_at_1"] == pytest.approx((0 + 1 + 0.5 + 1) / 4)
    assert result["ap_per_landmark"] == {"a": pytest.approx(0.75), "b": pytest.approx(0.75)}
    assert result["positive_pairs"] == 2 and result["negative_pairs"] == 8
    scores, positive = pair_scores(matrix, labels)
    assert result["roc_auc"] == pytest.approx(roc_auc_score(positive, scores))
    assert result["pair_ap"] == pytest.approx(average_precision_score(positive, scores))
    # positives score 5 and 3; the best negative 3 (a0-distractor mean of 6 and 0) ties one
    assert result["tpr_at_fpr1"] == 0.5 and result["threshold_fpr1"] == 5.0
    assert result["best_f1"] == pytest.approx(f1_score(positive, scores >= result["threshold_best_f1"]))


def test_retrieval_metrics_rejects_a_wrong_shape():
    with pytest.raises(ValueError):
        retrieval_metrics(np.zeros((3, 3)), ["a", "a"])
