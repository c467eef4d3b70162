"""The Python API: the verbs a user would guess, each a thin typed entry onto the library.

    image = load_image(path)                       lookalike.imaging.loading
    features = extract_features(method, paths)     lookalike.features.extract (cache, jobs, errors)
    result = compare(paths, methods=...)           lookalike.evaluation.compare
    result = evaluate(dataset, methods=...)        lookalike.evaluation.evaluate
    index = build_index(gallery, "town.lkidx")     lookalike.gallery.index (storage)
    index = open_index("town.lkidx")
    index.identify(photo) -> Identification        lookalike.gallery.identify (two-stage retrieval)
    index.verify(photo, landmark) -> Verification
    app = serve_app("town.lkidx")                  lookalike.server.app (FastAPI)

The verbs defined here add no logic of their own: they choose the local engine and the
cache the way the command line does and wrap the library's answer in a result type that
says what it holds. `group` sorts unlabelled photos into landmark groups
(`lookalike.grouping.groups`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookalike.gallery.answers import UNKNOWN, Answer, Candidate
from lookalike.gallery.folders import NEGATIVES, GalleryEntry, GalleryError, Landmark, read_gallery
from lookalike.gallery.identify import Identifier, Settings
from lookalike.gallery.index import ChangeReport

PathLike = str | os.PathLike
GallerySource = PathLike | Mapping[str, Sequence[PathLike]]


@dataclass
class Identification:
    """Which landmark a photo shows: `landmark` is None when it shows none of the index's
    (the command line's `unknown`); `probability` is that of the answer given."""

    photo: str
    landmark: str | None
    probability: float
    candidates: list[Candidate]  # best first, with their own probabilities and evidence
    answer: Answer = field(repr=False)  # the full answer, as the CLI and HTTP API print it

    @classmethod
    def from_answer(cls, answer: Answer) -> Identification:
        landmark = None if answer.landmark == UNKNOWN else answer.landmark
        return cls(answer.photo, landmark, answer.probability, answer.candidates, answer)

    def to_json(self) -> dict[str, Any]:
        return self.answer.to_json()


@dataclass
class Verification:
    """Whether a photo shows one given landmark, with the probability and the inliers found."""

    photo: str
    landmark: str
    verified: bool
    probability: float
    inliers: int  # geometrically verified matches with the landmark's best reference
    answer: Answer = field(repr=False)

    @classmethod
    def from_answer(cls, answer: Answer) -> Verification:
        best = answer.candidates[0] if answer.candidates else None
        return cls(answer.photo, answer.landmark, bool(answer.verified), answer.probability,
                   best.inliers if best else 0, answer)

    def to_json(self) -> dict[str, Any]:
        return self.answer.to_json()


class Index:
    """An open gallery index (`.lkidx`): its landmarks, and the two questions it answers.

    Safe to share between threads; open it once and ask it about many photos."""

    def __init__(self, path: PathLike, calibration: PathLike | None = None,
                 settings: Settings | None = None):
        self.identifier = Identifier(path, settings, calibration)
        self.report: ChangeReport | None = None  # what the last build or `add` changed

    @property
    def path(self) -> str:
        return str(self.identifier.index.path)

    @property
    def landmarks(self) -> dict[str, Landmark]:
        """The landmarks by id (names by language, location), negatives left out."""
        return {lid: landmark for lid, landmark in self.identifier.index.landmarks.items()
                if lid != NEGATIVES}

    def info(self) -> dict[str, Any]:
        """What `lookalike index info --json` prints: counts, size, methods, landmarks."""
        return self.identifier.index.info()

    def identify(self, photo: PathLike) -> Identification:
        """Which of the index's landmarks `photo` shows, if any."""
        return Identification.from_answer(self.identifier.identify(photo))

    def verify(self, photo: PathLike, landmark: str) -> Verification:
        """Whether `photo` shows `landmark` (an id of `landmarks`)."""
        if landmark not in self.landmarks:
            raise GalleryError(f"no landmark {landmark!r} in {self.path}; "
                               f"choose from: {', '.join(self.landmarks)}")
        return Verification.from_answer(self.identifier.verify(photo, landmark))

    def add(self, gallery: GallerySource, jobs: int = 1, cache: Any = None,
            quiet: bool = True) -> ChangeReport:
        """Add landmarks and photos (as `build_index` takes them); photos already in are
        skipped. Returns what changed, unreadable photos included."""
        from lookalike.engines.local import local_extractor
        from lookalike.features.cache import open_cache

        extract = local_extractor(open_cache(cache), jobs, quiet)
        self.report = self.identifier.index.add(gallery_entries(gallery), extract)
        return self.report

    def close(self) -> None:
        self.identifier.index.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def gallery_entries(gallery: GallerySource, landmarks: Sequence[str] | None = None
                    ) -> list[GalleryEntry]:
    """A gallery folder or manifest (as `lookalike index build` reads it), or a mapping of
    landmark id -> its reference photos, as the index's entries."""
    if isinstance(gallery, Mapping):
        return [GalleryEntry(Landmark(lid), [str(path) for path in photos])
                for lid, photos in gallery.items()
                if landmarks is None or lid in landmarks]
    return read_gallery(gallery, include=landmarks)


def build_index(gallery: GallerySource, output: PathLike, preset: str | None = None,
                landmarks: Sequence[str] | None = None, jobs: int = 1, cache: Any = None,
                quiet: bool = True) -> Index:
    """Build `output` (written atomically) from a gallery and return it open.

    `gallery` is a folder with one subfolder of reference photos per landmark (or a
    `path,label` manifest), or a mapping of landmark id -> photos; `landmarks` keeps only
    those ids; `preset` names the pipeline (`fast`, `default`, `accurate`). Photos that
    could not be read are in the returned index's `report.errors`."""
    from lookalike.engines.local import local_extractor
    from lookalike.features.cache import open_cache
    from lookalike.gallery.index import build_index as build

    extract = local_extractor(open_cache(cache), jobs, quiet)
    report = build(gallery_entries(gallery, landmarks), output, extract, preset)
    index = Index(output)
    index.report = report
    return index


def open_index(path: PathLike, calibration: PathLike | None = None,
               settings: Settings | None = None) -> Index:
    """Open an index built by `build_index` or `lookalike index build`."""
    return Index(path, calibration, settings)


def identify(photo: PathLike, index: Index | PathLike) -> Identification:
    """Which landmark of `index` the photo shows (None: none). Opening the index costs more
    than a query: for many photos, open it once and call `index.identify`."""
    if isinstance(index, Index):
        return index.identify(photo)
    with open_index(index) as opened:
        return opened.identify(photo)


def verify(photo: PathLike, landmark: str, index: Index | PathLike) -> Verification:
    """Whether the photo shows `landmark` of `index`."""
    if isinstance(index, Index):
        return index.verify(photo, landmark)
    with open_index(index) as opened:
        return opened.verify(photo, landmark)


def group(photos: PathLike | Sequence[PathLike], preset: str = "default",
          cache: Any = None, jobs: int = 1, quiet: bool = True, threshold: float | None = None):
    """Find the landmarks in unlabelled photos (files and folders): a `Grouping` of groups
    with their near-duplicate sets, the ungrouped photos and the unreadable files, as
    `lookalike group` writes them. `cache`: a path, False for none, None for the default."""
    from lookalike.features.cache import open_cache
    from lookalike.grouping.groups import THRESHOLD, group_photos
    from lookalike.imaging.loading import find_images

    paths = [photos] if isinstance(photos, (str, os.PathLike)) else list(photos)
    return group_photos(find_images([str(p) for p in paths]), preset=preset,
                        cache=open_cache(cache), jobs=jobs, quiet=quiet,
                        threshold=THRESHOLD if threshold is None else threshold)


def serve_app(index: Index | PathLike, **options: Any):
    """The FastAPI application of `lookalike serve` for an index, to run under any ASGI
    server (`uvicorn.run(app)`); `options` are `lookalike.server.settings.ServerSettings`
    fields (data_dir, max_bytes, workers, api_keys, cors_origins, ...)."""
    from lookalike.server.app import create_app
    from lookalike.server.settings import ServerSettings

    path = index.path if isinstance(index, Index) else index
    return create_app(ServerSettings(index=Path(path), **options))
