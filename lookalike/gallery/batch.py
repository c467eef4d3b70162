"""Identify many photos: features through the caller's extractor (cache, workers, engine),
answers in order chunk by chunk, per-photo errors, and the results CSV that an interrupted
run resumes from."""

from __future__ import annotations

import csv
import functools
import json
import os
from collections.abc import Iterator, Sequence
from concurrent import futures

from lookalike.gallery.answers import Answer
from lookalike.gallery.identify import Identifier
from lookalike.imaging.loading import ImageLoadError, read_bytes

CHUNK = 16


def identify_many(identifier: Identifier, paths: Sequence[str], extract,
                  landmark: str | None = None, cache=None, jobs: int = 1, quiet: bool = True
                  ) -> Iterator[tuple[str, Answer | None, str | None]]:
    """Yield (photo, answer, error) for each photo, in order, chunk by chunk.

    Features come from `extract`, the caller's extractor (`lookalike.engines`: cache and
    workers, or a cluster); ranking and verification of a chunk's photos run in `jobs`
    threads (OpenCV and NumPy release the GIL). A photo that fails anywhere, unreadable or
    failing in its scoring, gets an error and the run goes on.
    """
    pool = futures.ThreadPoolExecutor(jobs) if jobs > 1 else None
    try:
        for start in range(0, len(paths), CHUNK):
            chunk = list(paths[start:start + CHUNK])
            globals_, locals_, errors = extract(chunk, identifier.query_global,
                                                identifier.query_local)
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
        query = identifier.query_features(read_bytes(path), globals_[path], locals_[path],
                                          texts.feature_of(path) if texts is not None else None)
        if landmark is None:
            return path, identifier.identify_features(path, query), None
        return path, identifier.verify_features(path, query, landmark), None
    except ImageLoadError as error:
        return path, None, error.reason
    except Exception as error:  # one photo's failure costs one answer, not the run
        return path, None, f"identification failed: {type(error).__name__}: {error}"


# `probability` is the answer's: that the photo shows `landmark`, or for `unknown` that it
# shows none of the candidates (1 - best_probability). `best_candidate` and `best_probability`
# are the likeliest landmark and its probability, whatever the answer.
CSV_COLUMNS = ["photo", "landmark", "probability", "best_candidate", "best_probability",
               "name_en", "name_ja", "distance_km", "candidates", "error"]


def done_in_csv(path: str | os.PathLike) -> set[str]:
    """Photos already answered in an existing results CSV (to resume an interrupted run)."""
    if not os.path.isfile(path):
        return set()
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != CSV_COLUMNS:
            older = reader.fieldnames and reader.fieldnames[:3] == CSV_COLUMNS[:3]
            what = "a results file of an older lookalike, whose columns differ" if older \
                else f"not a results file of `lookalike identify --csv` (columns " \
                     f"{reader.fieldnames})"
            raise ValueError(f"{path}: {what}; choose another file")
        return {row["photo"] for row in reader}


def csv_row(photo: str, answer: Answer | None, error: str | None,
            names: dict[str, dict[str, str]]) -> list[str]:
    if answer is None:
        return [photo, "", "", "", "", "", "", "", "", error or ""]
    data = answer.to_json()
    best = answer.candidates[0] if answer.candidates else None
    distance = "" if best is None or best.distance_km is None else f"{best.distance_km:.3f}"
    label = names.get(answer.landmark, {})
    return [photo, answer.landmark, f"{answer.probability:.4f}",
            best.landmark if best else "", f"{best.probability:.4f}" if best else "",
            label.get("en", ""), label.get("ja", ""), distance,
            json.dumps(data["candidates"], ensure_ascii=False), ""]
