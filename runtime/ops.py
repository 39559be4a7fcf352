"""torch.library custom ops for a generated basis, so models using it work with torch.compile and torch.export.

For a basis named N three ops are registered in the ``cartinv`` namespace:

- ``cartinv::N_moments(Tensor r, Tensor centers, Tensor w, int n_atoms) -> Tensor``   pairs -> T
- ``cartinv::N_invariants(Tensor T) -> Tensor``                                       T -> I
- and, for each, a ``..._vjp`` op computing the vector-Jacobian product.

Each op runs the generated PyTorch code. Its fake (meta) implementation gives output shapes only, so the
data-dependent neighbour layout inside `moments` stays hidden from the compiler. Autograd: the op's backward
calls its ``_vjp`` op; the ``_vjp`` op's own backward recomputes the VJP through the generated (differentiable)
torch code, which gives exact second derivatives: forces and force training (double backward).
"""

from __future__ import annotations

import threading

import torch

from cartinv.errors import ArgumentError

from .load import generated_dir, import_torch_module, resolve_basis

_LOCK = threading.Lock()
_REGISTERED: dict[str, "BasisOps"] = {}


def _track(x: torch.Tensor, keep_graph: bool) -> torch.Tensor:
    """x as a tensor autograd tracks: floating tensors already in a graph stay (keep_graph), others become leaves."""
    if not x.is_floating_point() or (keep_graph and x.requires_grad):
        return x
    return x.detach().requires_grad_(True)


def _vjp_via_autograd(fn, inputs, grads, differentiable):
    """sum_k <grads_k, d fn(inputs)_k / d inputs> per floating input (None for integer inputs).

    With `differentiable`, the result keeps its graph (create_graph) so it can be differentiated again.
    """
    with torch.enable_grad():
        live = [_track(x, differentiable) for x in inputs]
        outs = fn(*live)
        outs = outs if isinstance(outs, tuple) else (outs,)
        wrt = [x for x in live if x.is_floating_point()]
        got = iter(torch.autograd.grad(outs, wrt, grads, create_graph=differentiable, allow_unused=True))
    result = []
    for x in live:
        if x.is_floating_point():
            g = next(got)
            result.append(torch.zeros_like(x) if g is None else g)
        else:
            result.append(None)
    return result


def moments_scatter(module, r, centers, w, n_atoms):
    """T by index_add of per-pair outer products: trace-friendly (no data-dependent shapes), differentiable to
    any order, at the price of a [P, G * CHANNELS, N_HARMONICS] temporary. Used for second derivatives only."""
    n_pairs = r.shape[0]
    y = module.harmonics(r / torch.linalg.vector_norm(r, dim=1, keepdim=True))
    weights, groups = module.weights_matrix(w, n_pairs)
    outer = weights[:, :, None] * y[:, None, :]
    t = outer.new_zeros((n_atoms,) + tuple(outer.shape[1:])).index_add(0, centers, outer)
    return t.reshape(n_atoms, groups, module.N_COORDS)


class BasisOps:
    """The custom ops of one generated basis (registered once per process, per basis name)."""

    def __init__(self, name: str, module):
        self.name = name
        self.module = module
        self.basis_hash = module.BASIS_HASH
        ns = "cartinv"
        k, n_coords = module.N_INVARIANTS, module.N_COORDS

        def moments_impl(r, centers, w, n_atoms):
            return module.moments(r, centers, w, n_atoms)

        def invariants_impl(t):
            return module.invariants(t)

        # --- forward ops -----------------------------------------------------------------------------------
        @torch.library.custom_op(f"{ns}::{name}_moments", mutates_args=())
        def moments_op(r: torch.Tensor, centers: torch.Tensor, w: torch.Tensor, n_atoms: int) -> torch.Tensor:
            with torch.no_grad():
                return moments_impl(r, centers, w, n_atoms)

        @moments_op.register_fake
        def _(r, centers, w, n_atoms):
            groups = w.shape[1]
            return r.new_empty((n_atoms, groups, n_coords))

        @torch.library.custom_op(f"{ns}::{name}_moments_vjp", mutates_args=())
        def moments_vjp_op(r: torch.Tensor, centers: torch.Tensor, w: torch.Tensor, n_atoms: int,
                           g_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                return module.moments_vjp(r, centers, w, n_atoms, g_t)

        @moments_vjp_op.register_fake
        def _(r, centers, w, n_atoms, g_t):
            return torch.empty_like(r), torch.empty_like(w)

        @torch.library.custom_op(f"{ns}::{name}_invariants", mutates_args=())
        def invariants_op(t: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return invariants_impl(t)

        @invariants_op.register_fake
        def _(t):
            return t.new_empty(t.shape[:-1] + (k,))

        @torch.library.custom_op(f"{ns}::{name}_invariants_vjp", mutates_args=())
        def invariants_vjp_op(t: torch.Tensor, g_i: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return module.invariants_vjp(t, g_i)

        @invariants_vjp_op.register_fake
        def _(t, g_i):
            return torch.empty_like(t)

        # --- autograd --------------------------------------------------------------------------------------
        def moments_setup(ctx, inputs, output):
            r, centers, w, n_atoms = inputs
            ctx.save_for_backward(r, centers, w)
            ctx.n_atoms = n_atoms

        def moments_backward(ctx, g_t):
            r, centers, w = ctx.saved_tensors
            gr, gw = moments_vjp_op(r, centers, w, ctx.n_atoms, g_t.contiguous())
            return gr, None, gw, None

        moments_op.register_autograd(moments_backward, setup_context=moments_setup)

        def moments_vjp_setup(ctx, inputs, output):
            r, centers, w, n_atoms, g_t = inputs
            ctx.save_for_backward(r, centers, w, g_t)
            ctx.n_atoms = n_atoms

        def moments_vjp_backward(ctx, ggr, ggw):
            r, centers, w, g_t = ctx.saved_tensors
            n_atoms = ctx.n_atoms

            def vjp(a, c, b, gt):
                gr, _, gw = _vjp_via_autograd(lambda x, y, z: moments_scatter(module, x, y, z, n_atoms),
                                              (a, c, b), (gt,), True)
                return gr, gw

            d_r, _, d_w, d_gt = _vjp_via_autograd(vjp, (r, centers, w, g_t), (ggr, ggw), False)
            return d_r, None, d_w, None, d_gt

        moments_vjp_op.register_autograd(moments_vjp_backward, setup_context=moments_vjp_setup)

        def invariants_setup(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        def invariants_backward(ctx, g_i):
            (t,) = ctx.saved_tensors
            return invariants_vjp_op(t, g_i.contiguous())

        invariants_op.register_autograd(invariants_backward, setup_context=invariants_setup)

        def invariants_vjp_setup(ctx, inputs, output):
            ctx.save_for_backward(*inputs)

        def invariants_vjp_backward(ctx, gg_t):
            t, g_i = ctx.saved_tensors
            d_t, d_gi = _vjp_via_autograd(module.invariants_vjp, (t, g_i), (gg_t,), False)
            return d_t, d_gi

        invariants_vjp_op.register_autograd(invariants_vjp_backward, setup_context=invariants_vjp_setup)

        self.moments = moments_op
        self.moments_vjp = moments_vjp_op
        self.invariants = invariants_op
        self.invariants_vjp = invariants_vjp_op


def basis_ops(basis_or_name) -> BasisOps:
    """The custom ops of a basis (a checked-in name, a Basis file path or a Basis), registered on first use."""
    basis = resolve_basis(basis_or_name)
    folder, name = generated_dir(basis)
    with _LOCK:
        if name not in _REGISTERED:
            module = import_torch_module(folder, name, basis.content_hash())
            _REGISTERED[name] = BasisOps(name, module)
        elif _REGISTERED[name].basis_hash != basis.content_hash():
            raise ArgumentError(f"custom ops named {name!r} are registered for another Basis (hash "
                             f"{_REGISTERED[name].basis_hash[:12]}); give this Basis another name")
        return _REGISTERED[name]


class CustomOpInvariants(torch.nn.Module):
    """forward(r, centers, w, n_atoms) -> I [n_atoms, G, K] through the basis's custom ops (compile/export-able)."""

    def __init__(self, basis_or_name):
        super().__init__()
        self.ops = basis_ops(basis_or_name)
        self.basis_name = self.ops.name
        self.n_invariants = self.ops.module.N_INVARIANTS

    def extra_repr(self) -> str:
        return f"basis={self.basis_name!r}, invariants={self.n_invariants}"

    def forward(self, r, centers, w, n_atoms: int):
        return self.ops.invariants(self.ops.moments(r, centers, w, n_atoms))
