"""Exact SymPy formulas of contractions as polynomials in orthonormal block coordinates c_{l,m}.

Each block is written T = sum_m z_m F_{l,m} with rational tensors F (stf.rational_basis), so a contraction is a
polynomial with rational coefficients in z; the square roots enter only at the end through z_m = c_m / s_m
... more precisely c_m = z_m sqrt(n_m), i.e. z_m = c_m / sqrt(n_m). Rational arithmetic runs in SymPy's sparse
polynomial ring, which is much faster than expanding expressions.
"""

from __future__ import annotations

import ast
import math

import numpy as np
import sympy as sp
from sympy.polys.rings import ring
from sympy.polys.domains import QQ, ZZ

from cartinv.errors import CartinvError

from . import stf
from .contract import execute
from .graphs import ContractionGraph
from .modular import levi_civita
from .naming import EPS_LABEL, coordinate_name, coordinate_table


class FormulaBuilder:
    """Builds formulas for contractions of one fixed set of blocks (caches the ring and block tensors)."""

    def __init__(self, blocks, channels: int = 1):
        self.blocks = tuple(sorted(blocks))
        self.channels = channels
        self.table = coordinate_table(self.blocks, channels)
        names = [e["name"] for e in self.table]
        self.ring, *gens = ring(",".join(names), QQ)
        # Products run over ZZ (Python integers, no gcd per operation): block b's tensors are scaled by the common
        # denominator of its rational basis, and the product is divided by the product of those scales at the end.
        self._zring, *zgens = ring(",".join(names), ZZ)
        self.gens = dict(zip(names, gens))
        zgen = dict(zip(names, zgens))
        self.symbols = {n: sp.Symbol(n) for n in names}
        self._tensors, self._denominator = {}, {EPS_LABEL: 1}
        for b in self.blocks:
            l = b[1]
            tensors, _ = stf.rational_basis(l)
            den = math.lcm(*(int(x.denominator) for t in tensors for x in t.flat if x))
            acc = np.empty((3,) * l, dtype=object) if l else np.empty((), dtype=object)
            acc[...] = self._zring.zero
            for m, t in zip(range(-l, l + 1), tensors):
                z = zgen[coordinate_name(b, m, channels)]
                for idx in np.ndindex(t.shape):
                    if t[idx]:
                        acc[idx] = acc[idx] + z * int(t[idx] * den)
            self._tensors[b] = acc
            self._denominator[b] = den
        eps = np.empty((3, 3, 3), dtype=object)  # the Levi-Civita vertex of pseudoscalars
        for idx, sign in np.ndenumerate(levi_civita()):
            eps[idx] = self._zring(int(sign))
        self._tensors[EPS_LABEL] = eps
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
        res = res[()] if isinstance(res, np.ndarray) else res
        den = math.prod(self._denominator[lab] for lab in graph.labels)
        return self.ring({e: QQ(int(c), den) for e, c in res.terms()})

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


class FormulaSyntaxError(CartinvError, ValueError):
    """A formula text that is not a polynomial in the named coordinates with sqrt-of-rational coefficients."""


def parse_formula(text: str, symbols: dict[str, sp.Symbol]) -> sp.Expr:
    """SymPy expression of a formula text (as written by `formula_text`), read without eval.

    Accepts integers, names from `symbols`, sqrt(...), unary minus and + - * / ** only, so a Basis file cannot run
    code; a sum is flattened iteratively and built with one Add, so long formulas (thousands of terms) read in
    linear time without deep recursion.
    """
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise FormulaSyntaxError(f"not a formula: {exc.msg}") from None
    return _sum(tree.body, symbols)


def _sum(node: ast.AST, symbols) -> sp.Expr:
    terms, stack = [], [(node, 1)]
    while stack:
        n, sign = stack.pop()
        if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub)):
            stack.append((n.left, sign))
            stack.append((n.right, sign if isinstance(n.op, ast.Add) else -sign))
        else:
            term = _term(n, symbols)
            terms.append(term if sign > 0 else -term)
    return sp.Add(*terms)


_BINARY = {ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a**b}


def _term(n: ast.AST, symbols) -> sp.Expr:
    if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub)):
        return _sum(n, symbols)
    if isinstance(n, ast.BinOp) and type(n.op) in _BINARY:
        left, right = _term(n.left, symbols), _term(n.right, symbols)
        if isinstance(n.op, ast.Pow) and not (right.is_Integer and right >= 0):
            raise FormulaSyntaxError(f"exponent {right} is not a non-negative integer")
        if isinstance(n.op, ast.Div) and (right.free_symbols or right == 0):
            raise FormulaSyntaxError(f"division by {right}: only non-zero constants")
        return _BINARY[type(n.op)](left, right)
    if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
        value = _term(n.operand, symbols)
        return -value if isinstance(n.op, ast.USub) else value
    if isinstance(n, ast.Constant) and type(n.value) is int:
        return sp.Integer(n.value)
    if isinstance(n, ast.Name):
        if n.id not in symbols:
            raise FormulaSyntaxError(f"unknown symbol {n.id!r}")
        return symbols[n.id]
    if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "sqrt" and len(n.args) == 1 \
            and not n.keywords:
        arg = _term(n.args[0], symbols)
        if not (arg.is_Rational and arg >= 0):
            raise FormulaSyntaxError(f"sqrt of {arg}: only non-negative rationals")
        return sp.sqrt(arg)
    raise FormulaSyntaxError(f"unsupported element {ast.dump(n)[:60]}")
