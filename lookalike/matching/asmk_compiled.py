"""The numba code of the compiled ASMK kernel; imported only through `asmk_kernel`, which
sets the on-disk cache folder first and falls back to numpy when numba is not installed."""

from __future__ import annotations

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic


@intrinsic
def popcount(typingctx, value):
    """LLVM's ctpop: one POPCNT instruction on x86-64 (typed int64: numba would turn an int64
    sum of uint64 counts into a float64)."""
    if value != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        function = builder.module.declare_intrinsic("llvm.ctpop", [args[0].type])
        return builder.call(function, args)
    return types.int64(types.uint64), codegen


@numba.njit(cache=True, nogil=True, boundscheck=False)
def score_range(first, last, cumulative, starts, query_bits, bits, positions, table, out):
    """Add the selectivity of postings first..last (counted over the query's words' slices,
    one after the other: cumulative[row] is where row's slice begins) into `out`."""
    width = bits.shape[1]
    row = np.searchsorted(cumulative, first, side="right") - 1
    done = first
    while done < last:
        while cumulative[row + 1] <= done:
            row += 1
        stop = min(last, cumulative[row + 1])
        shift = starts[row] - cumulative[row]
        if width == 2:  # 128-bit residuals (ALIKED, DISK): the loop unrolled
            high, low = query_bits[row, 0], query_bits[row, 1]
            for posting in range(done + shift, stop + shift):
                hamming = popcount(bits[posting, 0] ^ high) + popcount(bits[posting, 1] ^ low)
                out[positions[posting]] += table[hamming]
        else:
            for posting in range(done + shift, stop + shift):
                hamming = 0
                for word in range(width):
                    hamming += popcount(bits[posting, word] ^ query_bits[row, word])
                out[positions[posting]] += table[hamming]
        done = stop


@numba.njit(cache=True, nogil=True, parallel=True, boundscheck=False)
def score(cumulative, starts, query_bits, bits, positions, table, size, threads):
    """`threads` equal ranges of the postings, one a thread, each adding into its own score
    array (no two threads write one array); the arrays summed."""
    total = cumulative[-1]
    partial = np.zeros((threads, size))
    for thread in numba.prange(threads):
        score_range(total * thread // threads, total * (thread + 1) // threads, cumulative,
                    starts, query_bits, bits, positions, table, partial[thread])
    out = partial[0].copy()
    for thread in range(1, threads):
        out += partial[thread]
    return out
