"""Up-front size and time estimates of a basis request (printed before `--complete` / `--flexible` start work).

The work of a search is dominated by exact Jacobian rows of candidate graphs, whose cost grows with the number
of label multisets searched and, through the einsum sizes, with 3^(highest order). The constant is calibrated on
one core of the development machine (lmax 3 flexible: 2 s; lmax 5 complete: 3 s; lmax 6 flexible: 7 min), so the
figure is an order of magnitude, not a promise.
"""

from __future__ import annotations

from math import comb

SECONDS_PER_UNIT = 2.0e-4  # calibration: see the module docstring
ANNOUNCE_SECONDS = 30.0  # print the estimate before a search longer than this (always on a terminal)
REFUSE_SECONDS = 3600.0  # refuse searches estimated beyond this
EXHAUSTIVE_MAX_DEGREE = 6


def label_multisets(n_blocks: int, degree: int) -> int:
    """Label multisets of 1..degree factors over n_blocks blocks (an upper bound on what is searched)."""
    return sum(comb(n_blocks + d - 1, d) for d in range(1, degree + 1))


def work_units(orders, channels: int, degree: int, flexible: bool) -> int:
    n_blocks = len(orders) * channels
    units = label_multisets(n_blocks, min(degree, EXHAUSTIVE_MAX_DEGREE)) * 3 ** max(orders)
    if flexible:  # every stratum (non-empty set of blocks) is searched on its own
        units *= max(1, n_blocks // 2)
    return units


def seconds(request) -> float:
    """Rough single-core time of a request (BasisRequest)."""
    return work_units(request.orders, request.channels, request.searched_degree or 1, request.flexible) * \
        SECONDS_PER_UNIT


def _duration(t: float) -> str:
    if t < 90:
        return f"{max(t, 1):.0f} s"
    if t < 5400:
        return f"{t / 60:.0f} min"
    return f"{t / 3600:.1f} h"


def describe(request) -> str:
    """One line: what will be searched and roughly how long it takes."""
    n_blocks = len(request.orders) * request.channels
    degree = request.searched_degree or 1
    mode = "flexible (every stratum)" if request.flexible else "complete"
    return (f"estimate: {mode} search over {n_blocks} blocks, up to degree {degree}, about "
            f"{label_multisets(n_blocks, min(degree, EXHAUSTIVE_MAX_DEGREE)):,} label multisets searched "
            f"exhaustively{' (sampled above degree 6)' if degree > EXHAUSTIVE_MAX_DEGREE else ''}; "
            f"at most roughly {_duration(seconds(request))} on one core")
