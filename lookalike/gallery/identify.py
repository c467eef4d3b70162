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
distance; with `use_gps` a photo taken far away lowers that landmark's log-odds
(`lookalike.gallery.gps`). The answers themselves are `lookalike.gallery.answers`; many photos
at once, with a results CSV, are `lookalike.gallery.batch`.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lookalike.gallery.answers import MAX_POINTS, Answer, Candidate, decide, geometric
from lookalike.gallery.folders import NEGATIVES, GalleryError
from lookalike.gallery.gps import gps_penalty, haversine_km, probe
from lookalike.gallery.index import GalleryIndex
from lookalike.gallery.shortlist import LARGE, FixedScores, Shortlist
from lookalike.imaging.drawing import draw_lines, side_by_side
from lookalike.imaging.loading import ImageLoadError, LoadOptions, decode_image, read_bytes
from lookalike.ocr.evidence import landmark_names, text_evidence_among, text_log_odds
from lookalike.ocr.learned import learned_log_odds
from lookalike.retrieval.calibration import Calibration, CalibrationError, sigmoid
from lookalike.retrieval.pipeline import (
    IDENTIFY_FEATURES,
    Item,
    LandmarkCandidate,
    Pipeline,
    ReferenceSet,
    check_features,
    landmark_candidates,
)


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


def with_original_scale(local: dict, original_size: Sequence[int]) -> dict:
    """Set `scale` = feature pixels per original pixel (JPEGs may be decoded at reduced size)."""
    local = dict(local)
    local["scale"] = np.array([float(local["size"][0]) / max(1, original_size[0])], np.float32)
    return local


def feature_scale(feature: dict[str, np.ndarray]) -> float:
    return float(feature["scale"][0]) if "scale" in feature else 1.0


class IndexItems(Sequence):
    """An index's references as pipeline items, read when the pipeline asks for one (the
    few it verifies), so a query never loads the whole gallery."""

    def __init__(self, index: GalleryIndex):
        self.index = index

    def __len__(self) -> int:
        return len(self.index.ids)

    def __getitem__(self, position):  # type: ignore[override]
        rid = int(self.index.ids[position])
        return Item(self.index.global_features[position], {},
                    self.index.references[rid].content_hash)


class Subset(Sequence):
    """Some of a sequence's items, by their positions in it."""

    def __init__(self, items: Sequence, positions: np.ndarray):
        self.items, self.positions = items, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, j):  # type: ignore[override]
        return self.items[int(self.positions[j])]


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

    # Where identifiers made without a `shortlist` get one (index -> Shortlist, or None for
    # the index's own search): `serve --engine ray` sets the shard actors' here, so every
    # identifier the server makes, after each gallery edit too, searches the shards.
    shortlists: Callable[[GalleryIndex], Shortlist | None] | None = None

    def __init__(self, index: GalleryIndex | str | os.PathLike, settings: Settings | None = None,
                 calibration: Calibration | str | os.PathLike | None = None,
                 shortlist: Shortlist | None = None):
        """`shortlist`: where the best references of a query come from when not from the
        index's own search (shards on Ray, `lookalike.engines.ray`); galleries larger than
        `shortlist.LARGE` are shortlisted from their own search index."""
        from lookalike.retrieval.presets import get_preset

        self.index = index if isinstance(index, GalleryIndex) else GalleryIndex(index)
        self.settings = settings or Settings()
        self.global_method = self.index.global_method
        self.local_method = self.index.local_method
        # a query is described as the methods describe queries (e.g. the whole photo where
        # the references are also described as tiles)
        self.query_global = self.global_method.query_method()
        self.query_local = self.local_method.query_method()
        self.preset = get_preset(self.index.preset)
        self.calibration = self._calibration(calibration)
        self.pipeline = Pipeline(self.global_method, self.local_method, None)
        self._model_lock = threading.Lock()
        self._gallery: ReferenceSet | None = None
        if shortlist is None and Identifier.shortlists is not None:
            shortlist = Identifier.shortlists(self.index)
        self.shortlist = shortlist
        self.shortlist_from = LARGE  # gallery size from which the own search is shortlisted

    def _calibration(self, calibration) -> Calibration:
        if isinstance(calibration, Calibration):
            chosen = calibration
        else:
            try:
                chosen = Calibration.load(calibration) if calibration \
                    else self.preset.calibration("identify")
                check_features(chosen.features, IDENTIFY_FEATURES, "identify")
            except (CalibrationError, ValueError) as error:
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

    def gallery(self) -> ReferenceSet:
        """The index's references as the pipeline's gallery (local features read on demand)."""
        gallery = self._gallery
        if gallery is None or gallery.index is not self.index.search_index:
            ids = self.index.ids
            gallery = ReferenceSet(IndexItems(self.index), self.global_method,
                                   lambda position: self.index.local_features(int(ids[position])),
                                   index=self.index.search_index)
            names, codes = self.index.landmark_codes()
            self._landmark_of = np.asarray(names, dtype=object)[np.asarray(codes)].tolist() \
                if len(codes) else []
            self._gallery = gallery
        return gallery

    # -- features ----------------------------------------------------------------------------
    def query_features(self, data: bytes, encoded_global, encoded_local, text: dict | None = None,
                       image: Image.Image | None = None) -> QueryFeatures:
        """A photo's query, from its file's bytes and its features as the extractor encodes
        them (and the cache and the index store them).

        Why encoded: every door (a batch through the cache or a cluster, one upload over
        HTTP, the Python API) hands its features over in this one form, and the size and
        position come from the file's header here, so the same bytes give the same answer
        whichever door they came in by.
        """
        size, gps = probe(data)
        size = size or (1, 1)
        local = with_original_scale(self.local_method.decode(encoded_local), size)
        return QueryFeatures(Item(self.global_method.decode(encoded_global), local), size, gps,
                             image, text)

    def features_from_bytes(self, data: bytes, name: str, keep_image: bool = False,
                            settings: Settings | None = None) -> QueryFeatures:
        """Decode and extract both roles' features as the extractor does (each method's load
        options, one forward pass, the encoded form), then `query_features`; raises
        ImageLoadError for bad input."""
        from lookalike.features.contract import shares_local

        settings = settings or self.settings
        decoded: dict = {}

        def pixels(method):  # exactly as the method's features are extracted everywhere else
            options = dataclasses.replace(method.load_options(), max_pixels=settings.max_pixels)
            if options not in decoded:
                decoded[options] = decode_image(data, name, options)
            return decoded[options]

        local_method, global_method = self.query_local, self.query_global
        image = pixels(local_method)
        with self._model_lock:  # one forward pass at a time: threads would fight for the cores
            encoded_local = local_method.encode(local_method.extract(image))
            if shares_local(global_method, local_method):
                encoded_global = global_method.encode(
                    global_method.aggregate(local_method.decode(encoded_local)))
            else:
                encoded_global = global_method.encode(global_method.extract(pixels(global_method)))
        text = None
        if settings.use_text:
            from lookalike.features.registry import get_method

            reader = get_method("text")
            text = reader.decode(reader.encode(reader.extract(pixels(reader))))
        return self.query_features(data, encoded_global, encoded_local, text,
                                   image if keep_image else None)

    def _text_fn(self, text: dict | None):
        """(evidence, log-odds) of the photo's text per landmark: the better of its names
        read (`text_evidence_among`) and its inscriptions or the text learned from its
        references read (`learned_evidence_among`), each reading counting only for the
        landmarks it matches best (`evaluate --identify --use-text` measures exactly this)."""
        if text is None:
            return None
        evidence = text_evidence_among(text, {
            landmark: landmark_names(entry.names)
            for landmark, entry in self.index.landmarks.items()})
        phrases = self.index.phrase_index()
        learned = phrases.among(text) if phrases is not None else {}

        def text_of(landmark: str) -> tuple[float | None, float]:
            by_name = evidence.get(landmark)
            found = learned.get(landmark)
            by_phrase = learned_log_odds(found)
            if found is not None and by_phrase > text_log_odds(by_name):
                return found.score, by_phrase
            return by_name, text_log_odds(by_name)
        return text_of

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
        verify_landmarks = settings.verify_landmarks or self.preset.verify_landmarks
        per_landmark = settings.verify_per_landmark or self.preset.verify_per_landmark
        if only is None and (self.shortlist is not None or len(gallery) > self.shortlist_from):
            found = self._shortlisted(query, gallery, verify_landmarks, per_landmark)
        else:
            found = landmark_candidates(self.pipeline, query.item, gallery, self._landmark_of,
                                        verify_landmarks, per_landmark, only=only,
                                        negative=NEGATIVES)
        distance_of = self._distance_fn(query.gps)
        text_of = self._text_fn(query.text)
        candidates = []
        for found_one in found:
            candidate = self._candidate(found_one, query, gallery)
            if distance_of is not None:
                candidate.distance_km = distance_of(candidate.landmark)
                if settings.use_gps and candidate.distance_km is not None:
                    candidate.logit -= gps_penalty(candidate.distance_km, settings.gps_radius_km,
                                                  settings.gps_weight)
            if text_of is not None:
                # The fitted log-odds of the reading (0 when nothing names it; see
                # lookalike.ocr.evidence.text_log_odds and ocr.learned.learned_log_odds),
                # added to the image evidence.
                candidate.text, added = text_of(candidate.landmark)
                candidate.logit += added
            candidate.probability = float(sigmoid(candidate.logit))
            candidates.append(candidate)
        candidates.sort(key=lambda c: -c.probability)
        return candidates

    def _shortlisted(self, query: QueryFeatures, gallery: ReferenceSet, verify_landmarks: int,
                     per_landmark: int) -> list[LandmarkCandidate]:
        """`landmark_candidates` over the top of the ranking only (`Shortlist.top`: a prefix
        that decides every candidate exactly as the whole ranking would)."""
        shortlist = self.shortlist
        if shortlist is None:
            names, codes = self.index.landmark_codes()
            shortlist = Shortlist.of_index(gallery.index, codes, names)
        positions, scores = shortlist.top(query.item.global_feature, verify_landmarks,
                                          per_landmark, NEGATIVES)
        ids = self.index.ids
        subset = ReferenceSet(
            Subset(gallery.items, positions), self.global_method,
            lambda j: self.index.local_features(int(ids[positions[j]])),
            index=FixedScores(scores))
        found = landmark_candidates(self.pipeline, query.item, subset,
                                    [self._landmark_of[p] for p in positions.tolist()],
                                    verify_landmarks, per_landmark, negative=NEGATIVES)
        for candidate in found:  # back to positions in the whole gallery
            if candidate.reference is not None:
                candidate.reference = int(positions[candidate.reference])
        return found

    def _candidate(self, found: LandmarkCandidate, query: QueryFeatures, gallery: ReferenceSet
                   ) -> Candidate:
        ref_id = int(self.index.ids[found.reference]) if found.reference is not None else None
        match = None
        if found.match is not None and found.reference is not None:
            match = found.match.in_original_pixels(
                feature_scale(query.item.local_feature),
                feature_scale(gallery.local(found.reference)))
        row = found.evidence(self.calibration.features)
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
                        verified=best.probability >= threshold and geometric(best))
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
        return draw_matches(query_image, reference, match.points_a, match.points_b)


def draw_matches(query: Image.Image, reference: Image.Image, points_q: np.ndarray,
                 points_r: np.ndarray, height: int = 480) -> Image.Image:
    """Two photos side by side at the same height, inliers joined by lines."""
    canvas, q_scale, r_scale = side_by_side(query, reference, height)
    offset = np.array([round(query.width * q_scale), 0.0])
    draw_lines(canvas, np.asarray(points_q) * q_scale, np.asarray(points_r) * r_scale + offset,
               max_lines=MAX_POINTS)
    return canvas
