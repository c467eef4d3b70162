"""Text a gallery teaches (`lookalike.ocr.learned`): fit its calibration, and measure it on
`oxford_hard` (open set, one reference a landmark).

    nice -n 5 .venv/bin/python benchmarks/learned_text_bench.py --fit       # refit
    nice -n 5 .venv/bin/python benchmarks/learned_text_bench.py --oxford    # oxford_hard

`--fit` reads (OCR, through the shared feature cache) two sets built from ../shared/data only:
the 144 dev photos as they are, and a copy of them with a drawn plaque of each landmark
photo's own name (`signboard_bench.write_plaque_set`, seed 1601, the seed the name
calibration is fitted on; the dev-plaque figures use seed 1603). For every photo and every
landmark of its set, the landmark's phrases are learned from its *other* photos (leave-one-
out, `learn_phrases`, `distinctive`), and the best match of the photo's readings against
them (`match_features`: share of the phrase, coverage of the reading, matched characters over
16, confidence) is one sample, labelled 1 for the photo's own landmark. Each sample is drawn
a second time with every reading of 8 characters or more cut to a random 40-80% stretch of
itself (seed 1604): the fragments OCR reads of a sign half hidden, tilted or far away. A
logistic model of those features is fitted (classes as drawn: its prior is removed again by
`learned_log_odds`) and written to
lookalike/data/learned_text_calibration.json, with the likelihood ratio of a match at or above
0.75 (one false match added) as `max_log_odds`.

`--oxford`: an index of the 8 query photos alone would learn each query's specific lines
(one reference each); every positive and negative is read, and the log-odds its text gives
its own query (and any query) are counted: is any learned text useful there?
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from lookalike.features.cache import open_cache  # noqa: E402
from lookalike.features.extract import extract_features  # noqa: E402
from lookalike.features.registry import get_method  # noqa: E402
from lookalike.gallery.learned_text import gallery_phrases  # noqa: E402
from lookalike.ocr import learned  # noqa: E402
from lookalike.ocr.learned import (  # noqa: E402
    MATCH_THRESHOLD,
    compact_readings,
    gallery_learned_log_odds,
    learn_phrases,
    match_features,
    reference_lines,
)

FIT_SEED, FRAGMENT_SEED = 1601, 1604
FEATURES = ["share", "coverage", "chars", "confidence"]


def manifest_rows(manifest: Path) -> list[tuple[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as handle:
        return [(str(manifest.parent / row["path"]), row["label"])
                for row in csv.DictReader(handle)]


def read_all(paths: list[str], cache, quiet: bool) -> dict[str, dict]:
    found = extract_features(get_method("text"), paths, cache, 1, quiet)
    return dict(zip(found.paths, found.features))


def fragment(text: str, rng: random.Random) -> str:
    if len(text) < 8:
        return text
    size = max(4, round(len(text) * rng.uniform(0.4, 0.8)))
    start = rng.randrange(0, len(text) - size + 1)
    return text[start:start + size]


def samples(rows: list[tuple[str, str]], features: dict[str, dict], rng: random.Random
            ) -> list[tuple[list[float], int]]:
    """(features, own) per photo and landmark, whole readings and fragments (see the
    module's doc)."""
    labels = sorted({label for _, label in rows if label != "distractor"})
    members = {label: [p for p, lab in rows if lab == label] for label in labels}
    lines = {p: reference_lines(features.get(p)) for p, _ in rows}
    learned_all = {label: learn_phrases([lines[p] for p in members[label]]) for label in labels}
    out = []
    for photo, label in rows:
        readings = compact_readings(features[photo]) if photo in features else []
        if not readings:
            continue
        phrases = dict(learned_all)
        if label in phrases:
            phrases[label] = learn_phrases([lines[p] for p in members[label] if p != photo])
        phrases = gallery_phrases({k: ([], v) for k, v in phrases.items()})
        cut = [(fragment(text, rng), conf) for text, conf in readings]
        for landmark in labels:
            if not phrases[landmark]:
                continue
            for variant in (readings, cut):
                candidates = [match_features(text, phrase, conf) for phrase in phrases[landmark]
                              for text, conf in variant if text]
                best = max(candidates, key=lambda v: (v["matched"], v["share"],
                                                      v["confidence"]))
                out.append(([best[name] for name in FEATURES], int(landmark == label)))
    return out


def fit(data, fitted_on: str) -> dict:
    from sklearn.linear_model import LogisticRegression

    x, y = np.array([row[0] for row in data], float), np.array([row[1] for row in data])
    model = LogisticRegression(C=10.0, max_iter=5000).fit(x, y)
    coef, intercept = model.coef_[0].tolist(), float(model.intercept_[0])
    if min(coef[:3]) <= 0:
        raise SystemExit(f"not monotonic in share, coverage and matched characters ({coef}); "
                         "look at the data")
    probability = model.predict_proba(x)[:, 1]
    hits = probability >= MATCH_THRESHOLD
    positives, negatives = int(y.sum()), int((1 - y).sum())
    true_rate = float((hits & (y == 1)).sum() / max(1, positives))
    false_rate = float(((hits & (y == 0)).sum() + 1) / (negatives + 1))
    return {
        "features": FEATURES,
        "engines": {"scene": {
            "coef": [round(c, 4) for c in coef], "intercept": round(intercept, 4),
            "positives": positives, "negatives": negatives,
            "recall_at_threshold": round(true_rate, 4),
            "false_matches_at_threshold": int((hits & (y == 0)).sum())}},
        "prior_log_odds": round(math.log(positives / negatives), 4),
        "max_log_odds": round(math.log(true_rate / false_rate), 3) if true_rate else 0.0,
        "threshold": MATCH_THRESHOLD,
        "fitted_on": fitted_on,
    }


def run_fit(args) -> int:
    from ocr_bench import photos
    from signboard_bench import write_plaque_set

    cache = open_cache(args.cache)
    plaques = args.workdir / f"plaques-{FIT_SEED}"
    manifest = plaques / "manifest.csv"
    if not manifest.is_file():
        write_plaque_set(photos(args.data), args.data, plaques, FIT_SEED)
    sets = [manifest_rows(args.data / "manifest.csv"), manifest_rows(manifest)]
    rng = random.Random(FRAGMENT_SEED)
    data = []
    started = time.perf_counter()
    for rows in sets:
        features = read_all([p for p, _ in rows], cache, args.quiet)
        data += samples(rows, features, rng)
    fitted = fit(data, f"benchmarks/learned_text_bench.py --fit: the dev photos as they are and "
                       f"with drawn plaques (seed {FIT_SEED}), leave-one-out phrases, whole "
                       f"readings and fragments (seed {FRAGMENT_SEED}); {len(data)} samples")
    learned.CALIBRATION_FILE.write_text(json.dumps(fitted, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(fitted, indent=1))
    print(f"{len(data)} samples in {time.perf_counter() - started:.0f} s; wrote "
          f"{learned.CALIBRATION_FILE}", file=sys.stderr)
    return 0


def run_oxford(args) -> int:
    root = args.oxford
    with open(root / "manifest.csv", newline="", encoding="utf-8") as handle:
        roles = [(row["query"], str(root / row["path"]), row["role"])
                 for row in csv.DictReader(handle)]
    cache = open_cache(args.cache)
    started = time.perf_counter()
    features = read_all([path for _, path, _ in roles], cache, args.quiet)
    seconds = time.perf_counter() - started
    queries = {query: path for query, path, role in roles if role == "query"}
    learned_phrases = {query: learn_phrases([reference_lines(features.get(path))])
                       for query, path in queries.items()}
    phrases = gallery_phrases({query: ([], found) for query, found in learned_phrases.items()})
    counts = {"positive": [0, 0, 0], "negative": [0, 0, 0]}  # photos, own raised, any raised
    read = {"positive": 0, "negative": 0}
    raised = []
    for query, path, role in roles:
        if role == "query":
            continue
        added = gallery_learned_log_odds(features.get(path), phrases)
        counts[role][0] += 1
        read[role] += bool(compact_readings(features[path])) if path in features else 0
        counts[role][1] += added.get(query, 0.0) > 0
        counts[role][2] += any(value > 0 for value in added.values())
        raised += [(Path(path).name, role, query, k, round(v, 2)) for k, v in added.items() if v > 0]
    result = {"learned": learned_phrases, "queries_with_text": sum(bool(p) for p in
                                                                  learned_phrases.values()),
              "read": read, "counts": counts, "raised": raised, "ocr_seconds": round(seconds, 1)}
    print(json.dumps(result, indent=1, ensure_ascii=False))
    print("\n| oxford_hard, learned text (1 reference a landmark) | photos | any text read | "
          "own query raised | some query raised |\n|---|---:|---:|---:|---:|")
    for role in ("positive", "negative"):
        n, own, any_ = counts[role]
        print(f"| {role}s | {n} | {read[role]} | {own} | {any_} |")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/landmarks"))
    parser.add_argument("--oxford-data", dest="oxford", type=Path,
                        default=Path("../shared/data/oxford_hard"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/learned-text"))
    parser.add_argument("--cache", default=None, help="feature cache file (default: the user's)")
    parser.add_argument("--fit", action="store_true", help="fit and write the calibration")
    parser.add_argument("--oxford", dest="run_oxford", action="store_true",
                        help="measure on oxford_hard")
    parser.add_argument("--quiet", "-q", action="store_true")
    args = parser.parse_args(argv)
    if args.fit:
        return run_fit(args)
    if args.run_oxford:
        return run_oxford(args)
    parser.error("choose --fit or --oxford")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
