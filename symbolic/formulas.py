"""Exact SymPy formulas of contractions as polynomials in orthonormal block coordinates c_{l,m}.

Each block is written T = sum_m z_m F_{l,m} with rational tensors F (stf.rational_basis), so a contraction is a
polynomial with rational coefficients in z; the square roots enter only at the end through c_m = z_m sqrt(n_m),
i.e. z_m = c_m / sqrt(n_m). The contraction is multilinear in its factors, so its coefficients are one integer
einsum of the factors' scaled coefficient tensors (one extra index m per factor), summed over the orderings of
each monomial; very large outputs go through SymPy's sparse polynomial ring instead. Formula texts are printed
straight from the coefficients, in exactly the form of SymPy's str printer (lex order), without building
expressions.
"""

from __future__ import annotations

import ast
import math
from fractions import Fraction
from functools import lru_cache

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

# The dense path's output holds prod(2 l_k + 1) coefficients; above this it would need too much memory and the
# sparse ring path (which never materialises the orderings of equal factors) is used.
DENSE_MAX_ENTRIES = 1 << 21
_INT64_MAX = (1 << 63) - 1


class FormulaBuilder:
    """Builds formulas for contractions of one fixed set of blocks (caches the ring and block tensors)."""

    def __init__(self, blocks, channels: int = 1):
        self.blocks = tuple(sorted(blocks))
        self.channels = channels
        self.table = coordinate_table(self.blocks, channels)
        names = [e["name"] for e in self.table]
        self.names = names
        self.ring, *gens = ring(",".join(names), QQ)
        self.gens = dict(zip(names, gens))
        self.symbols = {n: sp.Symbol(n) for n in names}
        index = {n: k for k, n in enumerate(names)}
        self._ring_tensors: dict | None = None  # built on first use of the sparse path
        self._denominator = {EPS_LABEL: 1}
        # Products run over the integers: block b's rational tensors are scaled by their common denominator, and
        # the product is divided by the product of those scales at the end. Per label: the integer coefficient
        # tensor [3]*l + [2l+1] (the scaled F_{l,m} along the last axis), the variable index of each m, and the
        # largest |entry| (for the int64 overflow bound); per coordinate, its squared norm n_m.
        self._coefficients = {EPS_LABEL: (levi_civita().astype(np.int64), None, 1)}
        self._scale = {}
        for b in self.blocks:
            l = b[1]
            tensors, norms = stf.rational_basis(l)
            den = math.lcm(*(int(x.denominator) for t in tensors for x in t.flat if x))
            self._denominator[b] = den
            scaled = [int(x * den) for t in tensors for x in t.flat]
            coeff = np.moveaxis(np.array(scaled, dtype=object).reshape((2 * l + 1,) + (3,) * l), 0, -1)
            self._coefficients[b] = (coeff, np.array([index[coordinate_name(b, m, channels)]
                                                      for m in range(-l, l + 1)]), max(abs(v) for v in scaled))
            for m, n in zip(range(-l, l + 1), norms):
                self._scale[coordinate_name(b, m, channels)] = n
        # the printer's view: names in SymPy's symbol order, and each norm's prime exponents
        self._print_order = sorted(range(len(names)), key=lambda k: names[k])
        self._norm_primes = [_prime_exponents(Fraction(int(self._scale[n].p), int(self._scale[n].q)))
                             for n in names]

    def _tensors(self) -> dict:
        """label -> the block's tensor with entries in the integer polynomial ring of the scaled variables z."""
        if self._ring_tensors is None:
            zring, *zgens = ring(",".join(self.names), ZZ)
            out = {EPS_LABEL: np.vectorize(lambda v: zring(int(v)), otypes=[object])(levi_civita())}
            for b in self.blocks:
                coeff, var, _ = self._coefficients[b]
                acc = np.empty(coeff.shape[:-1], dtype=object)
                acc[...] = zring.zero
                for m, k in enumerate(var):
                    for idx in np.ndindex(acc.shape):
                        if coeff[idx + (m,)]:
                            acc[idx] = acc[idx] + zgens[k] * int(coeff[idx + (m,)])
                out[b] = acc
            self._ring_tensors = out
        return self._ring_tensors

    @staticmethod
    def _pair(a, sa, b, sb, out):
        return np.einsum(f"{sa},{sb}->{out}", a, b, dtype=object)

    @staticmethod
    def _single(a, sa, out):
        return np.einsum(f"{sa}->{out}", a, dtype=object)

    def integer_terms(self, graph: ContractionGraph) -> tuple[dict[tuple[int, ...], int], int]:
        """({exponent vector: integer coefficient}, denominator): the contraction is sum c/den * z^e (no zero c)."""
        den = math.prod(self._denominator[lab] for lab in graph.labels)
        blocks = [lab for lab in graph.labels if lab != EPS_LABEL]
        if math.prod(2 * lab[1] + 1 for lab in blocks) > DENSE_MAX_ENTRIES:
            ops = [self._tensors()[lab] for lab in graph.labels]
            res = ops[0] if graph.degree == 1 else execute(ops, graph.subscripts, "", self._pair, self._single)
            res = res[()] if isinstance(res, np.ndarray) else res
            return {e: int(c) for e, c in res.terms()}, den
        return self._dense_terms(graph), den

    def _dense_terms(self, graph: ContractionGraph) -> dict[tuple[int, ...], int]:
        """The coefficients by one einsum over the factors' coefficient tensors (an index m per block factor)."""
        used = set("".join(graph.subscripts))
        free = iter(ch for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if ch not in used)
        ops, subs, out, variables = [], [], "", []
        bound = 3 ** len(used)  # terms per output entry; each a product of one entry per factor
        for lab, sub in zip(graph.labels, graph.subscripts):
            coeff, var, largest = self._coefficients[lab]
            bound *= largest
            ops.append(coeff)
            if var is None:
                subs.append(sub)
            else:
                ch = next(free)
                subs.append(sub + ch)
                out += ch
                variables.append(var)
        # int64 is exact when no partial sum can exceed the bound; otherwise Python integers (object arrays)
        dtype = np.int64 if bound <= _INT64_MAX else object
        ops = [o.astype(dtype) for o in ops]
        if len(ops) == 1:
            res = self._single(ops[0], subs[0], out) if subs[0] != out else ops[0]
        else:
            res = execute(ops, subs, out, lambda a, sa, b, sb, o: np.einsum(f"{sa},{sb}->{o}", a, b, dtype=dtype),
                          lambda a, sa, o: np.einsum(f"{sa}->{o}", a, dtype=dtype))
        nz = np.nonzero(res)  # every graph has a block factor, so res has at least one axis
        exps = np.zeros((len(nz[0]), len(self.names)), dtype=np.int64)
        rows = np.arange(len(nz[0]))
        for k, var in enumerate(variables):
            np.add.at(exps, (rows, var[nz[k]]), 1)
        terms: dict[tuple[int, ...], int] = {}
        for e, c in zip(map(tuple, exps.tolist()), res[nz].tolist()):
            terms[e] = terms.get(e, 0) + int(c)
        return {e: c for e, c in terms.items() if c}

    def polynomial_z(self, graph: ContractionGraph):
        """The contraction as a ring element in the scaled variables z (rational coefficients)."""
        terms, den = self.integer_terms(graph)
        return self.ring({e: QQ(c, den) for e, c in terms.items()})

    def text(self, graph: ContractionGraph) -> str:
        """``formula_text(self.formula(graph))``, printed straight from the integer coefficients."""
        terms, den = self.integer_terms(graph)
        if not terms:
            return "0"
        order = self._print_order
        keyed = sorted(terms.items(), key=lambda t: [t[0][k] for k in order], reverse=True)
        parts = []
        for exps, c in keyed:
            primes: dict[int, int] = {}
            for k, e in enumerate(exps):
                if e:
                    for prime, v in self._norm_primes[k].items():
                        primes[prime] = primes.get(prime, 0) + v * e
            # c/den / sqrt(prod p^E) = (c/den) prod p^floor(-E/2) * sqrt(prod p^((-E) mod 2))
            coeff, radicand = Fraction(c, den), 1
            for prime, e in primes.items():
                coeff *= Fraction(prime) ** (-e // 2)
                radicand *= prime ** (-e % 2)
            factors = [str(abs(coeff.numerator))] if abs(coeff.numerator) != 1 else []
            if radicand != 1:
                factors.append(f"sqrt({radicand})")
            factors += [self.names[k] if exps[k] == 1 else f"{self.names[k]}**{exps[k]}" for k in order if exps[k]]
            term = "*".join(factors) + (f"/{coeff.denominator}" if coeff.denominator != 1 else "")
            parts.append(("-" if coeff < 0 else "+", term))
        head = ("-" if parts[0][0] == "-" else "") + parts[0][1]
        return " ".join([head] + [f"{sign} {term}" for sign, term in parts[1:]])

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


@lru_cache(maxsize=None)
def _prime_exponents(x: Fraction) -> dict[int, int]:
    """{prime: exponent} of a positive rational (negative exponents for the denominator)."""
    out: dict[int, int] = {}
    for value, sign in ((x.numerator, 1), (x.denominator, -1)):
        for prime, e in sp.factorint(value).items():
            out[int(prime)] = out.get(int(prime), 0) + sign * int(e)
    return out


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
