"""Which methods fill an index's two roles: a preset's, or a global descriptor and a local
matcher named apart, as recorded in the index file, and an ASMK codebook fitted on the
gallery's own photos."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lookalike.features.contract import GLOBAL, LOCAL_MATCHER, Method
from lookalike.features.registry import get_method
from lookalike.gallery.folders import GalleryEntry, GalleryError

# (path -> encoded global feature, path -> encoded local feature, path -> error)
Extracted = tuple[dict[str, bytes], dict[str, bytes], dict[str, str]]
# What a compute engine hands in (`lookalike.engines`): paths and the two methods -> features.
Extractor = Callable[[Sequence[str], Method, Method], Extracted]


def check_roles(global_method: Method, local_method: Method) -> None:
    if global_method.role != GLOBAL:
        raise GalleryError(f"{global_method.name} is not a global descriptor; choose one of "
                           f"the methods listed by `lookalike methods` as global")
    if local_method.role != LOCAL_MATCHER:
        raise GalleryError(f"{local_method.name} is not a local matcher; choose one of the "
                           f"methods listed by `lookalike methods` as local")


def method_from_spec(spec: dict[str, Any]) -> Method:
    """A method rebuilt from what the index recorded (name and settings)."""
    return get_method(spec["name"], **spec.get("settings", {}))


def method_record(method: Method) -> dict[str, Any]:
    return {"name": method.name,
            "settings": json.loads(json.dumps(method.settings(), default=str))}


VIEW_SETTINGS = ("views", "query_views", "search_views")  # how photos are described, not which pipeline


def pipeline_methods(preset: str | None = None, global_name: str | None = None,
                     local_name: str | None = None, weights: str | None = None,
                     codebook: str | None = None, views: str | None = None
                     ) -> tuple[Method, Method]:
    """The (global, local) methods of a preset, with either replaced by name if asked (an
    index built so records no preset: `is_preset` tells); `views`: how the learned local
    features describe a reference ("whole" or "tiles"; queries stay whole)."""
    from lookalike.retrieval.presets import get_preset

    chosen = get_preset(preset)
    global_method, local_method = chosen.methods()
    if global_name is not None and global_name != global_method.name:
        global_method = get_method(global_name)
    if local_name is not None and local_name != local_method.name:
        local_method = get_method(local_name)
    if weights is not None and global_method.has_setting("weights"):
        global_method = get_method(global_method.name, **{**global_method.settings(),
                                                          "weights": weights})
    if codebook is not None and global_method.has_setting("codebook"):
        global_method = get_method(global_method.name, **{**global_method.settings(),
                                                          "codebook": codebook})
    if views is not None:
        global_method, local_method = (
            get_method(m.name, **{**m.settings(), "views": views}) if m.has_setting("views")
            else m for m in (global_method, local_method))
    check_roles(global_method, local_method)
    return global_method, local_method


def is_preset(name: str | None, global_method: Method, local_method: Method) -> str | None:
    """The preset's name when these are exactly its methods, else None."""
    from lookalike.retrieval.presets import get_preset

    def record(method: Method) -> dict[str, Any]:  # a preset's methods in any views
        found = method_record(method)
        found["settings"] = {key: value for key, value in found["settings"].items()
                             if key not in VIEW_SETTINGS}
        return found

    expected = get_preset(name).methods()
    same = [record(m) for m in expected] == [record(global_method), record(local_method)]
    return get_preset(name).name if same else None


def fit_gallery_codebook(entries: Sequence[GalleryEntry], global_method: Method,
                         local_method: Method, extract: Extractor, output: str | os.PathLike,
                         quiet: bool = True, codebook_words: int | None = None) -> Method:
    """Fit the ASMK codebook (`codebook_words` visual words, default the current one's) on
    the gallery's own local descriptors, saved beside the index (NAME.lkidx.codebook.npy),
    and return the global method that uses it. k-means sees a random sample of the
    descriptors (`asmk.fit_codebook`: 64 per word, at least 200,000)."""
    from lookalike.matching import asmk

    words = global_method.visual_words()
    if words is None or not global_method.has_setting("codebook"):
        raise GalleryError(f"--fit-codebook: {global_method.name} has no codebook")
    words = codebook_words or words
    paths = [path for entry in entries for path in entry.photos]
    _, locals_, _ = extract(paths, global_method, local_method)
    descriptors = [local_method.decode(data)["descriptors"] for data in locals_.values()]
    try:
        centroids = asmk.fit_codebook(descriptors, words)
    except ValueError as error:
        raise GalleryError(f"--fit-codebook: {error}") from None
    target = Path(f"{output}.codebook.npy").resolve()
    codebook = asmk.save_codebook(centroids, target)
    if not quiet:
        print(f"fitted a {codebook.size}-word codebook on {len(descriptors)} photos: {target}",
              file=sys.stderr)
    return get_method(global_method.name, **{**global_method.settings(),
                                             "codebook": str(target)})
