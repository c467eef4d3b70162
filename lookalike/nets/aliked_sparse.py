"""ALIKED's forward pass without normalising its dense feature map: the same keypoints and
descriptors, with the normalisation done only where the descriptor head looks.

Why: kornia's ALIKED L2-normalises every pixel of its 128-channel full-resolution feature map,
though the descriptor head then reads ~70,000 pixels of the ~480,000 in an 800 px photo (a 3x3
patch at each keypoint and the four neighbours of its 16 deformable samples). That dense
normalisation was a fifth of the forward pass on a CPU (docs/benchmarks.md). Here the
unnormalised map is kept, a pixel's feature is normalised when it is read, and the descriptor
head (SDDH) runs on those features with kornia's own layers and weights.

The backbone, the score head and the keypoint detector (DKD) run exactly as kornia runs them:
DKD keeps strict local maxima only, so even a 1e-6 change to the score map moves keypoints in
flat regions, and the score map is therefore left bit for bit as it is. The result equals
kornia's `ALIKED.forward` to float rounding (tests/test_aliked_sparse.py compares them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.feature.aliked.aliked import InputPadder, get_patches

PAD_MULTIPLE = 32  # the backbone's total stride, as kornia pads


class LazyUnitMap:
    """A C x H x W feature map whose pixels are L2-normalised when read, not before."""

    def __init__(self, dense: torch.Tensor):
        self.dense = dense
        self.channels, self.height, self.width = dense.shape

    def at(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Unit features (M x C) at integer pixels x, y (M each, inside the map)."""
        # Indexing the H x W x C view reads each pixel's channels in one gather (measured
        # ~1.2x faster than indexing C x H x W, and no copy of the whole map).
        return F.normalize(self.dense.permute(1, 2, 0)[y, x], p=2, dim=1)

    def bilinear(self, points: torch.Tensor) -> torch.Tensor:
        """Features at sub-pixel points (M x 2, x y), bilinear between unit features, zero
        outside the map: what grid_sample(align_corners=True) reads from the normalised map."""
        corner = points.floor()
        fraction = points - corner
        corner = corner.long()
        dx = torch.tensor([0, 1, 0, 1], device=points.device)  # the four neighbours, in
        dy = torch.tensor([0, 0, 1, 1], device=points.device)  # grid_sample's order
        x, y = corner[:, :1] + dx, corner[:, 1:] + dy  # M x 4 each
        weight = (torch.where(dx.bool(), fraction[:, :1], 1 - fraction[:, :1])
                  * torch.where(dy.bool(), fraction[:, 1:], 1 - fraction[:, 1:]))
        inside = (x >= 0) & (x < self.width) & (y >= 0) & (y < self.height)
        weight = weight * inside
        neighbours = self.at(x.clamp(0, self.width - 1).reshape(-1),
                             y.clamp(0, self.height - 1).reshape(-1))
        return torch.einsum("mk,mkc->mc", weight, neighbours.view(len(points), 4, -1))


def dense_features(model, image: torch.Tensor) -> torch.Tensor:
    """ALIKED's 1 x C x H x W feature map of a padded image: the four blocks, each gated and
    brought back to full resolution (what the score head and the descriptor head read)."""
    x1 = model.block1(image)
    x2 = model.block2(model.pool2(x1))
    x3 = model.block3(model.pool4(x2))
    x4 = model.block4(model.pool4(x3))
    return torch.cat([model.gate(model.conv1(x1)),
                      model.upsample2(model.gate(model.conv2(x2))),
                      model.upsample8(model.gate(model.conv3(x3))),
                      model.upsample32(model.gate(model.conv4(x4)))], dim=1)


def forward(model, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(keypoints N x 2 in pixels, unit descriptors N x D, scores N) of a 1 x 3 x H x W image,
    for a kornia `ALIKED` built as learned.detector builds it (top-k mode, no threshold)."""
    height, width = image.shape[-2:]
    padder = InputPadder(height, width, PAD_MULTIPLE)
    dense = dense_features(model, padder.pad(image))
    score_map = padder.unpad(torch.sigmoid(model.score_head(dense)))
    keypoints, scores, _ = model.dkd(score_map)
    keypoints, scores = keypoints[0], scores[0]
    descriptors = describe(model.desc_head, LazyUnitMap(padder.unpad(dense)[0]), keypoints)
    wh = torch.tensor([width - 1, height - 1], dtype=keypoints.dtype, device=keypoints.device)
    return wh * (keypoints + 1) / 2, descriptors, scores


def describe(head, features: LazyUnitMap, keypoints: torch.Tensor) -> torch.Tensor:
    """kornia's SDDH descriptor head, reading only the pixels it needs (keypoints in
    [-1, 1])."""
    count = len(keypoints)
    if count == 0:  # a blank or 1-pixel image: nothing to describe
        return keypoints.new_zeros(0, head.agg_weights.shape[-1])
    wh = torch.tensor([[features.width - 1, features.height - 1]], dtype=keypoints.dtype,
                      device=keypoints.device)
    max_offset = max(features.height, features.width) / 4.0
    at_pixels = (keypoints / 2 + 0.5) * wh
    # The kernel_size x kernel_size patch kornia's get_patches reads, found by running it on a
    # map of pixel coordinates; then the features of those pixels.
    size = head.kernel_size
    device = keypoints.device
    columns = torch.arange(features.width, device=device).expand(features.height, -1)
    rows = torch.arange(features.height, device=device)[:, None].expand(-1, features.width)
    where = get_patches(torch.stack((columns, rows)), at_pixels.long(), size)  # N x 2 x k x k
    patch = features.at(where[:, 0].reshape(-1), where[:, 1].reshape(-1))
    patch = patch.view(count, size, size, -1).permute(0, 3, 1, 2)

    offset = head.offset_conv(patch).clamp(-max_offset, max_offset)
    offset = offset[:, :, 0, 0].view(count, 2, head.n_pos).permute(0, 2, 1)  # N x n_pos x 2
    samples = (at_pixels.unsqueeze(1) + offset).reshape(-1, 2)
    sampled = features.bilinear(samples).view(count, head.n_pos, -1).permute(0, 2, 1)
    sampled = torch.selu_(head.sf_conv(sampled.unsqueeze(-1))).squeeze(-1)  # N x C x n_pos
    descriptors = torch.einsum("ncp,pcd->nd", sampled, head.agg_weights)
    return F.normalize(descriptors, p=2.0, dim=1)
