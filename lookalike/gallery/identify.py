"""Identify and verify landmarks in photos against a gallery index, in two stages.

Why two stages: comparing a photo with every reference one by one (the study's way) costs a
local-feature match per reference. Here the index's global descriptor ranks every reference
(an ASMK inverted file by default), and only the best few landmarks are checked by its local
matcher with geometric verification, through the one retrieval pipeline
(`lookalike.retrieval.pipeline`). The evidence per candidate landmark (best global similarity, its
margin over the best other landmark, inlier counts and spread, references verified) goes
through the preset's identify calibration (`lookalike.retrieval.calibration`, fitted by `evaluate
--identify --fit-calibration`), giving a probability that the photo shows that landmark;
below the threshold the answer is `unknown`.

Where a photo carries EXIF GPS and a landmark has a location, each candidate reports the
distance; with `use_gps` a photo taken far away lowers that landmark's log-odds.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import math
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from lookalike.gallery.index import NEGATIVES, GalleryError, GalleryIndex
from lookalike.imaging.loading import ImageLoadError, LoadOptions, decode_image, read_bytes
from lookalike.retrieval.calibration import Calibration, CalibrationError, sigmoid
from lookalike.retrieval.pipeline import (
    IDENTIFY_EVIDENCE,
    Gallery,
    Item,
    LandmarkCandidate,
    Pipeline,
    landmark_candidates,
)

UNKNOWN = "unknown"
MAX_POINTS = 300  # inlier points returned as evidence


# -- settings --------------------------------------------------------------------------------------
@dataclass
class Settings:
    """How much work each query does, and when to answer `unknown` (None: the preset's)."""

    verify_landmarks: int | None = None  # landmarks of the ranking checked by local features
    verify_per_landmark: int | None = None  # references per landmark checked
    top: int = 3  # candidates reported
    threshold: float | None = None  # None: the calibration's threshold
    use_gps: bool = False
    use_text: bool = False  # read signboards (OCR) and count a landmark's name as evidence
    gps_radius_km: float = 1.0  # no penalty within this distance
    gps_weight: float = 3.0  # log-odds lost per doubling of the distance beyond the radius
    max_pixels: int = 40_000_000


# -- GPS -------------------------------------------------------------------------------------------
def read_gps(data: bytes) -> tuple[float, float] | None:
    """(latitude, longitude) from a photo's EXIF GPS block, or None."""
    try:
        gps = Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)
    except (OSError, ValueError, SyntaxError, TypeError, KeyError):  # no or broken EXIF
        return None
    try:
        def degrees(value) -> float:
            d, m, s = (float(v) for v in value)
            return d + m / 60.0 + s / 3600.0

        lat, lon = degrees(gps[2]), degrees(gps[4])
        if str(gps.get(1, "N")).upper().startswith("S"):
            lat = -lat
        if str(gps.get(3, "E")).upper().startswith("W"):
            lon = -lon
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
        return None
    return lat, lon


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in kilometres between two (lat, lon) points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + \
        math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(h)))


def gps_penalty(distance_km: float, settings: Settings) -> float:
    """Log-odds to subtract for a photo taken `distance_km` from the landmark."""
    if distance_km <= settings.gps_radius_km:
        return 0.0
    return settings.gps_weight * math.log2(distance_km / settings.gps_radius_km)


# -- local verification ----------------------------------------------------------------------------
@dataclass
class LocalMatch:
    """Geometric verification of the query against one reference, points in original pixels."""

    inliers: int = 0
    spread: float = 0.0  # grid cells covered by inliers
    query_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    ref_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))


def with_original_scale(local: dict, original_size: Sequence[int]) -> dict:
    """Set `scale` = feature pixels per original pixel (JPEGs may be decoded at reduced size)."""
    local = dict(local)
    local["scale"] = np.array([float(local["size"][0]) / max(1, original_size[0])], np.float32)
    return local


def feature_scale(feature: dict[str, np.ndarray]) -> float:
    return float(feature["scale"][0]) if "scale" in feature else 1.0


def local_match(match, query: dict, reference: dict) -> LocalMatch:
    """A pipeline `Match` with its points in each photo's original pixels."""
    return LocalMatch(int(match.inliers), float(match.spread),
                      np.asarray(match.points_a, np.float32) / feature_scale(query),
                      np.asarray(match.points_b, np.float32) / feature_scale(reference))


# -- ranking ---------------------------------------------------------------------------------------
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
    match: LocalMatch | None = None
    logit: float = 0.0
    text: float | None = None  # how well signboard text names the landmark (use_text)
    evidence_row: list[float] = field(default_factory=list)

    def evidence(self) -> list[float]:
        return self.evidence_row


def text_log_odds(evidence: float | None) -> float:
    from lookalike.methods.text import text_log_odds as fitted

    return fitted(evidence)


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
        if self.landmark not in (target.landmark, UNKNOWN) or len(target.match.query_points) == 0:
            return None
        points = target.match.query_points
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


def decide(photo: str, candidates: list[Candidate], threshold: float, top: int) -> Answer:
    """The best candidate when it passes the threshold, else `unknown` (P = 1 - best)."""
    best = candidates[0] if candidates else None
    if best is not None and best.probability >= threshold:
        return Answer(photo, best.landmark, best.probability, candidates[:top])
    return Answer(photo, UNKNOWN, 1.0 - (best.probability if best else 0.0), candidates[:top])


# -- the identifier --------------------------------------------------------------------------------
@dataclass
class QueryFeatures:
    item: Item  # the query's global and local features (local scaled to original pixels)
    size: tuple[int, int]
    gps: tuple[float, float] | None
    image: Image.Image | None = None
    text: dict | None = None  # the `text` method's feature (signboard text) with use_text


class Identifier:
    """Identify or verify photos against one open index; safe to share between threads."""

    def __init__(self, index: GalleryIndex | str | os.PathLike, settings: Settings | None = None,
                 calibration: Calibration | str | os.PathLike | None = None):
        from lookalike.retrieval.presets import get_preset

        self.index = index if isinstance(index, GalleryIndex) else GalleryIndex(index)
        self.settings = settings or Settings()
        self.global_method = self.index.global_method
        self.local_method = self.index.local_method
        self.preset = get_preset(self.index.preset)
        self.calibration = self._calibration(calibration)
        self.pipeline = Pipeline(self.global_method, self.local_method, None)
        self._model_lock = threading.Lock()
        self._gallery: Gallery | None = None

    def _calibration(self, calibration) -> Calibration:
        if isinstance(calibration, Calibration):
            chosen = calibration
        else:
            try:
                chosen = Calibration.load(calibration, IDENTIFY_EVIDENCE) if calibration \
                    else self.preset.calibration("identify", IDENTIFY_EVIDENCE)
            except CalibrationError as error:
                raise GalleryError(str(error)) from None
        try:
            chosen.check_methods(**{"global": self.global_method, "local": self.local_method})
        except CalibrationError as error:
            raise GalleryError(f"{self.index.path}: {error}") from None
        return chosen

    @property
    def threshold(self) -> float:
        return self.settings.threshold if self.settings.threshold is not None \
            else self.calibration.threshold

    def names(self) -> dict[str, dict[str, str]]:
        return {lid: lm.names for lid, lm in self.index.landmarks.items() if lid != NEGATIVES}

    def gallery(self) -> Gallery:
        """The index's references as the pipeline's gallery (local features read on demand)."""
        gallery = self._gallery
        if gallery is None or len(gallery) != len(self.index.ids):
            ids = self.index.ids
            items = [Item(feature, {}, self.index.references[int(rid)].content_hash)
                     for rid, feature in zip(ids, self.index.global_features)]
            gallery = Gallery(items, self.global_method,
                              lambda position: self.index.local_features(int(ids[position])),
                              index=self.index.search_index)
            self._landmark_of = [self.index.references[int(rid)].landmark for rid in ids]
            self._gallery = gallery
        return gallery

    # -- features ----------------------------------------------------------------------------
    def features_from_bytes(self, data: bytes, name: str, keep_image: bool = False,
                            settings: Settings | None = None) -> QueryFeatures:
        """Decode once and extract both roles' features; raises ImageLoadError for bad input."""
        from lookalike.features.contract import shares_local

        settings = settings or self.settings

        def decoded(method):  # exactly as the method's features are extracted everywhere else
            options = dataclasses.replace(method.load_options(), max_pixels=settings.max_pixels)
            return decode_image(data, name, options)

        image = decoded(self.local_method)
        original = image.info.get("original_size", image.size)
        with self._model_lock:  # one forward pass at a time: threads would fight for the cores
            local = self.local_method.extract(image)
            if shares_local(self.global_method, self.local_method):
                global_feature = self.global_method.aggregate(local)
            else:
                global_feature = self.global_method.extract(decoded(self.global_method))
        local = with_original_scale(local, original)
        text = None
        if settings.use_text:
            from lookalike.features.registry import get_method

            text = get_method("text").extract(image)
        return QueryFeatures(Item(global_feature, local), tuple(original), read_gps(data),
                             image if keep_image else None, text)

    def _text_fn(self, text: dict | None):
        """How well the photo's text names each landmark, each reading counting only for the
        landmarks it names best (`text_evidence_among`; `evaluate --identify --use-text`
        measures exactly this)."""
        if text is None:
            return None
        from lookalike.methods.text import landmark_names, text_evidence_among

        evidence = text_evidence_among(text, {
            landmark: landmark_names(entry.names)
            for landmark, entry in self.index.landmarks.items()})
        return evidence.get

    def _distance_fn(self, gps: tuple[float, float] | None):
        if gps is None:
            return None

        def distance(landmark: str) -> float | None:
            location = self.index.landmarks[landmark].location
            return haversine_km(gps, location) if location else None
        return distance

    # -- the two questions -------------------------------------------------------------------
    def candidates(self, query: QueryFeatures, settings: Settings,
                   only: str | None = None) -> list[Candidate]:
        """Verified candidate landmarks with calibrated probabilities, best first."""
        gallery = self.gallery()
        found = landmark_candidates(
            self.pipeline, query.item, gallery, self._landmark_of,
            settings.verify_landmarks or self.preset.verify_landmarks,
            settings.verify_per_landmark or self.preset.verify_per_landmark, only=only,
            negative=NEGATIVES)
        distance_of = self._distance_fn(query.gps)
        text_of = self._text_fn(query.text)
        candidates = []
        for found_one in found:
            candidate = self._candidate(found_one, query, gallery)
            if distance_of is not None:
                candidate.distance_km = distance_of(candidate.landmark)
                if settings.use_gps and candidate.distance_km is not None:
                    candidate.logit -= gps_penalty(candidate.distance_km, settings)
            if text_of is not None:
                candidate.text = text_of(candidate.landmark)
                # The fitted log-odds of the reading (0 when nothing names it; see
                # lookalike.methods.text.text_log_odds), added to the image evidence.
                candidate.logit += text_log_odds(candidate.text)
            candidate.probability = float(sigmoid(candidate.logit))
            candidates.append(candidate)
        candidates.sort(key=lambda c: -c.probability)
        return candidates

    def _candidate(self, found: LandmarkCandidate, query: QueryFeatures, gallery: Gallery
                   ) -> Candidate:
        ref_id = int(self.index.ids[found.reference]) if found.reference is not None else None
        match = None
        if found.match is not None and found.reference is not None:
            match = local_match(found.match, query.item.local_feature,
                                gallery.local(found.reference))
        row = found.evidence()
        logit = float(self.calibration.logit(np.array([row]))[0])
        return Candidate(found.landmark, 0.0, found.similarity, found.margin, found.inliers,
                         float(found.match.spread) if found.match else 0.0, ref_id, None,
                         match, logit, None, row)

    def identify_features(self, photo: str, query: QueryFeatures,
                          settings: Settings | None = None) -> Answer:
        settings = settings or self.settings
        candidates = self.candidates(query, settings)
        threshold = settings.threshold if settings.threshold is not None \
            else self.calibration.threshold
        answer = decide(photo, candidates, threshold, settings.top)
        return self._finish(answer, query)

    def verify_features(self, photo: str, query: QueryFeatures, landmark: str,
                        settings: Settings | None = None) -> Answer:
        if landmark not in self.index.landmarks or landmark == NEGATIVES:
            raise KeyError(landmark)
        settings = settings or self.settings
        candidates = self.candidates(query, settings, only=landmark)
        best = candidates[0]
        threshold = settings.threshold if settings.threshold is not None \
            else self.calibration.threshold
        answer = Answer(photo, landmark, best.probability, candidates,
                        verified=best.probability >= threshold)
        return self._finish(answer, query)

    def _finish(self, answer: Answer, query: QueryFeatures) -> Answer:
        answer.size = query.size
        answer.gps = query.gps
        answer.references = {c.reference: self.index.references[c.reference].path
                             for c in answer.candidates if c.reference is not None}
        return answer

    def identify(self, photo: str | os.PathLike) -> Answer:
        return self.identify_features(str(photo), self.features_from_bytes(read_bytes(photo),
                                                                           str(photo)))

    def verify(self, photo: str | os.PathLike, landmark: str) -> Answer:
        return self.verify_features(str(photo), self.features_from_bytes(read_bytes(photo),
                                                                         str(photo)), landmark)

    def match_picture(self, answer: Answer, query_image: Image.Image) -> Image.Image | None:
        """Query and best reference side by side with inlier lines; None without evidence."""
        if not answer.candidates or answer.candidates[0].match is None:
            return None
        candidate = answer.candidates[0]
        match = candidate.match
        ref_path = self.index.references[candidate.reference].path
        try:
            # At full size: the match's points are in original pixels.
            reference = decode_image(read_bytes(ref_path), ref_path, LoadOptions())
        except ImageLoadError:  # the reference photo moved since indexing
            return None
        return draw_matches(query_image, reference, match.query_points, match.ref_points)


def draw_matches(query: Image.Image, reference: Image.Image, points_q: np.ndarray,
                 points_r: np.ndarray, height: int = 480) -> Image.Image:
    """Two photos side by side at the same height, inliers joined by lines."""
    q_scale = height / query.height
    r_scale = height / reference.height
    q = query.convert("RGB").resize((max(1, round(query.width * q_scale)), height))
    r = reference.convert("RGB").resize((max(1, round(reference.width * r_scale)), height))
    canvas = Image.new("RGB", (q.width + r.width, height), "white")
    canvas.paste(q, (0, 0))
    canvas.paste(r, (q.width, 0))
    draw = ImageDraw.Draw(canvas)
    for (xq, yq), (xr, yr) in list(zip(points_q, points_r))[:MAX_POINTS]:
        a = (xq * q_scale, yq * q_scale)
        b = (q.width + xr * r_scale, yr * r_scale)
        draw.line([a, b], fill=(0, 200, 80), width=1)
        draw.ellipse([a[0] - 2, a[1] - 2, a[0] + 2, a[1] + 2], outline=(255, 40, 40))
    return canvas


# -- many photos -----------------------------------------------------------------------------------
CHUNK = 16


def probe(data: bytes) -> tuple[tuple[int, int] | None, tuple[float, float] | None]:
    """Oriented pixel size and GPS position from a file's header, without decoding pixels."""
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if image.getexif().get(0x0112, 1) >= 5:
            width, height = height, width
    except (OSError, ValueError, SyntaxError):
        return None, None
    return (width, height), read_gps(data)


def identify_many(identifier: Identifier, paths: Sequence[str], landmark: str | None = None,
                  cache=None, jobs: int = 1, quiet: bool = True
                  ) -> Iterator[tuple[str, Answer | None, str | None]]:
    """Yield (photo, answer, error) for each photo, in order, chunk by chunk.

    Features go through the engine's extraction (cache, `jobs` workers); ranking and
    verification of a chunk's photos run in `jobs` threads (OpenCV and NumPy release the
    GIL). A photo that fails anywhere, unreadable or failing in its scoring, gets an error
    and the run goes on.
    """
    from lookalike.engines.local import local_extractor

    extract = local_extractor(cache, jobs, quiet)
    pool = futures.ThreadPoolExecutor(jobs) if jobs > 1 else None
    try:
        for start in range(0, len(paths), CHUNK):
            chunk = list(paths[start:start + CHUNK])
            globals_, locals_, errors = extract(chunk, identifier.global_method,
                                                identifier.local_method)
            texts = None
            if identifier.settings.use_text:
                from lookalike.features.extract import extract_features
                from lookalike.features.registry import get_method

                texts = extract_features(get_method("text"), chunk, cache, jobs, quiet)
                errors.update(texts.errors)
            one = functools.partial(_answer_one, identifier, landmark, globals_, locals_, texts,
                                    errors)
            yield from (pool.map(one, chunk) if pool is not None else map(one, chunk))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _answer_one(identifier: Identifier, landmark: str | None, globals_, locals_, texts,
                errors: dict[str, str], path: str) -> tuple[str, Answer | None, str | None]:
    if path in errors:
        return path, None, errors[path]
    try:
        size, gps = probe(read_bytes(path))
        size = size or (1, 1)
        local = with_original_scale(identifier.local_method.decode(locals_[path]), size)
        item = Item(identifier.global_method.decode(globals_[path]), local)
        query = QueryFeatures(item, size, gps,
                              text=texts.feature_of(path) if texts is not None else None)
        if landmark is None:
            return path, identifier.identify_features(path, query), None
        return path, identifier.verify_features(path, query, landmark), None
    except ImageLoadError as error:
        return path, None, error.reason
    except Exception as error:  # one photo's failure costs one answer, not the run
        return path, None, f"identification failed: {type(error).__name__}: {error}"


CSV_COLUMNS = ["photo", "landmark", "probability", "name_en", "name_ja", "distance_km",
               "candidates", "error"]


def done_in_csv(path: str | os.PathLike) -> set[str]:
    """Photos already answered in an existing results CSV (to resume an interrupted run)."""
    if not os.path.isfile(path):
        return set()
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != CSV_COLUMNS:
            raise ValueError(f"{path}: not a results file of `lookalike identify --csv` "
                             f"(columns {reader.fieldnames}); choose another file")
        return {row["photo"] for row in reader}


def csv_row(photo: str, answer: Answer | None, error: str | None,
            names: dict[str, dict[str, str]]) -> list[str]:
    if answer is None:
        return [photo, "", "", "", "", "", "", error or ""]
    data = answer.to_json()
    best = answer.candidates[0] if answer.candidates else None
    distance = "" if best is None or best.distance_km is None else f"{best.distance_km:.3f}"
    label = names.get(answer.landmark, {})
    return [photo, answer.landmark, f"{answer.probability:.4f}", label.get("en", ""),
            label.get("ja", ""), distance,
            json.dumps(data["candidates"], ensure_ascii=False), ""]
