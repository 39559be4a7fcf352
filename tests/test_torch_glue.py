"""The C++ CPU kernels and autograd of the op family (runtime/kernels/torch_glue.py + csrc/torch_ops.cpp): in use by
default, bit for bit the Python path's results with first and second derivatives (also under AOTAutograd), calls
with wrong tensors refused with an error, and the Python path (one warning) where the glue is unavailable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cartinv
from cartinv.runtime.kernels import cpu_backend, ops as ops_module, torch_glue
from cartinv.runtime.kernels import load as runtime_load

pytestmark = pytest.mark.skipif(not cpu_backend.available()[0], reason="no C++ compiler for the fused CPU backend")


def environment(seed=0, n_atoms=9, n_pairs=80, groups=7, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    r = torch.tensor(rng.normal(size=(n_pairs, 3)), dtype=dtype)
    w = torch.tensor(rng.normal(size=(n_pairs, groups, 1)), dtype=dtype)
    return r, w, torch.tensor(rng.integers(0, n_atoms - 1, size=n_pairs)), n_atoms


def families(name="lmax3_deg4"):
    """(the Basis's family, served by the glue; a second family on the same library with Python kernels)."""
    basis = runtime_load.resolve_basis(name)
    folder, generated = runtime_load.generated_dir(basis)
    native = cpu_backend.fused_ops(folder, generated, basis.content_hash())
    python = ops_module._registered(folder, generated, f"{generated}_pythonpath", basis.content_hash(), None)
    if python.library is None:
        loaded = torch_glue._LOADED.copy()
        torch_glue._LOADED.clear()
        torch_glue._LOADED["error"] = "refused by the test"
        try:
            with pytest.warns(runtime_load.BackendWarning, match="C\\+\\+ op glue is unavailable \\(refused by the test"):
                python.attach_library(native.library)
        finally:
            torch_glue._LOADED.clear()
            torch_glue._LOADED.update(loaded)
    return native, python


def derivatives(family, r, w, c, n):
    """I, its gradients and the gradients of a force-like term (second derivatives through the double backward)."""
    r, w = r.clone().requires_grad_(), w.clone().requires_grad_()
    out = family.forward(r, w, c, n)[0]
    gr, gw = torch.autograd.grad((out * out.detach().cos()).sum(), (r, w), create_graph=True)
    second = torch.autograd.grad((gr.square().sum() + (gw * w).sum()), (r, w))
    return (out.detach(), gr.detach(), gw.detach(), *second)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_glue_serves_the_family_with_the_python_paths_numbers(dtype):
    native, python = families()
    assert native.native and not python.native
    r, w, c, n = environment(dtype=dtype)
    for got, want in zip(derivatives(native, r, w, c, n), derivatives(python, r, w, c, n)):
        assert torch.equal(got, want)
    assert torch.equal(native.infer(r, w, c, n), python.infer(r, w, c, n))


def test_gradcheck_gradgradcheck_and_aot_autograd():
    native, _ = families()
    r, w, c, n = environment(n_atoms=4, n_pairs=12, groups=3)
    r.requires_grad_(), w.requires_grad_()
    assert torch.autograd.gradcheck(lambda r, w: native.forward(r, w, c, n)[0], (r, w))
    assert torch.autograd.gradgradcheck(lambda r, w: native.forward(r, w, c, n)[0], (r, w))

    def energy_and_forces(r, w):
        out = native.forward(r, w, c, n)[0]
        e = (out * out).sum()
        return e, torch.autograd.grad(e, r, create_graph=True)[0]

    compiled = torch.compile(energy_and_forces, backend="aot_eager", fullgraph=False)
    e0, f0 = energy_and_forces(r, w)
    e1, f1 = compiled(r, w)
    assert torch.allclose(e0, e1, rtol=1e-14, atol=0) and torch.allclose(f0, f1, rtol=1e-13, atol=1e-13)
    torch.library.opcheck(native.forward, (r, w, c, n))

    def energy(r, w):
        return native.forward(r, w, c, n)[0].square().sum()

    whole = torch.compile(energy, backend="aot_eager", fullgraph=True)  # one graph, backward traced through C++
    assert torch.allclose(torch.autograd.grad(whole(r, w), r)[0], torch.autograd.grad(energy(r, w), r)[0],
                          rtol=1e-14, atol=0)


@pytest.mark.parametrize("bad", ["w dtype", "w channels", "centers dtype", "centers length", "saved shape",
                                 "grad_out shape", "negative n_atoms"])
def test_wrong_tensors_are_refused_not_read(bad):
    """Direct calls of the ops (no module checks in front) with tensors the entry points cannot take: an error
    naming the tensor, never a read out of bounds."""
    native, _ = families()
    r, w, c, n = environment()
    I, saved = native.forward(r, w, c, n)
    args = {"r": r, "w": w, "c": c, "n": n, "saved": saved, "g": torch.ones_like(I)}
    key, value, match = {"w dtype": ("w", w.float(), "w has dtype"),
                         "w channels": ("w", w.expand(-1, -1, 2).contiguous(), "w must have shape"),
                         "centers dtype": ("c", c.int(), "centers must be int64"),
                         "centers length": ("c", c[1:], "centers must have shape"),
                         "saved shape": ("saved", saved[:, 1:].contiguous(), "saved must be"),
                         "grad_out shape": ("g", torch.ones(n, 3, I.shape[2], dtype=r.dtype), "grad_out must be"),
                         "negative n_atoms": ("n", -1, "n_atoms must be >= 0")}[bad]
    args[key] = value
    with pytest.raises(RuntimeError, match=match):
        if key in ("saved", "g"):
            native.backward(args["r"], args["w"], args["c"], args["n"], args["saved"], args["g"])
        else:
            native.forward(args["r"], args["w"], args["c"], args["n"])


def test_bad_values_are_value_errors_and_infer_is_not_differentiable():
    native, _ = families()
    r, w, c, n = environment()
    w[3, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="^fused CPU forward: a moment is NaN or inf"):
        native.infer(r, w, c, n)
    r, w, c, n = environment()
    with pytest.raises(RuntimeError, match="_infer is not differentiable"):
        native.infer(r.requires_grad_(), w, c, n)
    with torch.no_grad():
        assert not native.infer(r, w, c, n).requires_grad


def test_outputs_of_a_call_are_never_reused_while_held():
    """The C++ pools hand a storage out again only when nothing else holds it (as cpu_backend.BufferPool)."""
    native, _ = families()
    r, w, c, n = environment(n_pairs=300, groups=9)
    first = native.infer(r, w, c, n)
    kept = first.clone()
    second = native.infer(2 * r, w, c, n)
    assert second.data_ptr() != first.data_ptr() and torch.equal(first, kept)
    address = first.data_ptr()
    del first
    assert native.infer(r, w, c, n).data_ptr() == address  # free again: reused
    with torch.inference_mode():  # never pooled: such tensors could not be saved for a backward later
        assert native.infer(r, w, c, n).data_ptr() != address
