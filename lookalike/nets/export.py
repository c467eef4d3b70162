"""Exporting the learned networks to ONNX: the only place that needs torch for them.

Why: in eager PyTorch, ALIKED's forward pass at 800 px is most of the time of `identify`, and
LightGlue costs ~0.25 s a pair. ONNX Runtime runs the same graphs with fused kernels, a native
deformable convolution and no Python between layers (lookalike.nets.runtime runs them). Here
each network is wrapped in a module whose forward pass is the whole computation from pixels to
keypoints and descriptors (or from two padded keypoint sets to match scores), traced once by
`torch.onnx.export` with dynamic image sizes and keypoint counts, from the weights the wheels
ship (lookalike.nets.learned). Nothing is downloaded.

The graphs are written as plain tensor code (no Python branches on sizes), so that one trace
serves every size:

- **ALIKED** (`AlikedGraph`): the backbone and score head as kornia builds them, on the image
  padded to a multiple of 32 (the caller pads, as kornia's InputPadder does). Keypoint
  detection (kornia's DKD: strict 5 x 5 local maxima, top-k, soft-argmax refinement) and the
  descriptor head (SDDH) read the padded maps through index arithmetic inside the `window`
  (top, left, height, width) that holds the photo, so the 128-channel dense map is never
  cropped, copied or normalised as a whole (as in lookalike.nets.aliked_sparse). The
  deformable convolutions become ONNX's DeformConv (opset 19), which ONNX Runtime runs
  natively, instead of kornia's gather-based PyTorch version.
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F
from torch import nn

OPSET = 19  # DeformConv is in the standard opset from 19


# -- ALIKED ---------------------------------------------------------------------------------
@functools.cache
def _deform_op():
    """A torch op `lookalike::deform_conv3x3` (kornia's deform_conv2d, 3 x 3, pad 1) that
    exports as one ONNX DeformConv node."""
    from kornia.feature.aliked.deform_conv2d import deform_conv2d

    library = torch.library.Library("lookalike", "FRAGMENT")  # kept alive by the cache
    library.define("deform_conv3x3(Tensor x, Tensor offset, Tensor weight) -> Tensor")
    library.impl("deform_conv3x3",
                 lambda x, offset, weight: deform_conv2d(x, offset, weight, padding=1),
                 "CompositeExplicitAutograd")

    def symbolic(g, x, offset, weight):
        return g.op("DeformConv", x, weight, offset, pads_i=[1, 1, 1, 1],
                    kernel_shape_i=[3, 3], strides_i=[1, 1], dilations_i=[1, 1], group_i=1,
                    offset_group_i=1)

    torch.onnx.register_custom_op_symbolic("lookalike::deform_conv3x3", symbolic, OPSET)
    return library, torch.ops.lookalike.deform_conv3x3


class _Deformable(nn.Module):
    """kornia's DeformableConv2d (DCNv1, 3 x 3, stride 1, no bias) for export: the offset
    clamp reads the map's size as a tensor, so that it follows the size at run time."""

    def __init__(self, layer):
        super().__init__()
        if (layer.mask or layer.stride != 1 or layer.padding != 1 or layer.dilation != 1
                or layer.regular_conv.bias is not None
                or tuple(layer.regular_conv.kernel_size) != (3, 3)):
            raise ValueError("only ALIKED's 3 x 3 DCNv1 layers are exported")
        self.offset_conv = layer.offset_conv
        self.weight = layer.regular_conv.weight

    def forward(self, x):
        limit = torch._shape_as_tensor(x)[2:].max().to(x.dtype) / 4.0
        offset = self.offset_conv(x)
        offset = torch.minimum(torch.maximum(offset, -limit), limit)
        return _deform_op()[1](x, offset, self.weight)


def _replace_deformable(module: nn.Module) -> None:
    from kornia.feature.aliked.aliked import DeformableConv2d

    for name, child in module.named_children():
        if isinstance(child, DeformableConv2d):
            setattr(module, name, _Deformable(child))
        else:
            _replace_deformable(child)


class AlikedGraph(nn.Module):
    """ALIKED from a padded image to (keypoints N x 2 in the window's pixels, unit
    descriptors N x D, scores N), N <= top_k: what `ALIKED.forward` gives for the window."""

    def __init__(self, model, top_k: int):
        super().__init__()
        import copy

        self.model = copy.deepcopy(model)
        _replace_deformable(self.model)
        self.top_k = int(top_k)
        self.radius = int(model.dkd.radius)
        self.temperature = float(model.dkd.temperature)
        self.register_buffer("grid", model.dkd.hw_grid.clone())  # K*K x 2, (dx, dy)

    def forward(self, image: torch.Tensor, window: torch.Tensor):
        m = self.model
        x1 = m.block1(image)
        x2 = m.block2(m.pool2(x1))
        x3 = m.block3(m.pool4(x2))
        x4 = m.block4(m.pool4(x3))
        dense = torch.cat([m.gate(m.conv1(x1)),
                           m.upsample2(m.gate(m.conv2(x2))),
                           m.upsample8(m.gate(m.conv3(x3))),
                           m.upsample32(m.gate(m.conv4(x4)))], dim=1)[0]  # C x Hp x Wp
        score = torch.sigmoid(m.score_head(dense[None]))[0, 0]  # Hp x Wp
        top, left, height, width = window[0], window[1], window[2], window[3]
        pixels, scores = self.detect(score, top, left, height, width)
        descriptors = self.describe(dense, pixels, top, left, height, width)
        return pixels, descriptors, scores

    # DKD, on the padded map, inside the window
    def detect(self, score, top, left, height, width):
        r = self.radius
        k = 2 * r + 1
        rows, cols = score.shape[0], score.shape[1]
        padded = F.pad(score[None, None], (r, r, r, r), value=float("-inf"))[0, 0]
        others = None
        for dy in range(k):
            for dx in range(k):
                if dy == r and dx == r:
                    continue
                view = padded[dy:dy - 2 * r if dy < 2 * r else None,
                              dx:dx - 2 * r if dx < 2 * r else None]
                others = view if others is None else torch.maximum(others, view)
        y = torch.arange(rows, device=score.device)[:, None]
        x = torch.arange(cols, device=score.device)[None, :]
        inside = ((y >= top + r) & (y < top + height - r)
                  & (x >= left + r) & (x < left + width - r))
        candidates = torch.where((score > others) & inside, score,
                                 torch.full_like(score, float("-inf"))).reshape(-1)
        # Enough -inf behind the map that top_k never exceeds its length (a tiny image).
        candidates = torch.cat([candidates, torch.full((self.top_k,), float("-inf"),
                                                       device=score.device)])
        values, indices = torch.topk(candidates, self.top_k)
        indices = indices[values > float("-inf")]
        ky, kx = indices // cols, indices % cols
        # Soft-argmax over the K x K patch around each maximum (all inside the window).
        flat = score.reshape(-1)
        offsets = torch.arange(-r, r + 1, device=score.device)
        patch_y = ky[:, None, None] + offsets[None, :, None]
        patch_x = kx[:, None, None] + offsets[None, None, :]
        patch = flat[(patch_y * cols + patch_x).reshape(-1, k * k)]
        peak = patch.max(dim=1, keepdim=True).values
        weights = ((patch - peak) / self.temperature).exp()
        residual = weights @ self.grid / weights.sum(dim=1, keepdim=True)
        at = torch.stack([kx, ky], dim=1).to(score.dtype) + residual  # padded pixels
        scores = self._bilinear_score(flat, cols, at)
        origin = torch.stack([left, top]).to(score.dtype)
        return at - origin, scores

    @staticmethod
    def _bilinear_score(flat, cols, at):
        corner = at.floor()
        fx, fy = (at - corner).unbind(1)
        cx, cy = corner.long().unbind(1)
        base = cy * cols + cx
        return (flat[base] * (1 - fx) * (1 - fy) + flat[base + 1] * fx * (1 - fy)
                + flat[base + cols] * (1 - fx) * fy + flat[base + cols + 1] * fx * fy)

    # SDDH, reading unit features from the unnormalised padded map
    def describe(self, dense, pixels, top, left, height, width):
        head = self.model.desc_head
        channels, cols = dense.shape[0], dense.shape[2]
        flat = dense.reshape(channels, -1)

        def unit(x, y):  # M each, window pixels inside the window -> M x C unit features
            return F.normalize(flat[:, (y + top) * cols + (x + left)].t(), p=2, dim=1)

        size = head.kernel_size
        base = pixels.long()
        corner = (base.to(pixels.dtype) - size / 2 + 1).long()
        cx = torch.minimum(corner[:, 0].clamp(min=0), width - 1 - size)
        cy = torch.minimum(corner[:, 1].clamp(min=0), height - 1 - size)
        steps = torch.arange(size, device=pixels.device)
        px = (cx[:, None, None] + steps[None, None, :]).expand(-1, size, size).reshape(-1)
        py = (cy[:, None, None] + steps[None, :, None]).expand(-1, size, size).reshape(-1)
        patch = unit(px, py).reshape(-1, size, size, channels).permute(0, 3, 1, 2)
        limit = torch.maximum(height, width).to(pixels.dtype) / 4.0
        offset = head.offset_conv(patch)
        offset = torch.minimum(torch.maximum(offset, -limit), limit)
        offset = offset[:, :, 0, 0].reshape(-1, 2, head.n_pos).permute(0, 2, 1)
        samples = (pixels[:, None, :] + offset).reshape(-1, 2)
        corner = samples.floor()
        fraction = samples - corner
        corner = corner.long()
        sampled = None
        for ox, oy in ((0, 0), (1, 0), (0, 1), (1, 1)):  # grid_sample's zero padding outside
            x, y = corner[:, 0] + ox, corner[:, 1] + oy
            wx = fraction[:, 0] if ox else 1 - fraction[:, 0]
            wy = fraction[:, 1] if oy else 1 - fraction[:, 1]
            valid = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            weight = wx * wy * valid.to(dense.dtype)
            xs = torch.minimum(x.clamp(min=0), width - 1)
            ys = torch.minimum(y.clamp(min=0), height - 1)
            term = weight[:, None] * unit(xs, ys)
            sampled = term if sampled is None else sampled + term
        sampled = sampled.reshape(-1, head.n_pos, channels).permute(0, 2, 1)
        sampled = F.selu(head.sf_conv(sampled[..., None]))[..., 0]  # N x C x n_pos
        descriptors = torch.einsum("ncp,pcd->nd", sampled, head.agg_weights)
        return F.normalize(descriptors, p=2.0, dim=1)


def export_aliked(model, top_k: int, path) -> None:
    """Write ALIKED (a kornia ALIKED with its weights) with top_k keypoints to `path`."""
    graph = AlikedGraph(model, top_k).eval()
    image = torch.rand(1, 3, 96, 128)
    window = torch.tensor([5, 3, 80, 120])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constants it keeps
        torch.onnx.export(graph, (image, window), str(path), opset_version=OPSET,
                          dynamo=False, input_names=["image", "window"],
                          output_names=["keypoints", "descriptors", "scores"],
                          dynamic_axes={"image": {2: "height", 3: "width"},
                                        "keypoints": {0: "n"}, "descriptors": {0: "n"},
                                        "scores": {0: "n"}})
