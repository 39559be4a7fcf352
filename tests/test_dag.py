"""The contraction-DAG evaluation plan (codegen/dag.py) and the safe formula reader it relies on.

Values and derivatives are checked against the Basis formulas themselves (SymPy, lambdified), so the DAG is
tested independently of the generated code that uses it.
"""

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from cartinv.codegen import dag, plan
from cartinv.runtime.kernels.load import checked_in_basis
from cartinv.symbolic.basisfile import Basis
from cartinv.symbolic.formulas import FormulaSyntaxError, parse_formula

from conftest import derived

STANDARD = ["lmax2_deg4", "lmax3_deg2", "lmax3_deg4", "lmax4_deg4", "hiphop_lmax3_deg4", "lmax3_flexible"]


def evaluate_program(program: plan.Program, values: dict) -> dict:
    """Run a straight-line Program on float64 arrays (plain Python arithmetic on numpy values)."""
    env = {sp.Symbol(k): v for k, v in values.items()}
    for name, expr in program.temps:
        env[sp.Symbol(name)] = sp.lambdify(sorted(expr.free_symbols, key=str), expr, "numpy")(
            *[env[s] for s in sorted(expr.free_symbols, key=str)]
        )
    out = {}
    for name, expr in program.outputs:
        syms = sorted(expr.free_symbols, key=str)
        out[name] = sp.lambdify(syms, expr, "numpy")(*[env[s] for s in syms]) if syms else float(expr)
    return out


def basis_by_name(name):
    return derived((1, 2), degree=3, channels=2) if name == "coupled" else checked_in_basis(name)


@pytest.mark.parametrize("name", STANDARD + ["coupled"])
def test_programs_equal_formulas_and_their_gradients(name):
    """I = formula and gT = sum_k gI_k dI_k/dT (SymPy derivatives of the formulas), to 1e-12 relative."""
    basis = basis_by_name(name)
    coords = [sp.Symbol(c["name"]) for c in basis.coordinates]
    formulas = plan.invariant_exprs(basis)
    rng = np.random.default_rng(11)
    point = {c.name: rng.normal(size=5) for c in coords}
    grads = {f"gI_{k}": rng.normal(size=5) for k in range(len(formulas))}
    got = evaluate_program(plan.invariants_program(basis), point)
    for k, f in enumerate(formulas):
        want = sp.lambdify(coords, f, "numpy")(*[point[c.name] for c in coords])
        np.testing.assert_allclose(got[f"I_{k}"], want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    got = evaluate_program(plan.invariants_vjp_program(basis), point | grads)
    for c in coords:
        deriv = sum(sp.Symbol(f"gI_{k}") * sp.diff(f, c) for k, f in enumerate(formulas))
        syms = coords + [sp.Symbol(g) for g in grads]
        want = sp.lambdify(syms, deriv, "numpy")(*[point[c.name] for c in coords], *grads.values())
        scale = max(np.abs(want).max(), 1.0)
        np.testing.assert_allclose(got[f"g{c.name}"], want, rtol=1e-12, atol=1e-12 * scale, err_msg=c.name)


def test_every_graph_invariant_runs_through_the_dag():
    basis = checked_in_basis("lmax3_flexible")
    expanded, contracted = plan.evaluation_split(basis)
    assert expanded == () and contracted == tuple(range(len(basis.invariants)))


def test_dag_is_far_smaller_than_expanded_polynomials():
    """The degree-10 invariant of T3 alone: ~19,000 operations expanded, a few hundred as contractions."""
    basis = checked_in_basis("lmax3_flexible")
    k = next(i for i, inv in enumerate(basis.invariants) if inv["degree"] == 10)
    alone = dag.invariant_dag(basis, [k]).op_count()
    assert alone * 20 < sp.count_ops(plan.invariant_exprs(basis)[k])
    # whole programs (the expanded-polynomial plan needed 9,199 forward and 31,631 backward operations)
    assert plan.invariants_program(basis).op_count() < 1500
    assert plan.invariants_vjp_program(basis).op_count() < 3500


def test_entries_are_shared_across_invariants():
    """Invariants built in one DAG reuse each other's partial contractions."""
    basis = checked_in_basis("lmax3_deg4")
    n = len(basis.invariants)
    together = len(dag.invariant_dag(basis, range(n)).statements)
    apart = sum(len(dag.invariant_dag(basis, [k]).statements) for k in range(n))
    assert together < apart / 2


def tampered(basis: Basis, k: int, formula: str) -> Basis:
    data = copy.deepcopy(basis.data)
    data["invariants"][k]["formula"] = formula
    return Basis(data)


def test_formula_that_disagrees_with_its_graph_is_refused():
    basis = checked_in_basis("lmax2_deg4")
    k = next(i for i, inv in enumerate(basis.invariants) if inv["degree"] == 3)
    inv = basis.invariants[k]
    # the same polynomial with one coefficient changed: a different invariant than the graph says
    wrong = inv["formula"].replace("sqrt(6)", "sqrt(5)", 1)
    assert wrong != inv["formula"]
    with pytest.raises(ValueError, match=f"invariant {inv['id']}: its contraction .* and its formula disagree"):
        plan.invariants_dag(tampered(basis, k, wrong))


def test_einsum_that_disagrees_with_its_orders_is_refused():
    basis = checked_in_basis("lmax2_deg4")
    builder = dag.DagBuilder(basis)
    with pytest.raises(ValueError, match="does not match orders"):
        builder.add(0, "ab,ab->a", [2, 2], [0, 0])
    with pytest.raises(ValueError, match="not a full contraction"):
        builder.add(0, "ab,ac->", [2, 2], [0, 0])
    with pytest.raises(ValueError, match="not a full contraction"):
        builder.add(0, "aa->", [2], [0])
    with pytest.raises(ValueError, match="no coordinates for channel 0, order 3"):
        builder.add(0, "abc,abc->", [3, 3], [0, 0])


# --- formula reader -------------------------------------------------------------------------------------


SYMS = {n: sp.Symbol(n) for n in ("x", "y", "z")}


def test_parse_formula_reads_printed_polynomials():
    expr = sp.sqrt(6) * SYMS["x"] ** 2 * SYMS["y"] / 4 - 3 * SYMS["z"] ** 3 + sp.Rational(7, 3) - SYMS["x"] * SYMS["z"]
    assert parse_formula(sp.sstr(expr, order="lex"), SYMS) == expr
    assert parse_formula("-(x + 2*y)*z", SYMS) == -(SYMS["x"] + 2 * SYMS["y"]) * SYMS["z"]
    assert parse_formula("x/sqrt(3) - y/(2*sqrt(5))", SYMS) == SYMS["x"] / sp.sqrt(3) - SYMS["y"] / (2 * sp.sqrt(5))


def test_parse_formula_reads_long_sums_linearly():
    basis = checked_in_basis("lmax3_flexible")
    inv = next(i for i in basis.invariants if i["degree"] == 10)
    local = {c["name"]: sp.Symbol(c["name"]) for c in basis.coordinates}
    expr = parse_formula(inv["formula"], local)
    assert len(expr.args) > 1000 and expr.free_symbols <= set(local.values())
    # the same expression as SymPy's own reader gives, on a prefix of whole terms (SymPy's is quadratic in length)
    prefix = inv["formula"][:3000].rsplit(" + ", 1)[0]
    assert parse_formula(prefix, local) == sp.parse_expr(prefix, local_dict=local)


@pytest.mark.parametrize(
    "text, message",
    [
        ("__import__('os').system('true')", "unsupported element"),
        ("x.real", "unsupported element"),
        ("x**y", "exponent y is not a non-negative integer"),
        ("x**-1", "exponent -1 is not a non-negative integer"),
        ("x/y", "division by y: only non-zero constants"),
        ("x/0", "division by 0: only non-zero constants"),
        ("sqrt(x)", "only non-negative rationals"),
        ("sqrt(-2)*x", "only non-negative rationals"),
        ("1.5*x", "unsupported element"),
        ("w + x", "unknown symbol 'w'"),
        ("x +", "not a formula"),
    ],
)
def test_parse_formula_rejects_anything_but_polynomials(text, message):
    with pytest.raises(FormulaSyntaxError, match=message):
        parse_formula(text, SYMS)


def test_malformed_formula_in_a_basis_names_the_invariant():
    basis = checked_in_basis("lmax2_deg4")
    bad = tampered(basis, 1, "T1_0**2 + open('/etc/passwd')")
    with pytest.raises(ValueError, match=f"invariant {basis.invariants[1]['id']}: unsupported element"):
        plan.invariant_exprs(bad)
    assert json.dumps(basis.data) != json.dumps(bad.data)


def test_generated_code_says_what_each_block_of_temporaries_computes():
    """Every contraction step is labelled in the programs (and so in the generated torch and C code)."""
    basis = checked_in_basis("lmax3_deg4")
    program = plan.invariants_program(basis)
    notes = [text for _, text in program.comments]
    for inv in basis.invariants:
        if inv["degree"] >= 2:
            assert any(text.startswith(f"{inv['id']} ") or text.startswith(f"{inv['id']},") for text in notes), inv["id"]
    assert all(name in {n for n, _ in program.temps} for name, _ in program.comments)
    vjp = plan.invariants_vjp_program(basis)
    assert any("reverse sweep" in text for _, text in vjp.comments)
    root = Path(__file__).resolve().parent.parent / "generated" / "lmax2_deg4"
    torch_source = (root / "lmax2_deg4_torch.py").read_text()
    header = (root / "lmax2_deg4.h").read_text()
    assert "    # I4, step 1 of 2: S1[b] = T1[a] T2[ab]\n" in torch_source
    assert "    // I4, step 1 of 2: S1[b] = T1[a] T2[ab]\n" in header


def test_codegen_never_imports_torch(tmp_path):
    """Deriving a basis and generating every target of it works in a process that never imports torch."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from cartinv.codegen.generate import generate\n"
        "from cartinv.symbolic.select import BasisRequest, derive_basis\n"
        "basis = derive_basis(BasisRequest(orders=(0, 1, 2), degree=3))\n"
        "paths = generate(basis, Path(sys.argv[1]))\n"
        "assert {p.suffix for p in paths} == {'.py', '.h', '.cu', '.json'}, paths\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
