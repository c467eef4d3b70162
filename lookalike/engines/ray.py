"""The Ray engine (`--engine ray`): build an index or identify a large collection on a Ray cluster (Ray Data).

Why Ray Data: photos stream through a pool of actors that each load the models once, in
batches, with back-pressure, on one machine or many; the driver only collects small results
(vectors, packed local features, or answers) and writes the index or the CSV as they arrive,
so an interrupted `identify --csv` run resumes like the local engine. Workers read photos by
path, so on a real cluster the photos and the index must be on a filesystem every node sees.
Connects to `RAY_ADDRESS` when set, else starts a local Ray instance.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from lookalike.features.contract import Method

BATCH = 8


def ensure_ray(num_cpus: int | None = None):
    """Import Ray and connect (RAY_ADDRESS) or start a local instance, once."""
    from lookalike.extras import optional_import

    ray = optional_import("ray", "ray")
    optional_import("ray.data", "ray")  # the datasets the engine maps over (pyarrow, pandas)

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, ignore_reinit_error=True, log_to_driver=False,
                     include_dashboard=False)
    return ray


def ray_map(function, shared, shares: Sequence) -> list:
    """[function(shared, share) for share in shares], each a Ray task; `shared` is put in the
    object store once. `function` must be importable by name (a module-level function)."""
    ray = ensure_ray()
    reference = ray.put(shared)
    task = ray.remote(function)
    return ray.get([task.remote(reference, share) for share in shares])


class FeatureWorker:
    """A Ray actor: both roles' encoded features for a batch of paths (one decode each)."""

    def __init__(self, gmethod: Method, lmethod: Method, max_pixels: int | None = None):
        self.gmethod, self.lmethod = gmethod, lmethod
        self.max_pixels = max_pixels

    def options(self, method: Method):
        """The method's pixel format, under the caller's pixel limit (None: the default)."""
        import dataclasses

        options = method.load_options()
        if self.max_pixels is None:
            return options
        return dataclasses.replace(options, max_pixels=self.max_pixels)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from lookalike.features.contract import shares_local
        from lookalike.imaging.loading import ImageLoadError, load_image

        out: dict[str, list] = {"path": [], "global": [], "local": [], "error": []}
        for path in batch["path"]:
            path = str(path)
            try:
                local = self.lmethod.extract(load_image(path, self.options(self.lmethod)))
                if shares_local(self.gmethod, self.lmethod):
                    global_ = self.gmethod.aggregate(local)
                else:
                    global_ = self.gmethod.extract(load_image(path, self.options(self.gmethod)))
                out["global"].append(self.gmethod.encode(global_))
                out["local"].append(self.lmethod.encode(local))
                out["error"].append("")
            except ImageLoadError as error:
                out["global"].append(b"")
                out["local"].append(b"")
                out["error"].append(error.reason)
            except Exception as error:  # one photo failing must not end the batch
                out["global"].append(b"")
                out["local"].append(b"")
                out["error"].append(f"{type(error).__name__}: {error}")
            out["path"].append(path)
        return out


def ray_extractor(workers: int | None = None, max_pixels: int | None = None):
    """An extractor (see `lookalike.engines`) that runs on Ray actors; photos over
    `max_pixels` (None: the loader's default, 0: no limit) are errors."""

    def extract(paths: Sequence[str], gmethod: Method, lmethod: Method):
        ray = ensure_ray()
        count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        dataset = ray.data.from_items([{"path": str(p)} for p in paths])
        results = dataset.map_batches(FeatureWorker,
                                      fn_constructor_args=(gmethod, lmethod, max_pixels),
                                      batch_size=BATCH, concurrency=min(count, len(paths)),
                                      batch_format="numpy")
        globals_, locals_, errors = {}, {}, {}
        for row in results.iter_rows():
            if row["error"]:
                errors[row["path"]] = row["error"]
            else:
                globals_[row["path"]] = bytes(row["global"])
                locals_[row["path"]] = bytes(row["local"])
        return globals_, locals_, errors

    return extract


class IdentifyWorker:
    """A Ray actor holding one open index: answers for a batch of photo paths."""

    def __init__(self, index: str, settings, landmark: str | None, calibration: str | None):
        from lookalike.gallery.identify import Identifier

        self.identifier = Identifier(index, settings, calibration)
        self.landmark = landmark

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        import json

        from lookalike.imaging.loading import ImageLoadError

        out: dict[str, list] = {"path": [], "answer": [], "error": []}
        for path in batch["path"]:
            path = str(path)
            try:
                if self.landmark is None:
                    answer = self.identifier.identify(path)
                else:
                    answer = self.identifier.verify(path, self.landmark)
                out["answer"].append(json.dumps(answer.to_json(), ensure_ascii=False))
                out["error"].append("")
            except ImageLoadError as error:
                out["answer"].append("")
                out["error"].append(error.reason)
            out["path"].append(path)
        return out


def ray_identify(index: str, paths: Sequence[str], settings, landmark: str | None = None,
                 calibration: str | None = None, workers: int | None = None
                 ) -> Iterator[tuple[str, Any, str | None]]:
    """Yield (photo, Answer or None, error) as Ray actors finish them (order not kept)."""

    if not paths:
        return
    ray = ensure_ray()
    workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    dataset = ray.data.from_items([{"path": str(p)} for p in paths])
    results = dataset.map_batches(
        IdentifyWorker, fn_constructor_args=(os.path.abspath(index), settings, landmark,
                                             calibration),
        batch_size=BATCH, concurrency=min(workers, len(paths)), batch_format="numpy")
    yield from answers_of(results)


# -- shards: the search split over Ray actors --------------------------------------------------------
class ShardActor:
    """A Ray actor serving one shard's postings (memory-mapped; `gallery.shortlist`)."""

    def __init__(self, path: str, global_method: Method):
        from lookalike.gallery.shortlist import ShardSearcher

        self.searcher = ShardSearcher(path, global_method)

    def top(self, query, k: int):
        return self.searcher.top(query, k)


def shard_actors(index: str, shards: int) -> list:
    """One actor per shard of `index` (its shard files written first when stale)."""
    from lookalike.gallery.index import GalleryIndex

    with GalleryIndex(index) as opened:  # brings the sidecar to the SQLite state
        return actors_of(opened, shards)


def actors_of(index, shards: int) -> list:
    """One actor per shard of an open index (its shard files written first when stale)."""
    from lookalike.gallery.shortlist import write_shards

    ray = ensure_ray()
    paths = write_shards(index.path, shards)
    actor = ray.remote(num_cpus=0)(ShardActor)
    return [actor.remote(str(path), index.global_method) for path in paths]


def ray_shortlists(shards: int):
    """For `serve --engine ray`: a factory of sharded shortlists (`Identifier.shortlists`)
    that starts the shard actors of an index's current state, and replaces them (shard
    files rewritten, old actors ended) when the gallery was edited."""
    current: dict[str, tuple] = {}

    def shortlist_of(index):
        ray = ensure_ray()
        state = index.generation()
        known = current.get(str(index.path))
        if known is None or known[0] != state:
            if known is not None:
                for actor in known[1]:
                    ray.kill(actor)
            current[str(index.path)] = (state, actors_of(index, shards))
        return sharded_shortlist(index, current[str(index.path)][1])

    return shortlist_of


def sharded_shortlist(index, actors: Sequence):
    """A `Shortlist` whose search asks every shard actor for its top k and merges them."""
    from lookalike.gallery.shortlist import Shortlist, merge_tops

    ray = ensure_ray()

    def search(query, k: int):
        tops = ray.get([actor.top.remote(query, k) for actor in actors])
        positions, scores = merge_tops(tops)
        return positions, scores, all(bound == -np.inf for _, _, bound in tops)

    names, codes = index.landmark_codes()
    return Shortlist(codes, names, search)


class ShardedIdentifyWorker(IdentifyWorker):
    """An identify actor whose shortlist comes from the shard actors."""

    def __init__(self, index: str, settings, landmark: str | None, calibration: str | None,
                 actors: Sequence):
        from lookalike.gallery.identify import Identifier
        from lookalike.gallery.index import GalleryIndex

        opened = GalleryIndex(index)
        self.identifier = Identifier(opened, settings, calibration,
                                     shortlist=sharded_shortlist(opened, actors))
        self.landmark = landmark


def ray_identify_sharded(index: str, paths: Sequence[str], settings, shards: int,
                         landmark: str | None = None, calibration: str | None = None,
                         workers: int | None = None
                         ) -> Iterator[tuple[str, Any, str | None]]:
    """`ray_identify` with the search split over `shards` shard actors."""

    if not paths:
        return
    ray = ensure_ray()
    index = os.path.abspath(index)
    actors = shard_actors(index, shards)
    workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    dataset = ray.data.from_items([{"path": str(p)} for p in paths])
    results = dataset.map_batches(
        ShardedIdentifyWorker, fn_constructor_args=(index, settings, landmark, calibration,
                                                    actors),
        batch_size=BATCH, concurrency=min(workers, len(paths)), batch_format="numpy")
    yield from answers_of(results)


def answers_of(results) -> Iterator[tuple[str, Any, str | None]]:
    """(photo, answer or None, error) from the rows a Ray identify worker returned."""
    import json

    from lookalike.gallery.answers import Answer

    for row in results.iter_rows():
        if row["error"]:
            yield row["path"], None, row["error"]
        else:
            yield row["path"], Answer.from_json(json.loads(row["answer"])), None
