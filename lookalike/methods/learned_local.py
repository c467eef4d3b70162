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

**Views** (issue 24: small and distant landmarks). With `views="whole"` (the default) a photo
is described once, at `max_side`. With `views="tiles"` it is described five times: whole, and
as 2 x 2 overlapping tiles (each covering `TILE_SPAN` of the photo's width and height, so
neighbours overlap by a fifth of the photo) each at `max_side` as well (upsampled where the
photo is smaller): the tiles see the photo at 1/TILE_SPAN = 1.67x the whole view's scale,
with `max_keypoints` each. All views' keypoints
are kept in the *whole* photo's frame (the `size` and `scale` of the whole view), with a
per-keypoint `view` id (0 = whole) and each view's frame (`view_frames`: x0, y0, factor, width,
height: whole = (x0, y0) + tile / factor), so the feature is still one photo: ASMK aggregates
all its descriptors, MNN + MAGSAC++ verify against all of them and the region comes out in the
photo's frame. Mutual nearest neighbours take the ratio test within the best neighbour's view
(the same corner described by the whole view and a tile is not a confuser); LightGlue, which
needs each view in its own frame, matches the query against the whole view and the
`glue_views - 1` tiles that hold the most mutual nearest neighbours. A gallery photo is
described with `views`, a query with `query_views` (`query_method`).
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
VIEWS = ("whole", "tiles")
TILE_SPAN = 0.6  # a tile covers this share of the photo's width and of its height


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


def tile_boxes(size: tuple[int, int], span: float = TILE_SPAN) -> list[tuple[int, int, int, int]]:
    """The 2 x 2 overlapping tiles (left, top, right, bottom) of an image of `size`, each
    `span` of its width and height, at its corners."""
    width, height = size
    tile_w, tile_h = max(1, round(width * span)), max(1, round(height * span))
    return [(left, top, left + tile_w, top + tile_h)
            for top in (0, height - tile_h) for left in (0, width - tile_w)]


def one_per_keypoint(matches: np.ndarray) -> np.ndarray:
    """Matches (K x 2) less those whose keypoint in A or in B an earlier row already uses."""
    _, first_a = np.unique(matches[:, 0], return_index=True)
    kept = matches[np.sort(first_a)]
    _, first_b = np.unique(kept[:, 1], return_index=True)
    return kept[np.sort(first_b)].astype(np.int64)


def views_of(feature: dict[str, np.ndarray]) -> np.ndarray:
    """Each keypoint's view (0 = the whole photo); all 0 for a feature of one view."""
    view = feature.get("view")
    return np.zeros(len(feature["keypoints"]), np.int8) if view is None else view


def split_view(feature: dict[str, np.ndarray], view: int) -> tuple[dict, np.ndarray]:
    """One view of a feature as a feature of its own (keypoints in that view's pixels, its
    size), and the positions of its keypoints in the whole feature."""
    positions = np.flatnonzero(views_of(feature) == view)
    if "view_frames" not in feature:
        return feature, positions
    x0, y0, factor, width, height = (float(v) for v in feature["view_frames"][view])
    keypoints = (feature["keypoints"][positions] - np.array([x0, y0], np.float32)) * factor
    return ({"keypoints": keypoints.astype(np.float32),
             "descriptors": feature["descriptors"][positions],
             "scores": feature["scores"][positions],
             "size": np.array([round(width), round(height)], np.int32)}, positions)


def at_side(image: Image.Image, side: int) -> Image.Image:
    """The image scaled (up or down) so that its long side is `side`: a tile is described
    at the whole view's size, so the network sees its content 1/TILE_SPAN times larger even
    where the photo itself is small (Oxford's are 1,024 px)."""
    scale = side / max(image.size)
    if abs(scale - 1.0) < 1e-6:
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
    # How a gallery photo is described: "whole" (once) or "tiles" (whole + 2 x 2 tiles at
    # 1.67x the resolution; see the module's doc); and how a query photo is (`query_method`).
    views: str = "whole"
    query_views: str = "whole"
    glue_views: int = 2  # LightGlue against a tiled photo: its whole view + the best tiles
    search_views: str = "all"  # the views its ASMK ranker searches: "all" or "whole"

    def __post_init__(self):
        for name in ("views", "query_views"):
            if getattr(self, name) not in VIEWS:
                raise ValueError(f"{self.name}: {name} must be one of {', '.join(VIEWS)}, "
                                 f"not {getattr(self, name)!r}")
        if self.search_views not in ("all", "whole"):
            raise ValueError(f"{self.name}: search_views must be all or whole, "
                             f"not {self.search_views!r}")
        if self.glue_views < 1:
            raise ValueError(f"{self.name}: glue_views must be at least 1")
        if self.matcher not in MATCHERS:
            raise ValueError(f"{self.name}: matcher must be one of {', '.join(MATCHERS)}, "
                             f"not {self.matcher!r}")
        self.runtime = self.runtime or self.runtimes[0]
        if self.runtime not in self.runtimes:
            raise ValueError(f"{self.name}: runtime must be one of {', '.join(self.runtimes)}, "
                             f"not {self.runtime!r}")

    # -- extraction ------------------------------------------------------------------------
    def load_options(self) -> LoadOptions:
        side = self.max_side if self.views == "whole" else int(np.ceil(self.max_side / TILE_SPAN))
        return LoadOptions(gray=self.gray, min_long_side=side)

    def query_method(self) -> LearnedLocal:
        if self.views == self.query_views:
            return self
        return dataclasses.replace(self, views=self.query_views)

    def score_key(self) -> str:
        """Pair results depend on the features and the matcher, not on the shortlist size
        (nor, with mutual nearest neighbours, on LightGlue's settings; nor, where every photo
        is described whole, on the views' settings: those keys stay as they were)."""
        unused = {"shortlist", "search_views"} | (
            {"glue_adaptive", "glue_keypoints", "glue_views"} if self.matcher != "lightglue"
            else set())
        if self.views == self.query_views == "whole":
            unused |= {"views", "query_views", "glue_views"}
        settings = {key: value for key, value in self.settings().items() if key not in unused}
        spec = {"name": self.name, "version": self.version, "settings": settings}
        return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def cache_settings(self):
        from lookalike.nets.learned import weights_digest

        settings = {"network": self.network, "weights": weights_digest(self.network),
                    "gray": self.gray, "max_side": self.max_side,
                    "max_keypoints": self.max_keypoints, "runtime": self.runtime}
        if self.views != "whole":  # cache keys of whole views stay as they were
            settings.update(views=self.views, tile_span=TILE_SPAN)
        return settings

    def calibration_settings(self):
        """Views change how much of a photo is described, not what the evidence means: a
        calibration fitted on whole views serves tiles (docs/notes-views.md measures it)."""
        return {key: value for key, value in self.cache_settings().items()
                if key not in ("views", "tile_span")}

    def extract(self, image: Image.Image) -> dict[str, np.ndarray]:
        original = image.info.get("original_size", image.size)
        image = image.convert("RGB")
        small = bounded(image, self.max_side)
        whole = self._describe(small)
        feature = {**whole, "size": np.array(small.size, np.int32),
                   "scale": np.array([small.width / max(1, original[0])], np.float32)}
        if self.views == "whole":
            return feature
        parts, frames = [whole], [[0.0, 0.0, 1.0, small.width, small.height]]
        for box in tile_boxes(image.size):
            tile = at_side(image.crop(box), self.max_side)
            found = self._describe(tile)
            # tile pixels -> the whole view's: the crop's origin and its scale in the whole
            to_whole = small.width / image.width
            factor = tile.width / (box[2] - box[0]) / to_whole  # tile pixels per whole pixel
            x0, y0 = box[0] * to_whole, box[1] * to_whole
            found["keypoints"] = (found["keypoints"] / np.float32(factor)
                                  + np.array([x0, y0], np.float32)).astype(np.float32)
            parts.append(found)
            frames.append([x0, y0, factor, tile.width, tile.height])
        for name in ("keypoints", "descriptors", "scores"):
            feature[name] = np.concatenate([part[name] for part in parts])
        feature["view"] = np.concatenate([np.full(len(part["scores"]), i, np.int8)
                                          for i, part in enumerate(parts)])
        feature["view_frames"] = np.array(frames, np.float32)
        return feature

    def _describe(self, image: Image.Image) -> dict[str, np.ndarray]:
        """Keypoints (in `image`'s pixels), descriptors and scores of one view, best first."""
        pixels = np.asarray(image, np.float32) / np.float32(255.0)
        keypoints, descriptors, scores = self.detect(pixels)
        order = np.argsort(-scores, kind="stable")[:self.max_keypoints]
        return {"keypoints": keypoints[order].astype(np.float32),
                "descriptors": descriptors[order].astype(np.float16),
                "scores": scores[order].astype(np.float16)}

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
            return self.mnn(a, b)
        return self.glue_matches(a, b)

    def mnn(self, a: dict, b: dict) -> np.ndarray:
        """Mutual nearest neighbours + ratio test (within the neighbour's view)."""
        return mutual_nearest(a["descriptors"], b["descriptors"], self.ratio,
                              b.get("view"))

    def glue_matches(self, a: dict, b: dict) -> np.ndarray:
        return self.glue_many([(a, b)])[0]

    def glue_many(self, pairs: list[tuple[dict, dict]]) -> list[np.ndarray]:
        """LightGlue's tentative matches (K x 2) of each (A, B) pair. A photo of several
        views goes in as its whole view and its `glue_views - 1` tiles with the most mutual
        nearest neighbours, each in its own frame (LightGlue reads keypoints against the
        image's size); their matches come back as positions in the whole feature, one per
        keypoint (the first view's where views disagree)."""
        if all("view" not in a and "view" not in b for a, b in pairs):
            return self._glue_batch(pairs)
        jobs, owners = [], []
        for index, (a, b) in enumerate(pairs):
            for view_a, view_b in self._glue_view_pairs(a, b):
                part_a, at_a = split_view(a, view_a)
                part_b, at_b = split_view(b, view_b)
                jobs.append((part_a, part_b))
                owners.append((index, at_a, at_b))
        found: list[list[np.ndarray]] = [[] for _ in pairs]
        for (index, at_a, at_b), matches in zip(owners, self._glue_batch(jobs)):
            if len(matches):
                found[index].append(np.stack([at_a[matches[:, 0]], at_b[matches[:, 1]]], 1))
        return [one_per_keypoint(np.concatenate(parts)) if parts else np.zeros((0, 2), np.int64)
                for parts in found]

    def _glue_view_pairs(self, a: dict, b: dict) -> list[tuple[int, int]]:
        """Which views of A and B LightGlue matches: whole with whole, and (for the side of
        several views) the whole of the other side with its best tiles by mutual nearest
        neighbours."""
        pairs = [(0, 0)]
        for side, tiled in ((1, b), (0, a)):
            if "view" not in tiled or self.glue_views < 2:
                continue
            other = a if side == 1 else b
            whole_other, _ = split_view(other, 0)
            matches = mutual_nearest(whole_other["descriptors"], tiled["descriptors"],
                                     self.ratio, tiled["view"])
            counts = np.bincount(tiled["view"][matches[:, 1]].astype(np.int64),
                                 minlength=len(tiled["view_frames"]))[1:]
            best = [int(v) + 1 for v in np.argsort(-counts, kind="stable")
                    [:self.glue_views - 1] if counts[v] > 0]
            pairs += [(0, view) if side == 1 else (view, 0) for view in best]
        return pairs

    def _glue_batch(self, pairs: list[tuple[dict, dict]]) -> list[np.ndarray]:
        """LightGlue's tentative matches (K x 2) of each (A, B) pair of single views. On ONNX
        Runtime, adaptive: the layers step one by one with early exit and pruning
        (lookalike.nets.runtime.run_adaptive); else every layer, several pairs to a call.
        In eager PyTorch, kornia's LightGlue pair by pair."""
        if self.glue_keypoints > 0:  # a view's keypoints are best score first: a prefix
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
                          max_keypoints=self.max_keypoints, device=self.device,
                          views=self.views, query_views=self.query_views,
                          search_views=self.search_views)

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
