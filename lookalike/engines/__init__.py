"""Compute engines: where features are extracted and photos answered, behind one seam.

A command resolves `--engine` to an extractor here and hands it to the library (`index.add`,
`build_index`), so storage and retrieval never choose an engine. An extractor is a callable
`extract(paths, global_method, local_method) -> (globals, locals, errors)`, with each feature
encoded by its method (bytes, as the index stores them) and errors as path -> reason.

- `local_extractor(cache, jobs)`: this machine's threads and processes, through the feature
  cache (`lookalike.engines.local`).
- `ray_extractor()`: Ray Data actors on a cluster (`lookalike.engines.ray`).
"""

from __future__ import annotations

COMPUTE_ENGINES = ("local", "ray")


def extractor(engine: str, cache=None, jobs: int = 1, quiet: bool = True,
              max_pixels: int | None = None):
    """The extractor of an engine by name; `max_pixels`: the pixel limit (None: the
    loader's default, 0: none)."""
    if engine == "local":
        from lookalike.engines.local import local_extractor

        if max_pixels is None:
            return local_extractor(cache, jobs, quiet)
        return local_extractor(cache, jobs, quiet, max_pixels)
    if engine == "ray":
        from lookalike.engines.ray import ray_extractor

        return ray_extractor(max_pixels=max_pixels)
    raise ValueError(f"unknown engine {engine!r}; choose from: {', '.join(COMPUTE_ENGINES)}")
