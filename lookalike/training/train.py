"""`lookalike train`: adapt AugNet to a photo collection without labels, on a CPU, in minutes.

Why this design: a ResNet50 forward pass costs seconds per photo on a small shared CPU, so the
network is run once per photo (and once per augmented view) up to its last feature map, frozen
and with BatchNorm in eval mode, and only the projection head (`pre.fc`, 2048 -> 768, followed
by tanh) is trained on those cached maps. Epochs then cost milliseconds, and the saved model
keeps AugNet's parameter names, so `--weights model.pt` works wherever `augnet` does.

What the head learns from, with no labels:
- views that share only the landmark: photos whose RootSIFT matches fit one geometry (the
  `verified` method's MAGSAC++ homography / fundamental matrix) are positives for each other;
  a view is the whole photo or the region around the inliers (a crop of the feature map);
- views of one photo: multi-scale crops of its feature map, and augmented copies of the photo
  (crop, rotation, colour jitter, grayscale, blur, cutout) run through the frozen network.
The loss is InfoNCE (NT-Xent) over a batch; known positives of other rows are masked out.

Files: OUTPUT (the model, {"model": state_dict, "lookalike": info}), OUTPUT.prep.pt (the
feature maps and verified pairs, written once, reused by --resume) and OUTPUT.ckpt (head,
optimizer and random state, written atomically after every epoch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from lookalike.features.progress import progress_bar
from lookalike.imaging.loading import ImageLoadError, LoadOptions, find_images, load_image
from lookalike.methods.augnet import IMAGENET_MEAN, IMAGENET_STD, resize_short_side
from lookalike.nets.augnet import AugNet, load_state_dict, stock_weights_path
from lookalike.nets.threads import configure_threads
from lookalike.training.settings import TrainSettings

STRIDE = 32  # pixels per cell of ResNet50's last feature map


@dataclass
class Pair:
    """Two photos verified to show the same scene, with the inlier region in each (map cells)."""

    a: int
    b: int
    box_a: tuple[int, int, int, int]  # y0, y1, x0, x1 on photo a's feature map
    box_b: tuple[int, int, int, int]


@dataclass
class Prepared:
    """Frozen-network output for a collection: what every epoch trains on."""

    paths: list[str]
    maps: list[torch.Tensor]  # per photo: float16 (2048, H, W) at `short_side`
    views: list[list[torch.Tensor]]  # per photo: augmented copies' maps
    pairs: list[Pair]
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainResult:
    output: str
    epochs_done: int
    losses: list[float]  # mean training loss of each epoch, from the first
    photos: int
    pairs: int
    seconds: float
    errors: dict[str, str]


# -- augmentation ----------------------------------------------------------------------------------
def normalise(rgb: np.ndarray) -> np.ndarray:
    """uint8 HWC RGB -> float32 CHW, ImageNet mean/std (the augnet method's preprocessing)."""
    scaled = rgb.astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(((scaled - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))


def augment(rgb: np.ndarray, rng: np.random.Generator, side: int) -> np.ndarray:
    """One augmented copy (CHW float32): what should not change the embedding, changed.

    Multi-scale crop, rotation, colour jitter, grayscale, blur and cutout: the landmark stays,
    its scale, framing, light and the clutter around it vary.
    """
    height, width = rgb.shape[:2]
    area = rng.uniform(0.3, 1.0) * height * width
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    crop_h = max(1, min(height, round(math.sqrt(area / aspect))))
    crop_w = max(1, min(width, round(math.sqrt(area * aspect))))
    y, x = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    crop = rgb[y:y + crop_h, x:x + crop_w]
    scale = side / min(crop_h, crop_w)
    size = (max(side, round(crop_w * scale)), max(side, round(crop_h * scale)))
    out = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    angle = rng.uniform(-20, 20)
    rotation = cv2.getRotationMatrix2D((size[0] / 2, size[1] / 2), angle, 1.0)
    out = cv2.warpAffine(out, rotation, size, borderMode=cv2.BORDER_REFLECT_101)
    pixels = out.astype(np.float32) / 255.0
    pixels = pixels * rng.uniform(0.6, 1.4)  # brightness
    mean = pixels.mean()
    pixels = (pixels - mean) * rng.uniform(0.6, 1.4) + mean  # contrast
    gray = pixels @ np.array([0.299, 0.587, 0.114], np.float32)
    saturation = 0.0 if rng.random() < 0.2 else rng.uniform(0.5, 1.5)  # 20 % grayscale
    pixels = gray[..., None] + (pixels - gray[..., None]) * saturation
    if rng.random() < 0.3:
        pixels = cv2.GaussianBlur(pixels, (0, 0), rng.uniform(0.5, 2.0))
    pixels = np.clip(pixels, 0.0, 1.0)
    chw = normalise((pixels * 255.0).astype(np.uint8))
    for _ in range(rng.integers(0, 3)):  # cutout: 0-2 blanked boxes (zero = the mean colour)
        box_h = rng.integers(size[1] // 8, size[1] // 3 + 1)
        box_w = rng.integers(size[0] // 8, size[0] // 3 + 1)
        top, left = rng.integers(0, size[1] - box_h + 1), rng.integers(0, size[0] - box_w + 1)
        chw[:, top:top + box_h, left:left + box_w] = 0.0
    return chw


# -- preparation: frozen network and verified pairs ------------------------------------------------
def base_model() -> AugNet:
    """imgsim's AugNet in eval mode (BatchNorm statistics stay as trained)."""
    model = AugNet()
    model.load_state_dict(load_state_dict(stock_weights_path()))
    return model.eval()


def feature_map(model: AugNet, chw: np.ndarray) -> torch.Tensor:
    with torch.inference_mode():
        return model.pre.feature_map(torch.from_numpy(chw)[None])[0].to(torch.float16)


def inlier_box(points: np.ndarray, original: tuple[int, int], short_side: int,
               shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Bounding box of inlier points (original pixels) in cells of the feature map."""
    factor = short_side / min(original) / STRIDE
    (x0, y0), (x1, y1) = points.min(0) * factor, points.max(0) * factor
    rows, cols = shape
    top, left = min(rows - 1, max(0, int(y0))), min(cols - 1, max(0, int(x0)))
    bottom = max(top + 1, min(rows, math.ceil(y1) + 1))
    right = max(left + 1, min(cols, math.ceil(x1) + 1))
    return top, bottom, left, right


def candidate_pairs(maps: list[torch.Tensor], model: AugNet,
                    settings: TrainSettings) -> list[tuple[int, int]]:
    """All pairs for small collections; else each photo's nearest neighbours by stock AugNet."""
    n = len(maps)
    if n <= settings.all_pairs_limit:
        return [(a, b) for a in range(n) for b in range(a + 1, n)]
    with torch.inference_mode():
        pooled = torch.stack([m.float().mean((1, 2)) for m in maps])
        vectors = F.normalize(model.act(model.pre.fc(pooled)), dim=1)
        similar = vectors @ vectors.T
        similar.fill_diagonal_(-2.0)
        nearest = similar.topk(min(settings.neighbours, n - 1), dim=1).indices.tolist()
    return sorted({(min(a, b), max(a, b)) for a, row in enumerate(nearest) for b in row})


def verified_pairs(paths: list[str], maps: list[torch.Tensor], sizes: list[tuple[int, int]],
                   model: AugNet, settings: TrainSettings, cache, jobs: int,
                   quiet: bool) -> list[Pair]:
    """Photos that show the same scene, found by geometric verification (no labels)."""
    from lookalike.features.extract import extract_features
    from lookalike.methods.verified import Verified, verify_pair

    method = Verified()
    local = extract_features(method, paths, cache, jobs, quiet)
    features = {path: local.feature_of(path) for path in local.paths}
    candidates = candidate_pairs(maps, model, settings)
    pairs = []
    bar = progress_bar(len(candidates), "verifying pairs", quiet, unit="pair")
    for a, b in candidates:
        bar.update(1)
        if paths[a] not in features or paths[b] not in features:
            continue
        fa, fb = features[paths[a]], features[paths[b]]
        result = verify_pair(fa, fb, method.ratio)
        if not result.verified or len(result.points_a) < 4:
            continue
        points_a = result.points_a / float(fa["scale"][0])
        points_b = result.points_b / float(fb["scale"][0])
        pairs.append(Pair(
            a, b,
            inlier_box(points_a, sizes[a], settings.short_side, tuple(maps[a].shape[1:])),
            inlier_box(points_b, sizes[b], settings.short_side, tuple(maps[b].shape[1:])),
        ))
    bar.close()
    return pairs


def prepare(paths: Sequence[str], settings: TrainSettings, cache=None, jobs: int = 1,
            quiet: bool = False) -> Prepared:
    """Run the frozen network over each photo and its augmented copies; verify photo pairs."""
    configure_threads()
    model = base_model()
    rng = np.random.default_rng(settings.seed)
    kept, maps, views, sizes, errors = [], [], [], [], {}
    bar = progress_bar(desc="feature maps", quiet=quiet, unit="img", iterable=paths)
    for path in bar:
        try:
            image = load_image(path, LoadOptions())
        except ImageLoadError as error:
            errors[path] = error.reason
            continue
        rgb = np.asarray(image.convert("RGB"))
        kept.append(path)
        sizes.append(image.info.get("original_size", image.size))
        maps.append(feature_map(model, normalise(resize_short_side(rgb, settings.short_side))))
        views.append([feature_map(model, augment(rgb, rng, settings.view_side))
                      for _ in range(settings.views)])
    bar.close()
    pairs = verified_pairs(kept, maps, sizes, model, settings, cache, jobs, quiet)
    return Prepared(kept, maps, views, pairs, errors)


# -- training the head -----------------------------------------------------------------------------
def pooled(cells: torch.Tensor) -> torch.Tensor:
    return cells.float().mean((1, 2))


def random_crop(cells: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A crop of 35-100 % of the feature map's area: a framing the photographer might choose."""
    _, rows, cols = cells.shape
    area, aspect = rng.uniform(0.35, 1.0), math.exp(rng.uniform(-0.4, 0.4))
    h = max(1, min(rows, round(rows * math.sqrt(area) * aspect)))
    w = max(1, min(cols, round(cols * math.sqrt(area) / aspect)))
    y, x = rng.integers(0, rows - h + 1), rng.integers(0, cols - w + 1)
    return cells[:, y:y + h, x:x + w]


def region(cells: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    return cells[:, box[0]:box[1], box[2]:box[3]]


class Sampler:
    """Draws the two views of each anchor; every random choice comes from one seeded numpy RNG."""

    def __init__(self, prepared: Prepared, indices: Sequence[int], settings: TrainSettings):
        self.prepared, self.settings = prepared, settings
        chosen = set(indices)
        self.partners: dict[int, list[tuple[int, tuple, tuple]]] = {i: [] for i in indices}
        for pair in prepared.pairs:
            if pair.a in chosen and pair.b in chosen:
                self.partners[pair.a].append((pair.b, pair.box_a, pair.box_b))
                self.partners[pair.b].append((pair.a, pair.box_b, pair.box_a))
        self.related = {i: {i} | {j for j, _, _ in self.partners[i]} for i in indices}

    def view(self, photo: int, box, rng: np.random.Generator) -> torch.Tensor:
        cells = self.prepared.maps[photo]
        if rng.random() < self.settings.full_prob:
            return pooled(cells)
        return pooled(region(cells, box) if box is not None else random_crop(cells, rng))

    def batch(self, anchors: Sequence[int], rng: np.random.Generator):
        """(views 1, views 2, mask of known positives off the diagonal)."""
        first, second, photos = [], [], []
        for i in anchors:
            partners = self.partners[i]
            if partners and rng.random() < self.settings.pair_prob:
                j, box_i, box_j = partners[rng.integers(len(partners))]
                first.append(self.view(i, box_i, rng))
                second.append(self.view(j, box_j, rng))
            else:
                j = i
                first.append(self.view(i, None, rng))
                copies = self.prepared.views[i]
                if copies and rng.random() < 0.5:
                    second.append(pooled(copies[rng.integers(len(copies))]))
                else:
                    second.append(pooled(random_crop(self.prepared.maps[i], rng)))
            photos.append(j)
        known = torch.tensor([[b != a and photos[b] in self.related[anchors[a]]
                               for b in range(len(anchors))] for a in range(len(anchors))])
        return torch.stack(first), torch.stack(second), known


def info_nce(head: torch.nn.Linear, first: torch.Tensor, second: torch.Tensor,
             known: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric NT-Xent on the embedding AugNet outputs (tanh of the head), cosine similarity."""
    z1 = F.normalize(torch.tanh(head(first)), dim=1)
    z2 = F.normalize(torch.tanh(head(second)), dim=1)
    logits = (z1 @ z2.T / temperature).masked_fill(known, -1e4)
    target = torch.arange(len(z1))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def fit(prepared: Prepared, settings: TrainSettings, indices: Sequence[int] | None = None,
        checkpoint: str | None = None, resume: bool = False, deadline: float | None = None,
        quiet: bool = False) -> tuple[torch.nn.Linear, list[float]]:
    """Train the head on `indices` (default: every photo); returns it and per-epoch losses."""
    indices = list(range(len(prepared.paths)) if indices is None else indices)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    head = base_model().pre.fc
    optimizer = torch.optim.Adam(head.parameters(), lr=settings.lr)
    losses: list[float] = []
    if resume and checkpoint and os.path.isfile(checkpoint):
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state["settings"] != checkpoint_key(settings, prepared, indices):
            raise ValueError(f"{checkpoint} was written for other photos or settings")
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        losses = list(state["losses"])
    sampler = Sampler(prepared, indices, settings)
    batch_size = max(2, min(settings.batch_size, len(indices)))
    steps = len(indices) // batch_size
    if steps == 0:
        raise ValueError("training needs at least 2 photos")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: threads only wait for each other on a busy CPU
    bar = progress_bar(settings.epochs * steps, "training", quiet, unit="step",
                       initial=len(losses) * steps)
    for epoch in range(len(losses), settings.epochs):
        order = rng.permutation(indices)
        total = 0.0
        for step in range(steps):
            anchors = [int(i) for i in order[step * batch_size:(step + 1) * batch_size]]
            loss = info_nce(head, *sampler.batch(anchors, rng), settings.temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        losses.append(total / steps)
        if checkpoint:
            atomic_save({"head": head.state_dict(), "optimizer": optimizer.state_dict(),
                         "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                         "losses": losses, "settings": checkpoint_key(settings, prepared, indices)},
                        checkpoint)
        if deadline is not None and time.monotonic() >= deadline:
            break
    bar.close()
    torch.set_num_threads(threads)
    return head, losses


def checkpoint_key(settings: TrainSettings, prepared: Prepared, indices: Sequence[int]) -> dict:
    key = dataclasses.asdict(settings)
    key.pop("epochs")
    key.pop("minutes")
    key["photos"] = photos_digest([prepared.paths[i] for i in indices])
    return key


def photos_digest(paths: Sequence[str]) -> str:
    return hashlib.sha1("\n".join(os.path.abspath(p) for p in paths).encode()).hexdigest()[:16]


def atomic_save(obj: Any, path: str) -> None:
    """Write to a temporary file beside `path`, then rename: a kill never leaves half a file."""
    temporary = f"{path}.tmp{os.getpid()}"
    torch.save(obj, temporary)
    os.replace(temporary, path)


def adapted_model(head: torch.nn.Linear) -> AugNet:
    """Stock AugNet with the trained head."""
    model = base_model()
    model.pre.fc.load_state_dict(head.state_dict())
    return model


def save_model(head: torch.nn.Linear, output: str, info: dict[str, Any]) -> None:
    """The whole AugNet state dict, loadable by `augnet`'s `load_state_dict` (`--weights`)."""
    atomic_save({"model": adapted_model(head).state_dict(), "lookalike": info}, output)


def embed(prepared: Prepared, head: torch.nn.Linear) -> np.ndarray:
    """Embeddings of the prepared photos: what `augnet --weights` computes, from cached maps."""
    with torch.inference_mode():
        return torch.tanh(head(torch.stack([pooled(m) for m in prepared.maps]))).numpy()


def load_prepared(path: str, paths: Sequence[str], settings: TrainSettings) -> Prepared | None:
    if not os.path.isfile(path):
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("key") != {**settings.prep_key(), "photos": photos_digest(paths)}:
        return None
    return state["prepared"]


def train(photos: Sequence[str], output: str, settings: TrainSettings | None = None,
          resume: bool = False, cache=None, jobs: int = 1, quiet: bool = False) -> TrainResult:
    """Adapt AugNet to the photos in `photos` (files or folders) and write OUTPUT."""
    settings = settings or TrainSettings()
    started = time.monotonic()
    deadline = started + settings.minutes * 60 if settings.minutes else None
    paths = find_images(photos)
    if len(paths) < 2:
        raise ValueError("training needs at least 2 photos")
    prep_path, checkpoint = f"{output}.prep.pt", f"{output}.ckpt"
    prepared = load_prepared(prep_path, paths, settings) if resume else None
    if prepared is None:
        prepared = prepare(paths, settings, cache, jobs, quiet)
        atomic_save({"key": {**settings.prep_key(), "photos": photos_digest(paths)},
                     "prepared": prepared}, prep_path)
    if len(prepared.paths) < 2:
        raise ValueError("training needs at least 2 readable photos")
    head, losses = fit(prepared, settings, None, checkpoint, resume, deadline, quiet)
    info = {"settings": dataclasses.asdict(settings), "epochs_done": len(losses),
            "losses": losses, "photos": len(prepared.paths), "pairs": len(prepared.pairs)}
    save_model(head, output, info)
    return TrainResult(output, len(losses), losses, len(prepared.paths), len(prepared.pairs),
                       time.monotonic() - started, prepared.errors)
