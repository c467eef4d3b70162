"""Learned local features as a local matcher: detect and describe once, match per pair.

Why: RootSIFT and AKAZE find as many chance inliers on unrelated photos as on a night shot,
an aerial view or a zoom of the same landmark. Learned detectors and descriptors (ALIKED,
DISK, XFeat), trained on photos of the same places under different light and viewpoints,
keep matching there. `LearnedLocal` is the part they share; each network's method is a small
subclass in `lookalike/methods/` that names its network and its LightGlue weights.

A pair is matched either by mutual nearest neighbours with a ratio test (`matcher="mnn"`,
~10 ms) or by LightGlue (`matcher="lightglue"`, better on hard views), and the tentative
matches then go through MAGSAC++ (`lookalike.matching.geometry`). LightGlue runs on ONNX
Runtime as designed, adaptive (lookalike.nets.runtime.run_adaptive: it stops after the layer
where enough points are confident and drops points sure not to match), and still costs far
more than MNN, so a pipeline verifies a shortlist with it, never every pair, and hands the
shortlist over at once (`match_many`).

A feature holds keypoints (x, y in the pixels of the image bounded to `max_side`, 800 by
default), unit descriptors (float16 on disk), detection scores, the feature image's size and its scale to
the original photo.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import zlib
from typing import ClassVar

import numpy as np
from PIL import Image

from lookalike.features.contract import LOCAL, LOCAL_MATCHER, Method
from lookalike.imaging.loading import LoadOptions
from lookalike.matching.geometry import Geometry, Match, mutual_nearest, no_match, verify_matches

MATCHERS = ("mnn", "lightglue")


def fingerprint(feature: dict[str, np.ndarray]) -> tuple[int, int]:
    """A number for a local feature that is the same in every process (its keypoints' CRC)."""
    keypoints = np.ascontiguousarray(feature["keypoints"])
    return len(keypoints), zlib.crc32(keypoints.tobytes())


def bounded(image: Image.Image, max_side: int) -> Image.Image:
    """The image scaled down (never up) so that its long side is at most `max_side`."""
    scale = max_side / max(image.size)
    if scale >= 1.0:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


@dataclasses.dataclass
class LearnedLocal(Method):
    """Base of the learned local matchers; subclasses set `network` and `glue`."""

    feature_kind: ClassVar[str] = LOCAL
    role: ClassVar[str] = LOCAL_MATCHER
    network: ClassVar[str] = ""  # weights name in lookalike.nets.learned.WEIGHT_FILES
    glue: ClassVar[str] = ""  # LightGlue weights name for this descriptor
    batch_size: ClassVar[int] = 4  # its own pass: photos decode in threads, the network runs here
    cache_scores: ClassVar[bool] = True  # for `score_matrix` of all pairs (no codebook)
    max_side: int = 800
    max_keypoints: int = 1024
    matcher: str = "mnn"
    ratio: float = 0.9  # mutual nearest neighbours: Lowe's ratio test (1.0 = none)
    device: str = "auto"
    shortlist: int = 30  # a gallery's scores: each query verifies its ASMK top `shortlist`
    # LightGlue as designed: it stops after the layer where enough points are confident and
    # drops points sure not to match between layers (kornia's defaults); False runs every
    # layer on every point (on ONNX Runtime: one graph, several pairs a call).
    glue_adaptive: bool = True
    glue_keypoints: int = 0  # LightGlue reads each side's best this many keypoints; 0 = all
    # Where the networks run: "onnx" (ONNX Runtime, graphs exported once; no torch at run
    # time) or "torch" (kornia's eager model). "" = the first of the class's `runtimes`.
    runtime: str = ""
    runtimes: ClassVar[tuple[str, ...]] = ("torch",)  # those this network has, default first

    def __post_init__(self):
        if self.matcher not in MATCHERS:
            raise ValueError(f"{self.name}: matcher must be one of {', '.join(MATCHERS)}, "
                             f"not {self.matcher!r}")
        self.runtime = self.runtime or self.runtimes[0]
        if self.runtime not in self.runtimes:
            raise ValueError(f"{self.name}: runtime must be one of {', '.join(self.runtimes)}, "
                             f"not {self.runtime!r}")

    # -- extraction ------------------------------------------------------------------------
    def load_options(self) -> LoadOptions:
        return LoadOptions(gray=self.gray, min_long_side=self.max_side)

    def score_key(self) -> str:
        """Pair results depend on the features and the matcher, not on the shortlist size
        (nor, with mutual nearest neighbours, on LightGlue's settings)."""
        unused = {"shortlist"} | ({"glue_adaptive", "glue_keypoints"}
                                  if self.matcher != "lightglue" else set())
        settings = {key: value for key, value in self.settings().items() if key not in unused}
        spec = {"name": self.name, "version": self.version, "settings": settings}
        return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def cache_settings(self):
        from lookalike.nets.learned import weights_digest

        return {"network": self.network, "weights": weights_digest(self.network),
                "gray": self.gray, "max_side": self.max_side,
                "max_keypoints": self.max_keypoints, "runtime": self.runtime}

    def extract(self, image: Image.Image) -> dict[str, np.ndarray]:
        original = image.info.get("original_size", image.size)
        small = bounded(image.convert("RGB"), self.max_side)
        pixels = np.asarray(small, np.float32) / np.float32(255.0)
        keypoints, descriptors, scores = self.detect(pixels)
        order = np.argsort(-scores, kind="stable")[:self.max_keypoints]
        return {
            "keypoints": keypoints[order].astype(np.float32),
            "descriptors": descriptors[order].astype(np.float16),
            "scores": scores[order].astype(np.float16),
            "size": np.array(small.size, np.int32),
            "scale": np.array([small.width / max(1, original[0])], np.float32),
        }

    def detect(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keypoints N x 2, unit descriptors N x D, scores N) of one H x W x 3 float32 image
        in [0, 1], on this method's runtime."""
        if self.runtime == "onnx":
            return self.detect_onnx(pixels)
        import torch

        from lookalike.nets.threads import configure_threads, resolve_device

        # Every pass on all cores: faiss (ASMK) leaves OpenMP at one thread, and the network's
        # keypoints differ with the thread count, so a photo would not give one answer.
        # (ONNX Runtime's sessions keep the count they were made with.)
        configure_threads()
        tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]
        with torch.inference_mode():
            return self.detect_torch(tensor.to(resolve_device(self.device)))

    def detect_onnx(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`detect` on ONNX Runtime (for networks whose `runtimes` include "onnx")."""
        raise NotImplementedError(f"{self.name} has no ONNX graph")

    def detect_torch(self, tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`detect` in eager PyTorch, of one 1 x 3 x H x W tensor."""
        raise NotImplementedError

    def encode(self, feature: dict[str, np.ndarray]) -> bytes:
        """Descriptors as float16 (half the bytes; unit vectors need no more precision)."""
        return super().encode(dict(feature, descriptors=np.asarray(feature["descriptors"],
                                                                    np.float16)))

    def decode(self, data: bytes) -> dict[str, np.ndarray]:
        """Descriptors are float16 on disk; match in float32 without converting per pair."""
        feature = super().decode(data)
        feature["descriptors"] = np.asarray(feature["descriptors"], np.float32)
        return feature

    # -- matching --------------------------------------------------------------------------
    def geometry(self) -> Geometry:
        """Verification thresholds scaled with the feature image (measured at 800 px)."""
        factor = self.max_side / 800
        return Geometry(threshold_h=6.0 * factor, threshold_f=2.0 * factor)

    def tentative(self, a: dict, b: dict) -> np.ndarray:
        if self.matcher == "mnn":
            return mutual_nearest(a["descriptors"], b["descriptors"], self.ratio)
        return self.glue_matches(a, b)

    def glue_matches(self, a: dict, b: dict) -> np.ndarray:
        return self.glue_many([(a, b)])[0]

    def glue_many(self, pairs: list[tuple[dict, dict]]) -> list[np.ndarray]:
        """LightGlue's tentative matches (K x 2) of each (A, B) pair. On ONNX Runtime,
        adaptive: the layers step one by one with early exit and pruning
        (lookalike.nets.runtime.run_adaptive); else every layer, several pairs to a call.
        In eager PyTorch, kornia's LightGlue pair by pair."""
        if self.glue_keypoints > 0:  # features hold keypoints best score first: a prefix
            pairs = [(self._best(a), self._best(b)) for a, b in pairs]
        if self.runtime == "onnx":
            if self.glue_adaptive:
                from lookalike.nets.runtime import run_adaptive

                return run_adaptive(self.glue, pairs)
            from lookalike.nets.runtime import run_lightglue

            return run_lightglue(self.glue, pairs)
        return [self._glue_torch(a, b) for a, b in pairs]

    def _best(self, feature: dict) -> dict:
        return dict(feature, keypoints=feature["keypoints"][:self.glue_keypoints],
                    descriptors=feature["descriptors"][:self.glue_keypoints])

    def _glue_torch(self, a: dict, b: dict) -> np.ndarray:
        import torch

        from lookalike.nets.learned import matcher
        from lookalike.nets.threads import resolve_device

        if len(a["keypoints"]) < 2 or len(b["keypoints"]) < 2:
            return np.zeros((0, 2), np.int64)
        device = resolve_device(self.device)
        model = (matcher(self.glue) if self.glue_adaptive else _full_depth(self.glue)).to(device)

        def side(feature):
            return {"keypoints": torch.from_numpy(np.asarray(feature["keypoints"], np.float32))
                    [None].to(device),
                    "descriptors": torch.from_numpy(np.asarray(feature["descriptors"],
                                                               np.float32))[None].to(device),
                    "image_size": torch.from_numpy(feature["size"].astype(np.float32))
                    [None].to(device)}

        with torch.inference_mode():
            out = model({"image0": side(a), "image1": side(b)})
        return out["matches"][0].cpu().numpy().astype(np.int64)

    def match(self, a: dict, b: dict) -> Match:
        """Verified matches of A and B, always computed from the same side of the pair (the
        one with the smaller fingerprint), so that A-B and B-A give one answer whatever the
        query and whichever worker meets the pair first."""
        if fingerprint(b) < fingerprint(a):
            return self._match(b, a).swapped()
        return self._match(a, b)

    def match_many(self, query: dict, candidates) -> list[Match]:
        """`match` of the query with each candidate; with LightGlue, the pairs go through
        the network in batches (`glue_many`), each from the same side as `match` takes it."""
        if self.matcher != "lightglue":
            return [self.match(query, candidate) for candidate in candidates]
        key = fingerprint(query)
        swap = [fingerprint(candidate) < key for candidate in candidates]
        pairs = [(candidate, query) if turn else (query, candidate)
                 for candidate, turn in zip(candidates, swap)]
        results = []
        for (a, b), turn, tentative in zip(pairs, swap, self.glue_many(pairs)):
            match = self._verified(a, b, tentative)
            results.append(match.swapped() if turn else match)
        return results

    def _match(self, a: dict, b: dict) -> Match:
        return self._verified(a, b, self.tentative(a, b))

    def _verified(self, a: dict, b: dict, pairs: np.ndarray) -> Match:
        if len(pairs) == 0:
            return no_match()
        return verify_matches(pairs, a["keypoints"], b["keypoints"], a["size"], b["size"],
                              self.geometry())

    def score(self, a: dict, b: dict) -> float:
        return self.match(a, b).score

    # -- a gallery's scores, as retrieval systems compute them -----------------------------
    def gallery_ranker(self) -> Method | None:
        """ASMK over this method's own descriptors, or None when no codebook is shipped
        for its network (then every pair is verified)."""
        from lookalike.features.registry import get_method
        from lookalike.matching import asmk

        if not asmk.shipped_codebook(f"{self.network}-1024").is_file():
            return None
        return get_method("asmk", local=self.name, gray=self.gray, max_side=self.max_side,
                          max_keypoints=self.max_keypoints, device=self.device)

    def gallery_shortlist(self) -> int:
        return self.shortlist


@functools.cache
def _full_depth(name: str):
    """kornia's LightGlue `name` with early exit and pruning off (every layer, every point)."""
    import copy

    from lookalike.nets.learned import matcher

    model = copy.deepcopy(matcher(name))
    model.conf.depth_confidence = model.conf.width_confidence = -1
    return model
