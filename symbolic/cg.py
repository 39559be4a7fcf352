"""Exact Clebsch–Gordan coefficients and the complex ↔ real spherical-harmonic change of basis.

Clebsch–Gordan coefficients ⟨j1 m1 j2 m2 | J M⟩ (Condon–Shortley phase) follow from Racah's closed form

    ⟨j1 m1 j2 m2 | J M⟩ = δ(M, m1 + m2) · Δ(j1 j2 J) · sqrt(f(j1, m1) f(j2, m2) f(J, M)) · S(j1 m1 j2 m2 J M),

    Δ² = (2J+1) (j1+j2−J)! (j1−j2+J)! (−j1+j2+J)! / (j1+j2+J+1)!,      f(j, m) = (j+m)! (j−m)!,
    S  = Σ_k (−1)^k / [k! (j1+j2−J−k)! (j1−m1−k)! (j2+m2−k)! (J−j2+m1+k)! (J−j1−m2+k)!]   (rational).

Only integer angular momenta occur here. Every coefficient is therefore c·sqrt(s) with c rational and s a
square-free positive integer; `cg` returns exactly that pair. The three factors are also exported separately
(`delta2`, `mfact`, `racah_sum`) because the ACE code (symbolic/ace/couplings.py) multiplies them along a coupling chain
in a way that leaves only rational numbers.

Real spherical harmonics are the standard ones: Y_{l,m} = √2 (−1)^m Im Y_l^{|m|} (m < 0), Y_l^0 (m = 0),
√2 (−1)^m Re Y_l^m (m > 0), with complex Y_l^m carrying the Condon–Shortley phase. They are positive multiples
of the orthonormal STF coordinates c_{l,m} of symbolic/stf.py (checked numerically in tests/test_ace.py).
The inverse change of basis used here is

    Y_l^m = (Y_{l,|m|} − i Y_{l,−|m|}) / √2            (m < 0),
    Y_l^m = (−1)^m (Y_{l,|m|} + i Y_{l,−|m|}) / √2     (m > 0).
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from math import factorial, sqrt

import sympy as sp


@lru_cache(maxsize=None)
def squarefree_sqrt(q: Fraction) -> tuple[Fraction, int]:
    """sqrt(q) = c · sqrt(s) for a rational q ≥ 0, with c ≥ 0 rational and s square-free (s = 1 for squares)."""
    q = Fraction(q)
    if q < 0:
        raise ValueError(f"square root of the negative rational {q}")
    if q == 0:
        return Fraction(0), 1
    # sqrt(n/d) = sqrt(n d) / d
    num = q.numerator * q.denominator
    outside, inside = 1, 1
    for prime, power in sp.factorint(num).items():
        outside *= prime ** (power // 2)
        if power % 2:
            inside *= prime
    return Fraction(outside, q.denominator), inside


def mfact(j: int, m: int) -> int:
    """f(j, m) = (j+m)! (j−m)!."""
    return factorial(j + m) * factorial(j - m)


def triangle(j1: int, j2: int, J: int) -> bool:
    """|j1 − j2| ≤ J ≤ j1 + j2 (all non-negative)."""
    return min(j1, j2, J) >= 0 and abs(j1 - j2) <= J <= j1 + j2


@lru_cache(maxsize=None)
def delta2(j1: int, j2: int, J: int) -> Fraction:
    """Δ² = (2J+1) (j1+j2−J)! (j1−j2+J)! (−j1+j2+J)! / (j1+j2+J+1)! (zero outside the triangle)."""
    if not triangle(j1, j2, J):
        return Fraction(0)
    return Fraction(
        (2 * J + 1) * factorial(j1 + j2 - J) * factorial(j1 - j2 + J) * factorial(-j1 + j2 + J),
        factorial(j1 + j2 + J + 1),
    )


@lru_cache(maxsize=None)
def racah_sum(j1: int, m1: int, j2: int, m2: int, J: int, M: int) -> Fraction:
    """The rational sum S of Racah's formula (zero when M ≠ m1 + m2 or any |m| exceeds its j)."""
    if M != m1 + m2 or abs(m1) > j1 or abs(m2) > j2 or abs(M) > J or not triangle(j1, j2, J):
        return Fraction(0)
    total = Fraction(0)
    for k in range(0, j1 + j2 - J + 1):
        args = (k, j1 + j2 - J - k, j1 - m1 - k, j2 + m2 - k, J - j2 + m1 + k, J - j1 - m2 + k)
        if min(args) < 0:
            continue
        den = 1
        for a in args:
            den *= factorial(a)
        total += Fraction((-1) ** k, den)
    return total


@lru_cache(maxsize=None)
def cg(j1: int, m1: int, j2: int, m2: int, J: int, M: int) -> tuple[Fraction, int]:
    """⟨j1 m1 j2 m2 | J M⟩ exactly, as (c, s) meaning c · sqrt(s), s square-free."""
    for name, value in (("j1", j1), ("j2", j2), ("J", J), ("m1", m1), ("m2", m2), ("M", M)):
        if not isinstance(value, int):
            raise ValueError(f"{name} must be an integer (only integer angular momenta occur), got {value!r}")
    s = racah_sum(j1, m1, j2, m2, J, M)
    if s == 0:
        return Fraction(0), 1
    c, rad = squarefree_sqrt(delta2(j1, j2, J) * mfact(j1, m1) * mfact(j2, m2) * mfact(J, M))
    return c * s, rad


def cg_float(j1: int, m1: int, j2: int, m2: int, J: int, M: int) -> float:
    c, s = cg(j1, m1, j2, m2, J, M)
    return float(c) * sqrt(s)


@lru_cache(maxsize=None)
def complex_from_real(l: int) -> tuple[tuple[tuple[int, int, int], ...], ...]:
    """Y_l^m = r_m Σ_μ u[m, μ] Y_{l,μ}: for each m = −l..l the entries (μ, Re u, Im u), u a Gaussian unit.

    r_m = 1/√2 for m ≠ 0 and 1 for m = 0 (see `complex_scale2`).
    """
    rows = []
    for m in range(-l, l + 1):
        k = abs(m)
        if m == 0:
            rows.append(((0, 1, 0),))
        elif m < 0:
            rows.append(((k, 1, 0), (-k, 0, -1)))
        else:
            sign = (-1) ** k
            rows.append(((k, sign, 0), (-k, 0, sign)))
    return tuple(rows)


def complex_scale2(m: int) -> Fraction:
    """r_m² of `complex_from_real`: 1/2 for m ≠ 0, 1 for m = 0."""
    return Fraction(1, 2) if m else Fraction(1)


@lru_cache(maxsize=None)
def complex_from_real_matrix(l: int):
    """Float complex matrix U (2l+1, 2l+1), Y^complex[m] = U[m+l, μ+l] Y^real[μ]; U is unitary."""
    import numpy as np

    u = np.zeros((2 * l + 1, 2 * l + 1), dtype=np.complex128)
    for m, row in zip(range(-l, l + 1), complex_from_real(l)):
        r = sqrt(float(complex_scale2(m)))
        for mu, re, im in row:
            u[m + l, mu + l] = r * complex(re, im)
    u.setflags(write=False)
    return u
