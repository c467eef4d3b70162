"""Shared fixtures: the labelled dev photos (never copied into the repo) and a private cache."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LANDMARKS = REPO.parent / "shared" / "data" / "landmarks"


def manifest_rows() -> list[dict[str, str]]:
    with open(LANDMARKS / "manifest.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def photos_of(label: str) -> list[Path]:
    found = [LANDMARKS / row["path"] for row in manifest_rows() if row["label"] == label]
    assert found, f"no dev photos labelled {label!r}"  # a typo must not empty a test
    return found


@pytest.fixture(scope="session")
def landmarks_dir() -> Path:
    if not (LANDMARKS / "manifest.csv").is_file():
        pytest.fail(f"dev photos missing at {LANDMARKS}")
    return LANDMARKS


@pytest.fixture(scope="session")
def manifest(landmarks_dir) -> list[dict[str, str]]:
    return manifest_rows()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Tests never touch the user's caches (features, exported models); one per session keeps
    reruns fast."""
    path = tmp_path_factory.getbasetemp() / "features.sqlite"
    monkeypatch.setenv("LOOKALIKE_CACHE", str(path))
    monkeypatch.setenv("LOOKALIKE_MODELS", str(tmp_path_factory.getbasetemp() / "models"))
    return path


@pytest.fixture(scope="session")
def two_landmark_index(tmp_path_factory) -> Path:
    """An index of two landmarks (Sceaux, Strecha) with the fast preset, built once a run for
    the HTTP, schema and one-answer tests; a test that edits it works on a copy."""
    from landmark_gallery import make_gallery

    from lookalike.engines.local import local_extractor
    from lookalike.gallery.index import build_index

    root = tmp_path_factory.mktemp("two_landmarks")
    gallery = make_gallery(root / "gallery", ["chateau_de_sceaux", "strecha_castle"])
    build_index(gallery, root / "gallery.lkidx", local_extractor(), preset="fast")
    return root / "gallery.lkidx"
