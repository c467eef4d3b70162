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
  (top, left, height, width) that holds the photo. The 128-channel full-resolution map is
  never made: the score head's first layer runs on each level before upsampling, and the
  descriptor head reads each level at its samples (`DenseRows`). The
  deformable convolutions become ONNX's DeformConv (opset 19), which ONNX Runtime runs
  natively, instead of kornia's gather-based PyTorch version.
- **LightGlue** (`LightGlueGraph`): B pairs a call, each padded to the batch's longest
  keypoint sets, with masks that keep padding out of every attention and every match. Every
  layer runs: kornia's early exit and point pruning decide per pair, and a batch shares its
  shapes. Its matches are those of kornia's LightGlue with both turned off.
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


def strict_maxima(score: torch.Tensor, radius: int) -> torch.Tensor:
    """H x W bool: positions greater than every other value of their (2r+1)^2 window, as
    kornia's nms2d (positions whose window runs off the map are never maxima: the callers
    mask them). Written as shifted maxima so that it exports for any map size."""
    k = 2 * radius + 1
    padded = F.pad(score[None, None], (radius, radius, radius, radius),
                   value=float("-inf"))[0, 0]
    others = None
    for dy in range(k):
        for dx in range(k):
            if dy == radius and dx == radius:
                continue
            view = padded[dy:dy - 2 * radius if dy < 2 * radius else None,
                          dx:dx - 2 * radius if dx < 2 * radius else None]
            others = view if others is None else torch.maximum(others, view)
    return score > others


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
        levels = backbone_levels(self.model, image)
        score = torch.sigmoid(self.score_map(levels))[0, 0]  # Hp x Wp
        top, left, height, width = window[0], window[1], window[2], window[3]
        pixels, scores = self.detect(score, top, left, height, width)
        descriptors = self.describe(DenseRows(levels), pixels, top, left, height, width)
        return pixels, descriptors, scores

    def score_map(self, levels):
        """kornia's score head on the full-resolution map, whose first layer (a 1 x 1
        convolution of the four levels side by side) runs on each level at its own size
        and is upsampled after: both are linear, so the order does not change the sum, and
        the 128-channel full-resolution map is never made."""
        first, rest = self.model.score_head[0], self.model.score_head[1:]
        weights = first.weight.split([level.shape[1] for level, _ in levels], dim=1)
        total = None
        for (level, factor), weight in zip(levels, weights):
            part = F.conv2d(level, weight)
            if factor > 1:
                part = F.interpolate(part, scale_factor=float(factor), mode="bilinear",
                                     align_corners=True)
            total = part if total is None else total + part
        return rest(total)

    # DKD, on the padded map, inside the window
    def detect(self, score, top, left, height, width):
        r = self.radius
        k = 2 * r + 1
        rows, cols = score.shape[0], score.shape[1]
        y = torch.arange(rows, device=score.device)[:, None]
        x = torch.arange(cols, device=score.device)[None, :]
        inside = ((y >= top + r) & (y < top + height - r)
                  & (x >= left + r) & (x < left + width - r))
        candidates = torch.where(strict_maxima(score, r) & inside, score,
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
    def describe(self, dense: DenseRows, pixels, top, left, height, width):
        head = self.model.desc_head
        channels = dense.channels

        def unit(x, y):  # M each, window pixels inside the window -> M x C unit features
            return F.normalize(dense.at(y + top, x + left), p=2, dim=1)

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
            weight = wx * wy * valid.to(pixels.dtype)
            xs = torch.minimum(x.clamp(min=0), width - 1)
            ys = torch.minimum(y.clamp(min=0), height - 1)
            term = weight[:, None] * unit(xs, ys)
            sampled = term if sampled is None else sampled + term
        sampled = sampled.reshape(-1, head.n_pos, channels).permute(0, 2, 1)
        sampled = F.selu(head.sf_conv(sampled[..., None]))[..., 0]  # N x C x n_pos
        descriptors = torch.einsum("ncp,pcd->nd", sampled, head.agg_weights)
        return F.normalize(descriptors, p=2.0, dim=1)


def backbone_levels(model, image: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
    """ALIKED's four gated levels of a padded image, each with its downsampling factor:
    `dense_features` is these, upsampled bilinearly to full resolution and stacked."""
    x1 = model.block1(image)
    x2 = model.block2(model.pool2(x1))
    x3 = model.block3(model.pool4(x2))
    x4 = model.block4(model.pool4(x3))
    return [(model.gate(model.conv1(x1)), 1), (model.gate(model.conv2(x2)), 2),
            (model.gate(model.conv3(x3)), 8), (model.gate(model.conv4(x4)), 32)]


class DenseRows:
    """The full-resolution feature map at given pixels, read from the levels themselves.

    `at(y, x)` gives what `dense_features(...)[0][:, y, x]` holds: the finest level's pixel
    and each coarser level's bilinear upsampling (align_corners=True, as ALIKED's)
    evaluated at that pixel only. Making the 128 x H x W map and picking from it cost ~40% of
    the graph's time at 800 px (the concatenation, the resizes, and reads a map apart);
    each level is kept as pixel rows (H*W x C), so a sample is a few contiguous reads."""

    def __init__(self, levels: list[tuple[torch.Tensor, int]]):
        self.levels = []
        for level, factor in levels:
            size = torch._shape_as_tensor(level)[2:]  # (h, w), followed at run time
            rows = level[0].permute(1, 2, 0).reshape(-1, level.shape[1])
            self.levels.append((rows, size[0], size[1], factor))
        self.channels = sum(level.shape[1] for level, _ in levels)

    def at(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """M x C features at integer full-resolution pixels (y, x), each M long."""
        parts = []
        for rows, height, width, factor in self.levels:
            if factor == 1:
                parts.append(rows[y * width + x])
                continue
            # align_corners=True: the corners of both grids coincide
            h, w = height.to(rows.dtype), width.to(rows.dtype)
            sy = y.to(rows.dtype) * ((h - 1) / (h * factor - 1))
            sx = x.to(rows.dtype) * ((w - 1) / (w * factor - 1))
            y0, x0 = sy.floor(), sx.floor()
            wy, wx = (sy - y0)[:, None], (sx - x0)[:, None]
            y0, x0 = y0.long(), x0.long()
            y1 = torch.minimum(y0 + 1, height - 1)
            x1 = torch.minimum(x0 + 1, width - 1)
            parts.append((rows[y0 * width + x0] * (1 - wx) + rows[y0 * width + x1] * wx) * (1 - wy)
                         + (rows[y1 * width + x0] * (1 - wx) + rows[y1 * width + x1] * wx) * wy)
        return torch.cat(parts, dim=1)


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


# -- LightGlue -------------------------------------------------------------------------------
class LightGlueGraph(nn.Module):
    """LightGlue (kornia's, with its weights) over a batch of B pairs at once, every layer
    run (no early exit, no point pruning: a batch shares its shapes).

    Inputs: keypoints0 B x M x 2 (normalised as kornia normalises them: centred, divided by
    half the image's long side), descriptors0 B x M x D, valid0 B x M (bool: the pair's real
    keypoints; the rest pad the pair to M), and the same for image 1 (N). Padded keypoints
    take part in no attention and no match, so each pair's result is what it would be alone.
    Outputs: matches0 B x M (index into image 1, or -1) and scores0 B x M.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.threshold = float(model.conf.filter_threshold)
        size = int(model.conf.descriptor_dim) // int(model.conf.num_heads)
        half_turn = torch.zeros(size, size)
        half_turn[torch.arange(1, size, 2), torch.arange(0, size, 2)] = -1.0
        half_turn[torch.arange(0, size, 2), torch.arange(1, size, 2)] = 1.0
        self.register_buffer("half_turn", half_turn)
        twice = torch.zeros(size // 2, size)
        twice[torch.arange(size // 2), torch.arange(0, size, 2)] = 1.0
        twice[torch.arange(size // 2), torch.arange(1, size, 2)] = 1.0
        self.register_buffer("twice", twice)

    def forward(self, keypoints0, descriptors0, valid0, keypoints1, descriptors1, valid1):
        m = self.model
        desc0, desc1 = m.input_proj(descriptors0), m.input_proj(descriptors1)
        enc0, enc1 = self._encode(keypoints0), self._encode(keypoints1)  # 2 x B x 1 x M x d
        pair = valid0[:, :, None] & valid1[:, None, :]  # B x M x N
        self0 = valid0[:, :, None] & valid0[:, None, :]
        self1 = valid1[:, :, None] & valid1[:, None, :]
        for layer in m.transformers:
            desc0 = self._self(layer.self_attn, desc0, enc0, self0)
            desc1 = self._self(layer.self_attn, desc1, enc1, self1)
            desc0, desc1 = self._cross(layer.cross_attn, desc0, desc1, pair)
        return self._assign(m.log_assignment[-1], desc0, desc1, pair)

    def _encode(self, keypoints):
        """kornia's LearnableFourierPositionalEncoding; its repeat_interleave(2) as a product
        with a constant 0/1 matrix (exact), which keeps the ranks the exporter needs."""
        projected = self.model.posenc.Wr(keypoints)  # B x M x d/2
        return torch.stack([torch.cos(projected) @ self.twice,
                            torch.sin(projected) @ self.twice])[:, :, None]

    @staticmethod
    def _masked(sim, mask):
        # -1e9, not -inf: a padded keypoint's row is all masked and must not become NaN
        return sim.masked_fill(~mask[:, None], -1e9)

    def _rotate(self, encoding, t):
        """kornia's rotary embedding; its rotate_half (pairs (a, b) -> (-b, a)) as a product
        with a constant matrix, which exports with no reshape."""
        return t * encoding[0] + (t @ self.half_turn) * encoding[1]

    @staticmethod
    def _merge(t):  # B x H x M x d -> B x M x H*d
        t = t.transpose(1, 2)
        return t.reshape(t.shape[0], t.shape[1], -1)

    def _self(self, block, x, encoding, mask):
        qkv = block.Wqkv(x)
        qkv = qkv.reshape(qkv.shape[0], qkv.shape[1], block.num_heads, block.head_dim, 3)
        qkv = qkv.transpose(1, 2)
        q, k, v = qkv[..., 0], qkv[..., 1], qkv[..., 2]
        q, k = self._rotate(encoding, q), self._rotate(encoding, k)
        sim = self._masked(q @ k.transpose(-1, -2) * block.head_dim ** -0.5, mask)
        context = F.softmax(sim, dim=-1) @ v
        message = block.out_proj(self._merge(context))
        return x + block.ffn(torch.cat([x, message], -1))

    def _cross(self, block, x0, x1, mask):
        def heads(t):
            return t.reshape(t.shape[0], t.shape[1], block.heads, -1).transpose(1, 2)

        qk0, qk1 = heads(block.to_qk(x0)), heads(block.to_qk(x1))
        v0, v1 = heads(block.to_v(x0)), heads(block.to_v(x1))
        qk0, qk1 = qk0 * block.scale ** 0.5, qk1 * block.scale ** 0.5
        sim = self._masked(qk0 @ qk1.transpose(-1, -2), mask)  # B x H x M x N
        m0 = F.softmax(sim, dim=-1) @ v1
        m1 = F.softmax(sim.transpose(-1, -2), dim=-1) @ v0
        m0, m1 = block.to_out(self._merge(m0)), block.to_out(self._merge(m1))
        return (x0 + block.ffn(torch.cat([x0, m0], -1)),
                x1 + block.ffn(torch.cat([x1, m1], -1)))

    def _assign(self, head, desc0, desc1, pair):
        md0, md1 = head.final_proj(desc0), head.final_proj(desc1)
        scale = head.dim ** -0.25
        sim = (md0 * scale) @ (md1 * scale).transpose(-1, -2)  # B x M x N
        sim = sim.masked_fill(~pair, -1e9)
        z0, z1 = head.matchability(desc0), head.matchability(desc1)  # B x M x 1, B x N x 1
        scores = (F.log_softmax(sim, 2) + F.log_softmax(sim, 1)
                  + F.logsigmoid(z0) + F.logsigmoid(z1).transpose(1, 2))
        scores = scores.masked_fill(~pair, float("-inf"))
        # kornia's filter_matches: mutual best, probability above the threshold
        best0, best1 = scores.max(2), scores.max(1)
        to1, to0 = best0.indices, best1.indices
        rows = torch.arange(scores.shape[1], device=scores.device)[None]
        mutual = rows == to0.gather(1, to1)
        probability = torch.where(mutual, best0.values.exp(), torch.zeros_like(best0.values))
        keep = mutual & (probability > self.threshold)
        return torch.where(keep, to1, torch.full_like(to1, -1)), probability


def export_lightglue(model, path) -> None:
    """Write LightGlue (a kornia LightGlue with its weights) for batches of pairs to `path`."""
    graph = LightGlueGraph(model).eval()
    dim = int(model.conf.input_dim)
    generator = torch.Generator().manual_seed(0)
    example = []
    for count in (40, 30):
        keypoints = torch.rand(2, count, 2, generator=generator) * 2 - 1
        descriptors = F.normalize(torch.randn(2, count, dim, generator=generator), dim=-1)
        valid = torch.ones(2, count, dtype=torch.bool)
        valid[1, count - 5:] = False
        example += [keypoints, descriptors, valid]
    names = ["keypoints0", "descriptors0", "valid0", "keypoints1", "descriptors1", "valid1"]
    axes = {name: {0: "batch", 1: "m" if name.endswith("0") else "n"} for name in names}
    axes.update({"matches0": {0: "batch", 1: "m"}, "scores0": {0: "batch", 1: "m"}})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, tuple(example), str(path), opset_version=OPSET, dynamo=False,
                          input_names=names, output_names=["matches0", "scores0"],
                          dynamic_axes=axes)
