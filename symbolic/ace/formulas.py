"""Exact formulas of kept B functions as polynomials in the real block coordinates."""

from __future__ import annotations

import itertools
from fractions import Fraction

import sympy as sp

from .. import cg
from ..formulas import coordinate_name
from .request import AceFunction
from .couplings import kappa2, lambda2, rational_chain


def real_polynomial(fn: AceFunction, nmax: int) -> dict:
    """B as an exact polynomial in the orthonormal block coordinates c.

    Returns {monomial: (q, s)} meaning coefficient q·sqrt(s) (q rational, s square-free); a monomial is a sorted
    tuple of (channel, l, m) factors (with repetition). Derivation: B = κ_B P_B(a), a_{v,m} = ρ(l,|m|) Σ_μ u[m,μ]
    c_{v,μ} with ρ² = λ_l² (l+m)!(l−m)! r_m² and u a Gaussian unit (symbolic/cg.py); every real monomial collects
    a Gaussian-rational sum times the same radical sqrt(κ_B² Π ρ²), whose imaginary part must cancel exactly.
    For odd Σ l (SO(3) pseudoscalars) B is purely imaginary: the real part cancels and B / i is returned.
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
        if fn.odd:  # a pseudoscalar: B = i * (real polynomial); the file holds B / i
            re, im = im, re
        if im != 0:
            raise AssertionError(f"{fn.label()}: {'real' if fn.odd else 'imaginary'} part {im} of monomial {key} "
                                 f"does not cancel")
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
