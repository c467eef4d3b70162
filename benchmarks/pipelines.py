"""Each preset's pipeline on the dev photos, step by step, and its shipped calibration.

    .venv/bin/python benchmarks/pipelines.py --presets fast,default,accurate [--write]

For each preset: the global method alone (its similarity matrix), then the calibrated
probability with verification of the shortlist but no expansion, then with expansion (the
`fused` pipeline). Calibrated rows are cross-validated by landmark (5 folds: every query is
scored by a model that never saw its landmark), and the fit on all photos is reported too.
`--write` saves the all-photo fit as the preset's shipped calibration
(lookalike/data/calibration-<preset>-pairs.json). Since issue 24 the default preset's pair
calibration is selected and written by benchmarks/carryover.py (leave-landmark-out across
landmarks/ and oxford_hard/ together); --write here fits on the dev photos alone. Features and pair verifications go through
the feature cache, so a second run only re-fits.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lookalike.evaluation.evaluate import load_dataset
from lookalike.evaluation.fit_calibration import calibrate, cross_validate, evidence_matrix
from lookalike.evaluation.metrics import retrieval_metrics
from lookalike.features.cache import open_cache
from lookalike.features.extract import extract_features
from lookalike.features.registry import get_method
from lookalike.retrieval.pipeline import Pipeline, ReferenceSet
from lookalike.retrieval.presets import PRESETS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "landmarks" / "manifest.csv"


def row(name: str, metrics: dict, seconds: float | None = None) -> str:
    cells = " | ".join(f"{metrics[key]:.3f}" for key in ("map", "p_at_1", "roc_auc",
                                                            "tpr_at_fpr1"))
    extra = f" | {seconds:.0f}" if seconds is not None else " | "
    return f"| {name} | {cells}{extra} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--presets", default="fast,default,accurate")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="save the shipped calibrations")
    parser.add_argument("--cache", default=None, help="feature cache (default: the user's)")
    args = parser.parse_args()
    paths, labels = load_dataset(args.data)
    cache = open_cache(args.cache)
    print("| pipeline | mAP | P@1 | ROC-AUC | TPR@FPR1% | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.presets.split(","):
        preset = PRESETS[name]
        fused = get_method("fused", preset=name)
        started = time.perf_counter()
        items = extract_features(fused, paths, cache, args.jobs, quiet=True)
        assert not items.errors, items.errors
        global_part, local_part = fused.parts()
        extracted = time.perf_counter() - started
        gallery = ReferenceSet(items.features, global_part)
        similarities = [gallery.index.scores(item.global_feature) for item in items.features]
        import numpy as np

        print(row(f"{name}: {global_part.name} ({global_part.local if hasattr(global_part, 'local') else ''}) alone",
                  retrieval_metrics(np.stack(similarities), labels), extracted), flush=True)
        for expansion in (0, preset.expansion):
            started = time.perf_counter()
            pipeline = Pipeline(global_part, local_part, None, preset.shortlist, expansion,
                                cache)
            evidence = evidence_matrix(items.features, pipeline)
            seconds = time.perf_counter() - started
            step = "+ verification" if expansion == 0 else "+ verification + expansion"
            metrics = retrieval_metrics(cross_validate(evidence, labels), labels)
            print(row(f"{name}: {step} (top {preset.shortlist}, held-out landmarks)", metrics,
                      seconds), flush=True)
        model = calibrate(labels, items.features, pipeline, source="dev photos (manifest.csv)",
                          preset=name)
        print(row(f"{name}: fused, fitted on all dev photos", model.info["fitted"]), flush=True)
        if args.write:
            model.save(preset.calibration_path("pairs"))


if __name__ == "__main__":
    main()
