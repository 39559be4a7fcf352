"""How many pairs a neighbour list within a cutoff will hold, estimated before it is built.

A long cutoff in a dense periodic cell makes billions of pairs; training and the ASE calculator check the estimate
against ``memory_limit()`` first, so such a request is refused with its size instead of exhausting memory.
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["estimated_pairs", "memory_limit", "BYTES_PER_PAIR"]

BYTES_PER_PAIR = 64  # the pair vector (float64), both indices and ASE's periodic shift, as the lists hold them


def estimated_pairs(n_atoms: int, cell, pbc, cutoff: float) -> int:
    """n (n - 1) without periodicity (an upper bound), else n times the cell's number density times the cutoff
    sphere's volume (periodic images included; within a few per cent once the cutoff spans several neighbours)."""
    volume = float(abs(np.linalg.det(np.asarray(cell, dtype=float)))) if any(pbc) else 0.0
    if volume <= 0.0:
        return n_atoms * (n_atoms - 1)
    return math.ceil(n_atoms * n_atoms / volume * 4.0 / 3.0 * math.pi * cutoff ** 3)


def memory_limit() -> int:
    """Bytes the pair lists may take: half of this machine's physical memory (8 GiB where it cannot be read)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30
