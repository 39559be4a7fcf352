"""Evaluation plans: straight-line programs (named temporaries after common-subexpression elimination).

Python holds the logic here; templates only lay out the programs for each target. A program reads named
scalar inputs and assigns temporaries and outputs in order. Four programs describe a Basis completely:

- harmonics:      unit vector (ux, uy, uz) -> Y coordinates Y_{l,m} for every order in the Basis;
- harmonics_vjp:  (ux, uy, uz, gY...) -> (gux, guy, guz) = sum gY_{l,m} ∂Y_{l,m}/∂u;
- invariants:     block coordinates T... -> I_0..I_{K-1};
- invariants_vjp: (T..., gI_0..gI_{K-1}) -> gT... = sum_k gI_k ∂I_k/∂T (exact derivatives of the formulas).
An invariant with a contraction graph is evaluated as a chain of pairwise contractions of Cartesian tensors with
every entry shared across invariants (codegen/dag.py): far cheaper than its expanded polynomial at high degree
(the degree-10 invariant of T3: ~480 operations against ~19,000). Invariants without a graph (ACE's coupled
products) are expanded polynomials, with SymPy CSE across them. Derivatives are exact: SymPy derivatives of the
expanded part, and a symbolic reverse sweep over the contraction DAG.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from cartinv.codegen import dag, verify
from cartinv.errors import CartinvError
from cartinv.symbolic import stf
from cartinv.symbolic.basisfile import Basis
from cartinv.symbolic.formulas import FormulaSyntaxError, parse_formula


class EmitError(CartinvError, ValueError):
    """A program or Basis a printer cannot render (non-polynomial terms, unknown names, bad coordinate order)."""


@dataclass(frozen=True)
class Program:
    """A straight-line program: inputs by name; temps and outputs as (name, SymPy expression) in order."""

    inputs: tuple[str, ...]
    temps: tuple[tuple[str, sp.Expr], ...]
    outputs: tuple[tuple[str, sp.Expr], ...]
    comments: tuple[tuple[str, str], ...] = ()  # (temp name, a line saying what the temps from there compute)

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


def invariant_exprs(basis: Basis) -> tuple[sp.Expr, ...]:
    """Every invariant's formula text read into SymPy, over the Basis's coordinate symbols only."""
    return _memo("formulas", basis, _invariant_exprs)


def _invariant_exprs(basis: Basis) -> tuple[sp.Expr, ...]:
    local = {c["name"]: sp.Symbol(c["name"]) for c in basis.coordinates}
    out = []
    for inv in basis.invariants:
        try:
            out.append(parse_formula(inv["formula"], local))
        except FormulaSyntaxError as exc:
            raise dag.PlanError(f"invariant {inv['id']}: {exc}") from None
    return tuple(out)


_MEMO: dict[tuple[str, str], object] = {}


def _memo(kind: str, basis: Basis, build):
    """Programs, DAGs and parsed formulas are pure functions of the Basis content: build each once per process."""
    key = (kind, basis.content_hash())
    if key not in _MEMO:
        _MEMO[key] = build(basis)
    return _MEMO[key]


def invariants_program(basis: Basis) -> Program:
    return _memo("invariants", basis, _invariants_program)


def invariants_vjp_program(basis: Basis) -> Program:
    return _memo("invariants_vjp", basis, _invariants_vjp_program)


def _prune(inputs, temps, outputs, comments=()) -> Program:
    """A Program keeping only the temporaries that the outputs read (directly or through other temporaries)."""
    kept = dag.needed_statements(temps, [e for _, e in outputs])
    names = {name for name, _ in kept}
    return Program(tuple(inputs), kept, tuple(outputs), tuple((n, c) for n, c in comments if n in names))


def evaluation_split(basis: Basis) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Invariant indices evaluated (expanded, as a contraction DAG): every contraction graph goes to the DAG.

    Invariants without a graph (kind "ace": coupled products) are expanded. The DAG costs fewer operations than
    the expanded polynomials for every standard tensor basis, forward and backward (see codegen/dag.py).
    """
    graphs = tuple(k for k, inv in enumerate(basis.invariants) if basis.kind == "tensor" and inv.get("einsum"))
    return tuple(k for k in range(len(basis.invariants)) if k not in graphs), graphs


def invariants_dag(basis: Basis) -> dag.Dag:
    """The shared contraction DAG of the Basis's graph invariants, checked exactly against their formulas."""
    return _memo("dag", basis, _invariants_dag)


def check_formulas(basis: Basis) -> None:
    """Every formula verified exactly before code is written (PlanError naming the invariant otherwise).

    Graph invariants: each contraction equals its formula (codegen/dag.py). Invariants without a graph (ACE, any
    other kind): exact O(3) invariance and the recorded degree (codegen/verify.py).
    """
    _memo("checked", basis, _check_formulas)


def _check_formulas(basis: Basis) -> bool:
    invariants_dag(basis)
    expanded, _ = evaluation_split(basis)
    exprs = invariant_exprs(basis)
    verify.check_invariants(
        basis.coordinates,
        [(basis.invariants[k]["id"], exprs[k], basis.invariants[k]["degree"]) for k in expanded],
        seed=int(basis.content_hash()[:16], 16),
        group=basis.data["request"].get("group", "o3"),
    )
    return True


def _invariants_dag(basis: Basis) -> dag.Dag:
    _, contracted = evaluation_split(basis)
    graph = dag.invariant_dag(basis, contracted)
    dag.check_against_formulas(basis, graph, invariant_exprs(basis))
    return graph


def _invariants_program(basis: Basis) -> Program:
    names = [c["name"] for c in basis.coordinates]
    exprs = invariant_exprs(basis)
    expanded, _ = evaluation_split(basis)
    cse = _cse(names, [(f"I_{k}", exprs[k]) for k in expanded], "t")
    graph = invariants_dag(basis)
    outputs = dict(cse.outputs) | {f"I_{k}": e for k, e in graph.outputs}
    ordered = [(f"I_{k}", outputs[f"I_{k}"]) for k in range(len(exprs))]
    return _prune(names, cse.temps + graph.statements, ordered, graph.comments)


def _invariants_vjp_program(basis: Basis) -> Program:
    syms = coordinate_symbols(basis)
    exprs = invariant_exprs(basis)
    expanded, _ = evaluation_split(basis)
    grads = {k: sp.Symbol(f"gI_{k}") for k in range(len(exprs))}
    outs = []
    for s in syms:
        outs.append((f"g{s}", sp.expand(sum((grads[k] * sp.diff(exprs[k], s) for k in expanded), sp.S.Zero))))
    inputs = [str(s) for s in syms] + [str(g) for g in grads.values()]
    cse = _cse(inputs, outs, "v")
    graph = invariants_dag(basis)
    adjoints, dag_grads, adjoint_comments = graph.vjp(lambda k: grads[k].name, [str(s) for s in syms])
    outputs = [(name, e + dag_grads.get(str(s), 0)) for s, (name, e) in zip(syms, cse.outputs)]
    return _prune(inputs, cse.temps + graph.statements + tuple(adjoints), outputs,
                  graph.comments + adjoint_comments)


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
