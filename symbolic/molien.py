"""Exact dimensions of spaces of invariant polynomials, from characters (the Molien-Weyl count), in integers.

The blocks are irreducible representations V_l of SO(3) (one per channel and order). The polynomials of
multidegree (n_b) in the blocks form the representation ⊗_b Sym^{n_b}(V_{l_b}); the dimension of its invariants
is the multiplicity of the trivial representation. In terms of weights (eigenvalues q^m of a rotation about z),
a representation with weight polynomial P(q) = Σ_m c_m q^m contains the trivial one c_0 − c_1 times (each
irreducible V_l contributes one weight 0 and one weight 1, except V_0, which has no weight 1). The weights of
Sym^n(V_l) are the sums of n weights of V_l chosen with repetition. O(3) = SO(3) × {±1}, and −1 acts on V_l by
(−1)^l, so an O(3) invariant is an SO(3) invariant of even total parity Σ_b n_b l_b. Everything is exact integer
arithmetic; no integral is approximated.
"""

from __future__ import annotations

import itertools
from collections import Counter
from functools import lru_cache
from cartinv.errors import ArgumentError

GROUPS = ("o3", "so3")


@lru_cache(maxsize=None)
def sym_weights(l: int, n: int) -> tuple[tuple[int, int], ...]:
    """Weights of Sym^n(V_l) with their multiplicities, as sorted (weight, multiplicity) pairs."""
    # number of ways to write w as a sum of n weights from -l..l with repetition: coefficients of the Gaussian
    # binomial [n + 2l choose n]_q shifted by -n l; built by the recurrence over the number of parts.
    table = {0: Counter({0: 1})}  # table[k]: weights of multisets of size k drawn from 0..2l (shifted weights)
    for top in range(2 * l + 1):  # add the value `top` any number of times
        new = {}
        for k in range(n + 1):
            acc = Counter()
            for j in range(k + 1):
                prev = table.get(k - j)
                if prev:
                    for w, c in prev.items():
                        acc[w + j * top] += c
            if acc:
                new[k] = acc
        table = new
    return tuple(sorted((w - n * l, c) for w, c in table.get(n, Counter()).items()))


def _convolve(a: dict[int, int], b: tuple[tuple[int, int], ...]) -> dict[int, int]:
    out: Counter = Counter()
    for w1, c1 in a.items():
        for w2, c2 in b:
            out[w1 + w2] += c1 * c2
    return dict(out)


def invariant_dimension(orders_of_blocks: tuple[int, ...], multidegree: tuple[int, ...], group: str = "o3") -> int:
    """Dimension of the invariants of the given multidegree (n_b factors of block b, of order l_b)."""
    if group not in GROUPS:
        raise ArgumentError(f"group must be one of {GROUPS}, got {group!r}")
    if group == "o3" and sum(n * l for n, l in zip(multidegree, orders_of_blocks)) % 2:
        return 0
    weights: dict[int, int] = {0: 1}
    for l, n in zip(orders_of_blocks, multidegree):
        if n:
            weights = _convolve(weights, sym_weights(l, n))
    return weights.get(0, 0) - weights.get(1, 0)


def multidegrees(n_blocks: int, degree: int):
    """Every multidegree (n_b) with Σ n_b = degree, in lexicographic order (largest first block count first)."""
    for combo in itertools.combinations_with_replacement(range(n_blocks), degree):
        counts = [0] * n_blocks
        for b in combo:
            counts[b] += 1
        yield tuple(counts)


def count(orders, degree: int, channels: int = 1, group: str = "o3") -> dict:
    """Exact invariant counts of every degree 0..degree: {'group', 'orders', 'channels', 'by_degree',
    'by_multidegree'}; by_multidegree lists the non-zero multidegrees of each degree with their dimension."""
    blocks = tuple(l for _ in range(channels) for l in sorted(orders))
    by_degree, by_multi = {}, []
    for d in range(degree + 1):
        total = 0
        for md in sorted(multidegrees(len(blocks), d), reverse=True):
            dim = invariant_dimension(blocks, md, group)
            if dim:
                total += dim
                by_multi.append({"degree": d, "multidegree": list(md), "dimension": dim})
        by_degree[str(d)] = total
    return {"group": group, "orders": sorted(orders), "channels": channels, "by_degree": by_degree,
            "by_multidegree": by_multi}
