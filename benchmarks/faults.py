"""Every dev photo against its odd copies, for every method: does anything crash?

    .venv/bin/python benchmarks/faults.py --jobs 2 -o out/faults.json

For each of the 144 dev photos: a re-save at JPEG quality 90 (the near-duplicate that made
OpenCV's MAGSAC fail in issue 15), half size, a centre crop and a half turn. Every registered
method extracts the photo and each copy and scores the copy against the photo; local matchers
also `match` it (inliers, model). Any exception is a crash, recorded with the photo, the copy
and the method; the run goes on. Each photo's result is appended to OUTPUT.partial.jsonl
as it ends, so a stopped run resumes where it was (delete that file to start afresh). The CI
suite runs the same check on a few photos (tests/test_faults.py); this is the whole set, too
slow for CI.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import sys
import time
import traceback
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lookalike.evaluation.evaluate import load_dataset
from lookalike.features.contract import LOCAL_MATCHER
from lookalike.features.registry import get_method, method_names
from lookalike.imaging.loading import load_image

MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "landmarks" / "manifest.csv"


def copies(image: Image.Image) -> dict[str, Image.Image]:
    """The four odd copies of a photo, each knowing its own size as the loader would."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=90)
    w, h = image.size
    made = {
        "resaved": Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"),
        "half": image.resize((max(1, w // 2), max(1, h // 2))),
        "crop": image.crop((w // 6, h // 6, w - w // 6, h - h // 6)),
        "turned": image.transpose(Image.Transpose.ROTATE_180),
    }
    for copy in made.values():
        copy.info["original_size"] = copy.size
    return made


def check_photo(task: tuple[str, list[str]]) -> dict:
    """Every method on one photo and its copies: the checks made and the crashes met."""
    path, names = task
    crashes, checks = [], 0
    original = load_image(path)
    odd = copies(original)
    local_matchers = set(method_names(LOCAL_MATCHER))
    for name in names:
        method = get_method(name)
        try:
            base = method.extract(original)
        except Exception as error:
            crashes.append(crash(path, "original", name, error))
            continue
        for label, image in odd.items():
            checks += 1
            try:
                feature = method.extract(image)
                method.score(base, feature)
                if name in local_matchers:
                    method.match(base, feature)
            except Exception as error:
                crashes.append(crash(path, label, name, error))
    return {"photo": path, "checks": checks, "crashes": crashes}


def resumed(partial: Path, names: list[str]) -> list[dict]:
    """Photos a stopped run already checked with the same methods; a torn last line is redone."""
    if not partial.exists():
        return []
    results = []
    for line in partial.read_text(encoding="utf-8").splitlines():
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue
        if result.pop("methods", None) == names:
            results.append(result)
    return results


def crash(path: str, copy: str, method: str, error: Exception) -> dict:
    return {"photo": path, "copy": copy, "method": method,
            "error": f"{type(error).__name__}: {error}",
            "where": traceback.format_exception(error)[-2].strip()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(MANIFEST))
    parser.add_argument("--methods", default=None,
                        help="comma-separated (default: every registered method)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--output", "-o", type=Path, default=Path("out/faults.json"))
    args = parser.parse_args()
    paths, _ = load_dataset(args.data)
    paths = paths[:args.limit] if args.limit else paths
    names = args.methods.split(",") if args.methods else list(method_names())
    for name in names:
        get_method(name)  # an unknown name fails here, with the list, before any work
    started = time.perf_counter()
    partial = args.output.with_name(args.output.name + ".partial.jsonl")
    results = resumed(partial, names)
    done = {r["photo"] for r in results}
    todo = [p for p in paths if p not in done]
    if done:
        print(f"resuming: {len(done)} photos already checked in {partial}", file=sys.stderr)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool, \
            partial.open("a", encoding="utf-8") as log:
        for number, result in enumerate(pool.imap_unordered(check_photo,
                                                            [(p, names) for p in todo]), 1):
            results.append(result)
            log.write(json.dumps({**result, "methods": names}) + "\n")
            log.flush()
            for item in result["crashes"]:
                print(f"CRASH {item['method']} on {item['copy']} of {item['photo']}: "
                      f"{item['error']}", file=sys.stderr)
            if number % 10 == 0:
                print(f"{number + len(done)}/{len(paths)} photos, {time.perf_counter() - started:.0f} s",
                      file=sys.stderr)
    summary = {
        "photos": len(results), "methods": names, "copies": list(copies(Image.new("RGB", (8, 8)))),
        "checks": sum(r["checks"] for r in results),
        "crashes": [c for r in results for c in r["crashes"]],
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.output.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: (len(v) if k == "crashes" else v) for k, v in summary.items()}))
    return 1 if summary["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
