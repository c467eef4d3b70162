"""`xfeat`: XFeat keypoints and descriptors (Potje et al. 2024), the fast learned matcher.

XFeat is ~15x cheaper than ALIKED on a CPU (64-d descriptors from a small network), at some
cost in accuracy; the `fast` preset uses it. Matched by MNN or LighterGlue, then MAGSAC++. The
network, its keypoints and descriptors run on ONNX Runtime (`runtime="onnx"`, the default;
lookalike.nets.local_runtime), LighterGlue too (lookalike.nets.runtime.run_lightglue), or in
kornia's eager PyTorch (`runtime="torch"`).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from lookalike.features.registry import register
from lookalike.methods.learned_local import LearnedLocal


@register
@dataclasses.dataclass
class XFeat(LearnedLocal):
    name: ClassVar[str] = "xfeat"
    description: ClassVar[str] = "XFeat fast learned keypoints, MNN or LighterGlue, MAGSAC++"
    order: ClassVar[int] = 43
    network: ClassVar[str] = "xfeat"
    glue: ClassVar[str] = "lighterglue-xfeat"
    runtimes: ClassVar[tuple[str, ...]] = ("onnx", "torch")

    def detect_onnx(self, pixels):
        """XFeat (resize, network, keypoints, descriptors) in one ONNX Runtime call
        (lookalike.nets.local_export.XFeatGraph): kornia's keypoints within 1e-3 px."""
        from lookalike.nets.local_runtime import run_xfeat

        return run_xfeat(self.max_keypoints, pixels)

    def detect_torch(self, tensor):
        from lookalike.nets.learned import detector

        found = detector("xfeat", self.max_keypoints).detectAndCompute(
            tensor, top_k=self.max_keypoints)[0]
        return (found["keypoints"].cpu().numpy(), found["descriptors"].cpu().numpy(),
                found["scores"].cpu().numpy())
