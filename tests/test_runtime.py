"""cartinv.load and the runtime module: sources of generated code, the cache, input validation, backends."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import cartinv
from cartinv.runtime.kernels import load as runtime_load
from cartinv.runtime.kernels.checks import InputError, check_inputs
from cartinv.symbolic.basisfile import Basis

from conftest import derived

NAME = "lmax3_deg4"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CARTINV_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def module():
    return runtime_load.load(NAME, backend="torch")


def inputs(seed=0, n_atoms=5, n_pairs=30, groups=3, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    centers = torch.tensor(rng.integers(0, n_atoms - 1, size=n_pairs))  # the last atom has no neighbours
    r = torch.tensor(rng.normal(size=(n_pairs, 3)), dtype=dtype)
    w = torch.tensor(rng.normal(size=(n_pairs, groups)), dtype=dtype)
    return r, centers, w, n_atoms


def test_checked_in_names_and_lazy_export():
    names = runtime_load.checked_in_names()
    assert {"lmax3_deg4", "lmax2_deg4", "lmax3_flexible"} <= set(names)
    assert cartinv.load is runtime_load.load
    assert cartinv.__version__ == "0.1.0"
    basis = runtime_load.checked_in_basis(NAME)
    assert isinstance(basis, Basis) and basis.name == NAME
    assert runtime_load.checked_in_basis("no_such_basis") is None
    assert runtime_load.resolve_basis(NAME).content_hash() == basis.content_hash()


@pytest.mark.parametrize("name", runtime_load.checked_in_names())
def test_checked_in_modules_match_einsum(name):
    """Every checked-in module (the flexible one has degree-6 and degree-10 invariants) against the reference."""
    from test_codegen_torch import assert_columns_close, einsum_invariants

    basis = runtime_load.checked_in_basis(name)
    mod = runtime_load.import_torch_module(runtime_load.checked_in_root() / name, name)
    T = np.random.default_rng(3).normal(size=(50, mod.N_COORDS))
    assert_columns_close(mod.invariants(torch.tensor(T)).numpy(), einsum_invariants(basis, T))
    gI = torch.tensor(np.random.default_rng(4).normal(size=(50, mod.N_INVARIANTS)))
    T_ = torch.tensor(T, requires_grad=True)
    (auto,) = torch.autograd.grad(mod.invariants(T_), T_, gI)
    assert torch.allclose(mod.invariants_vjp(torch.tensor(T), gI), auto, rtol=1e-11, atol=1e-11)


def test_load_checked_in_without_sympy():
    """The torch backend needs no SymPy at all. The fused CPU backend goes through torch.library ops, whose
    dispatcher imports torch._dynamo and with it SymPy (a torch dependency); cartinv itself still loads none of
    its SymPy-using modules and no jinja2 there."""
    code = (
        "import sys, torch, cartinv, cartinv.runtime.kernels.cuda_backend, cartinv.runtime.kernels.ops, cartinv.runtime.models.nn\n"
        f"m = cartinv.load({NAME!r}, backend='torch')\n"
        "r = torch.randn(6, 3, dtype=torch.float64); c = torch.tensor([0, 0, 1, 1, 2, 2])\n"
        "I = m(r, c, torch.ones(6, 2, dtype=torch.float64), 3)\n"
        "assert I.shape == (3, 2, 13), I.shape\n"
        "from cartinv.runtime.models.potential import CartinvPotential\n"
        f"p = CartinvPotential(['Cu'], basis={NAME!r}, cutoff=3.0, n_features=2, n_radial=2, hidden=(4,),\n"
        "                      n_layers=1, dtype=torch.float64, normalization='root', backend='torch')\n"
        "assert 'sympy' not in sys.modules, 'sympy was imported'\n"
        "assert 'jinja2' not in sys.modules, 'jinja2 was imported'\n"
        f"fused = cartinv.load({NAME!r})\n"
        "assert torch.allclose(fused(r, c, torch.ones(6, 2, dtype=torch.float64), 3), I, rtol=1e-12, atol=1e-12)\n"
        "allowed = {'cartinv.symbolic', 'cartinv.symbolic.basisfile', 'cartinv.symbolic.naming',\n"
        "           'cartinv.symbolic.schema', 'cartinv.codegen', 'cartinv.codegen.naming', 'cartinv.codegen.manifest'}\n"
        "loaded = {k for k in sys.modules if k.startswith(('cartinv.symbolic', 'cartinv.codegen'))}\n"
        "assert loaded <= allowed, sorted(loaded - allowed)\n"
        "assert 'jinja2' not in sys.modules, 'jinja2 was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_module_matches_generated_model(module):
    r, centers, w, n_atoms = inputs()
    I = module(r, centers, w, n_atoms)
    gen = runtime_load.import_torch_module(runtime_load.checked_in_root() / NAME, NAME)
    assert torch.equal(I, gen.InvariantModel()(r, centers, w, n_atoms))
    assert module.basis_name == NAME and module.n_invariants == 13 and len(module.invariant_ids) == 13
    assert module.invariant_degrees == tuple(i["degree"] for i in runtime_load.checked_in_basis(NAME).invariants)
    assert torch.all(I[4] == 0)


def test_load_basis_object_same_as_checked_in_uses_checked_in(tmp_path):
    basis = runtime_load.checked_in_basis(NAME)
    folder, name = runtime_load.generated_dir(basis)
    assert folder == runtime_load.checked_in_root() / NAME and name == NAME
    assert not (tmp_path / "cache").exists()


def test_load_from_json_path_generates_into_cache_once(tmp_path):
    basis = derived((1, 2), degree=3, channels=2)
    path = tmp_path / "mine.json"
    basis.save(path)
    m = cartinv.load(str(path))
    folder, name = runtime_load.generated_dir(basis)
    assert folder.is_relative_to(tmp_path / "cache") and basis.content_hash() in str(folder)
    files = sorted(p.name for p in folder.iterdir())
    assert f"{name}_torch.py" in files and f"{name}.json" in files
    stamp = (folder / f"{name}_torch.py").stat().st_mtime_ns
    m2 = cartinv.load(basis)  # a Basis object with the same content: the cached files, not regenerated
    assert (folder / f"{name}_torch.py").stat().st_mtime_ns == stamp
    rng = np.random.default_rng(1)
    r = torch.tensor(rng.normal(size=(10, 3)))
    c = torch.tensor(rng.integers(0, 3, size=10))
    w = torch.tensor(rng.normal(size=(10, 4, 2)))
    I = m(r, c, w, 3)
    assert I.shape == (3, 4, len(basis.invariants))
    assert torch.equal(I, m2(r, c, w, 3))


def _one_digit_changed(text: str) -> str:
    """The generated module with one digit of one numeric literal changed (a silent-wrong-numbers corruption)."""
    import re

    m = re.search(r"value=(-?)0\.(\d)", text)
    assert m is not None
    digit = m.group(2)
    return text[:m.start(2)] + ("7" if digit != "7" else "3") + text[m.end(2):]


@pytest.mark.parametrize("corrupt", ["digit", "truncate", "delete", "manifest", "stale_hash"])
def test_corrupted_cache_is_detected_named_and_healed_once(tmp_path, corrupt):
    from cartinv.runtime.kernels.kernel_cache import MANIFEST, CacheWarning

    basis = derived((1, 2), degree=3, channels=2)
    folder, name = runtime_load.generated_dir(basis)
    source = folder / f"{name}_torch.py"
    good = source.read_text()
    rng = np.random.default_rng(2)
    r = torch.tensor(rng.normal(size=(12, 3)))
    c = torch.tensor(rng.integers(0, 4, size=12))
    w = torch.tensor(rng.normal(size=(12, 3, 2)))
    expected = cartinv.load(basis)(r, c, w, 4)
    if corrupt == "digit":
        source.write_text(_one_digit_changed(good))
    elif corrupt == "truncate":
        source.write_text(good[: len(good) // 2])
    elif corrupt == "delete":
        source.unlink()
    elif corrupt == "manifest":
        (folder / MANIFEST).write_text("{")
    else:
        source.write_text(good.replace(basis.content_hash(), "0" * 64))
    runtime_load._MODULES.clear()
    with pytest.warns(CacheWarning, match=f"{folder}.*failed their integrity check") as record:
        healed = cartinv.load(basis)
    assert len([w for w in record if issubclass(w.category, CacheWarning)]) == 1
    assert source.read_text() == good
    assert torch.equal(healed(r, c, w, 4), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # healed: no second warning
        runtime_load._MODULES.clear()
        cartinv.load(basis)


def test_read_only_cache_falls_back_to_a_private_cache(tmp_path, monkeypatch):
    from cartinv.runtime.kernels import kernel_cache
    from cartinv.runtime.kernels.kernel_cache import CacheWarning

    if os.geteuid() == 0:
        locked = tmp_path / "file_not_dir"  # root ignores permission bits: a cache root under a file cannot be made
        locked.write_text("")
        root = locked / "cache"
    else:
        root = tmp_path / "ro"
        root.mkdir()
        root.chmod(0o500)
    monkeypatch.setenv("CARTINV_CACHE", str(root))
    monkeypatch.setattr(kernel_cache, "_FALLBACK", [])
    basis = derived((1, 2), degree=3, channels=2)
    with pytest.warns(CacheWarning, match="is not writable.*private temporary cache"):
        folder, _ = runtime_load.generated_dir(basis)
    assert not folder.is_relative_to(root) and folder.is_dir()
    assert kernel_cache.manifest_problem(folder, basis.content_hash(), basis.name,
                                         (f"{basis.name}_torch.py",)) is None


def test_unknown_names_and_backends():
    with pytest.raises(ValueError, match="neither a checked-in basis"):
        cartinv.load("no_such_basis")
    with pytest.raises(ValueError, match="backend must be one of"):
        cartinv.load(NAME, backend="metal")
    with pytest.raises(TypeError):
        runtime_load.resolve_basis(42)


# --- input validation -------------------------------------------------------------------------------------


def bad(kind):
    r, c, w, n = inputs()
    if kind == "zero_vector":
        r = r.clone()
        r[7] = 0
    elif kind == "nan_r":
        r = r.clone()
        r[3, 1] = float("nan")
    elif kind == "inf_w":
        w = w.clone()
        w[11, 0] = float("inf")
    elif kind == "center_high":
        c = c.clone()
        c[4] = 5
    elif kind == "center_negative":
        c = c.clone()
        c[2] = -1
    elif kind == "negative_atoms":
        n = -1
    elif kind == "float_atoms":
        n = 5.0
    elif kind == "half":
        r, w = r.half(), w.half()
    elif kind == "float_centers":
        c = c.double()
    elif kind == "int16_centers":
        c = c.to(torch.int16)
    elif kind == "mixed_dtypes":
        w = w.float()
    elif kind == "r_shape":
        r = r[:, :2]
    elif kind == "centers_shape":
        c = c[:-1]
    elif kind == "w_rows":
        w = w[:-1]
    elif kind == "w_channels":
        w = w[:, :, None].expand(-1, -1, 2)
    elif kind == "not_tensor":
        r = r.tolist()
    elif kind == "int32_overflow":
        c = c.int()
        n = 2**31
    elif kind == "meta_device":
        c = c.to("meta")
    return r, c, w, n


BAD = {
    "zero_vector": r"r\[7\] has zero length",
    "nan_r": r"r\[3\] .* NaN or inf",
    "inf_w": r"w\[11\] contains NaN or inf",
    "center_high": r"centers\[4\] = 5 is out of range for n_atoms = 5",
    "center_negative": r"centers\[2\] = -1 is out of range",
    "negative_atoms": "n_atoms must be non-negative",
    "float_atoms": "n_atoms must be an integer",
    "half": "only torch.float32 and torch.float64",
    "float_centers": "centers has dtype torch.float64",
    "int16_centers": "centers has dtype torch.int16",
    "mixed_dtypes": "w has dtype torch.float32 but r has torch.float64",
    "r_shape": r"r must have shape \[P, 3\]",
    "centers_shape": r"centers must have shape \[P\] = \[30\]",
    "w_rows": "w has 29 rows but r has 30 pairs",
    "w_channels": r"w must have shape \[P, C\] or \[P, C, 1\]",
    "not_tensor": "r must be a torch.Tensor, got list",
    "int32_overflow": "does not fit int32 centers",
    "meta_device": "inputs on different devices",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_inputs_raise_input_error(module, kind):
    args = bad(kind)
    with pytest.raises(InputError, match=BAD[kind]):
        module(*args)


def test_input_error_is_value_error():
    assert issubclass(InputError, ValueError)


def test_coupled_basis_needs_channel_axis(tmp_path):
    m = cartinv.load(derived((1, 2), degree=3, channels=2))
    r, c, w, n = inputs()
    with pytest.raises(InputError, match=r"couples 2 channels: pass weights of shape \[P, G, 2\]"):
        m(r, c, w, n)


def test_value_checks_can_be_skipped():
    r, c, w, n = bad("zero_vector")
    m = cartinv.load(NAME, backend="torch", check_values=False)
    out = m(r, c, w, n)  # no InputError; the zero vector's direction is NaN
    assert torch.isnan(out).any()
    with pytest.raises(InputError, match="r must have shape"):
        m(r[:, :2], c, w, n)  # structure is always checked
    from cartinv.runtime.kernels import cpu_backend

    if cpu_backend.available()[0]:  # the fused kernels check values as they read them, whatever check_values says
        with pytest.raises(InputError, match="zero length"):
            cartinv.load(NAME, backend="cpu", check_values=False)(r, c, w, n)


def test_noncontiguous_and_int32_and_tensor_atom_count(module):
    r, c, w, n = inputs()
    ref = module(r, c, w, n)
    r_nc = torch.stack([r, r], dim=2)[:, :, 0]  # same values, stride 2
    w_nc = w.t().contiguous().t()
    assert not r_nc.is_contiguous() and not w_nc.is_contiguous()
    assert torch.allclose(module(r_nc, c, w_nc, n), ref, rtol=1e-14, atol=0)
    assert torch.equal(module(r, c.int(), w, torch.tensor(n)), ref)
    checked = check_inputs(r_nc, c, w_nc, n)
    assert all(t.is_contiguous() for t in checked[:3])


def test_float32_and_gradients_through_module(module):
    r, c, w, n = inputs(dtype=torch.float32)
    r.requires_grad_(True)
    I = module(r, c, w, n)
    assert I.dtype == torch.float32
    I.sum().backward()
    assert r.grad is not None and torch.isfinite(r.grad).all()


# --- backend selection ------------------------------------------------------------------------------------


def test_cuda_backend_unavailable_warns_once_and_uses_torch(module, monkeypatch):
    monkeypatch.setattr(runtime_load, "_cuda_backend_status", lambda: (None, "no GPU in this test"))
    r, c, w, n = inputs()
    with pytest.warns(runtime_load.BackendWarning, match="requested but is unavailable: no GPU in this test"):
        m = cartinv.load(NAME, backend="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert torch.equal(m(r, c, w, n), module(r, c, w, n))
        assert m.active_backend("cuda") == "torch"


def test_fallback_runs_the_torch_core_through_the_op_family(monkeypatch):
    """Where the expected backend is unavailable, the module evaluates the torch core through the Basis's ops
    (registered apart from the fused kernels' family): the same numbers as backend="torch", first and second
    derivatives through the family's autograd."""
    from cartinv.runtime.kernels import cpu_backend

    monkeypatch.setattr(runtime_load, "_cuda_backend_status", lambda: (None, "no GPU in this test"))
    with pytest.warns(runtime_load.BackendWarning):
        m = cartinv.load(NAME, backend="cuda")
    r, c, w, n = inputs()
    r = r.double().requires_grad_()
    w = w.double().requires_grad_()
    out = m(r, c, w, n)
    assert "torchcore" in type(out.grad_fn).__name__ or "torchcore" in out.grad_fn.name(), out.grad_fn.name()
    ref = cartinv.load(NAME, backend="torch")(r, c, w, n)
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-13)
    small, c6 = (r[:6].detach().requires_grad_(), w[:6].detach().requires_grad_()), c[:6]
    fn = lambda a, b: m(a, c6, b, n)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, small)
    if cpu_backend.available()[0]:
        fused = cartinv.load(NAME, backend="cpu")
        assert fused.active_backend("cpu") == "cpu"
        assert "torchcore" not in fused(r, c, w, n).grad_fn.name()


def test_auto_on_cpu_never_touches_cuda(monkeypatch):
    def fail():
        raise AssertionError("the CUDA backend was consulted for CPU inputs")

    monkeypatch.setattr(runtime_load, "_cuda_backend_status", fail)
    m = cartinv.load(NAME)
    r, c, w, n = inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m(r, c, w, n)
    from cartinv.runtime.kernels import cpu_backend

    assert m.active_backend("cpu") == ("cpu" if cpu_backend.available()[0] else "torch")


def test_auto_expects_cuda_for_gpu_inputs(monkeypatch):
    monkeypatch.setattr(runtime_load, "_cuda_backend_status", lambda: (None, "CuPy is not installed"))
    m = cartinv.load(NAME)
    with pytest.warns(runtime_load.BackendWarning, match="expected for GPU inputs but is unavailable: CuPy"):
        assert m.active_backend("cuda") == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert m.active_backend("cuda:0") == "torch"
    assert cartinv.load(NAME, backend="torch").active_backend("cuda") == "torch"


def test_cuda_backend_selected_when_usable(monkeypatch, tmp_path):
    """With a usable CUDA backend, GPU inputs go to its module (a stand-in here: no GPU on the test machine)."""
    calls = []

    class FakeCuda:
        @staticmethod
        def CudaInvariants(folder, name):
            calls.append((folder, name))
            return lambda r, c, w, n: "cuda"

    monkeypatch.setattr(runtime_load, "_cuda_backend_status", lambda: (FakeCuda, "fake"))
    m = cartinv.load(NAME)
    assert m.active_backend("cuda") == "cuda"
    assert calls == [(runtime_load.checked_in_root() / NAME, NAME)]
    m_cuda = cartinv.load(NAME, backend="cuda")
    r, c, w, n = inputs()
    with pytest.raises(InputError, match="backend='cuda' evaluates CUDA tensors"):
        m_cuda(r, c, w, n)


def test_cached_folders_are_keyed_by_the_generator(tmp_path, monkeypatch):
    """Files generated by another code generator (a changed template or printer, same cartinv version) are never
    served: the cache folder's key holds a fingerprint of cartinv.codegen and cartinv.templates."""
    basis = derived((1, 2), degree=3, channels=2)
    folder, _ = runtime_load.generated_dir(basis)
    fingerprint = runtime_load.generator_fingerprint()
    assert len(fingerprint) == 12 and f"-{fingerprint}" in str(folder)
    monkeypatch.setattr(runtime_load, "_FINGERPRINT", ["0" * 12])
    other, _ = runtime_load.generated_dir(basis)
    assert other != folder and "-000000000000" in str(other)
