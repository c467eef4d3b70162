"""ASMK accuracy by codebook size and multiple assignment, on `landmarks` and `oxford_hard`.

    .venv/bin/python benchmarks/codebook_accuracy.py --words 1024,4096,16384 --assign 1,3 \
        [--fit] [--ship 16384]

Codebooks are fitted (`--fit`, FAISS k-means, `asmk.fit_codebook`) on the `landmarks` dev
photos' ALIKED descriptors only, as the shipped 1,024-word one was, and kept in
/tmp/lookalike-codebooks/ (`--ship N` copies the N-word one to lookalike/data/ as float16).
The 1,024-word row uses the shipped codebook. For each codebook and multiple assignment m
(each query descriptor votes for its m nearest words):
- landmarks: `asmk` alone, every photo a query against all others (the evaluation protocol
  of `lookalike.evaluation.metrics.retrieval_metrics`): mAP and P@1;
- oxford_hard: per query, its 20 photos ranked by ASMK similarity to query.jpg: mAP over
  the 8 queries, P@1 (random order: mAP 0.351, README of the data set).
Local features go through the feature cache, so a second run only aggregates.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lookalike.evaluation.evaluate import load_dataset
from lookalike.evaluation.metrics import retrieval_metrics
from lookalike.features.cache import open_cache
from lookalike.features.extract import extract_features
from lookalike.features.registry import get_method
from lookalike.matching import asmk

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FITTED = Path("/tmp/lookalike-codebooks")


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    hits = relevant[order].astype(float)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / max(1, hits.sum()))


def oxford_hard(local: dict[str, dict]) -> dict[str, list[str]]:
    """query.jpg path -> [(photo path, relevant)] from the manifest."""
    queries: dict[str, list] = {}
    with (DATA / "oxford_hard" / "manifest.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    query_of = {row["query"]: str(DATA / "oxford_hard" / row["path"]) for row in rows
                if row["role"] == "query"}
    for row in rows:
        if row["role"] != "query":
            queries.setdefault(query_of[row["query"]], []).append(
                (str(DATA / "oxford_hard" / row["path"]), row["role"] == "positive"))
    return queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", default="1024,4096,16384")
    parser.add_argument("--assign", default="1,3")
    parser.add_argument("--fit", action="store_true", help="fit the missing codebooks")
    parser.add_argument("--ship", type=int, help="copy this fitted codebook to lookalike/data")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    local_method = get_method("aliked")
    cache = open_cache(None)
    paths, labels = load_dataset(DATA / "landmarks" / "manifest.csv")
    dev = extract_features(local_method, paths, cache, args.jobs, quiet=True)
    assert not dev.errors, dev.errors
    hard = oxford_hard({})
    hard_paths = sorted({*hard, *(p for items in hard.values() for p, _ in items)})
    extra = extract_features(local_method, hard_paths, cache, args.jobs, quiet=True)
    assert not extra.errors, extra.errors
    hard_local = dict(zip(extra.paths, extra.features))
    print("| codebook words | multiple assignment | landmarks mAP | landmarks P@1 | "
          "oxford_hard mAP | oxford_hard P@1 | words per photo | fit s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for words in map(int, args.words.split(",")):
        fit_seconds = 0.0
        if words == 1024:
            path = asmk.shipped_codebook(f"{local_method.network}-1024")
        else:
            path = FITTED / f"asmk-{local_method.network}-{words}.npy"
            if not path.is_file():
                if not args.fit:
                    print(f"(no {path}; --fit fits it)", file=sys.stderr)
                    continue
                started = time.perf_counter()
                centroids = asmk.fit_codebook([f["descriptors"] for f in dev.features], words)
                asmk.save_codebook(centroids, path)
                fit_seconds = time.perf_counter() - started
        codebook = asmk.load_codebook(path)
        for assign in map(int, args.assign.split(",")):
            features = [asmk.aggregate(f["descriptors"], codebook, assign) for f in dev.features]
            inverted = asmk.InvertedFile(features)
            metrics = retrieval_metrics(np.stack([inverted.scores(f) for f in features]), labels)
            aps, firsts = [], []
            for query, items in hard.items():
                q = asmk.aggregate(hard_local[query]["descriptors"], codebook, assign)
                scores = np.array([asmk.similarity(q, asmk.aggregate(
                    hard_local[p]["descriptors"], codebook)) for p, _ in items])
                relevant = np.array([r for _, r in items])
                aps.append(average_precision(scores, relevant))
                firsts.append(float(relevant[int(np.argmax(scores))]))
            per_photo = np.mean([len(f["words"]) for f in features])
            print(f"| {words:,} | {assign} | {metrics['map']:.3f} | {metrics['p_at_1']:.3f} | "
                  f"{np.mean(aps):.3f} | {np.mean(firsts):.3f} | {per_photo:.0f} | "
                  f"{fit_seconds:.0f} |", flush=True)
    if args.ship:
        source = FITTED / f"asmk-{local_method.network}-{args.ship}.npy"
        target = asmk.shipped_codebook(f"{local_method.network}-{args.ship}")
        shutil.copyfile(source, target)
        print(f"shipped {target} ({os.path.getsize(target):,} bytes)")


if __name__ == "__main__":
    main()
