"""Does `lookalike train` help? Stock vs adapted AugNet under the evaluation protocol.

    nice -n 10 .venv/bin/python benchmarks/train_bench.py --data ../shared/data/landmarks \
        [--out out/train_bench] [--ablations] [--reuse]

No labels are used for training; they only score the result. Three trainings share one
preparation (the frozen network's feature maps and the verified pairs of all photos):
- all: trained on every dev photo, evaluated on every dev photo (adapting to one's collection);
- A->B / B->A: the landmarks are split in two halves (alternately, in name order); trained on
  half A's photos plus the distractors, evaluated on half B's photos plus the distractors (the
  landmarks were never seen), and the other way round.
Embeddings are computed from the cached feature maps (`lookalike.training.train.embed`, which
tests/test_train.py checks against the full network); mAP etc. come from
`lookalike.evaluation.metrics.retrieval_metrics` with score = -L2, as `lookalike evaluate` ranks augnet.
The time of preparation + training on all photos is the "150 photos in 20 minutes" figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np
import torch

from lookalike.evaluation.evaluate import load_dataset
from lookalike.evaluation.metrics import DISTRACTOR, retrieval_metrics
from lookalike.features.cache import open_cache
from lookalike.training.train import (
    Prepared,
    TrainSettings,
    atomic_save,
    base_model,
    embed,
    fit,
    prepare,
    save_model,
)


def scores(vectors: np.ndarray) -> np.ndarray:
    """-L2 distance, augnet's default score."""
    v = vectors.astype(np.float64)
    squared = (v * v).sum(1)[:, None] + (v * v).sum(1)[None, :] - 2.0 * v @ v.T
    return -np.sqrt(np.maximum(squared, 0.0))


def metrics_on(vectors: np.ndarray, labels: list[str], keep: list[int]) -> dict:
    result = retrieval_metrics(scores(vectors[keep]), [labels[i] for i in keep])
    return {key: result[key] for key in ("queries", "map", "p_at_1", "roc_auc")}


def without_views(prepared: Prepared) -> Prepared:
    return dataclasses.replace(prepared, views=[[] for _ in prepared.views])


def without_pairs(prepared: Prepared) -> Prepared:
    return dataclasses.replace(prepared, pairs=[])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/landmarks")
    parser.add_argument("--out", default="out/train_bench")
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true",
                        help="reuse OUT/prepared.pt (and its timing) from an earlier run")
    parser.add_argument("--ablations", action="store_true",
                        help="also train without augmented copies and without verified pairs")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    manifest = os.path.join(args.data, "manifest.csv")
    paths, labels = load_dataset(manifest if os.path.isfile(manifest) else args.data)
    settings = TrainSettings(epochs=args.epochs, seed=args.seed)
    print(f"{len(paths)} photos, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    prep_file = os.path.join(args.out, "prepared.pt")
    if args.reuse and os.path.isfile(prep_file):  # the slow part, kept from an earlier run
        saved = torch.load(prep_file, weights_only=False)
        prepared, prep_seconds, prep_cpu = saved["prepared"], saved["seconds"], saved["cpu"]
    else:
        start, cpu = time.monotonic(), time.process_time()
        prepared = prepare(paths, settings, open_cache(None), jobs=1)
        prep_seconds, prep_cpu = time.monotonic() - start, time.process_time() - cpu
        atomic_save({"prepared": prepared, "seconds": prep_seconds, "cpu": prep_cpu}, prep_file)
    labels = [labels[paths.index(p)] for p in prepared.paths]
    same = sum(labels[p.a] == labels[p.b] != DISTRACTOR for p in prepared.pairs)
    print(f"prepared in {prep_seconds:.0f} s ({prep_cpu:.0f} CPU s): {len(prepared.pairs)} verified pairs, "
          f"{same} of them the same landmark by the labels")

    landmarks = sorted(set(labels) - {DISTRACTOR})
    halves = {"A": set(landmarks[0::2]), "B": set(landmarks[1::2])}
    every = list(range(len(labels)))
    subset = {name: [i for i in every if labels[i] in half or labels[i] == DISTRACTOR]
              for name, half in halves.items()}
    stock = embed(prepared, base_model().pre.fc)
    report: dict = {"photos": len(labels), "pairs": len(prepared.pairs), "pairs_same": same,
                    "prepare_s": prep_seconds, "prepare_cpu_s": prep_cpu, "halves": {k: sorted(v) for k, v in halves.items()},
                    "settings": dataclasses.asdict(settings), "runs": {}}
    variants = {"pairs+views": prepared}
    if args.ablations:
        variants["pairs only"] = without_views(prepared)
        variants["views only"] = without_pairs(prepared)
    for variant, data in variants.items():
        for run, train_on, test_on in [("all", every, every), ("A->B", subset["A"], subset["B"]),
                                       ("B->A", subset["B"], subset["A"])]:
            start, cpu = time.monotonic(), time.process_time()
            head, losses = fit(data, settings, train_on, quiet=True)
            seconds, fit_cpu = time.monotonic() - start, time.process_time() - cpu
            before = metrics_on(stock, labels, test_on)
            after = metrics_on(embed(prepared, head), labels, test_on)
            report["runs"][f"{variant} {run}"] = {
                "train_photos": len(train_on), "fit_s": seconds, "fit_cpu_s": fit_cpu, "loss": [losses[0], losses[-1]],
                "stock": before, "adapted": after}
            print(f"{variant:12s} {run:5s} train {len(train_on):3d} photos {seconds:5.0f} s  "
                  f"loss {losses[0]:.3f}->{losses[-1]:.3f}  mAP {before['map']:.3f} -> "
                  f"{after['map']:.3f} ({after['map'] - before['map']:+.3f})  P@1 "
                  f"{before['p_at_1']:.3f} -> {after['p_at_1']:.3f}", flush=True)
            if variant == "pairs+views" and run == "all":
                total, total_cpu = prep_seconds + seconds, prep_cpu + fit_cpu
                report["train_all_s"], report["train_all_cpu_s"] = total, total_cpu
                print(f"training on all {len(labels)} photos took {total / 60:.1f} min "
                      f"({total_cpu / 60:.1f} CPU min, load average {os.getloadavg()[0]:.1f})")
                save_model(head, os.path.join(args.out, "model.pt"),
                           {"settings": dataclasses.asdict(settings), "losses": losses})
    with open(os.path.join(args.out, "train_bench.json"), "w") as handle:
        json.dump(report, handle, indent=1)
    print(f"wrote {args.out}/train_bench.json and {args.out}/model.pt "
          f"(check: lookalike evaluate {args.data} -m augnet --weights {args.out}/model.pt)")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
