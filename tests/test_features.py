"""Extracting several methods at once: same features as one by one, one decode per format."""

from __future__ import annotations

import dataclasses
import os
from concurrent import futures
from typing import ClassVar

import numpy as np
from PIL import Image

import lookalike.features.extract as features_module
from conftest import photos_of
from lookalike.features.cache import FeatureCache
from lookalike.features.contract import BITS, Method
from lookalike.features.extract import _make_pool, extract_feature_sets, extract_features
from lookalike.features.registry import get_method


def test_sets_equal_one_by_one_and_share_the_decode(tmp_path, monkeypatch):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    paths = [str(p) for p in photos_of("hertford_bridge")[:3]] + [str(broken)]
    methods = [get_method(name) for name in ("ahash", "dhash", "whash", "colorhash", "akaze")]
    alone = [extract_features(method, paths) for method in methods]

    calls = []
    real_decode = features_module.decode_image
    monkeypatch.setattr(features_module, "decode_image",
                        lambda data, path, options: calls.append(options) or
                        real_decode(data, path, options))
    together = extract_feature_sets(methods, paths, jobs=2)
    for single, shared in zip(alone, together):
        assert shared.method is not None and shared.paths == single.paths == paths[:3]
        for a, b in zip(single.features, shared.features):
            if isinstance(a, dict):
                assert np.array_equal(a["descriptors"], b["descriptors"])
            else:
                assert np.array_equal(a, b)
        assert "not an image" in shared.errors[str(broken)]
    # Per file: one luma decode (ahash, dhash, whash), one RGB (colorhash), one for akaze.
    formats = set(calls)
    assert len(calls) == 4 * len(formats) and len(formats) == 3


def test_sets_use_the_cache_per_method(tmp_path):
    paths = [str(p) for p in photos_of("nle_tower")[:2]]
    cache = FeatureCache(tmp_path / "cache.sqlite")
    first = extract_feature_sets([get_method("phash")], paths, cache)
    both = extract_feature_sets([get_method("phash"), get_method("ahash")], paths, cache)
    assert all(np.array_equal(a, b) for a, b in zip(first[0].features, both[0].features))
    assert len(cache.get_many([f"{get_method('ahash').cache_key()}:{d}"
                               for d in both[1].content_keys])) == 2


def test_threads_for_gil_free_methods_processes_otherwise():
    pool = _make_pool([get_method("phash"), get_method("akaze")], jobs=2)
    assert isinstance(pool, futures.ThreadPoolExecutor)
    pool.shutdown()
    pool = _make_pool([get_method("phash"), get_method("text")], jobs=2)  # OCR: processes
    assert isinstance(pool, futures.ProcessPoolExecutor)
    pool.shutdown()
    assert _make_pool([get_method("phash")], jobs=1) is None


@dataclasses.dataclass
class CrashesOnTinyImages(Method):
    """A method whose worker process dies on 13-pixel-wide images (like a C library crash)."""

    name: ClassVar[str] = "crash-test"
    feature_kind: ClassVar[str] = BITS

    def extract(self, image):
        if image.width == 13:
            os._exit(1)
        return np.ones(8, np.uint8)

    def score(self, a, b):
        return 1.0


def test_a_file_that_kills_its_worker_is_reported_and_the_rest_kept(tmp_path):
    paths = []
    for index, width in enumerate([40, 13, 50, 60, 70]):
        path = tmp_path / f"photo{index}.png"
        Image.new("RGB", (width, 30), (index * 40, 90, 200)).save(path)
        paths.append(str(path))
    found = extract_features(CrashesOnTinyImages(), paths, jobs=2)
    assert found.paths == [p for p in paths if "photo1" not in p]
    assert "worker process died" in found.errors[paths[1]]


def test_a_worker_crash_does_not_cost_the_queued_next_chunk(tmp_path, monkeypatch):
    """The next chunk is queued on the pool before the crash is seen; it goes to the new
    pool, not file by file through fresh processes."""
    from lookalike.features import extract as features

    alone = []
    retry = features._extract_in_own_worker
    monkeypatch.setattr(features, "_extract_in_own_worker",
                        lambda methods, path, data, *limit: alone.append(path)
                        or retry(methods, path, data, *limit))
    paths = []
    for index in range(features.CHUNK + 6):
        path = tmp_path / f"photo{index:02d}.png"
        Image.new("RGB", (13 if index == 1 else 40, 30), (index * 5, 90, 200)).save(path)
        paths.append(str(path))
    found = extract_features(CrashesOnTinyImages(), paths, jobs=2)
    assert found.paths == [p for p in paths if "photo01" not in p]
    assert paths[1] in alone and not set(alone) & set(paths[features.CHUNK:])
