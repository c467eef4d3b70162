"""Feature cache: reuse, invalidation, two writers at once, kills and damaged files."""

from __future__ import annotations

import io
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import photos_of
from lookalike.features.cache import FeatureCache
from lookalike.features.extract import extract_features
from lookalike.features.registry import get_method


class CountingDhash:
    """Wraps dhash to count how many images were really extracted."""

    def __init__(self):
        self.method = get_method("dhash")
        self.calls = 0
        original = self.method.extract

        def counted(image):
            self.calls += 1
            return original(image)

        self.method.extract = counted


def test_rerun_reuses_cached_features(tmp_path):
    paths = [str(p) for p in photos_of("tower_bridge")]
    cache = FeatureCache(tmp_path / "c.sqlite")
    first = CountingDhash()
    result = extract_features(first.method, paths, cache, quiet=True)
    second = CountingDhash()
    again = extract_features(second.method, paths, cache, quiet=True)
    assert first.calls == len(paths) and second.calls == 0
    assert all(np.array_equal(a, b) for a, b in zip(result.features, again.features))


def test_key_is_content_and_settings_not_name(tmp_path):
    source = photos_of("tower_bridge")[0]
    copy = tmp_path / "renamed.jpg"
    shutil.copy(source, copy)
    cache = FeatureCache(tmp_path / "c.sqlite")
    extract_features(get_method("dhash"), [str(source)], cache, quiet=True)
    renamed = CountingDhash()
    extract_features(renamed.method, [str(copy)], cache, quiet=True)
    assert renamed.calls == 0  # same bytes, other name: a hit
    copy.write_bytes(photos_of("tower_bridge")[1].read_bytes())
    edited = CountingDhash()
    extract_features(edited.method, [str(copy)], cache, quiet=True)
    assert edited.calls == 1  # other bytes: a miss
    assert get_method("dhash", hash_size=16).cache_key() != get_method("dhash").cache_key()


def test_damaged_cache_is_rebuilt_not_fatal(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    cache = FeatureCache(path)
    result = extract_features(get_method("ahash"), [str(photos_of("tower_bridge")[0])], cache, quiet=True)
    assert len(result.features) == 1 and len(cache) == 1
    assert any(name.startswith("c.sqlite.damaged-") for name in os.listdir(tmp_path))


def test_only_the_newest_damaged_copy_is_kept(tmp_path):
    path = tmp_path / "c.sqlite"
    for old in ("c.sqlite.damaged-1000", "c.sqlite.damaged-1000-wal", "c.sqlite.damaged-2000"):
        (tmp_path / old).write_bytes(b"an older damaged copy")
    (tmp_path / "other.sqlite.damaged-1000").write_bytes(b"another cache's: not ours")
    for _ in range(2):
        path.write_bytes(b"this is not a database" * 100)
        FeatureCache(path).close()
    damaged = sorted(n for n in os.listdir(tmp_path) if n.startswith("c.sqlite.damaged-"))
    assert len(damaged) == 1 and damaged[0] not in ("c.sqlite.damaged-1000",
                                                    "c.sqlite.damaged-2000")
    assert (tmp_path / damaged[0]).read_bytes().startswith(b"this is not a database")
    assert (tmp_path / "other.sqlite.damaged-1000").exists()
    assert len(FeatureCache(path)) == 0  # the rebuilt cache works


def test_undecodable_entry_is_recomputed(tmp_path):
    cache = FeatureCache(tmp_path / "c.sqlite")
    paths = [str(photos_of("tower_bridge")[0])]
    extract_features(get_method("ahash"), paths, cache, quiet=True)
    cache.connection.execute("UPDATE features SET value = x'00'")
    result = extract_features(get_method("ahash"), paths, cache, quiet=True)
    assert result.features[0].shape == (64,)


def _fill(cache_path: str, label: str) -> None:
    paths = [str(p) for p in photos_of(label)]
    extract_features(get_method("ahash"), paths, FeatureCache(cache_path), quiet=True)


def test_two_processes_write_at_once(tmp_path):
    cache_path = str(tmp_path / "c.sqlite")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_fill, args=(cache_path, label))
               for label in ("sacre_coeur", "hertford_bridge")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    expected = len(photos_of("sacre_coeur")) + len(photos_of("hertford_bridge"))
    assert len(FeatureCache(cache_path)) == expected


def test_kill_mid_run_leaves_a_consistent_cache(tmp_path):
    cache_path = tmp_path / "c.sqlite"
    script = (
        "import sys; from conftest import photos_of; "
        "from lookalike.features.cache import FeatureCache; from lookalike.features.extract import extract_features; "
        "from lookalike.methods import get_method; "
        "paths=[str(p) for p in photos_of('distractor')]*20; "
        "extract_features(get_method('whash'), paths, FeatureCache(sys.argv[1]), quiet=True)"
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(__file__))
    process = subprocess.Popen([sys.executable, "-c", script, str(cache_path)], env=env)
    deadline = time.time() + 60
    while time.time() < deadline and not cache_path.exists():
        time.sleep(0.1)
    time.sleep(1.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    connection = sqlite3.connect(cache_path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()
    result = extract_features(get_method("whash"), [str(p) for p in photos_of("distractor")[:3]],
                              FeatureCache(cache_path), quiet=True)
    assert len(result.features) == 3


def test_pair_scores_of_slow_methods_are_cached(tmp_path):
    from lookalike.evaluation.compare import score_sets

    cache = FeatureCache(tmp_path / "c.sqlite")
    paths = [str(p) for p in photos_of("tower_bridge")]
    method = get_method("akaze")
    features = extract_features(method, paths, cache, quiet=True)
    first = score_sets(method, features, features, cache)
    calls = []
    method.score = lambda a, b: calls.append(1) or 0.0
    second = score_sets(method, features, features, cache)
    assert not calls and np.array_equal(first, second)
    other = get_method("akaze", ratio=0.8)  # a scoring setting: other keys, fresh scores
    assert other.score_key() != method.score_key()


def test_array_encoding_round_trips_and_reads_old_entries():
    from lookalike.features.contract import decode_arrays, encode_arrays

    arrays = [np.arange(64, dtype=np.uint8) % 2, np.linspace(-1, 1, 768, dtype=np.float32),
              np.zeros((3, 0), np.int64), np.ones((2, 3, 4), ">f4")]
    for array in arrays:
        back = decode_arrays(encode_arrays(array))
        assert back.dtype == array.dtype and back.shape == array.shape
        assert np.array_equal(back, array) and back.flags.writeable
    keypoints = {"points": np.ones((5, 2), np.float32), "descriptors": np.zeros((5, 61), np.uint8)}
    encoded = encode_arrays(keypoints)
    back = decode_arrays(encoded)
    assert set(back) == set(keypoints) and all(np.array_equal(back[k], keypoints[k]) for k in back)
    assert all(back[k].dtype == keypoints[k].dtype and back[k].flags.writeable for k in back)
    assert not encoded.startswith(b"PK")  # no zip archive for plain arrays
    old = io.BytesIO()  # entries cached by earlier versions are .npz archives
    np.savez(old, __array__=np.arange(5))
    assert np.array_equal(decode_arrays(old.getvalue()), np.arange(5))
    old_dict = io.BytesIO()
    np.savez(old_dict, **keypoints)
    assert np.array_equal(decode_arrays(old_dict.getvalue())["descriptors"],
                          keypoints["descriptors"])
    for damaged in (encode_arrays(np.arange(10))[:-3], encoded[:-3], encoded[:12],
                    encoded + b"x"):
        with pytest.raises(ValueError):
            decode_arrays(damaged)
