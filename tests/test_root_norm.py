"""runtime/models/root_norm.py: the signed degree root with hand-written first and second derivatives."""

import pytest
import torch

from cartinv.runtime.models.root_norm import root_norm

EXPONENTS = torch.tensor([0.0, -0.5, -2.0 / 3.0, -0.75], dtype=torch.float64)  # degrees 1, 2, 3, 4


def reference(inv, c, eps):
    """The same function through autograd's chain of elementary operations."""
    return inv * (inv.abs() / eps + 1) ** EXPONENTS * c


def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    inv = torch.randn(5, 3, 4, generator=g, dtype=torch.float64) * 3
    inv[0, 0] = 0.0  # where h'' jumps (sign(0) = 0, as autograd's chain has it)
    inv[1, 0] = torch.tensor([1e-300, -1e-12, 1e6, -1e9])  # tiny and large invariants
    c = torch.tensor([1.0, 0.5, 2.0, 3.0], dtype=torch.float64)
    return inv.requires_grad_(True), c.requires_grad_(True)


@pytest.mark.parametrize("eps", [1e-3, 1.0])
def test_first_and_second_derivatives_equal_autograds_chain(eps):
    inv, c = inputs(0)
    cotangent = torch.randn(inv.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    found = []
    for fn in (lambda x, s: root_norm(x, s, EXPONENTS, eps), lambda x, s: reference(x, s, eps)):
        y = fn(inv, c)
        g_inv, g_c = torch.autograd.grad(y, (inv, c), cotangent, create_graph=True)
        # a loss on the first derivatives, as force training has: their VJP is the second derivative
        h_inv, h_c = torch.autograd.grad((g_inv * g_inv.detach().sin()).sum() + (g_c ** 2).sum(), (inv, c))
        found.append([t.detach() for t in (y, g_inv, g_c, h_inv, h_c)])
    for mine, chain in zip(*found):
        torch.testing.assert_close(mine, chain, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("eps", [1e-3, 1.0])
def test_gradcheck_and_gradgradcheck(eps):
    g = torch.Generator().manual_seed(2)
    inv = (torch.randn(3, 2, 4, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    c = torch.rand(4, generator=g, dtype=torch.float64).add_(0.5).requires_grad_(True)
    fn = (lambda x, s: root_norm(x, s, EXPONENTS, eps))
    assert torch.autograd.gradcheck(fn, (inv, c))
    assert torch.autograd.gradgradcheck(fn, (inv, c))


@pytest.mark.parametrize("eps", [1e-3, 1.0])
def test_third_order_and_inputs_left_unchanged(eps):
    """With a graph recorded through the second-order pass, autograd differentiates it again: third derivatives
    equal the chain's; the inputs and cotangents are not overwritten by the in-place passes."""
    inv, c = inputs(3)
    before = inv.detach().clone()
    found = []
    for fn in (lambda x, s: root_norm(x, s, EXPONENTS, eps), lambda x, s: reference(x, s, eps)):
        y = fn(inv, c)
        cotangent = torch.ones_like(y)
        (g_inv,) = torch.autograd.grad(y, inv, cotangent, create_graph=True)
        (h_inv,) = torch.autograd.grad(g_inv.square().sum(), inv, create_graph=True)
        third = torch.autograd.grad((h_inv * inv.detach().cos()).sum(), (inv, c))
        assert torch.equal(cotangent, torch.ones_like(y))
        found.append([h_inv.detach(), *third])
    assert torch.equal(inv.detach(), before)
    for mine, chain in zip(*found):
        torch.testing.assert_close(mine, chain, rtol=1e-12, atol=1e-300)
