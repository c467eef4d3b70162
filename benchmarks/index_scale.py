"""Index size, open time, memory and search speed from 10,000 to 1,000,000 references.

    .venv/bin/python benchmarks/index_scale.py --references 10000,100000 [--shards K] \
        [--codebook FILE.npy] --json

Galleries are made as `benchmarks/identify_speed.py` makes them: the dev set's 105 landmark
references (their ALIKED features aggregated with the codebook in use), plus variants made in
feature space (a random 85 % of a reference's visual words, 3 % of their residual bits
flipped), drawn from pools of random masks so that a million are generated in about a
minute. The variants are written with `write_changes` in transactions of 20,000, then the index
is opened once, which writes its stored inverted file (`NAME.lkidx.ivf`): `build_s` is both.

A variant's local features are not stored (a million of ~400 kB would be 400 GB): its row
names its source photo, and when identify verifies it, its local features are made then as
identify_speed makes them (a random 85 % of the source's keypoints, moved and jittered),
seeded by its id. Real references store theirs.

Then, in a fresh process (so memory is the index's, not the build's, and no network is
loaded): `open_s` (open the index), `search_p50_ms`/`search_p95_ms` (the shortlist search of
each real dev query's global feature: the inverted file's scores and top 100; with --shards K
the index's K shards searched one after the other and merged), `identify_p50_ms` (after
features: shortlist, verification, calibration), `rss_mb` (resident memory at the end) and the
load average (`uptime`) beside them. One JSON line per size.

The search is timed once per ASMK scoring kernel in `--kernels` (default `numpy,compiled`: the
numpy path and the numba kernel on every core; `compiled-1` is one thread), side by side in
the same process over the same queries, with `same_tops` (every kernel found the same top 100,
scores included) and `ns_per_posting` (search p50 / postings met); `search_p50_ms` is the last
kernel's. `bandwidth_gb_s` is one core's memory read bandwidth, what a pass over postings
that are in memory is bounded by. With --shards K, `shards_equal_one_machine` says whether the
merged tops were the one-machine ranking's prefix for every query; with --ray the shards are
searched (after the one-machine search with each of `--kernels`, as kernel "ray") by Ray actors (`engines.ray.actors_of`, cores / K kernel threads each) on a local
Ray started by the measuring process.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

MANIFEST = REPO.parent / "shared" / "data" / "landmarks" / "manifest.csv"
CHUNK = 20_000
POOL = 1 << 18  # rows of random masks the variants are cut from


def load() -> float:
    return os.getloadavg()[0]


def rss_parts_mb() -> dict:
    """Resident memory split: anonymous (the process's own) and file-backed (the mapped
    postings' pages, shared with the page cache and other processes)."""
    parts = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("RssAnon:", "RssFile:")):
                parts[f"rss_{line[3:7].lower()}_mb"] = round(int(line.split()[1]) / 1024)
    return parts


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Variants:
    """ASMK variants of real features, cut from pools of random masks (vectorised)."""

    def __init__(self, features: list[dict], seed: int):
        self.rng = np.random.default_rng(seed)
        width = features[0]["bits"].shape[1]
        flips = self.rng.random((POOL, width * 8)) < 0.03
        self.flips = np.packbits(flips, axis=1)
        self.keeps = self.rng.random(POOL) < 0.85
        self.features = features

    def make(self, source: int) -> dict:
        feature = self.features[source]
        n = len(feature["words"])
        start = int(self.rng.integers(0, POOL - n))
        keep = self.keeps[start:start + n]
        offset = int(self.rng.integers(0, POOL - n))
        bits = feature["bits"] ^ self.flips[offset:offset + n]
        return {"words": feature["words"][keep], "bits": bits[keep]}


def build(path: Path, size: int, codebook: str | None, queries_out: Path, queries: int) -> dict:
    from lookalike.engines.local import local_extractor
    from lookalike.evaluation.evaluate import load_dataset
    from lookalike.features.cache import open_cache
    from lookalike.gallery.folders import GalleryEntry, Landmark
    from lookalike.gallery.identify import Identifier
    from lookalike.gallery.index import GalleryIndex, create_index, write_changes
    from lookalike.gallery.roles import pipeline_methods
    from lookalike.imaging.loading import read_bytes

    paths, labels = load_dataset(MANIFEST)
    references = [(p, lab) for p, lab in zip(paths, labels) if lab != "distractor"]
    global_method, local_method = pipeline_methods("default", codebook=codebook)
    started = time.perf_counter()
    ref_paths = [p for p, _ in references]
    globals_, locals_, errors = local_extractor(open_cache(None), 2)(ref_paths, global_method,
                                                                     local_method)
    assert not errors, errors
    extracted = time.perf_counter() - started
    decoded = [global_method.decode(globals_[p]) for p in ref_paths]
    started = time.perf_counter()
    create_index(path, global_method, local_method, None)
    rows = [(label, p, f"real{i}", globals_[p], locals_[p])
            for i, (p, label) in enumerate(references)]
    variants = Variants(decoded, seed=size)
    landmarks = [GalleryEntry(Landmark(label), []) for label in sorted({lab for _, lab in
                                                                        references})]
    with GalleryIndex(path) as index:
        done = 0
        sources = np.random.default_rng(size + 1).integers(0, len(references), size)
        while done < size:
            if not rows:
                for source in sources[done:min(size, done + CHUNK)].tolist():
                    p, label = references[source]
                    rows.append((label, p, f"variant{done + len(rows)}",
                                 global_method.encode(variants.make(source)), b""))
            write_changes(index.connection, landmarks, rows, remove_ids=())
            done += len(rows)
            rows = []
    written = time.perf_counter() - started
    GalleryIndex(path).close()  # writes the stored inverted file
    built = time.perf_counter() - started
    # Query features (real dev photos), made once here so the measuring process loads no
    # network.
    sample = random.Random(0).sample(paths, queries)
    identifier = Identifier(path, calibration=calibration())
    features = [(q, identifier.features_from_bytes(read_bytes(q), q)) for q in sample]
    queries_out.write_bytes(pickle.dumps(features))
    return {"extract_s": round(extracted, 1), "write_s": round(written, 1),
            "build_s": round(built, 1)}


def calibration():
    """The default preset's identify calibration, its method record dropped: with a fitted
    codebook the similarities differ from those it was fitted on, which changes the answers'
    probabilities, not their cost."""
    from lookalike.retrieval.presets import get_preset

    chosen = get_preset("default").calibration("identify")
    chosen.methods = {}
    return chosen


def patch_variant_locals(index, local_method) -> None:
    """Variants' local features, made when verification reads them (see the docstring)."""
    from identify_speed import local_variant

    sources: dict[str, dict] = {}
    stored = index.local_features

    def local_features(ref_id: int) -> dict:
        path, blob = index.connection.execute("SELECT path, local FROM refs WHERE id = ?",
                                              (int(ref_id),)).fetchone()
        if blob:
            return stored(ref_id)
        if path not in sources:
            (real,) = index.connection.execute(
                "SELECT id FROM refs WHERE path = ? AND length(local) > 0 LIMIT 1", (path,)
            ).fetchone()
            sources[path] = stored(real)
        return local_variant(sources[path], np.random.default_rng(int(ref_id)))

    index.local_features = local_features


def measure(path: Path, queries_file: Path, shards: int, kernels: list[str],
            repeats: int, on_ray: bool) -> dict:
    from lookalike.gallery.identify import Identifier
    from lookalike.gallery.index import GalleryIndex
    from lookalike.gallery.shortlist import ShardSearcher, merge_tops, write_shards
    from lookalike.matching import asmk_kernel

    queries = pickle.loads(queries_file.read_bytes())
    rss_before = rss_mb()
    load_open = load()
    started = time.perf_counter()
    index = GalleryIndex(path)
    open_s = time.perf_counter() - started
    rss_open = rss_mb()
    searchers, actors = [], []
    if shards and on_ray:  # the one-machine search, then the shards' on Ray, side by side
        actors, kernels = shard_actors(index, shards), [*kernels, "ray"]
    elif shards:
        searchers = [ShardSearcher(p, index.global_method) for p in write_shards(path, shards)]
    inverted = [index.search_index.inverted, *(s.index.index.inverted for s in searchers)]

    def search(feature):
        if kernel == "ray":
            import ray

            return merge_tops(ray.get([actor.top.remote(feature, 100) for actor in actors]))
        if searchers:
            return merge_tops([s.top(feature, 100) for s in searchers])
        positions, scores = index.search_index.search(feature, 100)
        return (positions, scores) if actors else index.search(feature, 100)

    per_kernel, tops = {}, {}
    default_block = asmk_kernel.BLOCK
    for kernel in kernels:
        for one in inverted:
            one.kernel = "numpy" if kernel == "numpy" else "compiled"  # (actors: "auto")
        # "compiled-1": one thread; "compiled-2-b1000000": blocks of a million positions
        _, threads, block = [*kernel.split("-"), "", ""][:3]
        if threads:
            os.environ["LOOKALIKE_THREADS"] = threads
        asmk_kernel.BLOCK = int(block[1:]) if block else default_block
        for _, query in queries[:2]:  # warm up (and load the compiled kernel)
            search(query.item.global_feature)
        searches, found = [], []
        for round_ in range(repeats):
            for _, query in queries:
                started = time.perf_counter()
                top = search(query.item.global_feature)
                searches.append(time.perf_counter() - started)
                if round_ == 0:
                    found.append(top)
        os.environ.pop("LOOKALIKE_THREADS", None)
        asmk_kernel.BLOCK = default_block
        per_kernel[kernel] = {
            "search_p50_ms": round(1000 * float(np.percentile(searches, 50)), 1),
            "search_p95_ms": round(1000 * float(np.percentile(searches, 95)), 1),
            "load_search": round(load(), 2)}
        tops[kernel] = found
    for one in inverted:
        one.kernel = "auto"
    load_search = load()
    identifier = Identifier(index, calibration=calibration())
    patch_variant_locals(index, index.local_method)
    identifier.identify_features(*queries[0])  # warm up
    identifies = []
    for photo, query in queries:
        started = time.perf_counter()
        identifier.identify_features(photo, query)
        identifies.append(time.perf_counter() - started)
    headline = per_kernel[kernels[-1]]
    postings_met = touched(index, queries)
    return {
        "open_s": round(open_s, 3), "load_open": round(load_open, 2),
        "search_p50_ms": headline["search_p50_ms"],
        "search_p95_ms": headline["search_p95_ms"],
        "load_search": round(load_search, 2), "kernels": per_kernel,
        "same_tops": same_tops({k: v for k, v in tops.items() if k != "ray"}),
        "shards_equal_one_machine": shards_equal(index, queries, tops[kernels[-1]])
        if searchers or actors else None,
        "ns_per_posting": {kernel: round(1e6 * figures["search_p50_ms"] / postings_met, 1)
                           for kernel, figures in per_kernel.items()} if postings_met else None,
        "bandwidth_gb_s": bandwidth(),
        "identify_p50_ms": round(1000 * float(np.percentile(identifies, 50)), 1),
        "identify_p95_ms": round(1000 * float(np.percentile(identifies, 95)), 1),
        "load_identify": round(load(), 2),
        "rss_mb": round(rss_mb()), **rss_parts_mb(), "rss_open_mb": round(rss_open - rss_before),
        "postings": int(index.sidecar.postings.offsets[-1]) if index.sidecar else None,
        "touched_p50": postings_met,
        "words": int(index.global_method.inverted_file_shape()[0]),
    }


def shard_actors(index, shards: int) -> list:
    """One Ray actor per shard on a local Ray (`engines.ray.actors_of`), each searching with
    cores / shards threads, so that together they use the machine's cores once."""
    from lookalike.engines.ray import actors_of
    from lookalike.nets.threads import cores

    os.environ["LOOKALIKE_THREADS"] = str(max(1, cores() // shards))  # inherited by Ray
    actors = actors_of(index, shards)
    del os.environ["LOOKALIKE_THREADS"]
    return actors


def same_tops(tops: dict[str, list]) -> bool:
    """Whether every kernel found the same top 100 (positions and scores) for every query."""
    runs = list(tops.values())
    return all(np.array_equal(np.asarray(a[0]), np.asarray(b[0])) and
               np.array_equal(np.asarray(a[1]), np.asarray(b[1]))
               for run in runs[1:] for a, b in zip(runs[0], run, strict=True))


def shards_equal(index, queries, merged: list) -> bool:
    """Whether each query's merged shard tops are exactly the one-machine ranking's prefix:
    the same scores at the same positions, and no other reference scoring above the lowest."""
    for (_, query), (positions, scores) in zip(queries, merged, strict=True):
        whole = np.asarray(index.search_index.scores(query.item.global_feature))
        if not np.array_equal(whole[positions], scores):
            return False
        if len(scores) and set(np.flatnonzero(whole > scores.min()).tolist()) - \
                set(np.asarray(positions).tolist()):
            return False
    return True


def bandwidth() -> float:
    """Memory read bandwidth of one core, GB/s: the best of 3 sums of a 256 MB array (what a
    search's pass over its postings is bounded by once they are in memory)."""
    data = np.ones(1 << 25, np.uint64)
    best = np.inf
    for _ in range(3):
        started = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - started)
    return round(data.nbytes / best / 1e9, 1)


def touched(index, queries) -> int | None:
    """Postings a query's words meet (median over the queries): what its search reads."""
    if index.sidecar is None:
        return None
    offsets = np.asarray(index.sidecar.postings.offsets)
    counts = []
    for _, query in queries:
        words = np.asarray(query.item.global_feature.get("query_words",
                                                         query.item.global_feature["words"]))
        words = words[words < len(offsets) - 1]
        counts.append(int((offsets[words + 1] - offsets[words]).sum()))
    return int(np.median(counts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--references", default="10000", help="sizes, comma-separated")
    parser.add_argument("--shards", type=int, default=0)
    parser.add_argument("--ray", action="store_true",
                        help="with --shards K: search the K shards with Ray actors on a local "
                             "Ray (one query to all at once), not one after the other")
    parser.add_argument("--codebook", help="ASMK codebook (default: the shipped one)")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--kernels", default="numpy,compiled",
                        help="ASMK scoring kernels searched side by side, comma-separated: "
                             "numpy, compiled (every core), compiled-N (N threads), "
                             "compiled-N-bB (blocks of B gallery positions); identify uses the "
                             "default (compiled when numba is installed)")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the queries")
    parser.add_argument("--folder", help="where the indexes are built (default: a temporary "
                                         "folder, removed after)")
    parser.add_argument("--json", action="store_true", help="one JSON line per size (default)")
    parser.add_argument("--measure", nargs=2, metavar=("INDEX", "QUERIES"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), Path(args.measure[1]), args.shards,
                                 args.kernels.split(","), args.repeats, args.ray)))
        return
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        for size in map(int, args.references.split(",")):
            path = Path(folder) / f"scale-{size}.lkidx"
            queries = Path(folder) / f"queries-{size}.pickle"
            result = {"references": size, "load_build": round(load(), 2)}
            result.update(build(path, size, args.codebook, queries, args.queries))
            result["index_bytes"] = path.stat().st_size + Path(f"{path}.ivf").stat().st_size
            result["sidecar_bytes"] = Path(f"{path}.ivf").stat().st_size
            measured = subprocess.run(
                [sys.executable, __file__, "--measure", str(path), str(queries),
                 "--shards", str(args.shards), "--kernels", args.kernels,
                 "--repeats", str(args.repeats), *(["--ray"] if args.ray else [])],
                capture_output=True, text=True, check=True)
            result.update(json.loads(measured.stdout.strip().splitlines()[-1]))
            result["shards"] = args.shards
            result["ray"] = args.ray
            result["codebook"] = args.codebook or "shipped 1,024 words"
            print(json.dumps(result), flush=True)
            for leftover in Path(folder).glob(f"scale-{size}.lkidx*"):
                leftover.unlink()


if __name__ == "__main__":
    main()
