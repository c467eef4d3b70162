"""Where the work runs: the torch device, and how many threads the heavy libraries use,
decided here only.

- The networks (ONNX Runtime's intra-op pool, lookalike.nets.runtime; torch where it still
  runs) use `inference_threads()`: every core this process may run on, or $LOOKALIKE_THREADS.
  A learned method's extraction runs its network in one thread (decoding goes to the `--jobs`
  threads, lookalike.features.extract), so the network alone uses the cores.
- FAISS gets as many OpenMP threads as the caller asks for: one unless told otherwise.
- The compiled ASMK kernel (lookalike.matching.asmk_kernel) scores one query at a time per
  process on `search_threads()`: the same count as the networks.

Why FAISS gets one: lookalike already runs photos and pairs in parallel (`--jobs` workers,
server threads). FAISS's own OpenMP threads on top of that oversubscribe a small machine
badly: on the 2-core dev machine a Hamming kNN search of two AKAZE photos took 45 ms with one
thread and 300 ms
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


def inference_threads() -> int:
    """Intra-op threads of a network: $LOOKALIKE_THREADS if set, else every core."""
    value = os.environ.get("LOOKALIKE_THREADS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"LOOKALIKE_THREADS={value!r}: not a whole number") from None
    return cores()


def search_threads() -> int:
    """Threads of the compiled ASMK scoring kernel: `inference_threads()` (a search and a
    network never run at once in one request; the kernel takes one query at a time)."""
    return inference_threads()


def configure_threads() -> None:
    """Torch's intra-op threads as `inference_threads` says (torch's own default can be
    lower in containers)."""
    import torch

    if torch.get_num_threads() != inference_threads():
        torch.set_num_threads(inference_threads())


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
