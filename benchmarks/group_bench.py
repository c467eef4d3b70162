"""How well `lookalike group` finds the landmarks of the dev photos, with the labels hidden.

    nice -n 10 .venv/bin/python benchmarks/group_bench.py --preset default

The photos go to `lookalike.grouping.groups.group_photos` as bare paths, in shuffled order (so the
manifest's landmark order cannot help); the labels are read only afterwards to score the
result. Each ungrouped photo counts as a cluster of its own. Two readings of the distractors:

- strict: every distractor is its own true cluster, so grouping two of them is an error,
  even when they show the same scene (several distractors are frames of one street or room);
- noise: distractors are left out of the scores, which then measure the landmark photos only.

Reported: adjusted Rand index (sklearn), purity (share of photos in the majority label of
their cluster) and inverse purity (share of photos in the cluster holding most of their
label), groups found, wall time from an empty cache (a new temporary file unless --cache is
given) and the load average before and after. `--held-out` scores each photo with a pair
calibration fitted without its landmark (the shipped one was fitted on these very photos).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import networkx as nx
import numpy as np
from sklearn.metrics import adjusted_rand_score

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lookalike.evaluation.evaluate import load_dataset  # noqa: E402
from lookalike.evaluation.fit_calibration import evidence_matrix, landmark_folds, same_landmark  # noqa: E402
from lookalike.evaluation.metrics import DISTRACTOR  # noqa: E402
from lookalike.features.cache import FeatureCache  # noqa: E402
from lookalike.grouping.groups import (  # noqa: E402
    THRESHOLD,
    Group,
    Grouping,
    PairLink,
    confirmed_links,
    group_photos,
    grouping_from_links,
    photo_groups,
    photo_items,
    shortlist_probabilities,
)
from lookalike.retrieval.calibration import fit  # noqa: E402
from lookalike.retrieval.pipeline import PAIR_EVIDENCE  # noqa: E402


def predicted_clusters(grouping: Grouping) -> dict[str, str]:
    """Photo -> cluster name; an ungrouped photo is a cluster of its own."""
    clusters = {photo: f"single:{photo}" for photo in grouping.ungrouped}
    for group in grouping.groups:
        clusters.update((photo, group.name) for photo in group.photos)
    return clusters


def purity(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Share of photos whose cluster's majority label is theirs."""
    members: dict[str, list[str]] = {}
    for label, cluster in zip(truth, predicted):
        members.setdefault(cluster, []).append(label)
    return sum(Counter(labels).most_common(1)[0][1] for labels in members.values()) / len(truth)


def scores(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    return {"ari": adjusted_rand_score(truth, predicted), "purity": purity(truth, predicted),
            "inverse_purity": purity(predicted, truth), "photos": len(truth)}


def evaluate(grouping: Grouping, label_of: dict[str, str]) -> dict[str, dict[str, float]]:
    clusters = predicted_clusters(grouping)
    photos = [photo for photo in grouping.photos if photo in clusters]
    strict_truth = [label_of[p] if label_of[p] != DISTRACTOR else f"distractor:{p}"
                    for p in photos]
    landmark_photos = [p for p in photos if label_of[p] != DISTRACTOR]
    return {
        "strict": scores(strict_truth, [clusters[p] for p in photos]),
        "noise": scores([label_of[p] for p in landmark_photos],
                        [clusters[p] for p in landmark_photos]),
    }


def held_out_calibrations(features, pipeline, label_of: dict[str, str]):
    """Per photo position, a pair calibration fitted without its landmark (folds of whole
    landmarks, as `lookalike calibrate` cross-validates): the figure for landmarks the shipped
    calibration has never seen."""
    labels = [label_of[path] for path in features.paths]
    evidence = evidence_matrix(features.features, pipeline, quiet=False)
    fold, same = landmark_folds(labels), same_landmark(labels)
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    models = {}
    for k in sorted(set(fold)):
        train = fold != k
        mask = train[:, None] & train[None, :] & off_diagonal
        models[k] = fit(evidence[mask], same[mask], PAIR_EVIDENCE)
    return lambda position: models[fold[position]]


def group_held_out(paths: Sequence[str], label_of: dict[str, str], preset: str, cache,
                   jobs: int, threshold: float) -> Grouping:
    """As `group_photos`, with `held_out_calibrations` instead of the shipped calibration."""
    features, pipeline = photo_items(paths, preset, cache, jobs, quiet=False)
    calibration_of = held_out_calibrations(features, pipeline, label_of)
    pairs = shortlist_probabilities(features.features, pipeline, False, calibration_of)
    links = confirmed_links(*pairs, threshold)
    return grouping_from_links(features.paths, links, features.errors, preset, threshold)


def one_sided_links(probabilities, matches, similarities, threshold: float) -> list[PairLink]:
    """The rule measured against: a pair is linked when either photo's ranking gives the other
    at least `threshold` (the higher direction counts)."""
    best: dict[tuple[int, int], float] = {}
    for (i, j), probability in probabilities.items():
        pair = (min(i, j), max(i, j))
        best[pair] = max(best.get(pair, 0.0), probability)
    return [PairLink(a, b, p, similarities.get((a, b), similarities.get((b, a))),
                     matches.get((a, b)) or matches[b, a])
            for (a, b), p in best.items() if p >= threshold]


def louvain_grouping(photos, links, errors) -> Grouping:
    """Louvain communities (networkx, resolution 1) of the one-sided graph, weighted by
    probability: the community-detection alternative."""
    graph = nx.Graph()
    graph.add_nodes_from(range(len(photos)))
    graph.add_weighted_edges_from((link.a, link.b, link.probability) for link in links)
    communities = nx.community.louvain_communities(graph, weight="weight", seed=0)
    groups = [Group(f"community-{n}", [photos[p] for p in sorted(members)])
              for n, members in enumerate(communities) if len(members) > 1]
    loose = [photos[next(iter(m))] for m in communities if len(m) == 1]
    return Grouping(groups, loose, errors, list(links), list(photos))


def compare_rules(paths, label_of, preset, cache, jobs, threshold) -> list[dict]:
    """ARI and purity of each way of turning the shortlist probabilities into groups, with
    the shipped and with held-out calibrations (features and verifications from the cache)."""
    features, pipeline = photo_items(paths, preset, cache, jobs, quiet=True)
    photos, errors = features.paths, features.errors
    rows = []
    for calibration, calibration_of in (
            ("shipped", None), ("held out", held_out_calibrations(features, pipeline, label_of))):
        pairs = shortlist_probabilities(features.features, pipeline, True, calibration_of)
        both, either = confirmed_links(*pairs, threshold), one_sided_links(*pairs, threshold)
        rules = {
            "both directions, weak bridges cut (lookalike group)":
                grouping_from_links(photos, both, errors),
            "both directions, no bridge cut": grouping_from_links_uncut(photos, both, errors),
            "either direction, weak bridges cut": grouping_from_links(photos, either, errors),
            "either direction, no bridge cut": grouping_from_links_uncut(photos, either, errors),
            "Louvain on the either-direction graph": louvain_grouping(photos, either, errors),
        }
        for rule, grouping in rules.items():
            numbers = evaluate(grouping, label_of)
            rows.append({"calibration": calibration, "rule": rule,
                         "ari": round(numbers["strict"]["ari"], 3),
                         "purity": round(numbers["strict"]["purity"], 3),
                         "ari_noise": round(numbers["noise"]["ari"], 3),
                         "groups": len(grouping.groups)})
    return rows


def grouping_from_links_uncut(photos, links, errors) -> Grouping:
    """Plain connected components: every link holds, however weak."""
    members = [m for m in photo_groups(len(photos), links, strong=0.0) if len(m) > 1]
    groups = [Group(f"component-{n}", [photos[p] for p in m]) for n, m in enumerate(members)]
    grouped = {photo for group in groups for photo in group.photos}
    return Grouping(groups, [p for p in photos if p not in grouped], errors, list(links),
                    list(photos))


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished workers."""
    own, workers = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                         resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/landmarks"))
    parser.add_argument("--preset", default="default")
    parser.add_argument("--cache", help="feature cache (default: a new temporary file)")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--threshold", type=float, default=THRESHOLD)
    parser.add_argument("--seed", type=int, default=0, help="shuffle of the input order")
    parser.add_argument("--held-out", action="store_true",
                        help="probabilities from calibrations fitted without each photo's "
                             "landmark, instead of the shipped one (fitted on these photos)")
    parser.add_argument("--compare-rules", action="store_true",
                        help="also measure the other grouping rules on the same probabilities")
    parser.add_argument("--json", metavar="OUT.json", help="also write the figures here")
    args = parser.parse_args(argv)

    paths, labels = load_dataset(args.data)
    label_of = dict(zip(paths, labels))
    shuffled = list(paths)
    random.Random(args.seed).shuffle(shuffled)
    with tempfile.TemporaryDirectory() as scratch:
        cache = FeatureCache(args.cache or os.path.join(scratch, "cache.sqlite"))
        load_before = os.getloadavg()
        start, cpu_start = time.perf_counter(), cpu_seconds()
        if args.held_out:
            grouping = group_held_out(shuffled, label_of, args.preset, cache, args.jobs,
                                      args.threshold)
        else:
            grouping = group_photos(shuffled, preset=args.preset, cache=cache, jobs=args.jobs,
                                    quiet=False, threshold=args.threshold)
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
        load_after = os.getloadavg()
        rules = compare_rules(shuffled, label_of, args.preset, cache, args.jobs,
                              args.threshold) if args.compare_rules else []
        cache.close()
    result = {"preset": args.preset, "threshold": args.threshold, "held_out": args.held_out,
              "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
              "empty_cache": args.cache is None, "groups": len(grouping.groups),
              "ungrouped": len(grouping.ungrouped), "errors": len(grouping.errors),
              "load_before": [round(x, 2) for x in load_before],
              "load_after": [round(x, 2) for x in load_after], **evaluate(grouping, label_of)}
    for reading in ("strict", "noise"):
        numbers = result[reading]
        print(f"{reading:>6}: ARI {numbers['ari']:.3f}  purity {numbers['purity']:.3f}  "
              f"inverse purity {numbers['inverse_purity']:.3f}  ({numbers['photos']} photos)")
    print(f"{result['groups']} groups, {result['ungrouped']} ungrouped, {seconds:.0f} s "
          f"(CPU {cpu:.0f} s) "
          f"({'empty cache' if args.cache is None else 'cache ' + args.cache}), load "
          f"{load_before[0]:.2f} -> {load_after[0]:.2f}")
    for group in grouping.groups:
        print(f"  {group.name}: " + ", ".join(f"{label} x{count}" for label, count in
                                             Counter(label_of[p] for p in group.photos)
                                             .most_common()))
    if rules:
        result["rules"] = rules
        print("| calibration | rule | ARI | purity | ARI, distractors as noise | groups |")
        print("|---|---|---:|---:|---:|---:|")
        for row in rules:
            print(f"| {row['calibration']} | {row['rule']} | {row['ari']:.3f} | "
                  f"{row['purity']:.3f} | {row['ari_noise']:.3f} | {row['groups']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
