"""torch.library custom ops: opcheck, gradients to second order, torch.compile and torch.export."""

import pytest
import torch

import cartinv
from cartinv.runtime.ops import CustomOpInvariants

A, P, C = 4, 9, 2


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(P, 3, dtype=torch.float64, generator=g)
    centers = torch.randint(0, A - 1, (P,), generator=g)  # the last atom has no neighbours
    w = torch.randn(P, C, dtype=torch.float64, generator=g)
    return r, centers, w


@pytest.fixture(scope="module")
def model():
    return CustomOpInvariants("lmax3_deg4")


def test_matches_torch_backend(model, data):
    r, centers, w = data
    ref = cartinv.load("lmax3_deg4", backend="torch")(r, centers, w, A)
    out = model(r, centers, w, A)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert out[A - 1].abs().max() == 0 or torch.allclose(out[A - 1], ref[A - 1])


def test_opcheck(model, data):
    r, centers, w = data
    ops = model.ops
    t = ops.module.moments(r, centers, w, A)
    torch.library.opcheck(ops.invariants, (t.clone().requires_grad_(),))
    torch.library.opcheck(ops.moments, (r.clone().requires_grad_(), centers, w.clone().requires_grad_(), A))
    g_t = torch.randn_like(t)
    torch.library.opcheck(ops.moments_vjp, (r.clone().requires_grad_(), centers, w.clone().requires_grad_(), A,
                                            g_t.requires_grad_()))
    fast = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(ops.invariants_vjp, (t.clone().requires_grad_(),
                                               torch.randn(A, C, ops.module.N_INVARIANTS, dtype=torch.float64)),
                          test_utils=fast)


def test_opcheck_invariants_vjp_aot_dispatch(model, data):
    """AOT-traces the second derivative through the generated VJP."""
    r, centers, w = data
    ops = model.ops
    t = ops.module.moments(r, centers, w, A)
    torch.library.opcheck(ops.invariants_vjp, (t.clone().requires_grad_(),
                                               torch.randn(A, C, ops.module.N_INVARIANTS, dtype=torch.float64)))


def test_gradcheck_and_gradgradcheck(model, data):
    r, centers, w = data
    n = 6  # second derivatives through the generated VJP are costly to check numerically: keep it small
    rr, ww = r[:n].clone().requires_grad_(), w[:n].clone().requires_grad_()
    fn = lambda a, b: model(a, centers[:n], b, A)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (rr, ww))
    assert torch.autograd.gradgradcheck(fn, (rr, ww))


def test_compile_and_export(model, data):
    r, centers, w = data

    class Energy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inv = model

        def forward(self, r, centers, w):
            return self.inv(r, centers, w, A).square().sum()

    energy = Energy()
    ref = energy(r, centers, w)
    compiled = torch.compile(energy, fullgraph=True)
    torch.testing.assert_close(compiled(r, centers, w), ref, rtol=1e-12, atol=1e-12)
    rr = r.clone().requires_grad_()
    (force_c,) = torch.autograd.grad(compiled(rr, centers, w), rr)
    rr2 = r.clone().requires_grad_()
    (force_e,) = torch.autograd.grad(energy(rr2, centers, w), rr2)
    torch.testing.assert_close(force_c, force_e, rtol=1e-12, atol=1e-12)
    program = torch.export.export(energy, (r, centers, w))
    torch.testing.assert_close(program.module()(r, centers, w), ref, rtol=1e-12, atol=1e-12)
    assert any("cartinv" in str(node.target) for node in program.graph.nodes)
