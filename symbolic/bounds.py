"""How many functionally independent invariants a set of blocks admits (background §4).

bound = D − (dimension of a generic rotation orbit), D = sum (2l+1) over the blocks present. The orbit
dimension is 3 once a block of order ≥ 2 or two vectors (l = 1 blocks) are present, 2 for a lone vector,
0 for scalars alone.
"""

from __future__ import annotations

import itertools

from .graphs import Label


def orbit_dimension(blocks) -> int:
    orders = [l for _, l in blocks]
    if any(l >= 2 for l in orders) or orders.count(1) >= 2:
        return 3
    return 2 if orders.count(1) == 1 else 0


def bound(blocks) -> int:
    blocks = list(blocks)
    return sum(2 * l + 1 for _, l in blocks) - orbit_dimension(blocks)


def strata_subsets(blocks: tuple[Label, ...], max_blocks: int = 10) -> list[frozenset]:
    """The sets of blocks held at zero, generic stratum (nothing zero) first, all but the everything-zero set.

    With more than `max_blocks` blocks, only whole orders (across channels) are zeroed, to keep the report finite.
    """
    blocks = tuple(sorted(blocks))
    if len(blocks) <= max_blocks:
        subsets = [frozenset(c) for k in range(len(blocks)) for c in itertools.combinations(blocks, k)]
    else:
        orders = sorted({l for _, l in blocks})
        subsets = [
            frozenset(b for b in blocks if b[1] in chosen)
            for k in range(len(orders)) for chosen in itertools.combinations(orders, k)
        ]
    return subsets
