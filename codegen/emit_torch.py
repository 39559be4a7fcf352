"""Render a straight-line Program (codegen/plan.py) as PyTorch source lines.

Every statement of the program becomes one or a few Python statements on tensors:

* numeric factors never cost a pass over memory: constant temporaries (``sqrt(2)``), scaled copies (``3*k0``)
  and the leading coefficients of products and sums are moved exactly into the terms that use them
  (``fold_constants``), and each term's coefficient is written once with ``plan.float_literal`` (shortest
  round-trip repr of the float64 value);
* a product ``c * x * y**2`` becomes ``x * y * y`` with the coefficient folded into the last kernel, integer
  powers as repeated multiplication (``x * x * x``), so no ``pow`` kernel runs;
* a sum of products becomes an accumulator: the first two terms out of place (so the accumulator is a fresh
  tensor, never an alias of an input), the others in place with ``addcmul_`` / ``add_``, which fuses the
  coefficient, the last multiplication and the addition into a single pass over memory;
* a temporary is deleted (``del``) right after its last use, so the peak memory is the live set of the
  program, not every temporary at once.

In-place accumulation is safe under autograd (used when a VJP program runs with create_graph=True): an
accumulator is only modified by the statements that build it, before anything reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.core.sorting import default_sort_key

from . import escape
from .plan import EmitError, Program, float_literal  # noqa: F401 (EmitError re-exported)


@dataclass(frozen=True)
class _Term:
    """coefficient * prod(factors): factors are operand strings (symbols repeated for powers, or sub-expressions)."""

    coeff: float
    factors: tuple[str, ...]


def _constant(expr: sp.Expr) -> float:
    """Float64 value of a constant expression (rounded once, from 40 significant digits)."""
    return float(sp.N(expr, 40))


def _literal(value: float) -> str:
    text = float_literal(value)
    return f"({text})" if value < 0 else text


def _factors(expr: sp.Expr) -> tuple[float, list[str]]:
    """Split a product into a float coefficient and operand strings (powers expanded into repeats)."""
    if not expr.free_symbols:
        return _constant(expr), []
    coeff_expr, rest = expr.as_independent(*sorted(expr.free_symbols, key=default_sort_key), as_Add=False)
    coeff = _constant(coeff_expr)
    operands: list[str] = []
    for factor in sorted(sp.Mul.make_args(rest), key=default_sort_key):
        base, exp = factor.as_base_exp()
        if exp.is_Integer and int(exp) >= 1:
            n = int(exp)
            if base.is_Symbol:
                operands.extend([base.name] * n)
            else:
                sub = _inline(base)
                operands.extend([f"({sub})"] * n if n <= 2 else [f"({sub}) ** {n}"])
        elif factor.is_Symbol:
            operands.append(factor.name)
        elif factor.is_Add:
            operands.append(f"({_inline(factor)})")
        else:
            raise EmitError(f"cannot render factor {factor} (only polynomials in the program's variables)")
    return coeff, operands


def _product(coeff: float, operands: list[str]) -> str:
    """Inline expression for coeff * prod(operands)."""
    if not operands:
        return _literal(coeff)
    body = " * ".join(operands)
    if coeff == 1.0:
        return body
    if coeff == -1.0:
        return f"-{body}" if len(operands) == 1 else f"-({body})"
    return f"{body} * {_literal(coeff)}"


def _inline(expr: sp.Expr) -> str:
    """A plain Python expression (operators only): used for the rare nested sub-expressions."""
    terms = [_Term(*_split(t)) for t in _ordered_terms(expr)]
    parts = []
    for k, term in enumerate(terms):
        text = _product(abs(term.coeff), list(term.factors)) if k else _product(term.coeff, list(term.factors))
        if k:
            parts.append(("- " if term.coeff < 0 else "+ ") + text)
        else:
            parts.append(text)
    return " ".join(parts)


def _split(term: sp.Expr) -> tuple[float, tuple[str, ...]]:
    coeff, operands = _factors(term)
    return coeff, tuple(operands)


def _ordered_terms(expr: sp.Expr) -> list[sp.Expr]:
    """Terms of a sum in a deterministic order, constant term last."""
    terms = sorted(sp.Add.make_args(expr), key=default_sort_key)
    return [t for t in terms if t.free_symbols] + [t for t in terms if not t.free_symbols]


def assignment_lines(name: str, expr: sp.Expr) -> list[str]:
    """Python statements computing `name = expr` (see the module docstring for the rules)."""
    if not expr.free_symbols:
        return [f"{name} = {float_literal(_constant(expr))}"]
    terms = [_Term(*_split(t)) for t in _ordered_terms(expr)]
    if len(terms) == 1:
        return [f"{name} = {_product(terms[0].coeff, list(terms[0].factors))}"]
    first, second, rest = terms[0], terms[1], terms[2:]
    lines = [f"{name} = {_fresh_sum(first, second)}"]
    for term in rest:
        lines.append(f"{name}{_accumulate(term)}")
    return lines


def _fresh_sum(a: _Term, b: _Term) -> str:
    """An out-of-place expression for a + b (a new tensor, never an alias of an operand)."""
    if not b.factors:  # constant second term
        return f"{_product(a.coeff, list(a.factors))} + {_literal(b.coeff)}"
    if len(b.factors) >= 2:
        head = _product(a.coeff, list(a.factors))
        left = " * ".join(b.factors[:-1])
        return f"torch.addcmul({head}, {left}, {b.factors[-1]}, value={float_literal(b.coeff)})"
    head = _product(a.coeff, list(a.factors))
    if b.coeff == 1.0:
        return f"{head} + {b.factors[0]}"
    if b.coeff == -1.0:
        return f"{head} - {b.factors[0]}"
    return f"torch.add({head}, {b.factors[0]}, alpha={float_literal(b.coeff)})"


def _accumulate(term: _Term) -> str:
    """In-place update `acc += term` as a method call suffix."""
    if not term.factors:
        return f".add_({float_literal(term.coeff)})"
    if len(term.factors) == 1:
        if term.coeff == 1.0:
            return f".add_({term.factors[0]})"
        if term.coeff == -1.0:
            return f".sub_({term.factors[0]})"
        return f".add_({term.factors[0]}, alpha={float_literal(term.coeff)})"
    left = " * ".join(term.factors[:-1])
    return f".addcmul_({left}, {term.factors[-1]}, value={float_literal(term.coeff)})"


def fold_constants(program: Program) -> list[tuple[str, sp.Expr]]:
    """Temps and outputs in order, with numeric factors moved from temporaries into the terms that use them.

    * a constant temporary (e.g. ``sqrt(2)``) is substituted exactly and dropped;
    * a temporary ``c * x`` of one variable (``-h6``, ``3*k0``) is substituted and dropped;
    * a temporary ``c * x * y ...`` is computed without ``c``, and ``c`` is substituted into its uses;
    * a temporary sum is computed divided by the coefficient of its first term, which moves into its uses.

    A coefficient then joins the numeric factor of the product it appears in (the ``value=`` of an ``addcmul_``),
    so scaling costs no pass over memory. Substitutions are exact (SymPy numbers); each term's coefficient is
    rounded to float64 once.
    """
    values: dict[sp.Symbol, sp.Expr] = {}
    out = []
    output_names = set(program.output_names)
    for name, expr in list(program.temps) + list(program.outputs):
        expr = expr.xreplace(values) if values else expr
        if name in output_names:
            out.append((name, expr))
            continue
        symbol = sp.Symbol(name)
        if not expr.free_symbols or expr.is_Symbol:
            values[symbol] = expr
            continue
        if expr.is_Mul:
            coeff, rest = expr.as_independent(*sorted(expr.free_symbols, key=default_sort_key), as_Add=False)
            if coeff != 1:
                if rest.is_Symbol:
                    values[symbol] = expr
                    continue
                out.append((name, rest))
                values[symbol] = coeff * symbol
                continue
        if expr.is_Add:
            first = _ordered_terms(expr)[0]
            coeff = first.as_independent(*sorted(first.free_symbols, key=default_sort_key), as_Add=False)[0]
            if coeff != 1:  # a sum is computed with its first coefficient divided out
                out.append((name, sp.Add(*[t / coeff for t in sp.Add.make_args(expr)])))
                values[symbol] = coeff * symbol
                continue
        out.append((name, expr))
    return out


def program_lines(program: Program, constant_like: str | None = None) -> list[str]:
    """Statements evaluating every temporary and output of `program`, with `del` after each temporary's last use.

    Outputs that are constants are materialised as tensors shaped like the input named `constant_like`
    (``torch.full_like``), so every output of the program is a tensor.
    """
    statements = fold_constants(program)
    output_names = set(program.output_names)
    temp_names = {n for n, _ in statements if n not in output_names}
    last_use: dict[str, int] = {}
    for k, (_, expr) in enumerate(statements):
        for s in expr.free_symbols:
            if s.name in temp_names:
                last_use[s.name] = k
    unknown = {
        s.name for _, e in statements for s in e.free_symbols
    } - temp_names - set(program.inputs)
    if unknown:
        raise EmitError(f"program reads undefined names {sorted(unknown)}")
    dead_after: dict[int, list[str]] = {}
    for n, k in last_use.items():
        dead_after.setdefault(k, []).append(n)
    notes = _comments_on_kept(program, {name for name, _ in statements})
    lines: list[str] = []
    for k, (name, expr) in enumerate(statements):
        lines.extend(f"# {escape.python_comment(text)}" for text in notes.get(name, ()))
        if name in output_names and not expr.free_symbols:
            if constant_like is None:
                raise EmitError(f"output {name} is a constant and no input was named to shape it")
            lines.append(f"{name} = torch.full_like({constant_like}, {float_literal(_constant(expr))})")
        else:
            lines.extend(assignment_lines(name, expr))
        dead = sorted(dead_after.get(k, []), key=_natural_key)
        if dead:
            lines.append("del " + ", ".join(dead))
    unused = sorted(temp_names - set(last_use), key=_natural_key)
    if unused:
        raise EmitError(f"program computes temporaries it never reads: {unused}")
    return lines


def _comments_on_kept(program: Program, kept: set[str]) -> dict[str, list[str]]:
    """The program's comments moved onto the statements that are emitted (fold_constants drops some temps: a
    comment on a dropped one goes to the next statement that is kept)."""
    notes = dict(program.comments)
    out: dict[str, list[str]] = {}
    pending: list[str] = []
    for name, _ in list(program.temps) + list(program.outputs):
        if name in notes:
            pending.append(notes[name])
        if pending and name in kept:
            out[name], pending = pending, []
    return out


def _natural_key(name: str):
    head = name.rstrip("0123456789")
    tail = name[len(head):]
    return (head, int(tail) if tail else -1)
