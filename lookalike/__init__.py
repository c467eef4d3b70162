"""lookalike: offline landmark similarity and recognition.

The Python API mirrors the CLI:

    import lookalike
    result = lookalike.compare(["photos/"], methods="phash,akaze,augnet", outdir="out/")
    features = lookalike.extract_features(lookalike.get_method("augnet"), paths)
"""

__version__ = "0.1.0"

from lookalike.compare import CompareResult, SimilarityMatrix, compare
from lookalike.features import FeatureSet, extract_feature_sets, extract_features
from lookalike.loading import ImageLoadError, LoadOptions, find_images, load_image
from lookalike.methods import get_method, method_names

__all__ = [
    "CompareResult", "FeatureSet", "ImageLoadError", "LoadOptions", "SimilarityMatrix",
    "compare", "extract_feature_sets", "extract_features", "find_images", "get_method",
    "load_image", "method_names",
]
