"""aliked_sparse gives kornia's ALIKED output, bit for bit where it matters (the keypoints)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lookalike.imaging.loading import load_image
from lookalike.methods.learned_local import bounded
from lookalike.nets import aliked_sparse
from lookalike.nets.learned import detector
from tests.conftest import LANDMARKS, manifest_rows


def photo_tensor(path) -> torch.Tensor:
    image = bounded(load_image(path).convert("RGB"), 800)
    pixels = np.asarray(image, np.float32) / np.float32(255.0)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]


def test_lazy_unit_map_reads_what_grid_sample_reads_from_the_normalised_map():
    torch.manual_seed(0)
    dense = torch.randn(8, 13, 17)
    # Points inside, on the border and outside it (where grid_sample's zero padding counts).
    points = torch.rand(400, 2) * torch.tensor([21.0, 17.0]) - 2
    unit = F.normalize(dense, p=2, dim=0)
    grid = (2 * points / torch.tensor([16.0, 12.0]) - 1).view(1, 1, -1, 2)
    expected = F.grid_sample(unit[None], grid, mode="bilinear", align_corners=True)[0, :, 0].T
    got = aliked_sparse.LazyUnitMap(dense).bilinear(points)
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("index", [0, 29])  # a portrait photo that needs padding; a landscape one
def test_forward_matches_kornia(index, landmarks_dir):
    model = detector("aliked-n16", 1024)
    tensor = photo_tensor(LANDMARKS / manifest_rows()[index]["path"])
    with torch.inference_mode():
        reference = model(tensor)[0]
        keypoints, descriptors, scores = aliked_sparse.forward(model, tensor)
    assert len(keypoints) == 1024
    assert torch.equal(keypoints, reference.keypoints)
    assert torch.equal(scores, reference.keypoint_scores)
    assert torch.allclose(descriptors, reference.descriptors, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (16, 16), (8, 500), (300, 400)])
def test_odd_sizes_and_blank_images_match_kornia(shape):
    """Fewer keypoints than asked, none at all, patches clamped at the border."""
    model = detector("aliked-n16", 1024)
    tensor = torch.full((1, 3, *shape), 0.5) if shape == (300, 400) else \
        torch.rand(1, 3, *shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        reference = model(tensor)[0]
        keypoints, descriptors, scores = aliked_sparse.forward(model, tensor)
    assert torch.equal(keypoints, reference.keypoints)
    assert torch.equal(scores, reference.keypoint_scores)
    assert descriptors.shape == reference.descriptors.shape
    assert torch.allclose(descriptors, reference.descriptors, atol=1e-5)
