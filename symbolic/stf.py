"""Symmetric traceless (STF) tensors in 3D: exact bases, coordinates and conversions.

Conventions (background §1), fixed here and nowhere else:

* An STF tensor of order l has 2l+1 independent components.
* **Orthonormal coordinates** c_{l,m}, m = -l..l, are coefficients in an orthonormal basis E_{l,m} of the STF
  space under the Frobenius inner product, so <A, B>_F = sum_m a_m b_m. E_{l,m} is the STF tensor whose
  harmonic polynomial E_{l,m}·x^{⊗l} is proportional (with a positive factor) to the real solid harmonic
  R_{l,m}(x) in the usual ordering (m < 0: sin, m > 0: cos). The coordinates of Y_l(u) are therefore
  c_{l,m}(u) = R_{l,m}(u) / ||(1/l!) ∇^l R_{l,m}||_F, and sum_m c_{l,m}(u)^2 = l!/(2l-1)!! for |u| = 1.
* The **integer parametrisation** used for exact rank tests takes the 2l+1 components T_{x^a y^b z^c} with
  c ∈ {0, 1} as free variables; every other component is an integer combination of them (tracelessness
  removes z² factors).
* Full Cartesian arrays index axes as (x, y, z) = (0, 1, 2).
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from functools import lru_cache
from math import comb, factorial

import numpy as np
import sympy as sp

X, Y, Z = sp.symbols("x y z", real=True)


def n_components(l: int) -> int:
    """Number of independent components 2l+1 of an STF tensor of order l."""
    return 2 * l + 1


def _exponents(index: tuple[int, ...]) -> tuple[int, int, int]:
    """Cartesian index tuple -> exponents (a, b, c) of x, y, z (symmetric tensors depend only on these)."""
    return (index.count(0), index.count(1), index.count(2))


@lru_cache(maxsize=None)
def free_exponents(l: int) -> tuple[tuple[int, int, int], ...]:
    """The 2l+1 free components (a, b, c), c ∈ {0, 1}, of the integer parametrisation, in a fixed order."""
    out = [(l - b, b, 0) for b in range(l + 1)]
    out += [(l - 1 - b, b, 1) for b in range(l)] if l >= 1 else []
    return tuple(out)


@lru_cache(maxsize=None)
def _component_in_free(l: int, exps: tuple[int, int, int]) -> tuple[int, ...]:
    """Integer coefficients expressing component x^a y^b z^c of an STF tensor in the free components."""
    a, b, c = exps
    if c <= 1:
        k = free_exponents(l).index(exps)
        return tuple(int(i == k) for i in range(2 * l + 1))
    # Tracelessness over a pair of z indices: T_{..zz} = -T_{..xx} - T_{..yy}.
    p = _component_in_free(l, (a + 2, b, c - 2))
    q = _component_in_free(l, (a, b + 2, c - 2))
    return tuple(-u - v for u, v in zip(p, q))


@lru_cache(maxsize=None)
def integer_basis(l: int) -> np.ndarray:
    """Integer matrix B of shape (3**l, 2l+1): vec(T) = B @ x for the free components x of an STF tensor."""
    rows = [_component_in_free(l, _exponents(idx)) for idx in itertools.product(range(3), repeat=l)]
    mat = np.array(rows, dtype=np.int64).reshape(3**l, 2 * l + 1)
    mat.setflags(write=False)
    return mat


@lru_cache(maxsize=None)
def solid_harmonic(l: int, m: int) -> sp.Expr:
    """Real solid harmonic R_{l,m}(x, y, z) up to a positive factor, with integer coefficients.

    R_{l,m} = Π_l^{|m|}(z, r²) · Re/Im (x + i y)^{|m|}, Π from the standard Legendre expansion.
    """
    if abs(m) > l:
        raise ValueError(f"|m| = {abs(m)} exceeds l = {l}")
    am = abs(m)
    r2 = X**2 + Y**2 + Z**2
    pi = sum(
        (-1) ** k * comb(l, k) * comb(2 * l - 2 * k, l) * sp.Rational(factorial(l - 2 * k), factorial(l - 2 * k - am))
        * r2**k * Z ** (l - 2 * k - am)
        for k in range((l - am) // 2 + 1)
    )
    xy = sp.expand((X + sp.I * Y) ** am)
    ang = sp.re(xy) if m >= 0 else sp.im(xy)
    poly = sp.Poly(sp.expand(pi * ang), X, Y, Z)
    # Clear denominators and common factors so the coefficients are coprime integers.
    _, prim = poly.clear_denoms()
    prim = prim.primitive()[1]
    return prim.as_expr()


@lru_cache(maxsize=None)
def rational_basis(l: int) -> tuple[tuple[np.ndarray, ...], tuple[sp.Rational, ...]]:
    """Rational STF tensors F_{l,m} (object arrays of Fractions, shape (3,)*l) and their squared norms n_m.

    E_{l,m} = F_{l,m} / sqrt(n_m) is the orthonormal basis; F_{l,m} = (1/l!) ∇^l R_{l,m}.
    """
    tensors, norms = [], []
    for m in range(-l, l + 1):
        poly = sp.Poly(solid_harmonic(l, m), X, Y, Z)
        coeffs = {exps: Fraction(int(c.p), int(c.q)) for exps, c in poly.terms()}  # (a, b, c) -> coefficient
        entry: dict[tuple[int, int, int], Fraction] = {}
        arr = np.empty((3,) * l, dtype=object) if l else np.empty((), dtype=object)
        for idx in itertools.product(range(3), repeat=l):
            exps = _exponents(idx)
            if exps not in entry:
                # d^l/dx^a dy^b dz^c of a monomial of degree l is a! b! c! times its coefficient.
                a, b, c = exps
                entry[exps] = coeffs.get(exps, Fraction(0)) * factorial(a) * factorial(b) * factorial(c) / factorial(l)
            arr[idx] = entry[exps]
        norm2 = sum((v * v for v in arr.flat), Fraction(0))
        tensors.append(arr)
        norms.append(sp.Rational(norm2.numerator, norm2.denominator))
    return tuple(tensors), tuple(norms)


@lru_cache(maxsize=None)
def orthonormal_basis(l: int) -> np.ndarray:
    """Float64 matrix E of shape (2l+1, 3**l): row m+l is vec(E_{l,m}). E @ E.T = I."""
    tensors, norms = rational_basis(l)
    rows = [np.array([float(v) for v in t.flat], dtype=np.float64) / np.sqrt(float(n)) for t, n in zip(tensors, norms)]
    mat = np.array(rows).reshape(2 * l + 1, 3**l)
    mat.setflags(write=False)
    return mat


@lru_cache(maxsize=None)
def coordinate_scales(l: int) -> tuple[sp.Expr, ...]:
    """Exact s_m with c_{l,m}(u) = s_m R_{l,m}(u) (so s_m = 1/||F_{l,m}||)."""
    _, norms = rational_basis(l)
    return tuple(1 / sp.sqrt(n) for n in norms)


def harmonic_coordinates(l: int, x: sp.Expr = X, y: sp.Expr = Y, z: sp.Expr = Z) -> list[sp.Expr]:
    """Exact orthonormal coordinates c_{l,m}, m = -l..l, of Y_l(u) for a unit vector u = (x, y, z)."""
    return [
        sp.expand(s * solid_harmonic(l, m).subs({X: x, Y: y, Z: z}, simultaneous=True))
        for s, m in zip(coordinate_scales(l), range(-l, l + 1))
    ]


def stf_part(tensor: np.ndarray) -> np.ndarray:
    """Symmetric traceless part of a float Cartesian tensor of shape (3,)*l, by projection onto E_{l,m}."""
    l = tensor.ndim
    e = orthonormal_basis(l)
    return (e.T @ (e @ tensor.reshape(-1))).reshape((3,) * l) if l else tensor.copy()


def to_cartesian(l: int, coords: np.ndarray) -> np.ndarray:
    """Orthonormal coordinates (..., 2l+1) -> full Cartesian arrays (..., 3, ..., 3)."""
    coords = np.asarray(coords, dtype=np.float64)
    if coords.shape[-1] != 2 * l + 1:
        raise ValueError(f"order {l} needs {2 * l + 1} coordinates, got {coords.shape[-1]}")
    return (coords @ orthonormal_basis(l)).reshape(coords.shape[:-1] + (3,) * l)


def from_cartesian(l: int, tensor: np.ndarray) -> np.ndarray:
    """Full Cartesian arrays (..., 3, ..., 3) -> orthonormal coordinates (..., 2l+1) of their STF part."""
    tensor = np.asarray(tensor, dtype=np.float64)
    flat = tensor.reshape(tensor.shape[: tensor.ndim - l] + (3**l,))
    return flat @ orthonormal_basis(l).T


def y_coordinates(l: int, vectors: np.ndarray) -> np.ndarray:
    """Float64 orthonormal coordinates of Y_l(r̂) for vectors (..., 3) (normalised here), shape (..., 2l+1)."""
    v = np.asarray(vectors, dtype=np.float64)
    u = v / np.linalg.norm(v, axis=-1, keepdims=True)
    out = np.ones(u.shape[:-1] + (1,))
    for _ in range(l):
        out = (out[..., :, None] * u[..., None, :]).reshape(u.shape[:-1] + (-1,))
    return out @ orthonormal_basis(l).T


def double_factorial(n: int) -> int:
    """n!! with (-1)!! = 1."""
    return 1 if n <= 0 else n * double_factorial(n - 2)


def y_norm2(l: int) -> sp.Rational:
    """Exact |Y_l(u)|_F² = l!/(2l-1)!! for a unit vector u."""
    return sp.Rational(factorial(l), double_factorial(2 * l - 1))
