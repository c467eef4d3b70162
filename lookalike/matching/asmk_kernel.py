"""The compiled ASMK scoring kernel: one pass over a query's postings, in parallel.

Why: the numpy path of `asmk.InvertedFile.scores` makes four passes over every posting a
query meets (XOR, popcount, selectivity lookup, bincount), each writing a temporary array as
long as the postings. At 100,000 references and the 1,024-word codebook a query meets ~11
million postings, so those passes move ~0.5 GB and cost 55-115 ns a posting on the loaded dev
machine (4-8 ns with this kernel, benchmarks/index_scale.py). This kernel, compiled by numba, reads each posting once: XOR and popcount of its
residual bits (64 at a time, LLVM's `ctpop`), the selectivity looked up by Hamming distance,
added into the score of its gallery position.

Parallelism: the gallery positions are cut into equal blocks, one a thread by default, the
blocks shared out between the threads (`lookalike.nets.threads.search_threads`: every core
this process may use, or $LOOKALIKE_THREADS); within a block, each query word's postings in
the block are found by bisection (a word's postings are sorted by position). No two threads
write one score, so there are no per-thread copies to sum. Smaller blocks (`BLOCK`), whose
scores would stay in a core's cache while every query word adds into them, measured slower:
a word's sweep over a thread's scores is in ascending order, which the prefetcher follows.
One query at a time runs the kernel in a process (a lock): it already uses every core, and
numba's `workqueue` threading layer (used unless $NUMBA_THREADING_LAYER says otherwise:
OpenMP's spinning workers made two threads 4x slower than one on the busy 2-core machine)
must not be entered from two threads at once.

Equality with numpy: each score is the sum of the same table values in the same order (the
query's words in turn, the order numpy's bincount adds them in), so the scores are the numpy
path's to the last bit, for any selectivity (tested on dev photos, and by
benchmarks/index_scale.py's `same_tops` up to a million references).

Compiled functions are cached on disk ($LOOKALIKE_NUMBA_CACHE, else
$XDG_CACHE_HOME/lookalike/numba, else ~/.cache/lookalike/numba), so only the first process
after an install compiles (3-9 s on the dev machine); later ones load the machine code (the
first search of a process ~1 s at load 8, `import numba` 0.4-0.5 s of it).
`available()` is False, with one log line, when numba is not installed: the numpy path is used.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
# Gallery positions a thread scores at a time; None: one block a thread (fastest measured:
# at a million references 454 ms a query against 521 ms with blocks of 131,072 positions,
# 1 MB of scores, benchmarks/index_scale.py; at 100,000 no difference, 8,192 1.4x slower).
BLOCK: int | None = None
_STATE: dict[str, object] = {}


def cache_dir() -> Path:
    if os.environ.get("LOOKALIKE_NUMBA_CACHE"):
        return Path(os.environ["LOOKALIKE_NUMBA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lookalike" / "numba"


def _compile():
    """numba and the jitted kernel, imported on first use with the cache folder set."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir()))
    import numba

    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
    if not os.environ.get("NUMBA_THREADING_LAYER"):
        # numba's own thread pool, not OpenMP: OpenMP's workers spin between regions, which
        # on a busy 2-core machine made a 2-thread search 4x slower than one thread (a
        # second OpenMP runtime, torch's, spins too); the pool is entered under _LOCK only.
        numba.config.THREADING_LAYER = "workqueue"
    from lookalike.matching import asmk_compiled

    return numba, asmk_compiled.score


def available() -> bool:
    """Whether the compiled kernel can run (numba installed); logs once when it cannot."""
    if "score" not in _STATE and "missing" not in _STATE:
        with _LOCK:
            if "score" not in _STATE and "missing" not in _STATE:
                try:
                    _STATE["numba"], _STATE["score"] = _compile()
                except ImportError as error:
                    _STATE["missing"] = str(error)
                    log.info("numba is not installed (%s): ASMK scores use the numpy path, "
                             "several times slower on large galleries; `pip install numba`",
                             error)
    return "score" in _STATE


def scores(starts: np.ndarray, ends: np.ndarray, query_bits: np.ndarray, bits: np.ndarray,
           positions: np.ndarray, table: np.ndarray, size: int,
           threads: int | None = None) -> np.ndarray:
    """Sum over the query's words (rows: postings starts[row]:ends[row] against
    query_bits[row], uint64 words) of table[hamming], per gallery position (0..size-1)."""
    from lookalike.nets.threads import search_threads

    if not available():
        raise RuntimeError(f"the compiled ASMK kernel needs numba: {_STATE['missing']}")
    numba, kernel = _STATE["numba"], _STATE["score"]
    starts = np.ascontiguousarray(starts, np.int64)
    ends = np.maximum(np.ascontiguousarray(ends, np.int64), starts)
    # one thread for few postings (waking the others costs more)
    wanted = threads or search_threads()
    threads = int(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS,
                             int((ends - starts).sum()) // (1 << 16))))
    # equal blocks, a multiple of the threads (prange gives each thread a contiguous share)
    blocks = threads * (1 if BLOCK is None else -(-size // (threads * BLOCK)))
    block = max(1, -(-size // blocks))
    query_bits = np.ascontiguousarray(query_bits, np.uint64)
    table = np.ascontiguousarray(table, np.float64)
    with _LOCK:
        numba.set_num_threads(threads)
        return kernel(starts, ends, query_bits, bits, positions, table, int(size), block)
