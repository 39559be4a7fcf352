"""The fused CPU backend (runtime/kernels/cpu_backend.py + runtime/kernels/csrc/fused_cpu.cpp): agreement with the torch backend
for every checked-in basis and a channel-coupled one, first and second derivatives, the torch.library ops,
determinism across thread counts, bad inputs and the fallback when no compiler is found."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import cartinv
from cartinv.runtime.kernels import cpu_backend
from cartinv.runtime.kernels import load as runtime_load
from conftest import derived

pytestmark = pytest.mark.skipif(not cpu_backend.available()[0], reason="no C++ compiler for the fused CPU backend")


def environment(seed=0, n_atoms=7, n_pairs=60, groups=11, channels=1, dtype=torch.float64, sort=False):
    """Random pairs; atom n_atoms - 1 has none; centres unsorted unless `sort`; groups not a multiple of the lanes."""
    rng = np.random.default_rng(seed)
    centers = rng.integers(0, n_atoms - 1, size=n_pairs)
    if sort:
        centers = np.sort(centers)
    r = torch.tensor(rng.normal(size=(n_pairs, 3)), dtype=dtype)
    shape = (n_pairs, groups) if channels == 1 else (n_pairs, groups, channels)
    w = torch.tensor(rng.normal(size=shape), dtype=dtype)
    return r, torch.tensor(centers), w, n_atoms


def pair(name_or_basis):
    return (cartinv.load(name_or_basis, backend="torch"), cartinv.load(name_or_basis, backend="cpu"))


@pytest.mark.parametrize("name", runtime_load.checked_in_names())
def test_every_checked_in_basis_matches_torch(name):
    reference, fused = pair(name)
    assert fused.active_backend("cpu") == "cpu"
    for sort in (False, True):
        r, c, w, n = environment(sort=sort)
        expected = reference(r, c, w, n)
        got = fused(r, c, w, n)
        scale = expected.abs().max().item()
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, rtol=0, atol=1e-12 * scale), (got - expected).abs().max()
        assert torch.all(got[n - 1] == 0)  # an atom without pairs: zero moments, zero invariants
    r32, w32 = r.float(), w.float()
    assert torch.allclose(fused(r32, c, w32, n).double(), expected, rtol=0, atol=2e-6 * scale)


def test_channel_coupled_basis_with_derivatives():
    basis = derived((1, 2), degree=3, channels=2)
    reference, fused = pair(basis)
    r, c, w, n = environment(n_atoms=5, n_pairs=25, groups=3, channels=2)
    assert torch.allclose(fused(r, c, w, n), reference(r, c, w, n), rtol=1e-12, atol=1e-12)
    r.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda r, w: fused(r, c, w, n), (r, w))
    assert torch.autograd.gradgradcheck(lambda r, w: fused(r, c, w, n), (r, w))


@pytest.mark.parametrize("name", ["lmax3_deg4", "lmax2_deg4"])
def test_gradcheck_and_gradgradcheck(name):
    fused = cartinv.load(name, backend="cpu")
    r, c, w, n = environment(n_atoms=4, n_pairs=14, groups=5)
    r.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda r, w: fused(r, c, w, n), (r, w))
    assert torch.autograd.gradgradcheck(lambda r, w: fused(r, c, w, n), (r, w))


def test_first_and_second_derivatives_match_torch():
    """Forces and a force loss's parameter gradient (the double backward training needs) agree with torch."""
    reference, fused = pair("lmax3_deg4")
    r, c, w, n = environment(groups=10)
    weights = torch.randn(10, reference.n_invariants, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def force_loss(module):
        rr = r.clone().requires_grad_(True)
        ww = w.clone().requires_grad_(True)
        energy = (module(rr, c, ww, n) * weights).sum()
        forces, = torch.autograd.grad(energy, rr, create_graph=True)
        loss = (forces ** 2).sum()
        return (forces, *torch.autograd.grad(loss, (rr, ww)))

    for a, b in zip(force_loss(reference), force_loss(fused)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10 * a.abs().max().item())


def test_invariant_under_rotation_reflection_and_pair_order():
    fused = cartinv.load("lmax3_deg4", backend="cpu")
    r, c, w, n = environment()
    base = fused(r, c, w, n)
    scale = base.abs().max().item()
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    for rot in (q, -q):  # one of them is a reflection
        assert torch.allclose(fused(r @ rot.T, c, w, n), base, rtol=1e-11, atol=1e-11 * scale)
    perm = torch.randperm(r.shape[0], generator=torch.Generator().manual_seed(3))
    assert torch.allclose(fused(r[perm], c[perm], w[perm], n), base, rtol=1e-12, atol=1e-12 * scale)


def test_results_do_not_depend_on_the_thread_count():
    fused = cartinv.load("lmax3_deg4", backend="cpu")
    r, c, w, n = environment(n_atoms=300, n_pairs=6000, groups=19)
    r.requires_grad_(True)
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            out = fused(r, c, w, n)
            outs.append((out, torch.autograd.grad(out.square().sum(), r)[0]))
    finally:
        torch.set_num_threads(before)
    for out, grad in outs[1:]:
        assert torch.equal(out, outs[0][0]) and torch.equal(grad, outs[0][1])


def test_ops_pass_opcheck_and_torch_compile():
    fused = cartinv.load("lmax2_deg4", backend="cpu")
    ops = fused._cpu_impl.ops
    r, c, w, n = environment(n_atoms=4, n_pairs=14, groups=5)
    w3 = w.unsqueeze(-1)
    torch.library.opcheck(ops.forward, (r.requires_grad_(True), w3.requires_grad_(True), c, n))
    I, moments = ops.forward(r.detach(), w3.detach(), c, n)
    torch.library.opcheck(ops.backward, (r.detach(), w3.detach(), c, n, moments, torch.randn_like(I)))
    compiled = torch.compile(lambda r, w: fused._cpu_impl(r, c, w, n), fullgraph=True, backend="eager")
    assert torch.allclose(compiled(r.detach(), w.detach()), fused(r.detach(), c, w.detach(), n), rtol=0, atol=0)


def test_torch_export_goes_through_the_fused_op():
    """torch.export keeps the fused forward as one node (its fake implementation gives the shapes), and the exported
    program gives the same numbers."""
    fused = cartinv.load("lmax2_deg4", backend="cpu")

    class Wrapped(torch.nn.Module):
        def __init__(self, n_atoms):
            super().__init__()
            self.inner, self.n_atoms = fused._cpu_impl, n_atoms

        def forward(self, r, c, w):
            return self.inner(r, c, w, self.n_atoms)

    r, c, w, n = environment(n_atoms=4, n_pairs=14, groups=5)
    program = torch.export.export(Wrapped(n), (r, c, w))
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    assert any("cartinv.lmax2_deg4_" in t and t.endswith("forward.default") for t in targets), targets
    assert torch.equal(program.module()(r, c, w), fused(r, c, w, n))


@pytest.mark.parametrize("check_values", [True, False])
def test_bad_centre_is_an_error_not_a_crash(check_values):
    fused = cartinv.load("lmax3_deg4", backend="cpu", check_values=check_values)
    r, c, w, n = environment()
    c = c.clone()
    c[3] = n + 5
    with pytest.raises(cartinv.InputError, match=r"centers\[3\] = 12 is out of range"):
        fused(r, c, w, n)
    with pytest.raises(cpu_backend.BadValues, match="centre index is outside"):  # the bare kernels
        fused._cpu_impl(r, c, w, n)


BAD_VALUES = [  # (tensor, index, value, message)
    ("r", (17, 1), float("nan"), r"r\[17\] = .* contains NaN or inf"),
    ("r", (0, 2), float("-inf"), r"r\[0\] = .* contains NaN or inf"),
    ("r", (59,), 0.0, r"pair vector r\[59\] has zero length"),
    ("w", (33, 10), float("nan"), r"w\[33\] contains NaN or inf"),
    ("w", (5, 0), float("inf"), r"w\[5\] contains NaN or inf"),
]


@pytest.mark.parametrize("check_values", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("which, index, value, message", BAD_VALUES)
def test_kernels_find_bad_values_and_the_module_names_them(which, index, value, message, dtype, check_values):
    """The forward checks the values it reads (the module's separate pass over the data is skipped on the
    fused path): every bad element is found, in any lane and block, and the error names it."""
    fused = cartinv.load("lmax3_deg4", backend="cpu", check_values=check_values)
    r, c, w, n = environment(dtype=dtype)
    data = {"r": r.clone(), "w": w.clone()}
    data[which][index] = value
    with pytest.raises(cartinv.InputError, match=message):
        fused(data["r"], c, data["w"], n)
    with pytest.raises(cpu_backend.BadValues):
        fused._cpu_impl(data["r"], c, data["w"], n)


def test_overflow_is_an_error_not_inf():
    """Finite inputs whose squared length or moments overflow float32 are refused, not returned as inf."""
    fused = cartinv.load("lmax3_deg4", backend="cpu")
    r, c, w, n = environment(dtype=torch.float32)
    big_r = r.clone()
    big_r[4] = 1e20  # |r|^2 = 3e40 > float32 max
    with pytest.raises(cartinv.InputError, match="squared length .* overflows .* too large for torch.float32"):
        fused(big_r, c, w, n)
    big_w = w.clone()
    big_w[c == c[0]] = 3e38  # the atom's moments sum past float32 max
    with pytest.raises(cartinv.InputError, match="moment is NaN or inf .* too large for torch.float32"):
        fused(r, c, big_w, n)
    assert torch.isfinite(fused(r, c, w, n)).all()  # the same module on good data


def test_library_of_another_basis_is_refused():
    fused = cartinv.load("lmax3_deg4", backend="cpu")
    path = fused._cpu_impl.ops.library.path
    with pytest.raises(cpu_backend.CpuBackendError, match="was built for Basis"):
        cpu_backend.FusedLibrary(path, "0" * 64)


def test_no_compiler_warns_once_and_uses_torch(monkeypatch):
    monkeypatch.setattr(cpu_backend, "_LIBRARIES", {})
    monkeypatch.setattr(cpu_backend, "compiler", lambda: None)
    r, c, w, n = environment()
    with pytest.warns(runtime_load.BackendWarning, match="fused CPU backend was expected for CPU inputs but is "
                                                         "unavailable: no C\\+\\+ compiler found"):
        m = cartinv.load("lmax3_deg4")
        out = m(r, c, w, n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert torch.equal(m(r, c, w, n), out)
    assert m.active_backend("cpu") == "torch"
    assert torch.equal(out, cartinv.load("lmax3_deg4", backend="torch")(r, c, w, n))



def test_modules_deep_copy_and_pickle():
    """Training keeps deep copies of the best model; saved modules pickle: the fused path holds no ctypes state."""
    import copy
    import pickle

    m = cartinv.load("lmax3_deg4", backend="cpu")
    r, c, w, n = environment()
    out = m(r, c, w, n)
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert clone.active_backend("cpu") == "cpu"
        assert torch.equal(clone(r, c, w, n), out)


@pytest.mark.parametrize("lane_bytes", [16, 64])
def test_other_simd_widths_give_the_same_numbers(lane_bytes):
    """The library built for SSE-wide (16 B) and AVX-512-wide (64 B) lanes, as other CPUs get it, run here
    (the compiler splits or merges the vectors): forward, backward and double backward equal the native build's."""
    folder = runtime_load.checked_in_root() / "lmax2_deg4"
    fused = cartinv.load("lmax2_deg4", backend="cpu")
    native = fused._cpu_impl.ops.library
    other = cpu_backend.FusedLibrary(cpu_backend.build_library(folder, "lmax2_deg4", quiet=True,
                                                               lane_bytes=lane_bytes), fused.basis_hash)
    assert other.lanes[torch.float64] == lane_bytes // 8
    r, c, w, n = environment(groups=13)
    w = w.unsqueeze(-1)
    results = []
    for lib in (native, other):
        out, moments = lib.forward(r, w, c, n)
        g = torch.randn_like(out, generator=torch.Generator().manual_seed(4))
        gr, gw = lib.backward(r, w, c, n, moments, g)
        second = lib.double_backward(r, w, c, n, g, torch.ones_like(r), torch.ones_like(w))
        results.append((out, gr, gw, *second))
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12 * a.abs().max().item())
