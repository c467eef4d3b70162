"""`explain A B`: one pair judged exactly as `verify` judges a photo against a landmark.

Why through a one-reference index: "do these two photos show the same landmark?" is the
question `verify A --landmark L` answers when L's only reference photo is B. Asking it that
way, through the same extraction, `Identifier.verify_features`, calibration and answer, gives
`explain` the same verdict, probability, inliers and region (`bounding_poly`) as `verify`,
the Python API and HTTP, instead of a second scoring of its own. The index lives in a
temporary folder; the features come from the caller's extractor (cache, workers).
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from lookalike.gallery.answers import Answer
from lookalike.gallery.batch import identify_many
from lookalike.gallery.folders import GalleryEntry, Landmark
from lookalike.gallery.identify import Identifier, Settings
from lookalike.gallery.index import build_index
from lookalike.imaging.loading import ImageLoadError, LoadOptions, load_image
from lookalike.retrieval.explain import draw
from lookalike.retrieval.focus import read_regions, regions_for

PAIR = "b"  # the one landmark of the pair's index: photo B


@dataclass
class Explanation:
    answer: Answer  # verify's answer for A against the landmark whose only photo is B
    picture: Image.Image


def verify_pair(path_a: str, path_b: str, extract, preset: str | None = None,
                settings: Settings | None = None, calibration=None,
                views: str | None = None) -> Answer:
    """`verify A` against a landmark whose only reference is B (described in `views`, e.g.
    "tiles"; None: the preset's); raises `ImageLoadError` for an unreadable photo."""
    from lookalike.gallery.roles import pipeline_methods

    global_method, local_method = pipeline_methods(preset, views=views)
    with tempfile.TemporaryDirectory(prefix="lookalike-pair-") as folder:
        index_path = Path(folder) / "pair.lkidx"
        report = build_index([GalleryEntry(Landmark(PAIR), [path_b])], index_path, extract,
                             preset, global_method, local_method)
        if report.errors:
            path, reason = next(iter(report.errors.items()))
            raise ImageLoadError(path, reason)
        identifier = Identifier(index_path, settings, calibration)
        try:
            photo, answer, error = next(identify_many(identifier, [path_a], extract, PAIR))
        finally:
            identifier.index.close()
    if answer is None:
        raise ImageLoadError(photo, error or "failed")
    return answer


def explain(path_a: str, path_b: str, extract, preset: str | None = None,
            regions_path: str | None = None, settings: Settings | None = None,
            calibration=None, views: str | None = None) -> Explanation:
    """The pair's answer (`verify_pair`) and its picture: both photos, the inlier lines, the
    region they cover, and any hand-drawn regions."""
    answer = verify_pair(path_a, path_b, extract, preset, settings, calibration, views)
    best = answer.candidates[0]
    match = best.match
    verdict = "verified" if answer.verified else "not verified"
    caption = f"{verdict}: {best.inliers} inliers"
    if match is not None:
        caption += (f" ({match.model_kind or 'no model'}), homography {match.inliers_h}, "
                    f"fundamental {match.inliers_f}, {match.matches} tentative matches")
    caption += f"; probability {answer.probability:.3f}"
    regions = read_regions(regions_path) if regions_path else {}
    image_a = load_image(path_a, LoadOptions())
    image_b = load_image(path_b, LoadOptions())
    picture = draw(image_a, image_b, dataclasses.replace(match, verified=bool(answer.verified))
                   if match is not None else None, 1.0, 1.0, caption,
                   regions_for(path_a, regions, regions_path),
                   regions_for(path_b, regions, regions_path))
    return Explanation(answer, picture)
