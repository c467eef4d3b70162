"""lookalike: offline landmark similarity and recognition.

The Python API, verbs a user would guess (see `lookalike.api` and README's Python tour):

    import lookalike
    image = lookalike.load_image("photo.jpg")
    result = lookalike.compare(["photos/"], methods="phash,akaze,augnet", outdir="out/")
    index = lookalike.build_index("gallery/", "town.lkidx", preset="fast")
    answer = index.identify("photo.jpg")          # Identification: landmark, probability

Names are imported when first used, so `import lookalike` (and the command line) does not
pay for numpy, OpenCV or torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> the module that defines it ("module:attribute" where the name differs there).
# Adding a verb is one line here (and its docs).
_EXPORTS: dict[str, str] = {
    "load_image": "lookalike.imaging.loading",
    "find_images": "lookalike.imaging.loading",
    "LoadOptions": "lookalike.imaging.loading",
    "ImageLoadError": "lookalike.imaging.loading",
    "get_method": "lookalike.features.registry",
    "method_names": "lookalike.features.registry",
    "extract_features": "lookalike.features.extract",
    "extract_feature_sets": "lookalike.features.extract",
    "FeatureSet": "lookalike.features.contract",
    "compare": "lookalike.evaluation.compare",
    "CompareResult": "lookalike.evaluation.results",
    "SimilarityMatrix": "lookalike.evaluation.results",
    "evaluate": "lookalike.evaluation.evaluate",
    "EvaluationResult": "lookalike.evaluation.results",
    "MethodScores": "lookalike.evaluation.results",
    "build_index": "lookalike.api",
    "open_index": "lookalike.api",
    "Index": "lookalike.api",
    "identify": "lookalike.api",
    "verify": "lookalike.api",
    "Identification": "lookalike.api",
    "Verification": "lookalike.api",
    "serve_app": "lookalike.api",
    "InputError": "lookalike.errors",
    "group": "lookalike.api",
    "Grouping": "lookalike.grouping.groups",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lookalike' has no attribute {name!r}")
    module, _, attribute = _EXPORTS[name].partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
