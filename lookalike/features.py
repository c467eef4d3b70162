"""Extract one method's features for many files: cache first, then parallel work, errors kept.

This is the only place that turns paths into features, so every command gets the same cache,
progress bar, `--jobs` behaviour and per-file error reporting. Work proceeds in chunks so that
memory stays bounded on large collections, and each chunk's features are committed to the
cache in one transaction (a kill loses at most the chunk in flight).
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Container, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from lookalike.cache import FeatureCache, NoCache, content_hash
from lookalike.loading import ImageLoadError, decode_image, read_bytes
from lookalike.methods.base import Method

CHUNK = 32


@dataclass
class FeatureSet:
    """Features of one method for the files that worked, plus the reason each other file failed."""

    method: Method
    paths: list[str]
    features: list[Any]
    errors: dict[str, str] = field(default_factory=dict)
    content_keys: list[str] = field(default_factory=list)  # content hash of each path's file

    def without(self, excluded: Container[str]) -> FeatureSet:
        """The same set less the given paths (e.g. files that failed for another method)."""
        keep = [i for i, path in enumerate(self.paths) if path not in excluded]
        if len(keep) == len(self.paths):
            return self
        return FeatureSet(self.method, [self.paths[i] for i in keep],
                          [self.features[i] for i in keep], self.errors,
                          [self.content_keys[i] for i in keep])

    def feature_of(self, path: str) -> Any:
        if getattr(self, "_positions", None) is None or len(self._positions) != len(self.paths):
            self._positions = {p: i for i, p in enumerate(self.paths)}
        return self.features[self._positions[path]]


def _extract_one(method: Method, path: str, data: bytes) -> tuple[str, bytes | str]:
    """Decode and extract in a worker; returns ('ok', encoded) or ('error', reason)."""
    try:
        image = decode_image(data, path, method.load_options())
        return "ok", method.encode(method.extract(image))
    except ImageLoadError as error:
        return "error", error.reason
    except Exception as error:  # a method failing on one odd image must not end the run
        return "error", f"{method.name} failed: {type(error).__name__}: {error}"


def _decode_for(method: Method, path: str, data: bytes):
    try:
        return decode_image(data, path, method.load_options())
    except ImageLoadError as error:
        return error


def progress_bar(total: int, desc: str, quiet: bool, unit: str = "img") -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=quiet,
                dynamic_ncols=True, leave=False)


def extract_features(
    method: Method,
    paths: Sequence[str],
    cache: FeatureCache | NoCache | None = None,
    jobs: int = 1,
    quiet: bool = False,
) -> FeatureSet:
    """Features of `method` for `paths`, in order; unreadable files go to `.errors`."""
    cache = cache if cache is not None else NoCache()
    if hasattr(method, "combine_features"):  # a method built from others reuses their caches
        return method.combine_features(paths, cache, jobs, quiet)
    method_key = method.cache_key()
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    digests: dict[str, str] = {}
    pool: futures.Executor | None = None
    if jobs > 1 and method.batch_size > 1:
        pool = futures.ThreadPoolExecutor(jobs)  # decode in threads, infer in batches here
    elif jobs > 1:
        pool = futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"))
    bar = progress_bar(len(paths), method.label(), quiet)
    try:
        for start in range(0, len(paths), CHUNK):
            chunk = paths[start:start + CHUNK]
            contents: dict[str, bytes] = {}
            keys: dict[str, str] = {}
            for path in chunk:
                try:
                    contents[path] = read_bytes(path)
                    digests[path] = content_hash(contents[path])
                    keys[path] = f"{method_key}:{digests[path]}"
                except ImageLoadError as error:
                    errors[path] = error.reason
            cached = cache.get_many(set(keys.values()))
            missing = []
            for path, key in keys.items():
                if key in cached:
                    try:
                        results[path] = method.decode(cached[key])
                        continue
                    except Exception:  # an unreadable entry is recomputed, never fatal
                        cache.delete(key)
                missing.append(path)
            bar.update(len(chunk) - len(missing))
            fresh = _compute(method, missing, contents, pool, bar)
            stored = []
            for path, (status, value) in fresh.items():
                if status == "ok":
                    results[path] = method.decode(value)
                    stored.append((keys[path], value))
                else:
                    errors[path] = value
            cache.put_many(stored)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    ok_paths = [path for path in paths if path in results]
    return FeatureSet(method, ok_paths, [results[p] for p in ok_paths], errors,
                      [digests[p] for p in ok_paths])


def _compute(method, paths, contents, pool, bar) -> dict[str, tuple[str, Any]]:
    if not paths:
        return {}
    out: dict[str, tuple[str, Any]] = {}
    if method.batch_size > 1:
        decode = (pool.map if pool is not None else map)(
            lambda p: _decode_for(method, p, contents[p]), paths
        )
        images, names = [], []
        for path, image in zip(paths, decode):
            if isinstance(image, ImageLoadError):
                out[path] = ("error", image.reason)
                bar.update(1)
            else:
                images.append(image)
                names.append(path)
        for start in range(0, len(images), method.batch_size):
            batch_names = names[start:start + method.batch_size]
            try:
                features = method.extract_many(images[start:start + method.batch_size])
                for path, feature in zip(batch_names, features):
                    out[path] = ("ok", method.encode(feature))
            except Exception:
                for path, image in zip(batch_names, images[start:start + method.batch_size]):
                    try:
                        out[path] = ("ok", method.encode(method.extract(image)))
                    except Exception as error:
                        out[path] = ("error", f"{method.name} failed: {error}")
            bar.update(len(batch_names))
        return out
    if pool is None:
        for path in paths:
            out[path] = _extract_one(method, path, contents[path])
            bar.update(1)
        return out
    jobs = {pool.submit(_extract_one, method, path, contents[path]): path for path in paths}
    for job in futures.as_completed(jobs):
        out[jobs[job]] = job.result()
        bar.update(1)
    return out
