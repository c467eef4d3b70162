"""`disk`: DISK keypoints and descriptors (Tyszkiewicz et al. 2020), verified geometrically.

DISK is trained by reinforcement on matching photos of the same places; it finds more
keypoints on texture than ALIKED, and is ~3x slower on a CPU. Matched like `aliked`. The
network, its keypoints and descriptors run on ONNX Runtime (`runtime="onnx"`, the default;
lookalike.nets.local_runtime) or in kornia's eager PyTorch (`runtime="torch"`).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from lookalike.features.registry import register
from lookalike.methods.learned_local import LearnedLocal


@register
@dataclasses.dataclass
class Disk(LearnedLocal):
    name: ClassVar[str] = "disk"
    description: ClassVar[str] = "DISK learned keypoints, MNN or LightGlue, MAGSAC++ inliers"
    order: ClassVar[int] = 42
    network: ClassVar[str] = "disk"
    glue: ClassVar[str] = "lightglue-disk"
    in_all: ClassVar[bool] = False  # slow on a CPU; name it to run it
    runtimes: ClassVar[tuple[str, ...]] = ("onnx", "torch")

    def detect_onnx(self, pixels):
        """DISK (U-Net, keypoints, descriptors) in one ONNX Runtime call
        (lookalike.nets.local_export.DiskGraph): kornia's keypoints, best first."""
        from lookalike.nets.local_runtime import run_disk

        return run_disk(self.max_keypoints, pixels)

    def detect_torch(self, tensor):
        from lookalike.nets.learned import detector

        found = detector("disk", self.max_keypoints).to(tensor.device)(
            tensor, n=self.max_keypoints, pad_if_not_divisible=True)[0]
        return (found.keypoints.cpu().numpy(), found.descriptors.float().cpu().numpy(),
                found.detection_scores.float().cpu().numpy())
