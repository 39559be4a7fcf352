"""glibc malloc settings for a training process: keep freed memory for reuse instead of handing it back.

Force training allocates and frees many [pairs, radial, channels] temporaries of a few MB per step. With glibc's
defaults each free may return the memory to the system (trimming the heap, or unmapping an mmap-ed block), and
the next allocation of the same size faults every page in again and zero-fills it: 57,000 minor page faults in
50 iterations of a toy step against 800 with these settings; the toluene training step (8 structures, float64,
one thread) went from 42.9 to 36.8 ms. Process-wide and best called before torch allocates anything, so it is
done by ``cartinv train`` and the chemistry benchmark (for every model in that process alike), not on import.
"""

from __future__ import annotations

import ctypes
import sys

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# blocks below this come from the heap and are reused; larger ones are mapped and unmapped (the largest per-step
# temporaries of molecules and small cells are a few MB; the kernels' own outputs are pooled: cpu_backend.BufferPool)
MMAP_THRESHOLD = 64 << 20
# the heap is trimmed (memory handed back) only when this much is free at its top
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (above) for this process; False where malloc is not glibc's."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # setting the mmap threshold ends glibc's own adjustment of both thresholds, so both are set
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
