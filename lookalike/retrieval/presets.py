"""Named pipelines: which global descriptor shortlists and which local matcher verifies.

Why presets: a pipeline is a global method, a local method, their settings, how many
candidates to verify and a calibration fitted on exactly those. Named as hloc names its
configurations, a user picks one word (`--preset fast`) and gets a consistent whole; the
calibration shipped for a preset is refused by any other (see `lookalike.retrieval.calibration`).

- `fast`: XFeat (0.04 s a photo) for both roles: ASMK over XFeat descriptors, mutual nearest
  neighbours + MAGSAC++.
- `default`: ALIKED-n16 for both roles: ASMK over ALIKED descriptors, then mutual nearest
  neighbours + MAGSAC++ on the shortlist. One extraction serves both stages.
- `accurate`: as `default`, but LightGlue (adaptive, on ONNX Runtime) matches the shortlist.

Other pairings (`index build --global augnet --local verified`, the previous pipeline) work
too, with a calibration fitted on them (`evaluate --identify --fit-calibration`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lookalike.errors import InputError
from lookalike.features.contract import Method
from lookalike.features.registry import get_method
from lookalike.retrieval.calibration import Calibration, CalibrationError

DATA = Path(__file__).resolve().parents[1] / "data"
DEFAULT_PRESET = "default"


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    description: str
    global_method: str
    global_settings: dict[str, Any]
    local_method: str
    local_settings: dict[str, Any]
    shortlist: int = 30  # gallery items verified per query
    expansion: int = 5  # verified items averaged into the query
    verify_landmarks: int = 4  # identify: landmarks of the shortlist verified
    verify_per_landmark: int = 2  # identify: references verified per landmark

    def methods(self, **common: Any) -> tuple[Method, Method]:
        """(global method, local method); `common` settings (gray, device, weights) go to
        whichever method has them."""
        return (get_method(self.global_method, common, **self.global_settings),
                get_method(self.local_method, common, **self.local_settings))

    def calibration_path(self, kind: str) -> Path:
        """The shipped calibration of this preset: kind "pairs" (fused) or "identify"."""
        return DATA / f"calibration-{self.name}-{kind}.json"

    def calibration(self, kind: str, features: list[str] | None = None) -> Calibration:
        path = self.calibration_path(kind)
        if not path.is_file():
            fit = (f"lookalike calibrate DATASET --preset {self.name} -o pairs.json"
                   if kind == "pairs" else
                   f"lookalike evaluate --identify DATASET --preset {self.name} "
                   f"--fit-calibration identify.json")
            raise CalibrationError(f"preset {self.name!r} ships no {kind} calibration yet; "
                                   f"fit one on labelled photos (`{fit}`) and pass it on")
        return Calibration.load(path, features)


PRESETS: dict[str, Preset] = {preset.name: preset for preset in (
    Preset("fast", "XFeat for both stages: ASMK shortlist, MNN + MAGSAC++ verification",
           "asmk", {"local": "xfeat"}, "xfeat", {"matcher": "mnn"}, shortlist=20),
    Preset("default", "ALIKED for both stages: ASMK shortlist, MNN + MAGSAC++ verification",
           "asmk", {"local": "aliked"}, "aliked", {"matcher": "mnn"}, shortlist=30),
    Preset("accurate", "ALIKED: ASMK shortlist, LightGlue + MAGSAC++ verification",
           "asmk", {"local": "aliked"}, "aliked", {"matcher": "lightglue"}, shortlist=20),
)}


class UnknownPresetError(InputError, ValueError):
    """A preset name that is not one of `PRESETS`."""


def get_preset(name: str | None) -> Preset:
    name = name or DEFAULT_PRESET
    if name not in PRESETS:
        raise UnknownPresetError(f"unknown preset {name!r}; choose from: {', '.join(PRESETS)}")
    return PRESETS[name]
