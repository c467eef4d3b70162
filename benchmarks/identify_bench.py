"""Benchmarks of `identify` (issue 6): open-set accuracy, latency at 1,000 and 10,000 references
against one-by-one comparison, build throughput, index size, and the server under load.

Run niced (the machine is shared):
    nice -n 10 .venv/bin/python benchmarks/identify_bench.py --all -o /tmp/identify-bench

How the large galleries are made (the dev set has only 105 landmark photos):
- build throughput and index size per photo: real image variants of dev photos (random crop
  70-95 %, horizontal flip, colour jitter, JPEG re-encoding), written to a temporary folder and
  indexed from scratch without the feature cache;
- the 1,000 / 10,000-reference galleries for query latency: the 105 real references plus
  variants made in feature space (AugNet vector + Gaussian noise to a cosine of ~0.9 with its
  source; local features with 85 % of the keypoints kept, their coordinates moved by a random
  similarity transform, descriptors jittered and renormalised), so that every reference costs
  what a real one costs to search and to verify;
- queries are real photos (landmark photos and distractors), decoded and featurised each time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lookalike.cache import NoCache, content_hash  # noqa: E402
from lookalike.compare import open_cache  # noqa: E402
from lookalike.evaluation import load_dataset  # noqa: E402
from lookalike.features import extract_features  # noqa: E402
from lookalike.identify import Identifier, verify_local  # noqa: E402
from lookalike.index import (  # noqa: E402
    GalleryEntry,
    Landmark,
    build_index,
    create_index,
    global_method,
    local_method,
    normalise,
    pack_local,
    write_changes,
)

DATA = REPO.parent / "shared" / "data" / "landmarks"
MANIFEST = DATA / "manifest.csv"


def percentile(values, q):
    return float(np.percentile(np.asarray(values, np.float64), q))


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


# -- open set ------------------------------------------------------------------------------------
def bench_openset(out: Path) -> dict:
    from lookalike.openset import evaluate_identify

    summary = evaluate_identify(MANIFEST, out / "openset", open_cache(None), jobs=1, quiet=True)
    return {key: summary[key] for key in ("queries", "landmark_queries", "distractor_queries",
                                           "at_threshold_0.5", "at_far_0.05",
                                           "shortlist_top1_accuracy", "seconds")}


# -- galleries -----------------------------------------------------------------------------------
def dev_references():
    paths, labels = load_dataset(MANIFEST)
    return [(p, lab) for p, lab in zip(paths, labels) if lab != "distractor"], \
        [p for p, lab in zip(paths, labels) if lab == "distractor"]


def image_variant(path: str, rng: random.Random) -> Image.Image:
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w, h = image.size
    f = rng.uniform(0.70, 0.95)
    cw, ch = int(w * f), int(h * f)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    image = image.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.75, 1.25))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.75, 1.25))
    return ImageEnhance.Color(image).enhance(rng.uniform(0.6, 1.4))


def feature_variant(vector: np.ndarray, local: dict, rng: np.random.Generator):
    noise = rng.normal(size=vector.shape).astype(np.float32)
    noise -= noise.dot(vector) * vector
    noise /= np.linalg.norm(noise) + 1e-12
    target = rng.uniform(0.85, 0.95)
    new_vector = target * vector + np.sqrt(1 - target ** 2) * noise
    keep = rng.random(len(local["keypoints"])) < 0.85
    keypoints = local["keypoints"][keep].copy()
    angle, scale = np.radians(rng.uniform(-10, 10)), rng.uniform(0.8, 1.2)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    keypoints[:, :2] = keypoints[:, :2] @ rotation.T + rng.uniform(-40, 40, size=2)
    descriptors = local["descriptors"][keep].astype(np.float32)
    descriptors += rng.normal(0, 0.02, descriptors.shape).astype(np.float32)
    descriptors = np.maximum(descriptors, 0)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True) + 1e-7
    variant = dict(local)
    variant["keypoints"] = keypoints.astype(np.float32)
    variant["descriptors"] = descriptors.astype(np.float16)
    return normalise(new_vector[None, :])[0], variant


def synthetic_index(path: Path, size: int, seed: int = 0) -> dict:
    """An index of `size` references: the real dev references plus feature-space variants."""
    refs, _ = dev_references()
    paths = [p for p, _ in refs]
    cache = open_cache(None)
    gset = extract_features(global_method(), paths, cache, 1, True)
    lset = extract_features(local_method(), paths, cache, 1, True)
    vectors = normalise(np.stack([gset.feature_of(p) for p in paths]))
    locals_ = [lset.feature_of(p) for p in paths]
    labels = [lab for _, lab in refs]
    entries = [GalleryEntry(Landmark(lab), []) for lab in sorted(set(labels))]
    if path.exists():
        path.unlink()
    create_index(path, local_method(), vector_index="flat")
    rows = [(lab, p, content_hash(p.encode()), vectors[i], pack_local(locals_[i]))
            for i, (p, lab) in enumerate(refs)]
    rng = np.random.default_rng(seed)
    for n in range(size - len(rows)):
        i = int(rng.integers(len(paths)))
        vector, local = feature_variant(vectors[i], locals_[i], rng)
        rows.append((labels[i], f"{paths[i]}#variant{n}", f"variant-{n}", vector,
                     pack_local(local)))
    started = time.perf_counter()
    db = sqlite3.connect(path, isolation_level=None)
    meta = dict(db.execute("SELECT name, value FROM meta"))
    write_changes(db, entries, rows, (), meta)
    db.close()
    return {"references": size, "write_s": round(time.perf_counter() - started, 1),
            "bytes": path.stat().st_size, "bytes_per_reference": path.stat().st_size // size}


# -- build throughput ----------------------------------------------------------------------------
def bench_build(out: Path, photos: int) -> dict:
    refs, _ = dev_references()
    rng = random.Random(0)
    folder = out / "variants"
    chosen = [refs[rng.randrange(len(refs))] for _ in range(photos)]
    for n, (path, label) in enumerate(chosen):
        (folder / label).mkdir(parents=True, exist_ok=True)
        image_variant(path, rng).save(folder / label / f"v{n:04d}.jpg", quality=90)
    target = out / "variants.lkidx"
    results = {}
    for jobs in (1, 2):
        started = time.perf_counter()
        report = build_index(folder, target, cache=NoCache(), jobs=jobs, quiet=True)
        seconds = time.perf_counter() - started
        results[f"jobs_{jobs}"] = {"photos": report.added, "seconds": round(seconds, 1),
                                   "photos_per_s": round(report.added / seconds, 3),
                                   "load": load_average()}
    size = target.stat().st_size
    results["bytes_per_photo"] = size // photos
    results["photos"] = photos
    return results


# -- latency -------------------------------------------------------------------------------------
def time_queries(identifier: Identifier, query_paths: list[str]) -> dict:
    features_s, stages_s, total_s, cpu_features, cpu_stages = [], [], [], [], []
    for query in query_paths:
        data = Path(query).read_bytes()
        c0, t0 = time.process_time(), time.perf_counter()
        features = identifier.features_from_bytes(data, query)
        c1, t1 = time.process_time(), time.perf_counter()
        identifier.identify_features(query, features)
        c2, t2 = time.process_time(), time.perf_counter()
        features_s.append(t1 - t0)
        stages_s.append(t2 - t1)
        total_s.append(t2 - t0)
        cpu_features.append(c1 - c0)
        cpu_stages.append(c2 - c1)
    return {"decode_features": features_s, "shortlist_verify": stages_s, "end_to_end": total_s,
            "cpu_decode_features": cpu_features, "cpu_shortlist_verify": cpu_stages}


def summary(values) -> dict:
    return {"p50": round(percentile(values, 50), 3), "p95": round(percentile(values, 95), 3)}


def vector_search_ms(vectors: np.ndarray, queries: np.ndarray, kind: str, k: int = 40) -> float:
    import faiss

    faiss.omp_set_num_threads(1)  # as GalleryIndex does
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
    else:
        index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None, :], k)
        times.append(time.perf_counter() - t0)
    return 1000 * percentile(times, 50)


def bench_latency(out: Path, size: int = 1000, grow_to: int = 10000, queries: int = 12,
                  brute_queries: int = 3) -> dict:
    refs, distractors = dev_references()
    rng = random.Random(1)
    query_paths = [p for p, _ in rng.sample(refs, queries - queries // 3)] + \
        rng.sample(distractors, queries // 3)
    path = out / f"synthetic-{size}.lkidx"
    built = synthetic_index(path, size)
    identifier = Identifier(path)
    identifier.identify(query_paths[0])  # load the model once
    timed = time_queries(identifier, query_paths)
    # The study's way: local features of the query against every reference, one by one.
    per_pair, brute_s = [], []
    method = identifier.local_method
    ref_ids = list(identifier.index.references)
    for query in query_paths[:brute_queries]:
        features = identifier.features_from_bytes(Path(query).read_bytes(), query)
        t0 = time.perf_counter()
        for ref in ref_ids:
            verify_local(method, features.local, identifier.index.local_features(ref))
        elapsed = time.perf_counter() - t0
        per_pair.append(elapsed / len(ref_ids))
        brute_s.append(elapsed)
    stage_p50 = percentile(timed["shortlist_verify"], 50)
    feature_p50 = percentile(timed["decode_features"], 50)
    vectors = identifier.index.vectors_of(ref_ids)
    query_vectors = np.stack([identifier.features_from_bytes(Path(q).read_bytes(), q).vector
                              for q in query_paths[:5]])
    search_size = vector_search_ms(vectors, query_vectors, "flat")
    # Growth: shortlist on synthetic vectors (noise around the real ones); the verification
    # work per query does not depend on the gallery size (a fixed number of candidates).
    noise_rng = np.random.default_rng(3)
    base = vectors[noise_rng.integers(len(vectors), size=grow_to)]
    grown = normalise(base + noise_rng.normal(0, 0.02, base.shape).astype(np.float32))
    search_grown = {kind: vector_search_ms(grown, query_vectors, kind) for kind in ("flat", "hnsw")}
    verify_only = stage_p50 - search_size / 1000
    result = {
        **built,
        "queries": len(query_paths),
        "decode_features_s": summary(timed["decode_features"]),
        "shortlist_verify_s": summary(timed["shortlist_verify"]),
        "end_to_end_s": summary(timed["end_to_end"]),
        "cpu_seconds_p50": {"decode_features": round(percentile(timed["cpu_decode_features"],
                                                                50), 3),
                            "shortlist_verify": round(percentile(timed["cpu_shortlist_verify"],
                                                                 50), 3)},
        "vector_search_ms_p50": round(search_size, 3),
        "per_pair_verify_ms": round(1000 * statistics.median(per_pair), 2),
        "brute_force_s_per_query": round(statistics.median(brute_s), 2),
        "ratio_brute_vs_shortlist_verify": round(statistics.median(brute_s) / stage_p50, 1),
        "ratio_brute_vs_end_to_end": round((statistics.median(brute_s) + feature_p50) /
                                           percentile(timed["end_to_end"], 50), 1),
        f"at_{grow_to}": {
            "vector_search_ms_p50": {k: round(v, 3) for k, v in search_grown.items()},
            "shortlist_verify_s_p50_estimate": round(verify_only + search_grown["flat"] / 1000,
                                                     3),
            "brute_force_s_per_query_estimate": round(statistics.median(per_pair) * grow_to, 1),
        },
        "load": load_average(),
    }
    identifier.index.close()
    path.unlink()
    print(json.dumps(result, indent=1), flush=True)
    return result


# -- server --------------------------------------------------------------------------------------
def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bench_server(out: Path, clients: int = 20, seconds: float = 60.0) -> dict:
    import socket

    import httpx

    index = out / "dev.lkidx"
    if not index.exists():
        build_index(MANIFEST, index, cache=open_cache(None), jobs=1, quiet=True)
    refs, distractors = dev_references()
    photos = [Path(p) for p, _ in refs[::7]] + [Path(p) for p in distractors[::8]]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", "serve", "--index", str(index), "--port",
         str(port), "--data-dir", str(out / "serve-data")], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        httpx.post(base + "/identify", files={"file": ("w.jpg", photos[0].read_bytes())},
                   timeout=300)  # warm up the model
        memory = [(0.0, rss_kb(process.pid))]
        latencies, errors, statuses = [], [], {}
        lock = threading.Lock()
        stop_at = time.time() + seconds
        started = time.time()

        def client(number: int):
            rng = random.Random(number)
            with httpx.Client(base_url=base, timeout=600) as http:
                while time.time() < stop_at:
                    photo = rng.choice(photos)
                    t0 = time.perf_counter()
                    try:
                        r = http.post("/identify", files={"file": (photo.name, photo.read_bytes(),
                                                                   "image/jpeg")})
                        ok = r.status_code == 200 and "landmark" in r.json()
                        code = r.status_code
                    except httpx.HTTPError as error:
                        ok, code = False, type(error).__name__
                    with lock:
                        statuses[code] = statuses.get(code, 0) + 1
                        if ok:
                            latencies.append(time.perf_counter() - t0)
                        else:
                            errors.append(str(code))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            time.sleep(2)
            memory.append((round(time.time() - started, 1), rss_kb(process.pid)))
        for thread in threads:
            thread.join()
        elapsed = time.time() - started
    finally:
        process.terminate()
        process.wait(timeout=30)
    rss = [m for _, m in memory]
    return {
        "clients": clients, "seconds_requested": seconds, "seconds_total": round(elapsed, 1),
        "requests_ok": len(latencies), "errors": len(errors), "statuses": statuses,
        "throughput_per_s": round(len(latencies) / elapsed, 2),
        "latency_s": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)}
        if latencies else None,
        "rss_mb": {"start": rss[0] / 1024, "end": rss[-1] / 1024, "max": max(rss) / 1024},
        "rss_series_mb": [(t, round(m / 1024, 1)) for t, m in memory],
        "load": load_average(),
    }


def plot_figures(results: dict, folder: Path) -> list[Path]:
    """Latency breakdown against one-by-one comparison, and memory of the server under load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    latency = results.get("latency")
    if latency:
        grow = next(v for k, v in latency.items() if k.startswith("at_"))
        size = latency["references"]
        big = int(next(k for k in latency if k.startswith("at_"))[3:])
        figure, ax = plt.subplots(figsize=(7, 3.6))
        features = latency["decode_features_s"]["p50"]
        rows = [
            (f"two-stage, {size:,} refs", features, latency["shortlist_verify_s"]["p50"]),
            (f"two-stage, {big:,} refs (est.)", features, grow["shortlist_verify_s_p50_estimate"]),
            (f"one by one, {size:,} refs", features, latency["brute_force_s_per_query"]),
            (f"one by one, {big:,} refs (est.)", features, grow["brute_force_s_per_query_estimate"]),
        ]
        labels = [r[0] for r in rows]
        ax.barh(labels, [r[1] for r in rows], color="tab:gray", label="decode + features")
        ax.barh(labels, [r[2] for r in rows], left=[r[1] for r in rows], color="tab:blue",
                label="shortlist + verification / matching")
        ax.set_xscale("log")
        ax.set_xlim(left=0.05)
        ax.set_xlabel("seconds per query photo (p50, log scale)")
        ax.invert_yaxis()
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title("identify latency on 2 shared cores")
        figure.tight_layout()
        path = folder / "identify_latency.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    server = results.get("server")
    if server:
        figure, ax = plt.subplots(figsize=(7, 3))
        t, m = zip(*server["rss_series_mb"])
        ax.plot(t, m, marker=".", color="tab:green")
        ax.set_ylim(0, max(m) * 1.2)
        ax.set_xlabel("seconds")
        ax.set_ylabel("server RSS (MB)")
        ax.set_title(f"serve: {server['clients']} concurrent clients, "
                     f"{server['requests_ok']} answers, {server['errors']} errors")
        figure.tight_layout()
        path = folder / "identify_server_memory.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--openset", action="store_true")
    parser.add_argument("--build", type=int, default=0, metavar="N",
                        help="build throughput on N image variants")
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--server", action="store_true")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--all", action="store_true")
    parser.add_argument("--figures", metavar="DIR", help="write figures from the results here")
    parser.add_argument("-o", "--output", default=os.path.join(tempfile.gettempdir(),
                                                               "identify-bench"))
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    results = {"machine": f"{os.cpu_count()} cores (shared)", "load_start": load_average()}
    if args.openset or args.all:
        results["openset"] = bench_openset(out)
        print(json.dumps(results["openset"], indent=1), flush=True)
    if args.build or args.all:
        results["build"] = bench_build(out, args.build or 40)
        print(json.dumps(results["build"], indent=1), flush=True)
    if args.latency or args.all:
        results["latency"] = bench_latency(out, args.size)
    if args.server or args.all:
        results["server"] = bench_server(out, args.clients, args.seconds)
        print(json.dumps(results["server"], indent=1), flush=True)
    results["load_end"] = load_average()
    name = "identify_bench.json"
    existing = json.loads((out / name).read_text()) if (out / name).exists() else {}
    existing.update(results)
    (out / name).write_text(json.dumps(existing, indent=1) + "\n")
    print(f"wrote {out / name}", file=sys.stderr)
    if args.figures:
        for path in plot_figures(existing, Path(args.figures)):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
