"""Where the work runs: the torch device, torch's threads, and FAISS's OpenMP threads.

FAISS gets as many OpenMP threads as the caller asks for: one unless told otherwise. Why: lookalike already runs photos and pairs in parallel (`--jobs` workers, server threads).
FAISS's own OpenMP threads on top of that oversubscribe a small machine badly: on the 2-core
dev machine a Hamming kNN search of two AKAZE photos took 45 ms with one thread and 300 ms
with FAISS's default, while two worker processes ran. Long single jobs that are worth all the
cores (k-means of a codebook) ask for them with `faiss_threads(os.cpu_count())`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def cores() -> int:
    """The cores this process may use (its CPU affinity, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_device(device: str) -> str:
    """`auto` -> "cuda" when a GPU is there, else "cpu"; any other name as given."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def configure_threads() -> None:
    """Use every core for torch's intra-op work (its default can be lower in containers)."""
    import torch

    if torch.get_num_threads() != cores():
        torch.set_num_threads(cores())


def faiss_module(threads: int = 1):
    """The `faiss` module, set to `threads` OpenMP threads."""
    import faiss

    if faiss.omp_get_max_threads() != threads:
        faiss.omp_set_num_threads(threads)
    return faiss


@contextlib.contextmanager
def faiss_threads(threads: int) -> Iterator[object]:
    """`faiss_module(threads)` for the block, one thread again after it."""
    try:
        yield faiss_module(threads)
    finally:
        faiss_module(1)
