"""C/C++ and CUDA targets of a Basis: a shared header (host and device maths) and CUDA kernels that use it.

Python holds the logic: it prints the four straight-line programs of codegen/plan.py as C statements over a
template type ``scalar_t`` (so one text serves float and double), and computes the constants and names. The
Jinja templates (templates/c_header.h.j2, templates/cuda_kernels.cu.j2) hold the layout.

Data layout shared by every target (the same as the torch module):

- pair vectors ``r[P, 3]``; weights ``w[P, G, N]`` with N = the Basis's channels (tied bases: N = 1, so a
  [P, C] weight tensor is the case G = C);
- the harmonics of one pair ``Y[N_HARMONICS]``, orders ascending, m = -l..l within an order;
- moments ``T[n_atoms, G, N_COORDS]``, coordinate ``n * N_HARMONICS + j`` = channel n, harmonic j, i.e. the
  Basis's ``coordinates`` order (channel-major, then l, then m);
- invariants ``I[n_atoms, G, N_INVARIANTS]`` in the Basis's ``invariants`` order.
"""

from __future__ import annotations

import sympy as sp

from cartinv.codegen import escape, plan, templating
from cartinv.codegen.naming import KERNELS, SCALAR_TYPES, c_identifier, kernel_symbol  # noqa: F401 (re-exported)
from cartinv.symbolic.basisfile import Basis


def c_comment_block(text: str) -> str:
    """The caller's header block as C comments: '//' and '/* */' text is kept, '#' comments become '//'."""
    text = text.rstrip("\n")
    lines = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("//"):
            stripped = stripped[2:]
        elif stripped.startswith("#"):
            stripped = stripped[1:]
        else:
            stripped = " " + line
        lines.append(f"//{escape.c_comment(stripped.rstrip())}")
    return "\n".join(lines)


def harmonics_stride(n_harmonics: int) -> int:
    """Padded stride of one pair's harmonics in the forward kernel's shared memory (odd: fewer bank conflicts)."""
    return n_harmonics if n_harmonics % 2 else n_harmonics + 1


# ----------------------------------------------------------------------------------------------------------
# Expressions -> C


def _literal(value: sp.Expr) -> str:
    return f"scalar_t({plan.float_literal(sp.N(value, 40))})"


def _is_negative(term: sp.Expr) -> bool:
    coeff, _ = term.as_coeff_Mul()
    return bool(coeff.is_negative)


def _factor_texts(factor: sp.Expr) -> list[str]:
    """One non-numeric factor of a product, as the list of C operands to multiply."""
    if factor.is_Symbol:
        return [factor.name]
    if factor.is_Add:
        return [f"({c_expression(factor)})"]
    if factor.is_Pow:
        base, exp = factor.args
        if not (exp.is_Integer and exp >= 2):
            raise plan.EmitError(f"only positive integer powers of variables can be printed, got {factor}")
        text = base.name if base.is_Symbol else f"({c_expression(base)})"
        return [text] * int(exp)
    raise plan.EmitError(f"cannot print {factor!r} ({type(factor).__name__}) as C")


def _product(expr: sp.Expr) -> str:
    factors = expr.as_ordered_factors() if expr.is_Mul else [expr]
    coefficient = sp.Mul(*[f for f in factors if f.is_number])
    pieces = [] if coefficient == 1 else [_literal(coefficient)]
    for f in factors:
        if not f.is_number:
            pieces.extend(_factor_texts(f))
    return "*".join(pieces) if pieces else _literal(coefficient)


def c_expression(expr: sp.Expr) -> str:
    """C text of a polynomial expression over scalar_t: numbers as scalar_t(literal), powers as products."""
    expr = sp.sympify(expr)
    if expr.is_number:
        return _literal(expr)
    if expr.is_Symbol:
        return expr.name
    if expr.is_Add:
        out = []
        for i, term in enumerate(expr.as_ordered_terms()):
            negative = _is_negative(term)
            text = _product(-term if negative else term)
            if i == 0:
                out.append(f"-{text}" if negative else text)
            else:
                out.append(f" - {text}" if negative else f" + {text}")
        return "".join(out)
    if expr.is_Mul or expr.is_Pow:
        return f"-{_product(-expr)}" if _is_negative(expr) else _product(expr)
    raise plan.EmitError(f"cannot print {expr!r} ({type(expr).__name__}) as C")


def program_statements(
    program: plan.Program,
    inputs: dict[str, str],
    outputs: dict[str, str],
    comments: dict[str, str] | None = None,
) -> list[str]:
    """C statements of a Program.

    inputs: program input name -> C expression to load it from (e.g. "T[3]"); inputs that are already C
    variables (function parameters) map to themselves and produce no load. Only inputs the program uses are
    loaded. outputs: program output name -> C lvalue (e.g. "I[0]"). comments: output name -> trailing comment.
    """
    comments = comments or {}
    used = set()
    for _, e in program.temps + program.outputs:
        used |= {s.name for s in e.free_symbols}
    unknown = used - set(inputs) - {name for name, _ in program.temps}
    if unknown:
        raise plan.EmitError(f"program uses symbols without a source: {sorted(unknown)}")
    lines = []
    for name in program.inputs:
        if name in used and inputs[name] != name:
            lines.append(f"const scalar_t {name} = {inputs[name]};")
    notes = dict(program.comments)
    for name, e in program.temps:
        if name in notes:
            lines.append(f"// {escape.c_comment(notes[name])}")
        lines.append(f"const scalar_t {name} = {c_expression(e)};")
    for name, e in program.outputs:
        note = f"  // {escape.c_comment(comments[name])}" if name in comments else ""
        lines.append(f"{outputs[name]} = {c_expression(e)};{note}")
    return lines


# ----------------------------------------------------------------------------------------------------------
# Basis -> targets


def _check_layout(basis: Basis) -> list[int]:
    """The sorted orders; verifies that the coordinates are channel-major blocks of the harmonics."""
    orders = sorted(set(basis.orders))
    expected = [(c, l, m) for c in range(basis.channels) for l in orders for m in range(-l, l + 1)]
    got = [(e["channel"], e["l"], e["m"]) for e in basis.coordinates]
    if got != expected:
        raise plan.EmitError("Basis coordinates are not in channel-major (channel, l, m) order")
    return orders


def header_context(basis: Basis, name: str, header: str) -> dict:
    """Everything the header template lays out: constants, names and the four function bodies."""
    orders = _check_layout(basis)
    ident = c_identifier(name)
    harmonic_names = plan.harmonic_names(orders)
    n_harmonics = len(harmonic_names)
    coord_names = [c["name"] for c in basis.coordinates]
    n_inv = len(basis.invariants)
    l_of = {f"Y{l}_{m + l}": (l, m) for l in orders for m in range(-l, l + 1)}

    h_prog = plan.harmonics_program(orders)
    harmonics_body = program_statements(
        h_prog,
        {n: n for n in h_prog.inputs},
        {n: f"Y[{j}]" for j, n in enumerate(harmonic_names)},
        {n: f"{n}: l = {l_of[n][0]}, m = {l_of[n][1]}" for n in harmonic_names},
    )
    hv_prog = plan.harmonics_vjp_program(orders)
    hv_inputs = {n: n for n in ("ux", "uy", "uz")}
    hv_inputs.update({f"g{n}": f"gY[{j}]" for j, n in enumerate(harmonic_names)})
    harmonics_vjp_body = program_statements(hv_prog, hv_inputs, {"gux": "gu[0]", "guy": "gu[1]", "guz": "gu[2]"})

    i_prog = plan.invariants_program(basis)
    inv_comments = {
        f"I_{k}": f"{inv['id']}: {inv.get('index_notation') or inv['einsum']}" for k, inv in enumerate(basis.invariants)
    }
    invariants_body = program_statements(
        i_prog,
        {n: f"T[{j}]" for j, n in enumerate(coord_names)},
        {f"I_{k}": f"I[{k}]" for k in range(n_inv)},
        inv_comments,
    )
    iv_prog = plan.invariants_vjp_program(basis)
    iv_inputs = {n: f"T[{j}]" for j, n in enumerate(coord_names)}
    iv_inputs.update({f"gI_{k}": f"gI[{k}]" for k in range(n_inv)})
    invariants_vjp_body = program_statements(
        iv_prog,
        iv_inputs,
        {f"g{n}": f"gT[{j}]" for j, n in enumerate(coord_names)},
        {f"g{n}": f"d/d{n}" for n in coord_names},
    )
    return {
        "header": c_comment_block(header),
        "name": name,
        "basis_name": basis.name,
        "basis_hash": basis.content_hash(),
        "namespace": ident,
        "guard": f"CARTINV_{ident.upper()}_H",
        "orders": orders,
        "l_max": max(orders),
        "channels": basis.channels,
        "n_harmonics": n_harmonics,
        "harmonics_stride": harmonics_stride(n_harmonics),
        "n_coords": basis.channels * n_harmonics,
        "n_invariants": n_inv,
        "invariant_ids": [inv["id"] for inv in basis.invariants],
        "coordinate_names": coord_names,
        "harmonic_names": harmonic_names,
        "harmonics_body": harmonics_body,
        "harmonics_vjp_body": harmonics_vjp_body,
        "invariants_body": invariants_body,
        "invariants_vjp_body": invariants_vjp_body,
        "op_counts": {
            "harmonics": h_prog.op_count(),
            "harmonics_vjp": hv_prog.op_count(),
            "invariants": i_prog.op_count(),
            "invariants_vjp": iv_prog.op_count(),
        },
    }


def kernels_context(basis: Basis, name: str, header: str) -> dict:
    ident = c_identifier(name)
    return {
        "header": c_comment_block(header),
        "name": name,
        "basis_name": basis.name,
        "namespace": ident,
        "header_file": f"{name}.h",
        "scalar_types": [(sfx, SCALAR_TYPES[sfx]) for sfx in ("f32", "f64")],
        "symbols": {k: {sfx: kernel_symbol(name, k, sfx) for sfx in SCALAR_TYPES} for k in KERNELS},
    }


def render_c_targets(basis: Basis, name: str, header: str) -> dict[str, str]:
    """File name -> text of the C/C++/CUDA targets of a Basis: '<name>.h' and '<name>.cu'.

    `header` is the comment block (Basis name, hash, regenerate command) every generated file starts with.
    """
    env = templating.environment()
    h_text = env.get_template("c_header.h.j2").render(**header_context(basis, name, header))
    cu_text = env.get_template("cuda_kernels.cu.j2").render(**kernels_context(basis, name, header))
    return {f"{name}.h": h_text, f"{name}.cu": cu_text}
