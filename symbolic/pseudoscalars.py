"""The SO(3) completion of a Basis: the fewest pseudoscalars that tell a configuration from its mirror image.

A pseudoscalar p never raises the Jacobian rank of a complete O(3) basis (p**2 is an O(3) invariant), but it
changes sign under a reflection: where p != 0, the O(3) invariants and p together separate the two mirror
images, which the O(3) invariants alone cannot. So one pseudoscalar is kept, generically enough: the cheapest
one (cost order of symbolic/select.py) that is not identically zero, searched degree by degree. Its square is
recorded as the signed sum of O(3) contractions from eps_abc eps_def = det[delta] (levi_civita.product_graphs),
verified at fresh points. The other pseudoscalar candidates of its degree are dropped with a relation: linear
or algebraic over the kept invariants where one exists, else p * q = (O(3) contractions), the same identity.

A kept pseudoscalar is identically zero on every stratum where one of its factors' blocks is zero (a product of
tensors with a zero factor; on the other strata it is the same non-zero polynomial). The report says, for each
stratum of the Basis, whether a kept pseudoscalar survives there and, if none does, the cheapest pseudoscalar
candidate up to the searched degree that would (or that there is none: e.g. a lone vector's mirror image is a
rotation of it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from cartinv.errors import CartinvError

from . import levi_civita
from .formulas import FormulaBuilder
from .graphs import ContractionGraph, cost_key
from .modular import PRIMES, ModularPoints
from .relations import NoRelation, Relation

SEED = 20261204
POINTS = 4
MAX_PSEUDO_DEGREE = 6  # exhaustive enumeration (as symbolic/select.py's EXHAUSTIVE_MAX_DEGREE)


class NoPseudoscalarError(CartinvError, ValueError):
    """No pseudoscalar exists up to the searched degree (select.py turns it into a RequestError)."""


@dataclass(frozen=True)
class Chirality:
    """The Basis file's ``chirality`` record: the kept pseudoscalars' squares and the strata report."""

    squares: tuple[tuple[str, str], ...]  # (id, "I14**2 = ...")
    strata: tuple[dict, ...]  # {"zero": [[c, l], ...], "separated": bool, "candidate": index notation or None}

    def to_json(self) -> dict:
        return {"pseudoscalars": [{"id": i, "square": s} for i, s in self.squares], "strata": list(self.strata)}


def candidates(blocks, degree: int, live=None) -> list[ContractionGraph]:
    """Connected pseudoscalar graphs with `degree` tensor factors from `blocks` (only `live` blocks, if given), in
    cost order."""
    pool = sorted(blocks if live is None else [b for b in blocks if b in live])
    out = []
    for combo in itertools.combinations_with_replacement(pool, degree):
        out.extend(levi_civita.pseudo_graphs(combo))
    return sorted(out, key=cost_key)


FIRST_DEGREE_CAP = 16


def first_pseudoscalar_degree(blocks) -> int | None:
    """The lowest degree with an SO(3) invariant of odd total order (a pseudoscalar), from the exact Molien
    count, or None up to FIRST_DEGREE_CAP."""

    from . import molien

    orders = tuple(l for _, l in sorted(blocks))
    for d in range(1, FIRST_DEGREE_CAP + 1):
        for combo in itertools.combinations_with_replacement(range(len(orders)), d):
            md = tuple(combo.count(b) for b in range(len(orders)))
            if sum(n * l for n, l in zip(md, orders)) % 2 and molien.invariant_dimension(orders, md, "so3"):
                return d
    return None


def _nonzero(points: list[ModularPoints], g: ContractionGraph) -> bool:
    """True is a proof (a non-zero value at an integer point); False is confirmed exactly by the caller."""
    return any(bool((pts.values(g) % pts.prime).any()) for pts in points)


def product_text(lhs: str, terms, channels: int) -> str:
    """'lhs = c1*[G1] - c2*[G2] ...' for (sign, O(3) graph) terms in index notation."""
    if not terms:
        return f"{lhs} = 0"
    parts = []
    for k, (s, g) in enumerate(terms):
        mag = "" if abs(s) == 1 else f"{abs(s)}*"
        sign = ("-" if s < 0 else "") if k == 0 else (" - " if s < 0 else " + ")
        parts.append(f"{sign}{mag}[{g.index_notation(channels)}]")
    return f"{lhs} = " + "".join(parts)


def _verify(lhs_graphs, terms, blocks) -> None:
    """The product identity at fresh points mod both primes (it is exact; this guards the leg bookkeeping)."""
    for prime in PRIMES:
        pts = ModularPoints(tuple(blocks), prime, 6, SEED + 1)
        lhs = np.ones(pts.batch, dtype=np.int64)
        for g in lhs_graphs:
            lhs = lhs * (pts.values(g) % prime) % prime
        rhs = np.zeros(pts.batch, dtype=np.int64)
        for s, g in terms:
            rhs = (rhs + s * (pts.values(g) % prime)) % prime
        assert (lhs % prime == rhs % prime).all(), "Levi-Civita product identity failed"


def select(sel, max_degree: int, channels: int) -> Chirality:
    """Keep the cheapest non-zero pseudoscalar (sel.keep), drop the other candidates of its degree with their
    relations (sel.drop), and report the strata. Raises NoPseudoscalarError when none exists up to max_degree."""
    blocks = sel.blocks
    points = [ModularPoints(tuple(blocks), p, POINTS, SEED) for p in PRIMES]
    fb = FormulaBuilder(blocks, channels)
    top = min(max_degree, MAX_PSEUDO_DEGREE)
    kept: ContractionGraph | None = None
    for d in range(1, top + 1):
        cands = candidates(blocks, d)
        for k, g in enumerate(cands):
            sel.progress(f"pseudoscalars, degree {d}", k + 1, len(cands))
            if kept is None and (_nonzero(points, g) or fb.polynomial_z(g) != 0):
                kept = g
                sel.keep(g)
        if kept is not None:
            for g in cands:
                if g != kept:
                    _drop(sel, g, kept, fb, channels)
            break
    if kept is None:
        first = first_pseudoscalar_degree(blocks)
        raise NoPseudoscalarError(
            f"no pseudoscalar (Levi-Civita contraction) of these blocks is non-zero up to degree {top}, so the SO(3) "
            f"basis equals the O(3) one there; the first exists at degree "
            + (f"{first} (Molien count)" if first is not None else f"> {FIRST_DEGREE_CAP} (Molien count)")
            + (f"; raise the degree to {first}" if first is not None and first <= MAX_PSEUDO_DEGREE else
               f", beyond the exhaustive search limit {MAX_PSEUDO_DEGREE}"))
    pid = sel.ids[kept]
    square = levi_civita.product_graphs(kept, kept)
    _verify([kept, kept], square, blocks)
    squares = ((pid, product_text(f"{pid}**2", square, channels)),)
    return Chirality(squares, tuple(_strata(blocks, [kept], top, points, fb, channels)))


def generator_chirality(sel, channels: int) -> Chirality:
    """The chirality record of an SO(3) generator Basis: every kept pseudoscalar with its square, and the strata.
    No candidate is searched: every pseudoscalar up to the degree is a polynomial in the generators with an odd
    number of pseudoscalar factors in each term, so where all kept pseudoscalars vanish, so does every other."""
    kept = [g for _, g in sel.kept if levi_civita.is_pseudo(g)]
    squares = []
    for g in kept:
        square = levi_civita.product_graphs(g, g)
        _verify([g, g], square, sel.blocks)
        squares.append((sel.ids[g], product_text(f"{sel.ids[g]}**2", square, channels)))
    return Chirality(tuple(squares), tuple(_strata(sel.blocks, kept, 0, None, None, channels)))


def _drop(sel, g, kept, fb, channels) -> None:
    if fb.polynomial_z(g) == 0:  # exact: e.g. eps_abc T1_a (T2 T2)_bc, a symmetric matrix on two legs
        sel.drop(g, "linear", Relation("linear", ()))
        return
    gid = f"D{len(sel.dropped) + 1}"
    reason, rel = sel.explain(g, gid)
    if isinstance(rel, NoRelation):
        terms = levi_civita.product_graphs(kept, g)
        _verify([kept, g], terms, sel.blocks)
        reason, rel = "implicit", _ProductRelation(product_text(f"{sel.ids[kept]}*{gid}", terms, channels))
    sel.drop(g, reason, rel)


@dataclass(frozen=True)
class _ProductRelation:
    """kept * candidate = signed sum of O(3) contractions (not of Basis entries: no relation_terms)."""

    line: str

    def text(self, lhs: str = "") -> str:
        return self.line

    def to_json(self, lhs: str = ""):
        return None


def _strata(blocks, kept: list[ContractionGraph], top: int, points, fb, channels: int):
    """Per stratum: does a kept pseudoscalar survive, else the cheapest candidate up to degree `top` that would."""
    from .bounds import strata_subsets

    needs = [set(levi_civita.tensor_labels(g)) for g in kept]
    for zero in strata_subsets(tuple(blocks)):
        live = frozenset(blocks) - zero
        separated = any(need <= live for need in needs)
        candidate = None
        if not separated:  # a candidate of live blocks only is the same polynomial on the stratum
            for d in range(1, top + 1):
                candidate = next((g for g in candidates(blocks, d, live)
                                  if _nonzero(points, g) or fb.polynomial_z(g) != 0), None)
                if candidate is not None:
                    break
        yield {"zero": [list(b) for b in sorted(zero)], "separated": separated,
               "candidate": None if candidate is None else candidate.index_notation(channels)}
