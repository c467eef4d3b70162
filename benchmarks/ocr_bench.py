"""OCR benchmark: are landmark names on generated signboards read, and is nothing read into plain photos?

    nice -n 10 .venv/bin/python benchmarks/ocr_bench.py --data ../shared/data/landmarks [--engine tesseract]

Draws signboards (lookalike.ocr.signboards: Japanese across and down, English; 2-6% of the photo's
area, +-12 degrees, high/medium/low contrast, four Noto CJK faces, some blur) onto dev photos,
reads them with `lookalike.ocr.reader.read_signs` (--engine scene, the default, or tesseract), and counts a case as recognised when
`text_evidence(feature, names)` of the drawn landmark reaches TEXT_MATCH_THRESHOLD. Then reads
every dev photo as it is (none has a signboard with these names) and counts a false match when
any benchmark landmark reaches the threshold. Reports the rates, the OCR time per 1600 px photo
(first call with model loading, then warm), and writes per-case rows to --output (JSON).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

from lookalike.imaging.loading import LoadOptions, load_image
from lookalike.ocr import reader as ocr
from lookalike.ocr.evidence import TEXT_MATCH_THRESHOLD, make_feature, match_names
from lookalike.ocr.signboards import paste_sign, random_sign

# A gallery of Japanese landmarks as landmark.json would describe them.
LANDMARKS = {
    "ino_statue": {"ja": "伊能忠敬像", "en": "Statue of Ino Tadataka",
                   "aliases": ["伊能忠敬銅像", "Ino Tadataka"]},
    "ino_house": {"ja": "伊能忠敬旧宅", "en": "Former Residence of Ino Tadataka"},
    "tokyo_tower": {"ja": "東京タワー", "en": "Tokyo Tower"},
    "sensoji": {"ja": "浅草寺", "en": "Senso-ji Temple", "aliases": ["金龍山浅草寺"]},
    "kaminarimon": {"ja": "雷門", "en": "Kaminarimon Gate"},
    "kinkakuji": {"ja": "金閣寺", "en": "Kinkaku-ji", "aliases": ["鹿苑寺", "Golden Pavilion"]},
    "osaka_castle": {"ja": "大阪城", "en": "Osaka Castle"},
    "itsukushima": {"ja": "厳島神社", "en": "Itsukushima Shrine"},
    "kiyomizu": {"ja": "清水寺", "en": "Kiyomizu-dera Temple"},
    "himeji": {"ja": "姫路城", "en": "Himeji Castle"},
    "fushimi_inari": {"ja": "伏見稲荷大社", "en": "Fushimi Inari Taisha"},
    "katori": {"ja": "香取神宮", "en": "Katori Jingu Shrine"},
    "sawara": {"ja": "佐原の町並み", "en": "Sawara Historic District"},
    "meiji": {"ja": "明治神宮", "en": "Meiji Jingu Shrine"},
    "todaiji": {"ja": "東大寺大仏殿", "en": "Todai-ji Great Buddha Hall"},
}


def names_of(meta: dict) -> list[str]:
    from lookalike.ocr.evidence import landmark_names

    return landmark_names(meta)


def japanese_names(meta: dict) -> list[str]:
    return [n for n in names_of(meta) if not n.isascii()]


def english_names(meta: dict) -> list[str]:
    return [n for n in names_of(meta) if n.isascii()]


def photos(data: Path) -> list[Path]:
    with open(data / "manifest.csv", newline="", encoding="utf-8") as handle:
        return [data / row["path"] for row in csv.DictReader(handle)]


def read(image, engine: str) -> tuple[dict, float]:
    start = time.perf_counter()
    feature = make_feature(*ocr.read_signs(image, engine=engine), engine=engine)
    return feature, time.perf_counter() - start


def timed_read(image, engine: str) -> tuple[float, float]:
    """Wall and CPU seconds of one read. Tesseract here is single-threaded, so its CPU time is
    what the read takes on an otherwise idle core, whatever else the machine is running; the
    scene engine runs on two threads, so its CPU time is up to twice its wall time."""
    wall, cpu = time.perf_counter(), time.process_time()
    ocr.read_text(image, engine=engine)
    return time.perf_counter() - wall, time.process_time() - cpu


def run_cases(paths, count: int, kind: str, rng: random.Random, failures: Path | None,
              engine: str) -> list[dict]:
    rows = []
    for index in range(count):
        path = rng.choice(paths)
        landmark = rng.choice(list(LANDMARKS))
        meta = LANDMARKS[landmark]
        text = rng.choice(english_names(meta) if kind == "en" else japanese_names(meta))
        sign = random_sign(rng, text, vertical=(kind == "ja-down"))
        photo = load_image(path, LoadOptions())
        image, _plate = paste_sign(photo, sign)
        feature, seconds = read(image, engine)
        match = match_names(feature, names_of(meta))
        score = match.score if match else 0.0
        ok = score >= TEXT_MATCH_THRESHOLD
        rows.append({"kind": kind, "photo": path.name, "landmark": landmark, "sign": text,
                     "area": round(sign.area, 4), "angle": round(sign.angle, 1),
                     "contrast": sign.contrast, "style": sign.style, "blur": sign.blur,
                     "read": str(feature["text"]), "score": round(score, 3), "recognised": ok,
                     "seconds": round(seconds, 3), "spec": dataclasses.asdict(sign)})
        if failures is not None and not ok:
            lines = [dict(text=t, box=list(b), confidence=float(c)) for t, b, c in
                     zip(feature["lines"], feature["boxes"], feature["confidence"])]
            ocr.draw_text_boxes(image, lines).save(failures / f"{kind}-{index:03d}.png")
            image.save(failures / f"{kind}-{index:03d}-input.png")
        print(f"{kind:8} {index + 1:3}/{count} {'ok  ' if ok else 'MISS'} {score:.2f} "
              f"{text!r} -> {str(feature['text'])[:60]!r}", file=sys.stderr)
    return rows


def rate(rows: list[dict], key: str = "recognised") -> float:
    return sum(row[key] for row in rows) / max(1, len(rows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/landmarks", type=Path)
    parser.add_argument("--japanese", type=int, default=80, help="Japanese cases (half down)")
    parser.add_argument("--english", type=int, default=60, help="English cases")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--engine", choices=ocr.OCR_ENGINES, default=ocr.DEFAULT_ENGINE)
    parser.add_argument("--output", "-o", default=None, type=Path,
                        help="default out/ocr_bench-ENGINE.json")
    parser.add_argument("--failures", type=Path, help="write annotated missed cases here")
    parser.add_argument("--plain", type=int, default=None, metavar="N",
                        help="read only the first N dev photos as they are (default: all)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    paths = photos(args.data)
    if args.failures:
        args.failures.mkdir(parents=True, exist_ok=True)

    # Timing first, on 1600 px photos as they are: cold (models loading) then warm.
    long_ones = [p for p in paths if max(load_image(p, LoadOptions()).size) == 1600][:12]
    cold = timed_read(load_image(long_ones[0], LoadOptions()), args.engine)
    warm = [timed_read(load_image(p, LoadOptions()), args.engine) for p in long_ones]

    rows = []
    rows += run_cases(paths, args.japanese // 2, "ja-across", rng, args.failures,
                      args.engine)
    rows += run_cases(paths, args.japanese - args.japanese // 2, "ja-down", rng, args.failures,
                      args.engine)
    rows += run_cases(paths, args.english, "en", rng, args.failures,
                      args.engine)

    plain = []
    for path in paths[:args.plain]:
        feature, seconds = read(load_image(path, LoadOptions()), args.engine)
        scores = {name: (m.score if (m := match_names(feature, names_of(meta))) else 0.0)
                  for name, meta in LANDMARKS.items()}
        best = max(scores, key=scores.get)
        plain.append({"kind": "plain", "photo": str(path.relative_to(args.data)),
                      "read": str(feature["text"]), "best": best, "score": round(scores[best], 3),
                      "false_match": scores[best] >= TEXT_MATCH_THRESHOLD,
                      "legible": bool(str(feature["text"])), "seconds": round(seconds, 3)})

    ja = [r for r in rows if r["kind"].startswith("ja")]
    en = [r for r in rows if r["kind"] == "en"]
    summary = {
        "engine": args.engine,
        "threshold": TEXT_MATCH_THRESHOLD,
        "japanese_recognised": rate(ja), "japanese_cases": len(ja),
        "japanese_across_recognised": rate([r for r in ja if r["kind"] == "ja-across"]),
        "japanese_down_recognised": rate([r for r in ja if r["kind"] == "ja-down"]),
        "english_recognised": rate(en), "english_cases": len(en),
        "by_contrast": {c: rate([r for r in rows if r["contrast"] == c])
                        for c in ("high", "medium", "low")},
        "false_match_rate": rate(plain, "false_match"),
        "false_matches": [r["photo"] for r in plain if r["false_match"]], "plain_photos": len(plain),
        "plain_with_text_read": rate(plain, "legible"),
        "photos_1600px_timed": len(warm),
        "seconds_1600px_cold": round(cold[0], 3),
        "seconds_1600px_warm_median": round(statistics.median(w for w, _ in warm), 3),
        "seconds_1600px_warm_max": round(max(w for w, _ in warm), 3),
        "cpu_seconds_1600px_cold": round(cold[1], 3),
        "cpu_seconds_1600px_warm_median": round(statistics.median(c for _, c in warm), 3),
        "cpu_seconds_1600px_warm_max": round(max(c for _, c in warm), 3),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "seconds_per_photo_median_all": round(statistics.median(
            [r["seconds"] for r in rows + plain]), 3) if rows or plain else None,
    }
    args.output = args.output or Path(f"out/ocr_bench-{args.engine}.json")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"summary": summary, "cases": rows, "plain": plain},
                                      ensure_ascii=False, indent=1), encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
