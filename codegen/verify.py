"""Exact checks of a Basis's formulas before any code is written: degree and O(3) invariance, for every kind.

A formula is a polynomial in orthonormal STF coordinates c_{l,m} with coefficients q*sqrt(k). Each block is
written c_m = z_m sqrt(n_m) with rational z (n_m the squared norm of the rational tensor F_{l,m}), so values
live in the field Q(sqrt 2, sqrt 3, ...) and are computed exactly (`Surd`: squarefree radicand -> rational).
A rotation R = M / |q|^2 from an integer quaternion q acts on z rationally: the STF tensor of z is the harmonic
polynomial p(x) = sum_m z_m R_{l,m}(x) (R_{l,m} the integer solid harmonics, which are the F_{l,m} written as
polynomials), the rotated tensor is p(R^T x), and its z' is read back by the exact Frobenius products <., F_m>.

A formula is accepted iff, at random integer points, f(R1 c) = f(c), f(R2 c) = f(c) and f(P c) = f(c) exactly,
where R1, R2 are rational rotations about independent axes of infinite order (the group they generate is dense
in SO(3)) and P = -I (parity: (-1)^l on block l). In an SO(3) Basis a formula of odd total order (a pseudoscalar)
must satisfy f(P c) = -f(c) instead; in an O(3) Basis it is refused. A non-invariant polynomial fails one of these identities, and a
nonzero polynomial vanishes at a random integer point of [0, 2^31) with probability below degree / 2^31
(Schwartz-Zippel); every monomial must also have the recorded degree.
"""

from __future__ import annotations

import random
from fractions import Fraction
from functools import lru_cache
from math import factorial, gcd

import sympy as sp

from cartinv.codegen.dag import PlanError
from cartinv.symbolic import stf

# Two integer quaternions: rotations by angles with irrational cos/pi (Niven), about non-parallel axes.
QUATERNIONS = ((1, 2, 3, 4), (3, -1, 2, -5))
POINTS = 2
POINT_BITS = 31


class VerifyError(PlanError):
    """A formula that is not an O(3) invariant of its recorded degree, or not of the supported form."""


# ---------------------------------------------------------------------------------------------- exact surds
def _squarefree(n: int) -> tuple[int, int]:
    """n = s^2 * t with t squarefree: (s, t). n > 0."""
    s, t = 1, 1
    for p, e in sp.factorint(n).items():
        s *= p ** (e // 2)
        t *= p ** (e % 2)
    return s, t


class Surd(dict):
    """An element of Q(sqrt 2, sqrt 3, ...): squarefree radicand t -> rational coefficient of sqrt(t)."""

    @staticmethod
    def of_sqrt(q: Fraction) -> "Surd":
        """sqrt(q) for a rational q >= 0."""
        if q == 0:
            return Surd()
        s, t = _squarefree(q.numerator * q.denominator)
        return Surd({t: Fraction(s, q.denominator)})

    def __mul__(self, other: "Surd") -> "Surd":
        out = Surd()
        for a, x in self.items():
            for b, y in other.items():
                g = gcd(a, b)
                t = (a // g) * (b // g)
                out[t] = out.get(t, 0) + x * y * g
        return Surd({k: v for k, v in out.items() if v})

    def __add__(self, other: "Surd") -> "Surd":
        out = Surd(self)
        for t, v in other.items():
            out[t] = out.get(t, 0) + v
        return Surd({k: v for k, v in out.items() if v})

    def scale(self, q: Fraction) -> "Surd":
        return Surd({k: v * q for k, v in self.items() if v * q})


def _number(expr: sp.Expr, where: str) -> Surd:
    """A SymPy constant made of rationals and square roots of rationals, as a Surd."""
    out = Surd({1: Fraction(1)})
    for factor in sp.Mul.make_args(expr):
        if factor.is_Rational:
            out = out.scale(Fraction(int(factor.p), int(factor.q)))
        elif factor.is_Pow and factor.base.is_Rational and factor.base > 0 and factor.exp == sp.Rational(1, 2):
            out = out * Surd.of_sqrt(Fraction(int(factor.base.p), int(factor.base.q)))
        elif factor.is_Pow and factor.base.is_Rational and factor.base > 0 and factor.exp == sp.Rational(-1, 2):
            out = out * Surd.of_sqrt(Fraction(int(factor.base.q), int(factor.base.p)))
        else:
            raise VerifyError(f"{where}: coefficient factor {factor} is not a rational or the square root of one")
    return out


def polynomial_terms(expr: sp.Expr, symbols: list[sp.Symbol], where: str) -> list[tuple[Surd, tuple[int, ...]]]:
    """(coefficient, exponent vector) of each term of an expanded formula."""
    index = {s: k for k, s in enumerate(symbols)}
    terms = []
    for term in sp.Add.make_args(sp.expand(expr)):
        coeff, mono = term.as_independent(*symbols, as_Add=False)
        exps = [0] * len(symbols)
        for base, e in mono.as_powers_dict().items():
            if base == 1:
                continue
            if base not in index or not (e.is_Integer and e > 0):
                raise VerifyError(f"{where}: term {term} is not a monomial in the coordinates")
            exps[index[base]] += int(e)
        terms.append((_number(coeff, where), tuple(exps)))
    return terms


# ---------------------------------------------------------------------------------------------- rotations
@lru_cache(maxsize=None)
def _harmonic_data(l: int) -> tuple[tuple[dict, ...], tuple[Fraction, ...]]:
    """Integer solid harmonics R_{l,m} as {(a, b, c): coefficient} and n_m = <F_m, F_m> (exact)."""
    x, y, z = stf.X, stf.Y, stf.Z
    polys, norms = [], []
    for m in range(-l, l + 1):
        poly = sp.Poly(stf.solid_harmonic(l, m), x, y, z)
        coeffs = {mono: int(c) for mono, c in poly.terms()}
        polys.append(coeffs)
        norms.append(sum((Fraction(c * c * factorial(a) * factorial(b) * factorial(cc), factorial(l))
                          for (a, b, cc), c in coeffs.items()), Fraction(0)))
    return tuple(polys), tuple(norms)


def rotation_matrix(q: tuple[int, int, int, int]) -> tuple[tuple[tuple[int, ...], ...], int]:
    """(M, d) with R = M / d the rotation of the integer quaternion q (d = |q|^2)."""
    a, b, c, e = q
    m = ((a * a + b * b - c * c - e * e, 2 * (b * c - a * e), 2 * (b * e + a * c)),
         (2 * (b * c + a * e), a * a - b * b + c * c - e * e, 2 * (c * e - a * b)),
         (2 * (b * e - a * c), 2 * (c * e + a * b), a * a - b * b - c * c + e * e))
    return m, a * a + b * b + c * c + e * e


def _poly_mul(p: dict, q: dict) -> dict:
    out: dict = {}
    for (a1, b1, c1), x in p.items():
        for (a2, b2, c2), y in q.items():
            k = (a1 + a2, b1 + b2, c1 + c2)
            out[k] = out.get(k, 0) + x * y
    return out


def rotate_block(l: int, zs: tuple[Fraction, ...], m_int, d: int) -> tuple[Fraction, ...]:
    """F-coordinates z' of the STF tensor with F-coordinates zs rotated by R = m_int / d."""
    polys, norms = _harmonic_data(l)
    p: dict = {}
    for zm, poly in zip(zs, polys):
        for mono, c in poly.items():
            p[mono] = p.get(mono, 0) + zm * c
    # p(R^T x): x_i -> sum_j R_ji x_j, i.e. the i-th variable becomes column i of R.
    forms = [{(1, 0, 0): m_int[0][i], (0, 1, 0): m_int[1][i], (0, 0, 1): m_int[2][i]} for i in range(3)]
    powers = [[{(0, 0, 0): 1}] for _ in range(3)]
    for i in range(3):
        for _ in range(l):
            powers[i].append(_poly_mul(powers[i][-1], forms[i]))
    rotated: dict = {}
    for (a, b, c), coeff in p.items():
        if coeff:
            for mono, v in _poly_mul(_poly_mul(powers[0][a], powers[1][b]), powers[2][c]).items():
                rotated[mono] = rotated.get(mono, 0) + coeff * v
    scale = Fraction(1, d**l)
    out = []
    for poly, n in zip(polys, norms):
        dot = sum((rotated.get(mono, 0) * Fraction(c * factorial(mono[0]) * factorial(mono[1]) * factorial(mono[2]),
                                                   factorial(l)) for mono, c in poly.items()), Fraction(0))
        out.append(dot * scale / n)
    return tuple(out)


# ---------------------------------------------------------------------------------------------- the check
def _values(terms, point: list[Surd]) -> Surd:
    total = Surd()
    for coeff, exps in terms:
        v = coeff
        for k, e in enumerate(exps):
            for _ in range(e):
                v = v * point[k]
        total = total + v
    return total


def check_invariants(coordinates: list[dict], formulas: list[tuple[str, sp.Expr, int]], seed: int,
                     group: str = "o3") -> None:
    """Raise VerifyError unless every (id, formula, degree) is an O(3) invariant of exactly that degree (with group
    "so3", a pseudoscalar is accepted where its total order is odd: it changes sign under parity).

    coordinates: the Basis's coordinate table ({name, channel, l, m}); seed: fixes the random points.
    """
    symbols = [sp.Symbol(c["name"]) for c in coordinates]
    blocks: dict[tuple[int, int], list[int]] = {}
    for k, c in enumerate(coordinates):
        blocks.setdefault((c["channel"], c["l"]), []).append(k)
    parsed = []
    for ident, expr, degree in formulas:
        terms = polynomial_terms(expr, symbols, f"invariant {ident}")
        if not terms:
            raise VerifyError(f"invariant {ident}: the formula is zero")
        bad = next((e for _, e in terms if sum(e) != degree), None)
        if bad is not None:
            raise VerifyError(f"invariant {ident}: a term has degree {sum(bad)}, the recorded degree is {degree}")
        orders = {sum(n * c["l"] for n, c in zip(e, coordinates)) % 2 for _, e in terms}
        if len(orders) > 1:
            raise VerifyError(f"invariant {ident}: terms of odd and even total order (not of one parity)")
        odd = orders.pop()
        if odd and group != "so3":
            raise VerifyError(f"invariant {ident}: a term has odd total order (a pseudoscalar) in an O(3) Basis")
        parsed.append((ident, terms, -1 if odd else 1))
    rng = random.Random(seed)
    rotations = [rotation_matrix(q) for q in QUATERNIONS]
    for _ in range(POINTS):
        z = [Fraction(rng.randrange(1, 1 << POINT_BITS)) for _ in coordinates]
        images = [list(z) for _ in rotations]
        for (_, l), idx in blocks.items():
            for image, (m_int, d) in zip(images, rotations):
                for k, v in zip(idx, rotate_block(l, tuple(z[k] for k in idx), m_int, d)):
                    image[k] = v
        parity = [(-v if coordinates[k]["l"] % 2 else v) for k, v in enumerate(z)]
        roots = [Surd.of_sqrt(_harmonic_data(c["l"])[1][c["m"] + c["l"]]) for c in coordinates]

        def at(zs):
            return [r.scale(v) for r, v in zip(roots, zs)]

        base_point = at(z)
        others = [("rotation", at(image)) for image in images] + [("reflection", at(parity))]
        for ident, terms, sign in parsed:
            base = _values(terms, base_point)
            for what, point in others:
                want = base if what == "rotation" or sign == 1 else base.scale(Fraction(-1))
                if _values(terms, point) != want:
                    raise VerifyError(f"invariant {ident}: the formula is not invariant (it changes under an exact "
                                      f"{what})")
