"""The text an index learns from its references (`lookalike.ocr.learned`), stored with them.

Why stored per reference as well as per landmark: adding or removing one photo changes what
recurs on its landmark's references, and re-reading every other reference to find out would
cost an OCR pass each (0.3-0.5 s a photo). So each reference's reading (the `text` method's
encoded feature) is kept in `ref_text`, and a landmark's phrases (`landmark_text`) are
recomputed from its stored readings in the same transaction that adds or removes its
photos: a crash part way leaves the index, its readings and its phrases as they were.

Only an index built with `index build --read-text` reads its references (meta `text_engine`);
`add` then reads the new ones the same way. landmark.json's `inscriptions` are stored for
every index. An index written before these tables existed opens as it is (no phrases) and
gains the tables on its next change.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence

from lookalike.features import progress
from lookalike.ocr.learned import (
    distinctive,
    inscription_phrases,
    learn_phrases,
    reference_lines,
)

TEXT_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ref_text (ref INTEGER PRIMARY KEY, feature BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS landmark_text (landmark TEXT PRIMARY KEY, "
    "inscriptions TEXT NOT NULL DEFAULT '[]', phrases TEXT NOT NULL DEFAULT '[]')",
)
TEXT_METHOD = "text"

# paths, OCR engine -> {path: the text method's encoded feature}, and {path: error}
TextReader = Callable[[Sequence[str], str], tuple[dict[str, bytes], dict[str, str]]]


def local_text_reader(cache=None, jobs: int = 1, quiet: bool = True) -> TextReader:
    """Read the photos' text on this machine, through the feature cache (the `text` method's
    features, shown as a `text` progress line in logs)."""
    from lookalike.features.extract import extract_features
    from lookalike.features.registry import get_method

    def read(paths: Sequence[str], engine: str):
        method = get_method(TEXT_METHOD, engine=engine)
        if not quiet:  # then the `text` progress line of the extraction (features.progress)
            print(f"{progress.JOB_NAME}: reading the text of {len(paths)} reference photos "
                  f"(OCR: {engine}; cached)", file=sys.stderr)
        found = extract_features(method, list(paths), cache, jobs, quiet)
        return ({path: method.encode(feature) for path, feature in zip(found.paths, found.features)},
                dict(found.errors))
    return read


def text_method(engine: str):
    from lookalike.features.registry import get_method

    return get_method(TEXT_METHOD, engine=engine)


def has_text_tables(connection: sqlite3.Connection) -> bool:
    return connection.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND "
                              "name = 'landmark_text'").fetchone()[0] > 0


def read_landmark_text(connection: sqlite3.Connection) -> dict[str, tuple[list[str], list[str]]]:
    """{landmark: (inscriptions as written, learned phrases)}; empty for an older index."""
    if not has_text_tables(connection):
        return {}
    return {landmark: (json.loads(inscriptions), json.loads(phrases))
            for landmark, inscriptions, phrases in connection.execute(
                "SELECT landmark, inscriptions, phrases FROM landmark_text")}


def write_text_changes(connection: sqlite3.Connection, inscriptions: Mapping[str, list[str]],
                       texts: Mapping[int, bytes], touched: Iterable[str], engine: str | None
                       ) -> None:
    """Inside the caller's transaction: store the new references' readings (`texts`, by
    reference id), the landmarks' inscriptions, drop the readings of removed references, and
    recompute the phrases of the `touched` landmarks from their stored readings."""
    for statement in TEXT_SCHEMA:
        connection.execute(statement)
    connection.executemany("INSERT OR REPLACE INTO ref_text (ref, feature) VALUES (?, ?)",
                           list(texts.items()))
    connection.execute("DELETE FROM ref_text WHERE ref NOT IN (SELECT id FROM refs)")
    connection.execute("DELETE FROM landmark_text WHERE landmark NOT IN (SELECT id FROM landmarks)")
    for landmark, written in inscriptions.items():
        connection.execute(
            "INSERT INTO landmark_text (landmark, inscriptions) VALUES (?, ?) ON CONFLICT"
            "(landmark) DO UPDATE SET inscriptions = excluded.inscriptions",
            (landmark, json.dumps(list(written), ensure_ascii=False)))
    if engine is None:
        return
    method = text_method(engine)
    for landmark in sorted(set(touched)):
        exists = connection.execute("SELECT 1 FROM landmarks WHERE id = ?", (landmark,)).fetchone()
        if not exists:
            continue
        rows = connection.execute(
            "SELECT refs.id, ref_text.feature FROM refs LEFT JOIN ref_text ON ref_text.ref = "
            "refs.id WHERE refs.landmark = ? ORDER BY refs.id", (landmark,)).fetchall()
        references = [reference_lines(method.decode(blob)) if blob is not None else []
                      for _, blob in rows]
        phrases = learn_phrases(references) if references else []
        connection.execute(
            "INSERT INTO landmark_text (landmark, phrases) VALUES (?, ?) ON CONFLICT(landmark) "
            "DO UPDATE SET phrases = excluded.phrases",
            (landmark, json.dumps(phrases, ensure_ascii=False)))


def gallery_phrases(stored: Mapping[str, tuple[list[str], list[str]]]) -> dict[str, list[str]]:
    """What a query's text is matched with, per landmark: its distinctive learned phrases and
    its inscriptions."""
    learned = distinctive({landmark: phrases for landmark, (_, phrases) in stored.items()})
    return {landmark: list(dict.fromkeys([*inscription_phrases(inscriptions),
                                          *learned.get(landmark, [])]))
            for landmark, (inscriptions, _) in stored.items()}
