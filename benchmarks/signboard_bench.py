"""Harder signboard benchmark: are landmark names read off bronze, engraved, tilted, shadowed plaques?

    nice -n 10 .venv/bin/python benchmarks/signboard_bench.py --data ../shared/data/landmarks
    nice -n 10 .venv/bin/python benchmarks/signboard_bench.py --fit      # refit the calibration
    nice -n 10 .venv/bin/python benchmarks/signboard_bench.py --dev-plaques  # what text adds

Draws plaques with `lookalike.ocr.signboards.hard_sign` (seed 1602; the tests and
benchmarks/ocr_bench.py use other seeds and the plain `random_sign`): 0.5-2% of the photo,
+-8 degrees, turned up to 20 degrees, in Noto CJK or DejaVu faces, each case pushing one
condition (signboards.CONDITIONS: serif, bold, engraved, embossed, bronze, weathered,
perspective 30-45 degrees, small 0.5-0.7%, low contrast, blur, JPEG quality 50, half in
shadow, a post or branch in front) for Japanese across, Japanese down and English names of
the 15 landmarks of ocr_bench.py. Every engine reads every case; a case is recognised when
`match_readings` of the drawn landmark's names reaches TEXT_MATCH_THRESHOLD. Every dev photo
is read as it is too, and counts a false match when any of the 15 landmarks reaches it.
Reports per condition and kind, both engines side by side (markdown), the 1600 px timing, and
writes all readings to --output, so that `--from` recomputes the figures without OCR.

`--fit` draws a calibration set with another seed (1601) and fits, per engine, a logistic
model of "a name of this landmark is on the plaque" from the best reading's similarity to
the name and the recogniser's confidence (balanced classes), and writes
lookalike/data/text_calibration.json. The report set is never fitted on.

`--pairs` also scores photo pairs with `text_pair_evidence` (what `fused` would use): pairs of
plaques with the same text, with different names, and dev photos as they are (all readings
taken as shown lines, so an upper bound on false pairs).

`--dev-plaques` draws a plaque naming each dev photo's own landmark (English or Japanese,
one random condition each) and reports the text log-odds given to the right landmark and to
the best wrong one among the 15 dev landmarks.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

from ocr_bench import LANDMARKS, english_names, japanese_names, names_of, photos

from lookalike.imaging.loading import LoadOptions, load_image
from lookalike.ocr import reader as ocr
from lookalike.ocr.evidence import (
    CALIBRATION_FILE,
    TEXT_MATCH_THRESHOLD,
    feature_readings,
    landmark_names,
    make_feature,
    match_readings,
    name_similarity,
    text_calibration,
    text_evidence_among,
    text_log_odds,
    text_pair_evidence,
    usable_name,
)
from lookalike.ocr.signboards import CONDITIONS, Sign, hard_sign, paste_sign

KINDS = ("ja-across", "ja-down", "en")
REPORT_SEED, FIT_SEED, DEV_SEED = 1602, 1601, 1603

# The dev photos' own landmarks, named as a landmark.json would (for --dev-plaques).
DEV_LANDMARKS = {
    "all_souls_college": {"en": "All Souls College", "ja": "オール・ソウルズ・カレッジ"},
    "ashmolean_museum": {"en": "Ashmolean Museum", "ja": "アシュモレアン博物館"},
    "berlin_cathedral": {"en": "Berlin Cathedral", "ja": "ベルリン大聖堂"},
    "bodleian_library": {"en": "Bodleian Library", "ja": "ボドリアン図書館"},
    "chateau_de_sceaux": {"en": "Château de Sceaux", "ja": "ソー城"},
    "cornmarket_street_oxford": {"en": "Cornmarket Street", "ja": "コーンマーケット通り"},
    "hertford_bridge": {"en": "Hertford Bridge", "ja": "ハートフォード橋",
                        "aliases": ["Bridge of Sighs"]},
    "magdalen_tower": {"en": "Magdalen Tower", "ja": "モードリン塔"},
    "nle_tower": {"en": "NLE Tower", "ja": "NLEタワー"},
    "piazza_san_marco": {"en": "Piazza San Marco", "ja": "サン・マルコ広場"},
    "sacre_coeur": {"en": "Sacré-Cœur Basilica", "ja": "サクレ・クール寺院"},
    "st_pauls_cathedral": {"en": "St Paul's Cathedral", "ja": "セント・ポール大聖堂"},
    "strecha_castle": {"en": "Střekov Castle", "ja": "ストシェコフ城"},
    "tower_bridge": {"en": "Tower Bridge", "ja": "タワーブリッジ"},
    "united_states_capitol": {"en": "United States Capitol", "ja": "アメリカ合衆国議会議事堂"},
}


@dataclasses.dataclass
class Case:
    kind: str
    condition: str
    photo: str
    landmark: str
    text: str
    sign: Sign


def draw_cases(paths: list[Path], per_cell: int, seed: int) -> list[Case]:
    """`per_cell` cases per (condition, kind), reproducible from `seed`."""
    rng = random.Random(seed)
    cases = []
    for condition in CONDITIONS:
        for kind in KINDS:
            for _ in range(per_cell):
                path = rng.choice(paths)
                landmark = rng.choice(list(LANDMARKS))
                meta = LANDMARKS[landmark]
                text = rng.choice(english_names(meta) if kind == "en" else japanese_names(meta))
                sign = hard_sign(rng, text, condition, vertical=(kind == "ja-down"))
                cases.append(Case(kind, condition, str(path), landmark, text, sign))
    return cases


def read_readings(image, engine: str) -> tuple[list[tuple[str, float]], float]:
    """Every reading of a photo (text, confidence) and the seconds it took."""
    start = time.perf_counter()
    feature = make_feature(*ocr.read_signs(image, engine=engine), engine=engine)
    return [(text, round(conf, 4)) for text, conf in feature_readings(feature)], \
        time.perf_counter() - start


def named_on(meta: dict, text: str) -> bool:
    """Ground truth: some usable name of the landmark is written in the drawn text."""
    drawn = ocr.compact(text)
    return any(usable_name(name) and ocr.compact(name) in drawn for name in names_of(meta))


def read_all(cases: list[Case], engines: list[str], quiet: bool) -> list[dict]:
    rows = []
    for index, case in enumerate(cases):
        image, _ = paste_sign(load_image(case.photo, LoadOptions()), case.sign)
        row = {"kind": case.kind, "condition": case.condition, "photo": Path(case.photo).name,
               "landmark": case.landmark, "sign": case.text,
               "spec": dataclasses.asdict(case.sign), "readings": {}, "seconds": {}}
        for engine in engines:
            readings, seconds = read_readings(image, engine)
            row["readings"][engine], row["seconds"][engine] = readings, round(seconds, 3)
        rows.append(row)
        if not quiet:
            shown = {e: _best_text(row["readings"][e], case.text) for e in engines}
            print(f"{index + 1:4}/{len(cases)} {case.condition:12} {case.kind:9} {case.text!r} "
                  f"-> {shown}", file=sys.stderr)
    return rows


def _best_text(readings: list, name: str) -> str:
    if not readings:
        return ""
    return max(readings, key=lambda r: (name_similarity(r[0], name), r[1]))[0][:40]


def read_plain(paths: list[Path], engines: list[str], data: Path) -> list[dict]:
    rows = []
    for path in paths:
        image = load_image(path, LoadOptions())
        row = {"photo": str(path.relative_to(data)), "readings": {}, "seconds": {}}
        for engine in engines:
            readings, seconds = read_readings(image, engine)
            row["readings"][engine], row["seconds"][engine] = readings, round(seconds, 3)
        rows.append(row)
    return rows


def timing(paths: list[Path], engine: str, count: int = 12) -> dict:
    """Wall seconds to read 1600 px photos as they are: the first (models loading), then warm."""
    long_ones = [p for p in paths if max(load_image(p, LoadOptions()).size) == 1600][:count]
    images = [load_image(p, LoadOptions()) for p in long_ones]
    start = time.perf_counter()
    ocr.read_text(images[0], engine=engine)
    cold = time.perf_counter() - start
    warm = []
    for image in images:
        start = time.perf_counter()
        ocr.read_text(image, engine=engine)
        warm.append(time.perf_counter() - start)
    return {"photos": len(warm), "cold": round(cold, 3), "median": round(statistics.median(warm), 3),
            "max": round(max(warm), 3), "load_average_1min": round(os.getloadavg()[0], 1)}


# -- scoring ------------------------------------------------------------------------------------
def recognised(row: dict, engine: str) -> bool:
    match = match_readings(row["readings"][engine], names_of(LANDMARKS[row["landmark"]]), engine)
    return match is not None and match.matched


def wrong_matches(row: dict, engine: str) -> list[str]:
    """Landmarks matched on a photo whose names are not written on it."""
    drawn = row.get("sign", "")
    out = []
    for landmark, meta in LANDMARKS.items():
        if drawn and named_on(meta, drawn):
            continue
        match = match_readings(row["readings"][engine], names_of(meta), engine)
        if match is not None and match.matched:
            out.append(landmark)
    return out


def rate(values: list[bool]) -> float:
    return sum(values) / max(1, len(values))


def summarise(rows: list[dict], plain: list[dict], engines: list[str]) -> dict:
    summary: dict = {"threshold": TEXT_MATCH_THRESHOLD, "engines": {}}
    for engine in engines:
        cells = {}
        for condition in CONDITIONS:
            for kind in KINDS:
                hits = [recognised(r, engine) for r in rows
                        if r["condition"] == condition and r["kind"] == kind]
                cells[f"{condition}/{kind}"] = rate(hits)
        by_kind = {kind: rate([recognised(r, engine) for r in rows if r["kind"] == kind])
                   for kind in KINDS}
        japanese = [recognised(r, engine) for r in rows if r["kind"].startswith("ja")]
        false_plain = [bool(wrong_matches(r, engine)) for r in plain]
        summary["engines"][engine] = {
            "japanese": rate(japanese), "japanese_cases": len(japanese), **by_kind,
            "by_condition": {c: rate([recognised(r, engine) for r in rows if r["condition"] == c])
                             for c in CONDITIONS},
            "cells": cells,
            "signed_photos_with_a_wrong_landmark": rate([bool(wrong_matches(r, engine))
                                                         for r in rows]),
            "plain_false_match_rate": rate(false_plain), "plain_photos": len(plain),
            "plain_false_matches": [r["photo"] for r in plain if wrong_matches(r, engine)],
            "median_seconds_per_case": round(statistics.median(
                r["seconds"][engine] for r in rows), 3) if rows else None,
        }
    return summary


def markdown(summary: dict, engines: list[str], per_cell: int) -> str:
    head = " | ".join(f"{e} {k}" for e in engines for k in ("ja across", "ja down", "en"))
    lines = [f"| condition | {head} |", "|---|" + "---:|" * (3 * len(engines))]
    for condition in CONDITIONS:
        values = " | ".join(f"{summary['engines'][e]['cells'][f'{condition}/{k}']:.0%}"
                            for e in engines for k in KINDS)
        lines.append(f"| {condition} | {values} |")
    values = " | ".join(f"**{summary['engines'][e][k]:.0%}**" for e in engines for k in KINDS)
    lines.append(f"| all ({per_cell} per cell) | {values} |")
    return "\n".join(lines)


# -- calibration ------------------------------------------------------------------------------------
def fit_rows(rows: list[dict], engine: str) -> list[tuple[float, float, int]]:
    """(similarity, confidence, named) per (case, landmark) with any reading: the reading most
    similar to one of the landmark's names (ties: the most confident)."""
    out = []
    for row in rows:
        readings = [r for r in row["readings"][engine] if ocr.compact(r[0])]
        if not readings:
            continue
        for meta in LANDMARKS.values():
            names = [n for n in names_of(meta) if usable_name(n)]
            similarity, confidence = max((name_similarity(text, name), conf)
                                         for text, conf in readings for name in names)
            out.append((similarity, confidence, int(named_on(meta, row["sign"]))))
    return out


FEATURES = ["similarity", "confidence", "similarity*confidence"]


def fit_engine(data: list[tuple[float, float, int]]) -> dict:
    """Logistic fit of `named` on similarity, confidence and their product, constrained so that
    evidence never falls as confidence rises for a whole name read. Classes as drawn: each
    plaque names one of the 15 landmarks, so the fit's prior is about 1/15 (`prior_log_odds`).

    The product lets confidence mean what it does: a confident reading of most of a name is a
    reading of another word (伊能忠敬旧宅 for 伊能忠敬像), worse evidence than an unsure one,
    which may be the name with a character misread. When the free fit would make a surer
    reading of the whole name weaker evidence (confidence + product < 0 - the benchmark has
    whole names read at every confidence and no whole name read by chance), the constrained
    maximum lies on the boundary: confidence then only acts through the mismatch,
    coefficient x confidence x (1 - similarity), refitted as such.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    s, c = (np.array([row[i] for row in data]) for i in (0, 1))
    y = np.array([row[2] for row in data])

    def logistic(x):
        return LogisticRegression(C=10.0, max_iter=5000).fit(x, y)

    model = logistic(np.column_stack([s, c, s * c]))
    (a, b, d), intercept = model.coef_[0].tolist(), float(model.intercept_[0])
    constrained = b + d < 0
    if constrained:
        model = logistic(np.column_stack([s, c * (1 - s)]))
        (a, b), intercept = model.coef_[0].tolist(), float(model.intercept_[0])
        d = -b
    # Evidence must rise with similarity at any confidence.
    if a <= 0 or a + d <= 0:
        raise SystemExit(f"calibration not monotonic (coefficients {a}, {b}, {d}); look at the data")
    logit = intercept + a * s + b * c + d * s * c
    probability = 1 / (1 + np.exp(-logit))
    hits = probability >= TEXT_MATCH_THRESHOLD
    positives, negatives = int(y.sum()), int((1 - y).sum())
    true_rate = float((hits & (y == 1)).sum() / max(1, positives))
    false_rate = float(((hits & (y == 0)).sum() + 1) / (negatives + 1))
    return {"coef": [round(a, 4), round(b, 4), round(d, 4)], "intercept": round(intercept, 4),
            "constrained": constrained, "positives": positives, "negatives": negatives,
            "recall_at_threshold": round(true_rate, 4),
            "false_matches_at_threshold": int((hits & (y == 0)).sum()),
            # The likelihood ratio of a reading at or above the threshold, one false match added.
            "max_log_odds": round(math.log(true_rate / false_rate), 3) if true_rate else 0.0}


def fit(rows: list[dict], engines: list[str], seed: int, per_cell: int) -> dict:
    fitted = {engine: fit_engine(fit_rows(rows, engine)) for engine in engines}
    positives = sum(f["positives"] for f in fitted.values())
    negatives = sum(f["negatives"] for f in fitted.values())
    return {
        "features": FEATURES,
        "engines": fitted,
        # The fits' prior (pooled): text_log_odds removes it to leave the likelihood ratio.
        "prior_log_odds": round(math.log(positives / negatives), 4),
        # The smaller engine's ratio of reads above the threshold, with one false match added.
        "max_log_odds": min(f["max_log_odds"] for f in fitted.values()),
        "threshold": TEXT_MATCH_THRESHOLD,
        "fitted_on": f"benchmarks/signboard_bench.py --fit: seed {seed}, {per_cell} cases per "
                     f"condition and kind ({len(rows)} photos x {len(LANDMARKS)} landmarks)",
    }


# -- photo pairs (fused) ---------------------------------------------------------------------------
def pair_summary(rows: list[dict], plain: list[dict], engine: str, limit: int = 4000) -> dict:
    """Share of pairs whose `text_pair_evidence` reaches the threshold: same plaque text on two
    photos, different names, and dev photos as they are (different / same landmark)."""
    rng = random.Random(0)

    def hit(a: list, b: list) -> bool:
        evidence = text_pair_evidence([tuple(r) for r in a], [tuple(r) for r in b])
        return evidence is not None and evidence >= TEXT_MATCH_THRESHOLD

    same, different = [], []
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            (same if a["sign"] == b["sign"] else different).append((a, b))
    different = rng.sample(different, min(limit, len(different)))
    label = {r["photo"]: r["photo"].split("/")[0] for r in plain}
    plain_pairs = [(a, b) for i, a in enumerate(plain) for b in plain[i + 1:]]
    other = [(a, b) for a, b in plain_pairs if label[a["photo"]] != label[b["photo"]]]
    along = [(a, b) for a, b in plain_pairs if label[a["photo"]] == label[b["photo"]]]
    return {
        "same_text_pairs": len(same),
        "same_text_matched": rate([hit(a["readings"][engine], b["readings"][engine]) for a, b in same]),
        "different_text_pairs": len(different),
        "different_text_matched": rate([hit(a["readings"][engine], b["readings"][engine])
                                        for a, b in different]),
        "plain_other_landmark_pairs": len(other),
        "plain_other_landmark_matched": rate([hit(a["readings"][engine], b["readings"][engine])
                                              for a, b in other]),
        "plain_same_landmark_pairs": len(along),
        "plain_same_landmark_matched": rate([hit(a["readings"][engine], b["readings"][engine])
                                             for a, b in along]),
    }


# -- what text adds on dev photos -------------------------------------------------------------------
def dev_plaques(paths: list[Path], data: Path, engine: str, seed: int, quiet: bool) -> dict:
    rng = random.Random(seed)
    rows = []
    for path in paths:
        label = path.relative_to(data).parts[0]
        if label not in DEV_LANDMARKS:
            continue
        meta = DEV_LANDMARKS[label]
        text = meta["en"] if rng.random() < 0.5 else meta["ja"]
        sign = hard_sign(rng, text, rng.choice(CONDITIONS), vertical=not text.isascii()
                         and rng.random() < 0.5)
        image, _ = paste_sign(load_image(path, LoadOptions()), sign)
        readings, _ = read_readings(image, engine)
        odds = {name: text_log_odds(m.score) if (m := match_readings(
            readings, landmark_names(other), engine)) else 0.0
            for name, other in DEV_LANDMARKS.items()}
        among = {name: text_log_odds(evidence) for name, evidence in text_evidence_among(
            readings, {k: landmark_names(v) for k, v in DEV_LANDMARKS.items()}).items()}
        wrong = max(v for k, v in odds.items() if k != label)
        wrong_among = max(v for k, v in among.items() if k != label)
        rows.append({"photo": path.name, "landmark": label, "sign": text,
                     "condition": sign_condition(sign), "right": round(odds[label], 3),
                     "best_wrong": round(wrong, 3), "right_among": round(among[label], 3),
                     "best_wrong_among": round(wrong_among, 3)})
        if not quiet:
            print(f"{label:26} {text!r}: right {odds[label]:.2f}, best wrong {wrong:.2f} "
                  f"(among the gallery: {among[label]:.2f}, {wrong_among:.2f})", file=sys.stderr)
    summary: dict = {"engine": engine, "photos": len(rows)}
    for suffix, label in (("", "text_evidence"), ("_among", "text_evidence_among")):
        right = [r["right" + suffix] for r in rows]
        wrong = [r["best_wrong" + suffix] for r in rows]
        summary[label] = {
            "mean_log_odds_right": round(statistics.mean(right), 3),
            "median_log_odds_right": round(statistics.median(right), 3),
            "share_right_raised": rate([v > 0 for v in right]),
            "share_right_over_3": rate([v > 3 for v in right]),
            "mean_log_odds_best_wrong": round(statistics.mean(wrong), 3),
            "share_best_wrong_over_1": rate([v > 1 for v in wrong]),
            "share_right_above_all_wrong": rate([r["right" + suffix] > r["best_wrong" + suffix]
                                                 for r in rows]),
        }
    summary["rows"] = rows
    return summary


def write_plaque_set(paths: list[Path], data: Path, outdir: Path, seed: int) -> Path:
    """A copy of the dev set for `lookalike evaluate --identify DIR --use-text`: every landmark
    photo with a plaque of its landmark's name (English or Japanese, one random condition of
    the harder benchmark each), the distractors as they are, a landmark.json of names per
    landmark and a manifest.csv. Returns the manifest's path."""
    rng = random.Random(seed)
    rows = []
    for path in paths:
        label = path.relative_to(data).parts[0]
        target = outdir / path.relative_to(data)
        target.parent.mkdir(parents=True, exist_ok=True)
        meta = DEV_LANDMARKS.get(label)
        if meta is None:  # a distractor: no landmark, no plaque
            shutil.copyfile(path, target)
            rows.append((target.relative_to(outdir).as_posix(), "distractor"))
            continue
        text = meta["en"] if rng.random() < 0.5 else meta["ja"]
        sign = hard_sign(rng, text, rng.choice(CONDITIONS), vertical=not text.isascii()
                         and rng.random() < 0.5)
        image, _ = paste_sign(load_image(path, LoadOptions()), sign)
        image.convert("RGB").save(target.with_suffix(".jpg"), quality=92)
        (target.parent / "landmark.json").write_text(
            json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        rows.append((target.with_suffix(".jpg").relative_to(outdir).as_posix(), label))
    manifest = outdir / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return manifest


def sign_condition(sign: Sign) -> str:
    return sign.finish if sign.finish != "print" else f"{sign.style}/{sign.family}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/landmarks", type=Path)
    parser.add_argument("--engines", default=",".join(ocr.OCR_ENGINES))
    parser.add_argument("--per-cell", type=int, default=8,
                        help="cases per condition and kind (13 conditions x 3 kinds)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--output", "-o", type=Path, default=None)
    parser.add_argument("--from", dest="source", type=Path,
                        help="reuse the readings in this earlier --output instead of reading")
    parser.add_argument("--fit", action="store_true",
                        help=f"fit the calibration on seed {FIT_SEED} and write {CALIBRATION_FILE.name}")
    parser.add_argument("--dev-plaques", action="store_true",
                        help="log-odds text adds for a plaque naming each dev photo's landmark")
    parser.add_argument("--write-plaque-set", metavar="DIR", type=Path,
                        help="write the dev photos with plaques of their landmark's name, "
                             "landmark.json names and a manifest to DIR, for `lookalike "
                             "evaluate --identify DIR/manifest.csv --use-text`")
    parser.add_argument("--no-plain", action="store_true", help="skip the dev photos as they are")
    parser.add_argument("--pairs", action="store_true",
                        help="also score photo pairs with text_pair_evidence (as fused would)")
    parser.add_argument("--quiet", "-q", action="store_true")
    args = parser.parse_args(argv)
    engines = [ocr.check_engine_name(e) for e in args.engines.split(",")]
    for engine in engines:
        ocr.check_available(engine)
    paths = photos(args.data)

    if args.write_plaque_set:
        manifest = write_plaque_set(paths, args.data, args.write_plaque_set,
                                    args.seed or DEV_SEED)
        print(f"wrote {manifest}")
        return 0
    if args.dev_plaques:
        result = dev_plaques(paths, args.data, engines[0], args.seed or DEV_SEED, args.quiet)
        output = args.output or Path("out/signboard_dev_plaques.json")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
        print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
        return 0

    seed = args.seed or (FIT_SEED if args.fit else REPORT_SEED)
    output = args.output or Path("out/signboard_fit.json" if args.fit else "out/signboard_bench.json")
    if args.source:
        saved = json.loads(args.source.read_text(encoding="utf-8"))
        rows, plain, speed = saved["cases"], saved.get("plain", []), saved.get("timing", {})
        engines = [e for e in engines if rows and e in rows[0]["readings"]]
    else:
        speed = {} if args.fit else {engine: timing(paths, engine) for engine in engines}
        rows = read_all(draw_cases(paths, args.per_cell, seed), engines, args.quiet)
        plain = [] if (args.fit or args.no_plain) else read_plain(paths, engines, args.data)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"timing": speed, "cases": rows, "plain": plain},
                                 ensure_ascii=False, indent=1), encoding="utf-8")
    if args.fit:
        calibration = fit(rows, engines, seed, len(rows) // (len(CONDITIONS) * len(KINDS)))
        CALIBRATION_FILE.write_text(json.dumps(calibration, indent=1) + "\n", encoding="utf-8")
        text_calibration.cache_clear()
        print(json.dumps(calibration, indent=1))
    summary = summarise(rows, plain, engines)
    summary["timing_1600px"] = speed
    if args.pairs:
        summary["pairs"] = {engine: pair_summary(rows, plain, engine) for engine in engines}
        print(json.dumps(summary["pairs"], indent=1))
    output.write_text(json.dumps({"summary": summary, "timing": speed, "cases": rows,
                                  "plain": plain}, ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps({e: {k: v for k, v in s.items() if k != "cells"}
                      for e, s in summary["engines"].items()}, indent=1))
    print(json.dumps(speed, indent=1))
    print(markdown(summary, engines, len(rows) // (len(CONDITIONS) * len(KINDS))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
