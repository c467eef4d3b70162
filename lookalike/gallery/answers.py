"""What `identify` and `verify` answer: candidate landmarks with calibrated probabilities,
the decision, and the evidence (where the landmark matched), in one JSON shape that the CLI,
the Python API and HTTP all print.

The matched region (`bounding_poly`) is computed here once, from the verified inlier points,
so `identify --json`, `verify --json`, `explain --json` and the HTTP answer carry the same
polygon; and "verified" means geometric evidence (`geometric`), never similarity alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from lookalike.matching.geometry import Match

UNKNOWN = "unknown"
MAX_POINTS = 300  # inlier points returned as evidence
Point = tuple[float, float]


@dataclass
class Candidate:
    landmark: str
    probability: float
    similarity: float
    margin: float
    inliers: int
    spread: float
    reference: int | None = None  # best-matching reference (index id)
    distance_km: float | None = None
    match: Match | None = None  # points in each photo's original pixels
    logit: float = 0.0
    text: float | None = None  # how well signboard text names the landmark (use_text)
    evidence_row: list[float] = field(default_factory=list)

    def evidence(self) -> list[float]:
        return self.evidence_row


# -- answers ---------------------------------------------------------------------------------------
@dataclass
class Answer:
    """The JSON object printed per photo (and returned by the HTTP API)."""

    photo: str
    landmark: str
    probability: float
    candidates: list[Candidate]
    size: tuple[int, int] | None = None  # query width, height in pixels (evidence coordinates)
    gps: tuple[float, float] | None = None
    verified: bool | None = None  # set by verify
    references: dict[int, str] = field(default_factory=dict)  # reference id -> path

    def to_json(self, names: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "photo": self.photo,
            "landmark": self.landmark,
            "probability": round(self.probability, 4),
            "candidates": [
                {key: value for key, value in {
                    "landmark": c.landmark,
                    "probability": round(c.probability, 4),
                    "similarity": round(c.similarity, 4),
                    "inliers": c.inliers,
                    "distance_km": None if c.distance_km is None else round(c.distance_km, 3),
                    "text": None if c.text is None else round(c.text, 3),
                }.items() if value is not None}
                for c in self.candidates
            ],
        }
        if self.verified is not None:
            data["verified"] = self.verified
        data["size"] = list(self.size) if self.size else None
        polygon = bounding_poly(self)
        data["bounding_poly"] = [list(point) for point in polygon] if polygon else None
        if self.gps is not None:
            data["gps"] = {"lat": self.gps[0], "lon": self.gps[1]}
        if names is not None and self.landmark in names:
            data["names"] = names[self.landmark]
        evidence = self.evidence()
        if evidence is not None:
            data["evidence"] = evidence
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Answer:
        """Rebuild an answer (without its inlier points) from `to_json` output."""
        candidates = [Candidate(c["landmark"], c["probability"], c.get("similarity", 0.0), 0.0,
                                c.get("inliers", 0), 0.0, None, c.get("distance_km"))
                      for c in data.get("candidates", [])]
        gps = (data["gps"]["lat"], data["gps"]["lon"]) if data.get("gps") else None
        return cls(data["photo"], data["landmark"], data["probability"], candidates,
                   gps=gps, verified=data.get("verified"))

    def evidence(self) -> dict[str, Any] | None:
        """Where the answered (or asked) landmark matched: inlier points and their box."""
        target = self.candidates[0] if self.candidates else None
        if target is None or target.match is None or target.match.inliers == 0:
            return None
        if self.landmark not in (target.landmark, UNKNOWN) or len(target.match.points_a) == 0:
            return None
        points = target.match.points_a
        step = max(1, len(points) // MAX_POINTS)
        x0, y0 = points.min(axis=0)
        x1, y1 = points.max(axis=0)
        return {
            "landmark": target.landmark,
            "reference": self.references.get(target.reference, None),
            "inliers": target.match.inliers,
            "size": list(self.size) if self.size else None,
            "box": [round(float(v), 1) for v in (x0, y0, x1, y1)],
            "points": [[round(float(x), 1), round(float(y), 1)] for x, y in points[::step]],
        }


def geometric(candidate: Candidate) -> bool:
    """Whether a candidate has geometric evidence: inliers that passed the verification."""
    match = candidate.match
    return match is not None and match.verified and match.inliers > 0


def positive(answer: Answer) -> bool:
    """Whether the answer names a landmark: identify's best, or a verify that passed."""
    if answer.verified is not None:
        return answer.verified
    return answer.landmark != UNKNOWN


def rounded(points: np.ndarray, limit: int) -> list[Point]:
    """At most `limit` points (evenly taken), to 0.1 pixel."""
    step = max(1, int(np.ceil(len(points) / limit)))
    return [(round(float(x), 1), round(float(y), 1)) for x, y in points[::step]]


def region_polygon(points: np.ndarray) -> list[Point] | None:
    """The convex hull of the verified points (a box around them when fewer than three)."""
    if len(points) == 0:
        return None
    if len(points) < 3:
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)
        return rounded(corners, 4)
    hull = cv2.convexHull(np.asarray(points, np.float32)).reshape(-1, 2)
    return rounded(hull, len(hull))


def bounding_poly(answer: Answer) -> list[Point] | None:
    """The matched region in the photo's pixels, where the answer names a landmark: the hull
    of the verified inliers with its best reference; None for unknown or a rejected verify."""
    best = answer.candidates[0] if answer.candidates else None
    if not positive(answer) or best is None or best.landmark != answer.landmark or \
            best.match is None:
        return None
    return region_polygon(best.match.points_a)


def decide(photo: str, candidates: list[Candidate], threshold: float, top: int) -> Answer:
    """The best candidate when it passes the threshold, else `unknown` (P = 1 - best)."""
    best = candidates[0] if candidates else None
    if best is not None and best.probability >= threshold:
        return Answer(photo, best.landmark, best.probability, candidates[:top])
    return Answer(photo, UNKNOWN, 1.0 - (best.probability if best else 0.0), candidates[:top])
