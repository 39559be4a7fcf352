"""runtime/kernels/torch_core.py: dual numbers on the generated row programs, and the forward-mode double backward."""

import numpy as np
import pytest
import torch

from cartinv.runtime.kernels import load as runtime_load
from cartinv.runtime.kernels import torch_core as core

NAMES = runtime_load.checked_in_names()


def kernels_of(name):
    return runtime_load.import_torch_module(runtime_load.checked_in_root() / name, name)._kernels


def test_dual_arithmetic_matches_derivatives():
    """Every operation the programs use, against the hand-written derivative, with a zero (None) tangent mixed in."""
    g = torch.Generator().manual_seed(0)
    a_v, a_d, b_v, b_d, c_v = (torch.randn(5, dtype=torch.float64, generator=g) for _ in range(5))
    a, b, c = core.Dual(a_v, a_d), core.Dual(b_v, b_d), core.Dual(c_v)
    cases = {
        "a*b": (a * b, a_v * b_v, a_d * b_v + a_v * b_d),
        "a*c": (a * c, a_v * c_v, a_d * c_v),
        "2*a-b": (2.0 * a - b, 2 * a_v - b_v, 2 * a_d - b_d),
        "c-a": (c - a, c_v - a_v, -a_d),
        "-a+c": (-a + c, -a_v + c_v, -a_d),
        "add": (torch.add(a, b, alpha=-0.5), a_v - 0.5 * b_v, a_d - 0.5 * b_d),
        "addcmul": (torch.addcmul(c, a, b, value=3.0), c_v + 3 * a_v * b_v, 3 * (a_d * b_v + a_v * b_d)),
        "addcmul const": (torch.addcmul(a, c, c, value=2.0), a_v + 2 * c_v * c_v, a_d),
        "full_like": (torch.full_like(a, 1.5), torch.full_like(a_v, 1.5), None),
    }
    x = torch.addcmul(c, c, c)  # no tangent yet: in-place updates must create one, and see their own old value
    x.add_(a, alpha=2.0)
    x.addcmul_(x, b, value=-1.0)
    xv0 = c_v + c_v * c_v + 2 * a_v
    xd0 = 2 * a_d
    cases["in place"] = (x, xv0 - xv0 * b_v, xd0 - (xd0 * b_v + xv0 * b_d))
    for what, (got, value, tangent) in cases.items():
        torch.testing.assert_close(got.v, value, rtol=1e-15, atol=1e-15, msg=what)
        if tangent is None:
            assert got.d is None, what
        else:
            torch.testing.assert_close(got.d, tangent, rtol=1e-15, atol=1e-15, msg=what)


@pytest.mark.parametrize("name", NAMES)
def test_programs_on_duals_equal_their_jacobians(name):
    """map_rows_dual on each row program equals torch.func.jvp of the same program (values and tangents)."""
    k = kernels_of(name)
    g = torch.Generator().manual_seed(1)
    u = torch.nn.functional.normalize(torch.randn(7, 3, dtype=torch.float64, generator=g), dim=1)
    T = torch.randn(7, k.n_coords, dtype=torch.float64, generator=g)
    gI = torch.randn(7, k.n_invariants, dtype=torch.float64, generator=g)
    gY = torch.randn(7, k.n_harmonics, dtype=torch.float64, generator=g)
    cases = [
        ("harmonics", (u,), k.harmonics, k.n_harmonics),
        ("harmonics_vjp", (u, gY), k.harmonics_vjp, 3),
        ("invariants", (T,), k.invariants, k.n_invariants),
        ("invariants_vjp", (T, gI), k.invariants_vjp, k.n_coords),
    ]
    for kind, inputs, fn, width in cases:
        tangents = tuple(torch.randn(x.shape, dtype=torch.float64, generator=g) for x in inputs)
        want_v, want_d = torch.func.jvp(fn, inputs, tangents)
        got_v, got_d = core.map_rows_dual(k._rows[kind], list(zip(inputs, tangents)), width)
        scale = float(want_d.abs().max()) + 1.0
        assert float((got_v - want_v).abs().max()) <= 1e-13 * scale, f"{name} {kind} value"
        assert float((got_d - want_d).abs().max()) <= 1e-13 * scale, f"{name} {kind} tangent"


def reference_double_backward(k, r, centers, w, n_atoms, gI, ggr, ggw):
    """Reverse over reverse: autograd through the torch core's differentiable backward."""
    r_, w_, g_ = (x.detach().clone().requires_grad_() for x in (r, w, gI))
    gr, gw = k.moments_vjp(r_, centers, w_, n_atoms, k.invariants_vjp(k.moments(r_, centers, w_, n_atoms), g_))
    pairs = [(o, v) for o, v in ((gr, ggr), (gw, ggw)) if v is not None]
    grads = torch.autograd.grad([o for o, _ in pairs], (r_, w_, g_), [v for _, v in pairs], allow_unused=True)
    return tuple(torch.zeros_like(x) if y is None else y for y, x in zip(grads, (r, w, gI)))


@pytest.mark.parametrize("name", NAMES)
def test_double_backward_equals_reverse_over_reverse(name):
    """Every checked-in basis, fp64, atoms 0 and 5 without neighbours, three groups: both cotangents, either
    one alone, neither (all zero); to 1e-12 of the largest entry."""
    k = kernels_of(name)
    rng = np.random.default_rng(4)
    n_atoms, n_pairs, groups = 8, 60, 3
    centers = torch.tensor(rng.choice([a for a in range(n_atoms) if a not in (0, 5)], size=n_pairs))
    r = torch.tensor(rng.normal(size=(n_pairs, 3)) * rng.uniform(0.5, 2.0, size=(n_pairs, 1)))
    shape = (n_pairs, groups) if k.channels == 1 else (n_pairs, groups, k.channels)
    w = torch.tensor(rng.normal(size=shape))
    gI = torch.tensor(rng.normal(size=(n_atoms, groups, k.n_invariants)))
    ggr, ggw = torch.tensor(rng.normal(size=r.shape)), torch.tensor(rng.normal(size=shape))
    for cot in ((ggr, ggw), (ggr, None), (None, ggw), (None, None)):
        got = k.double_backward(r, centers, w, n_atoms, gI, *cot)
        want = reference_double_backward(k, r, centers, w, n_atoms, gI, *cot)
        for a, b, what in zip(got, want, ("grad r", "grad w", "grad gI")):
            assert a.shape == b.shape, f"{name} {what} shape"
            scale = float(b.abs().max()) or 1.0
            err = float((a - b).abs().max()) / scale
            assert err <= 1e-12, f"{name} {what} (ggr {cot[0] is not None}, ggw {cot[1] is not None}): {err:.1e}"
        assert torch.all(got[2][[0, 5]] == 0), "atoms without neighbours"


def test_double_backward_in_float32_and_on_empty_input():
    k = kernels_of("lmax3_deg4")
    rng = np.random.default_rng(5)
    r = torch.tensor(rng.normal(size=(20, 3)))
    centers = torch.tensor(rng.integers(0, 4, size=20))
    w, gI = torch.tensor(rng.normal(size=(20, 2))), torch.tensor(rng.normal(size=(4, 2, k.n_invariants)))
    ggr = torch.tensor(rng.normal(size=(20, 3)))
    want = k.double_backward(r, centers, w, 4, gI, ggr, None)
    got = k.double_backward(r.float(), centers, w.float(), 4, gI.float(), ggr.float(), None)
    for a, b in zip(got, want):
        assert a.dtype == torch.float32
        assert float((a.double() - b).abs().max()) <= 1e-5 * float(b.abs().max())
    empty = k.double_backward(r[:0], centers[:0], w[:0], 3, gI[:3] * 0, ggr[:0], w[:0])
    assert [tuple(x.shape) for x in empty] == [(0, 3), (0, 2), (3, 2, k.n_invariants)]
    assert all(float(x.abs().sum()) == 0 for x in empty)
