"""`xfeat`: XFeat keypoints and descriptors (Potje et al. 2024), the fast learned matcher.

XFeat is ~15x cheaper than ALIKED on a CPU (64-d descriptors from a small network), at some
cost in accuracy; the `fast` preset uses it. Matched by MNN or LighterGlue, then MAGSAC++.
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

    def detect_torch(self, tensor):
        from lookalike.nets.learned import detector

        found = detector("xfeat", self.max_keypoints).detectAndCompute(
            tensor, top_k=self.max_keypoints)[0]
        return (found["keypoints"].cpu().numpy(), found["descriptors"].cpu().numpy(),
                found["scores"].cpu().numpy())
