"""The local engine: features extracted on this machine, through the feature cache."""

from __future__ import annotations

from collections.abc import Sequence

from lookalike.features.contract import Method, shares_local
from lookalike.imaging.loading import DEFAULT_MAX_PIXELS


def local_extractor(cache=None, jobs: int = 1, quiet: bool = True,
                    max_pixels: int = DEFAULT_MAX_PIXELS):
    """Extract on this machine: cache first, then `jobs` workers (`lookalike.features.extract`);
    photos over `max_pixels` (0: no limit) are errors."""
    from lookalike.features.extract import extract_features

    def extract(paths: Sequence[str], global_method: Method, local_method: Method):
        local = extract_features(local_method, list(paths), cache, jobs, quiet, max_pixels)
        if shares_local(global_method, local_method):
            globals_ = {path: global_method.encode(global_method.aggregate(feature))
                        for path, feature in zip(local.paths, local.features)}
            errors = dict(local.errors)
        else:
            found = extract_features(global_method, list(paths), cache, jobs, quiet, max_pixels)
            globals_ = {path: global_method.encode(feature)
                        for path, feature in zip(found.paths, found.features)}
            errors = {**found.errors, **local.errors}
        locals_ = {path: local_method.encode(feature)
                   for path, feature in zip(local.paths, local.features)
                   if path not in errors}
        globals_ = {path: value for path, value in globals_.items() if path not in errors}
        return globals_, locals_, errors

    return extract
