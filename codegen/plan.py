"""Evaluation plans: straight-line programs (named temporaries after common-subexpression elimination).

Python holds the logic here; templates only lay out the programs for each target. A program reads named
scalar inputs and assigns temporaries and outputs in order. Four programs describe a Basis completely:

- harmonics:      unit vector (ux, uy, uz) -> Y coordinates Y_{l,m} for every order in the Basis;
- harmonics_vjp:  (ux, uy, uz, gY...) -> (gux, guy, guz) = sum gY_{l,m} ∂Y_{l,m}/∂u;
- invariants:     block coordinates T... -> I_0..I_{K-1};
- invariants_vjp: (T..., gI_0..gI_{K-1}) -> gT... = sum_k gI_k ∂I_k/∂T (exact derivatives of the formulas).
Derivatives are exact SymPy derivatives, and CSE runs across all outputs of a program together.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from cartinv.symbolic import stf
from cartinv.symbolic.basisfile import Basis


@dataclass(frozen=True)
class Program:
    """A straight-line program: inputs by name; temps and outputs as (name, SymPy expression) in order."""

    inputs: tuple[str, ...]
    temps: tuple[tuple[str, sp.Expr], ...]
    outputs: tuple[tuple[str, sp.Expr], ...]

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.outputs)

    def op_count(self) -> int:
        """Arithmetic operations (SymPy count_ops) over temps and outputs: the per-call cost."""
        return int(sum(sp.count_ops(e) for _, e in self.temps + self.outputs))


def _cse(inputs, named_exprs, prefix: str) -> Program:
    names = [n for n, _ in named_exprs]
    exprs = [e for _, e in named_exprs]
    symbols = sp.numbered_symbols(prefix)
    temps, reduced = sp.cse(exprs, symbols=symbols, optimizations="basic", order="canonical")
    return Program(tuple(inputs), tuple((str(s), e) for s, e in temps), tuple(zip(names, reduced)))


def coordinate_symbols(basis: Basis) -> list[sp.Symbol]:
    return [sp.Symbol(c["name"]) for c in basis.coordinates]


def invariant_exprs(basis: Basis) -> list[sp.Expr]:
    """Parse every invariant's formula text into SymPy, over the Basis's coordinate symbols only."""
    local = {c["name"]: sp.Symbol(c["name"]) for c in basis.coordinates}
    out = []
    for inv in basis.invariants:
        expr = sp.parse_expr(inv["formula"], local_dict=local, evaluate=True)
        stray = {str(s) for s in expr.free_symbols} - set(local)
        if stray:
            raise ValueError(f"invariant {inv['id']}: formula uses unknown symbols {sorted(stray)}")
        out.append(expr)
    return out


_PROGRAMS: dict[tuple[str, str], Program] = {}


def _memo(kind: str, basis: Basis, build) -> Program:
    """Programs are pure functions of the Basis content: build each once per process (CSE is the slow part)."""
    key = (kind, basis.content_hash())
    if key not in _PROGRAMS:
        _PROGRAMS[key] = build(basis)
    return _PROGRAMS[key]


def invariants_program(basis: Basis) -> Program:
    return _memo("invariants", basis, _invariants_program)


def invariants_vjp_program(basis: Basis) -> Program:
    return _memo("invariants_vjp", basis, _invariants_vjp_program)


def _invariants_program(basis: Basis) -> Program:
    names = [c["name"] for c in basis.coordinates]
    exprs = invariant_exprs(basis)
    return _cse(names, [(f"I_{k}", e) for k, e in enumerate(exprs)], "t")


def _invariants_vjp_program(basis: Basis) -> Program:
    syms = coordinate_symbols(basis)
    exprs = invariant_exprs(basis)
    grads = [sp.Symbol(f"gI_{k}") for k in range(len(exprs))]
    outs = []
    for s in syms:
        outs.append((f"g{s}", sp.expand(sum(g * sp.diff(e, s) for g, e in zip(grads, exprs)))))
    inputs = [str(s) for s in syms] + [str(g) for g in grads]
    return _cse(inputs, outs, "v")


def harmonic_names(orders) -> list[str]:
    return [f"Y{l}_{m + l}" for l in sorted(set(orders)) for m in range(-l, l + 1)]


def harmonics_exprs(orders) -> list[tuple[str, sp.Expr]]:
    ux, uy, uz = sp.symbols("ux uy uz")
    out = []
    for l in sorted(set(orders)):
        for m, e in zip(range(-l, l + 1), stf.harmonic_coordinates(l, ux, uy, uz)):
            out.append((f"Y{l}_{m + l}", e))
    return out


@lru_cache(maxsize=None)
def _harmonics_program(orders: tuple[int, ...]) -> Program:
    return _cse(["ux", "uy", "uz"], harmonics_exprs(orders), "h")


def harmonics_program(orders) -> Program:
    return _harmonics_program(tuple(sorted(set(orders))))


def harmonics_vjp_program(orders) -> Program:
    return _harmonics_vjp_program(tuple(sorted(set(orders))))


@lru_cache(maxsize=None)
def _harmonics_vjp_program(orders: tuple[int, ...]) -> Program:
    ux, uy, uz = sp.symbols("ux uy uz")
    named = harmonics_exprs(orders)
    gys = [sp.Symbol(f"g{n}") for n, _ in named]
    outs = [(f"g{v}", sp.expand(sum(g * sp.diff(e, v) for g, (_, e) in zip(gys, named)))) for v in (ux, uy, uz)]
    return _cse(["ux", "uy", "uz"] + [str(g) for g in gys], outs, "k")


def float_literal(value) -> str:
    """Shortest repr that round-trips a float64 (deterministic across machines)."""
    return repr(float(value))
