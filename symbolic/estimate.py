"""Up-front size and time estimates of a basis request (printed before `--complete` / `--flexible` start work).

The work of a search grows with the number of label multisets searched. A flexible search repeats it for every
stratum and reaches high degrees on the high orders, so its cost also grows like 3^(highest order); a complete
search stops at the first degree that reaches the bound and grows far more slowly. Calibrated on one core of the
2-core development machine (measured / estimated): flexible lmax 3 5 s / 2 s, lmax 4 10 s / 15 s, lmax 5 134 s /
135 s; complete lmax 3 2 s / 2 s, lmax 4 4 s / 6 s, lmax 5 8 s / 14 s, lmax 6 18 s / 33 s. An order of magnitude
that errs high, not a promise.
"""

from __future__ import annotations

from math import comb

SECONDS_PER_UNIT = 2.0e-4  # flexible searches; calibration: see the module docstring
SECONDS_PER_MULTISET_COMPLETE = 5.0e-3  # complete searches, times 1.25^(highest order)
ANNOUNCE_SECONDS = 30.0  # print the estimate before a search longer than this (always on a terminal)
REFUSE_SECONDS = 3600.0  # refuse searches estimated beyond this
EXHAUSTIVE_MAX_DEGREE = 6


def label_multisets(n_blocks: int, degree: int) -> int:
    """Label multisets of 1..degree factors over n_blocks blocks (an upper bound on what is searched)."""
    return sum(comb(n_blocks + d - 1, d) for d in range(1, degree + 1))


def seconds(request) -> float:
    """Rough single-core time of a `--complete` or `--flexible` request (BasisRequest), erring high."""
    n_blocks = len(request.orders) * request.channels
    multisets = label_multisets(n_blocks, min(request.searched_degree or 1, EXHAUSTIVE_MAX_DEGREE))
    if request.flexible:  # every stratum is searched on its own, up to high degrees on the high orders
        return multisets * 3 ** max(request.orders) * max(1, n_blocks // 2) * SECONDS_PER_UNIT
    return multisets * 1.25 ** max(request.orders) * SECONDS_PER_MULTISET_COMPLETE


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
