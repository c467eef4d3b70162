"""The HTTP API's request and response models (pydantic), so `/openapi.json` types every answer.

Why a module of its own: the models are the contract a client is generated from; the
server's endpoints only fill them. `answer_model` turns the library's `Answer` into the API's
shape: each landmark with its stable id, display names (falling back to a readable id), its
location, and, for a positive answer, the matched region's polygon in the photo's pixels.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints

from lookalike.gallery.answers import UNKNOWN, Answer, Candidate, bounding_poly, positive, rounded
from lookalike.gallery.folders import Landmark
from lookalike.gallery.index import GalleryIndex

MATCH_POINTS = 200  # verified point pairs returned per candidate (enough to draw)
LANDMARK_ID_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,79}$"
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$"
# A name is text to show: no control characters (C0, DEL, C1), which no page can display.
NAME_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"

Point = tuple[float, float]
Names = dict[Annotated[str, StringConstraints(pattern=LANGUAGE_PATTERN)],
             Annotated[str, StringConstraints(max_length=200, pattern=NAME_PATTERN)]]
# Coordinates are JSON numbers: a boolean or a string is refused, not converted.
Degrees = Annotated[float, Strict()]


def form_flag(value: object) -> object:
    """A form's boolean is the word the schema names, `true` or `false` (in any case: generated
    clients send Python's `True`), not 1, on or yes."""
    if isinstance(value, str) and value.lower() not in ("true", "false"):
        raise ValueError("a switch is 'true' or 'false'")
    return value


FormFlag = Annotated[bool, BeforeValidator(form_flag)]


class RequestBody(BaseModel):
    """What a client sends: every field is declared, so an unknown one is refused (422)."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """The one shape of every error: a stable code and a sentence for people."""

    error: str = Field(description="stable code, e.g. not_an_image, too_large, busy")
    message: str = Field(description="what went wrong and what to do, in English")


class Location(RequestBody):
    lat: Degrees = Field(ge=-90, le=90, description="latitude in degrees")
    lon: Degrees = Field(ge=-180, le=180, description="longitude in degrees")


class DisplayName(BaseModel):
    """A landmark's name to show, in each language the page offers (never empty)."""

    en: str
    ja: str


class MatchPoints(BaseModel):
    """Verified point pairs between the photo and one reference, each in its own pixels."""

    reference: int = Field(description="the reference photo's id (see /references/{id})")
    reference_size: tuple[int, int] | None = Field(description="reference width, height")
    query_points: list[Point]
    reference_points: list[Point]


class CandidateAnswer(BaseModel):
    landmark: str = Field(description="stable landmark id")
    display_name: DisplayName
    names: dict[str, str] = Field(description="the names stored in the gallery, by language")
    location: Location | None
    probability: float
    similarity: float
    inliers: int = Field(description="verified matches with the best reference")
    distance_km: float | None = Field(None, description="from the photo's GPS, when known")
    text: float | None = Field(None, description="signboard evidence (use_text)")
    reference: int | None = Field(description="id of the best-matching reference photo")
    thumbnail: str | None = Field(description="URL of that reference's thumbnail")
    match: MatchPoints | None


class Evidence(BaseModel):
    """Where the named landmark matched (kept from the first API): points and their box."""

    landmark: str
    reference: int | None
    inliers: int
    size: tuple[int, int] | None
    box: tuple[float, float, float, float]
    points: list[Point]


class IdentifyAnswer(BaseModel):
    photo: str = Field(description="the uploaded file's name")
    landmark: str = Field(description=f"stable landmark id, or {UNKNOWN!r}")
    probability: float = Field(description="that the photo shows `landmark` (for unknown: "
                                           "that it shows none of the candidates)")
    display_name: DisplayName | None = Field(description="None for unknown")
    names: dict[str, str]
    location: Location | None
    bounding_poly: list[Point] | None = Field(
        description="the matched region in the photo's pixels (hull of the verified points); "
                    "None for unknown or a rejected verify")
    size: tuple[int, int] | None = Field(description="the photo's width, height in pixels")
    verified: bool | None = Field(None, description="verify only: is it this landmark?")
    gps: Location | None = None
    candidates: list[CandidateAnswer]
    evidence: Evidence | None = None
    match_picture: str | None = Field(None, description="verify with picture=true: PNG data URL")


class BatchItem(BaseModel):
    """One file of a batch: its answer, or why it has none."""

    photo: str
    answer: IdentifyAnswer | None = None
    error: ErrorBody | None = None


class BatchAnswer(BaseModel):
    results: list[BatchItem] = Field(description="one per uploaded file, in order")
    answered: int
    failed: int


class ReferencePhoto(BaseModel):
    id: int
    landmark: str
    name: str = Field(description="the photo's file name (no folder)")
    thumbnail: str


class LandmarkInfo(BaseModel):
    id: str
    names: dict[str, str]
    display_name: DisplayName
    location: Location | None
    references: int = Field(description="number of reference photos")
    thumbnail: str | None = Field(description="URL of its first reference photo's thumbnail")
    photos: list[ReferencePhoto]


class LandmarkList(BaseModel):
    landmarks: list[LandmarkInfo]
    negatives: int = Field(description="photos of no landmark in the index")


class NewLandmark(RequestBody):
    id: str = Field(pattern=LANDMARK_ID_PATTERN,
                    description="lower-case letters, digits, _ and -; never changes")
    names: Names = Field(default_factory=dict, description='e.g. {"en": ..., "ja": ...}')
    location: Location | None = None


class LandmarkChanges(RequestBody):
    """Fields to change; a field left out stays, `"location": null` removes the location."""

    names: Names | None = Field(None, description="replaces every stored name")
    location: Location | None = None


class PhotosAdded(BaseModel):
    landmark: str
    added: list[ReferencePhoto]
    skipped: int = Field(description="photos already in this landmark")


class Removed(BaseModel):
    landmarks: list[str]
    references: list[int]


class Limits(BaseModel):
    max_bytes: int = Field(description="largest request body (one photo, or a batch)")
    max_pixels: int
    max_files: int = Field(description="most files in one batch request")


class Access(BaseModel):
    read: Literal["open", "key"]
    admin: Literal["disabled", "key"]


class Health(BaseModel):
    status: Literal["ok"]
    landmarks: int
    references: int
    uptime_s: float
    limits: Limits
    access: Access


class KeyCheck(BaseModel):
    """What the presented key (if any) allows."""

    scope: Literal["none", "read", "admin"]
    read_open: bool
    admin_enabled: bool


# -- building answers ------------------------------------------------------------------------------
def readable_id(landmark_id: str) -> str:
    """'st_pauls_cathedral' -> 'St Pauls Cathedral': a name to show when none is stored."""
    words = landmark_id.replace("_", " ").replace("-", " ").split()
    return " ".join(word[:1].upper() + word[1:] for word in words) or landmark_id


def display_name(landmark: Landmark) -> DisplayName:
    fallback = readable_id(landmark.id)
    english = landmark.names.get("en") or fallback
    return DisplayName(en=english, ja=landmark.names.get("ja") or english)


def location_model(location: tuple[float, float] | None) -> Location | None:
    return Location(lat=location[0], lon=location[1]) if location else None


def thumbnail_url(reference: int) -> str:
    return f"/references/{reference}/thumbnail"


def reference_size(index: GalleryIndex, reference: int) -> tuple[int, int] | None:
    """A reference's original width and height, from its stored local feature."""
    try:
        feature = index.local_features(reference)
    except KeyError:
        return None
    if "size" not in feature:
        return None
    scale = float(feature["scale"][0]) if "scale" in feature else 1.0
    width, height = (float(v) / max(scale, 1e-9) for v in feature["size"][:2])
    return round(width), round(height)


def match_model(candidate: Candidate, index: GalleryIndex) -> MatchPoints | None:
    match = candidate.match
    if match is None or candidate.reference is None or match.inliers == 0:
        return None
    return MatchPoints(reference=candidate.reference,
                       reference_size=reference_size(index, candidate.reference),
                       query_points=rounded(match.points_a, MATCH_POINTS),
                       reference_points=rounded(match.points_b, MATCH_POINTS))


def candidate_model(candidate: Candidate, index: GalleryIndex) -> CandidateAnswer:
    landmark = index.landmarks.get(candidate.landmark, Landmark(candidate.landmark))
    return CandidateAnswer(
        landmark=candidate.landmark, display_name=display_name(landmark),
        names=landmark.names, location=location_model(landmark.location),
        probability=round(candidate.probability, 4), similarity=round(candidate.similarity, 4),
        inliers=candidate.inliers,
        distance_km=None if candidate.distance_km is None else round(candidate.distance_km, 3),
        text=None if candidate.text is None else round(candidate.text, 3),
        reference=candidate.reference,
        thumbnail=thumbnail_url(candidate.reference) if candidate.reference is not None else None,
        match=match_model(candidate, index))


def evidence_model(answer: Answer) -> Evidence | None:
    """The first API's evidence, now only where a landmark is named (as `bounding_poly`)."""
    evidence = answer.evidence() if positive(answer) else None
    if evidence is None:
        return None
    best = answer.candidates[0]
    return Evidence(landmark=evidence["landmark"], reference=best.reference,
                    inliers=evidence["inliers"],
                    size=tuple(evidence["size"]) if evidence["size"] else None,
                    box=tuple(evidence["box"]), points=[tuple(p) for p in evidence["points"]])


def answer_model(answer: Answer, index: GalleryIndex) -> IdentifyAnswer:
    """The API's answer for one photo; the region only where a landmark is named."""
    landmark = index.landmarks.get(answer.landmark) if answer.landmark != UNKNOWN else None
    polygon = bounding_poly(answer)
    return IdentifyAnswer(
        photo=answer.photo, landmark=answer.landmark, probability=round(answer.probability, 4),
        display_name=display_name(landmark) if landmark else None,
        names=landmark.names if landmark else {},
        location=location_model(landmark.location) if landmark else None,
        bounding_poly=polygon, size=answer.size, verified=answer.verified,
        gps=location_model(answer.gps),
        candidates=[candidate_model(c, index) for c in answer.candidates],
        evidence=evidence_model(answer))


def reference_model(index: GalleryIndex, reference_id: int) -> ReferencePhoto:
    from pathlib import PurePath

    reference = index.references[reference_id]
    return ReferencePhoto(id=reference_id, landmark=reference.landmark,
                          name=PurePath(reference.path).name,
                          thumbnail=thumbnail_url(reference_id))


def landmark_model(index: GalleryIndex, landmark_id: str) -> LandmarkInfo:
    landmark = index.landmarks[landmark_id]
    photos = [reference_model(index, rid) for rid in index.references_of(landmark_id)]
    return LandmarkInfo(id=landmark_id, names=landmark.names, display_name=display_name(landmark),
                        location=location_model(landmark.location), references=len(photos),
                        thumbnail=photos[0].thumbnail if photos else None, photos=photos)
