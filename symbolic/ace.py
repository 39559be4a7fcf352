"""The Atomic Cluster Expansion (ACE) invariant basis, pruned to a functionally independent subset (background §5).

Atomic basis and blocks
    A_{z,n,l,m} = Σ_j R_n(r_ij) [species_j = z] Y_{l,m}(r̂_ij),   z = 0..species−1, n = 1..n_max, l = 0..l_max.
    In cartinv terms A_{z,n,l,·} is the block (channel, l) with channel = z·n_max + (n − 1): the runtime computes
    T_{channel,l} = Σ_j w_channel(j) Y_l(r̂_ij) with w_channel(j) = R_n(r_ij) [species_j = z]. The radial weight is
    **tied across l** (R_n(r), not R_{nl}); that is the only restriction against general ACE.
    Y_{l,m} are the standard real spherical harmonics (symbolic/cg.py) in **component normalisation**
    Σ_m Y_{l,m}² = 2l+1 (√(4π) times the orthonormal ones; the factor (4π)^{−ν/2} per B changes no count and is
    absorbed by any fit). The orthonormal STF coordinates of symbolic/stf.py are c_{l,m} = κ_l Y_{l,m} with
    κ_l² = l! / ((2l+1) (2l−1)!!), so A_{z,n,l,m} = T_{channel,l,m} / κ_l.

B functions (the "full" basis)
    For ν = 1..ν_max, every sorted tuple v_1 ≤ ... ≤ v_ν of single-particle labels v = (z, n, l) (tuple order)
    with Σ l even (O(3) invariants; ν = 1 means l = 0), and every sequential coupling path
    L_1 = l_1, L_k ∈ |L_{k−1} − l_k| .. L_{k−1} + l_k (k = 2..ν−1), L_{ν−1} = l_ν (so the last step couples to 0):

        B = Σ_m  Π_{k=2..ν} ⟨L_{k−1} M_{k−1} l_k m_k | L_k M_k⟩  Π_k A^complex_{v_k, m_k},   M_k = m_1 + ... + m_k,

    with complex A^complex (Condon–Shortley) obtained from the real A by the unitary of symbolic/cg.py; B is real
    because Σ l is even. `couplings` lists L_2..L_{ν−1} (for ν = 3 this is (l_3,)). Intermediate couplings of either
    parity are included (pacemaker-style generalised Clebsch–Gordan coefficients); for two equal factors and an odd
    intermediate L the function vanishes identically and is dropped as linear ("= 0").

Exactness without square roots
    In Racah's form of each Clebsch–Gordan coefficient (symbolic/cg.py) the factor sqrt(f(L_k, M_k)) of every
    intermediate appears twice along the chain and becomes rational; the factors sqrt(f(l_k, m_k)) of the external
    legs are absorbed into rescaled complex coordinates a_{v,m} = sqrt((l+m)!(l−m)!) A^complex_{v,m}; what is left is
    a constant κ_B = Π_k Δ(L_{k−1} l_k L_k) (a square root of a rational). So B = κ_B · P_B(a) with P_B a polynomial
    with **rational** coefficients in variables a that are an invertible linear change of the real coordinates.
    Linear and functional (Jacobian) ranks are unchanged by nonzero constant factors and invertible linear changes
    of variables, so every rank is computed from P_B with integers mod p (primes of symbolic/modular.py) and
    `cartinv.symbolic.modular.Echelon`: a full rank mod p at random points proves independence (a rank mod p at a
    point is a lower bound of the rank over Q); dependence is confirmed at a second prime and independent points.
    No floating-point tolerance decides anything.

Pruning (ACE's usual order: low ν first, then low Σ (n + l), then the label tuple, then the coupling path)
    1. linear: B functions of different label multisets are homogeneous of different multidegree in the blocks,
       hence linearly independent of each other; so linear dependence is decided within each label tuple, from the
       values of its coupling paths at (paths + 8) random points mod each prime. A dropped function carries an
       explicit relation B = Σ q_k sqrt(κ_B² / κ_k²) B_k (q rational: CRT over both primes, rational
       reconstruction, then verified at fresh points), "= 0" when it vanishes, or null if no rational relation was
       reconstructed (the rank evidence stands).
    2. functional: the linearly independent survivors, in the same order, are kept iff their Jacobian row (at one
       random point per prime) raises the rank; the kept count is the Jacobian rank of the whole basis and never
       exceeds the bound D − 3 of symbolic/bounds.py.

The result is a Basis (`kind: "ace"`, symbolic/basisfile.py) whose invariants carry exact SymPy formulas in the
block coordinates, so code generation and the runtime treat it like any other Basis.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from math import comb, factorial
from typing import Callable

import numpy as np
import sympy as sp

from cartinv.errors import ArgumentError

from . import bounds as B
from . import cg
from .basisfile import SCHEMA_VERSION, Basis
from .schema import ACE_CONVENTION, ace_notation
from .formulas import coordinate_name, coordinate_table, formula_text
from .modular import INT64_MAX, PRIMES, Echelon, rank_mod_p  # noqa: F401 (rank_mod_p is part of this module's API)
from .relations import crt, rational_reconstruct, solve_mod
from .select import RequestError
from .stf import double_factorial

SEED = 20250401
MAX_NU = 6
MAX_LMAX = 8
MAX_NMAX = 8
MAX_SPECIES = 4
MAX_CHANNELS = 16
MAX_FUNCTIONS = 60000
LINEAR_MARGIN = 8
CHECK_POINTS = 8

CONVENTION = ACE_CONVENTION


class AceRequestError(RequestError):
    """An impossible or too large ACE request (a ValueError); the one-line message says why."""


Label = tuple[int, int, int]  # (z, n, l), n starting at 1


@dataclass(frozen=True)
class AceFunction:
    """One ACE B function: sorted single-particle labels (z, n, l) and the intermediate couplings L_2..L_{ν−1}."""

    nl: tuple[Label, ...]
    couplings: tuple[int, ...]

    @property
    def nu(self) -> int:
        return len(self.nl)

    @property
    def ls(self) -> tuple[int, ...]:
        return tuple(l for _, _, l in self.nl)

    @property
    def chain(self) -> tuple[int, ...]:
        """L_1 .. L_ν: l_1, the couplings, then 0 (for ν = 1 just (0,))."""
        if self.nu == 1:
            return (0,)
        return (self.ls[0],) + self.couplings + (0,)

    @property
    def pattern(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """What the coupling coefficients depend on: the orders and the couplings."""
        return self.ls, self.couplings

    @property
    def ace_degree(self) -> int:
        """Σ (n + l): ACE's usual degree."""
        return sum(n + l for _, n, l in self.nl)

    def sort_key(self):
        return (self.nu, self.ace_degree, self.nl, self.couplings)

    def blocks(self, nmax: int) -> tuple[tuple[int, int], ...]:
        """cartinv block (channel, l) of each factor, channel = z·n_max + n − 1."""
        return tuple((z * nmax + n - 1, l) for z, n, l in self.nl)

    def to_json(self) -> dict:
        return {"nu": self.nu, "nl": [list(v) for v in self.nl], "couplings": list(self.couplings)}

    @staticmethod
    def from_json(entry: dict) -> "AceFunction":
        nl = tuple(tuple(int(x) for x in v) for v in entry["nl"])
        return AceFunction(nl, tuple(int(x) for x in entry["couplings"]))

    def label(self) -> str:
        parts = " ".join(f"({z},{n},{l})" for z, n, l in self.nl)
        return f"nu={self.nu} [{parts}] L={list(self.couplings)}"

    def notation(self) -> str:
        """Readable one-line description (the Basis entry's index_notation): factors A(z,n,l) and couplings."""
        return ace_notation(self.nl, self.couplings)


# ----------------------------------------------------------------------------------------------- request checks
def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def check_request(nu, nmax, lmax, species) -> None:
    """Raise AceRequestError (one line) for bad or too large parameters."""
    for name, value in (("nu", nu), ("nmax", nmax), ("lmax", lmax), ("species", species)):
        if not _is_int(value):
            raise AceRequestError(f"{name} must be an integer, got {value!r}")
    if nu < 1:
        raise AceRequestError(f"nu (correlation order) must be at least 1, got {nu}")
    if nmax < 1:
        raise AceRequestError(f"nmax (radial functions per species) must be at least 1, got {nmax}")
    if lmax < 0:
        raise AceRequestError(f"lmax must be non-negative, got {lmax}")
    if species < 1:
        raise AceRequestError(f"species must be at least 1, got {species}")
    if nu > MAX_NU:
        raise AceRequestError(f"nu = {nu} exceeds the supported maximum {MAX_NU}")
    if lmax > MAX_LMAX:
        raise AceRequestError(f"lmax = {lmax} exceeds the supported maximum {MAX_LMAX}")
    if nmax > MAX_NMAX:
        raise AceRequestError(f"nmax = {nmax} exceeds the supported maximum {MAX_NMAX}")
    if species > MAX_SPECIES:
        raise AceRequestError(f"species = {species} exceeds the supported maximum {MAX_SPECIES}")
    if species * nmax > MAX_CHANNELS:
        raise AceRequestError(
            f"species * nmax = {species * nmax} channels exceeds the supported maximum {MAX_CHANNELS}; "
            f"lower nmax or the number of species"
        )
    singles = species * nmax * (lmax + 1)
    tuples = sum(comb(singles + k - 1, k) for k in range(1, nu + 1))
    if tuples > 4 * MAX_FUNCTIONS:
        raise AceRequestError(
            f"request too large: about {tuples:,} label tuples up to nu = {nu} over {singles} single-particle "
            f"functions (limit {4 * MAX_FUNCTIONS:,}); lower nu, nmax, lmax or species"
        )


# ---------------------------------------------------------------------------------------------- enumeration
def coupling_paths(ls: tuple[int, ...]) -> list[tuple[int, ...]]:
    """All sequential coupling paths L_2..L_{ν−1} that couple orders ls to a scalar (see module docstring)."""
    nu = len(ls)
    if nu == 1:
        return [()] if ls[0] == 0 else []
    if nu == 2:
        return [()] if ls[0] == ls[1] else []
    out: list[tuple[int, ...]] = []
    suffix = [sum(ls[k:]) for k in range(nu + 1)]

    def rec(k: int, prev: int, acc: tuple[int, ...]):
        # choose L_k (1-based k = 2..ν−1) coupling prev (L_{k−1}) with l_k = ls[k−1]
        if k == nu:
            if prev == ls[-1]:
                out.append(acc)
            return
        lk = ls[k - 1]
        for L in range(abs(prev - lk), prev + lk + 1):
            if L <= suffix[k]:  # the remaining orders must be able to couple L back to 0
                rec(k + 1, L, acc + (L,))

    rec(2, ls[0], ())
    return out


def single_particle_labels(nmax: int, lmax: int, species: int) -> list[Label]:
    return [(z, n, l) for z in range(species) for n in range(1, nmax + 1) for l in range(lmax + 1)]


def block_layout(nmax: int, lmax: int, species: int) -> tuple[list[Label], dict[Label, int], int]:
    """Blocks (channel, l) channel-major (the Basis coordinate order), each block's first coordinate, and the total."""
    blocks = [(c, l) for c in range(species * nmax) for l in range(lmax + 1)]
    offsets, off = {}, 0
    for b in blocks:
        offsets[b] = off
        off += 2 * b[1] + 1
    return blocks, offsets, off


def enumerate_ace(nu: int, nmax: int, lmax: int, species: int = 1) -> list[AceFunction]:
    """The full ACE basis for these parameters, in ACE order (AceFunction.sort_key)."""
    check_request(nu, nmax, lmax, species)
    singles = single_particle_labels(nmax, lmax, species)
    out = []
    for order in range(1, nu + 1):
        for tup in itertools.combinations_with_replacement(singles, order):
            ls = tuple(l for _, _, l in tup)
            if sum(ls) % 2:
                continue
            for path in coupling_paths(ls):
                out.append(AceFunction(tuple(tup), path))
                if len(out) > MAX_FUNCTIONS:
                    raise AceRequestError(
                        f"request too large: more than {MAX_FUNCTIONS:,} B functions; lower nu, nmax, lmax or species"
                    )
    out.sort(key=AceFunction.sort_key)
    return out


# ----------------------------------------------------------------------------- rational coupling coefficients
@lru_cache(maxsize=None)
def rational_chain(ls: tuple[int, ...], couplings: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Rational step tensors of P_B: W_k[M_{k−1}+L_{k−1}, m_k+l_k, M_k+L_k], k = 2..ν (object arrays of Fraction).

    W_k = S(L_{k−1} M_{k−1}, l_k m_k | L_k M_k) · f(L_k, M_k) (the last step has f(0, 0) = 1); see module docstring.
    """
    nu = len(ls)
    if nu == 1:
        return ()
    chain = (ls[0],) + couplings + (0,)
    out = []
    for k in range(1, nu):
        lin, lk, lout = chain[k - 1], ls[k], chain[k]
        w = np.empty((2 * lin + 1, 2 * lk + 1, 2 * lout + 1), dtype=object)
        w[...] = Fraction(0)
        for mi in range(-lin, lin + 1):
            for mk in range(-lk, lk + 1):
                mo = mi + mk
                if abs(mo) > lout:
                    continue
                w[mi + lin, mk + lk, mo + lout] = cg.racah_sum(lin, mi, lk, mk, lout, mo) * cg.mfact(lout, mo)
        out.append(w)
    return tuple(out)


@lru_cache(maxsize=None)
def kappa2(ls: tuple[int, ...], couplings: tuple[int, ...]) -> Fraction:
    """κ_B² = Π_k Δ²(L_{k−1} l_k L_k): B = κ_B P_B."""
    if len(ls) == 1:
        return Fraction(1)
    chain = (ls[0],) + couplings + (0,)
    out = Fraction(1)
    for k in range(1, len(ls)):
        out *= cg.delta2(chain[k - 1], ls[k], chain[k])
    return out


def lambda2(l: int) -> Fraction:
    """λ_l² = 1/κ_l² = (2l+1)(2l−1)!!/l!: A = λ_l T (component-normalised harmonics from orthonormal STF)."""
    return Fraction((2 * l + 1) * double_factorial(2 * l - 1), factorial(l))


def _mod(q: Fraction, p: int) -> int:
    return q.numerator % p * pow(q.denominator % p, -1, p) % p


@lru_cache(maxsize=None)
def _chain_mod(ls: tuple[int, ...], couplings: tuple[int, ...], prime: int) -> tuple[np.ndarray, ...]:
    out = []
    for w in rational_chain(ls, couplings):
        arr = np.array([_mod(q, prime) for q in w.flat], dtype=np.int64).reshape(w.shape)
        arr.setflags(write=False)
        out.append(arr)
    return tuple(out)


# ------------------------------------------------------------------------------------ modular evaluation
class ModularAce:
    """Values and Jacobian rows of P_B mod a prime at random points of the rescaled complex chart a.

    Columns (variables) follow the Basis coordinates: block (channel, l) in coordinate_table order, then m = −l..l.
    Random points are drawn from a seeded generator, one array (batch, D) per call. Exactness of int64: primes
    are below 2^25 and a step sums (2L+1)(2l+1) ≤ 65·17 products below 2^50 (L ≤ Σ of the remaining orders ≤ 32
    within the request limits), which stays below 2^63.
    """

    def __init__(self, nmax: int, lmax: int, species: int, prime: int):
        self.prime, self.nmax = prime, nmax
        self.blocks, self.offsets, self.dim = block_layout(nmax, lmax, species)

    def points(self, batch: int, seed) -> np.ndarray:
        rng = np.random.default_rng([SEED, self.prime, batch] + list(np.atleast_1d(seed)))
        return rng.integers(0, self.prime, size=(batch, self.dim), dtype=np.int64)

    def _factor_columns(self, fns: list[AceFunction], k: int) -> np.ndarray:
        """(F, 2l_k+1) column indices of factor k of each function (all share the pattern)."""
        l = fns[0].ls[k]
        starts = np.array([self.offsets[f.blocks(self.nmax)[k]] for f in fns], dtype=np.int64)
        return starts[:, None] + np.arange(2 * l + 1)[None, :]

    def _step(self, q: np.ndarray, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """q (..., i), x (..., j), w (i, j, o) -> (..., o), all mod p."""
        p = self.prime
        outer = (q[..., :, None] * x[..., None, :]) % p
        flat = outer.reshape(outer.shape[:-2] + (-1,))
        assert flat.shape[-1] * (p - 1) ** 2 <= INT64_MAX  # at most (2L+1)(2l+1) products summed
        return (flat @ w.reshape(-1, w.shape[2])) % p

    def values(self, fns: list[AceFunction], pts: np.ndarray) -> np.ndarray:
        """P_B at every point, shape (F, batch); all fns must share one pattern."""
        ls, couplings = fns[0].pattern
        ws = _chain_mod(ls, couplings, self.prime)
        xs = [np.moveaxis(pts[:, self._factor_columns(fns, k)], 0, 1) for k in range(len(ls))]  # (F, batch, dim)
        q = xs[0]
        for x, w in zip(xs[1:], ws):
            q = self._step(q, x, w)
        return q[..., 0] % self.prime

    def jacobian_rows(self, fns: list[AceFunction], pt: np.ndarray) -> np.ndarray:
        """∂P_B/∂a at one point pt (D,), shape (F, D); all fns must share one pattern."""
        ls, couplings = fns[0].pattern
        ws = _chain_mod(ls, couplings, self.prime)
        p, nu, nf = self.prime, len(ls), len(fns)
        cols = [self._factor_columns(fns, k) for k in range(nu)]
        xs = [pt[c] for c in cols]  # (F, dim_k)
        prefix = [xs[0]]
        for x, w in zip(xs[1:], ws):
            prefix.append(self._step(prefix[-1], x, w))
        rows = np.zeros((nf, self.dim), dtype=np.int64)
        for k in range(nu):
            e = 2 * ls[k] + 1
            eye = np.broadcast_to(np.eye(e, dtype=np.int64), (nf, e, e))
            if k == 0:
                q = eye.copy()
            else:
                q = self._step(prefix[k - 1][:, None, :], eye, ws[k - 1])  # (F, e, out)
            for j in range(k + 1, nu):
                q = self._step(q, xs[j][:, None, :], ws[j - 1])
            grad = q[..., 0] % p  # (F, e)
            rows[np.arange(nf)[:, None], cols[k]] += grad
        return rows % p


def _by_pattern(indices, fns):
    groups = defaultdict(list)
    for i in indices:
        groups[fns[i].pattern].append(i)
    return groups


# ------------------------------------------------------------------------------------------------ selection
@dataclass
class AceSelection:
    """Outcome of the two pruning stages; `status[i]` is 'kept', 'linear' or 'functional' for functions[i]."""

    nu: int
    nmax: int
    lmax: int
    species: int
    functions: list[AceFunction]
    status: list[str]
    relations: dict = field(default_factory=dict)  # i -> None | [] (zero) | [(coefficient (q, s), j), ...]
    bound: int = 0
    rank: int = 0

    @property
    def channels(self) -> int:
        return self.species * self.nmax

    @property
    def blocks(self) -> list[tuple[int, int]]:
        return [(c, l) for c in range(self.channels) for l in range(self.lmax + 1)]

    def counts(self, nu: int | None = None) -> dict:
        idx = [i for i, f in enumerate(self.functions) if nu is None or f.nu == nu]
        return {
            "full": len(idx),
            "linear": sum(self.status[i] != "linear" for i in idx),
            "functional": sum(self.status[i] == "kept" for i in idx),
        }

    @property
    def kept(self) -> list[AceFunction]:
        return [f for f, s in zip(self.functions, self.status) if s == "kept"]


def select_ace(nu: int, nmax: int, lmax: int, species: int = 1, progress: Callable | None = None) -> AceSelection:
    """Enumerate the full ACE basis and prune it: linear, then functional (see module docstring)."""
    progress = progress or (lambda *a, **k: None)
    fns = enumerate_ace(nu, nmax, lmax, species)
    progress("enumerate", len(fns), len(fns))
    sel = AceSelection(nu, nmax, lmax, species, fns, ["kept"] * len(fns))
    sel.bound = B.bound(sel.blocks)
    mods = [ModularAce(nmax, lmax, species, p) for p in PRIMES]
    _linear_stage(sel, mods, progress)
    sel.rank = _functional_stage(sel, mods, progress)
    if sel.rank > sel.bound:
        raise AssertionError(f"Jacobian rank {sel.rank} exceeds the bound {sel.bound}: inconsistent rank machinery")
    return sel


def _linear_stage(sel: AceSelection, mods: list[ModularAce], progress) -> None:
    fns = sel.functions
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, f in enumerate(fns):
        groups[f.nl].append(i)
    size = max(len(g) for g in groups.values())
    batch = size + LINEAR_MARGIN
    # Values of every function at `batch` points per prime, plus fresh check points at the first prime.
    vals = [np.zeros((len(fns), batch), dtype=np.int64) for _ in mods]
    check = np.zeros((len(fns), CHECK_POINTS), dtype=np.int64)
    pts = [m.points(batch, 1) for m in mods]
    check_pts = mods[0].points(CHECK_POINTS, 2)
    patterns = _by_pattern(range(len(fns)), fns)
    for done, idx in enumerate(patterns.values()):
        sub = [fns[i] for i in idx]
        for v, m, pt in zip(vals, mods, pts):
            v[idx] = m.values(sub, pt)
        check[idx] = mods[0].values(sub, check_pts)
        progress("linear: values", done + 1, len(patterns))
    for done, members in enumerate(groups.values()):
        if len(members) == 1:
            if not any(v[members[0]].any() for v in vals):
                sel.status[members[0]] = "linear"
                sel.relations[members[0]] = []
            continue
        echelons = [Echelon(batch, m.prime) for m in mods]
        kept: list[int] = []
        for i in members:
            raised = [e.add(v[i]) for e, v in zip(echelons, vals)]
            if any(raised):
                kept.append(i)
                continue
            sel.status[i] = "linear"
            sel.relations[i] = [] if not any(v[i].any() for v in vals) else _linear_relation(
                i, kept, vals, check, mods, fns)
        if done % 256 == 0:
            progress("linear: groups", done + 1, len(groups))


def _linear_relation(i, kept, vals, check, mods, fns):
    """P_i = Σ q_k P_k with rational q (CRT + reconstruction, verified at fresh points) -> B-level coefficients."""
    sols = []
    for v, m in zip(vals, mods):
        x = solve_mod(v[kept].T.copy(), v[i], m.prime)
        if x is None:
            return None
        sols.append(x)
    coeffs = []
    for x0, x1 in zip(*sols):
        q = rational_reconstruct(crt(int(x0), PRIMES[0], int(x1), PRIMES[1]), PRIMES[0] * PRIMES[1])
        if q is None:
            return None
        coeffs.append(q)
    p = mods[0].prime
    acc = np.zeros(check.shape[1], dtype=object)
    for q, k in zip(coeffs, kept):
        acc = (acc + _mod(q, p) * check[k].astype(object)) % p
    if np.any((acc - check[i].astype(object)) % p):
        return None
    # B_i = κ_i P_i = Σ q_k (κ_i / κ_k) B_k; κ_i/κ_k = sqrt(κ_i² / κ_k²) = c sqrt(s).
    out = []
    ki2 = kappa2(*fns[i].pattern)
    for q, k in zip(coeffs, kept):
        if q == 0:
            continue
        c, s = cg.squarefree_sqrt(ki2 / kappa2(*fns[k].pattern))
        out.append(((q * c, s), k))
    return out


def _functional_stage(sel: AceSelection, mods: list[ModularAce], progress) -> int:
    """Greedy Jacobian-rank selection over the linear survivors (vectorised elimination, two primes)."""
    fns = sel.functions
    order = [i for i, s in enumerate(sel.status) if s == "kept"]
    dim = mods[0].dim
    residual = []
    for m in mods:
        pt = m.points(1, 3)[0]
        rows = np.zeros((len(order), dim), dtype=np.int64)
        pos = {i: r for r, i in enumerate(order)}
        for idx in _by_pattern(order, fns).values():
            rows[[pos[i] for i in idx]] = m.jacobian_rows([fns[i] for i in idx], pt)
        residual.append(rows)
    echelons = [Echelon(dim, m.prime) for m in mods]
    start = 0
    while start < len(order):
        live = np.zeros(len(order) - start, dtype=bool)
        for r in residual:
            live |= r[start:].any(axis=1)
        hits = np.flatnonzero(live)
        stop = start + int(hits[0]) if hits.size else len(order)
        for r in range(start, stop):
            sel.status[order[r]] = "functional"
        if stop == len(order):
            break
        for e, r, m in zip(echelons, residual, mods):
            row = r[stop]
            if not row.any():
                continue
            e.add(row)
            new, piv = e.rows[-1], e.pivots[-1]
            rest = r[stop + 1:]
            factors = rest[:, piv].copy()
            nz = np.flatnonzero(factors)
            if nz.size:
                rest[nz] = (rest[nz] - (factors[nz, None] * new[None, :]) % m.prime) % m.prime
        start = stop + 1
        progress("functional", start, len(order))
    return max(e.rank for e in echelons)


def full_jacobian_rank(sel: AceSelection, seed: int = 11) -> int:
    """Jacobian rank of every function of the full basis (linear drops included) at a fresh point, max over primes.

    An independent check of the selection: it must equal the number kept.
    """
    fns = sel.functions
    ranks = []
    for p in PRIMES:
        m = ModularAce(sel.nmax, sel.lmax, sel.species, p)
        pt = m.points(1, seed)[0]
        rows = np.zeros((len(fns), m.dim), dtype=np.int64)
        for idx in _by_pattern(range(len(fns)), fns).values():
            rows[idx] = m.jacobian_rows([fns[i] for i in idx], pt)
        ranks.append(rank_mod_p(rows, p))
    return max(ranks)


def invariant_dimension(tup: tuple[Label, ...]) -> int:
    """Dimension of the rotation invariants of the label tuple's multidegree, from SO(3) characters.

    The space is ⊗_v Sym^{k_v}(V_{l_v}) over the distinct labels v (k_v = multiplicity); its invariants number
    m(0) − m(1), m(w) = multiplicity of weight w. ACE is complete, so this must equal the number of linearly
    independent B functions of the tuple (an independent check of the linear stage; 0 for odd Σ l, which has
    no O(3) invariants).
    """
    if sum(l for _, _, l in tup) % 2:
        return 0
    counts: dict = {}
    for v in tup:
        counts[v] = counts.get(v, 0) + 1
    weights = {0: 1}
    for (_, _, l), k in sorted(counts.items()):
        sym: dict = {}
        for combo in itertools.combinations_with_replacement(range(-l, l + 1), k):
            sym[sum(combo)] = sym.get(sum(combo), 0) + 1
        new: dict = {}
        for a, x in weights.items():
            for b, y in sym.items():
                new[a + b] = new.get(a + b, 0) + x * y
        weights = new
    return weights.get(0, 0) - weights.get(1, 0)


def linear_dimension(nu: int, nmax: int, lmax: int, species: int = 1) -> int:
    """Σ invariant_dimension over all label tuples of ν = 1..nu: the linear count predicted by characters."""
    check_request(nu, nmax, lmax, species)
    singles = single_particle_labels(nmax, lmax, species)
    return sum(invariant_dimension(t) for k in range(1, nu + 1)
               for t in itertools.combinations_with_replacement(singles, k))


# ------------------------------------------------------------------------------------------------ exact formulas
def real_polynomial(fn: AceFunction, nmax: int) -> dict:
    """B as an exact polynomial in the orthonormal block coordinates c.

    Returns {monomial: (q, s)} meaning coefficient q·sqrt(s) (q rational, s square-free); a monomial is a sorted
    tuple of (channel, l, m) factors (with repetition). Derivation: B = κ_B P_B(a), a_{v,m} = ρ(l,|m|) Σ_μ u[m,μ]
    c_{v,μ} with ρ² = λ_l² (l+m)!(l−m)! r_m² and u a Gaussian unit (symbolic/cg.py); every real monomial collects
    a Gaussian-rational sum times the same radical sqrt(κ_B² Π ρ²), whose imaginary part must cancel exactly.
    """
    ls, couplings = fn.pattern
    blocks = fn.blocks(nmax)
    ws = rational_chain(ls, couplings)
    nu = len(ls)
    acc: dict[tuple, list] = {}

    def expand(ms: tuple[int, ...], coeff: Fraction):
        # each factor: list of (μ, i-exponent) with a_{m} ∝ Σ u c_μ, u = i^e
        options = []
        for (ch, l), m in zip(blocks, ms):
            row = cg.complex_from_real(l)[m + l]
            options.append([(mu, {(1, 0): 0, (0, 1): 1, (-1, 0): 2, (0, -1): 3}[(re, im)]) for mu, re, im in row])
        for choice in itertools.product(*options):
            key = tuple(sorted((ch, l, mu) for (ch, l), (mu, _) in zip(blocks, choice)))
            e = sum(ex for _, ex in choice) % 4
            slot = acc.setdefault(key, [Fraction(0), Fraction(0)])
            if e == 0:
                slot[0] += coeff
            elif e == 1:
                slot[1] += coeff
            elif e == 2:
                slot[0] -= coeff
            else:
                slot[1] -= coeff

    def rec(k: int, ms: tuple[int, ...], mprev: int, coeff: Fraction):
        if k == nu:
            expand(ms, coeff)
            return
        w = ws[k - 1]
        lin, lk = (w.shape[0] - 1) // 2, ls[k]
        lout = (w.shape[2] - 1) // 2
        for mk in range(-lk, lk + 1):
            mo = mprev + mk
            if abs(mo) > lout:
                continue
            c = w[mprev + lin, mk + lk, mo + lout]
            if c:
                rec(k + 1, ms + (mk,), mo, coeff * c)

    if nu == 1:
        expand((0,), Fraction(1))
    else:
        for m1 in range(-ls[0], ls[0] + 1):
            rec(1, (m1,), m1, Fraction(1))
    k2 = kappa2(ls, couplings)
    out = {}
    for key, (re, im) in acc.items():
        if im != 0:
            raise AssertionError(f"{fn.label()}: imaginary part {im} of monomial {key} does not cancel")
        if re == 0:
            continue
        rad2 = k2
        for _, l, mu in key:
            rad2 *= lambda2(l) * cg.mfact(l, abs(mu)) * cg.complex_scale2(mu)
        c, s = cg.squarefree_sqrt(rad2)
        out[key] = (re * c, s)
    return dict(sorted(out.items()))


def formula(fn: AceFunction, nmax: int, channels: int) -> sp.Expr:
    """Exact SymPy polynomial of B in the Basis coordinate names (formulas.coordinate_name)."""
    symbols: dict = {}
    terms = []
    for key, (q, s) in real_polynomial(fn, nmax).items():
        mono = sp.Integer(1)
        for ch, l, mu in key:
            name = coordinate_name((ch, l), mu, channels)
            mono *= symbols.setdefault(name, sp.Symbol(name))
        terms.append(sp.Rational(q.numerator, q.denominator) * sp.sqrt(s) * mono)
    return sp.Add(*terms)


def coefficient_text(q: Fraction, s: int) -> str:
    return sp.sstr(sp.Rational(q.numerator, q.denominator) * sp.sqrt(s))


# ------------------------------------------------------------------------------------------------ Basis assembly
def derive_ace_basis(nu: int, nmax: int, lmax: int, species: int = 1, progress: Callable | None = None) -> Basis:
    """Full ACE basis for (ν_max, n_max, l_max, species), pruned to a functionally independent subset.

    `progress(stage, done, total)` is optional. Deterministic: the same arguments give a byte-identical Basis.
    """
    sel = select_ace(nu, nmax, lmax, species, progress)
    return assemble(sel, progress)


def basis_name(nu: int, nmax: int, lmax: int, species: int) -> str:
    return f"ace_nu{nu}_n{nmax}_l{lmax}" + (f"_s{species}" if species > 1 else "")


def assemble(sel: AceSelection, progress: Callable | None = None) -> Basis:
    progress = progress or (lambda *a, **k: None)
    channels = sel.channels
    ids, n_inv, n_drop = {}, 0, 0
    for i, s in enumerate(sel.status):
        if s == "kept":
            n_inv += 1
            ids[i] = f"I{n_inv}"
        else:
            n_drop += 1
            ids[i] = f"D{n_drop}"
    invariants, dropped = [], []
    for i, (fn, status) in enumerate(zip(sel.functions, sel.status)):
        entry = {"id": ids[i], **fn.to_json(), "degree": fn.nu, "ace_degree": fn.ace_degree,
                 "index_notation": fn.notation()}
        if status == "kept":
            entry["formula"] = formula_text(formula(fn, sel.nmax, channels))
            invariants.append(entry)
            progress("formulas", len(invariants), sel.rank)
            continue
        entry["reason"] = status
        if status == "functional":
            entry["relation"] = None
            entry["relation_terms"] = None
        else:
            rel = sel.relations.get(i)
            if rel is None:
                entry["relation"] = None
                entry["relation_terms"] = None
            else:
                terms = [[coefficient_text(q, s), [ids[k]]] for (q, s), k in rel]
                entry["relation"] = _relation_text(ids[i], terms)
                entry["relation_terms"] = terms
        dropped.append(entry)
    by_nu = [{"nu": k, **sel.counts(k)} for k in range(1, sel.nu + 1)]
    total = sel.counts()
    stats = {
        "full": total["full"],
        "linear": total["linear"],
        "functional": total["functional"],
        "bound": sel.bound,
        "zero": sum(1 for r in sel.relations.values() if r == []),
        "dropped_linear": sum(s == "linear" for s in sel.status),
        "dropped_functional": sum(s == "functional" for s in sel.status),
        "by_nu": by_nu,
        "primes": list(PRIMES),
        "seed": SEED,
    }
    complete = sel.rank == sel.bound
    data = {
        "schema_version": SCHEMA_VERSION,
        "kind": "ace",
        "name": basis_name(sel.nu, sel.nmax, sel.lmax, sel.species),
        "request": {
            "orders": list(range(sel.lmax + 1)),
            "degree": sel.nu,
            "channels": channels,
            "complete": False,
            "max_degree": sel.nu,
            "flexible": False,
            "nu": sel.nu,
            "nmax": sel.nmax,
            "lmax": sel.lmax,
            "species": sel.species,
        },
        "convention": CONVENTION,
        "coordinates": coordinate_table(sel.blocks, channels),
        "bound": sel.bound,
        "rank": sel.rank,
        "complete": complete,
        "degree_needed": max(f.nu for f in sel.kept) if complete else None,
        "invariants": invariants,
        "dropped": dropped,
        "strata": [],
        "block_degrees": [],
        "stats": stats,
    }
    return Basis(data)


def _relation_text(lhs: str, terms: list) -> str:
    if not terms:
        return f"{lhs} = 0"
    out = ""
    for coef, (rid,) in terms:
        neg = coef.startswith("-")
        mag = coef[1:] if neg else coef
        body = rid if mag == "1" else f"{mag}*{rid}"
        if not out:
            out = ("-" if neg else "") + body
        else:
            out += (" - " if neg else " + ") + body
    return f"{lhs} = {out}"


def format_counts(basis: Basis) -> str:
    """Text table (ending in a newline) of full / linear / functional counts per ν, the bound and the rank."""
    if basis.kind != "ace":
        raise ArgumentError(f"format_counts needs an ACE Basis, got kind {basis.kind!r}")
    req, st = basis.data["request"], basis.data["stats"]
    head = (f"ACE basis {basis.name}: nu <= {req['nu']}, n <= {req['nmax']}, l <= {req['lmax']}, "
            f"{req['species']} species ({len(basis.coordinates)} block coordinates)")
    lines = [head, f"{'nu':>4} {'full':>8} {'linear':>8} {'functional':>11}"]
    for row in st["by_nu"]:
        lines.append(f"{row['nu']:>4} {row['full']:>8} {row['linear']:>8} {row['functional']:>11}")
    lines.append(f"{'all':>4} {st['full']:>8} {st['linear']:>8} {st['functional']:>11}")
    state = "complete" if basis.data["complete"] else "incomplete"
    lines.append(f"bound {st['bound']} (Jacobian rank {basis.rank}, {state}); dropped: "
                 f"{st['dropped_linear']} linear ({st['zero']} identically zero), "
                 f"{st['dropped_functional']} functional")
    return "\n".join(lines) + "\n"


def functions_of(basis: Basis, which: str = "invariants") -> list[AceFunction]:
    """AceFunction of every invariant (or dropped entry) of an ACE Basis, in file order."""
    if basis.kind != "ace":
        raise ArgumentError(f"functions_of needs an ACE Basis, got kind {basis.kind!r}")
    return [AceFunction.from_json(e) for e in basis.data[which]]


# ------------------------------------------------------------------------------------------ float evaluation
@lru_cache(maxsize=None)
def real_chain(ls: tuple[int, ...], couplings: tuple[int, ...]) -> tuple[tuple[np.ndarray, ...], float]:
    """Float step tensors in the real basis and the overall sign: B = sign · chain(A^real, tensors).

    Each real-basis coupling Σ U U conj(U) ⟨..|..⟩ is real for an even L_{k−1}+l_k+L_k and imaginary for an odd
    one (then its imaginary part is used); the odd steps come in pairs, so the product of their i's is ±1.
    """
    nu = len(ls)
    if nu == 1:
        return (), 1.0
    chain = (ls[0],) + couplings + (0,)
    out, odd = [], 0
    for k in range(1, nu):
        lin, lk, lout = chain[k - 1], ls[k], chain[k]
        c = np.zeros((2 * lin + 1, 2 * lk + 1, 2 * lout + 1))
        for mi in range(-lin, lin + 1):
            for mk in range(-lk, lk + 1):
                if abs(mi + mk) <= lout:
                    c[mi + lin, mk + lk, mi + mk + lout] = cg.cg_float(lin, mi, lk, mk, lout, mi + mk)
        w = np.einsum("Ma,mb,Nc,MmN->abc", cg.complex_from_real_matrix(lin), cg.complex_from_real_matrix(lk),
                      cg.complex_from_real_matrix(lout).conj(), c)
        if (lin + lk + lout) % 2:
            odd += 1
            out.append(np.ascontiguousarray(w.imag))
        else:
            out.append(np.ascontiguousarray(w.real))
    if odd % 2:
        raise AssertionError(f"odd number of parity-odd couplings in {ls} {couplings}")
    return tuple(out), (-1.0) ** (odd // 2)


class AceEvaluator:
    """Float64 B functions (and their gradients) from block coordinates T, for a fixed list of functions.

    T has shape (atoms, D) in Basis coordinate order (channel-major, then l, then m); A = λ_l T.
    """

    def __init__(self, functions: list[AceFunction], nmax: int, lmax: int, species: int = 1):
        self.functions = list(functions)
        self.nmax = nmax
        self.blocks, self.offsets, self.dim = block_layout(nmax, lmax, species)
        self.scale = np.concatenate([np.full(2 * l + 1, float(lambda2(l)) ** 0.5) for _, l in self.blocks])
        self.groups = []
        for pattern, idx in _by_pattern(range(len(self.functions)), self.functions).items():
            fns = [self.functions[i] for i in idx]
            cols = []
            for k, l in enumerate(pattern[0]):
                starts = np.array([self.offsets[f.blocks(nmax)[k]] for f in fns])
                cols.append(starts[:, None] + np.arange(2 * l + 1)[None, :])
            tensors, sign = real_chain(*pattern)
            self.groups.append((np.array(idx), cols, tensors, sign))

    @staticmethod
    def _step(q, x, w):
        outer = q[..., :, None] * x[..., None, :]
        return outer.reshape(outer.shape[:-2] + (-1,)) @ w.reshape(-1, w.shape[2])

    def values(self, t: np.ndarray) -> np.ndarray:
        """(atoms, D) -> (atoms, K)."""
        a = np.asarray(t, dtype=np.float64) * self.scale
        out = np.empty((a.shape[0], len(self.functions)))
        for idx, cols, tensors, sign in self.groups:
            q = a[:, cols[0]]
            for c, w in zip(cols[1:], tensors):
                q = self._step(q, a[:, c], w)
            out[:, idx] = sign * q[..., 0]
        return out

    def values_and_gradients(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(atoms, D) -> values (atoms, K) and ∂B/∂T (atoms, K, D), by one reverse sweep along each chain.

        Step k computes Q_k[o] = Σ_ij W[i, j, o] Q_{k−1}[i] X_k[j]; with G_k = ∂B/∂Q_k and
        R[i, j] = Σ_o W[i, j, o] G_k[o]: ∂B/∂X_k[j] = Σ_i Q_{k−1}[i] R[i, j] and G_{k−1}[i] = Σ_j R[i, j] X_k[j].
        """
        a = np.asarray(t, dtype=np.float64) * self.scale
        n = a.shape[0]
        vals = np.empty((n, len(self.functions)))
        grads = np.zeros((n, len(self.functions), self.dim))
        for idx, cols, tensors, sign in self.groups:
            xs = [a[:, c] for c in cols]  # (atoms, F, dim)
            prefix = [xs[0]]
            for x, w in zip(xs[1:], tensors):
                prefix.append(self._step(prefix[-1], x, w))
            vals[:, idx] = sign * prefix[-1][..., 0]
            adj = np.full(prefix[-1].shape, sign)
            dx = [None] * len(cols)
            for k in range(len(cols) - 1, 0, -1):
                w = tensors[k - 1]
                r = (adj @ w.reshape(-1, w.shape[2]).T).reshape(adj.shape[:-1] + w.shape[:2])
                dx[k] = np.einsum("afi,afij->afj", prefix[k - 1], r)
                adj = np.einsum("afij,afj->afi", r, xs[k])
            dx[0] = adj
            for c, g in zip(cols, dx):
                # one factor position: every function has its own row, so (row, column) pairs are distinct;
                # the chain rule through A = λ T multiplies by λ
                grads[:, np.broadcast_to(idx[:, None], c.shape), c] += g * self.scale[c][None]
        return vals, grads
