"""Pseudoscalars: full contractions with one Levi-Civita tensor, the SO(3) invariants that O(3) lacks (background §2).

A pseudoscalar graph is a contraction graph with one extra vertex labelled EPS = (-1, 3): the Levi-Civita tensor
eps_abc, contracted once with each of three different factors (two indices of one symmetric factor on eps give
zero). It changes sign under a reflection, so it tells a configuration from its mirror image; an SO(3) invariant
of odd total order sum(n_b l_b) is exactly such a contraction (and one of even total order an O(3) one).

The canonical form is the one of symbolic/graphs.py, with EPS as an ordinary label (it sorts first, so it is
vertex 0 of every canonical pseudoscalar graph); the canonical subscripts fix the sign. Two pseudoscalars multiply
to an O(3) invariant through eps_abc eps_def = det[delta]: the product is the signed sum over the six ways of
joining the legs of one eps to the legs of the other (`product_graphs`), which is how p**2 = P(O(3) invariants)
is written for every kept pseudoscalar.
"""

from __future__ import annotations

from functools import lru_cache

from .graphs import ContractionGraph, Label, canonical, graphs_for_labels, sample_graphs
from .modular import levi_civita, permutations_with_sign  # eps_abc as integers (re-exported)
from .naming import EPS_LABEL as EPS

__all__ = ["EPS", "levi_civita", "permutations_with_sign", "is_pseudo", "tensor_labels", "tensor_degree", "parity",
           "pseudo_graphs", "sample_pseudo_graphs", "product_graphs"]


def is_pseudo(graph: ContractionGraph) -> bool:
    return EPS in graph.labels


def tensor_labels(graph: ContractionGraph) -> tuple[Label, ...]:
    """The labels of the tensor factors (without the Levi-Civita vertex)."""
    return tuple(lab for lab in graph.labels if lab != EPS)


def tensor_degree(graph: ContractionGraph) -> int:
    """Polynomial degree of a contraction: its tensor factors (the Levi-Civita vertex is a constant)."""
    return len(tensor_labels(graph))


def parity(labels) -> int:
    """Total order of the tensor factors mod 2: 1 where the invariants are pseudoscalars."""
    return sum(l for c, l in labels if (c, l) != EPS) % 2


def _legal(graph: ContractionGraph) -> bool:
    """One Levi-Civita vertex whose three legs go to three different factors (else the contraction is zero)."""
    eps = [v for v, lab in enumerate(graph.labels) if lab == EPS]
    if len(eps) != 1:
        return False
    return all(k == 1 for u, v, k in graph.edges if eps[0] in (u, v))


@lru_cache(maxsize=None)
def pseudo_graphs(labels: tuple[Label, ...], connected: bool = True) -> tuple[ContractionGraph, ...]:
    """Every pseudoscalar graph with these tensor labels (connected ones only by default; a disconnected one is a
    pseudoscalar times O(3) invariants). Empty unless the total order is odd."""
    labels = tuple(sorted(labels))
    if parity(labels) == 0:
        return ()
    return tuple(g for g in graphs_for_labels(labels + (EPS,), connected) if _legal(g))


def sample_pseudo_graphs(labels: tuple[Label, ...], count: int, seed: int,
                         connected: bool = True) -> tuple[ContractionGraph, ...]:
    """Distinct random pseudoscalar graphs (the legal ones among sample_graphs with the EPS vertex added)."""
    labels = tuple(sorted(labels))
    if parity(labels) == 0:
        return ()
    return tuple(g for g in sample_graphs(labels + (EPS,), count, seed, connected) if _legal(g))


def _legs(graph: ContractionGraph) -> tuple[int, int, int]:
    """The factors on the Levi-Civita legs, in the order of its subscript letters (vertex 0 is EPS)."""
    assert graph.labels[0] == EPS and _legal(graph)
    return tuple(v for u, v, k in graph.edges if u == 0)


def product_graphs(p: ContractionGraph, q: ContractionGraph) -> tuple[tuple[int, ContractionGraph], ...]:
    """p * q as (sign, O(3) graph) pairs: eps_abc eps_def = sum_sigma sign(sigma) delta_a,sigma(d) ... joins leg i
    of p's eps to leg sigma(i) of q's eps. Exact for the canonical subscripts of p and q (whose letters fix the leg
    order); terms that cancel are combined, so the list may be shorter than six."""
    legs_p, legs_q = _legs(p), _legs(q)
    n = p.degree - 1  # tensor vertices of p: 1..n of p become 0..n-1; q's follow
    labels = list(p.labels[1:]) + list(q.labels[1:])
    base = [(u - 1, v - 1, k) for u, v, k in p.edges if u != 0]
    base += [(u - 1 + n, v - 1 + n, k) for u, v, k in q.edges if u != 0]
    total: dict[ContractionGraph, int] = {}
    for perm, sign in permutations_with_sign(3):
        mult: dict[tuple[int, int], int] = {}
        for u, v, k in base:
            mult[(u, v)] = mult.get((u, v), 0) + k
        for i in range(3):
            a, b = legs_p[i] - 1, legs_q[perm[i]] - 1 + n
            mult[(a, b)] = mult.get((a, b), 0) + 1
        g = canonical(labels, [(u, v, k) for (u, v), k in sorted(mult.items())])
        total[g] = total.get(g, 0) + sign
    return tuple((s, g) for g, s in sorted(total.items()) if s)
