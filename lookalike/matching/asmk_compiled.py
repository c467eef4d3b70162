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


@numba.njit(cache=True, nogil=True, parallel=True, boundscheck=False)
def score(starts, ends, query_bits, bits, positions, table, size, block):
    """Scores of gallery positions 0..size-1, a block of `block` positions at a time (the
    blocks shared out between the threads): for each query word in turn, the postings of
    the word whose positions fall in the block (found by bisection: a word's postings are
    sorted by position) add their selectivity into the block's scores. Each position's score
    is one thread's sum over the words in the query's order, the order numpy's bincount adds
    them in: the scores are numpy's to the last bit, for any selectivity, and no two threads
    write one value. (Blocks smaller than a thread's share, to keep their scores in a core's
    cache, measured slower: see asmk_kernel.BLOCK.)"""
    out = np.zeros(size)
    blocks = (size + block - 1) // block
    for number in numba.prange(blocks):
        score_block(number * block, min(size, (number + 1) * block), starts, ends, query_bits,
                    bits, positions, table, out)
    return out


@numba.njit(cache=True, nogil=True, boundscheck=False)
def score_block(first, last, starts, ends, query_bits, bits, positions, table, out):
    """`score` for gallery positions first..last-1. The query's bits are read into locals
    before the loop (numba gives LLVM no aliasing information, so it cannot hoist them past
    the stores into `out`)."""
    width = bits.shape[1]
    for row in range(len(starts)):
        start, end = starts[row], ends[row]
        if end <= start:
            continue
        word_positions = positions[start:end]
        lo = start + np.searchsorted(word_positions, first)
        hi = start + np.searchsorted(word_positions, last)
        if width == 2:  # 128-bit residuals (ALIKED, DISK): unrolled, the query's in registers
            high, low = query_bits[row, 0], query_bits[row, 1]
            for posting in range(lo, hi):
                hamming = popcount(bits[posting, 0] ^ high) + popcount(bits[posting, 1] ^ low)
                out[positions[posting]] += table[hamming]
        else:
            for posting in range(lo, hi):
                hamming = 0
                for word in range(width):
                    hamming += popcount(bits[posting, word] ^ query_bits[row, word])
                out[positions[posting]] += table[hamming]
