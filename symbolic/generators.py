"""Minimal polynomial generators of the invariant algebra up to a degree (classical invariant theory).

Multidegree by multidegree, in increasing degree: the invariants of multidegree M form a space of the exact
Molien dimension (symbolic/molien.py). Products of generators of lower degree span part of it; its rank is
computed mod p at random integer points. Connected contraction graphs of M, in cost order, become new generators
while they raise that rank, until it reaches the dimension. Reaching the dimension proves that the generators
found so far generate every invariant of M (a modular rank never exceeds the rational one, and no set of
invariants exceeds the dimension). Minimality (each new generator is not a polynomial in the earlier ones) is a
rank at random points, confirmed at a second prime, as in the basis search. Graphs are listed exhaustively up to
span.EXHAUSTIVE_MAX_DEGREE factors and sampled above (rounds of more samples before the search gives up).

For SO(3) the multidegrees of odd total order join in: their invariants are pseudoscalars (one Levi-Civita vertex,
symbolic/levi_civita.py), spanned by products with an odd number of pseudoscalar generators and by new pseudoscalar
graphs, against the SO(3) Molien dimension (e.g. the binary sextic, l = 3, gains its skew invariant at degree 15).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

import numpy as np

from cartinv.errors import CartinvError

from . import levi_civita, molien
from .graphs import ContractionGraph, Label, graphs_for_labels, label_multisets, sample_graphs
from .modular import PRIMES, Echelon, ModularPoints
from .span import EXHAUSTIVE_MAX_DEGREE, MAX_SAMPLES, SAMPLES, SEED, SpanCheck, SpanError, multidegree

MAX_PRODUCTS = 20_000  # products of lower generators in one multidegree (refused above, with the count)


class GeneratorError(CartinvError, ValueError):
    """A generator search that would be too large; the message says how large."""


@dataclass(frozen=True)
class GeneratorResult:
    """Generators in the order found, the dropped connected graphs of each multidegree, and the span record."""

    generators: tuple[ContractionGraph, ...]
    dropped: tuple[ContractionGraph, ...]
    span: SpanCheck

    def degrees(self) -> list[int]:
        """Tensor factors of each generator (a pseudoscalar's Levi-Civita vertex is not counted)."""
        return [levi_civita.tensor_degree(g) for g in self.generators]


def _products(target: Counter, gens: list[Counter], limit: int) -> list[tuple[int, ...]]:
    """Multisets of at least two generator indices whose multidegrees add up to `target`."""
    out: list[tuple[int, ...]] = []

    def rec(start, remaining: Counter, chosen):
        if not +remaining:
            if len(chosen) >= 2:
                out.append(tuple(chosen))
            return
        for k in range(start, len(gens)):
            d = gens[k]
            if all(remaining[lab] >= n for lab, n in d.items()):
                rec(k, remaining - d, chosen + [k])
                if len(out) > limit:
                    raise GeneratorError(f"more than {limit:,} products of lower generators in multidegree "
                                         f"{dict(target)}; lower the degree")

    rec(0, target, [])
    return out


def _candidates(labels: tuple[Label, ...], samples: int):
    """Connected graphs of these tensor labels: Kronecker ones for an even total order, pseudoscalar ones for odd."""
    if levi_civita.parity(labels):
        if len(labels) <= EXHAUSTIVE_MAX_DEGREE:
            return levi_civita.pseudo_graphs(labels)
        return levi_civita.sample_pseudo_graphs(labels, samples, SEED)
    if len(labels) <= EXHAUSTIVE_MAX_DEGREE:
        return graphs_for_labels(labels)
    return sample_graphs(labels, samples, SEED)


def _multisets(blocks: tuple[Label, ...], degree: int, group: str):
    """Label multisets of `degree` factors that carry invariants of the group (SO(3): odd total orders too)."""
    if group == "o3":
        return list(label_multisets(blocks, degree))
    return list(itertools.combinations_with_replacement(blocks, degree))


def find_generators(blocks: tuple[Label, ...], degree: int, progress=None, group: str = "o3") -> GeneratorResult:
    """Minimal generators of the O(3) or SO(3) invariants of `blocks` (label tuples) up to `degree` (module
    docstring)."""
    if group not in molien.GROUPS:
        raise GeneratorError(f"group must be one of {list(molien.GROUPS)}, got {group!r}")
    blocks = tuple(sorted(blocks))
    orders = tuple(l for _, l in blocks)
    multisets = [ms for d in range(1, degree + 1) for ms in _multisets(blocks, d, group)]
    dims = {ms: molien.invariant_dimension(orders, multidegree(blocks, ms), group) for ms in multisets}
    batch = max(dims.values(), default=0) + 8
    points = [ModularPoints(blocks, p, batch, SEED + 1) for p in PRIMES]
    gens: list[Counter] = []  # the multidegree of each generator in `found`
    found: list[ContractionGraph] = []
    values: list[list[np.ndarray]] = [[] for _ in PRIMES]  # values[prime][generator]
    dropped: list[ContractionGraph] = []
    n_md = n_graphs = total = 0
    for step, ms in enumerate(multisets):
        if progress:
            progress("generators", step + 1, len(multisets))
        dim = dims[ms]
        if dim == 0:
            continue
        target = Counter(ms)
        products = _products(target, gens, MAX_PRODUCTS)
        echelons = [Echelon(batch, p) for p in PRIMES]
        for e, pts, vals in zip(echelons, points, values):
            for prod in products:
                col = np.ones(batch, dtype=np.int64)
                for k in prod:
                    col = col * vals[k] % pts.prime
                e.add(col)
                if e.rank == dim:
                    break
        samples, seen = SAMPLES, set()
        while True:
            graphs = [g for g in _candidates(ms, samples) if g not in seen]
            for g in graphs:
                seen.add(g)
                rows = [pts.values(g).astype(np.int64) % pts.prime for pts in points]
                if max(e.rank for e in echelons) < dim and any(e.would_raise(r) for e, r in zip(echelons, rows)):
                    for e, r, vals in zip(echelons, rows, values):
                        e.add(r)
                        vals.append(r)
                    gens.append(target)
                    found.append(g)
                else:
                    dropped.append(g)
            rank = max(e.rank for e in echelons)
            if rank == dim or len(ms) <= EXHAUSTIVE_MAX_DEGREE or samples >= MAX_SAMPLES:
                break
            samples *= 4
        if rank != dim:
            raise SpanError(f"generators and graphs of multidegree {dict(target)} span {rank} of the {dim} "
                            f"invariants (Molien dimension)")
        n_md += 1
        n_graphs += len(seen) + len(products)
        total += dim
    span = SpanCheck(group, max((len(ms) for ms in multisets if dims[ms]), default=0), n_md, n_graphs, total, total)
    return GeneratorResult(tuple(found), tuple(dropped), span)
