"""The pipeline's grouping of a gallery by landmark, against the plain loop it replaced."""

from __future__ import annotations

import numpy as np

from lookalike.retrieval.pipeline import LandmarkRanking


def grouped_by_loop(similarities, landmark_of):
    groups: dict[str, list[int]] = {}
    for position in np.argsort(-similarities, kind="stable"):
        if np.isfinite(similarities[position]):
            groups.setdefault(landmark_of[position], []).append(int(position))
    return groups


def test_landmark_ranking_equals_the_plain_loop():
    rng = np.random.default_rng(3)
    for size in (0, 1, 7, 500):
        landmark_of = [f"landmark-{rng.integers(6)}" for _ in range(size)]
        similarities = rng.random(size).round(2)  # ties, resolved by position as before
        similarities[rng.random(size) < 0.1] = -np.inf  # left out (the query itself)
        groups = grouped_by_loop(similarities, landmark_of)
        ranking = LandmarkRanking(similarities, landmark_of)
        assert ranking.landmarks == list(groups)
        for landmark, refs in groups.items():
            assert ranking.references(landmark, 3) == refs[:3]
            assert ranking.best[landmark] == similarities[refs[0]]
            others = [similarities[r[0]] for lm, r in groups.items() if lm != landmark]
            assert ranking.best_other(landmark) == max(others, default=0.0)
        assert ranking.references("nowhere", 2) == []


def test_landmark_ranking_sees_labels_edited_in_place():
    labels = ["a", "b", "a"]
    similarities = np.array([0.9, 0.5, 0.1])
    assert LandmarkRanking(similarities, labels).references("a", 2) == [0, 2]
    labels[2] = "b"  # the same list object, edited: the cached codes must not be reused
    assert LandmarkRanking(similarities, labels).references("b", 2) == [1, 2]
