"""Speed and memory of every study method, side by side with the stock libraries, in one run.

    make bench                      # or: .venv/bin/python benchmarks/run.py --data ../shared/data/landmarks

Each measurement runs in a fresh subprocess so that its peak memory (max RSS, children
included) is its own, and --repeats times, interleaved with the other side; the best run
counts. Per method it records extraction images/s from file and scoring pairs/s, for
lookalike and for the stock path the study used:
  - hashes: ImageHash on `Image.open` files, one at a time; scoring by `ImageHash - ImageHash`;
  - augnet: imgsim's own `Vectorizer.vectorize` steps one image at a time (cv2.imread,
    resize_short, float64 normalise, forward without inference mode); scoring by imgsim.distance;
  - akaze: full-size cv2.imread + AKAZE, brute-force kNN + ratio test per pair.
It also checks that the outputs agree (hash bits, vectors) and times a first and a cached
`compare` run. Results go into docs/benchmarks.md between the `speed` markers.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HASHES = ["ahash", "phash", "dhash", "whash", "colorhash", "crophash"]
# The study's hash tables computed together: stock opens each file once and calls the five
# ImageHash functions on it; lookalike extracts the five in one pass (`extract_feature_sets`).
TOGETHER = "hashes-together"
TOGETHER_METHODS = HASHES[:5]
SCORING_SUBSET = 40  # akaze/crophash pairs are slow; score a 40 x 40 block for both sides


def dataset_paths(data: Path) -> list[str]:
    with open(data / "manifest.csv", newline="") as handle:
        return [str(data / row["path"]) for row in csv.DictReader(handle)]


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


# -- one measurement (runs inside its own subprocess) ------------------------------------------
def stock_imgsim_functions():
    """imgsim's resize_short/normalize/distance taken from its source (no torchvision import)."""
    import cv2

    from lookalike.nets.augnet import stock_weights_path

    source = Path(stock_weights_path()).with_name("imgsim.py")
    tree = ast.parse(source.read_text())
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef)
            and n.name in ("resize_short", "normalize", "distance")]
    namespace = {"cv2": cv2, "np": np}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(source), "exec"), namespace)
    return namespace


def stock_extract(method: str, paths: list[str]):
    import cv2
    import imagehash
    from PIL import Image

    functions = {"ahash": imagehash.average_hash, "phash": imagehash.phash,
                 "dhash": imagehash.dhash, "whash": imagehash.whash,
                 "colorhash": imagehash.colorhash, "crophash": imagehash.crop_resistant_hash}
    if method in HASHES:
        return [functions[method](Image.open(path)) for path in paths]
    if method == TOGETHER:
        together = []
        for path in paths:
            image = Image.open(path)
            together.append([functions[name](image) for name in TOGETHER_METHODS])
        return together
    if method == "augnet":
        import torch

        from lookalike.nets.augnet import load_augnet

        steps = stock_imgsim_functions()
        model = load_augnet(None, "cpu")
        vectors = []
        for path in paths:
            image = cv2.imread(path)
            batch = np.array([steps["resize_short"](image, 350)[..., ::-1] / 255.0])
            inputs = steps["normalize"](batch.transpose([0, 3, 1, 2]), mean=[0.485, 0.456, 0.406],
                                        std=[0.229, 0.224, 0.225]).astype(np.float32)
            output = model(torch.from_numpy(inputs))  # stock: no inference_mode, batch of one
            vectors.append(output.detach().cpu().numpy()[0])
        return vectors
    if method == "akaze":
        from lookalike.methods.akaze import create_akaze

        detector = create_akaze()
        return [detector.detectAndCompute(cv2.imread(path, cv2.IMREAD_GRAYSCALE), None)[1]
                for path in paths]
    raise ValueError(method)


def stock_score(method: str, features) -> int:
    import cv2

    if method in HASHES:
        for a in features:
            for b in features:
                _ = a - b
    elif method == "augnet":
        distance = stock_imgsim_functions()["distance"]
        for a in features:
            for b in features:
                distance(a, b)
    elif method == "akaze":
        matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        for a in features:
            for b in features:
                pairs = matcher.knnMatch(a, b, k=2)
                _ = sum(1 for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance)
    return len(features) ** 2


def measure(side: str, method_name: str, paths: list[str], jobs: int) -> dict:
    """Time extraction and scoring of one method on one side; return the numbers as a dict."""
    from lookalike.features.cache import NoCache
    from lookalike.features.extract import extract_features
    from lookalike.features.registry import get_method

    if method_name == TOGETHER:
        return measure_together(side, paths, jobs)
    slow_scoring = method_name in ("akaze", "crophash")
    # Warm up both sides on two photos (lazy imports, model loading) before timing.
    if side == "stock":
        stock_extract(method_name, paths[:2])
    else:
        method = get_method(method_name, device="cpu")
        extract_features(method, paths[:2], NoCache(), jobs=1, quiet=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    if side == "stock":
        features = stock_extract(method_name, paths)
    else:
        method = get_method(method_name, device="cpu")
        features = extract_features(method, paths, NoCache(), jobs=jobs, quiet=True).features
    extract_seconds = time.perf_counter() - start
    extract_cpu = time.process_time() - cpu_start
    scored = features[:SCORING_SUBSET] if slow_scoring else features
    start, cpu_start = time.perf_counter(), time.process_time()
    if side == "stock":
        pairs = stock_score(method_name, scored)
    else:
        from lookalike.evaluation.compare import score_matrix

        pairs = score_matrix(method, scored, scored, jobs=jobs).size
    score_seconds = time.perf_counter() - start
    score_cpu = time.process_time() - cpu_start
    output = None
    if method_name in HASHES[:5]:
        output = [np.asarray(f.hash if side == "stock" else f, dtype=np.uint8).reshape(-1).tolist()
                  for f in features]
    elif method_name == "crophash":  # one row of bits per segment, as many rows as segments
        stacks = ([[h.hash for h in f.segment_hashes] for f in features] if side == "stock"
                  else features)
        output = [np.asarray(stack, dtype=np.uint8).reshape(len(stack), -1).tolist()
                  for stack in stacks]
    elif method_name == "augnet":
        output = [np.asarray(f, dtype=np.float32).tolist() for f in features]
    return {"images_per_s": len(paths) / extract_seconds, "pairs_per_s": pairs / score_seconds,
            "cpu_images_per_s": len(paths) / max(extract_cpu, 1e-9),
            "cpu_pairs_per_s": pairs / max(score_cpu, 1e-9),
            "peak_mb": peak_rss_mb(), "output": output}


def measure_together(side: str, paths: list[str], jobs: int) -> dict:
    """Extraction only: the five hashes of every photo, stock (one Image.open per file) or ours."""
    from lookalike.features.cache import NoCache
    from lookalike.features.extract import extract_feature_sets
    from lookalike.features.registry import get_method

    def run(chosen):
        if side == "stock":
            return [[np.asarray(h.hash, np.uint8).reshape(-1) for h in row]
                    for row in stock_extract(TOGETHER, chosen)]
        sets = extract_feature_sets([get_method(n) for n in TOGETHER_METHODS], chosen, NoCache(),
                                    jobs=jobs, quiet=True)
        return [list(row) for row in zip(*(s.features for s in sets))]

    run(paths[:2])  # warm-up: imports, colorhash's colour table
    start, cpu_start = time.perf_counter(), time.process_time()
    rows = run(paths)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"images_per_s": len(paths) / seconds, "cpu_images_per_s": len(paths) / max(cpu, 1e-9),
            "pairs_per_s": float("nan"), "peak_mb": peak_rss_mb(),
            "output": [np.concatenate(row).tolist() for row in rows]}


def fastest(results: list[dict]) -> dict:
    """The run with the best extraction rate: on a shared machine slower runs measure the
    neighbours, not the code. Scoring rate and memory are taken from that same run."""
    return max(results, key=lambda result: result["images_per_s"])


def run_isolated(side: str, method: str, data: Path, jobs: int, limit: int | None) -> dict:
    command = [sys.executable, __file__, "--one", side, method, "--data", str(data),
               "--jobs", str(jobs)] + (["--limit", str(limit)] if limit else [])
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"{side} {method} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


COMPARE_METHODS = ",".join([*HASHES, "akaze", "augnet"])  # the study's methods


def time_compare(paths: list[str], cache: Path, jobs: int) -> float:
    start = time.perf_counter()
    subprocess.run([str(REPO / ".venv/bin/lookalike"), "compare", *paths, "--methods",
                    COMPARE_METHODS, "-o", str(cache.parent / "out"), "--cache", str(cache), "-q",
                    "-j", str(jobs)], check=False, cwd=REPO, capture_output=True)
    return time.perf_counter() - start


def agreement(method: str, stock: dict, ours: dict) -> str:
    if stock["output"] is None:
        return "-"
    if method == "crophash":  # segment lists: the same segments in the same order, or not
        same = [np.array_equal(a, b) for a, b in zip(stock["output"], ours["output"])]
        return f"{np.mean(same):.0%} identical segment hashes"
    a, b = np.array(stock["output"]), np.array(ours["output"])
    if method == "augnet":
        return f"max abs diff {np.abs(a - b).max():.1e}"
    differing = (a != b).sum(axis=1)
    return f"{(differing == 0).mean():.0%} identical, max {differing.max()} bits apart"


def pairs(result: dict) -> str:
    rate = result["pairs_per_s"]
    return "-" if rate != rate else f"{rate:,.0f}"  # NaN: extraction-only row


def pairs_ratio(stock: dict, ours: dict) -> str:
    ratio = ours["pairs_per_s"] / stock["pairs_per_s"]
    return "-" if ratio != ratio else f"{ratio:.1f}x"


def machine_line() -> str:
    import torch

    cpu = "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores, {memory:.0f} GiB RAM, "
            f"Python {platform.python_version()}, torch {torch.__version__} (CPU)")


def write_section(markdown: str) -> None:
    doc = REPO / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    start, end = "<!-- speed:start -->", "<!-- speed:end -->"
    block = f"{start}\n{markdown}\n{end}"
    if start in text:
        text = text.split(start)[0] + block + text.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(exist_ok=True)
    doc.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/landmarks")
    parser.add_argument("--methods", default=",".join([*HASHES, TOGETHER, "akaze", "augnet"]))
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--limit", type=int, help="use only the first N photos (quick check)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each measurement, best one reported (default 3)")
    parser.add_argument("--one", nargs=2, metavar=("SIDE", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print, do not update the doc")
    parser.add_argument("--compare-photos", type=int, default=40,
                        help="photos in the first-vs-cached compare timing (default 40)")
    args = parser.parse_args()
    paths = dataset_paths(args.data)[: args.limit]
    if args.one:
        side, method = args.one
        print(json.dumps(measure(side, method, paths, args.jobs if side == "lookalike" else 1)))
        return

    rows = []
    for method in args.methods.split(","):
        runs: dict[str, list[dict]] = {"stock": [], "single": [], "parallel": []}
        for _ in range(args.repeats):  # interleaved, so a busy spell hits both sides alike
            runs["stock"].append(run_isolated("stock", method, args.data, 1, args.limit))
            runs["single"].append(run_isolated("lookalike", method, args.data, 1, args.limit))
            runs["parallel"].append(run_isolated("lookalike", method, args.data, args.jobs,
                                                 args.limit))
        stock, single, parallel = (fastest(runs[side]) for side in ("stock", "single", "parallel"))
        rows.append((method, stock, single, parallel, agreement(method, stock, single)))
        print(f"{method}: stock {stock['images_per_s']:.1f} img/s, lookalike "
              f"{single['images_per_s']:.1f} (1 job) / {parallel['images_per_s']:.1f} "
              f"({args.jobs} jobs); {rows[-1][4]}", file=sys.stderr)
    compared = paths[: args.compare_photos]
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "cache.sqlite"
        first = time_compare(compared, cache, args.jobs)
        second = time_compare(compared, cache, args.jobs)

    lines = [
        "## Speed and memory of the study methods (`make bench`)",
        "",
        f"Machine: {machine_line()}. {len(paths)} dev photos from `{args.data.name}`; "
        f"run on {time.strftime('%Y-%m-%d')} with `.venv/bin/python benchmarks/run.py`. "
        f"Stock = the study's path (ImageHash on `Image.open`, imgsim's vectorize steps one "
        f"image at a time, full-size AKAZE with brute-force kNN); lookalike = `extract_features` "
        f"from file with no cache, 1 job and {args.jobs} jobs; each the best of "
        f"{args.repeats} interleaved runs. akaze and crophash scoring on a "
        f"{SCORING_SUBSET} x {SCORING_SUBSET} block. Peak memory = max RSS of the process. "
        f"Load average at the start: {os.getloadavg()[0]:.1f} (wall-clock rates on a shared "
        f"machine vary with it; images per CPU-second of the process do not).",
        "",
        "| method | stock img/s | lookalike img/s (1 job) | ratio | per CPU-second: stock / "
        f"lookalike (ratio) | lookalike img/s ({args.jobs} jobs) | ratio | stock pairs/s | "
        "lookalike pairs/s | ratio | stock peak MB | lookalike peak MB | outputs vs stock |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, stock, single, parallel, agrees in rows:
        lines.append(
            f"| {method} | {stock['images_per_s']:.1f} | {single['images_per_s']:.1f} | "
            f"{single['images_per_s'] / stock['images_per_s']:.2f}x | "
            f"{stock['cpu_images_per_s']:.1f} / {single['cpu_images_per_s']:.1f} "
            f"({single['cpu_images_per_s'] / stock['cpu_images_per_s']:.2f}x) | "
            f"{parallel['images_per_s']:.1f} | "
            f"{parallel['images_per_s'] / stock['images_per_s']:.2f}x | "
            f"{pairs(stock)} | {pairs(single)} | {pairs_ratio(stock, single)} | "
            f"{stock['peak_mb']:.0f} | "
            f"{single['peak_mb']:.0f} | {agrees} |"
        )
    lines += [
        "",
        f"`lookalike compare` of the first {len(compared)} photos with the study methods "
        f"(`{COMPARE_METHODS}`, {args.jobs} jobs): first run "
        f"{first:.1f} s with an empty cache, cached re-run {second:.1f} s "
        f"(**{first / second:.1f}x** faster).",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_write:
        write_section(markdown)


if __name__ == "__main__":
    main()
