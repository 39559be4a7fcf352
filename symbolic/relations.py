"""Explicit relations for dropped candidates (background §3), searched in this order:

1. linear: the candidate is a combination of kept invariants of its multidegree;
2. algebraic: the candidate is a polynomial in the kept invariants;
3. linear (in its multidegree): a combination of the graphs of its multidegree listed before it (kept, dropped
   or products; each of those carries its own relation, so the chain ends in kept invariants);
4. implicit: I c = Q(kept) with I one kept invariant of degree <= MAX_LEAD_DEGREE (c is a ratio of
   polynomials), else c is a root of a monic polynomial c^k + sum_{j<k} c^j Q_j(kept) = 0 of the lowest degree
   k <= MAX_ROOT_DEGREE, each term of multidegree k times the candidate's.
Invariants are homogeneous in every block separately, so a relation only involves terms whose multidegrees add
up to the right one. Each step is linear algebra on values at random points mod p (exact); coefficients are
solved mod two primes, combined by the Chinese remainder theorem, rationally reconstructed, and the identity is
verified at fresh points. A candidate with none of these is labelled functional, with the cap that stopped it.

With `eps_mod2` (SO(3) generators), the Levi-Civita vertex counts only mod 2 in a multidegree: eps eps is a sum of
Kronecker contractions, so a product of two pseudoscalars takes part in a relation of an O(3) candidate.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from math import isqrt

import numpy as np

from .graphs import ContractionGraph
from .modular import PRIMES, Echelon, ModularPoints
from .naming import EPS_LABEL

MAX_MONOMIALS = 240
BATCH = MAX_MONOMIALS + 16
MAX_ROOT_DEGREE = 4
MAX_LEAD_DEGREE = 2  # I * c = P(kept) is tried for kept invariants I of at most this degree


@dataclass(frozen=True)
class Relation:
    """candidate = sum_k coefficient_k * prod(ids_k)."""

    kind: str  # "linear", "algebraic" or "implicit"
    terms: tuple[tuple[Fraction, tuple[str, ...]], ...]
    power: int = 1  # implicit: lead * candidate**power = sum of terms (which may hold lower powers of it)
    lead: tuple[str, ...] = ()  # implicit: kept invariants multiplying the candidate's highest power

    def text(self, lhs: str) -> str:
        if self.kind == "implicit":
            lhs = "*".join(self.lead + (lhs if self.power == 1 else f"{lhs}**{self.power}",))
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

    def to_json(self, lhs: str = "") -> list:
        """[[coefficient, [ids...]], ...]: candidate = sum of terms; for an implicit relation the terms sum to
        zero, the first being ["-1", lead + [candidate] * power]."""
        head = [["-1", list(self.lead) + [lhs] * self.power]] if self.kind == "implicit" else []
        return head + [[str(c), list(ids)] for c, ids in self.terms]


@dataclass(frozen=True)
class NoRelation:
    """Why the search stopped without a relation (the 'functional' label names this cap)."""

    root_degree: int  # monic relations were searched up to this degree in the candidate
    too_large_at: int | None  # the degree in the candidate at which the monomial count passed MAX_MONOMIALS
    products_skipped: bool = False  # step 2 had more than MAX_MONOMIALS products of kept invariants

    def text(self) -> str:
        searched = self.root_degree if self.too_large_at is None else self.too_large_at - 1
        parts = ["rank unchanged"]
        if self.products_skipped:
            parts.append(f"polynomial search skipped (more than {MAX_MONOMIALS} products of kept invariants)")
        parts.append("not a linear combination of earlier graphs of its multidegree")
        parts.append(f"no relation I*c = P(kept) with I a kept invariant of degree <= {MAX_LEAD_DEGREE}")
        if searched >= 2:
            parts.append(f"no monic polynomial relation over the kept invariants of degree <= {searched} in it")
        if self.too_large_at is not None:
            parts.append(f"degree {self.too_large_at} not searched (more than {MAX_MONOMIALS} monomials)")
        return "; ".join(parts)


def _multideg(graph: ContractionGraph) -> Counter:
    return Counter(graph.labels)


def _inside(target: Counter, d: Counter, eps_mod2: bool) -> bool:
    """Whether an invariant of multidegree d can be a factor of a term of multidegree target."""
    return all(target[lab] >= n for lab, n in d.items() if not (eps_mod2 and lab == EPS_LABEL))


@lru_cache(maxsize=1 << 14)
def _monomials(want: tuple[int, ...], fits: tuple, odd: int, single_only: bool) -> tuple[tuple[int, ...], ...]:
    """RelationFinder.monomials on (index, multidegree, Levi-Civita parity) triples; cached, because the greedy
    search asks for the same target over the same kept multidegrees many times (lmax 6: 3,272 calls, 939 distinct)."""
    cap = MAX_MONOMIALS + 1  # callers only need to know that there are more than MAX_MONOMIALS
    if not any(want):
        return ((),) if not odd else ()
    if single_only:
        return tuple((k,) for k, d, e in fits if d == want and e == odd)[:cap]
    memo: dict = {}

    def completions(start, remaining, parity):
        """Index tuples from fits[start:] (non-decreasing) that sum to `remaining` with Levi-Civita parity
        `parity`, depth-first order, capped."""
        key = (start, remaining, parity)
        if key in memo:
            return memo[key]
        if not any(remaining):
            out = [()] if parity == 0 else []
        else:
            out = []
            for pos in range(start, len(fits)):
                k, d, e = fits[pos]
                if all(r >= n for r, n in zip(remaining, d)):
                    for rest in completions(pos, tuple(r - n for r, n in zip(remaining, d)), parity ^ e):
                        out.append((k,) + rest)
                        if len(out) >= cap:
                            break
                if len(out) >= cap:
                    break
        memo[key] = out
        return out

    return tuple(completions(0, want, odd))


class RelationFinder:
    """Finds linear/algebraic relations of candidates in terms of kept invariants (values cached per graph)."""

    def __init__(self, blocks, seed: int = 7, eps_mod2: bool = False):
        self.eps_mod2 = eps_mod2
        self.points = [ModularPoints(tuple(blocks), p, BATCH, seed) for p in PRIMES]
        self.check = ModularPoints(tuple(blocks), PRIMES[0], 24, seed + 1000)
        self._cache: dict = {}

    def _vals(self, pts: ModularPoints, g: ContractionGraph) -> np.ndarray:
        key = (id(pts), g)
        if key not in self._cache:
            self._cache[key] = pts.values(g).astype(np.int64) % pts.prime
        return self._cache[key]

    @staticmethod
    def monomials(target: Counter, kept: list[tuple[str, ContractionGraph]], single_only: bool,
                  eps_mod2: bool = False):
        """Multisets of kept invariants (as index tuples) whose multidegrees sum to target (with `eps_mod2`, the
        Levi-Civita count only mod 2)."""
        odd = target[EPS_LABEL] % 2 if eps_mod2 else 0
        labels = sorted(lab for lab in target if not (eps_mod2 and lab == EPS_LABEL))
        want = tuple(target[lab] for lab in labels)
        # (index, multidegree over `labels`, Levi-Civita parity): only invariants inside the target take part
        fits = []
        for k, (_, g) in enumerate(kept):
            d = _multideg(g)
            if _inside(target, d, eps_mod2):
                fits.append((k, tuple(d[lab] for lab in labels), d[EPS_LABEL] % 2 if eps_mod2 else 0))
        return list(_monomials(want, tuple(fits), odd, single_only))


    def _column(self, pts, kept, mono):
        col = np.ones(pts.batch, dtype=np.int64)
        for k in mono:
            col = (col * self._vals(pts, kept[k][1])) % pts.prime
        return col

    def find(self, cand: ContractionGraph, kept: list[tuple[str, ContractionGraph]]):
        """Relation for `cand` over `kept` (linear tried first), None if none exists, or "too-large"."""
        target = _multideg(cand)
        relevant = [(i, g) for i, g in kept if _inside(target, _multideg(g), self.eps_mod2)]
        for single in (True, False):
            monos = self.monomials(target, relevant, single, self.eps_mod2)
            if len(monos) > MAX_MONOMIALS:
                return "too-large"
            if not monos:
                continue
            rel = self._solve(cand, relevant, monos)
            if rel is not None:
                kind = "linear" if single else "algebraic"
                return Relation(kind, rel)
        return None

    def find_among(self, cand: ContractionGraph, earlier: list[tuple[str, ContractionGraph]]):
        """A linear relation of `cand` with graphs of its multidegree listed before it, or None."""
        target = _multideg(cand)
        same = [(i, g) for i, g in earlier if _multideg(g) == target]
        if not same or len(same) > MAX_MONOMIALS:
            return None
        rel = self._solve(cand, same, [(k,) for k in range(len(same))])
        return None if rel is None else Relation("linear", rel)

    def find_root(self, cand: ContractionGraph, cand_id: str, kept: list[tuple[str, ContractionGraph]],
                  max_degree: int = MAX_ROOT_DEGREE):
        """A relation lead * cand**k = sum_{j<k} cand**j Q_j(kept) (module docstring, 4): first k = 1 with `lead`
        one kept invariant of degree <= MAX_LEAD_DEGREE (cand is a ratio of polynomials), then monic (lead = 1) of lowest degree k in
        2..max_degree; or NoRelation naming the cap that stopped the search."""
        for lead in range(len(kept)):
            if kept[lead][1].degree > MAX_LEAD_DEGREE:
                continue
            rel = self._root(cand, cand_id, kept, 1, (lead,))
            if isinstance(rel, Relation):
                return rel
        for k in range(2, max_degree + 1):
            rel = self._root(cand, cand_id, kept, k, ())
            if rel == "too-large":
                return NoRelation(max_degree, k)
            if rel is not None:
                return rel
        return NoRelation(max_degree, None)

    def _root(self, cand, cand_id, kept, k: int, lead: tuple[int, ...]):
        target = _multideg(cand)
        extra = Counter()
        for i in lead:
            extra += _multideg(kept[i][1])
        big = Counter({lab: n * k for lab, n in target.items()}) + extra
        relevant = [(i, g) for i, g in kept if _inside(big, _multideg(g), self.eps_mod2)]
        index = {i: n for n, (i, _) in enumerate(relevant)}
        lead_mono = tuple(sorted(index[kept[i][0]] for i in lead))
        terms = [(k, m) for m in self.monomials(extra, relevant, False, self.eps_mod2) if m != lead_mono] if lead else []
        for j in range(k - 1, -1, -1):
            monos = self.monomials(Counter({lab: n * (k - j) for lab, n in target.items()}) + extra, relevant, False,
                                   self.eps_mod2)
            terms += [(j, m) for m in monos]
            if len(terms) > MAX_MONOMIALS:
                return "too-large"
        column = self._power_column(cand, relevant)
        rel = self._solve_columns(lambda pts: column(pts, k, lead_mono),
                                  [lambda pts, t=t: column(pts, *t) for t in terms])
        if rel is None:
            return None
        return Relation("implicit", tuple(
            (q, (cand_id,) * terms[n][0] + tuple(relevant[i][0] for i in terms[n][1])) for q, n in rel),
            power=k, lead=tuple(relevant[i][0] for i in lead_mono))

    def _power_column(self, cand, kept):
        def column(pts, power, mono):
            col = self._column(pts, kept, mono)
            for _ in range(power):
                col = (col * self._vals(pts, cand)) % pts.prime
            return col
        return column

    def _solve(self, cand, kept, monos):
        rel = self._solve_columns(lambda pts: self._vals(pts, cand),
                                  [lambda pts, m=m: self._column(pts, kept, m) for m in monos])
        if rel is None:
            return None
        return tuple((q, tuple(kept[i][0] for i in monos[k])) for q, k in rel)

    def _solve_columns(self, target, columns):
        """[(coefficient, column index), ...] with target = sum coefficient * column at every point, verified
        at fresh points; the columns used are the first independent ones in order (canonical); None if the
        target is outside their span or a coefficient does not reconstruct."""
        p0 = self.points[0]
        # Independent columns (greedy, in order) and whether the target lies in their span, at prime 0.
        ech = Echelon(p0.batch, p0.prime)
        chosen = [k for k, col in enumerate(columns) if ech.add(col(p0))]
        if ech.would_raise(target(p0)):
            return None
        systems = []
        for pts in self.points:
            a = np.stack([columns[k](pts) for k in chosen], axis=1) if chosen else np.zeros((pts.batch, 0), np.int64)
            systems.append((a, target(pts), pts.prime))
        coeffs = rational_solution(systems)
        pc = self.check
        if coeffs is None or not holds_mod([columns[k](pc) for k in chosen], coeffs, target(pc), pc.prime):
            return None
        return [(q, k) for q, k in zip(coeffs, chosen) if q != 0]


def rational_solution(systems) -> list[Fraction] | None:
    """The rational x with a x = b, from the same system at each of two primes [(a, b, p), ...] (a of full
    column rank): solved mod each prime, combined by CRT, reconstructed; None if inconsistent or not rational
    within the reconstruction bound. The caller verifies the result at fresh points (holds_mod)."""
    sols = []
    for a, b, p in systems:
        x = solve_mod(a, b, p)
        if x is None:
            return None
        sols.append(x)
    (_, _, p0), (_, _, p1) = systems
    coeffs = []
    for x0, x1 in zip(*sols):
        q = rational_reconstruct(crt(int(x0), p0, int(x1), p1), p0 * p1)
        if q is None:
            return None
        coeffs.append(q)
    return coeffs


def holds_mod(columns, coeffs, target, prime: int) -> bool:
    """Whether target = sum_k coeffs[k] * columns[k] holds exactly mod prime at every point (exact integers)."""
    acc = np.zeros(len(target), dtype=object)
    for q, col in zip(coeffs, columns):
        qm = q.numerator * pow(q.denominator, -1, prime) % prime
        acc = (acc + qm * np.asarray(col).astype(object)) % prime
    return bool(np.all((acc - np.asarray(target).astype(object)) % prime == 0))


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
