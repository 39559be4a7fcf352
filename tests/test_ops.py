"""torch.library custom ops: opcheck, gradients to second order, torch.compile and torch.export."""

import pytest
import torch

import cartinv
from cartinv.runtime.kernels.ops import CustomOpInvariants

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
    """The family's three ops, on the CPU kernels (fused where they build)."""
    r, centers, w = data
    ops = model.ops
    w3 = w.unsqueeze(-1)
    torch.library.opcheck(ops.forward, (r.clone().requires_grad_(), w3.clone().requires_grad_(), centers, A))
    out, saved = ops.forward(r, w3, centers, A)
    g = torch.randn_like(out)
    torch.library.opcheck(ops.backward, (r.clone().requires_grad_(), w3.clone().requires_grad_(), centers, A,
                                         saved, g.requires_grad_()))
    torch.library.opcheck(ops.double_backward, (r, w3, centers, A, g.detach(), torch.randn_like(r),
                                                torch.randn_like(w3)))


@pytest.fixture(scope="module")
def torch_family():
    """A family of a Basis of its own, with no fused library: every device runs the torch core."""
    from cartinv.runtime.kernels.load import checked_in_root, import_torch_module
    from cartinv.runtime.kernels.ops import OpFamily

    module = import_torch_module(checked_in_root() / "lmax2_deg4", "lmax2_deg4")
    return OpFamily("torchcore_lmax2_deg4", module.BASIS_HASH, module._kernels)


def test_torch_core_implementation_passes_opcheck(torch_family, data):
    r, centers, w = data
    ops = torch_family
    w3 = torch.randn(P, 3, 1, dtype=torch.float64)
    torch.library.opcheck(ops.forward, (r.clone().requires_grad_(), w3.clone().requires_grad_(), centers, A))
    out, saved = ops.forward(r, w3, centers, A)
    assert saved.shape == (A, 3 * ops.torch_impl.kernels.n_coords)  # the moments, [n_atoms, G * N_COORDS]
    g = torch.randn_like(out)
    torch.library.opcheck(ops.backward, (r.clone().requires_grad_(), w3.clone().requires_grad_(), centers, A,
                                         saved, g.requires_grad_()))
    torch.library.opcheck(ops.double_backward, (r, w3, centers, A, g.detach(), torch.randn_like(r), None))


def test_torch_core_implementation_equals_the_torch_backend(torch_family, data):
    """Values, first and second derivatives of the family's torch-core implementation against the torch backend's
    own autograd (a force loss: d/dw of sum (dE/dr)^2 goes through the double backward)."""
    r, centers, _ = data
    w3 = torch.randn(P, 3, 1, dtype=torch.float64)
    ref_module = cartinv.load("lmax2_deg4", backend="torch")

    def force_loss(fn):
        rr, ww = r.clone().requires_grad_(), w3.clone().requires_grad_()
        energy = fn(rr, ww).square().sum()
        (force,) = torch.autograd.grad(energy, rr, create_graph=True)
        return (energy.detach(), force.detach()) + torch.autograd.grad(force.square().sum(), (rr, ww))

    got = force_loss(lambda a, b: torch_family.invariants(a, b, centers, A))
    ref = force_loss(lambda a, b: ref_module(a, centers, b, A))
    for x, y in zip(got, ref):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_gradcheck_through_the_torch_core_family(torch_family, data):
    r, centers, _ = data
    n = 6
    rr = r[:n].clone().requires_grad_()
    ww = torch.randn(n, 2, 1, dtype=torch.float64, requires_grad=True)
    fn = lambda a, b: torch_family.invariants(a, b, centers[:n], A)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (rr, ww))
    assert torch.autograd.gradgradcheck(fn, (rr, ww))


def _force_loss_grad_w(family, r, w, centers, n_atoms):
    rr, ww = r.clone().requires_grad_(), w.clone().requires_grad_()
    (force,) = torch.autograd.grad(family.invariants(rr, ww, centers, n_atoms).square().sum(), rr, create_graph=True)
    return torch.autograd.grad(force.square().sum(), ww)[0]


def test_torch_core_double_backward_records_no_autograd_and_starts_no_thread(torch_family, data, monkeypatch):
    """On a GPU the double backward op runs on the autograd engine's device thread: autograd inside it, on that
    thread or handed to another whose backward then needs the blocked device thread, hangs or fails (it hung on an
    H200 with a worker thread). So it is forward mode on dual numbers: it runs unchanged in inference mode (where
    nothing can be recorded) with thread pools and torch.autograd.grad disabled, and gives the same numbers."""
    import concurrent.futures

    r, centers, _ = data
    w3 = torch.randn(P, 2, 1, dtype=torch.float64)
    out, _ = torch_family.forward(r, w3, centers, A)
    args = (r, w3, centers, A, torch.randn_like(out), torch.randn_like(r), torch.randn_like(w3))
    expected = torch_family.double_backward(*args)

    def refuse(*_a, **_k):
        raise AssertionError("the double backward used autograd or a thread")

    monkeypatch.setattr(torch.autograd, "grad", refuse)
    monkeypatch.setattr(concurrent.futures.ThreadPoolExecutor, "submit", refuse)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # the torch core's CPU chunk pool stays unused
    with torch.inference_mode():
        got = torch_family.double_backward(*args)
    for x, y in zip(got, expected):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


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
