"""What comparing and evaluating produce, apart from how they are computed and written:
`compare` and `evaluate` build these, the reports write them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SimilarityMatrix:
    """Scores of one method: rows are queries, columns gallery photos, larger = more similar."""

    method: str
    queries: list[str]
    gallery: list[str]
    scores: np.ndarray


@dataclass
class CompareResult:
    matrices: dict[str, SimilarityMatrix]
    errors: dict[str, str] = field(default_factory=dict)  # path -> reason


@dataclass(frozen=True)
class MethodScores:
    """How well one method (in one colour mode) told the landmarks apart: the typed view of
    a result row (`row` has every figure, timings included)."""

    method: str  # its label, e.g. "augnet" or "augnet (gray)"
    gray: bool
    map: float  # mean average precision over the queries
    p_at_1: float  # share of queries whose best match shows the same landmark
    roc_auc: float  # over all pairs
    tpr_at_fpr1: float  # same-landmark pairs found at a 1% false-positive rate
    ap_per_landmark: dict[str, float]
    row: dict[str, Any]


class EvaluationResult(list):
    """The result rows (one dict per method and colour mode), plus what the reports need:
    the evaluated `paths` and `labels`, one `SimilarityMatrix` per row and unreadable files."""

    def __init__(self, rows, paths, labels, matrices, errors, root):
        super().__init__(rows)
        self.paths: list[str] = paths
        self.labels: list[str] = labels
        self.matrices: dict[str, SimilarityMatrix] = matrices
        self.errors: dict[str, str] = errors
        self.root: str = root  # names in the matrices are relative to this folder

    def scores(self, method: str, gray: bool = False) -> MethodScores:
        """The figures of one evaluated method by name (KeyError if it was not evaluated)."""
        for row in self:
            if row["name"] == method and row["gray"] == gray:
                return MethodScores(row["method"], row["gray"], row["map"], row["p_at_1"],
                                    row["roc_auc"], row["tpr_at_fpr1"], row["ap_per_landmark"],
                                    row)
        raise KeyError(f"{method} (gray={gray}) was not evaluated; evaluated: "
                       f"{', '.join(row['method'] for row in self)}")
