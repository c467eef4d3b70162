"""Exporting XFeat and DISK to ONNX: each network with its keypoint detection and descriptor
sampling, from pixels to (keypoints, descriptors, scores) in one graph.

Why: in eager PyTorch XFeat and DISK kept the `fast` preset (and any DISK pipeline) on torch;
here they are exported as ALIKED is (lookalike.nets.export), traced once by
`torch.onnx.export` with dynamic image sizes, from the weights the wheels ship, and run by
lookalike.nets.local_runtime without torch. Everything after the network runs inside the graph
too: on a 800 px photo the sparse steps are a few thousand gathers and one TopK, which ONNX
Runtime does in a few milliseconds, while moving the full-resolution heat maps out to numpy
would copy ~2 MB per photo and run the 24 comparisons of the 5 x 5 suppression in Python.

- **XFeat** (`XFeatGraph`): kornia's `XFeat.detectAndCompute` for one image. The bilinear
  resize to multiples of 32 runs in the graph (its size read from the image's shape), the
  backbone is kornia's layers (`_unfold2d` written as `pixel_unshuffle`, the same channel
  order), the keypoint heat map is the 64-way softmax put back in place (`pixel_shuffle`), and
  keypoints are kornia's: strict maxima of their 5 x 5 window, none within 2 px of the border,
  heat above the detection threshold, scored by heat x the reliability map (bilinear, with
  kornia's `normgrid` convention), the `top_k` best; descriptors are the unit dense map sampled
  bicubically at them (ONNX GridSample), normalised. Keypoints come out in the resized image's
  pixels; the caller scales them back, as kornia does.
- **DISK** (`DiskGraph`): kornia's `DISK.forward(n=top_k, pad_if_not_divisible=True)`: the
  U-Net on the image zero-padded (by the caller) to multiples of 16, strict 5 x 5 maxima of the
  heat map above 0 inside the photo (the window's comparisons never reach the padding, as
  kornia crops before suppressing), the `top_k` strongest (ONNX TopK keeps ties in index order,
  which is kornia's raster order), and the unit dense descriptors at them.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from lookalike.nets.export import OPSET, strict_maxima


def _inside(rows, cols, height, width, margin: int, device) -> torch.Tensor:
    """rows x cols bool: within `margin` of no border of the height x width photo (at 0, 0)."""
    y = torch.arange(rows, device=device)[:, None]
    x = torch.arange(cols, device=device)[None, :]
    return (y >= margin) & (y < height - margin) & (x >= margin) & (x < width - margin)


def _top(values: torch.Tensor, top_k: int, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of the `top_k` largest of a flat tensor, keeping only those above
    `floor`; padded behind so that TopK never asks for more than there are."""
    values = torch.cat([values, torch.full((top_k,), floor, device=values.device)])
    best, indices = torch.topk(values, top_k)
    keep = best > floor
    return best[keep], indices[keep]


# -- XFeat -----------------------------------------------------------------------------------
class XFeatGraph(nn.Module):
    """XFeat from an RGB 1 x 3 x H x W image in [0, 1] to (keypoints N x 2 in the pixels of
    the image resized to multiples of 32, unit descriptors N x 64, scores N), best first."""

    def __init__(self, model, top_k: int):
        super().__init__()
        self.net = model.net
        self.top_k = int(top_k)
        self.threshold = float(model.detection_threshold)

    def forward(self, image: torch.Tensor):
        size = torch._shape_as_tensor(image)[2:]
        resized = torch.clamp(torch.div(size, 32, rounding_mode="floor") * 32, min=32)
        x = F.interpolate(image, size=(resized[0], resized[1]), mode="bilinear",
                          align_corners=False)
        feats, logits, reliability = self.backbone(x)
        heat = F.pixel_shuffle(F.softmax(logits, 1)[:, :64], 8)[0, 0]  # H' x W'
        rows, cols = heat.shape[0], heat.shape[1]
        mask = (strict_maxima(heat, 2) & _inside(rows, cols, rows, cols, 2, heat.device)
                & (heat > self.threshold))
        flat = heat.reshape(-1)
        candidates = torch.nonzero(mask.reshape(-1))[:, 0]
        at = torch.stack([candidates % cols, torch.div(candidates, cols,
                                                       rounding_mode="floor")], 1)
        grid = self._grid(at.to(heat.dtype), rows, cols)
        scores = flat[candidates] * self._sample(reliability, grid, "bilinear")[:, 0]
        scores, order = _top(scores, self.top_k, 0.0)
        at = at[order]
        unit = F.normalize(feats, dim=1)
        descriptors = self._sample(unit, self._grid(at.to(heat.dtype), rows, cols), "bicubic")
        return at.to(heat.dtype), F.normalize(descriptors, dim=-1), scores

    def backbone(self, x):
        """kornia's XFeatModel.forward, its `_unfold2d` as `pixel_unshuffle` (exportable)."""
        net = self.net
        x = net.norm(x.mean(dim=1, keepdim=True))
        x1 = net.block1(x)
        x2 = net.block2(x1 + net.skip1(x))
        x3 = net.block3(x2)
        x4 = net.block4(x3)
        x5 = net.block5(x4)
        size = (x3.shape[-2], x3.shape[-1])
        x4 = F.interpolate(x4, size, mode="bilinear", align_corners=False)
        x5 = F.interpolate(x5, size, mode="bilinear", align_corners=False)
        feats = net.block_fusion(x3 + x4 + x5)
        return feats, net.keypoint_head(F.pixel_unshuffle(x, 8)), net.heatmap_head(feats)

    @staticmethod
    def _grid(at, rows, cols):
        """kornia's InterpolateSparse2d.normgrid: 2 p / (W' - 1, H' - 1) - 1, as 1 x 1 x N x 2."""
        scale = torch.stack([cols - 1, rows - 1]).to(at.dtype)
        return (2.0 * (at / scale) - 1.0)[None, None]

    @staticmethod
    def _sample(dense, grid, mode):  # -> N x C
        return F.grid_sample(dense, grid, mode=mode, align_corners=False)[0, :, 0].t()


def export_xfeat(model, top_k: int, path) -> None:
    """Write XFeat (a kornia XFeat with its weights) with top_k keypoints to `path`."""
    graph = XFeatGraph(model, top_k).eval()
    image = torch.rand(1, 3, 100, 140, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (image,), str(path), opset_version=OPSET, dynamo=False,
                          input_names=["image"],
                          output_names=["keypoints", "descriptors", "scores"],
                          dynamic_axes={"image": {2: "height", 3: "width"},
                                        "keypoints": {0: "n"}, "descriptors": {0: "n"},
                                        "scores": {0: "n"}})


# -- DISK ------------------------------------------------------------------------------------
class DiskGraph(nn.Module):
    """DISK from an RGB 1 x 3 x Hp x Wp image in [0, 1], zero-padded at the bottom and right
    to multiples of 16, and `size` (height, width of the photo in it), to (keypoints N x 2 in
    pixels, unit descriptors N x 128, heat N), best first."""

    def __init__(self, model, top_k: int):
        super().__init__()
        self.unet = model.unet
        self.dim = int(model.desc_dim)
        self.top_k = int(top_k)

    def forward(self, image: torch.Tensor, size: torch.Tensor):
        output = self.unet(image)[0]
        dense, heat = output[:self.dim], output[self.dim]
        rows, cols = heat.shape[0], heat.shape[1]
        mask = strict_maxima(heat, 2) & _inside(rows, cols, size[0], size[1], 2, heat.device)
        candidates = torch.where(mask & (heat > 0), heat,
                                 torch.full_like(heat, float("-inf"))).reshape(-1)
        scores, indices = _top(candidates, self.top_k, float("-inf"))
        descriptors = dense.reshape(self.dim, -1)[:, indices].t()
        at = torch.stack([indices % cols, torch.div(indices, cols, rounding_mode="floor")], 1)
        return at.to(heat.dtype), F.normalize(descriptors, dim=-1), scores


def export_disk(model, top_k: int, path) -> None:
    """Write DISK (a kornia DISK with its weights) with top_k keypoints to `path`."""
    graph = DiskGraph(model, top_k).eval()
    image = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    size = torch.tensor([90, 120])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (image, size), str(path), opset_version=OPSET, dynamo=False,
                          input_names=["image", "size"],
                          output_names=["keypoints", "descriptors", "scores"],
                          dynamic_axes={"image": {2: "height", 3: "width"},
                                        "keypoints": {0: "n"}, "descriptors": {0: "n"},
                                        "scores": {0: "n"}})
