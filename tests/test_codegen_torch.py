"""The generated PyTorch module: values against the SymPy formulas and a naive Cartesian einsum reference,
hand-generated VJPs against finite differences (gradcheck, gradgradcheck), forces, invariance, determinism."""

import importlib.util
import itertools
import math
import os

import numpy as np
import pytest
import sympy as sp
import torch

from cartinv.codegen import emit_torch, plan
from cartinv.codegen.generate import generate, render_files
from cartinv.symbolic import stf
from cartinv.runtime.kernels import torch_core

from conftest import derived
from helpers import random_rotation

RTOL = 1e-12


def import_generated(folder, name):
    spec = importlib.util.spec_from_file_location(f"test_generated_{name}", folder / f"{name}_torch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tied(tmp_path_factory):
    """lmax3_deg4 (one channel, 13 invariants): (Basis, generated module)."""
    basis = derived((0, 1, 2, 3), degree=4)
    folder = tmp_path_factory.mktemp("gen") / basis.name
    generate(basis, folder)
    return basis, import_generated(folder, basis.name)


@pytest.fixture(scope="module")
def coupled(tmp_path_factory):
    """Orders 1, 2 with two coupled channels up to degree 3 (no l = 0 block): (Basis, generated module)."""
    basis = derived((1, 2), degree=3, channels=2)
    folder = tmp_path_factory.mktemp("gen") / basis.name
    generate(basis, folder)
    return basis, import_generated(folder, basis.name)


# --- references -------------------------------------------------------------------------------------------


def environment(rng, n_atoms=7, n_pairs=40, empty=(2, 5), groups=3, channels=1, dtype=torch.float64):
    """Random pairs (unsorted centres) leaving the atoms in `empty` without neighbours."""
    allowed = [a for a in range(n_atoms) if a not in empty]
    centers = torch.tensor(rng.choice(allowed, size=n_pairs), dtype=torch.int64)
    r = torch.tensor(rng.normal(size=(n_pairs, 3)), dtype=dtype)
    shape = (n_pairs, groups) if channels == 1 else (n_pairs, groups, channels)
    w = torch.tensor(rng.normal(size=shape), dtype=dtype)
    return r, centers, w, n_atoms


def reference_moments(basis, r, centers, w, n_atoms):
    """T [n_atoms, G, N_COORDS] with numpy: per coordinate (channel n, l, m) sum_p w[p, g, n] Y_{l,m}(r_p)."""
    r, centers, w = r.detach().numpy(), centers.numpy(), w.detach().numpy()
    w = w if w.ndim == 3 else w[:, :, None]
    ys = {l: stf.y_coordinates(l, r) for l in basis.orders}
    cols = []
    for c in basis.coordinates:
        contrib = w[:, :, c["channel"]] * ys[c["l"]][:, c["m"] + c["l"], None]
        col = np.zeros((n_atoms, w.shape[1]))
        np.add.at(col, centers, contrib)
        cols.append(col)
    return np.stack(cols, axis=-1)


def block_slices(basis):
    out, start = {}, 0
    for c in basis.coordinates:
        key = (c["channel"], c["l"])
        if key not in out:
            out[key] = slice(start, start + 2 * c["l"] + 1)
        start += 1
    return out


def einsum_invariants(basis, T):
    """Invariants by building full Cartesian STF tensors and contracting them with each invariant's einsum."""
    blocks = {key: stf.to_cartesian(key[1], T[..., sl]) for key, sl in block_slices(basis).items()}
    eps = np.zeros((3, 3, 3))  # the Levi-Civita vertex of pseudoscalars (channel -1, order 3)
    for (a, b, c), sign in (((0, 1, 2), 1), ((1, 2, 0), 1), ((2, 0, 1), 1), ((0, 2, 1), -1), ((2, 1, 0), -1),
                            ((1, 0, 2), -1)):
        eps[a, b, c] = sign
    blocks[(-1, 3)] = eps
    cols = []
    for inv in basis.invariants:
        ops = [blocks[(c, l)] for c, l in zip(inv["channels"], inv["orders"])]
        if len(ops) == 1 and inv["orders"] == [0]:
            cols.append(ops[0])
            continue
        lhs, rhs = inv["einsum"].split("->")
        subs = ",".join("..." + s for s in lhs.split(","))
        cols.append(np.einsum(f"{subs}->...{rhs}", *ops))
    return np.stack(cols, axis=-1)


def formula_invariants(basis, T):
    """Invariants by evaluating the Basis file's SymPy formula text (lambdified, numpy float64)."""
    syms = [sp.Symbol(c["name"]) for c in basis.coordinates]
    exprs = plan.invariant_exprs(basis)
    args = [T[..., j] for j in range(T.shape[-1])]
    cols = [np.broadcast_to(np.asarray(sp.lambdify(syms, e, "numpy")(*args), dtype=float), T.shape[:-1])
            for e in exprs]
    return np.stack(cols, axis=-1)


def assert_columns_close(got, ref, rtol=RTOL):
    """Column by column: |got - ref| <= rtol * max |ref column| (and the columns are not trivially zero)."""
    got = np.asarray(got)
    assert got.shape == ref.shape
    for k in range(ref.shape[-1]):
        scale = np.abs(ref[..., k]).max()
        err = np.abs(got[..., k] - ref[..., k]).max()
        assert err <= rtol * max(scale, 1e-300), f"column {k}: error {err:.3e} vs scale {scale:.3e}"


# --- the emitter ------------------------------------------------------------------------------------------


def run_lines(lines, inputs, outputs):
    env = {"torch": torch, **inputs}
    exec(compile("\n".join(lines), "<emitted>", "exec"), env)
    return [env[o] for o in outputs]


def test_emitter_folds_constants_and_expands_powers():
    x, y, z = sp.symbols("x y z")
    prog = plan.Program(
        inputs=("x", "y", "z"),
        temps=(("c0", sp.sqrt(2)), ("c1", 3 * sp.Symbol("c0")), ("t0", x**3 * y), ("t1", (x - z) ** 2)),
        outputs=(
            ("o0", sp.Symbol("c1") * sp.Symbol("t0") - x / 7 + sp.Rational(1, 3)),
            ("o1", sp.Symbol("t1") * z + y),
            ("o2", sp.Integer(5)),
            ("o3", x),
        ),
    )
    lines = emit_torch.program_lines(prog, constant_like="x")
    text = "\n".join(lines)
    assert "sqrt" not in text and "**" not in text and "c0" not in text and "c1" not in text
    assert "x * x * x" in text  # integer powers as repeated multiplication
    assert "4.242640687119285" in text  # 3*sqrt(2) folded into the coefficient, float64 shortest repr
    assert "del t0" in text and "del t1" in text
    rng = np.random.default_rng(0)
    vals = {n: torch.tensor(rng.normal(size=5)) for n in "xyz"}
    o0, o1, o2, o3 = run_lines(lines, vals, ["o0", "o1", "o2", "o3"])
    xv, yv, zv = (vals[n].numpy() for n in "xyz")
    np.testing.assert_allclose(o0, 3 * math.sqrt(2) * xv**3 * yv - xv / 7 + 1 / 3, rtol=1e-14)
    np.testing.assert_allclose(o1, (xv - zv) ** 2 * zv + yv, rtol=1e-14)
    assert isinstance(o2, torch.Tensor) and o2.shape == (5,) and torch.all(o2 == 5)
    assert o3 is vals["x"]


def test_emitter_accumulator_never_aliases_an_input():
    x, y = sp.symbols("x y")
    prog = plan.Program(inputs=("x", "y"), temps=(), outputs=(("o", x + y + x * y + 2 * y),))
    lines = emit_torch.program_lines(prog)
    xv, yv = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 5.0])
    (o,) = run_lines(lines, {"x": xv, "y": yv}, ["o"])
    assert torch.equal(xv, torch.tensor([1.0, 2.0])) and torch.equal(yv, torch.tensor([3.0, 5.0]))
    assert torch.allclose(o, xv + yv + xv * yv + 2 * yv)
    assert any("addcmul_" in line or "add_" in line for line in lines)


def test_emitter_rejects_non_polynomials():
    x = sp.Symbol("x")
    prog = plan.Program(inputs=("x",), temps=(), outputs=(("o", sp.sqrt(x)),))
    with pytest.raises(emit_torch.EmitError, match="cannot render"):
        emit_torch.program_lines(prog)


def test_emitted_programs_match_sympy(tied):
    basis, _ = tied
    rng = np.random.default_rng(1)
    for prog in (plan.harmonics_program(basis.orders), plan.harmonics_vjp_program(basis.orders)):
        lines = emit_torch.program_lines(prog, constant_like="ux")
        vals = {n: rng.normal(size=6) for n in prog.inputs}
        got = run_lines(lines, {n: torch.tensor(v) for n, v in vals.items()}, list(prog.output_names))
        subs = {}
        for name, expr in prog.temps:
            subs[sp.Symbol(name)] = expr.xreplace(subs)
        for (name, expr), g in zip(prog.outputs, got):
            f = sp.lambdify([sp.Symbol(n) for n in prog.inputs], expr.xreplace(subs), "numpy")
            ref = np.broadcast_to(f(*[vals[n] for n in prog.inputs]), (6,))
            np.testing.assert_allclose(g.numpy(), ref, rtol=1e-13, atol=1e-13, err_msg=name)


# --- values -----------------------------------------------------------------------------------------------


def test_module_constants(tied, coupled):
    basis, mod = tied
    assert mod.BASIS_NAME == basis.name and mod.BASIS_HASH == basis.content_hash()
    assert mod.N_INVARIANTS == len(basis.invariants) == 13
    assert mod.INVARIANT_IDS == tuple(i["id"] for i in basis.invariants)
    assert mod.COORDINATE_NAMES == tuple(c["name"] for c in basis.coordinates)
    assert mod.N_COORDS == 16 and mod.ORDERS == (0, 1, 2, 3) and mod.CHANNELS == 1
    cb, cm = coupled
    assert cm.CHANNELS == 2 and cm.N_HARMONICS == 8 and cm.N_COORDS == 16 and cm.ORDERS == (1, 2)
    source = open(mod.__file__).read()
    import_lines = [line.strip() for line in source.splitlines() if line.strip().startswith(("import ", "from "))]
    # torch, and the basis-independent core: cartinv's, or the copy `cartinv export` puts beside the module
    assert import_lines == ["import torch", "from cartinv.runtime.kernels import torch_core as _core",
                            "import cartinv_torch_core as _core"]


def test_torch_core_is_standalone():
    """The core is copied next to exported modules: it may import torch and the standard library only."""
    import ast
    import sys

    tree = ast.parse(open(torch_core.__file__).read())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {name.split(".")[0] for name in names} - set(sys.stdlib_module_names) == {"torch"}


def test_core_api_version_matches_codegen():
    """Generated modules are written against the API the core implements; a mismatch is refused on import."""
    from cartinv.codegen.generate import TORCH_CORE_API

    assert TORCH_CORE_API == torch_core.API_VERSION
    with pytest.raises(ImportError, match="regenerate"):
        torch_core.bind(api=torch_core.API_VERSION + 1, module="m")


def test_harmonics_match_stf(tied):
    basis, mod = tied
    rng = np.random.default_rng(2)
    r = rng.normal(size=(50, 3))
    ref = np.concatenate([stf.y_coordinates(l, r) for l in basis.orders], axis=1)
    got = mod.harmonics(mod.unit_vectors(torch.tensor(r)))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("which", ["tied", "coupled"])
def test_invariants_match_formulas_and_einsum(which, request):
    basis, mod = request.getfixturevalue(which)
    rng = np.random.default_rng(3)
    channels = basis.channels
    r, centers, w, n_atoms = environment(rng, channels=channels)
    T = mod.moments(r, centers, w, n_atoms)
    T_ref = reference_moments(basis, r, centers, w, n_atoms)
    assert_columns_close(T.numpy(), T_ref)
    for atom in (2, 5):  # atoms without neighbours: zero moments, zero invariants
        assert torch.all(T[atom] == 0)
    I = mod.InvariantModel()(r, centers, w, n_atoms)
    assert I.shape == (n_atoms, w.shape[1], len(basis.invariants))
    assert torch.all(I[[2, 5]] == 0)
    assert_columns_close(I.numpy(), einsum_invariants(basis, T_ref))
    assert_columns_close(I.numpy(), formula_invariants(basis, T_ref))
    # invariants() also takes any leading shape
    T_random = rng.normal(size=(4, 5, mod.N_COORDS))
    assert_columns_close(mod.invariants(torch.tensor(T_random)).numpy(), einsum_invariants(basis, T_random))


def test_chunked_rows_equal_whole(tied, monkeypatch):
    basis, mod = tied
    rng = np.random.default_rng(4)
    T = torch.tensor(rng.normal(size=(1000, mod.N_COORDS)))
    gI = torch.tensor(rng.normal(size=(1000, mod.N_INVARIANTS)))
    whole, whole_vjp = mod.invariants(T), mod.invariants_vjp(T, gI)
    T_grad = T.clone().requires_grad_(True)
    (whole_auto,) = torch.autograd.grad(mod.invariants(T_grad), T_grad, gI)
    monkeypatch.setattr(torch_core, "CHUNK_ROWS_CPU", 97)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):  # serial chunks, and chunks on the thread pool
            torch.set_num_threads(n)
            assert torch.allclose(mod.invariants(T), whole, rtol=1e-14, atol=0)
            assert torch.allclose(mod.invariants_vjp(T, gI), whole_vjp, rtol=1e-14, atol=1e-14)
    finally:
        torch.set_num_threads(threads)
    # recorded by autograd: chunks concatenated, gradients through every chunk
    (chunked_auto,) = torch.autograd.grad(mod.invariants(T_grad), T_grad, gI)
    assert torch.allclose(chunked_auto, whole_auto, rtol=1e-13, atol=1e-13)
    assert torch.allclose(chunked_auto, whole_vjp, rtol=1e-12, atol=1e-12)


def _run_in_child(fn):
    import multiprocessing

    proc = multiprocessing.get_context("fork").Process(target=fn)
    proc.start()
    proc.join(timeout=120)
    alive = proc.is_alive()
    if alive:
        proc.kill()
    return alive, proc.exitcode


def test_thread_pool_survives_fork(tied, monkeypatch):
    """A forked child (e.g. a DataLoader worker) builds its own chunk pool instead of waiting on dead threads."""
    _, mod = tied
    monkeypatch.setattr(torch_core, "CHUNK_ROWS_CPU", 64)
    T = torch.tensor(np.random.default_rng(14).normal(size=(1000, mod.N_COORDS)))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ref = mod.invariants(T)  # creates the pool in this process

        def child():
            torch.set_num_threads(2)
            os._exit(0 if torch.allclose(mod.invariants(T), ref, rtol=1e-14, atol=0) else 1)

        assert _run_in_child(child) == (False, 0)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("max_padding", [0.0, 2.0, math.inf])
def test_padding_layouts_agree(tied, max_padding):
    """One bucket (every atom padded to the largest count) and power-of-two buckets give the same moments."""
    basis, mod = tied
    rng = np.random.default_rng(5)
    n_atoms = 9
    counts = [0, 1, 7, 2, 0, 13, 3, 4, 1]
    centers = torch.tensor(rng.permutation(np.repeat(np.arange(n_atoms), counts)))
    r = torch.tensor(rng.normal(size=(len(centers), 3)))
    w = torch.tensor(rng.normal(size=(len(centers), 2)))
    plan_ = mod.SegmentPlan(centers, n_atoms, max_padding)
    caps = [n for _, n in plan_.buckets]
    if max_padding == math.inf:
        assert plan_.buckets == ((n_atoms, 13),)
    elif max_padding == 0.0:
        assert caps == [1, 2, 3, 4, 7, 14]  # counts 0/1, 2, 3, 4, 7, 13 (13 rounds up to a multiple of 2)
        assert [mod.bucket_capacity(c) for c in (0, 1, 8, 9, 17, 30, 33, 52, 100)] == [1, 1, 8, 10, 20, 32, 40, 56, 112]
    T = mod.moments(r, centers, w, n_atoms, plan_)
    assert_columns_close(T.numpy(), reference_moments(basis, r, centers, w, n_atoms))


def test_empty_inputs(tied, coupled):
    _, mod = tied
    r = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True)
    w = torch.zeros(0, 4, dtype=torch.float64, requires_grad=True)
    centers = torch.zeros(0, dtype=torch.int64)
    I = mod.InvariantModel()(r, centers, w, 3)
    assert I.shape == (3, 4, 13) and torch.all(I == 0)
    I.sum().backward()
    assert r.grad.shape == (0, 3)
    assert mod.InvariantModel()(r, centers, w, 0).shape == (0, 4, 13)
    _, cm = coupled
    w3 = torch.zeros(0, 2, 2, dtype=torch.float64)
    assert cm.InvariantModel()(r.detach(), centers, w3, 2).shape == (2, 2, cm.N_INVARIANTS)


def test_float32(tied):
    basis, mod = tied
    rng = np.random.default_rng(6)
    r, centers, w, n_atoms = environment(rng)
    I64 = mod.InvariantModel()(r, centers, w, n_atoms)
    I32 = mod.InvariantModel()(r.float(), centers.int(), w.float(), n_atoms)
    assert I32.dtype == torch.float32
    scale = I64.abs().amax(dim=(0, 1))
    assert torch.all((I32.double() - I64).abs().amax(dim=(0, 1)) <= 1e-5 * scale)


def test_weight_shapes(tied, coupled):
    _, mod = tied
    rng = np.random.default_rng(7)
    r, centers, w, n_atoms = environment(rng)
    model = mod.InvariantModel()
    assert torch.equal(model(r, centers, w, n_atoms), model(r, centers, w[:, :, None], n_atoms))
    with pytest.raises(ValueError, match="weights must have shape"):
        model(r, centers, w[:, :, None].expand(-1, -1, 2), n_atoms)
    _, cm = coupled
    with pytest.raises(ValueError, match=r"\[P, G, 2\]"):
        cm.InvariantModel()(r, centers, w, n_atoms)


# --- derivatives ------------------------------------------------------------------------------------------


def test_vjps_match_autograd(tied):
    """The generated VJP programs equal autograd through the forward programs."""
    basis, mod = tied
    rng = np.random.default_rng(8)
    u = torch.tensor(rng.normal(size=(30, 3)), requires_grad=True)
    gY = torch.tensor(rng.normal(size=(30, mod.N_HARMONICS)))
    (auto,) = torch.autograd.grad(mod.harmonics(u), u, gY)
    assert torch.allclose(mod.harmonics_vjp(u.detach(), gY), auto, rtol=1e-12, atol=1e-12)
    T = torch.tensor(rng.normal(size=(30, mod.N_COORDS)), requires_grad=True)
    gI = torch.tensor(rng.normal(size=(30, mod.N_INVARIANTS)))
    (auto,) = torch.autograd.grad(mod.invariants(T), T, gI)
    assert torch.allclose(mod.invariants_vjp(T.detach(), gI), auto, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("which", ["tied", "coupled"])
@pytest.mark.parametrize("max_padding", [0.0, math.inf])
def test_gradcheck_and_gradgradcheck(which, max_padding, request):
    basis, mod = request.getfixturevalue(which)
    rng = np.random.default_rng(9)
    r, centers, w, n_atoms = environment(rng, n_atoms=4, n_pairs=8, empty=(1,), groups=2, channels=basis.channels)
    r.requires_grad_(True)
    w.requires_grad_(True)
    model = mod.InvariantModel(max_padding=max_padding)
    assert (len(mod.SegmentPlan(centers, n_atoms, max_padding).buckets) == 1) == (max_padding == math.inf)

    def f(r_, w_):
        return model(r_, centers, w_, n_atoms)

    assert torch.autograd.gradcheck(f, (r, w), eps=1e-6, atol=1e-8, rtol=1e-6)
    # fast mode: the Jacobian of the backward pass against finite differences along random directions
    assert torch.autograd.gradgradcheck(f, (r, w), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


@pytest.mark.parametrize("max_padding", [0.0, math.inf])
def test_moments_vjp(coupled, max_padding):
    basis, mod = coupled
    rng = np.random.default_rng(13)
    r, centers, w, n_atoms = environment(rng, n_atoms=5, n_pairs=12, empty=(3,), groups=2, channels=2)
    plan_ = mod.SegmentPlan(centers, n_atoms, max_padding)
    gT = torch.tensor(rng.normal(size=(n_atoms, 2, mod.N_COORDS)))
    r_, w_ = r.clone().requires_grad_(True), w.clone().requires_grad_(True)
    auto = torch.autograd.grad(mod.moments(r_, centers, w_, n_atoms, plan_), (r_, w_), gT)
    gr, gw = mod.moments_vjp(r, centers, w, n_atoms, gT, plan_)
    assert torch.allclose(gr, auto[0], rtol=1e-12, atol=1e-12) and torch.allclose(gw, auto[1], rtol=1e-12, atol=1e-12)
    r_, w_, gT_ = r[:6].clone().requires_grad_(True), w[:6].clone().requires_grad_(True), gT.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, g: mod.moments_vjp(a, centers[:6], b, n_atoms, g), (r_, w_, gT_))


def test_invariants_function_double_backward(tied):
    _, mod = tied
    rng = np.random.default_rng(10)
    T = torch.tensor(rng.normal(size=(3, mod.N_COORDS)), requires_grad=True)
    assert torch.autograd.gradcheck(mod.Invariants.apply, (T,))
    assert torch.autograd.gradgradcheck(mod.Invariants.apply, (T,))
    u = torch.tensor(rng.normal(size=(3, 3)), requires_grad=True)
    assert torch.autograd.gradgradcheck(mod.Harmonics.apply, (u,))


def test_forces_are_minus_finite_difference_gradient(tied):
    """E(x) = sum_{i,c,k} a[c,k] I[i,c,k] with pair weights from a smooth radial function of |r_ij|."""
    basis, mod = tied
    rng = np.random.default_rng(11)
    n_atoms, channels = 6, 3
    x = torch.tensor(rng.uniform(0, 2.5, size=(n_atoms, 3)), requires_grad=True)
    pairs = torch.tensor([(i, j) for i in range(n_atoms) for j in range(n_atoms) if i != j and i != 4])
    widths = torch.tensor([0.7, 1.0, 1.6], dtype=torch.float64)
    coeff = torch.tensor(rng.normal(size=(channels, mod.N_INVARIANTS)))
    model = mod.InvariantModel()

    def energy(pos):
        r = pos[pairs[:, 1]] - pos[pairs[:, 0]]
        d = torch.linalg.vector_norm(r, dim=1, keepdim=True)
        w = torch.exp(-((d / widths) ** 2))
        return (model(r, pairs[:, 0], w, n_atoms) * coeff).sum()

    (grad,) = torch.autograd.grad(energy(x), x)
    forces = -grad
    h = 1e-5
    fd = torch.zeros_like(x)
    with torch.no_grad():
        for a, k in itertools.product(range(n_atoms), range(3)):
            xp, xm = x.clone(), x.clone()
            xp[a, k] += h
            xm[a, k] -= h
            fd[a, k] = -(energy(xp) - energy(xm)) / (2 * h)
    assert torch.allclose(forces, fd, rtol=1e-6, atol=1e-7 * fd.abs().max())
    assert torch.allclose(forces.sum(0), torch.zeros(3, dtype=torch.float64), atol=1e-10)  # translation


# --- symmetry ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["tied", "coupled"])
def test_invariance(which, request):
    basis, mod = request.getfixturevalue(which)
    rng = np.random.default_rng(12)
    r, centers, w, n_atoms = environment(rng, channels=basis.channels)
    model = mod.InvariantModel()
    I = model(r, centers, w, n_atoms).numpy()
    scale = np.abs(I).max(axis=(0, 1))
    for reflect in (False, True):
        rot = torch.tensor(random_rotation(rng, reflect=reflect))
        I_rot = model(r @ rot.T, centers, w, n_atoms).numpy()
        assert np.all(np.abs(I_rot - I).max(axis=(0, 1)) <= 1e-12 * scale)
    perm = torch.tensor(rng.permutation(len(centers)))
    I_perm = model(r[perm], centers[perm], w[perm], n_atoms).numpy()
    assert np.all(np.abs(I_perm - I).max(axis=(0, 1)) <= 1e-12 * scale)
    # sorted pairs take the no-argsort path; same values
    order = torch.argsort(centers, stable=True)
    I_sorted = model(r[order], centers[order], w[order], n_atoms).numpy()
    assert np.all(np.abs(I_sorted - I).max(axis=(0, 1)) <= 1e-12 * scale)


# --- generation -------------------------------------------------------------------------------------------


def test_generation_is_deterministic_and_headed(coupled, tmp_path):
    basis, _ = coupled
    first = render_files(basis, "mybasis", "cartinv generate --basis x.json --name mybasis")
    second = render_files(basis, "mybasis", "cartinv generate --basis x.json --name mybasis")
    assert first == second
    assert "mybasis_torch.py" in first and first["mybasis.json"] == basis.to_json()
    for fname, text in first.items():
        if fname.endswith(".json"):
            continue
        head = "\n".join(text.splitlines()[:4])
        assert basis.content_hash() in head, fname
        assert "cartinv generate --basis x.json --name mybasis" in head, fname
        assert basis.name in head and "0.1.0" in head, fname
    paths = generate(basis, tmp_path / "out", name="mybasis",
                     regenerate_command="cartinv generate --basis x.json --name mybasis")
    assert sorted(p.name for p in paths) == sorted(first)
    assert all(p.read_bytes() == first[p.name].encode() for p in paths)


def test_generate_rejects_bad_names(tied, tmp_path):
    basis, _ = tied
    with pytest.raises(ValueError, match="identifier"):
        generate(basis, tmp_path, name="not-a-name")
