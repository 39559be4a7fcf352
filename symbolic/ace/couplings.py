"""Rational coupling coefficients along a chain (Racah's form with the square roots paired off), and mod p."""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from math import factorial

import numpy as np

from .. import cg
from ..stf import double_factorial


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
