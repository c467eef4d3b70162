"""The one contract every similarity method follows.

A method has a `name`, declares what its feature is (`feature_kind`) and its role (`role`),
says how it wants its pixels (`load_options`), turns an image into a feature (`extract`) and
scores two features (`score`, larger = more similar). Caching, matrices, evaluation and the
index are written once against this contract, so adding a method is one file in
`lookalike/methods/` with a `@register` class. Every optional hook (a global descriptor
aggregated from local features, a method composed of others, a matcher's gallery ranker) is
declared here with a default, so nothing probes a method for attributes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import struct
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from lookalike.imaging.loading import DEFAULT_MAX_PIXELS, LoadOptions

# What a feature is, which decides how it is exported and how matrices are computed.
BITS = "bits"  # 1-D uint8 array of 0/1
VECTOR = "vector"  # 1-D float32 array
LOCAL = "local"  # dict of arrays (keypoints, descriptors)
SEGMENTS = "segments"  # 2-D uint8 0/1 array, one row per segment hash

Feature = Any

# The role a method declares, which tells the index, identify and the pipeline how to use it:
GLOBAL = "global"  # a global descriptor: `search_index(features)` ranks a gallery for a query
LOCAL_MATCHER = "local"  # a local matcher: `match(a, b)` returns a `lookalike.matching.geometry.Match`
PAIRWISE = "pairwise"  # a pair score only (the study's hashes and AKAZE counts)


@dataclasses.dataclass
class Method:
    """Base class: subclasses are dataclasses whose fields are the method's settings."""

    name: ClassVar[str] = ""
    feature_kind: ClassVar[str] = VECTOR
    description: ClassVar[str] = ""
    version: ClassVar[int] = 1  # bump when extraction changes, so cached features are not reused
    score_version: ClassVar[int] = 1  # bump when only scoring changes (cached pair scores)
    role: ClassVar[str] = PAIRWISE
    order: ClassVar[int] = 50  # where `lookalike methods` and `--methods all` list it
    in_all: ClassVar[bool] = True  # False: too slow for `--methods all`; run when named
    gray: bool = False

    # -- the contract -------------------------------------------------------------------------
    def load_options(self) -> LoadOptions:
        """How this method wants its pixels; the default is full-size colour."""
        return LoadOptions(gray=self.gray)

    def extract(self, image: Image.Image) -> Feature:
        raise NotImplementedError

    def score(self, a: Feature, b: Feature) -> float:
        raise NotImplementedError

    # -- the roles: a global descriptor searches, a local matcher matches ---------------------
    def search_index(self, features: Sequence[Feature]) -> SearchIndex:
        """A global descriptor's search structure over gallery `features`."""
        raise NotImplementedError(f"{self.name} is not a global descriptor")

    def match(self, a: Feature, b: Feature):
        """A local matcher's verified matches of two features (a `lookalike.matching.geometry.Match`)."""
        raise NotImplementedError(f"{self.name} is not a local matcher")

    def match_many(self, query: Feature, candidates: Sequence[Feature]) -> list:
        """A local matcher's verified matches of `query` with each of `candidates`, in their
        order. The default matches pair by pair; a method whose matcher runs several pairs in
        one call (LightGlue on ONNX Runtime) overrides it, and the pipeline's verify step
        hands it a whole shortlist."""
        return [self.match(query, candidate) for candidate in candidates]

    # -- overridable helpers with sensible defaults -------------------------------------------
    def extract_many(self, images: Sequence[Image.Image]) -> list[Feature]:
        """Extract several images at once; batched methods override this."""
        return [self.extract(image) for image in images]

    batch_size: ClassVar[int] = 1  # >1 means extract_many is worth calling with batches
    # How --jobs workers run `extract`: "threads" when its heavy work releases the GIL (Pillow,
    # OpenCV), which avoids forking and pickling; "processes" for work in Python itself.
    parallel: ClassVar[str] = "processes"

    def score_matrix(self, queries: Sequence[Feature], gallery: Sequence[Feature]) -> np.ndarray:
        """All query x gallery scores; vectorised methods override this."""
        matrix = np.empty((len(queries), len(gallery)), dtype=np.float64)
        for i, query in enumerate(queries):
            for j, item in enumerate(gallery):
                matrix[i, j] = self.score(query, item)
        return matrix

    def settings(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def cache_key(self) -> str:
        """Name + settings + version: two runs share cached features only if these agree."""
        spec = {"name": self.name, "version": self.version, "settings": self.cache_settings()}
        return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def score_key(self) -> str:
        """Like `cache_key`, over every setting, for caching pair scores of slow methods."""
        spec = {"name": self.name, "version": self.version, "settings": self.settings()}
        if self.score_version != 1:  # scoring changed, features did not
            spec["score_version"] = self.score_version
        return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]

    # Pair scores of slow pairwise methods (keypoint matching) are worth caching; a method whose
    # score depends on more than the two features (e.g. the whole gallery) must say False.
    cache_scores: ClassVar[bool] = False

    def cache_settings(self) -> dict[str, Any]:
        """Settings that change the extracted feature (scoring-only settings can be dropped)."""
        return self.settings()

    def calibration_settings(self) -> dict[str, Any]:
        """The feature settings a calibration fitted on this method's evidence must agree
        on (`Calibration.check_methods`); `cache_settings` less those that change how much
        of a photo is described, not what the evidence means (a gallery described in
        several views)."""
        return self.cache_settings()

    def encode(self, feature: Feature) -> bytes:
        return encode_arrays(feature)

    def decode(self, data: bytes) -> Feature:
        return decode_arrays(data)

    def label(self) -> str:
        return f"{self.name}-gray" if self.gray else self.name

    def has_setting(self, name: str) -> bool:
        """Whether `name` is one of this method's settings (its dataclass fields)."""
        return name in {f.name for f in dataclasses.fields(self)}

    # -- optional hooks: a method overrides those that apply to it; each default says "no" ---
    # A global descriptor aggregated from a local matcher's features (ASMK over ALIKED):
    def local_method(self) -> Method | None:
        """The local matcher whose features this global descriptor aggregates, so that one
        extraction serves both roles (`shares_local`); None for a method that reads pixels."""
        return None

    def aggregate(self, local_feature: Feature) -> Feature:
        """This method's feature of a photo from `local_method()`'s feature of it."""
        raise NotImplementedError(f"{self.name} aggregates no local features")

    def visual_words(self) -> int | None:
        """The size of this global descriptor's codebook, which `index build --fit-codebook`
        refits on a gallery's own photos; None for a method without one."""
        return None

    def inverted_file_shape(self) -> tuple[int, int]:
        """(visual words, residual bits per word) of the inverted file a global descriptor
        searches through, when an index may store its postings beside itself (ASMK: the
        codebook's size and dimension); (0, 0), the default, for methods an index searches
        from features held in memory."""
        return 0, 0

    def stored_search_index(self, postings: Any) -> SearchIndex:
        """The search index over stored postings (`lookalike.matching.asmk.Postings`, read
        memory-mapped), for a method with an `inverted_file_shape`."""
        raise NotImplementedError(f"{self.name} has no stored inverted file")

    # A gallery's photos may be described in more detail than a query (several views):
    def query_method(self) -> Method:
        """The method that describes a *query* photo where this one describes the gallery's
        (e.g. the whole photo only, where the gallery's photos are also described as tiles);
        its features match and search against this method's. Self by default."""
        return self

    # A method whose features are built from other methods' (so their cache entries serve):
    composed: ClassVar[bool] = False  # True: `extract_features` calls `combine_features`

    def combine_features(self, paths: Sequence[str], cache=None, jobs: int = 1,
                         quiet: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
                         ) -> FeatureSet:
        """Features of `paths` from the other methods' extraction (`composed` methods);
        photos over `max_pixels` (0: no limit) go to `.errors`."""
        raise NotImplementedError(f"{self.name} is not composed of other methods")

    # A local matcher that a global descriptor can shortlist for:
    def gallery_ranker(self) -> Method | None:
        """The global descriptor that shortlists a whole gallery for this local matcher, so
        that scoring a gallery (`compare`, `evaluate`) verifies each query's shortlist only,
        as retrieval systems do; None: every pair is verified."""
        return None

    def gallery_shortlist(self) -> int:
        """How many of each query's most similar gallery photos `gallery_ranker` hands on to
        verification."""
        return 30


def shares_local(global_method: Method, local_method: Method) -> bool:
    """Whether the global descriptor is aggregated from exactly the local method's features
    (ASMK over ALIKED with the same settings): then one extraction serves both roles."""
    part = global_method.local_method()
    return part is not None and part.cache_key() == local_method.cache_key()


@dataclass
class FeatureSet:
    """Features of one method for the files that worked, plus the reason each other file failed."""

    method: Method
    paths: list[str]
    features: list[Any]
    errors: dict[str, str] = field(default_factory=dict)
    content_keys: list[str] = field(default_factory=list)  # content hash of each path's file
    _positions: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def without(self, excluded: Container[str]) -> FeatureSet:
        """The same set less the given paths (e.g. files that failed for another method)."""
        keep = [i for i, path in enumerate(self.paths) if path not in excluded]
        if len(keep) == len(self.paths):
            return self
        return FeatureSet(self.method, [self.paths[i] for i in keep],
                          [self.features[i] for i in keep], self.errors,
                          [self.content_keys[i] for i in keep])

    def feature_of(self, path: str) -> Any:
        if len(self._positions) != len(self.paths):
            self._positions = {p: i for i, p in enumerate(self.paths)}
        return self.features[self._positions[path]]


class SearchIndex:
    """What a global descriptor's `search_index` returns: scores of a query against every
    gallery item (by position), and the best k of them."""

    size: int = 0

    def scores(self, query: Feature) -> np.ndarray:
        raise NotImplementedError

    def search(self, query: Feature, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best gallery positions and their scores, best first."""
        scores = self.scores(query)
        k = min(k, len(scores))
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return top, scores[top]


class VectorIndex(SearchIndex):
    """Exact cosine search over unit vectors: one matrix product per query."""

    def __init__(self, vectors: Sequence[np.ndarray]):
        self.vectors = normalise(np.stack(vectors)) if len(vectors) else np.zeros((0, 1))
        self.size = len(self.vectors)

    def scores(self, query: np.ndarray) -> np.ndarray:
        if not self.size:
            return np.zeros(0)
        return self.vectors @ normalise(np.asarray(query)[None])[0]


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero): the one normalisation we use."""
    vectors = np.asarray(vectors, np.float32)
    return vectors / (np.linalg.norm(vectors, axis=-1, keepdims=True) + 1e-12)


# A numeric array is stored as a few header bytes and its raw contents, and a dict of them as
# a count and its named arrays one after another. Going through np.savez (a zip archive) cost
# ~0.2 ms of Python per feature, more than an 8x8 hash takes to compute, and it holds the GIL
# that the extraction threads share; reading a reference's local features back from a zip took
# ~4 ms, paid for every verified reference of every query. Entries written as .npz by earlier
# versions still decode.
_ARRAY_MAGIC = b"LKA1"
_DICT_MAGIC = b"LKD1"


def _plain_array(value) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


def _encode_array(array: np.ndarray) -> bytes:
    dtype = array.dtype.str.encode("ascii")
    header = struct.pack(f"<B{len(dtype)}sB{array.ndim}Q", len(dtype), dtype, array.ndim,
                         *array.shape)
    return _ARRAY_MAGIC + header + np.ascontiguousarray(array).tobytes()


def encode_arrays(feature: np.ndarray | dict[str, np.ndarray]) -> bytes:
    """Serialise an array or a dict of arrays (no pickle, so a cache cannot run code)."""
    if _plain_array(feature):
        return _encode_array(feature)
    if isinstance(feature, dict) and all(_plain_array(v) and isinstance(k, str)
                                         for k, v in feature.items()):
        parts = [_DICT_MAGIC, struct.pack("<I", len(feature))]
        for name, array in feature.items():
            encoded_name, encoded = name.encode("utf-8"), _encode_array(array)
            parts += [struct.pack("<HQ", len(encoded_name), len(encoded)), encoded_name,
                      encoded]
        return b"".join(parts)
    buffer = io.BytesIO()  # strings and other arrays numpy can save without pickle
    if isinstance(feature, dict):
        np.savez(buffer, **feature)
    else:
        np.savez(buffer, __array__=feature)
    return buffer.getvalue()


def _decode_array(data: bytes | memoryview, start: int = 0, end: int | None = None
                  ) -> np.ndarray:
    end = len(data) if end is None else end
    (dtype_length,) = struct.unpack_from("<B", data, start + 4)
    dtype = np.dtype(bytes(data[start + 5:start + 5 + dtype_length]).decode("ascii"))
    (ndim,) = struct.unpack_from("<B", data, start + 5 + dtype_length)
    shape = struct.unpack_from(f"<{ndim}Q", data, start + 6 + dtype_length)
    offset = start + 6 + dtype_length + 8 * ndim
    if end - offset != dtype.itemsize * math.prod(shape):
        raise ValueError("stored array has the wrong length")
    return np.frombuffer(data, dtype, count=math.prod(shape), offset=offset
                         ).reshape(shape).copy()


def _decode_dict(data: bytes) -> dict[str, np.ndarray]:
    (count,) = struct.unpack_from("<I", data, 4)
    position, out = 8, {}
    for _ in range(count):
        name_length, length = struct.unpack_from("<HQ", data, position)
        position += 10
        name = data[position:position + name_length].decode("utf-8")
        position += name_length
        if data[position:position + 4] != _ARRAY_MAGIC or position + length > len(data):
            raise ValueError("stored arrays are cut short")
        out[name] = _decode_array(data, position, position + length)
        position += length
    if position != len(data):
        raise ValueError("stored arrays have the wrong length")
    return out


def decode_arrays(data: bytes) -> np.ndarray | dict[str, np.ndarray]:
    """What `encode_arrays` wrote (or an earlier version's .npz); ValueError if damaged."""
    try:
        if data[:4] == _ARRAY_MAGIC:
            return _decode_array(data)
        if data[:4] == _DICT_MAGIC:
            return _decode_dict(data)
    except (struct.error, UnicodeDecodeError, TypeError):
        raise ValueError("stored arrays are cut short or damaged") from None
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        if archive.files == ["__array__"]:
            return archive["__array__"]
        return {key: archive[key] for key in archive.files}
