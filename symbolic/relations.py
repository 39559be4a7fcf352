"""Explicit polynomial relations: is a candidate a polynomial in the kept invariants? (background §3)

Invariants are homogeneous in every block separately, so a relation for a candidate only involves products
of kept invariants whose multidegrees add up to the candidate's. Deciding membership in that span is linear
algebra on values at random points mod p (exact); the coefficients are solved mod two primes, combined by
the Chinese remainder theorem, rationally reconstructed, and the identity is then verified at fresh points.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from math import isqrt

import numpy as np

from .graphs import ContractionGraph
from .modular import PRIMES, Echelon, ModularPoints

MAX_MONOMIALS = 240
BATCH = MAX_MONOMIALS + 16


@dataclass(frozen=True)
class Relation:
    """candidate = sum_k coefficient_k * prod(ids_k)."""

    kind: str  # "linear" or "algebraic"
    terms: tuple[tuple[Fraction, tuple[str, ...]], ...]

    def text(self, lhs: str) -> str:
        parts = []
        for coeff, ids in self.terms:
            counts = Counter(ids)
            mono = "*".join(f"{i}**{k}" if k > 1 else i for i, k in sorted(counts.items(), key=lambda t: ids.index(t[0])))
            sign = "-" if coeff < 0 else "+"
            mag = abs(coeff)
            body = mono if mag == 1 else f"{mag}*{mono}"
            parts.append((sign, body))
        if not parts:
            return f"{lhs} = 0"
        first_sign, first = parts[0]
        rhs = ("-" if first_sign == "-" else "") + first + "".join(f" {s} {b}" for s, b in parts[1:])
        return f"{lhs} = {rhs}"

    def to_json(self) -> list:
        return [[str(c), list(ids)] for c, ids in self.terms]


def _multideg(graph: ContractionGraph) -> Counter:
    return Counter(graph.labels)


class RelationFinder:
    """Finds linear/algebraic relations of candidates in terms of kept invariants (values cached per graph)."""

    def __init__(self, blocks, seed: int = 7):
        self.points = [ModularPoints(tuple(blocks), p, BATCH, seed) for p in PRIMES]
        self.check = ModularPoints(tuple(blocks), PRIMES[0], 24, seed + 1000)
        self._cache: dict = {}

    def _vals(self, pts: ModularPoints, g: ContractionGraph) -> np.ndarray:
        key = (id(pts), g)
        if key not in self._cache:
            self._cache[key] = pts.values(g).astype(np.int64) % pts.prime
        return self._cache[key]

    @staticmethod
    def monomials(target: Counter, kept: list[tuple[str, ContractionGraph]], single_only: bool):
        """Multisets of kept invariants (as index tuples) whose multidegrees sum to target."""
        degs = [_multideg(g) for _, g in kept]
        out = []

        def rec(start, remaining: Counter, chosen):
            if not +remaining:
                out.append(tuple(chosen))
                return
            if single_only and chosen:
                return
            for k in range(start, len(kept)):
                d = degs[k]
                if all(remaining[lab] >= n for lab, n in d.items()):
                    rec(k, remaining - d, chosen + [k])
                    if len(out) > MAX_MONOMIALS:
                        return

        rec(0, Counter(target), [])
        return out

    def _column(self, pts, kept, mono):
        col = np.ones(pts.batch, dtype=np.int64)
        for k in mono:
            col = (col * self._vals(pts, kept[k][1])) % pts.prime
        return col

    def find(self, cand: ContractionGraph, kept: list[tuple[str, ContractionGraph]]):
        """Relation for `cand` over `kept` (linear tried first), None if none exists, or "too-large"."""
        target = _multideg(cand)
        relevant = [(i, g) for i, g in kept if all(target[lab] >= n for lab, n in _multideg(g).items())]
        for single in (True, False):
            monos = self.monomials(target, relevant, single)
            if len(monos) > MAX_MONOMIALS:
                return "too-large"
            if not monos:
                continue
            rel = self._solve(cand, relevant, monos)
            if rel is not None:
                kind = "linear" if single else "algebraic"
                return Relation(kind, rel)
        return None

    def _solve(self, cand, kept, monos):
        p0 = self.points[0]
        # Independent monomials (greedy, in order) and whether the candidate lies in their span, at prime 0.
        cols0 = [self._column(p0, kept, m) for m in monos]
        ech = Echelon(p0.batch, p0.prime)
        chosen = [k for k, c in enumerate(cols0) if ech.add(c)]
        if ech.would_raise(self._vals(p0, cand)):
            return None
        sols = []
        for pts in self.points:
            a = np.stack([self._column(pts, kept, monos[k]) for k in chosen], axis=1)
            x = solve_mod(a, self._vals(pts, cand), pts.prime)
            if x is None:
                return None
            sols.append(x)
        modulus = PRIMES[0] * PRIMES[1]
        coeffs = []
        for x0, x1 in zip(*sols):
            c = crt(int(x0), PRIMES[0], int(x1), PRIMES[1])
            q = rational_reconstruct(c, modulus)
            if q is None:
                return None
            coeffs.append(q)
        # Verify the identity at fresh points.
        pc = self.check
        acc = np.zeros(pc.batch, dtype=object)
        for q, k in zip(coeffs, chosen):
            qm = q.numerator * pow(q.denominator, -1, pc.prime) % pc.prime
            acc = (acc + qm * self._column(pc, kept, monos[k]).astype(object)) % pc.prime
        if not np.all((acc - self._vals(pc, cand).astype(object)) % pc.prime == 0):
            return None
        terms = tuple((q, tuple(kept[i][0] for i in monos[k])) for q, k in zip(coeffs, chosen) if q != 0)
        return terms


def solve_mod(a: np.ndarray, b: np.ndarray, p: int):
    """Solve a x = b mod p for a full-column-rank a (rows ≥ columns); None if inconsistent."""
    m, n = a.shape
    aug = np.concatenate([a % p, (b % p)[:, None]], axis=1).astype(np.int64)
    row = 0
    piv_cols = []
    for col in range(n):
        nz = np.flatnonzero(aug[row:, col])
        if nz.size == 0:
            return None
        r = row + nz[0]
        aug[[row, r]] = aug[[r, row]]
        aug[row] = aug[row] * pow(int(aug[row, col]), -1, p) % p
        others = np.flatnonzero(aug[:, col])
        others = others[others != row]
        if others.size:
            aug[others] = (aug[others] - aug[others, col][:, None] * aug[row][None, :]) % p
        piv_cols.append(col)
        row += 1
    if np.any(aug[row:, n] % p):
        return None
    return aug[:n, n]


def crt(a: int, p: int, b: int, q: int) -> int:
    return (a + p * ((b - a) * pow(p, -1, q) % q)) % (p * q)


def rational_reconstruct(a: int, m: int):
    """The fraction n/d ≡ a (mod m) with |n|, d ≤ sqrt(m/2), by the half extended Euclidean algorithm."""
    bound = isqrt(m // 2)
    r0, r1, s0, s1 = m, a % m, 0, 1
    while r1 > bound:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        s0, s1 = s1, s0 - q * s1
    if s1 == 0 or abs(s1) > bound:
        return None
    return Fraction(r1, s1)
