"""How many pairs a neighbour list within a cutoff will hold, estimated before it is built.

A long cutoff in a dense periodic cell makes billions of pairs; training and the ASE calculator check the estimate
against ``memory_limit()`` first, so such a request is refused with its size instead of exhausting memory.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from functools import lru_cache

import numpy as np

__all__ = ["estimated_pairs", "occupied_volume", "cell_problem", "memory_limit", "BYTES_PER_PAIR"]

BYTES_PER_PAIR = 64  # the pair vector (float64), both indices and ASE's periodic shift, as the lists hold them


def estimated_pairs(positions, cell, pbc, cutoff: float) -> int:
    """About how many ordered pairs lie within ``cutoff``: n times a number density times the cutoff sphere's volume.

    The density counts the atoms in the volume they repeat over (``occupied_volume``): periodic images included,
    within a few per cent of the listed pairs once the cutoff spans several neighbours. Without periodicity each
    atom has at most n - 1 neighbours, so small molecules count n (n - 1)."""
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)
    n = positions.shape[0]
    if n == 0:
        return 0
    sphere = 4.0 / 3.0 * math.pi * cutoff ** 3
    volume = occupied_volume(positions, cell, pbc, cutoff)
    if any(pbc) and volume > 0.0:
        return math.ceil(n * n / volume * sphere)
    if n < 2:
        return 0
    if any(pbc):  # degenerate periodic vectors: the atoms' bounding box
        volume = occupied_volume(positions, cell, (False, False, False), cutoff)
    return math.ceil(n * min(n - 1.0, n / volume * sphere))


def occupied_volume(positions, cell, pbc, cutoff: float) -> float:
    """The volume the atoms fill, periodic images included: the measure of the periodic cell vectors (length, area
    or volume) times the atoms' extent across them, each extent at least ``cutoff``. A slab counts its thickness
    and not the vacuum a full cell would add (which made the estimate 3x low for 10 Å of copper in 30 Å of cell);
    without periodicity, the atoms' bounding box. 0 when the periodic vectors are degenerate."""
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)
    periodic, measure = _periodic(np.asarray(cell, dtype=float).reshape(3, 3), pbc)
    if measure <= 0.0:
        return 0.0
    # an orthonormal frame whose first rows span the periodic vectors; the atoms' extent along the rest
    frame = np.linalg.qr(np.concatenate([periodic.T, np.eye(3)], axis=1))[0].T if len(periodic) else np.eye(3)
    across = positions @ frame[len(periodic):].T
    sides = np.maximum(across.max(axis=0) - across.min(axis=0), cutoff) if across.size else np.ones(0)
    return measure * float(np.prod(sides))


def cell_problem(cell, pbc) -> str | None:
    """Why no neighbour list can be built for this cell, or None: NaN or infinite entries, or periodic vectors that
    span no length, area or volume (every atom would then sit on its own images)."""
    cell = np.ascontiguousarray(cell, dtype=np.float64).reshape(3, 3)
    return _cell_problem(cell.tobytes(), tuple(bool(p) for p in pbc))


@lru_cache(maxsize=256)  # exact arithmetic costs about 0.2 ms; an MD run or a data file repeats one cell
def _cell_problem(cell_bytes: bytes, pbc: tuple[bool, ...]) -> str | None:
    cell = np.frombuffer(cell_bytes, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(cell).all():
        return f"the cell holds NaN or infinite values ({cell.tolist()})"
    periodic, measure = _periodic(cell, pbc)
    if measure == 0.0:  # exact determinant
        names = ", ".join("abc"[k] for k in range(3) if pbc[k])
        span = ("length", "area", "volume")[len(periodic) - 1]
        return f"the periodic cell vectors ({names}) are degenerate: they span no {span}"
    return None


def _periodic(cell: np.ndarray, pbc) -> tuple[np.ndarray, float]:
    """The periodic cell vectors (the rows of a 3 x 3 cell where pbc is set) and what they span (``_measure``;
    1.0 when no direction is periodic)."""
    periodic = np.ascontiguousarray(cell[[k for k in range(3) if pbc[k]]])
    return periodic, (_measure(periodic.tobytes(), len(periodic)) if len(periodic) else 1.0)


@lru_cache(maxsize=256)
def _measure(vectors_bytes: bytes, count: int) -> float:
    """Length, area or volume spanned by `count` vectors, from the exact Gram determinant: a nearly flat cell whose
    floating-point determinant rounds to 0 or below still counts as the tiny volume it is (its images crowd the
    cutoff sphere), never as no periodicity. 0 for dependent or non-finite vectors."""
    vectors = np.frombuffer(vectors_bytes, dtype=np.float64).reshape(count, 3)
    if not np.isfinite(vectors).all():
        return 0.0
    det = _gram_determinant([[Fraction(float(x)) for x in v] for v in vectors])
    if det <= 0:
        return 0.0
    try:
        return max(math.sqrt(float(det)), 5e-324)
    except OverflowError:  # beyond a float: a cell of more than about 1e100 Å per side
        return math.inf


def _gram_determinant(vectors: list[list[Fraction]]) -> Fraction:
    """det(V V^T) in exact arithmetic, for one to three vectors: zero exactly when they are linearly dependent."""
    g = [[sum(a * b for a, b in zip(u, v)) for v in vectors] for u in vectors]
    if len(g) == 1:
        return g[0][0]
    if len(g) == 2:
        return g[0][0] * g[1][1] - g[0][1] * g[1][0]
    return (g[0][0] * (g[1][1] * g[2][2] - g[1][2] * g[2][1]) - g[0][1] * (g[1][0] * g[2][2] - g[1][2] * g[2][0])
            + g[0][2] * (g[1][0] * g[2][1] - g[1][1] * g[2][0]))


def memory_limit() -> int:
    """Bytes the pair lists may take: half of this machine's physical memory (8 GiB where it cannot be read)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30
