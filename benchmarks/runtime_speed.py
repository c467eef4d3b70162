"""The learned models on ONNX Runtime against eager PyTorch, side by side in one run.

    .venv/bin/python benchmarks/runtime_speed.py --photos 12 --pairs 20 \
        --baseline ../main --sections extract,glue,identify,index,server

Sections (each reports the load average beside its figures):
- extract: ALIKED-n16 per photo end to end (read + decode + bound to 800 px + network +
  keypoints + descriptors), kornia's stock `ALIKED.forward`, our eager pass
  (`runtime="torch"`: aliked_sparse) and ONNX Runtime (`runtime="onnx"`), interleaved photo
  by photo; then each one's peak RSS in a child process over the same photos.
- glue: LightGlue on shortlists of `--pairs` real pairs (a dev photo against dev photos; an
  oxford_hard query against its positives and negatives): eager kornia (adaptive depth and
  width), ONNX Runtime full depth (one graph, batches), ONNX Runtime adaptive
  (lookalike.nets.runtime.run_adaptive: one pair a call, a shortlist stepping together,
  512 keypoints); ms a pair, agreement with eager, and the work done against the time.
- glue-accuracy: oxford_hard ranked by aliked + LightGlue alone for `--glue-variants`
  (adaptive, adaptive512, adaptive256, full): mAP, P@1, P@5, seconds.
- identify-interleaved: `identify` end to end against 1,000 references in this process, ONNX
  Runtime and eager PyTorch alternating query by query.
- identify, index, server: the same script (benchmarks/identify_speed.py, `lookalike index
  build`, the server's start-up) run in this tree and in `--baseline` (a checkout of the code
  before this change, e.g. ../main), one after the other. `index` builds each of
  `--index-presets` (`--jobs 2`, an empty feature cache; exported models kept in
  `--models`, so that a one-time export is not counted as throughput).
- local-extract: XFeat (`--photos`) and DISK (`--disk-photos`) per photo end to end (read +
  decode + bound to 800 px + network + keypoints + descriptors), eager (`runtime="torch"`)
  and ONNX Runtime interleaved photo by photo; then each one's peak RSS in a child process.
- lighterglue: XFeat's LighterGlue on one query against `--pairs` dev photos: eager kornia
  (adaptive, as the `xfeat` method ran it), ONNX Runtime one pair a call and in batches.

    .venv/bin/python benchmarks/runtime_speed.py --presets fast --index-presets default,fast \
        --sections local-extract,lighterglue,identify-interleaved,identify,index --models DIR
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lookalike.evaluation.evaluate import load_dataset  # noqa: E402

MANIFEST = REPO.parent / "shared" / "data" / "landmarks" / "manifest.csv"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f} {five:.1f} {fifteen:.1f}"


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM: unlike ru_maxrss, not inherited from the
    parent that forked it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sample(count: int) -> list[str]:
    paths, _ = load_dataset(str(MANIFEST))
    return paths[::max(1, len(paths) // count)][:count]


def extractors(only: int | None = None):
    """The three ALIKED extractions (path -> features); `only`: build just that one (a child
    measuring its memory imports nothing the others need)."""
    from lookalike.features.registry import get_method
    from lookalike.imaging.loading import load_image

    def kornia():
        import torch

        from lookalike.methods.learned_local import bounded
        from lookalike.nets.learned import detector

        model = detector("aliked-n16", 1024)

        def run(path):
            image = bounded(load_image(path).convert("RGB"), 800)
            pixels = np.asarray(image, np.float32) / np.float32(255.0)
            tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]
            with torch.inference_mode():
                return model(tensor)[0].keypoints.numpy()

        return run

    def method(**settings):
        def build():
            chosen = get_method("aliked", **settings)
            return lambda path: chosen.extract(load_image(path))

        return build

    builders = {"kornia eager": kornia,
                "ours eager (aliked_sparse)": method(runtime="torch"),
                "ours ONNX Runtime": method(runtime="onnx")}
    return {name: build() for index, (name, build) in enumerate(builders.items())
            if only is None or index == only}


def extract_section(count: int) -> None:
    run = extractors()
    paths = sample(count)
    for forward in run.values():  # warm up: models built, graphs exported and loaded
        forward(paths[0])
    times = {name: [] for name in run}
    before = load()
    for path in paths:
        for name, forward in run.items():
            started = time.perf_counter()
            forward(path)
            times[name].append(time.perf_counter() - started)
    after = load()
    base = np.median(times["kornia eager"])
    print(f"\n### extraction, ALIKED-n16 at 800 px, {len(paths)} dev photos "
          f"({before} -> {after})\n")
    print("| runtime | p50 ms | p95 ms | x kornia eager (p50) | peak RSS MB (3 photos) |")
    print("|---|---:|---:|---:|---:|")
    for index, (name, values) in enumerate(times.items()):
        peak = child_peak(index, min(count, 3))
        print(f"| {name} | {1000 * np.median(values):.0f} | "
              f"{1000 * np.percentile(values, 95):.0f} | {np.median(values) / base:.2f} | "
              f"{peak:.0f} |", flush=True)


def local_extractors(name: str, only: str | None = None):
    """`name`'s extraction (path -> features) per runtime; `only`: just that runtime."""
    from lookalike.features.registry import get_method
    from lookalike.imaging.loading import load_image

    def build(runtime):
        method = get_method(name, runtime=runtime)
        return lambda path: method.extract(load_image(path))

    labels = {"torch": "kornia eager", "onnx": "ONNX Runtime"}
    return {labels[runtime]: build(runtime) for runtime in ("torch", "onnx")
            if only is None or runtime == only}


def local_extract_section(counts: dict[str, int]) -> None:
    for name, count in counts.items():
        run = local_extractors(name)
        paths = sample(count)
        for forward in run.values():  # warm up: models built, graphs exported and loaded
            forward(paths[0])
        times = {label: [] for label in run}
        keypoints = []
        before = load()
        for path in paths:
            for label, forward in run.items():
                started = time.perf_counter()
                found = forward(path)
                times[label].append(time.perf_counter() - started)
            keypoints.append(len(found["keypoints"]))
        after = load()
        base = np.median(times["kornia eager"])
        print(f"\n### extraction, {name} at 800 px, {len(paths)} dev photos, "
              f"~{int(np.mean(keypoints))} keypoints ({before} -> {after})\n")
        print("| runtime | p50 ms | p95 ms | x kornia eager (p50) | peak RSS MB (3 photos) |")
        print("|---|---:|---:|---:|---:|")
        for runtime, (label, values) in zip(("torch", "onnx"), times.items()):
            result = subprocess.run([sys.executable, __file__, "--child-local",
                                     f"{name}:{runtime}", "--photos", str(min(count, 3))],
                                    capture_output=True, text=True, check=True)
            peak = float(result.stdout.strip().splitlines()[-1])
            print(f"| {label} | {1000 * np.median(values):.0f} | "
                  f"{1000 * np.percentile(values, 95):.0f} | {np.median(values) / base:.2f} | "
                  f"{peak:.0f} |", flush=True)


def lighterglue_section(count: int) -> None:
    from lookalike.features.registry import get_method
    from lookalike.imaging.loading import load_image
    from lookalike.nets import runtime

    paths, labels = load_dataset(str(MANIFEST))
    method = get_method("xfeat")
    query_path = paths[0]
    same = [p for p, label in zip(paths, labels) if label == labels[0] and p != query_path]
    others = [p for p, label in zip(paths, labels) if label != labels[0]]
    chosen = (same[:count // 2] + others[::max(1, len(others) // count)])[:count]
    query = method.extract(load_image(query_path))
    candidates = [method.extract(load_image(p)) for p in chosen]
    for feature in [query, *candidates]:
        feature["descriptors"] = feature["descriptors"].astype(np.float32)
    pairs = [(query, candidate) for candidate in candidates]
    eager = get_method("xfeat", runtime="torch", matcher="lightglue")
    eager._glue_torch(*pairs[0])  # warm up
    runtime.run_lightglue("lighterglue-xfeat", pairs[:1])
    before = load()
    timings = {}
    started = time.perf_counter()
    eager_matches = [eager._glue_torch(a, b) for a, b in pairs]
    timings["eager kornia (adaptive), one pair a call"] = time.perf_counter() - started
    started = time.perf_counter()
    single = [runtime.run_lightglue("lighterglue-xfeat", [pair])[0] for pair in pairs]
    timings["ONNX Runtime (every layer), one pair a call"] = time.perf_counter() - started
    started = time.perf_counter()
    batched = runtime.run_lightglue("lighterglue-xfeat", pairs)
    timings[f"ONNX Runtime (every layer), {runtime.GLUE_BATCH} pairs a call"] = (
        time.perf_counter() - started)
    after = load()
    shared = [len({tuple(x) for x in e.tolist()} & {tuple(x) for x in o.tolist()})
              / max(1, len(e)) for e, o in zip(eager_matches, batched)]
    assert all(np.array_equal(a, b) for a, b in zip(single, batched))
    keypoints = int(np.mean([len(c["keypoints"]) for c in pairs[0]]))
    print(f"\n### LighterGlue (XFeat), {len(pairs)} pairs, ~{keypoints} keypoints a side "
          f"({before} -> {after})\n")
    print("| LighterGlue | ms a pair | x eager |")
    print("|---|---:|---:|")
    base = timings["eager kornia (adaptive), one pair a call"]
    for name, seconds in timings.items():
        print(f"| {name} | {1000 * seconds / len(pairs):.1f} | {seconds / base:.2f} |")
    print(f"\nmatches: eager {sum(map(len, eager_matches))}, ONNX Runtime (every layer) "
          f"{sum(map(len, batched))}; share of eager's matches found again: "
          f"median {np.median(shared):.2f}", flush=True)


def child_peak(index: int, count: int) -> float:
    result = subprocess.run([sys.executable, __file__, "--child", str(index),
                             "--photos", str(count)], capture_output=True, text=True,
                            check=True)
    return float(result.stdout.strip().splitlines()[-1])


def glue_features(paths: list[str]) -> list[dict]:
    """ALIKED features of the photos (from the feature cache, as the pipeline reads them)."""
    from lookalike.features.cache import open_cache
    from lookalike.features.extract import extract_features
    from lookalike.features.registry import get_method

    items = extract_features(get_method("aliked"), paths, open_cache(None), 1, quiet=True)
    assert not items.errors, items.errors
    found = dict(zip(items.paths, items.features))
    return [found[p] for p in paths]


def glue_shortlists(count: int) -> dict[str, tuple[str, list[str]]]:
    """Two shortlists of `count` real pairs: a dev photo against dev photos of its landmark
    and of others; an oxford_hard query against its positives and hard negatives."""
    from lookalike.evaluation.query_sets import load_query_sets

    paths, labels = load_dataset(str(MANIFEST))
    query = paths[0]
    same = [p for p, label in zip(paths, labels) if label == labels[0] and p != query]
    others = [p for p, label in zip(paths, labels) if label != labels[0]]
    dev = (same[:count // 2] + others[::max(1, len(others) // count)])[:count]
    oxford = load_query_sets(MANIFEST.parents[1] / "oxford_hard")[0]
    return {"dev photos": (query, dev),
            f"oxford_hard {oxford.name}": (oxford.query, oxford.gallery[:count])}


def shared_share(reference: np.ndarray, found: np.ndarray) -> float:
    theirs = {tuple(x) for x in reference.tolist()}
    return len(theirs & {tuple(x) for x in found.tolist()}) / max(1, len(theirs))


def glue_section(count: int) -> None:
    """LightGlue per pair on two shortlists: eager kornia (adaptive), ONNX Runtime full depth
    (one graph, `GLUE_BATCH` pairs a call), ONNX Runtime adaptive (one pair a call, and the
    whole shortlist stepping through the layers together), and adaptive on each side's best
    512 keypoints. The one-pair-a-call variants alternate pair by pair (same load); the
    batched ones run as blocks between them. Then the work the adaptive path did (layers
    run, points left, GFLOP estimated from the layer shapes) against its time."""
    from lookalike.features.registry import get_method

    eager = get_method("aliked", runtime="torch", matcher="lightglue")
    for title, (query_path, chosen) in glue_shortlists(count).items():
        glue_shortlist(eager, title, query_path, chosen)


def timed(seconds: dict, name: str, run, *args, **kwargs):
    started = time.perf_counter()
    result = run(*args, **kwargs)
    seconds[name] += time.perf_counter() - started
    return result


def glue_shortlist(eager, title: str, query_path: str, chosen: list[str]) -> None:
    from lookalike.nets import runtime

    query, *candidates = glue_features([query_path, *chosen])
    pairs = [(query, candidate) for candidate in candidates]
    best = [tuple(dict(x, keypoints=x["keypoints"][:512],
                       descriptors=x["descriptors"][:512]) for x in pair)
            for pair in pairs]
    eager.glue_matches(*pairs[0])  # warm up: models built, graphs exported and loaded
    runtime.run_lightglue("lightglue-aliked", pairs[:1])
    runtime.run_adaptive("lightglue-aliked", pairs[:2], batch=2)
    names = ["eager kornia, adaptive, one pair a call",
             "ONNX Runtime, adaptive, one pair a call",
             "ONNX Runtime, adaptive, 512 keypoints, one pair a call",
             f"ONNX Runtime, full depth, {runtime.GLUE_BATCH} pairs a call (before)",
             f"ONNX Runtime, adaptive, {len(pairs)} pairs step together"]
    seconds = dict.fromkeys(names, 0.0)
    found = {name: [] for name in names}
    trace: list = []
    before = load()
    run = runtime.run_adaptive
    layers = []
    for number, (pair, small) in enumerate(zip(pairs, best)):
        found[names[0]].append(timed(seconds, names[0], eager.glue_matches, *pair))
        ran = len(trace)
        found[names[1]] += timed(seconds, names[1], run, "lightglue-aliked", [pair],
                                 trace=trace)
        layers.append(len(trace) - ran)
        found[names[2]] += timed(seconds, names[2], run, "lightglue-aliked", [small])
        if number == len(pairs) // 2:  # the batched runs between the halves
            found[names[3]] = timed(seconds, names[3], runtime.run_lightglue,
                                    "lightglue-aliked", pairs)
            found[names[4]] = timed(seconds, names[4], run, "lightglue-aliked", pairs,
                                    batch=len(pairs))
    after = load()
    keypoints = int(np.mean([len(c["keypoints"]) for c in pairs[0]]))
    print(f"\n### LightGlue (ALIKED) on a shortlist of {len(pairs)} pairs, {title}, "
          f"~{keypoints} keypoints a side ({before} -> {after})\n")
    print("| LightGlue | ms a pair | x eager | matches | share of eager's matches "
          "found (median) |")
    print("|---|---:|---:|---:|---:|")
    base = seconds[names[0]]
    for name in names:
        share = np.median([shared_share(e, o) for e, o in zip(found[names[0]],
                                                              found[name])])
        print(f"| {name} | {1000 * seconds[name] / len(pairs):.0f} | "
              f"{seconds[name] / base:.2f} | {sum(map(len, found[name]))} | "
              f"{share:.3f} |", flush=True)
    layers = np.array(layers)
    flops = sum(runtime.layer_flops(t[2], t[3]) for t in trace)
    full = len(pairs) * 9 * runtime.layer_flops(keypoints, keypoints)
    adaptive = seconds[names[1]]
    print(f"\nadaptive: layers run a pair {layers.mean():.1f} (min {layers.min()}, max "
          f"{layers.max()}); points a side a layer {np.mean([t[2:] for t in trace]):.0f}; "
          f"~{flops / len(pairs) / 1e9:.1f} GFLOP a pair (full depth "
          f"{full / len(pairs) / 1e9:.1f}): {flops / adaptive / 1e9:.0f} GFLOP/s measured",
          flush=True)


def glue_accuracy_section(variants: str) -> None:
    """oxford_hard ranked by `aliked` with LightGlue alone (ASMK, then LightGlue + MAGSAC++
    inliers on each query's 20 photos): mAP, P@1, P@5, for LightGlue variants (adaptive on
    1,024, 512 or 256 keypoints a side; full depth). Features and pair results come from the
    feature cache where they are there (the glue section measures the cost)."""
    from lookalike.evaluation.query_sets import evaluate_query_sets

    settings = {"adaptive": {}, "adaptive512": {"glue_keypoints": 512},
                "adaptive256": {"glue_keypoints": 256}, "full": {"glue_adaptive": False}}
    dataset = MANIFEST.parents[1] / "oxford_hard"
    print("\n### oxford_hard, aliked + LightGlue alone (ASMK, LightGlue + MAGSAC++ on all "
          "20 photos a query)\n")
    print("| LightGlue | mAP | P@1 | P@5 |")
    print("|---|---:|---:|---:|")
    for name in variants.split(","):
        found = evaluate_query_sets(dataset, "aliked", method_settings={
            "matcher": "lightglue", **settings[name]})
        entry = found["methods"]["aliked"]
        print(f"| {name} | {entry['map']:.3f} | {entry['p_at_1']:.3f} | {entry['p_at_5']:.3f} |",
              flush=True)


def in_tree(tree: Path, command: list[str], timeout: int = 3600, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(tree), **kwargs)
    return subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True,
                          timeout=timeout)


def identify_section(baseline: Path, presets: str, queries: int) -> None:
    for tree in (baseline, REPO):
        before = load()
        result = in_tree(tree, [sys.executable, str(tree / "benchmarks" / "identify_speed.py"),
                                "--presets", presets, "--sizes", "1000",
                                "--queries", str(queries)])
        print(f"\n### identify against 1,000 references: {tree} ({before} -> {load()})\n")
        print(result.stdout.strip() or result.stderr[-2000:], flush=True)


def identify_interleaved_section(presets: str, queries: int) -> None:
    """identify end to end against 1,000 references, in this process: the same index and
    queries, ONNX Runtime and eager ALIKED (the local method's network swapped for eager
    PyTorch's), alternating query by query so that load falls on both alike."""
    import random

    sys.path.insert(0, str(REPO / "benchmarks"))
    from identify_speed import gallery_index

    from lookalike.features.registry import get_method
    from lookalike.gallery.identify import Identifier
    from lookalike.imaging.loading import read_bytes

    paths, labels = load_dataset(str(MANIFEST))
    references = [(p, label) for p, label in zip(paths, labels) if label != "distractor"]
    chosen = random.Random(0).sample(paths, queries)
    with tempfile.TemporaryDirectory() as folder:
        for preset in presets.split(","):
            index = gallery_index(Path(folder) / f"{preset}.lkidx", preset, 1000, references)
            runs = {"ONNX Runtime": Identifier(index), "eager PyTorch": Identifier(index)}
            eager = runs["eager PyTorch"].local_method
            eager.detect_onnx = get_method(eager.name, **{**eager.settings(),
                                                          "runtime": "torch"}).detect
            if getattr(eager, "glue", ""):  # LightGlue eager too (one pair a call)
                eager.glue_many = lambda pairs, method=eager: [
                    method._glue_torch(a, b) for a, b in pairs]
            times = {name: [] for name in runs}
            for identifier in runs.values():  # warm up
                identifier.identify_features("q", identifier.features_from_bytes(
                    read_bytes(chosen[0]), "q"))
            before = load()
            for path in chosen:
                for name, identifier in runs.items():
                    started = time.perf_counter()
                    query = identifier.features_from_bytes(read_bytes(path), path)
                    identifier.identify_features(path, query)
                    times[name].append(time.perf_counter() - started)
            print(f"\n### identify `{preset}`, 1,000 references, {len(chosen)} queries, "
                  f"interleaved ({before} -> {load()})\n")
            print("| network | p50 ms | p95 ms | x eager (p50) |")
            print("|---|---:|---:|---:|")
            base = np.median(times["eager PyTorch"])
            for name, values in times.items():
                print(f"| {name} | {1000 * np.median(values):.0f} | "
                      f"{1000 * np.percentile(values, 95):.0f} | "
                      f"{np.median(values) / base:.2f} |", flush=True)


def index_section(baseline: Path, count: int, presets: str = "default",
                  models: Path | None = None) -> None:
    """`index build` of `count` dev photos per preset, in --baseline and in this tree, each
    from an empty feature cache; exported models from `models` (None: a new folder, so the
    export is counted too)."""
    paths, labels = load_dataset(str(MANIFEST))
    chosen = list(zip(paths, labels))[::max(1, len(paths) // count)][:count]
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "manifest.csv"
        manifest.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in chosen))
        models_note = f"models from {models}" if models else "models exported in the run"
        print(f"\n### index build, {len(chosen)} dev photos, --jobs 2, empty feature caches, "
              f"{models_note}\n")
        print("| preset | tree | seconds | photos/s | peak RSS MB | load before -> after |")
        print("|---|---|---:|---:|---:|---|")
        for preset in presets.split(","):
            for name, tree in (("baseline", baseline), ("this tree", REPO)):
                before = load()
                stem = f"{folder}/{preset}-{name[:4]}"
                script = ("import resource, sys, time\n"
                          "from lookalike.cli import main\n"
                          "started = time.perf_counter()\n"
                          f"code = main(['index', 'build', {str(manifest)!r}, '-o', "
                          f"{stem + '.lkidx'!r}, '--preset', {preset!r}, '--jobs', '2', "
                          "'--quiet'])\n"
                          "hwm = [l for l in open('/proc/self/status') "
                          "if l.startswith('VmHWM')]\n"
                          "print(time.perf_counter() - started, "
                          "int(hwm[0].split()[1]) / 1024, code)\n")
                result = in_tree(tree, [sys.executable, "-c", script],
                                 LOOKALIKE_CACHE=f"{stem}.sqlite",
                                 LOOKALIKE_MODELS=str(models or f"{folder}/models"))
                if result.returncode != 0:
                    print(f"| {preset} | {name} | failed: {result.stderr[-300:]!r} |")
                    continue
                seconds, peak, _ = result.stdout.split()[-3:]
                print(f"| {preset} | {name} ({tree.name}) | {float(seconds):.0f} | "
                      f"{len(chosen) / float(seconds):.2f} | {float(peak):.0f} | "
                      f"{before} -> {load()} |", flush=True)


def server_section(baseline: Path) -> None:
    """Start-up (import, create_app, first /identify answered) and memory after it."""
    from tests.landmark_gallery import QUERIES, make_gallery, photo

    with tempfile.TemporaryDirectory() as folder:
        gallery = make_gallery(Path(folder) / "gallery")
        query = str(photo(QUERIES["chateau_de_sceaux"]))
        print("\n### server: start-up to the first /identify answer, memory after it\n")
        print("| tree | import + create_app s | first answer s | RSS after start MB | "
              "peak RSS MB | torch imported | load |")
        print("|---|---:|---:|---:|---:|---|---|")
        for name, tree in (("before (eager)", baseline), ("after (ONNX Runtime)", REPO)):
            index = Path(folder) / f"{name[:5]}.lkidx"
            script = (
                "import sys, time, resource\n"
                "started = time.perf_counter()\n"
                "from pathlib import Path\n"
                "from fastapi.testclient import TestClient\n"
                "from lookalike.server.app import create_app\n"
                "from lookalike.server.settings import ServerSettings\n"
                f"app = create_app(ServerSettings(Path({str(index)!r})))\n"
                "with TestClient(app) as client:\n"
                "    created = time.perf_counter() - started\n"
                "    rss = int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20\n"
                f"    answer = client.post('/identify', files={{'file': ('q.jpg', "
                f"open({query!r}, 'rb'), 'image/jpeg')}})\n"
                "    assert answer.status_code == 200, answer.text\n"
                "    first = time.perf_counter() - started\n"
                "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
                "print(created, first, rss, int(hwm[0].split()[1]) / 1024, "
                "'torch' in sys.modules)\n")
            build = in_tree(tree, [sys.executable, "-c",
                                   "from lookalike.api import build_index; "
                                   f"build_index({str(gallery)!r}, {str(index)!r})"])
            assert build.returncode == 0, build.stderr[-2000:]
            before = load()
            result = in_tree(tree, [sys.executable, "-c", script],
                             )
            if result.returncode != 0:
                print(f"| {name} | failed: {result.stderr[-300:]!r} |")
                continue
            created, first, rss, peak, torch_loaded = result.stdout.split()[-5:]
            print(f"| {name} | {float(created):.1f} | {float(first):.1f} | {float(rss):.0f} | "
                  f"{float(peak):.0f} | {torch_loaded} | {before} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--index-photos", type=int, default=144)
    parser.add_argument("--presets", default="default,accurate")
    parser.add_argument("--baseline", type=Path, default=REPO.parent / "main",
                        help="a checkout of the code before the runtime change")
    parser.add_argument("--sections", default="extract,glue,identify,index,server")
    parser.add_argument("--disk-photos", type=int, default=4)
    parser.add_argument("--index-presets", default="default")
    parser.add_argument("--models", type=Path, default=None,
                        help="exported models for `index` (default: exported in the run)")
    parser.add_argument("--glue-variants", default="adaptive,adaptive512",
                        help="glue-accuracy: adaptive, adaptive512, adaptive256, full")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-local", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None or args.child_local:  # one extractor, for its peak memory
        if args.child_local:
            name, runtime = args.child_local.split(":")
            forward = next(iter(local_extractors(name, runtime).values()))
        else:
            forward = next(iter(extractors(args.child).values()))
        for path in sample(args.photos):
            forward(path)
        print(peak_rss_mb())
        return 0
    sections = args.sections.split(",")
    print(json.dumps({"cpus": os.cpu_count(), "start": load()}))
    if "extract" in sections:
        extract_section(args.photos)
    if "glue" in sections:
        glue_section(args.pairs)
    if "glue-accuracy" in sections:
        glue_accuracy_section(args.glue_variants)
    if "identify" in sections:
        identify_section(args.baseline, args.presets, args.queries)
    if "identify-interleaved" in sections:
        identify_interleaved_section(args.presets, args.queries)
    if "local-extract" in sections:
        local_extract_section({"xfeat": args.photos, "disk": args.disk_photos})
    if "lighterglue" in sections:
        lighterglue_section(args.pairs)
    if "index" in sections:
        index_section(args.baseline, args.index_photos, args.index_presets, args.models)
    if "server" in sections:
        server_section(args.baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
