"""Contraction DAGs: an invariant evaluated as a chain of pairwise contractions of Cartesian tensors.

A high-degree invariant expanded in the block coordinates has thousands of monomials (the degree-10 invariant
of T3 has over a thousand); as a chain of pairwise contractions (the einsum of its graph, in the order of
symbolic/contract.py) it costs a few hundred multiply-adds. Here every tensor entry of every step is a named
temporary, and entries are hash-consed: an entry equal to one computed before (the same partial contraction
in another invariant, or the mirror entry M_ba of a symmetric M_ab) is that temporary again, so the DAG is
shared within and across invariants. The greedy order of contract.pairwise_plan is kept on purpose: choosing
for each invariant the order that is cheapest for it alone shares fewer entries and made the standard bases
5-10% more expensive in total (forward and backward, measured).

Entries start from the Cartesian blocks T_{c,l}[i..] = sum_m c_{l,m} E_{l,m}[i..], with E_{l,m} = F_{l,m} /
sqrt(n_m) exact (stf.rational_basis). The reverse sweep (`Dag.vjp`) is exact too: it differentiates each
statement (a sum of products of two entries) symbolically, so sum_k gI_k ∂I_k/∂T is never expanded.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import sympy as sp
from sympy.core.sorting import default_sort_key

from cartinv.errors import CartinvError
from cartinv.symbolic import naming, stf
from cartinv.symbolic.basisfile import Basis
from cartinv.symbolic.contract import pairwise_plan
from cartinv.symbolic.modular import levi_civita

Statement = tuple[str, sp.Expr]


class PlanError(CartinvError, ValueError):
    """A Basis that cannot be turned into code: a malformed contraction, missing coordinates, an unreadable
    formula, or a formula that disagrees with its contraction graph."""


def _split_coeff(expr: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """expr = coeff * rest with rest monic: a product without its number, or a sum over its first term's number."""
    if expr.is_Add:
        first = sorted(sp.Add.make_args(expr), key=default_sort_key)[0]
        coeff = first.as_coeff_Mul()[0]
        return coeff, sp.Add(*[t / coeff for t in sp.Add.make_args(expr)]) if coeff != 1 else expr
    return expr.as_coeff_Mul()


class _Interner:
    """Hash-consing of expressions into named temporaries: one temporary per distinct monic expression."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.names: dict[sp.Expr, sp.Symbol] = {}
        self.statements: list[Statement] = []
        self._sections: list[tuple[int, str]] = []

    def section(self, text: str) -> None:
        """Label the statements created from now on (until the next section) with `text`."""
        self._sections.append((len(self.statements), text))

    def section_comments(self, kept_names) -> list[tuple[str, str]]:
        """(first kept statement of each section, its label); sections whose statements were all shared or
        pruned have none."""
        out = []
        bounds = [pos for pos, _ in self._sections[1:]] + [len(self.statements)]
        for (start, text), stop in zip(self._sections, bounds):
            first = next((name for name, _ in self.statements[start:stop] if name in kept_names), None)
            if first is not None:
                out.append((first, text))
        return out

    def __call__(self, expr: sp.Expr) -> sp.Expr:
        """A symbol, a number or number * symbol equal to expr (new temporary only for a new expression)."""
        if expr.is_Number or expr.is_Symbol:
            return expr
        coeff, rest = _split_coeff(expr)
        if rest.is_Symbol:
            return expr
        symbol = self.names.get(rest)
        if symbol is None:
            symbol = sp.Symbol(f"{self.prefix}{len(self.statements)}")
            self.names[rest] = symbol
            self.statements.append((symbol.name, rest))
        return coeff * symbol


Tensor = dict  # full index tuple -> entry (number, symbol, or number * symbol)


@dataclass(frozen=True)
class Dag:
    """Temporaries (in order) and one output expression per invariant index it covers."""

    statements: tuple[Statement, ...]
    outputs: tuple[tuple[int, sp.Expr], ...]
    comments: tuple[tuple[str, str], ...] = ()  # (statement name, what the statements from there on compute)

    def op_count(self) -> int:
        return int(sum(sp.count_ops(e) for _, e in self.statements) + sum(sp.count_ops(e) for _, e in self.outputs))

    def vjp(self, grad_name, coordinate_names: list[str], prefix: str = "a"):
        """Reverse sweep: (statements for the adjoints, {coordinate name: adjoint expression} (0 omitted), comments).

        grad_name(k) names the incoming gradient of output k. Adjoints of temporaries are hash-consed like the
        forward entries; each forward statement is differentiated once, with respect to each symbol it reads.
        """
        contributions: dict[str, list[sp.Expr]] = defaultdict(list)
        for k, expr in self.outputs:
            g = sp.Symbol(grad_name(k))
            for s in sorted(expr.free_symbols, key=default_sort_key):
                contributions[s.name].append(g * sp.diff(expr, s))
        intern = _Interner(prefix)
        for name, expr in reversed(self.statements):
            terms = contributions.pop(name, None)
            if not terms:
                continue
            adjoint = intern(sp.Add(*terms))
            for s in sorted(expr.free_symbols, key=default_sort_key):
                contributions[s.name].append(adjoint * sp.diff(expr, s))
        comments = ((intern.statements[0][0], "reverse sweep: adjoints of the entries above, last to first"),) \
            if intern.statements else ()
        grads = {n: sp.Add(*contributions[n]) for n in coordinate_names if contributions.get(n)}
        stray = set(contributions) - set(coordinate_names)
        if stray:
            raise RuntimeError(f"adjoints left for names that are neither temporaries nor coordinates: {sorted(stray)}")
        return intern.statements, grads, comments


class DagBuilder:
    """Builds one Dag over a Basis's coordinates; invariants added to the same builder share entries."""

    def __init__(self, basis: Basis, prefix: str = "d"):
        self._coords: dict[tuple[int, int], list[sp.Symbol]] = defaultdict(list)
        self._channels = basis.channels
        for c in basis.coordinates:
            self._coords[(int(c["channel"]), int(c["l"]))].append(sp.Symbol(c["name"]))
        self._intern = _Interner(prefix)
        self._blocks: dict[tuple[int, int], Tensor] = {}
        self._outputs: list[tuple[int, sp.Expr]] = []

    def block(self, channel: int, l: int) -> Tensor:
        """Cartesian entries of T_{channel,l}: each distinct (sorted) index tuple interned once. The Levi-Civita
        vertex of a pseudoscalar (naming.EPS_LABEL) is the constant tensor eps_abc (entries 0 and +-1)."""
        key = (channel, l)
        if key == naming.EPS_LABEL and key not in self._blocks:
            self._blocks[key] = {idx: sp.Integer(int(v)) for idx, v in np.ndenumerate(levi_civita())}
        if key not in self._blocks:
            coords = self._block_coords(channel, l)
            tensors, norms = stf.rational_basis(l)
            scales = [1 / sp.sqrt(n) for n in norms]
            self._intern.section(f"{self._block_name(channel, l)}: distinct entries of the Cartesian tensor")
            entries: Tensor = {}
            for idx in itertools.product(range(3), repeat=l):
                canon = tuple(sorted(idx))
                if canon not in entries:
                    expr = sp.Add(
                        *[
                            sp.Rational(t[canon].numerator, t[canon].denominator) * s * z
                            for t, s, z in zip(tensors, scales, coords)
                            if t[canon]
                        ]
                    )
                    entries[canon] = self._intern(expr)
                entries[idx] = entries[canon]
            self._blocks[key] = entries
        return self._blocks[key]

    def _block_coords(self, channel: int, l: int) -> list[sp.Symbol]:
        """The 2l+1 coordinate symbols of block (channel, l), or PlanError."""
        coords = self._coords.get((channel, l))
        if not coords or len(coords) != 2 * l + 1:
            raise PlanError(f"the Basis has no coordinates for channel {channel}, order {l}")
        return coords

    def _block_name(self, channel: int, l: int) -> str:  # "eps" for the Levi-Civita vertex
        return naming.block_name((channel, l), self._channels)

    def add(self, k: int, einsum: str, orders, channels, label: str | None = None) -> None:
        """Output k = the full contraction `einsum` of blocks (channels[i], orders[i]); label names it in comments."""
        label = label or f"I_{k}"
        inputs, _, output = einsum.partition("->")
        subscripts = inputs.split(",")
        if output or [len(s) for s in subscripts] != [int(l) for l in orders] or len(orders) != len(channels):
            raise PlanError(f"invariant {label}: einsum {einsum!r} does not match orders {list(orders)}")
        counts = Counter(inputs.replace(",", ""))
        if any(n != 2 for n in counts.values()) or any(len(set(s)) != len(s) for s in subscripts):
            raise PlanError(f"invariant {label}: einsum {einsum!r} is not a full contraction (every index must join "
                             f"two different tensors)")
        if len(subscripts) == 2 and sorted(subscripts[0]) == sorted(subscripts[1]):
            # <T_a, T_b> of two blocks of one order is sum_m a_m b_m in orthonormal coordinates.
            a, b = (self._block_coords(int(c), int(orders[0])) for c in channels)
            names = [f"{self._block_name(int(c), int(orders[0]))}[{sub}]" for c, sub in zip(channels, subscripts)]
            self._intern.section(f"{label} = {' '.join(names)} = sum over m of the coordinate products")
            self._outputs.append((k, self._intern(sp.Add(*[x * y for x, y in zip(a, b)]))))
            return
        work = [(self.block(int(c), int(l)), s, f"{self._block_name(int(c), int(l))}[{s}]")
                for c, l, s in zip(channels, orders, subscripts)]
        steps = pairwise_plan(subscripts, "")
        for step, (i, j, res) in enumerate(steps, 1):
            (a, sa, na), (b, sb, nb) = work[i], work[j]
            name = f"S{step}[{res}]" if res else label
            self._intern.section(f"{label}, step {step} of {len(steps)}: {name} = {na} {nb}")
            work = [w for n, w in enumerate(work) if n not in (i, j)] + [(self._pair(a, sa, b, sb, res), res, name)]
        ((a, _, _),) = work
        self._outputs.append((k, a[()]))

    def _pair(self, a: Tensor, sa: str, b: Tensor, sb: str, res: str) -> Tensor:
        summed = sorted(set(sa + sb) - set(res))
        out: Tensor = {}
        for open_idx in itertools.product(range(3), repeat=len(res)):
            terms = []
            for sum_idx in itertools.product(range(3), repeat=len(summed)):
                value = dict(zip(res, open_idx)) | dict(zip(summed, sum_idx))
                x = a[tuple(value[ch] for ch in sa)]
                y = b[tuple(value[ch] for ch in sb)]
                if x != 0 and y != 0:
                    terms.append(x * y)
            out[open_idx] = self._intern(sp.Add(*terms))
        return out

    def build(self) -> Dag:
        """The Dag of every invariant added, pruned to the temporaries the outputs read."""
        kept = needed_statements(self._intern.statements, [e for _, e in self._outputs])
        comments = self._intern.section_comments({name for name, _ in kept})
        return Dag(kept, tuple(self._outputs), tuple(comments))


def needed_statements(statements, roots) -> tuple[Statement, ...]:
    """The statements (in order) that the expressions `roots` read, directly or through other statements."""
    needed = {s.name for e in roots for s in e.free_symbols}
    kept = []
    for name, expr in reversed(statements):
        if name in needed:
            kept.append((name, expr))
            needed |= {s.name for s in expr.free_symbols}
    return tuple(reversed(kept))


def invariant_dag(basis: Basis, indices) -> Dag:
    """The shared Dag of the Basis's invariants at `indices` (0-based)."""
    builder = DagBuilder(basis)
    for k in indices:
        inv = basis.invariants[k]
        builder.add(k, inv["einsum"], inv["orders"], inv["channels"], label=inv["id"])
    return builder.build()


def check_against_formulas(basis: Basis, graph: Dag, formulas: list[sp.Expr], seed: int = 2026) -> None:
    """Raise PlanError unless every output of `graph` equals its formula, exactly, at a random point.

    The point sets c_{l,m} = z_m sqrt(n_m) with random integers z_m (|z| < 2^20), where both the Cartesian
    entries and the formulas are rational, so the comparison is between rational numbers. Two different
    polynomials of degree d agree there with probability at most d / 2^21 (Schwartz-Zippel): this catches
    a Basis file whose formula and contraction graph disagree.
    """
    rng = random.Random(seed)
    point: dict[sp.Symbol, sp.Expr] = {}
    for c in basis.coordinates:
        _, norms = stf.rational_basis(int(c["l"]))
        z = rng.randrange(-(1 << 20), 1 << 20)
        point[sp.Symbol(c["name"])] = z * sp.sqrt(norms[int(c["m"]) + int(c["l"])])
    values = dict(point)
    for name, expr in graph.statements:
        values[sp.Symbol(name)] = sp.expand(expr.xreplace(values))
    for k, expr in graph.outputs:
        got = sp.expand(expr.xreplace(values))
        want = sp.expand(formulas[k].xreplace(point))
        if not (got.is_Rational and want.is_Rational and got == want):
            ident = basis.invariants[k]["id"]
            raise PlanError(
                f"invariant {ident}: its contraction {basis.invariants[k]['einsum']!r} and its formula disagree"
            )
