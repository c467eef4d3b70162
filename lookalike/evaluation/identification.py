"""Evaluating `identify`: the open-set test (leave-one-out) and the fit of its calibration.

Each labelled photo is queried against a gallery of all the other labelled photos (its own
landmark's other photos included); each distractor is queried against all labelled photos and
must come back `unknown`. The two stages run exactly as in `Identifier` (same shortlist,
same verification, same evidence), on features computed once through the cache.

The logistic calibration is fit on the evidence of these queries. The reported numbers use
cross-fitted probabilities (each query scored by a model fit on the other folds), so the
accuracy and false-accept rate are not measured on the data the model was fit on.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.gallery.answers import UNKNOWN
from lookalike.imaging.loading import DEFAULT_MAX_PIXELS
from lookalike.matching.geometry import Match
from lookalike.retrieval.calibration import fit, method_spec, sigmoid
from lookalike.retrieval.pipeline import (
    IDENTIFY_EVIDENCE,
    Item,
    LandmarkCandidate,
    Pipeline,
    ReferenceSet,
    landmark_candidates,
)

DISTRACTOR = "distractor"
TARGET_FAR = 0.05


@dataclass
class QueryOutcome:
    photo: str
    label: str
    candidates: list[LandmarkCandidate]  # evidence of the verified candidates


def leave_one_out(paths: Sequence[str], labels: Sequence[str], preset: str | None = None,
                  cache=None, jobs: int = 1, quiet: bool = True, negatives: bool = False,
                  methods: tuple[str | None, str | None] = (None, None),
                  max_pixels: int = DEFAULT_MAX_PIXELS
                  ) -> tuple[list[QueryOutcome], dict[str, str], Pipeline]:
    """Run the two identify stages for every photo against all other labelled photos (and,
    with `negatives`, the other distractors as the index's negatives)."""
    from lookalike.engines.local import local_extractor
    from lookalike.gallery.folders import NEGATIVES
    from lookalike.gallery.roles import pipeline_methods
    from lookalike.retrieval.presets import get_preset

    chosen = get_preset(preset)
    global_method, local_method = pipeline_methods(chosen.name, *methods)
    extract = local_extractor(cache, jobs, quiet, max_pixels)
    globals_, locals_, errors = extract(list(paths), global_method, local_method)
    keys = _content_keys(paths, cache)
    ok = [p for p in paths if p not in errors]
    label_of = dict(zip(paths, labels))
    items = {p: Item(global_method.decode(globals_[p]), local_method.decode(locals_[p]),
                     keys.get(p)) for p in ok}
    references = [p for p in ok if negatives or label_of[p] != DISTRACTOR]
    gallery = ReferenceSet([items[p] for p in references], global_method)
    position = {p: i for i, p in enumerate(references)}
    landmark_of = [NEGATIVES if label_of[p] == DISTRACTOR else label_of[p] for p in references]
    pipeline = Pipeline(global_method, local_method, None, store=cache)
    outcomes = []
    started = time.perf_counter()
    for i, photo in enumerate(ok):
        candidates = landmark_candidates(pipeline, items[photo], gallery, landmark_of,
                                         chosen.verify_landmarks, chosen.verify_per_landmark,
                                         exclude=position.get(photo), negative=NEGATIVES)
        for candidate in candidates:  # keep memory small: only the counts are needed
            if candidate.match is not None:
                candidate.match = Match.from_counts(candidate.match.counts())
        outcomes.append(QueryOutcome(photo, label_of[photo], candidates))
        if not quiet and (i + 1) % 20 == 0:
            print(f"  {i + 1}/{len(ok)} queries, {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)
    return outcomes, errors, pipeline


def _content_keys(paths: Sequence[str], cache) -> dict[str, str]:
    """The cache's content key of each readable file, so pair results are cached."""
    if cache is None or not hasattr(cache, "get_many"):
        return {}
    from lookalike.features.cache import content_hash
    from lookalike.imaging.loading import ImageLoadError, read_bytes

    keys = {}
    for path in paths:
        try:
            keys[path] = content_hash(read_bytes(path))
        except ImageLoadError:
            pass
    return keys


def evidence_rows(outcomes: Sequence[QueryOutcome]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, query index) over every verified candidate of every query."""
    xs, ys, qs = [], [], []
    for q, outcome in enumerate(outcomes):
        for candidate in outcome.candidates:
            xs.append(candidate.evidence())
            ys.append(int(candidate.landmark == outcome.label))
            qs.append(q)
    return (np.array(xs, np.float64).reshape(-1, len(IDENTIFY_EVIDENCE)), np.array(ys, bool),
            np.array(qs))


def cross_fitted_probabilities(outcomes: Sequence[QueryOutcome], folds: int = 5, seed: int = 0,
                               added_log_odds: Sequence[dict[str, float]] | None = None
                               ) -> list[list[tuple[str, float]]]:
    """Per query, (landmark, probability) of each candidate from a model not fit on it.

    `added_log_odds` (per query, {landmark: log-odds}) is evidence the image model does not
    see, added to its logit as `identify` adds it: the signboard text of `--use-text`."""
    x, y, q = evidence_rows(outcomes)
    rng = np.random.default_rng(seed)
    fold_of_query = rng.permutation(len(outcomes)) % folds
    logits = np.full(len(y), -np.inf)
    for fold in range(folds):
        test = fold_of_query[q] == fold
        if len(set(y[~test].tolist())) < 2 or not test.any():
            continue  # too few queries to fit: those candidates keep probability 0
        logits[test] = fit(x[~test], y[~test], IDENTIFY_EVIDENCE, monotone=True).logit(x[test])
    result: list[list[tuple[str, float]]] = [[] for _ in outcomes]
    position = 0
    for index, outcome in enumerate(outcomes):
        added = added_log_odds[index] if added_log_odds is not None else {}
        for candidate in outcome.candidates:
            logit = logits[position] + added.get(candidate.landmark, 0.0)
            result[index].append((candidate.landmark, float(sigmoid(logit))))
            position += 1
        result[index].sort(key=lambda item: -item[1])
    return result


def dataset_landmark_names(dataset: str | os.PathLike, labels: Sequence[str]
                           ) -> dict[str, list[str]]:
    """Each landmark's names from DATASET/<label>/landmark.json, as `index build` reads them
    (landmarks without one are left out)."""
    from lookalike.gallery.folders import read_landmark_json
    from lookalike.ocr.evidence import landmark_names

    root = Path(dataset).parent if Path(dataset).is_file() else Path(dataset)
    names = {}
    for label in sorted(set(labels) - {DISTRACTOR}):
        found = landmark_names(read_landmark_json(root / label, label).names)
        if found:
            names[label] = found
    return names


def dataset_inscriptions(dataset: str | os.PathLike, labels: Sequence[str]
                         ) -> dict[str, list[str]]:
    """Each landmark's `inscriptions` from DATASET/<label>/landmark.json (as `index build`)."""
    from lookalike.gallery.folders import read_landmark_json

    root = Path(dataset).parent if Path(dataset).is_file() else Path(dataset)
    found = {}
    for label in sorted(set(labels) - {DISTRACTOR}):
        inscriptions = read_landmark_json(root / label, label).inscriptions
        if inscriptions:
            found[label] = list(inscriptions)
    return found


def text_features(outcomes: Sequence[QueryOutcome], cache=None, jobs: int = 1,
                  quiet: bool = True) -> dict[str, dict]:
    """Every photo's `text` feature (OCR through the cache, so a second run reads nothing)."""
    from lookalike.features.extract import extract_features
    from lookalike.features.registry import get_method

    text = extract_features(get_method("text"), [o.photo for o in outcomes], cache, jobs, quiet)
    return dict(zip(text.paths, text.features))


def text_log_odds_per_query(outcomes: Sequence[QueryOutcome], names: dict[str, list[str]],
                            cache=None, jobs: int = 1, quiet: bool = True,
                            feature_of: dict[str, dict] | None = None
                            ) -> list[dict[str, float]]:
    """What each query's signboard text adds to each landmark by its names."""
    from lookalike.ocr.evidence import gallery_text_log_odds

    if feature_of is None:
        feature_of = text_features(outcomes, cache, jobs, quiet)
    return [gallery_text_log_odds(feature_of.get(o.photo), names) for o in outcomes]


def learned_log_odds_per_query(outcomes: Sequence[QueryOutcome], feature_of: dict[str, dict],
                               inscriptions: dict[str, list[str]], negatives: bool = False,
                               names: dict[str, list[str]] | None = None
                               ) -> list[dict[str, float]]:
    """What each query's text adds to each landmark by the text learned from the landmark's
    references, as `index build --read-text` learns it, leaving the query out: its own
    landmark's phrases come from its other photos only (with `negatives`, the distractors
    learn as the index's negatives do), plus landmark.json's inscriptions; the `names`
    compete for each reading as `identify` has them do."""
    from lookalike.gallery.folders import NEGATIVES
    from lookalike.gallery.learned_text import gallery_phrases
    from lookalike.ocr.learned import gallery_learned_log_odds, learn_phrases, reference_lines

    def landmark(label: str) -> str | None:
        if label != DISTRACTOR:
            return label
        return NEGATIVES if negatives else None

    members: dict[str, list[str]] = {}
    for outcome in outcomes:
        owner = landmark(outcome.label)
        if owner is not None:
            members.setdefault(owner, []).append(outcome.photo)
    lines = {photo: reference_lines(feature_of.get(photo))
             for photos in members.values() for photo in photos}
    learned = {owner: learn_phrases([lines[p] for p in photos])
               for owner, photos in members.items()}
    added = []
    for outcome in outcomes:
        own = landmark(outcome.label)
        phrases = dict(learned)
        if own is not None:
            others = [lines[p] for p in members[own] if p != outcome.photo]
            phrases[own] = learn_phrases(others) if others else []
        stored = {owner: (inscriptions.get(owner, []), found) for owner, found in phrases.items()}
        for owner, written in inscriptions.items():
            stored.setdefault(owner, (written, []))
        added.append(gallery_learned_log_odds(feature_of.get(outcome.photo),
                                              gallery_phrases(stored), names))
    return added


def strongest(*added: Sequence[dict[str, float]]) -> list[dict[str, float]]:
    """Per query and landmark, the largest log-odds of several kinds of text evidence (one
    reading is one piece of evidence, so they are not summed), as `identify` takes it."""
    out = []
    for per_query in zip(*added):
        merged: dict[str, float] = {}
        for one in per_query:
            for landmark, value in one.items():
                merged[landmark] = max(value, merged.get(landmark, 0.0))
        out.append(merged)
    return out


def open_set_curve(outcomes: Sequence[QueryOutcome], probabilities: Sequence[Sequence[tuple]]
                   ) -> list[dict[str, float]]:
    """Top-1 accuracy on landmark photos and false-accept rate on distractors per threshold."""
    best = [(p[0] if p else (UNKNOWN, 0.0)) for p in probabilities]
    landmark_q = [i for i, o in enumerate(outcomes) if o.label != DISTRACTOR]
    distractor_q = [i for i, o in enumerate(outcomes) if o.label == DISTRACTOR]
    # Exact probabilities (a rounded one can exclude its own query) and 0.5 itself.
    thresholds = sorted({0.0, 0.5, 1.0, *(float(p) for _, p in best)})
    curve = []
    for t in thresholds:
        correct = sum(best[i][1] >= t and best[i][0] == outcomes[i].label for i in landmark_q)
        wrong = sum(best[i][1] >= t and best[i][0] != outcomes[i].label for i in landmark_q)
        accepted = sum(best[i][1] >= t for i in distractor_q)
        curve.append({
            "threshold": t,
            "top1_accuracy": correct / max(1, len(landmark_q)),
            "wrong_landmark_rate": wrong / max(1, len(landmark_q)),
            "false_accept_rate": accepted / max(1, len(distractor_q)),
        })
    return curve


def operating_point(curve: Sequence[dict[str, float]], far: float = TARGET_FAR) -> dict[str, float]:
    """The lowest threshold whose false-accept rate is at most `far` (best accuracy there)."""
    allowed = [point for point in curve if point["false_accept_rate"] <= far]
    return max(allowed, key=lambda p: (p["top1_accuracy"], -p["threshold"]))


def evaluate_identify(dataset: str | os.PathLike, outdir: str | os.PathLike | None = None,
                      cache=None, jobs: int = 1, quiet: bool = True, preset: str | None = None,
                      fit_calibration: str | os.PathLike | None = None,
                      negatives: bool = False,
                      methods: tuple[str | None, str | None] = (None, None),
                      use_text: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
                      ) -> dict[str, Any]:
    """Leave-one-out open-set evaluation; writes results, the curve and a figure to `outdir`.

    With `use_text`, each query's signboard text (OCR) adds its fitted log-odds to the
    landmarks it names, as `identify --use-text` does: by the landmarks' names and
    inscriptions (DATASET/<label>/landmark.json) and by the text learned from the other
    photos of each landmark (leave-one-out, as `index build --read-text` learns it). The
    summary then reports the image evidence alone (`image_only`), with names only
    (`names_only`, the evidence before learned text), with learned text and inscriptions only
    (`learned_only`), beside the answers with both, and what text adds."""
    from lookalike.evaluation.evaluate import DatasetError, load_dataset

    paths, labels = load_dataset(dataset)
    names = dataset_landmark_names(dataset, labels) if use_text else {}
    inscriptions = dataset_inscriptions(dataset, labels) if use_text else {}
    started = time.perf_counter()
    outcomes, errors, pipeline = leave_one_out(paths, labels, preset, cache, jobs, quiet,
                                               negatives, methods, max_pixels)
    x, y, _ = evidence_rows(outcomes)
    if len(set(y.tolist())) < 2:
        raise DatasetError(f"{dataset}: too few photos per landmark to evaluate identification "
                           "(no query found its landmark among its candidates)")
    probabilities = cross_fitted_probabilities(outcomes)
    curve = open_set_curve(outcomes, probabilities)
    image_only = operating_points(curve)
    summary_text: dict[str, Any] = {}
    if use_text:
        feature_of = text_features(outcomes, cache, jobs, quiet)
        by_name = text_log_odds_per_query(outcomes, names, feature_of=feature_of)
        learned = learned_log_odds_per_query(outcomes, feature_of, inscriptions, negatives,
                                             names)
        added = strongest(by_name, learned)
        summary_text = {"image_only": image_only,
                        "text_names_own_landmark": text_share(outcomes, added),
                        "text_sources": {}}
        for source, extra in (("names_only", by_name), ("learned_only", learned)):
            curve = open_set_curve(outcomes, cross_fitted_probabilities(
                outcomes, added_log_odds=extra))
            summary_text["text_sources"][source] = {
                **operating_points(curve), "raised_own_landmark": text_share(outcomes, extra),
                "raised_a_wrong_landmark": wrong_share(outcomes, extra)}
        summary_text["raised_a_wrong_landmark"] = wrong_share(outcomes, added)
        probabilities = cross_fitted_probabilities(outcomes, added_log_odds=added)
        curve = open_set_curve(outcomes, probabilities)
    points = operating_points(curve)
    methods = {"global": method_spec(pipeline.global_method),
               "local": method_spec(pipeline.local_method)}
    calibration = fit(x, y, IDENTIFY_EVIDENCE, methods,
                      float(image_only[f"at_far_{TARGET_FAR:g}"]["threshold"]),
                      info={"fitted_on": f"{dataset}: leave-one-out, {len(outcomes)} queries",
                            "preset": preset or ""}, monotone=True)
    summary = {
        "dataset": str(dataset),
        "preset": preset,
        "negatives_in_gallery": negatives,
        "use_text": use_text,
        "queries": len(outcomes),
        "landmark_queries": sum(o.label != DISTRACTOR for o in outcomes),
        "distractor_queries": sum(o.label == DISTRACTOR for o in outcomes),
        **points,
        **summary_text,
        "shortlist_top1_accuracy": float(np.mean([
            bool(o.candidates) and max(o.candidates, key=lambda c: c.similarity).landmark == o.label
            for o in outcomes if o.label != DISTRACTOR])),
        "calibration": dataclasses.asdict(calibration),
        "seconds": round(time.perf_counter() - started, 1),
        "errors": errors,
    }
    if fit_calibration:
        calibration.save(fit_calibration)
    if outdir is not None:
        write_outputs(Path(outdir), outcomes, probabilities, curve, summary)
    return summary


def operating_points(curve: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """The operating points at threshold 0.5 and at the target FAR."""
    return {"at_threshold_0.5": next(p for p in curve if p["threshold"] >= 0.5),
            f"at_far_{TARGET_FAR:g}": operating_point(curve)}


def text_share(outcomes: Sequence[QueryOutcome], added: Sequence[dict[str, float]]
               ) -> float:
    """The share of landmark photos whose text raised their own landmark (log-odds > 0)."""
    own = [a.get(o.label, 0.0) > 0 for o, a in zip(outcomes, added) if o.label != DISTRACTOR]
    return float(np.mean(own)) if own else 0.0


def wrong_share(outcomes: Sequence[QueryOutcome], added: Sequence[dict[str, float]]) -> float:
    """The share of all photos (distractors too) whose text raised a landmark that is not
    theirs among their candidates."""
    wrong = [any(value > 0 and landmark != o.label for landmark, value in a.items()
                 if landmark in {c.landmark for c in o.candidates})
             for o, a in zip(outcomes, added)]
    return float(np.mean(wrong)) if wrong else 0.0


def write_outputs(outdir: Path, outcomes, probabilities, curve, summary) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    threshold = summary[f"at_far_{TARGET_FAR:g}"]["threshold"]
    with open(outdir / "identify_results.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["photo", "label", "answer", "probability", "correct", "candidates"])
        for outcome, probs in zip(outcomes, probabilities):
            best = probs[0] if probs else (UNKNOWN, 0.0)
            answer = best[0] if best[1] >= threshold else UNKNOWN
            expected = outcome.label if outcome.label != DISTRACTOR else UNKNOWN
            writer.writerow([outcome.photo, outcome.label, answer, f"{best[1]:.4f}",
                             int(answer == expected),
                             json.dumps([[lm, round(p, 4)] for lm, p in probs])])
    with open(outdir / "identify_curve.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(curve[0]))
        writer.writeheader()
        writer.writerows(curve)
    (outdir / "identify_summary.json").write_text(json.dumps(summary, indent=2) + "\n",
                                                  encoding="utf-8")
    plot_curve(outdir / "identify_curve.png", outcomes, probabilities, curve, threshold)


def plot_curve(path: Path, outcomes, probabilities, curve, threshold: float) -> None:
    """Accuracy against false-accept rate, and a reliability diagram of the probabilities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    far = [p["false_accept_rate"] for p in curve]
    acc = [p["top1_accuracy"] for p in curve]
    left.plot(far, acc, drawstyle="steps-post", color="tab:blue")
    chosen = next(p for p in curve if p["threshold"] == threshold)
    left.scatter([chosen["false_accept_rate"]], [chosen["top1_accuracy"]], color="tab:red",
                 zorder=3, label=f"threshold {threshold:.2f}")
    left.axvline(TARGET_FAR, color="gray", ls=":", lw=1)
    left.set_xlabel("false-accept rate on distractors")
    left.set_ylabel("top-1 accuracy on landmark photos")
    left.set_title("open-set identify (leave-one-out)")
    left.set_xlim(0, 1)
    left.set_ylim(0, 1.02)
    left.legend(loc="lower right")
    predicted, observed = [], []
    for outcome, probs in zip(outcomes, probabilities):
        for landmark, p in probs:
            predicted.append(p)
            observed.append(float(landmark == outcome.label))
    predicted, observed = np.array(predicted), np.array(observed)
    bins = np.linspace(0, 1, 11)
    centres, rates, counts = [], [], []
    for lo, hi in itertools.pairwise(bins):
        inside = (predicted >= lo) & (predicted < hi if hi < 1 else predicted <= hi)
        if inside.any():
            centres.append(predicted[inside].mean())
            rates.append(observed[inside].mean())
            counts.append(int(inside.sum()))
    right.plot([0, 1], [0, 1], color="gray", ls=":", lw=1)
    right.plot(centres, rates, marker="o", color="tab:green")
    for c, r, n in zip(centres, rates, counts):
        right.annotate(str(n), (c, r), textcoords="offset points", xytext=(4, -10), fontsize=7)
    right.set_xlabel("predicted probability (cross-fitted)")
    right.set_ylabel("fraction that were the right landmark")
    right.set_title("calibration (counts per bin)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def markdown_summary(summary: dict[str, Any]) -> str:
    lines = ["| evidence | operating point | threshold | top-1 accuracy | wrong landmark | "
             "false accepts |", "|---|---|---|---|---|---|"]
    rows = [("image + text" if summary.get("use_text") else "image", summary)]
    if "image_only" in summary:
        rows.insert(0, ("image", summary["image_only"]))
    sources = summary.get("text_sources", {})
    if "names_only" in sources:
        rows.insert(1, ("image + names (before learned text)", sources["names_only"]))
    if "learned_only" in sources:
        rows.insert(2, ("image + learned text and inscriptions", sources["learned_only"]))
    for evidence, points in rows:
        for key in ("at_threshold_0.5", f"at_far_{TARGET_FAR:g}"):
            p = points[key]
            lines.append(f"| {evidence} | {key} | {p['threshold']:.3f} | "
                         f"{p['top1_accuracy']:.3f} | {p['wrong_landmark_rate']:.3f} | "
                         f"{p['false_accept_rate']:.3f} |")
    if "text_names_own_landmark" in summary:
        lines.append(f"\ntext raised the photo's own landmark for "
                     f"{summary['text_names_own_landmark']:.0%} of the landmark photos "
                     f"(names: {sources.get('names_only', {}).get('raised_own_landmark', 0):.0%}, "
                     f"learned text: "
                     f"{sources.get('learned_only', {}).get('raised_own_landmark', 0):.0%}), "
                     f"and a wrong candidate for "
                     f"{summary.get('raised_a_wrong_landmark', 0):.0%} of all photos (names: "
                     f"{sources.get('names_only', {}).get('raised_a_wrong_landmark', 0):.0%}, "
                     f"learned text: "
                     f"{sources.get('learned_only', {}).get('raised_a_wrong_landmark', 0):.0%})")
    return "\n".join(lines)
