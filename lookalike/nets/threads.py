"""FAISS with as many OpenMP threads as the caller asks for: one unless told otherwise.

Why: lookalike already runs photos and pairs in parallel (`--jobs` workers, server threads).
FAISS's own OpenMP threads on top of that oversubscribe a small machine badly: on the 2-core
dev machine a Hamming kNN search of two AKAZE photos took 45 ms with one thread and 300 ms
with FAISS's default, while two worker processes ran. Long single jobs that are worth all the
cores (k-means of a codebook) ask for them with `faiss_threads(os.cpu_count())`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


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
