"""Pruning: linear dependence within each label tuple, then functional independence (Jacobian rank), mod p."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import bounds as B
from .. import cg
from ..modular import PRIMES, Echelon, rank_mod_p
from ..relations import holds_mod, rational_solution
from .request import AceFunction, CHECK_POINTS, LINEAR_MARGIN, Label, check_request
from .enumeration import enumerate_ace, single_particle_labels
from .couplings import kappa2
from .modular_eval import ModularAce, _by_pattern
from .chirality import check_has_pseudoscalar, select_pseudoscalar


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
    group: str = "o3"
    chirality: dict | None = None  # SO(3): symbolic/ace/chirality.py's record (kept pseudoscalar, square, strata)

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


def select_ace(nu: int, nmax: int, lmax: int, species: int = 1, progress: Callable | None = None,
               group: str = "o3") -> AceSelection:
    """Enumerate the full ACE basis and prune it: linear, then functional (see module docstring). With group
    "so3", the pseudoscalars (odd Σ l) are pruned linearly too; the functional stage runs on the O(3) functions,
    then the cheapest non-zero pseudoscalar is kept (symbolic/ace/chirality.py)."""
    progress = progress or (lambda *a, **k: None)
    check_request(nu, nmax, lmax, species, group)
    if group == "so3":
        check_has_pseudoscalar(nu, nmax, lmax, species)
    fns = enumerate_ace(nu, nmax, lmax, species, group)
    progress("enumerate", len(fns), len(fns))
    sel = AceSelection(nu, nmax, lmax, species, fns, ["kept"] * len(fns), group=group)
    sel.bound = B.bound(sel.blocks)
    mods = [ModularAce(nmax, lmax, species, p) for p in PRIMES]
    _linear_stage(sel, mods, progress)
    sel.rank = _functional_stage(sel, mods, progress)
    if sel.rank > sel.bound:
        raise AssertionError(f"Jacobian rank {sel.rank} exceeds the bound {sel.bound}: inconsistent rank machinery")
    if group == "so3":
        select_pseudoscalar(sel, mods, progress)
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
    coeffs = rational_solution([(v[kept].T.copy(), v[i], m.prime) for v, m in zip(vals, mods)])
    if coeffs is None or not holds_mod([check[k] for k in kept], coeffs, check[i], mods[0].prime):
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
    order = [i for i, s in enumerate(sel.status) if s == "kept" and not fns[i].odd]  # pseudoscalars: chirality.py
    dim = mods[0].dim
    residual = []
    for m in mods:
        residual.append(m.jacobian([fns[i] for i in order], m.points(1, 3)[0]))
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
        ranks.append(rank_mod_p(m.jacobian(fns, m.points(1, seed)[0]), p))
    return max(ranks)


def invariant_dimension(tup: tuple[Label, ...], group: str = "o3") -> int:
    """Dimension of the rotation invariants of the label tuple's multidegree, from SO(3) characters.

    The space is ⊗_v Sym^{k_v}(V_{l_v}) over the distinct labels v (k_v = multiplicity); its invariants number
    m(0) − m(1), m(w) = multiplicity of weight w. ACE is complete, so this must equal the number of linearly
    independent B functions of the tuple (an independent check of the linear stage). For odd Σ l the SO(3)
    invariants are pseudoscalars: O(3) has none (0), SO(3) has m(0) − m(1).
    """
    if sum(l for _, _, l in tup) % 2 and group == "o3":
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


def linear_dimension(nu: int, nmax: int, lmax: int, species: int = 1, group: str = "o3") -> int:
    """Σ invariant_dimension over all label tuples of ν = 1..nu: the linear count predicted by characters."""
    check_request(nu, nmax, lmax, species, group)
    singles = single_particle_labels(nmax, lmax, species)
    return sum(invariant_dimension(t, group) for k in range(1, nu + 1)
               for t in itertools.combinations_with_replacement(singles, k))
