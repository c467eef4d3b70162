"""One logistic calibration: evidence in, probability out, fitted on labelled photos.

Why one module: photo-vs-photo (`fused`) and photo-vs-landmark (`identify`) both turn a few
numbers of evidence (global similarity, verified inliers, ...) into one probability with a
logistic model over standardised features. Both are fitted, stored as JSON and checked here.

A calibration records the global and local methods (names and feature settings) it was fitted
on. Evidence from other methods has other scales, so `check_methods` refuses such a pairing
instead of answering with probabilities that mean nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import InputError


class CalibrationError(InputError, ValueError):
    """A calibration that cannot be used here: unreadable, or fitted on other methods."""


def method_spec(method) -> dict[str, Any]:
    """What identifies a method's evidence scale: its name and feature settings."""
    return {"name": method.name,
            "settings": json.loads(json.dumps(method.calibration_settings(), default=str))}


@dataclasses.dataclass
class Calibration:
    """P(same | evidence) = sigmoid(coef . (x - mean) / scale + intercept)."""

    features: list[str]
    coef: list[float]
    intercept: float
    mean: list[float]
    scale: list[float]
    threshold: float = 0.5
    methods: dict[str, Any] = dataclasses.field(default_factory=dict)  # "global", "local" specs
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def logit(self, evidence: np.ndarray) -> np.ndarray:
        x = np.asarray(evidence, np.float64).reshape(-1, len(self.features))
        return ((x - np.array(self.mean)) / np.array(self.scale)) @ np.array(self.coef) \
            + self.intercept

    def probability(self, evidence: np.ndarray) -> np.ndarray:
        return sigmoid(self.logit(evidence))

    def check_methods(self, **methods) -> None:
        """Raise `CalibrationError` unless it was fitted on these methods (e.g. global=...,
        local=...), with the same feature settings."""
        for role, method in methods.items():
            expected = self.methods.get(role)
            if expected is None:
                continue
            actual = method_spec(method)
            if actual != expected:
                raise CalibrationError(
                    f"this calibration was fitted on {role} method {expected['name']} "
                    f"{expected['settings']}, not {actual['name']} {actual['settings']}; use "
                    f"the preset it belongs to or fit one (`lookalike calibrate`)")

    def save(self, path: str | os.PathLike) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=1, ensure_ascii=False)
                              + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike, features: Sequence[str] | None = None) -> Calibration:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            calibration = cls(**data)
        except FileNotFoundError:
            raise CalibrationError(f"{path}: no such calibration file") from None
        except (ValueError, TypeError) as error:
            raise CalibrationError(f"{path}: not a lookalike calibration ({error})") from None
        if features is not None and list(calibration.features) != list(features):
            raise CalibrationError(f"{path}: fitted on evidence {calibration.features}, this "
                                   f"needs {list(features)}")
        return calibration


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


def fit(evidence: np.ndarray, labels: np.ndarray, features: Sequence[str],
        methods: dict[str, Any] | None = None, threshold: float = 0.5, c: float = 1.0,
        info: dict[str, Any] | None = None, monotone: bool = False,
        weights: np.ndarray | None = None) -> Calibration:
    """Logistic regression of `labels` (bool per row) on standardised `evidence` rows.

    `monotone`: every coefficient >= 0, so more of any evidence never lowers the
    probability (each feature must be one where more means "more likely the same"). A free
    fit on few landmarks learns signs that only hold there (the shipped pair calibration of
    issue 14 gave the inliers' spread a negative weight) and does not carry over.
    `weights`: per-row sample weights (e.g. to weigh two datasets equally)."""
    x = np.asarray(evidence, np.float64).reshape(-1, len(features))
    y = np.asarray(labels, bool).reshape(-1)
    if y.all() or not y.any():
        raise CalibrationError("calibration needs both matching and non-matching examples")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    w = np.ones(len(y)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if monotone:
        coef, intercept = _fit_monotone(z, y, w, c)
    else:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=c, max_iter=2000)
        model.fit(z, y.astype(int), sample_weight=w)
        coef, intercept = model.coef_[0].tolist(), float(model.intercept_[0])
    return Calibration(list(features), coef, intercept, mean.tolist(), scale.tolist(),
                       threshold, dict(methods or {}), dict(info or {}))


def _fit_monotone(z: np.ndarray, y: np.ndarray, w: np.ndarray, c: float
                  ) -> tuple[list[float], float]:
    """L2-regularised logistic regression (as scikit-learn's, C = c) with coefficients >= 0,
    by L-BFGS-B."""
    from scipy.optimize import minimize

    sign = np.where(y, 1.0, -1.0)

    def loss(theta):
        coef, intercept = theta[:-1], theta[-1]
        margin = sign * (z @ coef + intercept)
        value = np.sum(w * np.logaddexp(0.0, -margin)) + 0.5 / c * coef @ coef
        slope = -w * sign * sigmoid(-margin)
        grad = np.r_[z.T @ slope + coef / c, slope.sum()]
        return value, grad

    bounds = [(0.0, None)] * z.shape[1] + [(None, None)]
    found = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B",
                     bounds=bounds, options={"maxiter": 5000})
    return found.x[:-1].tolist(), float(found.x[-1])
