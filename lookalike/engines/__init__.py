"""Compute engines: where features are extracted and photos answered, behind one seam.

A command resolves `--engine` to an extractor here and hands it to the library (`index.add`,
`build_index`), so storage and retrieval never import an engine. An extractor is a callable
`extract(paths, global_method, local_method) -> (globals, locals, errors)`, with each feature
encoded by its method (bytes, as the index stores them) and errors as path -> reason.

- `local_extractor(cache, jobs)`: this machine's threads and processes, through the feature
  cache (`lookalike.features`).
- `ray_extractor()`: Ray Data actors on a cluster (`lookalike.engines.ray`).
"""

from __future__ import annotations

from collections.abc import Sequence

from lookalike.methods.base import Method

ENGINES = ("local", "ray")


def shares_local(global_method: Method, local_method: Method) -> bool:
    """Whether the global descriptor is aggregated from exactly the local method's features
    (ASMK over ALIKED with the same settings): then one extraction serves both roles."""
    part = getattr(global_method, "local_method", None)
    return part is not None and hasattr(global_method, "aggregate") and \
        part().cache_key() == local_method.cache_key()


def local_extractor(cache=None, jobs: int = 1, quiet: bool = True):
    """Extract on this machine: cache first, then `jobs` workers."""
    from lookalike.features import extract_features

    def extract(paths: Sequence[str], global_method: Method, local_method: Method):
        local = extract_features(local_method, list(paths), cache, jobs, quiet)
        if shares_local(global_method, local_method):
            globals_ = {path: global_method.encode(global_method.aggregate(feature))
                        for path, feature in zip(local.paths, local.features)}
            errors = dict(local.errors)
        else:
            found = extract_features(global_method, list(paths), cache, jobs, quiet)
            globals_ = {path: global_method.encode(feature)
                        for path, feature in zip(found.paths, found.features)}
            errors = {**found.errors, **local.errors}
        locals_ = {path: local_method.encode(feature)
                   for path, feature in zip(local.paths, local.features)
                   if path not in errors}
        globals_ = {path: value for path, value in globals_.items() if path not in errors}
        return globals_, locals_, errors

    return extract


def extractor(engine: str, cache=None, jobs: int = 1, quiet: bool = True):
    """The extractor of an engine by name."""
    if engine == "local":
        return local_extractor(cache, jobs, quiet)
    if engine == "ray":
        from lookalike.engines.ray import ray_extractor

        return ray_extractor()
    raise ValueError(f"unknown engine {engine!r}; choose from: {', '.join(ENGINES)}")
