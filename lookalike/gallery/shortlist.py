"""A large gallery's shortlist, and its shards: the best references of a query, found so that
`identify` gives exactly the answer that ranking every reference gives.

Why: `identify` groups the query's similarities by landmark, verifies the best few landmarks
on their best references, and takes margins over the best other landmark. Over every
reference that needs a sort of the whole gallery (~0.1 s at a million). It needs only the
top of the ranking: `Shortlist.top(query, k)` returns every reference scoring above a bound,
and `exact_prefix` checks that this prefix decides everything identify reads (the first
`verify_landmarks` landmarks, the best other landmark of each, and each chosen landmark's
`per_landmark` best references); when it does not, k grows, up to the whole gallery.

Shards: without IDF a reference's ASMK score depends only on its own postings, so the
references can be split into contiguous ranges of gallery positions, each with its own
postings file (`NAME.lkidx.ivf.shard-I-of-N`, the sidecar format of
`lookalike.gallery.postings_file`, tied to the index by the same instance and generation),
searched apart (a Ray actor each, `lookalike.engines.ray`) and merged: each shard's top k
holds every reference of it above its k-th score, so the union holds every reference above
the largest of those bounds, and that prefix is the single-machine ranking's.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lookalike.features.contract import Method, SearchIndex
from lookalike.gallery.postings_file import Sidecar, read_sidecar, sidecar_path, write_sidecar

LARGE = 2_000  # galleries past this many references are shortlisted (below, all are ranked)


def top_of(scores: np.ndarray, k: int, first: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """(positions + first, scores, bound): the k best and every reference tied with the k-th,
    so that every position scoring above `bound` is there (-inf: all of them are)."""
    if k >= len(scores):
        return np.arange(first, first + len(scores)), scores, -np.inf
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    keep = np.flatnonzero(scores >= kth)
    return keep + first, scores[keep], float(np.nextafter(kth, -np.inf))


def merge_tops(tops: Sequence[tuple[np.ndarray, np.ndarray, float]]
               ) -> tuple[np.ndarray, np.ndarray]:
    """Shards' tops merged: (positions ascending, scores), every position above the largest
    bound, and nothing else (below it a shard may have left some out)."""
    bound = max((b for _, _, b in tops), default=-np.inf)
    positions = np.concatenate([p for p, _, _ in tops]) if tops else np.zeros(0, np.int64)
    scores = np.concatenate([s for _, s, _ in tops]) if tops else np.zeros(0)
    keep = scores > bound
    positions, scores = positions[keep], scores[keep]
    order = np.argsort(positions, kind="stable")
    return positions[order].astype(np.int64), scores[order]


def exact_prefix(scores: np.ndarray, codes: np.ndarray, totals: np.ndarray,
                 verify_landmarks: int, per_landmark: int, negative: int | None,
                 complete: bool) -> bool:
    """Whether the shortlisted references (their scores and landmark codes, by ascending
    position) decide identify exactly as the whole ranking does: the prefix's first landmarks
    are the ranking's, so it must hold `verify_landmarks` landmarks (other than `negative`),
    a second landmark for the margins, and for each chosen landmark its `per_landmark` best
    references (or all it has, `totals`). `complete`: the prefix is the whole gallery."""
    if complete:
        return True
    order = np.argsort(-scores, kind="stable")
    ranked = codes[order]
    _, first = np.unique(ranked, return_index=True)
    landmarks = ranked[np.sort(first)]
    chosen = [code for code in landmarks.tolist() if code != negative][:verify_landmarks]
    if len(chosen) < verify_landmarks or len(landmarks) < 2:
        return False
    counts = np.bincount(codes, minlength=len(totals))
    return all(counts[code] >= min(per_landmark, totals[code]) for code in chosen)


class Shortlist:
    """The references one query needs, from a search index or from shards."""

    def __init__(self, codes: np.ndarray, names: Sequence[str], search=None):
        self.codes = np.asarray(codes)
        self.names = list(names)
        self.totals = np.bincount(self.codes, minlength=len(self.names))
        self.size = len(self.codes)
        self.search = search  # (query, k) -> (positions ascending, scores, complete)
        self.first_k: int | None = None  # the first k asked (None: enough for most queries)

    @classmethod
    def of_index(cls, index: SearchIndex, codes, names) -> Shortlist:
        last = LastScores(index)

        def search(query, k: int):
            positions, scores, bound = top_of(last.scores(query), k)
            return positions, scores, bound == -np.inf
        return cls(codes, names, search)

    def top(self, query, verify_landmarks: int, per_landmark: int,
            negative: str | None) -> tuple[np.ndarray, np.ndarray]:
        """Positions (ascending) and scores of a prefix of the ranking that decides identify."""
        negative_code = self.names.index(negative) if negative in self.names else None
        k = self.first_k or max(64, 8 * verify_landmarks * per_landmark)
        while True:
            positions, scores, complete = self.search(query, k)
            if exact_prefix(scores, self.codes[positions], self.totals, verify_landmarks,
                            per_landmark, negative_code, complete or k >= self.size):
                return positions, scores
            k *= 4


class LastScores:
    """A search index's scores of the last query, kept: when a prefix did not decide and k
    grows, the query is not searched again (by the query's identity, or its content's
    fingerprint when it arrives pickled, on a Ray actor)."""

    def __init__(self, index: SearchIndex):
        self.index = index
        self.key: object = None
        self.last: np.ndarray | None = None

    def scores(self, query) -> np.ndarray:
        key = fingerprint(query)
        if self.last is None or key != self.key:
            self.last = np.asarray(self.index.scores(query), np.float64)
            self.key = key
        return self.last


def fingerprint(feature) -> object:
    if isinstance(feature, dict):
        return tuple((name, np.asarray(value).tobytes()) for name, value in
                     sorted(feature.items()))
    return np.asarray(feature).tobytes()


class FixedScores(SearchIndex):
    """A search index that answers with scores already found (the shortlist's)."""

    def __init__(self, scores: np.ndarray):
        self._scores = scores
        self.size = len(scores)

    def scores(self, query) -> np.ndarray:
        return self._scores


# -- shards ----------------------------------------------------------------------------------------
def shard_path(index_path: str | os.PathLike, shard: int, shards: int) -> Path:
    return Path(f"{sidecar_path(index_path)}.shard-{shard}-of-{shards}")


def shards_of(index_path: str | os.PathLike) -> int:
    """How many shards `index build --shards` wrote beside the index (0: none)."""
    main = sidecar_path(index_path)
    counts = set()
    for path in main.parent.glob(f"{main.name}.shard-*-of-*"):
        try:
            counts.add(int(path.name.rsplit("-of-", 1)[1]))
        except ValueError:
            continue
    return max(counts, default=0)


def shard_ranges(size: int, shards: int) -> list[tuple[int, int]]:
    bounds = np.linspace(0, size, shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds.tolist())]


def write_shards(index_path: str | os.PathLike, shards: int) -> list[Path]:
    """Split the index's current sidecar into `shards` postings files (contiguous ranges of
    gallery positions), skipping those already current; returns their paths."""
    main = read_sidecar(sidecar_path(index_path))
    if main is None:
        raise FileNotFoundError(f"{sidecar_path(index_path)}: open the index first")
    paths = []
    for shard, (lo, hi) in enumerate(shard_ranges(len(main.ids), shards)):
        path = shard_path(index_path, shard, shards)
        paths.append(path)
        if shard_is_current(path, main, lo):
            continue
        remap = np.full(len(main.ids), -1, np.int64)
        remap[lo:hi] = np.arange(hi - lo)
        header = {**main.header, "shard": [shard, shards], "first": lo}
        write_sidecar(path, header, np.asarray(main.ids[lo:hi]),
                      np.asarray(main.landmark_codes[lo:hi]),
                      np.asarray(main.postings.counts[lo:hi]), [(main.postings, remap)],
                      main.postings.vocabulary, main.postings.dim)
    return paths


def shard_is_current(path: Path, main: Sidecar, first: int) -> bool:
    shard = read_sidecar(path)
    return shard is not None and shard.header.get("first") == first and \
        all(shard.header.get(key) == main.header.get(key)
            for key in ("instance", "generation", "global_method"))


class ShardSearcher:
    """One shard's postings, memory-mapped: its top k for a query, in gallery positions."""

    def __init__(self, path: str | os.PathLike, global_method: Method):
        shard = read_sidecar(path)
        if shard is None:
            raise FileNotFoundError(f"{path}: no such shard")
        self.first = int(shard.header["first"])
        self.index = LastScores(global_method.stored_search_index(shard.postings))

    def top(self, query, k: int) -> tuple[np.ndarray, np.ndarray, float]:
        return top_of(self.index.scores(query), k, self.first)
