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


def estimated_pairs(positions, cell, pbc, cutoff: float) -> int:
    """About how many ordered pairs lie within ``cutoff``: n times a number density times the cutoff sphere's volume.

    The density is the cell's with any periodic direction (periodic images included; within a few per cent once
    the cutoff spans several neighbours), else the atoms' bounding box's, each side at least the cutoff; without
    periodicity each atom has at most n - 1 neighbours, so small molecules count n (n - 1)."""
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)
    n = positions.shape[0]
    sphere = 4.0 / 3.0 * math.pi * cutoff ** 3
    volume = float(abs(np.linalg.det(np.asarray(cell, dtype=float)))) if any(pbc) else 0.0
    if volume > 0.0:
        return math.ceil(n * n / volume * sphere)
    if n < 2:
        return 0
    sides = np.maximum(positions.max(axis=0) - positions.min(axis=0), cutoff)
    return math.ceil(n * min(n - 1.0, n / float(np.prod(sides)) * sphere))


def memory_limit() -> int:
    """Bytes the pair lists may take: half of this machine's physical memory (8 GiB where it cannot be read)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30
