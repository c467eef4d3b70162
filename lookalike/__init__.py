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
import sys
import types

__version__ = "0.1.0"

# name -> the module that defines it ("module:attribute" where the name differs there).
# Adding a verb is one line here (and its docs).
_EXPORTS: dict[str, str] = {
    "load_image": "lookalike.loading",
    "find_images": "lookalike.loading",
    "LoadOptions": "lookalike.loading",
    "ImageLoadError": "lookalike.loading",
    "get_method": "lookalike.methods",
    "method_names": "lookalike.methods",
    "extract_features": "lookalike.features",
    "extract_feature_sets": "lookalike.features",
    "FeatureSet": "lookalike.features",
    "compare": "lookalike.compare",
    "CompareResult": "lookalike.compare",
    "SimilarityMatrix": "lookalike.compare",
    "evaluate": "lookalike.evaluation",
    "EvaluationResult": "lookalike.evaluation",
    "MethodScores": "lookalike.evaluation",
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
    "Grouping": "lookalike.grouping",
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


class _Package(types.ModuleType):
    """`compare` and `identify` name both a verb and a submodule. Importing a submodule sets
    it as an attribute of its package; here the verb keeps the name, as users call it
    (`from lookalike.identify import Identifier` still reaches the module)."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and name in _EXPORTS:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
