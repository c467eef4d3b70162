"""ASMK*: a photo's local descriptors aggregated into one searchable global description.

Why: a global CNN embedding (AugNet) describes the whole frame, sky and street included, so
it shortlists by background. ASMK (Tolias, Avrithis and Jégou, "To aggregate or not to
aggregate", ICCV 2013) keeps what local features know: each descriptor is assigned to its
nearest visual word of a codebook, the residuals of one photo's descriptors at one word are
summed and binarised (ASMK*, one bit per dimension), and two photos are compared word by word:

    sim(X, Y) = norm(X) norm(Y) * sum over shared words w of  sigma(u_w),
    u_w = 1 - 2 * hamming(b_X(w), b_Y(w)) / D,   sigma(u) = u**alpha if u > tau else 0,

with `norm(X) = 1 / sqrt(sum_w sigma(1)) = 1 / sqrt(words of X)`, so a photo scores 1 against
itself. The selectivity `alpha` (3) lets only near-identical residuals count, which suppresses
the chance agreement of repeated textures (foliage, cobbles) that a bag of words rewards.

A photo's feature is two arrays: its sorted word ids and their packed residual bits. An
`InvertedFile` keeps, per word, the gallery photos that have it, so a query touches only the
photos that share its words, and gives the same scores as `similarity` pair by pair.
The codebook is fitted with FAISS k-means (`fit_codebook`); its digest goes into cache keys.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.matching import asmk_kernel
from lookalike.nets.threads import faiss_module, faiss_threads

DATA = Path(__file__).resolve().parents[1] / "data"
ALPHA = 3.0
THRESHOLD = 0.0
# Queries meeting this many postings are scored by the compiled kernel (asmk_kernel) when
# numba is installed: below, numpy takes ~1 ms and importing numba would cost more.
COMPILED_FROM = 200_000

# popcount of every byte value, for Hamming distances of packed bits
_POPCOUNT = np.array([bin(value).count("1") for value in range(256)], np.uint8)


@dataclass(frozen=True)
class Codebook:
    """Visual words (k x D centroids) and the digest that names them in cache keys."""

    centroids: np.ndarray
    digest: str
    path: str = ""

    @property
    def size(self) -> int:
        return len(self.centroids)

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    def assign(self, descriptors: np.ndarray, nearest: int = 1) -> np.ndarray:
        """The nearest word of each descriptor (exact, by FAISS); with `nearest` > 1, an
        n x nearest array of each descriptor's nearest words, nearest first."""
        index = _word_index(self)
        _, words = index.search(np.ascontiguousarray(descriptors, np.float32), nearest)
        return words[:, 0] if nearest == 1 else words


_INDEXES: dict[str, object] = {}


def _word_index(codebook: Codebook):
    faiss = faiss_module()
    index = _INDEXES.get(codebook.digest)
    if index is None:
        index = faiss.IndexFlatL2(codebook.dim)
        index.add(np.ascontiguousarray(codebook.centroids, np.float32))
        _INDEXES[codebook.digest] = index
    return index


def codebook_digest(centroids: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(centroids, np.float32).tobytes()).hexdigest()[:16]


def load_codebook(path: str | os.PathLike) -> Codebook:
    """A codebook saved by `save_codebook` (an .npy of float32 or float16 centroids)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such codebook")
    centroids = np.load(path, allow_pickle=False).astype(np.float32)
    if centroids.ndim != 2 or len(centroids) < 2:
        raise ValueError(f"{path}: a codebook is a k x D array of centroids")
    return Codebook(centroids, codebook_digest(centroids), str(path))


def shipped_codebook(name: str) -> Path:
    """The codebook shipped for a local feature, e.g. `asmk-aliked-n16-1024.npy`."""
    return DATA / f"asmk-{name}.npy"


def save_codebook(centroids: np.ndarray, path: str | os.PathLike) -> Codebook:
    """Save as float16 (half the size; centroids need no more precision) and reload."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(centroids, np.float16))
    return load_codebook(path)


def fit_codebook(descriptors: Sequence[np.ndarray], words: int = 1024, seed: int = 0,
                 max_points: int | None = None) -> np.ndarray:
    """k-means centroids of many photos' local descriptors: a random subset past
    `max_points` (default: 200,000 or 64 per word, whichever is more; k-means gains little
    from more, and its cost is points x words)."""
    if max_points is None:
        max_points = max(200_000, 64 * words)
    stacked = np.concatenate([np.asarray(d, np.float32) for d in descriptors if len(d)])
    if len(stacked) < words:
        raise ValueError(f"{len(stacked)} descriptors cannot make {words} visual words; "
                         "fit on more photos or ask for fewer words")
    if len(stacked) > max_points:
        rng = np.random.default_rng(seed)
        stacked = stacked[rng.choice(len(stacked), max_points, replace=False)]
    with faiss_threads(os.cpu_count() or 1) as faiss:  # one long job: worth every core
        kmeans = faiss.Kmeans(stacked.shape[1], words, niter=20, seed=seed, verbose=False,
                              max_points_per_centroid=max(256, len(stacked) // words + 1))
        kmeans.train(np.ascontiguousarray(stacked))
    return kmeans.centroids


def aggregate(descriptors: np.ndarray, codebook: Codebook,
              multiple_assignment: int = 1) -> dict[str, np.ndarray]:
    """ASMK* feature of one photo: sorted word ids and their binarised residual sums.

    With `multiple_assignment` = m > 1 the feature also holds `query_words` and
    `query_bits`, what it searches with as a query: its own words and bits, plus the words
    that a descriptor has among its m nearest but the photo has no descriptor of, with the
    residuals of the descriptors that vote for them (multiple assignment on the query side
    only, as Tolias et al. advise: a gallery's postings keep one word per descriptor). Two
    views far apart often put a descriptor of the same corner on either side of a word
    boundary; a query with both words still meets it. Its own words keep their residuals, so
    a query scores at least what it scores without (the added words only add agreement), 1
    with itself, and is normalised by its own word count, so the scale stays the same."""
    descriptors = np.asarray(descriptors, np.float32)
    if len(descriptors) == 0:
        empty = {"words": np.zeros(0, np.int32),
                 "bits": np.zeros((0, (codebook.dim + 7) // 8), np.uint8)}
        if multiple_assignment > 1:
            empty.update(query_words=empty["words"], query_bits=empty["bits"])
        return empty
    nearest = codebook.assign(descriptors, max(1, multiple_assignment))
    if multiple_assignment <= 1:
        return _aggregate(descriptors, nearest, codebook)
    feature = _aggregate(descriptors, nearest[:, 0], codebook)
    others = nearest[:, 1:].ravel()
    new = ~np.isin(others, feature["words"])
    extra = _aggregate(np.repeat(descriptors, nearest.shape[1] - 1, axis=0)[new], others[new],
                       codebook)
    words = np.concatenate([feature["words"], extra["words"]])
    order = np.argsort(words, kind="stable")
    feature.update(query_words=words[order],
                   query_bits=np.concatenate([feature["bits"], extra["bits"]])[order])
    return feature


def _aggregate(descriptors: np.ndarray, assigned: np.ndarray, codebook: Codebook
               ) -> dict[str, np.ndarray]:
    words, position = np.unique(assigned, return_inverse=True)
    residuals = np.zeros((len(words), codebook.dim), np.float32)
    np.add.at(residuals, position, descriptors - codebook.centroids[assigned])
    return {"words": words.astype(np.int32), "bits": np.packbits(residuals > 0, axis=1)}


def query_side(feature: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The (words, bits) a feature searches with: its multiple assignment when it has one."""
    if "query_words" in feature:
        return feature["query_words"], feature["query_bits"]
    return feature["words"], feature["bits"]


def selectivity(agreement: np.ndarray, alpha: float = ALPHA,
                threshold: float = THRESHOLD) -> np.ndarray:
    return np.where(agreement > threshold, np.abs(agreement) ** alpha, 0.0)


def _agreement(bits_a: np.ndarray, bits_b: np.ndarray, dim: int) -> np.ndarray:
    hamming = _POPCOUNT[np.bitwise_xor(bits_a, bits_b)].sum(axis=-1, dtype=np.int64)
    return 1.0 - 2.0 * hamming / dim


def similarity(a: dict[str, np.ndarray], b: dict[str, np.ndarray], alpha: float = ALPHA,
               threshold: float = THRESHOLD) -> float:
    """sim(A, B) of the module docstring, computed directly; 1.0 for a photo with itself."""
    if len(a["words"]) == 0 or len(b["words"]) == 0:
        return 0.0
    words_a, bits_a = query_side(a)  # `a` is the query
    _, index_a, index_b = np.intersect1d(words_a, b["words"], assume_unique=True,
                                         return_indices=True)
    dim = a["bits"].shape[1] * 8
    total = selectivity(_agreement(bits_a[index_a], b["bits"][index_b], dim), alpha,
                        threshold).sum()
    return float(total / np.sqrt(len(a["words"]) * len(b["words"])))


@dataclass
class Postings:
    """An inverted file's arrays, in memory or memory-mapped from an index's sidecar file.

    Word w's postings are rows offsets[w]:offsets[w + 1] of `positions` (the gallery position
    of the photo, ascending) and `bits` (its residual bits at w, as uint64 words); `counts`
    holds each gallery photo's number of words (its ASMK norm)."""

    offsets: np.ndarray  # int64, vocabulary + 1
    positions: np.ndarray  # int32, one per posting
    bits: np.ndarray  # uint64, postings x (dim / 64)
    counts: np.ndarray  # int32, one per gallery photo
    dim: int

    @property
    def vocabulary(self) -> int:
        return len(self.offsets) - 1

    @property
    def size(self) -> int:
        return len(self.counts)


def postings_of(features: Sequence[dict[str, np.ndarray]], vocabulary: int | None = None,
                first_position: int = 0, dim: int | None = None) -> Postings:
    """The postings of `features` (gallery positions first_position, first_position + 1, ...),
    sorted by word and, within a word, by position."""
    counts = np.array([len(f["words"]) for f in features], np.int32)
    if dim is None:
        width = next((f["bits"].shape[1] for f in features if len(f["words"])), 16)
        dim = width * 8
    words_of = [f["words"] for f in features if len(f["words"])]
    if vocabulary is None:
        vocabulary = int(max((w.max() for w in words_of), default=-1)) + 1
    if not words_of:
        return Postings(np.zeros(vocabulary + 1, np.int64), np.zeros(0, np.int32),
                        np.zeros((0, max(1, dim // 64)), np.uint64), counts, dim)
    words = np.concatenate(words_of)
    positions = np.repeat(np.arange(first_position, first_position + len(features),
                                    dtype=np.int32), counts)
    bits = np.concatenate([f["bits"] for f in features if len(f["words"])])
    order = np.argsort(words, kind="stable")
    offsets = np.zeros(vocabulary + 1, np.int64)
    np.cumsum(np.bincount(words, minlength=vocabulary)[:vocabulary], out=offsets[1:])
    return Postings(offsets, positions[order], _as_words64(bits[order]), counts, dim)


def merge_postings(parts: Sequence[tuple[Postings, np.ndarray | None]], out: Postings,
                   block: int = 1 << 22) -> None:
    """Write the postings of `parts` into `out`, whose offsets, counts and arrays are already
    sized (`merged_offsets`): word by word, each part's postings in turn, their positions
    mapped through the part's `remap` (None: unchanged; -1: dropped). Parts must give
    ascending positions in order, so `out` stays sorted within each word. Works through the
    words in blocks of about `block` postings, so memory stays bounded for any size."""
    vocabulary = out.vocabulary
    total = sum(np.asarray(part.offsets, np.int64) for part, _ in parts)
    cuts = np.searchsorted(total, np.arange(block, int(total[-1]), block), side="right")
    bounds = np.unique(np.concatenate([[0], np.clip(cuts, 1, vocabulary), [vocabulary]]))
    for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        pieces_words, pieces_positions, pieces_bits, pieces_order = [], [], [], []
        for rank, (part, remap) in enumerate(parts):
            lo, hi = int(part.offsets[start]), int(part.offsets[end])
            if hi == lo:
                continue
            positions = np.asarray(part.positions[lo:hi])
            bits = np.asarray(part.bits[lo:hi])
            words = np.repeat(np.arange(start, end, dtype=np.int64),
                              np.diff(np.asarray(part.offsets[start:end + 1])))
            if remap is not None:
                positions = remap[positions]
                kept = positions >= 0
                positions, bits, words = positions[kept], bits[kept], words[kept]
            pieces_words.append(words)
            pieces_positions.append(positions.astype(np.int32))
            pieces_bits.append(bits)
            pieces_order.append(np.full(len(words), rank, np.int64))
        lo, hi = int(out.offsets[start]), int(out.offsets[end])
        if pieces_words:
            words = np.concatenate(pieces_words)
            order = np.lexsort((np.concatenate(pieces_order), words))  # by word, then part
            out.positions[lo:hi] = np.concatenate(pieces_positions)[order]
            out.bits[lo:hi] = np.concatenate(pieces_bits)[order]


def merged_offsets(parts: Sequence[tuple[Postings, np.ndarray | None]], vocabulary: int
                   ) -> np.ndarray:
    """The offsets of `merge_postings(parts)`: postings per word after dropping, summed."""
    per_word = np.zeros(vocabulary, np.int64)
    for part, remap in parts:
        if remap is None:
            per_word += np.diff(np.asarray(part.offsets))
            continue
        chunk = 1 << 24
        for lo in range(0, len(part.positions), chunk):
            hi = min(len(part.positions), lo + chunk)
            kept = remap[np.asarray(part.positions[lo:hi])] >= 0
            # word of each posting: the offsets' bucket
            words = np.searchsorted(np.asarray(part.offsets), np.arange(lo, hi), side="right") - 1
            per_word += np.bincount(words[kept], minlength=vocabulary)
    offsets = np.zeros(vocabulary + 1, np.int64)
    np.cumsum(per_word, out=offsets[1:])
    return offsets


class InvertedFile:
    """Per visual word, the gallery photos that have it and their residual bits.

    `scores(query)` visits only the words of the query and returns its similarity with every
    gallery photo (0 for photos sharing no word): the same values as `similarity`, found
    without touching unrelated photos, so cost grows with shared words, not gallery size.
    Postings are sorted by word, so each query word reads one contiguous slice; residual bits
    are compared 64 at a time, and the selectivity is looked up by Hamming distance. A query
    that meets many postings is scored by the compiled kernel (`asmk_kernel`, one parallel
    pass), the others by numpy: the same scores. Built
    from features in memory, or over `Postings` memory-mapped from an index's sidecar file
    (the same arrays, so the same scores to the last bit).
    """

    def __init__(self, features: Sequence[dict[str, np.ndarray]] = (), alpha: float = ALPHA,
                 threshold: float = THRESHOLD, postings: Postings | None = None):
        self.alpha = alpha
        self.threshold = threshold
        self.postings = postings if postings is not None else postings_of(features)
        self.size = self.postings.size
        self.dim = self.postings.dim
        self.norms = 1.0 / np.sqrt(np.maximum(np.asarray(self.postings.counts, np.int64), 1))
        self._offsets = np.asarray(self.postings.offsets)
        self.kernel = "auto"  # see `_compiled`
        # The selectivity of a residual pair depends only on its Hamming distance, so it is
        # read from a table of dim + 1 values instead of computed per posting (1.4x faster).
        self.selectivity_of_hamming = selectivity(1.0 - 2.0 * np.arange(self.dim + 1) / self.dim,
                                                  alpha, threshold)

    def scores(self, query: dict[str, np.ndarray]) -> np.ndarray:
        query_words, query_bits = query_side(query)
        words = np.asarray(query_words, np.int64)
        if len(words) == 0 or self.size == 0:
            return np.zeros(self.size)
        known = words < self.postings.vocabulary
        starts = np.zeros(len(words), np.int64)
        ends = np.zeros(len(words), np.int64)
        starts[known] = self._offsets[words[known]]
        ends[known] = self._offsets[words[known] + 1]
        query_bits = _as_words64(query_bits)
        if self._compiled(int(np.maximum(ends - starts, 0).sum())):
            out = asmk_kernel.scores(starts, ends, query_bits, np.asarray(self.postings.bits),
                                     np.asarray(self.postings.positions),
                                     self.selectivity_of_hamming, self.size)
            return out * self.norms / np.sqrt(len(query["words"]))
        bits, positions = self.postings.bits, self.postings.positions
        hammings, photos = [], []
        for row, (start, end) in enumerate(zip(starts.tolist(), ends.tolist())):
            if end > start:
                hammings.append(_popcount64(bits[start:end] ^ query_bits[row]).sum(axis=1))
                photos.append(positions[start:end])
        if not hammings:
            return np.zeros(self.size)
        weights = self.selectivity_of_hamming[np.concatenate(hammings)]
        out = np.bincount(np.concatenate(photos), weights, minlength=self.size)
        return out * self.norms / np.sqrt(len(query["words"]))

    def _compiled(self, met: int) -> bool:
        """Whether this query is scored by the compiled kernel (`kernel`: "auto" uses it from
        COMPILED_FROM postings met, when numba is installed; "numpy" or "compiled" force)."""
        if self.kernel == "numpy":
            return False
        if self.kernel == "auto" and met < COMPILED_FROM:
            return False
        return asmk_kernel.available() or self.kernel == "compiled"

    def search(self, query: dict[str, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best gallery positions and their similarities, best first."""
        scores = self.scores(query)
        k = min(k, self.size)
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return top, scores[top]


def _as_words64(bits: np.ndarray) -> np.ndarray:
    """Packed bits (n x bytes, a multiple of 8 bytes) viewed as n x (bytes / 8) uint64."""
    bits = np.ascontiguousarray(bits, np.uint8)
    return bits.view(np.uint64).reshape(len(bits), -1) if bits.shape[1] % 8 == 0 else \
        np.ascontiguousarray(np.pad(bits, ((0, 0), (0, -bits.shape[1] % 8)))).view(np.uint64)


def _popcount64(words: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words)
    return _POPCOUNT[words.view(np.uint8)].reshape(len(words), -1, 8).sum(axis=2)
