"""`aliked`: ALIKED keypoints and descriptors, matched and verified geometrically.

ALIKED-n16 (Zhao et al. 2023) at 1,024 keypoints on the photo bounded to 800 px; `n16rot`
(trained with rotations) where photos may be sideways. Pairs match by mutual nearest
neighbours + ratio test, or by LightGlue (`matcher="lightglue"`), then MAGSAC++. The network
runs on ONNX Runtime (`runtime="onnx"`, the default; lookalike.nets.runtime) or in kornia's
eager PyTorch (`runtime="torch"`).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from lookalike.features.registry import register
from lookalike.methods.learned_local import LearnedLocal

VARIANTS = ("aliked-n16", "aliked-n16rot", "aliked-n32", "aliked-t16")


@register
@dataclasses.dataclass
class Aliked(LearnedLocal):
    name: ClassVar[str] = "aliked"
    description: ClassVar[str] = "ALIKED learned keypoints, MNN or LightGlue, MAGSAC++ inliers"
    order: ClassVar[int] = 41
    glue: ClassVar[str] = "lightglue-aliked"
    runtimes: ClassVar[tuple[str, ...]] = ("onnx", "torch")
    variant: str = "aliked-n16"

    def __post_init__(self):
        super().__post_init__()
        if self.variant not in VARIANTS:
            raise ValueError(f"aliked variant must be one of {', '.join(VARIANTS)}")

    @property
    def network(self) -> str:  # type: ignore[override]
        return self.variant

    def detect_onnx(self, pixels):
        """The whole of ALIKED (network, keypoints, descriptors) in one ONNX Runtime call
        (lookalike.nets.export.AlikedGraph): kornia's keypoints within 1e-3 px."""
        from lookalike.nets.runtime import run_aliked

        return run_aliked(self.variant, self.max_keypoints, pixels)

    def detect_torch(self, tensor):
        """kornia's ALIKED, with its dense map normalised only where descriptors read it
        (`aliked_sparse`: the same output, ~a fifth less time on a CPU)."""
        from lookalike.nets import aliked_sparse
        from lookalike.nets.learned import detector

        model = detector(self.variant, self.max_keypoints).to(tensor.device)
        keypoints, descriptors, scores = aliked_sparse.forward(model, tensor)
        return (keypoints.cpu().numpy(), descriptors.float().cpu().numpy(),
                scores.float().cpu().numpy())
