"""Find the landmarks in an unlabelled photo collection: groups of photos by verified similarity.

Why this way: comparing every pair with the local matcher costs N² verifications (10 ms a pair
with MNN + MAGSAC++, 0.25 s with LightGlue), while the one retrieval pipeline
(`lookalike.retrieval.pipeline.Pipeline`) already turns a photo into calibrated probabilities against a
gallery by verifying only its global shortlist. So each photo is ranked against the whole
collection (N x shortlist verifications, each pair cached), and:

1. **edges**: two photos are linked when *each*, ranked against the collection, gives the
   other a probability of at least `threshold` (0.5: the calibration's even odds). Asking both
   directions is the guard against chaining: a photo whose verification is weak or that only
   one side shortlists does not join two landmarks. On the dev photos a one-sided link at 0.5
   merged Magdalen Tower with Sacré-Cœur through a single pair; the two-sided link did not.
2. **groups**: connected components of that graph; a component held together by a single
   bridge between two parts of two photos or more is cut there unless the bridge is nearly
   certain (`BRIDGE_PROBABILITY`), so one weak pair never merges two groups.
3. **near-duplicates** inside a group: pairs of the same shot (global similarity at least
   `NEAR_DUPLICATE_SIMILARITY`, far above any two distinct photos of the dev set, which stay
   below 0.25, and a homography whose inliers spread over `NEAR_DUPLICATE_SPREAD` of the 64 grid
   cells in both photos); each set keeps one photo (`photo_to_keep`).

Measured on the dev photos with the labels hidden: `benchmarks/group_bench.py`,
docs/benchmarks.md. Louvain communities on the same graph measured worse (ARI 0.64-0.76
against 0.91): they merge small landmarks and distractors into the big groups.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Callable, Sequence

import networkx as nx
import numpy as np

from lookalike.features.cache import FeatureCache, NoCache
from lookalike.features.contract import FeatureSet
from lookalike.features.progress import progress_bar
from lookalike.imaging.loading import DEFAULT_MAX_PIXELS
from lookalike.matching.geometry import Match
from lookalike.retrieval.calibration import Calibration
from lookalike.retrieval.pipeline import Item, Pipeline, ReferenceSet

THRESHOLD = 0.5  # calibrated probability a link needs, from both photos' side
BRIDGE_PROBABILITY = 0.9  # a lone bridge between two parts must be this sure to hold
NEAR_DUPLICATE_SIMILARITY = 0.5  # global similarity of the same shot (distinct photos < 0.25)
NEAR_DUPLICATE_SPREAD = 24  # of the 8 x 8 grid cells, covered by inliers in both photos
UNGROUPED = ""


@dataclasses.dataclass(frozen=True)
class PairLink:
    """What the pipeline found for one verified pair of photos (positions in `Grouping.photos`)."""

    a: int
    b: int
    probability: float  # the lower of the two directions' calibrated probabilities
    similarity: float  # global similarity
    match: Match


@dataclasses.dataclass
class NearDuplicateSet:
    """Photos of the same shot; `keep` is the one to keep (see `photo_to_keep`)."""

    name: str
    photos: list[str]
    keep: str


@dataclasses.dataclass
class Group:
    """Photos taken for one landmark: at least two, linked by verified pairs."""

    name: str  # group-001, group-002, ... largest first
    photos: list[str]
    near_duplicates: list[NearDuplicateSet] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Grouping:
    """The collection's groups, the photos linked to no other, and the files that failed."""

    groups: list[Group]
    ungrouped: list[str]
    errors: dict[str, str]
    links: list[PairLink]
    photos: list[str]  # the photos that were read, in input order
    preset: str = "default"
    threshold: float = THRESHOLD

    def group_of(self) -> dict[str, str]:
        """Each read photo's group name (UNGROUPED for a photo linked to no other)."""
        names = {photo: UNGROUPED for photo in self.ungrouped}
        for group in self.groups:
            names.update((photo, group.name) for photo in group.photos)
        return names

    def near_duplicate_of(self) -> dict[str, NearDuplicateSet]:
        return {photo: duplicates for group in self.groups
                for duplicates in group.near_duplicates for photo in duplicates.photos}


# -- the pair graph ------------------------------------------------------------------------------
def shortlist_probabilities(items: Sequence[Item], pipeline: Pipeline, quiet: bool = True,
                            calibration_of: Callable[[int], Calibration] | None = None,
                            queries: Sequence[int] | None = None) -> tuple[dict[tuple[int, int], float], dict[tuple[int, int], Match],
                                       dict[tuple[int, int], float]]:
    """Each photo ranked against the collection: (probability, match, similarity) of every
    pair (query, shortlisted photo), keyed by (query position, gallery position). Memory grows
    with photos x shortlist, not with the square of the collection. `calibration_of(i)` gives
    query i's calibration (default: the pipeline's; a benchmark holds each landmark out).
    `queries`: only these photos' rankings (a Ray task's share), default all."""
    gallery = ReferenceSet(items, pipeline.global_method)
    chosen_queries = range(len(items)) if queries is None else queries
    probabilities: dict[tuple[int, int], float] = {}
    matches: dict[tuple[int, int], Match] = {}
    similarities: dict[tuple[int, int], float] = {}
    for i in progress_bar(desc="grouping", quiet=quiet, unit="photo",
                          iterable=chosen_queries):
        item = items[i]
        ranking = pipeline.evidence(item, gallery)
        calibration = pipeline.calibration if calibration_of is None else calibration_of(i)
        shortlisted = [j for j in ranking.matches if j != i]
        if not shortlisted:
            continue
        chosen = calibration.probability(ranking.evidence[shortlisted])
        for j, probability in zip(shortlisted, chosen):
            probabilities[i, j] = float(probability)
            matches[i, j] = ranking.matches[j]
            similarities[i, j] = float(ranking.similarities[j])
    return probabilities, matches, similarities


def confirmed_links(probabilities: dict[tuple[int, int], float],
                    matches: dict[tuple[int, int], Match],
                    similarities: dict[tuple[int, int], float],
                    threshold: float = THRESHOLD) -> list[PairLink]:
    """Pairs that each photo's own ranking confirms: both shortlisted the other and gave it at
    least `threshold`."""
    links = []
    for (i, j), forward in probabilities.items():
        if i < j and (j, i) in probabilities:
            probability = min(forward, probabilities[j, i])
            if probability >= threshold:
                links.append(PairLink(i, j, probability, similarities[i, j], matches[i, j]))
    return links


def link_graph(count: int, links: Sequence[PairLink]) -> nx.Graph:
    graph = nx.Graph()
    graph.add_nodes_from(range(count))
    graph.add_edges_from((link.a, link.b, {"link": link}) for link in links)
    return graph


def components(count: int, links: Sequence[PairLink]) -> list[list[int]]:
    """Connected components of the link graph, each as sorted positions."""
    return [sorted(found) for found in nx.connected_components(link_graph(count, links))]


def weak_bridges(count: int, links: Sequence[PairLink],
                 strong: float = BRIDGE_PROBABILITY) -> set[tuple[int, int]]:
    """Bridges below `strong` whose removal leaves two parts of at least two photos each: one
    uncertain pair should not make two landmarks one group. (A lone photo hanging on one link
    is not cut: that link is all the evidence it has.)"""
    graph = link_graph(count, links)
    weak = set()
    for a, b in list(nx.bridges(graph)):
        link = graph[a][b]["link"]
        if link.probability >= strong:
            continue
        graph.remove_edge(a, b)
        smaller = min(len(nx.node_connected_component(graph, a)),
                      len(nx.node_connected_component(graph, b)))
        graph.add_edge(a, b, link=link)
        if smaller >= 2:
            weak.add((link.a, link.b))
    return weak


def photo_groups(count: int, links: Sequence[PairLink],
                 strong: float = BRIDGE_PROBABILITY) -> list[list[int]]:
    """Components of the links less their weak bridges, largest first (ties: input order)."""
    cut = weak_bridges(count, links, strong)
    kept = [link for link in links if (link.a, link.b) not in cut]
    return sorted(components(count, kept), key=lambda members: (-len(members), members[0]))


# -- near-duplicates -----------------------------------------------------------------------------
def is_near_duplicate(link: PairLink) -> bool:
    """The same shot (re-saved, resized, lightly edited): near-identical global description and
    a homography whose inliers cover much of both photos."""
    match = link.match
    return (link.similarity >= NEAR_DUPLICATE_SIMILARITY and match.verified
            and match.inliers_h > 0 and min(match.cells_a, match.cells_b) >= NEAR_DUPLICATE_SPREAD)


def sharpness(image) -> float:
    """Variance of the Laplacian at 512 px on the long side: larger = more fine detail."""
    import cv2

    small = image.convert("L")
    small.thumbnail((512, 512))
    return float(cv2.Laplacian(np.asarray(small, np.float32), cv2.CV_32F).var())


def photo_to_keep(photos: Sequence[str]) -> str:
    """The photo to keep of a near-duplicate set: the most pixels; among equal sizes the
    sharpest, then the larger file (less compressed), then the first name."""
    from lookalike.imaging.loading import ImageLoadError, load_image

    def rank(path: str) -> tuple:
        try:
            image = load_image(path)  # EXIF-rotated, as every method saw it
        except ImageLoadError:  # changed since it was read: never the one to keep
            return (1, 0, 0.0, 0, path)
        width, height = image.size
        return (0, -width * height, -sharpness(image), -os.path.getsize(path), path)

    return min(photos, key=rank)


def near_duplicate_sets(members: Sequence[int], links: Sequence[PairLink],
                        photos: Sequence[str], group_name: str) -> list[NearDuplicateSet]:
    """The near-duplicate sets among a group's photos (connected by near-duplicate pairs)."""
    inside = set(members)
    pairs = [link for link in links if link.a in inside and is_near_duplicate(link)]
    sets = [found for found in components(len(photos), pairs) if len(found) > 1]
    result = []
    for number, found in enumerate(sorted(sets), start=1):
        paths = [photos[position] for position in found]
        result.append(NearDuplicateSet(f"{group_name}/dup-{number}", paths, photo_to_keep(paths)))
    return result


# -- the entry point -----------------------------------------------------------------------------
def photo_items(paths: Sequence[str], preset: str = "default", cache=None, jobs: int = 1,
                quiet: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS
                ) -> tuple[FeatureSet, Pipeline]:
    """The photos' items of the preset's two methods (unreadable files in `.errors`) and the
    preset's pipeline with its shipped pair calibration, verifying through `cache`."""
    from lookalike.features.registry import get_method

    fused = get_method("fused", preset=preset)
    features = fused.combine_features(list(paths), cache if cache is not None else NoCache(),
                                      jobs, quiet, max_pixels)
    return features, fused.pipeline()


def grouping_from_links(photos: Sequence[str], links: Sequence[PairLink],
                        errors: dict[str, str], preset: str = "default",
                        threshold: float = THRESHOLD) -> Grouping:
    """Groups (two photos or more, named largest first), their near-duplicate sets, and the
    photos linked to no other."""
    groups, ungrouped = [], []
    for members in photo_groups(len(photos), links):
        if len(members) == 1:
            ungrouped.append(photos[members[0]])
            continue
        name = f"group-{len(groups) + 1:03d}"
        groups.append(Group(name, [photos[position] for position in members],
                            near_duplicate_sets(members, links, photos, name)))
    return Grouping(groups, ungrouped, dict(errors), list(links), list(photos), preset,
                    threshold)


def group_photos(paths: Sequence[str], preset: str = "default", cache=None, jobs: int = 1,
                 quiet: bool = True, threshold: float = THRESHOLD,
                 max_pixels: int = DEFAULT_MAX_PIXELS, engine: str = "local"
                 ) -> Grouping:
    """Group photos by landmark with the preset's pipeline and its shipped pair calibration.

    `cache` is a FeatureCache (features and pair verifications are kept there); None or a
    NoCache keeps nothing after the run. Files that cannot be read are in `.errors` and left
    out (photos over `max_pixels` too, 0: no limit); the rest are grouped.
    `engine="ray"` extracts and ranks on a Ray cluster."""
    if engine == "ray":
        features, pipeline = ray_photo_items(paths, preset, max_pixels)
        probabilities, matches, similarities = ray_probabilities(features.features, pipeline)
        links = confirmed_links(probabilities, matches, similarities, threshold)
        return grouping_from_links(features.paths, links, features.errors, preset, threshold)
    with contextlib.ExitStack() as scratch:
        if cache is None or isinstance(cache, NoCache):
            cache = scratch_cache(scratch)
        features, pipeline = photo_items(paths, preset, cache, jobs, quiet, max_pixels)
        probabilities, matches, similarities = shortlist_probabilities(
            features.features, pipeline, quiet)
    links = confirmed_links(probabilities, matches, similarities, threshold)
    return grouping_from_links(features.paths, links, features.errors, preset, threshold)


def _rank_share(shared: tuple, queries: Sequence[int]) -> tuple:
    """One Ray task's share of `shortlist_probabilities` (the items and pipeline shared)."""
    items, pipeline = shared
    return shortlist_probabilities(items, pipeline, True, queries=queries)


def ray_probabilities(items: Sequence[Item], pipeline: Pipeline, shares: int | None = None
                      ) -> tuple[dict, dict, dict]:
    """`shortlist_probabilities` with the photos' rankings split over Ray tasks (the items
    are put in the object store once). Verifications are not kept in the feature cache."""
    import copy

    from lookalike.engines.ray import ensure_ray, ray_map

    ray = ensure_ray()
    shares = shares or max(1, int(ray.cluster_resources().get("CPU", 1))) * 4
    pipeline = copy.copy(pipeline)
    pipeline.store = None
    pipeline._memo = type(pipeline._memo)()
    order = np.arange(len(items))
    results = ray_map(_rank_share, (list(items), pipeline),
                      [chunk.tolist() for chunk in np.array_split(order, shares) if len(chunk)])
    merged: tuple[dict, dict, dict] = ({}, {}, {})
    for part in results:
        for whole, piece in zip(merged, part, strict=True):
            whole.update(piece)
    return merged


def ray_photo_items(paths: Sequence[str], preset: str = "default",
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[FeatureSet, Pipeline]:
    """`photo_items` with the features extracted on Ray (`lookalike.engines.ray`)."""
    from lookalike.engines.ray import ray_extractor
    from lookalike.features.registry import get_method

    fused = get_method("fused", preset=preset)
    global_part, local_part = fused.parts()
    globals_, locals_, errors = ray_extractor(max_pixels=max_pixels)(list(paths), global_part,
                                                                     local_part)
    kept = [path for path in paths if path in globals_ and path in locals_]
    items = [Item(global_part.decode(globals_[path]), local_part.decode(locals_[path]))
             for path in kept]
    return FeatureSet(fused, kept, items, errors, [None] * len(kept)), fused.pipeline()


def scratch_cache(scratch: contextlib.ExitStack) -> FeatureCache:
    """A cache in a temporary folder, removed when `scratch` closes: without any cache the
    global role (ASMK, aggregated from the local features) would extract them a second time."""
    folder = scratch.enter_context(tempfile.TemporaryDirectory(prefix="lookalike-group-"))
    cache = FeatureCache(os.path.join(folder, "features.sqlite"))
    scratch.callback(cache.close)
    return cache
