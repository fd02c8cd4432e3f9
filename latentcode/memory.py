"""Give freed model-sized buffers back to the operating system.

Scoring text under a model makes a few [tokens x vocabulary] temporaries per response, a few
MB each and of a different size for every response. glibc serves blocks of that size from its
heap once its adaptive mmap threshold has risen past them, and a heap fragmented by blocks of
ever-changing sizes only grows: measured here, token statistics of 128 answers of the embedded
model took resident memory from 0.6 GB to 4.6 GB (27 MB per answer, none of it held by
latentcode) and the generalization benchmark was killed at 16 GB. A fixed threshold of 1 MB
(glibc's ``M_MMAP_THRESHOLD``, as ``MALLOC_MMAP_THRESHOLD_=1048576`` would set it) maps every
such block on its own and unmaps it when freed: the same run stayed at 1.1 GB.

Only scoring gets that threshold, for as long as it runs (:func:`large_blocks_returned`): set
for the whole process at import, it made each RL step of ``configs/payload-4bit.toml`` 1.30x
slower (53.4 s against 41.2 s, 4 steps each, ``benchmarks/malloc_threshold.py``), every
training-sized block being mapped, faulted in and unmapped anew. On leaving, the threshold is
fixed at glibc's own ceiling (32 MB), where its adaptive threshold ends up in a long run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from contextlib import contextmanager
from functools import cache

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
THRESHOLD_BYTES = 1 << 20
ADAPTED_BYTES = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit machines


def return_large_blocks(threshold: int = THRESHOLD_BYTES) -> bool:
    """Set glibc's mmap threshold (once per process, before heavy work); False where there is
    no glibc (macOS, musl) or the user set ``MALLOC_MMAP_THRESHOLD_`` themselves."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        return bool(_libc().mallopt(M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False


@cache
def _libc():
    """The C library, found once: find_library runs ldconfig, and scoring sets the threshold
    on every call of token_stats."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


@contextmanager
def large_blocks_returned():
    """Scoring's [tokens x vocabulary] temporaries go back to the OS while inside; on leaving,
    the threshold is glibc's adapted one, which training runs fastest under (module docstring).
    Nested uses keep the low threshold until the outermost one leaves."""
    global _depth
    _depth += 1
    try:
        if _depth == 1:
            return_large_blocks(THRESHOLD_BYTES)
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            return_large_blocks(ADAPTED_BYTES)


_depth = 0
