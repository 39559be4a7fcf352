"""The SO(3) completion of an ACE basis: one pseudoscalar B function, its square, and the strata it separates.

As for tensor bases (symbolic/pseudoscalars.py): a B function with odd Σ l changes sign under a reflection (it is i
times a real polynomial; the Basis holds B / i). The O(3) functions are pruned as before; among the pseudoscalars
that survive the linear stage (each non-zero: a zero one is dropped as "= 0"), the first in ACE order is kept and
the others are dropped as functional (none raises the Jacobian rank of a complete O(3) basis, since p q is an O(3)
invariant). The kept one's square is written in the O(3) B functions of the doubled label tuple (ACE is complete,
so they span every O(3) invariant of that multidegree): P_p² = Σ q_k P_k is solved mod two primes at random points,
reconstructed and verified at fresh points, then scaled to B level (Bp = κ_p P_p / i, B_k = κ_k P_k).
"""

from __future__ import annotations

import itertools

import numpy as np

from .. import cg, molien
from ..bounds import strata_subsets
from ..modular import PRIMES, Echelon, rank_mod_p
from ..relations import holds_mod, rational_solution
from .couplings import kappa2
from .enumeration import coupling_paths, single_particle_labels
from .formulas import coefficient_text
from .modular_eval import ModularAce, _by_pattern
from .request import CHECK_POINTS, AceFunction, AceRequestError

SQUARE_MARGIN = 8


def first_pseudoscalar_nu(nmax: int, lmax: int, species: int, nu: int) -> int | None:
    """The lowest correlation order up to `nu` with an SO(3) invariant of odd Σ l (from characters), or None."""
    singles = single_particle_labels(nmax, lmax, species)
    for k in range(1, nu + 1):
        for t in itertools.combinations_with_replacement(singles, k):
            if sum(l for _, _, l in t) % 2:
                labels = sorted(set(t))
                if molien.invariant_dimension(tuple(l for _, _, l in labels), tuple(t.count(v) for v in labels),
                                              "so3"):
                    return k
    return None


def check_has_pseudoscalar(nu: int, nmax: int, lmax: int, species: int) -> None:
    """Refuse an SO(3) request without a pseudoscalar before any work, naming what would give one."""
    if first_pseudoscalar_nu(nmax, lmax, species, nu) is None:
        hint = "raise nu" if lmax >= 1 else "raise lmax to at least 1"
        raise AceRequestError(f"--group so3: no pseudoscalar (odd sum of l) exists up to nu = {nu} for nmax = {nmax}, "
                              f"lmax = {lmax}, so the SO(3) basis equals the O(3) one; {hint}")


def select_pseudoscalar(sel, mods: list[ModularAce], progress) -> None:
    """Keep the first surviving pseudoscalar, drop the others as functional, recompute the Jacobian rank of the
    kept set and record sel.chirality (kept index, square terms, strata)."""
    odd = [i for i, f in enumerate(sel.functions) if f.odd and sel.status[i] == "kept"]
    if not odd:
        raise AceRequestError(f"--group so3: every pseudoscalar B function up to nu = {sel.nu} vanishes identically")
    kept = odd[0]
    for i in odd[1:]:
        sel.status[i] = "functional"
    progress("pseudoscalar", 1, 1)
    sel.rank = _kept_rank(sel, mods)
    fn = sel.functions[kept]
    sel.chirality = {"kept": kept, "square": square_terms(fn, sel.nmax, sel.lmax, sel.species),
                     "strata": list(_strata(sel, kept, odd))}


def _kept_rank(sel, mods) -> int:
    order = [i for i, s in enumerate(sel.status) if s == "kept"]
    return max(rank_mod_p(m.jacobian([sel.functions[i] for i in order], m.points(1, 3)[0]), m.prime) for m in mods)


def square_terms(fn: AceFunction, nmax: int, lmax: int, species: int) -> list[tuple[str, AceFunction]]:
    """Bp² = Σ c_k B_k over O(3) B functions of the doubled label tuple: [(coefficient text, B_k), ...]."""
    nl2 = tuple(sorted(fn.nl + fn.nl))
    ls2 = tuple(l for _, _, l in nl2)
    terms = [AceFunction(nl2, path) for path in coupling_paths(ls2)]
    mods = [ModularAce(nmax, lmax, species, p) for p in PRIMES]
    batch = len(terms) + SQUARE_MARGIN

    def columns(m, pts):
        cols = np.zeros((len(terms), len(pts)), dtype=np.int64)
        for idx in _by_pattern(range(len(terms)), terms).values():
            cols[idx] = m.values([terms[i] for i in idx], pts)
        target = m.values([fn], pts)[0]
        return cols, target * target % m.prime

    systems, chosen = [], None
    for m in mods:
        cols, target = columns(m, m.points(batch, 5))
        if chosen is None:  # independent columns, in order, at the first prime (a basis of the doubled tuple)
            ech = Echelon(batch, m.prime)
            chosen = [k for k in range(len(terms)) if ech.add(cols[k])]
        systems.append((cols[chosen].T.copy(), target, m.prime))
    coeffs = rational_solution(systems)
    check_cols, check_target = columns(mods[0], mods[0].points(CHECK_POINTS, 6))
    if coeffs is None or not holds_mod([check_cols[k] for k in chosen], coeffs, check_target, mods[0].prime):
        raise AssertionError(f"{fn.label()}: its square is not a rational combination of the O(3) B functions")
    # Bp² = (κ_p P_p / i)² = −κ_p² P_p² = Σ −q_k κ_p² / κ_k B_k, and κ_p² / κ_k = sqrt(κ_p⁴ / κ_k²)
    kp2 = kappa2(*fn.pattern)
    out = []
    for q, k in zip(coeffs, chosen):
        if q == 0:
            continue
        c, s = cg.squarefree_sqrt(kp2 * kp2 / kappa2(*terms[k].pattern))
        out.append((coefficient_text(-q * c, s), terms[k]))
    return out


def square_text(lhs: str, terms) -> str:
    parts = []
    for k, (coef, b) in enumerate(terms):
        neg = coef.startswith("-")
        mag = coef[1:] if neg else coef
        body = f"[{b.notation()}]" if mag == "1" else f"{mag}*[{b.notation()}]"
        parts.append(("-" if neg else "") + body if k == 0 else (" - " if neg else " + ") + body)
    return f"{lhs} = " + ("".join(parts) if parts else "0")


def _strata(sel, kept: int, odd: list[int]):
    """Per stratum (blocks held at zero, symbolic/bounds.py): does the kept pseudoscalar survive, else the first
    surviving pseudoscalar of live blocks only (the same non-zero polynomial there), or None."""
    need = set(sel.functions[kept].blocks(sel.nmax))
    for zero in strata_subsets(tuple(sel.blocks)):
        live = frozenset(sel.blocks) - zero
        separated = need <= live
        candidate = None
        if not separated:
            candidate = next((sel.functions[i].notation() for i in odd
                              if set(sel.functions[i].blocks(sel.nmax)) <= live), None)
        yield {"zero": [list(b) for b in sorted(zero)], "separated": separated, "candidate": candidate}
