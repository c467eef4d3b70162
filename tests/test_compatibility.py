"""Files written before the layout moved (an index and a feature cache made by the flat
`lookalike/` of 2026-11) open and serve as they did: they store method names and settings,
never module paths."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np

from conftest import REPO
from lookalike.features.cache import FeatureCache, content_hash
from lookalike.features.extract import extract_features
from lookalike.features.registry import get_method
from lookalike.gallery.identify import Identifier
from lookalike.gallery.index import GalleryIndex

OLD = REPO / "tests" / "data" / "pre_layout"
QUERY = "tower_bridge/supergluepretrainednetwork__phototourism_sample_images_london_bridge_49190386_5209386933.jpg"


def test_an_index_written_before_the_move_opens_and_identifies(tmp_path, landmarks_dir):
    path = shutil.copy(OLD / "old.lkidx", tmp_path / "old.lkidx")
    meta = dict(sqlite3.connect(path).execute("SELECT name, value FROM meta"))
    assert not [value for value in meta.values() if "lookalike." in value]  # no module paths
    with GalleryIndex(path) as index:
        assert sorted(index.landmarks) == ["chateau_de_sceaux", "tower_bridge"]
        assert index.preset == "fast" and len(index.ids) == 2
        answer = Identifier(index).identify(landmarks_dir / QUERY)
    assert answer.candidates[0].landmark == "tower_bridge"
    assert answer.candidates[0].inliers > 0


def test_a_feature_cache_written_before_the_move_is_read_back(tmp_path, landmarks_dir):
    path = shutil.copy(OLD / "old-cache.sqlite", tmp_path / "old-cache.sqlite")
    method = get_method("dhash")
    photo = landmarks_dir / QUERY
    key = f"{method.cache_key()}:{content_hash(photo.read_bytes())}"
    stored = FeatureCache(path).get_many([key])
    assert key in stored  # the same key as before the move
    fresh = extract_features(method, [str(photo)], quiet=True).features[0]
    assert np.array_equal(method.decode(stored[key]), fresh)
