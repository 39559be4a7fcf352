"""On a real GPU: every checked-in basis through the fused CUDA kernels and through the torch backend on the device,
against the torch backend on the CPU (fp64 to 1e-12, fp32 to 5e-6), with first and second derivatives.

Every test here needs CuPy, NVRTC and a CUDA device; without them the module is skipped with the reason printed
(`pytest -rs`). `bash benchmarks/gpu_check.sh` runs it on a GPU machine.
"""

import numpy as np
import pytest
import torch

import cartinv
from cartinv.runtime.kernels import cuda_backend
from cartinv.runtime.kernels import load as runtime_load
from cartinv.runtime.kernels.checks import InputError

OK, WHY = cuda_backend.available()
pytestmark = pytest.mark.skipif(not OK, reason=f"needs a CUDA GPU with CuPy: {WHY}")

NAMES = runtime_load.checked_in_names()


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """One NVRTC cache for the module: each basis compiles once, later loads read the cached binary."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CARTINV_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def system(seed=0, n_atoms=60, neighbours=40, groups=40, channels=1, dtype=torch.float64):
    """Random pairs in shuffled order; atoms 0 and n_atoms - 1 have no neighbours. More pairs per atom than a warp
    and more groups than a block's lanes, so every loop and grid dimension of the kernels is exercised."""
    rng = np.random.default_rng(seed)
    centers = np.repeat(np.arange(1, n_atoms - 1), rng.poisson(neighbours, size=n_atoms - 2))
    rng.shuffle(centers)
    r = rng.normal(size=(centers.size, 3)) * rng.uniform(0.7, 2.0, size=(centers.size, 1))
    shape = (centers.size, groups) if channels == 1 else (centers.size, groups, channels)
    w = rng.normal(size=shape)
    return (torch.tensor(r, dtype=dtype), torch.tensor(centers), torch.tensor(w, dtype=dtype), n_atoms)


def assert_close(got, want, rtol, what):
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    scale = want.abs().amax().clamp_min(1e-300)
    err = float((got - want).abs().amax() / scale)
    assert err <= rtol, f"{what}: max deviation {err:.2e} of the largest entry (allowed {rtol:.0e})"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("backend", ["cuda", "torch"])
@pytest.mark.parametrize("name", NAMES)
def test_gpu_matches_cpu(name, backend, dtype):
    channels = runtime_load.checked_in_basis(name).channels
    r, centers, w, n_atoms = system(channels=channels)
    cpu = cartinv.load(name, backend="torch")
    gpu = cartinv.load(name, backend=backend)
    assert gpu.active_backend("cuda") == backend
    rg = r.to("cuda", dtype).requires_grad_()
    wg = w.to("cuda", dtype).requires_grad_()
    rc, wc = r.clone().requires_grad_(), w.clone().requires_grad_()
    out = gpu(rg, centers.cuda(), wg, n_atoms)
    ref = cpu(rc, centers, wc, n_atoms)
    rtol = 1e-12 if dtype == torch.float64 else 5e-6
    assert out.shape == ref.shape and out.dtype == dtype and out.device.type == "cuda"
    assert_close(out, ref, rtol, f"{name} {backend} forward")
    assert torch.all(out[[0, n_atoms - 1]] == 0), "atoms without neighbours have zero invariants"
    g = torch.randn(ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = torch.autograd.grad(out, (rg, wg), g.to("cuda", dtype))
    want = torch.autograd.grad(ref, (rc, wc), g)
    for a, b, what in zip(got, want, ("grad r", "grad w")):
        assert_close(a, b, rtol if dtype == torch.float64 else 5e-5, f"{name} {backend} {what}")


@pytest.mark.parametrize("name", ["lmax3_deg4", "lmax3_flexible"])
def test_force_training_second_derivatives_on_gpu(name):
    """d/dw of a force loss (double backward through the CUDA backward) equals the CPU torch backend's."""
    r, centers, w, n_atoms = system(n_atoms=12, neighbours=20, groups=6)
    results = []
    for device, backend in (("cuda", "cuda"), ("cpu", "torch")):
        model = cartinv.load(name, backend=backend)
        rr = r.to(device).requires_grad_()
        ww = w.to(device).requires_grad_()
        energy = (model(rr, centers.to(device), ww, n_atoms) ** 2).sum()
        (force,) = torch.autograd.grad(energy, rr, create_graph=True)
        loss = (force**2).sum()
        results.append(torch.autograd.grad(loss, ww)[0])
    assert_close(results[0], results[1], 1e-11, f"{name} d(force loss)/dw")


def test_gradcheck_on_gpu():
    r, centers, w, n_atoms = system(n_atoms=4, neighbours=3, groups=2)
    model = cartinv.load("lmax3_deg4", backend="cuda")
    fn = lambda r_, w_: model(r_, centers.cuda(), w_, n_atoms)  # noqa: E731
    args = (r.cuda().requires_grad_(), w.cuda().requires_grad_())
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


def test_cuda_inputs_are_validated_like_cpu_ones():
    r, centers, w, n_atoms = system(n_atoms=5, neighbours=4, groups=2)
    model = cartinv.load("lmax3_deg4", backend="cuda")
    bad = r.cuda().clone()
    bad[3] = 0.0
    with pytest.raises(InputError, match=r"r\[3\] has zero length"):
        model(bad, centers.cuda(), w.cuda(), n_atoms)
    with pytest.raises(InputError, match="device"):
        model(r.cuda(), centers.cuda(), w, n_atoms)  # weights left on the CPU
