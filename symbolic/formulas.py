"""Exact SymPy formulas of contractions as polynomials in orthonormal block coordinates c_{l,m}.

Each block is written T = sum_m z_m F_{l,m} with rational tensors F (stf.rational_basis), so a contraction is a
polynomial with rational coefficients in z; the square roots enter only at the end through z_m = c_m / s_m
... more precisely c_m = z_m sqrt(n_m), i.e. z_m = c_m / sqrt(n_m). Rational arithmetic runs in SymPy's sparse
polynomial ring, which is much faster than expanding expressions.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp
from sympy.polys.rings import ring
from sympy.polys.domains import QQ

from . import stf
from .contract import execute
from .graphs import ContractionGraph, Label


def coordinate_name(label: Label, m: int, channels: int = 1) -> str:
    """Name of coordinate c_{l,m} of a block: T{l}_{m+l} (one channel) or T{l}c{n}_{m+l}."""
    c, l = label
    base = f"T{l}" if channels == 1 else f"T{l}c{c}"
    return f"{base}_{m + l}"


def coordinate_table(blocks, channels: int = 1) -> list[dict]:
    """The Basis file's `coordinates`: channel-major, then l, then m = -l..l."""
    return [
        {"name": coordinate_name((c, l), m, channels), "channel": c, "l": l, "m": m}
        for c, l in sorted(blocks)
        for m in range(-l, l + 1)
    ]


class FormulaBuilder:
    """Builds formulas for contractions of one fixed set of blocks (caches the ring and block tensors)."""

    def __init__(self, blocks, channels: int = 1):
        self.blocks = tuple(sorted(blocks))
        self.channels = channels
        self.table = coordinate_table(self.blocks, channels)
        names = [e["name"] for e in self.table]
        self.ring, *gens = ring(",".join(names), QQ)
        self.gens = dict(zip(names, gens))
        self.symbols = {n: sp.Symbol(n) for n in names}
        self._tensors = {}
        for b in self.blocks:
            l = b[1]
            tensors, _ = stf.rational_basis(l)
            acc = np.empty((3,) * l, dtype=object) if l else np.empty((), dtype=object)
            acc[...] = self.ring.zero
            for m, t in zip(range(-l, l + 1), tensors):
                z = self.gens[coordinate_name(b, m, channels)]
                for idx in np.ndindex(t.shape):
                    if t[idx]:
                        acc[idx] = acc[idx] + z * QQ(t[idx].numerator, t[idx].denominator)
            self._tensors[b] = acc
        self._scale = {}
        for b in self.blocks:
            _, norms = stf.rational_basis(b[1])
            for m, n in zip(range(-b[1], b[1] + 1), norms):
                self._scale[coordinate_name(b, m, channels)] = n

    @staticmethod
    def _pair(a, sa, b, sb, out):
        return np.einsum(f"{sa},{sb}->{out}", a, b, dtype=object)

    @staticmethod
    def _single(a, sa, out):
        return np.einsum(f"{sa}->{out}", a, dtype=object)

    def polynomial_z(self, graph: ContractionGraph):
        """The contraction as a ring element in the scaled variables z (rational coefficients)."""
        ops = [self._tensors[lab] for lab in graph.labels]
        if graph.degree == 1:
            res = ops[0]
        else:
            res = execute(ops, graph.subscripts, "", self._pair, self._single)
        return res[()] if isinstance(res, np.ndarray) else res

    def formula(self, graph: ContractionGraph) -> sp.Expr:
        """The contraction as a polynomial in the orthonormal coordinates (names from coordinate_table)."""
        poly = self.polynomial_z(graph)
        names = [e["name"] for e in self.table]
        terms = []
        for exps, coeff in sorted(poly.terms()):
            scale = sp.Integer(1)
            mono = sp.Integer(1)
            for name, e in zip(names, exps):
                if e:
                    scale *= self._scale[name] ** e
                    mono *= self.symbols[name] ** e
            # z = c / sqrt(n): a monomial z^e picks up 1/sqrt(prod n^e).
            terms.append(sp.Rational(coeff.numerator, coeff.denominator) / sp.sqrt(scale) * mono)
        return sp.Add(*terms)


def formula_text(expr: sp.Expr) -> str:
    """Deterministic text of a formula (SymPy's str printer with its canonical term order)."""
    return sp.sstr(expr, order="lex")
