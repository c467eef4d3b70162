"""Extract methods' features for many files: cache first, then parallel work, errors kept.

This is the only place that turns paths into features, so every command gets the same cache,
progress bar, `--jobs` behaviour and per-file error reporting. Work proceeds in chunks so that
memory stays bounded on large collections, and each chunk's features are committed to the
cache in one transaction (a kill loses at most the chunk in flight).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import multiprocessing
from collections.abc import Sequence
from concurrent import futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from lookalike.features.cache import FeatureCache, NoCache, content_hash
from lookalike.features.contract import FeatureSet, Method
from lookalike.features.progress import progress_bar
from lookalike.imaging.loading import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    LoadOptions,
    decode_image,
    read_bytes,
)

CHUNK = 32


def _extract_file(methods: Sequence[Method], path: str, data: bytes,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> list[tuple[str, Any]]:
    """Every method's feature of one file, decoding it once per distinct pixel format asked for
    (and refusing it over `max_pixels`, 0: no limit).

    Returns ('ok', encoded feature) or ('error', reason) per method, so one method failing on
    an odd image does not cost the others their result.
    """
    decoded: dict[LoadOptions, Any] = {}
    out: list[tuple[str, Any]] = []
    for method in methods:
        options = load_options(method, max_pixels)
        if options not in decoded:
            decoded[options] = _decode(data, path, options)
        image = decoded[options]
        if isinstance(image, ImageLoadError):
            out.append(("error", image.reason))
            continue
        try:
            out.append(("ok", method.encode(method.extract(image))))
        except Exception as error:  # a method failing on one odd image must not end the run
            out.append(("error", _failure(method, error)))
    return out


def load_options(method: Method, max_pixels: int) -> LoadOptions:
    """The method's pixel format, under the caller's pixel limit."""
    return dataclasses.replace(method.load_options(), max_pixels=max_pixels)


def _decode(data: bytes, path: str, options: LoadOptions):
    """The decoded image, or the `ImageLoadError` that says why it could not be decoded."""
    try:
        return decode_image(data, path, options)
    except ImageLoadError as error:
        return error


def _failure(method: Method, error: Exception) -> str:
    return f"{method.name} failed: {type(error).__name__}: {error}"


def extract_features(
    method: Method,
    paths: Sequence[str],
    cache: FeatureCache | NoCache | None = None,
    jobs: int = 1,
    quiet: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> FeatureSet:
    """Features of `method` for `paths`, in order; unreadable files (and photos over
    `max_pixels`, 0: no limit) go to `.errors`."""
    return extract_feature_sets([method], paths, cache, jobs, quiet, max_pixels)[0]


def extract_feature_sets(
    methods: Sequence[Method],
    paths: Sequence[str],
    cache: FeatureCache | NoCache | None = None,
    jobs: int = 1,
    quiet: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[FeatureSet]:
    """Features of several methods for the same files, one `FeatureSet` per method.

    Each file is read and content-hashed once, and decoded once per distinct pixel format the
    methods ask for, so the hashes of a `compare --methods all` share one JPEG decode.
    Batched methods (a network) and methods built from others keep their own passes.
    """
    cache = cache if cache is not None else NoCache()
    _reuse_freed_memory()
    sets: list[FeatureSet | None] = [None] * len(methods)
    plain = []
    for index, method in enumerate(methods):
        if extracted_together(method):
            plain.append(index)
        elif method.composed:  # built from other methods: reuses their caches
            sets[index] = method.combine_features(paths, cache, jobs, quiet, max_pixels)
        else:
            sets[index] = _extract_batched(method, paths, cache, jobs, quiet, max_pixels)
    if plain:
        for index, found in zip(plain, _extract_plain([methods[i] for i in plain], paths, cache,
                                                      jobs, quiet, max_pixels)):
            sets[index] = found
    return sets  # type: ignore[return-value]


@functools.cache
def _reuse_freed_memory() -> None:
    """Ask glibc to keep freed memory up to 64 MB blocks for reuse (once per process).

    Every photo needs a few fresh buffers of 1-10 MB (decoded pixels, their copies, index
    arrays). By default glibc hands such blocks back to the kernel when they are freed, and
    the next photo pays a page fault per 4 kB to get them again: 1-2 ms of colorhash's 13 ms.
    Elsewhere (not glibc) this does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    mmap_threshold, trim_threshold = -3, -1  # glibc's M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    libc.mallopt(mmap_threshold, 64 << 20)
    libc.mallopt(trim_threshold, 256 << 20)


def extracted_together(method: Method) -> bool:
    """Whether `extract_feature_sets` runs this method in the shared one-decode-per-file pass
    (a batched network and a method built from others have passes of their own)."""
    return method.batch_size == 1 and not method.composed


class _Collector:
    """Per-method results, errors and cache keys for one extraction run."""

    def __init__(self, methods: Sequence[Method]):
        self.methods = list(methods)
        self.method_keys = [method.cache_key() for method in methods]
        self.results: list[dict[str, Any]] = [{} for _ in methods]
        self.errors: list[dict[str, str]] = [{} for _ in methods]
        self.digests: dict[str, str] = {}

    def read_chunk(self, chunk: Sequence[str], cache) -> tuple[dict[str, bytes], list[list[str]]]:
        """Read a chunk's files, fill what the cache has; return contents and, per method,
        the paths still to compute."""
        contents: dict[str, bytes] = {}
        for path in chunk:
            try:
                contents[path] = read_bytes(path)
                self.digests[path] = content_hash(contents[path])
            except ImageLoadError as error:
                for errors in self.errors:
                    errors[path] = error.reason
        wanted = {self.key(m, path) for m in range(len(self.methods)) for path in contents}
        cached = cache.get_many(wanted)
        missing: list[list[str]] = []
        for m, method in enumerate(self.methods):
            todo = []
            for path in contents:
                key = self.key(m, path)
                if key in cached:
                    try:
                        self.results[m][path] = method.decode(cached[key])
                        continue
                    except Exception:  # an unreadable entry is recomputed, never fatal
                        cache.delete(key)
                todo.append(path)
            missing.append(todo)
        return contents, missing

    def key(self, m: int, path: str) -> str:
        return f"{self.method_keys[m]}:{self.digests[path]}"

    def take(self, m: int, path: str, status: str, value: Any, stored: list) -> None:
        if status == "ok":
            self.results[m][path] = self.methods[m].decode(value)
            stored.append((self.key(m, path), value))
        else:
            self.errors[m][path] = value

    def feature_sets(self, paths: Sequence[str]) -> list[FeatureSet]:
        sets = []
        for method, results, errors in zip(self.methods, self.results, self.errors):
            ok = [path for path in paths if path in results]
            sets.append(FeatureSet(method, ok, [results[p] for p in ok], errors,
                                   [self.digests[p] for p in ok]))
        return sets


def _make_pool(methods: Sequence[Method], jobs: int) -> futures.Executor | None:
    """Threads where every method's heavy work releases the GIL (no pickling, no fork),
    otherwise forked processes."""
    if jobs <= 1:
        return None
    if all(method.parallel == "threads" for method in methods):
        return futures.ThreadPoolExecutor(jobs)
    return futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"))


def _extract_plain(methods, paths, cache, jobs, quiet, max_pixels) -> list[FeatureSet]:
    """The shared pass. Chunks overlap: while the workers compute one chunk, this thread reads,
    hashes and looks up the next and queues it, so the workers never wait between chunks."""
    collector = _Collector(methods)
    pool = _make_pool(methods, jobs)
    labels = ", ".join(method.label() for method in methods)
    bar = progress_bar(len(paths), labels if len(methods) == 1 else f"features ({labels})", quiet)
    try:
        with _one_blas_thread_per_job():
            in_flight = None
            for start in range(0, len(paths), CHUNK):
                queued = _queue_chunk(collector, paths[start:start + CHUNK], cache, pool, bar,
                                      max_pixels)
                if in_flight is not None:
                    pool = _finish_chunk(collector, in_flight, cache, pool, jobs, bar, queued)
                in_flight = queued
            if in_flight is not None:
                pool = _finish_chunk(collector, in_flight, cache, pool, jobs, bar, None)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return collector.feature_sets(paths)


def _one_blas_thread_per_job():
    """Each job's numpy matrix products run on one thread. With more, BLAS threads fought the
    jobs for the cores (`-j 2` was slower than `-j 1`), and with one job they spun on the idle
    core for a few percent less wall time at twice the CPU time."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


@dataclass
class _QueuedChunk:
    todo: dict[str, list[int]]  # path -> indices of the methods it still needs
    contents: dict[str, bytes]
    running: dict[futures.Future, tuple[str, list[int]]] | None  # None: computed when finished
    max_pixels: int = DEFAULT_MAX_PIXELS


def _queue_chunk(collector: _Collector, chunk, cache, pool, bar, max_pixels) -> _QueuedChunk:
    contents, missing = collector.read_chunk(chunk, cache)
    missing_sets = [set(todo_of_method) for todo_of_method in missing]
    todo = {path: [m for m in range(len(missing)) if path in missing_sets[m]] for path in contents}
    todo = {path: wanted for path, wanted in todo.items() if wanted}
    bar.update(len(chunk) - len(todo))
    queued = _QueuedChunk(todo, contents, None, max_pixels)
    _submit(collector.methods, queued, pool)
    return queued


def _submit(methods, queued: _QueuedChunk, pool) -> None:
    """Hand a chunk's files to the pool; without one they are computed when finished."""
    if pool is not None:
        queued.running = {
            pool.submit(_extract_file, [methods[m] for m in wanted], path, queued.contents[path],
                        queued.max_pixels):
            (path, wanted) for path, wanted in queued.todo.items()}


def _finish_chunk(collector: _Collector, queued: _QueuedChunk, cache, pool, jobs, bar,
                  following: _QueuedChunk | None):
    """Collect a chunk's results into the collector and the cache; return the pool to go on
    with. When a worker process died, that is a new pool, and the `following` chunk, queued
    on the dead one, is handed to it."""
    methods = collector.methods
    stored: list = []
    crashed = []
    for path, wanted, outcome in _outcomes(methods, queued):
        if outcome is None:
            crashed.append((path, wanted))
            continue
        for m, (status, value) in zip(wanted, outcome):
            collector.take(m, path, status, value, stored)
        bar.update(1)
    if crashed:  # a worker died: find the file that did it, keep the others
        pool.shutdown(cancel_futures=True)
        for path, wanted in crashed:
            outcome = _extract_in_own_worker([methods[m] for m in wanted], path,
                                             queued.contents[path], queued.max_pixels)
            for m, (status, value) in zip(wanted, outcome):
                collector.take(m, path, status, value, stored)
            bar.update(1)
        pool = _make_pool(methods, jobs)
        if following is not None:
            _submit(methods, following, pool)
    cache.put_many(stored)
    return pool


def _extract_in_own_worker(methods, path: str, data: bytes, max_pixels: int
                           ) -> list[tuple[str, Any]]:
    """Extract one file in a fresh worker process, so a file that crashes its worker (or
    gets it killed) is reported by name without taking other files with it."""
    with futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as own:
        try:
            return own.submit(_extract_file, methods, path, data, max_pixels).result()
        except BrokenProcessPool:
            reason = "the worker process died while reading this file (crashed or was killed)"
            return [("error", reason)] * len(methods)


def _outcomes(methods, queued: _QueuedChunk):
    """Yield (path, method indices, outcomes) as each file's work finishes; outcomes are None
    for files lost with a worker process that died (or queued on its pool when it did)."""
    if queued.running is None:
        for path, wanted in queued.todo.items():
            yield path, wanted, _extract_file([methods[m] for m in wanted], path,
                                              queued.contents[path], queued.max_pixels)
        return
    for job in futures.as_completed(queued.running):
        path, wanted = queued.running[job]
        try:
            outcome = job.result()
        except (BrokenProcessPool, futures.CancelledError):  # retried one by one by the caller
            outcome = None
        yield path, wanted, outcome


def _extract_batched(method, paths, cache, jobs, quiet, max_pixels) -> FeatureSet:
    """A batched method (a network): decode in threads, run the model on batches here."""
    collector = _Collector([method])
    pool = futures.ThreadPoolExecutor(jobs) if jobs > 1 else None
    bar = progress_bar(len(paths), method.label(), quiet)
    try:
        for start in range(0, len(paths), CHUNK):
            chunk = paths[start:start + CHUNK]
            contents, (missing,) = collector.read_chunk(chunk, cache)
            bar.update(len(chunk) - len(missing))
            stored: list = []
            for path, (status, value) in _compute_batched(method, missing, contents, pool, bar,
                                                          max_pixels):
                collector.take(0, path, status, value, stored)
            cache.put_many(stored)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return collector.feature_sets(paths)[0]


def _compute_batched(method, paths, contents, pool, bar, max_pixels):
    """Yield (path, outcome); with a pool, later files decode while a batch runs the model."""
    if not paths:
        return
    decoded = (pool.map if pool is not None else map)(
        lambda p: _decode(contents[p], p, load_options(method, max_pixels)), paths
    )
    names, images = [], []
    for path, image in zip(paths, decoded):
        if isinstance(image, ImageLoadError):
            yield path, ("error", image.reason)
            bar.update(1)
            continue
        names.append(path)
        images.append(image)
        if len(images) == method.batch_size:
            yield from _run_batch(method, names, images)
            bar.update(len(names))
            names, images = [], []
    if images:
        yield from _run_batch(method, names, images)
        bar.update(len(names))


def _run_batch(method, names, images):
    try:
        outcomes = [("ok", method.encode(feature)) for feature in method.extract_many(images)]
    except Exception:  # find the image that fails, keep the others
        outcomes = []
        for image in images:
            try:
                outcomes.append(("ok", method.encode(method.extract(image))))
            except Exception as error:
                outcomes.append(("error", _failure(method, error)))
    return zip(names, outcomes)
