"""runtime/kernels/cuda_backend.py without a GPU: availability, the binary cache, CSR construction, launch configurations,
and CudaInvariants end to end (forward, backward, double backward) through the Basis's op family, with the
generated CUDA kernels run through the CPU emulation of tests/cpp/cuda_emulation.h."""

from __future__ import annotations

import os
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "cpp"))
import harness as H  # noqa: E402

import cartinv  # noqa: E402
from cartinv.runtime.kernels import cuda_backend as cb  # noqa: E402
from cartinv.runtime.kernels import kernel_cache  # noqa: E402
from cartinv.runtime.kernels import load as runtime_load  # noqa: E402
from cartinv.runtime.kernels.generated_files import ManifestError  # noqa: E402

# ------------------------------------------------------------------------------------------------ availability


def test_available_reports_why_not_here():
    ok, why = cb.available()
    try:
        import cupy  # noqa: F401
    except ImportError:
        assert ok is False and "CuPy is not installed" in why
        return
    if not torch.cuda.is_available():
        assert ok is False and "no CUDA device" in why
    else:
        assert ok is True or "NVRTC" in why or "CuPy" in why, why


def test_available_without_cupy(monkeypatch):
    def missing():
        raise ImportError("No module named 'cupy'")

    monkeypatch.setattr(cb, "_import_cupy", missing)
    assert cb.available() == (False, "CuPy is not installed (pip install the cupy-cuda12x or cupy-cuda13x wheel "
                                      "matching your CUDA driver; cartinv[cuda] gives cupy-cuda12x)")


def test_available_without_gpu(monkeypatch):
    monkeypatch.setattr(cb, "_import_cupy", lambda: types.SimpleNamespace(__version__="13.0.0"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, why = cb.available()
    assert not ok and "no CUDA device" in why


def test_available_with_everything(monkeypatch):
    fake = types.SimpleNamespace(
        __version__="13.0.0",
        cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 2)),
    )
    monkeypatch.setattr(cb, "_import_cupy", lambda: fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(cb, "_nvrtc", lambda: types.SimpleNamespace(getVersion=lambda: (12, 4)))
    assert cb.available() == (True, "CuPy 13.0.0, NVRTC 12.4, 2 CUDA device(s)")


def test_cupy_launcher_refuses_without_backend(tmp_path):
    basis = H.basis_for("channels")
    H.render(basis, tmp_path)
    ok, why = cb.available()
    if ok:
        pytest.skip("a CUDA backend is available here")
    module = cb.CudaInvariants(tmp_path, basis.name)
    with pytest.raises(cb.CudaBackendError, match="unavailable"):
        module(torch.ones(1, 3), torch.zeros(1, dtype=torch.long), torch.ones(1, 1, 2), 1)


# ------------------------------------------------------------------------------------------------ cache


def test_cache_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CARTINV_CACHE", str(tmp_path / "c"))
    assert cb.cache_root() == tmp_path / "c"
    assert cb.BinaryCache().root == tmp_path / "c" / "cuda"
    monkeypatch.setenv("CARTINV_CACHE", "")
    assert cb.cache_root() == Path.home() / ".cache" / "cartinv"
    monkeypatch.delenv("CARTINV_CACHE")
    assert cb.cache_root() == Path.home() / ".cache" / "cartinv"


def test_cache_key_depends_on_every_part():
    base = dict(source="__global__ void k() {}", compiler="nvrtc 12.4", arch="sm_90", options=("--std=c++17",))
    key = cb.cache_key(**base)
    assert len(key) == 64 and int(key, 16) >= 0
    assert cb.cache_key(**base) == key
    for field, other in [("source", "__global__ void k2() {}"), ("compiler", "nvrtc 12.5"), ("arch", "sm_80"),
                         ("options", ("--std=c++14",))]:
        assert cb.cache_key(**{**base, field: other}) != key, field


def test_atomic_write_replaces_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "sub" / "a.cubin"
    kernel_cache.atomic_write_bytes(path, b"first")
    kernel_cache.atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.cubin"]


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.cubin"
    kernel_cache.atomic_write_bytes(path, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        kernel_cache.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.cubin"]


def test_binary_cache_builds_once(tmp_path):
    cache = cb.BinaryCache(tmp_path)
    key = cb.cache_key("fake source", "nvrtc 0.0", "sm_00")
    calls = []

    def build():
        calls.append(1)
        return b"binary"

    first = cache.get_or_build(key, ".cubin", build)
    second = cache.get_or_build(key, ".cubin", build)
    assert first == second == tmp_path / f"{key}.cubin"
    assert first.read_bytes() == b"binary" and len(calls) == 1
    first.write_bytes(b"")  # an empty entry (e.g. from a crashed tool) is rebuilt
    cache.get_or_build(key, ".cubin", build)
    assert len(calls) == 2 and first.read_bytes() == b"binary"
    with pytest.raises(ValueError):
        cache.path("../escape", ".cubin")
    with pytest.raises(cb.CudaBackendError):
        cache.get_or_build(cb.cache_key("other", "c", "a"), ".cubin", lambda: b"")


def test_binary_cache_concurrent_writers(tmp_path):
    """Many writers racing on one key: the entry is always one complete payload, never a mixture."""
    cache = cb.BinaryCache(tmp_path)
    key = cb.cache_key("race", "nvrtc", "sm")
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    start = threading.Barrier(len(payloads))

    def writer(data):
        start.wait()
        cache.get_or_build(key, ".ptx", lambda: data)

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (tmp_path / f"{key}.ptx").read_bytes() in payloads
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{key}.ptx", f"{key}.ptx.sha256"]


# ------------------------------------------------------------------------------------------------ sources


def test_kernel_source_loading_and_errors(tmp_path):
    basis = H.basis_for("tied")
    H.render(basis, tmp_path)
    src = cb.KernelSource.load(tmp_path, basis.name)
    assert src.symbol("forward", torch.float64) == f"{basis.name}_forward_f64"
    assert src.symbol("pairs_backward", torch.float32) == f"{basis.name}_pairs_backward_f32"
    with pytest.raises(cb.CudaBackendError, match="float32 or float64"):
        src.symbol("forward", torch.float16)
    assert src.constants["N_INVARIANTS"] == len(basis.invariants)
    with pytest.raises(cb.CudaBackendError, match="missing generated file"):
        cb.KernelSource.load(tmp_path, "no_such_basis")
    broken = cb.KernelSource(src.name, src.header, src.kernels.replace(f'#include "{src.name}.h"', ""), src.manifest)
    with pytest.raises(cb.CudaBackendError, match="exactly once"):
        broken.nvrtc_source()
    assert src.constants == dict(src.manifest.sizes) and src.constants["HARMONICS_STRIDE"] >= src.constants["N_HARMONICS"]
    header = tmp_path / f"{basis.name}.h"
    header.write_text(header.read_text().replace("N_INVARIANTS = ", "N_INVARIANTS =  "))  # an edit after generation
    with pytest.raises(ManifestError, match="does not match the sha256 its manifest records"):
        cb.KernelSource.load(tmp_path, basis.name)


# ------------------------------------------------------------------------------------------------ CSR


def test_build_csr_is_a_stable_sort_with_offsets():
    rng = np.random.default_rng(0)
    centers = rng.integers(0, 9, size=200)
    centers[centers == 4] = 5  # atom 4 has no pairs
    layout = cb.build_csr(torch.tensor(centers, dtype=torch.int32), 10)
    order = layout.order.numpy()
    assert layout.order.dtype == layout.offsets.dtype == torch.int64
    assert np.array_equal(order, np.argsort(centers, kind="stable"))
    offsets = layout.offsets.numpy()
    assert offsets[0] == 0 and offsets[-1] == 200 and len(offsets) == 11
    for atom in range(10):
        block = order[offsets[atom]:offsets[atom + 1]]
        assert np.all(centers[block] == atom) and np.all(np.diff(block) > 0)
    assert offsets[4] == offsets[5] and offsets[9] == offsets[10]
    assert layout.n_pairs == 200 and layout.n_atoms == 10


def test_build_csr_edge_cases_and_errors():
    empty = cb.build_csr(torch.zeros(0, dtype=torch.long), 3)
    assert empty.order.numel() == 0 and empty.offsets.tolist() == [0, 0, 0, 0]
    assert cb.build_csr(torch.zeros(0, dtype=torch.long), 0).offsets.tolist() == [0]
    with pytest.raises(ValueError, match=">= n_atoms"):
        cb.build_csr(torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="non-negative"):
        cb.build_csr(torch.tensor([0, -1]), 3)
    with pytest.raises(ValueError, match="one-dimensional"):
        cb.build_csr(torch.zeros(2, 2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="integer"):
        cb.build_csr(torch.zeros(2), 3)
    with pytest.raises(ValueError, match="n_atoms is 0"):
        cb.build_csr(torch.zeros(2, dtype=torch.long), 0)


# ------------------------------------------------------------------------------------------------ launch configs


@pytest.mark.parametrize("groups", [1, 3, 16, 100, 1000])
@pytest.mark.parametrize("stride,itemsize", [(17, 4), (17, 8), (49, 8), (121, 8)])
def test_forward_launch_covers_everything_within_limits(groups, stride, itemsize):
    cfg = cb.forward_launch(1001, groups, stride, itemsize, 128)
    lanes, rows, one = cfg.block
    assert one == 1 and cfg.grid[2] == 1
    assert lanes * rows <= 128 and lanes & (lanes - 1) == 0 and rows >= 1
    assert lanes >= min(groups, lanes * rows) or lanes * rows * (8 + stride * itemsize) > cb.SHARED_MEMORY_LIMIT // 2
    assert cfg.grid[0] * rows >= 1001 and (cfg.grid[0] - 1) * rows < 1001
    assert cfg.grid[1] * lanes >= groups and (cfg.grid[1] - 1) * lanes < groups
    assert cfg.shared_mem == lanes * rows * (8 + stride * itemsize) <= cb.SHARED_MEMORY_LIMIT


@pytest.mark.parametrize("groups", [1, 5, 32, 200])
def test_pair_and_row_launches(groups):
    cfg = cb.pairs_backward_launch(777, groups, 8, 128)
    lanes, slots, _ = cfg.block
    assert lanes == min(cb._next_pow2(groups), 32) and lanes * slots == 128
    assert cfg.grid[0] * slots >= 777 and cfg.shared_mem == lanes * slots * 3 * 8
    rows = cb.rows_launch(1000, 96)
    assert rows.block == (64, 1, 1) and rows.grid == (16, 1, 1) and rows.shared_mem == 0


# ------------------------------------------------------------------------------------------------ end to end (emulated)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A generated/<name>/ folder per basis: the C targets (emit_c) and the torch module written by the project's
    generator (its torch core is the op family's double backward)."""
    out = {}
    for key in ("tied", "channels"):
        basis = H.basis_for(key)
        folder = tmp_path_factory.mktemp(f"gen_{key}")
        H.render(basis, folder, torch_module=True)
        out[key] = (basis, folder, H.compile_emulation(folder, basis.name))
    return out


def _module(generated, key, max_threads=16):
    """The CUDA kernels through the CPU emulation, attached for CPU tensors in an op family of their own."""
    basis, folder, lib = generated[key]
    launcher = H.EmulatedLauncher(lib, basis.name)
    return basis, launcher, cb.CudaInvariants(folder, basis.name, launcher=launcher, max_threads=max_threads,
                                              device_type="cpu")


def _system(basis, dtype, n_atoms=6, n_pairs=20, groups=3, seed=1, tied_2d=False):
    rng = np.random.default_rng(seed)
    r, w, centers = H.random_system(rng, basis, n_atoms, n_pairs, groups, empty_atoms=(3,))
    r = torch.tensor(r, dtype=dtype, requires_grad=True)
    w = torch.tensor(w[:, :, 0] if tied_2d else w, dtype=dtype, requires_grad=True)
    return r, torch.tensor(centers), w


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("key", ["tied", "channels"])
def test_forward_and_backward_match_reference(generated, key, dtype):
    basis, launcher, module = _module(generated, key)
    tied = basis.channels == 1
    r, centers, w = _system(basis, dtype, tied_2d=tied)
    out = module(r, centers, w, 6)
    assert out.shape == (6, 3, len(basis.invariants)) and out.dtype == dtype
    r64, w64 = r.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    w64_3 = w64.unsqueeze(-1) if tied else w64
    ref = H.torch_pipeline(basis)(r64, centers, w64_3, 6)
    rtol = 1e-12 if dtype == torch.float64 else 5e-6
    H.assert_close(out.detach().double().numpy(), ref.detach().numpy(), rtol, "forward")
    assert torch.all(out[3] == 0), "an atom without pairs has zero invariants"
    g = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    grad_r, grad_w = torch.autograd.grad(out, (r, w), g.to(dtype))
    want_r, want_w = torch.autograd.grad(ref, (r64, w64), g)
    H.assert_close(grad_r.double().numpy(), want_r.numpy(), rtol, "grad r")
    H.assert_close(grad_w.double().numpy(), want_w.numpy(), rtol, "grad w")
    kernels = [s.rsplit("_", 1)[0][len(basis.name) + 1:] for s, *_ in launcher.launches]
    assert kernels == ["forward", "invariants_backward", "pairs_backward"]
    for symbol, grid, block, smem in launcher.launches:
        assert block[0] * block[1] <= 16


def test_inference_does_not_store_moments(generated):
    basis, launcher, module = _module(generated, "channels")
    r, centers, w = _system(basis, torch.float64)
    runner = module.runner
    layout = cb.build_csr(centers, 6)
    out, moments = runner.forward(r.detach(), w.detach(), layout, store_moments=False)
    assert moments is None
    with torch.no_grad():
        again = module(r, centers, w, 6)
    assert torch.equal(out, again) and not again.requires_grad


def test_gradgradcheck(generated):
    """Second derivatives (torch reference) are consistent with the CUDA first derivatives (numerically)."""
    basis, _, module = _module(generated, "channels", max_threads=4)
    r, centers, w = _system(basis, torch.float64, n_atoms=2, n_pairs=4, groups=1, seed=7)
    fn = lambda r_, w_: module(r_, centers, w_, 2)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (r, w), eps=1e-6, atol=1e-6)


def test_force_training_step_matches_reference(generated):
    """Loss on forces (double backward through the module) agrees with the pure torch reference."""
    basis, _, module = _module(generated, "channels")
    r, centers, w = _system(basis, torch.float64)
    readout = torch.randn(3, len(basis.invariants), dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def loss_of(invariants_fn, r_, w_):
        energy = (invariants_fn(r_, w_) * readout).sum()
        (forces,) = torch.autograd.grad(energy, r_, create_graph=True)
        return (forces**2).sum()

    got = torch.autograd.grad(loss_of(lambda a, b: module(a, centers, b, 6), r, w), (r, w))
    r2, w2 = r.detach().requires_grad_(), w.detach().requires_grad_()
    reference = H.torch_pipeline(basis)
    want = torch.autograd.grad(loss_of(lambda a, b: reference(a, centers, b, 6), r2, w2), (r2, w2))
    for g_, w_, what in zip(got, want, ("r", "w")):
        H.assert_close(g_.numpy(), w_.numpy(), 1e-10, f"second-order gradient w.r.t. {what}")


def test_kernels_serve_the_op_family_and_pass_opcheck(generated):
    """The CUDA implementation sits under the Basis's one op family: opcheck on its forward and backward, and
    the double backward is the family's torch core (no second autograd stack)."""
    basis, launcher, module = _module(generated, "channels")
    r, centers, w = _system(basis, torch.float64)
    family = module.family
    assert family.devices["cpu"].runner is module.runner
    torch.library.opcheck(family.forward, (r, w, centers, 6))
    out, saved = family.forward(r.detach(), w.detach(), centers, 6)
    g = torch.randn_like(out)
    torch.library.opcheck(family.backward, (r, w, centers, 6, saved, g.requires_grad_()))
    launcher.launches.clear()
    family.double_backward(r.detach(), w.detach(), centers, 6, g.detach(), torch.randn_like(r), None)
    assert launcher.launches == []  # the torch core, not the kernels


def test_missing_torch_module_is_named(generated, tmp_path):
    basis, folder, lib = generated["tied"]
    for f in folder.iterdir():
        if f.is_file() and not f.name.endswith("_torch.py"):
            (tmp_path / f.name).write_bytes(f.read_bytes())
    module = cb.CudaInvariants(tmp_path, basis.name, launcher=H.EmulatedLauncher(lib, basis.name), device_type="cpu")
    r, centers, w = _system(basis, torch.float64, tied_2d=True)
    with pytest.raises(cb.CudaBackendError, match="missing generated torch module"):
        module(r, centers, w, 6)


def test_empty_inputs(generated):
    basis, launcher, module = _module(generated, "channels")
    r = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True)
    w = torch.zeros(0, 2, basis.channels, dtype=torch.float64, requires_grad=True)
    out = module(r, torch.zeros(0, dtype=torch.long), w, 4)
    assert out.shape == (4, 2, len(basis.invariants)) and torch.all(out == 0)
    grad_r, grad_w = torch.autograd.grad(out.sum(), (r, w))
    assert grad_r.shape == (0, 3) and grad_w.shape == (0, 2, basis.channels)
    assert module(r, torch.zeros(0, dtype=torch.long), w, 0).shape == (0, 2, len(basis.invariants))


def test_input_validation(generated):
    basis, _, module = _module(generated, "channels")
    r, centers, w = _system(basis, torch.float64)
    with pytest.raises(ValueError, match=r"r must be \[P, 3\]"):
        module(r[:, :2], centers, w, 6)
    with pytest.raises(ValueError, match="centers must be"):
        module(r, centers[:-1], w, 6)
    with pytest.raises(ValueError, match="share a dtype"):
        module(r, centers, w.float(), 6)
    with pytest.raises(ValueError, match="2 channels"):
        module(r, centers, w[:, :, 0], 6)
    with pytest.raises(ValueError, match="weights must be"):
        module(r, centers, w[:-1], 6)
    with pytest.raises(ValueError, match=">= n_atoms"):
        module(r, centers, w, 2)
    with pytest.raises(cb.CudaBackendError, match="float32 or float64"):
        module(r.half(), centers, w.half(), 6)


# ------------------------------------------------------------------------------------------------ on a GPU


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_device_matches_reference(generated, dtype, tmp_path, monkeypatch):
    """Runs only where CuPy, NVRTC and a GPU are present: the real kernels against the Cartesian reference."""
    ok, why = cb.available()
    if not ok:
        print(f"CUDA backend unavailable: {why}")
        pytest.skip(f"CUDA backend unavailable: {why}")
    monkeypatch.setenv("CARTINV_CACHE", str(tmp_path))
    basis, folder, _ = generated["channels"]
    module = cb.CudaInvariants(folder, basis.name)
    r, centers, w = _system(basis, torch.float64, n_atoms=6, n_pairs=40, groups=5)
    rc = r.detach().to("cuda", dtype).requires_grad_()
    wc = w.detach().to("cuda", dtype).requires_grad_()
    out = module(rc, centers.cuda(), wc, 6)
    ref = H.torch_pipeline(basis)(r, centers, w, 6)
    rtol = 1e-12 if dtype == torch.float64 else 5e-6
    H.assert_close(out.detach().double().cpu().numpy(), ref.detach().numpy(), rtol, "cuda forward")
    g = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    got = torch.autograd.grad(out, (rc, wc), g.to("cuda", dtype))
    want = torch.autograd.grad(ref, (r, w), g)
    for a, b_, what in zip(got, want, ("r", "w")):
        H.assert_close(a.double().cpu().numpy(), b_.numpy(), rtol, f"cuda grad {what}")
    assert len(list(tmp_path.rglob("*.cubin")) + list(tmp_path.rglob("*.ptx"))) == 1


@pytest.mark.parametrize("name", sorted(runtime_load.checked_in_names()))
def test_checked_in_kernels_run_correctly(name, tmp_path):
    """The checked-in generated/<name>/<name>.cu, run through the CPU emulation under the op family, equals the
    checked-in torch module (fp64 1e-12): values, first derivatives, and a second derivative (force training)."""
    for f in (runtime_load.checked_in_root() / name).iterdir():
        if f.is_file():
            (tmp_path / f.name).write_bytes(f.read_bytes())
    basis = runtime_load.checked_in_basis(name)
    launcher = H.EmulatedLauncher(H.compile_emulation(tmp_path, name), name)
    module = cb.CudaInvariants(tmp_path, name, launcher=launcher, max_threads=16, device_type="cpu")
    reference = cartinv.load(name, backend="torch")
    rng = np.random.default_rng(3)
    n_atoms, n_pairs, groups = 9, 70, 3
    centers = torch.tensor(rng.choice([a for a in range(n_atoms) if a not in (0, 5)], size=n_pairs))
    r = torch.tensor(rng.normal(size=(n_pairs, 3)), requires_grad=True)
    shape = (n_pairs, groups) if basis.channels == 1 else (n_pairs, groups, basis.channels)
    w = torch.tensor(rng.normal(size=shape), requires_grad=True)
    out = module(r, centers, w, n_atoms)
    ref = reference(r, centers, w, n_atoms)
    H.assert_close(out.detach().numpy(), ref.detach().numpy(), 1e-12, f"{name} forward")
    assert torch.all(out[[0, 5]] == 0)
    g = torch.tensor(rng.normal(size=tuple(out.shape)))
    got = torch.autograd.grad(out, (r, w), g, create_graph=True)
    want = torch.autograd.grad(ref, (r, w), g, create_graph=True)
    for a, b, what in zip(got, want, ("grad r", "grad w")):
        H.assert_close(a.detach().numpy(), b.detach().numpy(), 1e-12, f"{name} {what}")
    (second,) = torch.autograd.grad((got[0] ** 2).sum(), w)
    (second_ref,) = torch.autograd.grad((want[0] ** 2).sum(), w)
    H.assert_close(second.numpy(), second_ref.numpy(), 1e-11, f"{name} d|grad r|^2/dw")
    kernels = {s.rsplit("_", 1)[0][len(name) + 1:] for s, *_ in launcher.launches}
    assert kernels == {"forward", "invariants_backward", "pairs_backward"}


def test_one_pair_sort_per_step_and_none_stale(generated, monkeypatch):
    """Input check, forward and backward of one step share one CSR build; centres changed in place (or new
    centres) are sorted afresh, so a cached layout never gives numbers for other pairs."""
    basis, _, module = _module(generated, "channels")
    r, centers, w = _system(basis, torch.float64)
    builds = []
    real = cb.build_csr
    monkeypatch.setattr(cb, "build_csr", lambda c, n: builds.append(1) or real(c, n))
    g = torch.randn(6, 3, len(basis.invariants), dtype=torch.float64)
    first = torch.autograd.grad(module(r, centers, w, 6), (r, w), g)
    assert len(builds) == 1
    torch.autograd.grad(module(r, centers, w, 6), (r, w), g)
    assert len(builds) == 1  # the same unchanged centres: no sort at all
    moved = centers.clone()
    moved[moved == 0] = 5
    centers.copy_(moved)  # in place: same storage, new version
    out = module(r, centers, w, 6)
    assert len(builds) == 2
    fresh = _module(generated, "channels")[2](r, moved.clone(), w, 6)  # a module of its own: one more sort
    assert torch.equal(out, fresh)
    again = torch.autograd.grad(out, (r, w), g)
    want = torch.autograd.grad(fresh, (r, w), g)
    assert len(builds) == 3
    assert all(torch.equal(a, b) for a, b in zip(again, want))
    assert not all(torch.equal(a, b) for a, b in zip(again, first))
    with torch.inference_mode():
        module(r.detach(), centers.clone(), w.detach(), 6)
    assert len(builds) == 5  # inference tensors (no version counter): the check and the op each sort, no cache
