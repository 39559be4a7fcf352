"""The one torch.library op family of a Basis: forward, backward and double backward, on every device.

For a Basis named N with content hash H, three ops are registered in the ``cartinv`` namespace (once per process):

- ``cartinv::N_H12_forward(r, w, centers, n_atoms) -> (I, saved)``
- ``cartinv::N_H12_infer(r, w, centers, n_atoms) -> I``: the forward without ``saved``, for calls that need no
  gradient (no_grad, inference mode, inputs without requires_grad); not differentiable
- ``cartinv::N_H12_backward(r, w, centers, n_atoms, saved, grad_I) -> (grad_r, grad_w)``
- ``cartinv::N_H12_double_backward(r, w, centers, n_atoms, grad_I, grad_grad_r?, grad_grad_w?)
  -> (grad_r, grad_w, grad_grad_I)``

with r [P, 3], w [P, G, CHANNELS], centers [P] int64 and ``saved`` what the forward keeps for the backward (the
moments, in the implementation's own layout). Autograd is wired forward -> backward -> double backward, so the
invariants are differentiable twice through the one family (gradcheck, gradgradcheck, opcheck, torch.compile
and torch.export all see these three ops).

Implementations, attached per device type (``OpFamily.attach``): the CPU kernels are the fused C++ library of
runtime/kernels/cpu_backend.py where it builds, registered with their autograd in C++ (runtime/kernels/torch_glue.py,
in place of the Python kernels and autograd below; the same formulas, without Python on the eager path); the CUDA forward and backward are the generated CUDA kernels
(runtime/kernels/cuda_backend.py, ``CudaKernelsImpl``) where CuPy and a GPU are present. Everything else (and
the CUDA double backward) runs the torch core (runtime/kernels/torch_core.py) with the basis's generated
programs: explicit forward, backward and double backward (the last in forward mode, on dual numbers). The torch backend
(``cartinv.load(..., backend="torch")``) is that same torch core, used directly.
"""

from __future__ import annotations

import threading
from typing import Optional

import torch

from cartinv.codegen.naming import c_identifier

from .load import generated_dir, import_torch_module, resolve_basis

_LOCK = threading.Lock()
_FAMILIES: dict[tuple[str, str], "OpFamily"] = {}


def _contiguous(*tensors):
    return tuple(None if t is None else t.contiguous() for t in tensors)


class TorchCoreImpl:
    """The family's implementation on the torch core of one generated module (any device)."""

    def __init__(self, kernels):
        self.kernels = kernels

    def saved_width(self, groups: int) -> int:
        return groups * self.kernels.n_coords

    def forward(self, r, w, centers, n_atoms: int):
        k = self.kernels
        with torch.no_grad():
            moments = k.moments(r, centers, w, n_atoms)
            return k.invariants(moments).contiguous(), moments.reshape(n_atoms, -1).contiguous()

    def infer(self, r, w, centers, n_atoms: int):
        with torch.no_grad():
            return self.kernels.invariants(self.kernels.moments(r, centers, w, n_atoms)).contiguous()

    def backward(self, r, w, centers, n_atoms: int, saved, grad_out):
        k = self.kernels
        with torch.no_grad():
            grad_moments = k.invariants_vjp(saved.reshape(n_atoms, w.shape[1], k.n_coords), grad_out)
            grad_r, grad_w = k.moments_vjp(r, centers, w, n_atoms, grad_moments)
            return grad_r.contiguous(), grad_w.contiguous()

    def double_backward(self, r, w, centers, n_atoms: int, grad_out, grad_grad_r, grad_grad_w):
        """The VJP of (r, w, grad_out) -> backward(...) with cotangents (grad_grad_r, grad_grad_w): the torch
        core's forward-mode double backward (no autograd inside the op, so no thread or dispatch tricks)."""
        if grad_grad_r is None and grad_grad_w is None:
            return torch.zeros_like(r), torch.zeros_like(w), torch.zeros_like(grad_out)
        with torch.no_grad():
            grads = self.kernels.double_backward(r, centers, w, n_atoms, grad_out, grad_grad_r, grad_grad_w)
            return tuple(g.contiguous() for g in grads)


class CudaKernelsImpl:
    """The family's forward and backward on the generated CUDA kernels (cuda_backend.KernelRunner: CuPy + NVRTC,
    or the tests' CPU emulation of the same kernels); the double backward stays the torch core's on the device."""

    def __init__(self, runner):
        from .cuda_backend import LayoutCache

        self.runner = runner
        self.n_invariants = runner.n_invariants
        self.layouts = LayoutCache()  # forward and backward of one step share the pair sort

    def forward(self, r, w, centers, n_atoms: int):
        out, moments = self.runner.forward(r, w, self.layouts.layout(centers, n_atoms), store_moments=True)
        return out, moments.reshape(n_atoms, w.shape[1] * self.runner.n_coords)

    def infer(self, r, w, centers, n_atoms: int):
        return self.runner.forward(r, w, self.layouts.layout(centers, n_atoms), store_moments=False)[0]

    def backward(self, r, w, centers, n_atoms: int, saved, grad_out):
        moments = saved.reshape(n_atoms, w.shape[1], self.runner.n_coords)
        return self.runner.backward(r, w, moments, grad_out, self.layouts.layout(centers, n_atoms))


class OpFamily:
    """The op family of one Basis (see the module docstring). ``library``: a cpu_backend.FusedLibrary, whose
    kernels then serve CPU tensors; may be attached later with ``attach_library``; other devices' kernels with
    ``attach``."""

    def __init__(self, name: str, basis_hash: str, kernels, library=None):
        self.name, self.basis_hash = name, basis_hash
        self.torch_impl = impl = TorchCoreImpl(kernels)
        self.library = None
        self.native = False  # CPU kernels and autograd in C++ (attach_library)
        self.devices: dict[str, object] = {}  # device type -> the implementation attached for it
        self.prefix = prefix = f"cartinv::{c_identifier(name)}_{basis_hash[:12]}"
        n_invariants = kernels.n_invariants

        def saved_width(r, groups):
            attached = self.devices.get(r.device.type)
            if hasattr(attached, "moments_width"):  # the fused CPU library keeps its own layout
                return attached.moments_width(groups, r.dtype)
            return impl.saved_width(groups)

        @torch.library.custom_op(f"{prefix}_forward", mutates_args=())
        def forward(r: torch.Tensor, w: torch.Tensor, centers: torch.Tensor,
                    n_atoms: int) -> tuple[torch.Tensor, torch.Tensor]:
            r, w, centers = _contiguous(r, w, centers)
            return impl.forward(r, w, centers, n_atoms)

        @forward.register_fake
        def _(r, w, centers, n_atoms):
            groups = w.shape[1]
            return r.new_empty((n_atoms, groups, n_invariants)), r.new_empty((n_atoms, saved_width(r, groups)))

        @torch.library.custom_op(f"{prefix}_infer", mutates_args=())
        def infer(r: torch.Tensor, w: torch.Tensor, centers: torch.Tensor, n_atoms: int) -> torch.Tensor:
            r, w, centers = _contiguous(r, w, centers)
            return impl.infer(r, w, centers, n_atoms)

        @infer.register_fake
        def _(r, w, centers, n_atoms):
            return r.new_empty((n_atoms, w.shape[1], n_invariants))

        @torch.library.custom_op(f"{prefix}_backward", mutates_args=())
        def backward(r: torch.Tensor, w: torch.Tensor, centers: torch.Tensor, n_atoms: int,
                     saved: torch.Tensor, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return impl.backward(*_contiguous(r, w, centers), n_atoms, *_contiguous(saved, grad_out))

        @backward.register_fake
        def _(r, w, centers, n_atoms, saved, grad_out):
            return torch.empty_like(r), torch.empty_like(w)

        @torch.library.custom_op(f"{prefix}_double_backward", mutates_args=())
        def double_backward(r: torch.Tensor, w: torch.Tensor, centers: torch.Tensor, n_atoms: int,
                            grad_out: torch.Tensor, grad_grad_r: Optional[torch.Tensor],
                            grad_grad_w: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            args = _contiguous(r, w, centers, grad_out, grad_grad_r, grad_grad_w)
            return impl.double_backward(args[0], args[1], args[2], n_atoms, *args[3:])

        @double_backward.register_fake
        def _(r, w, centers, n_atoms, grad_out, grad_grad_r, grad_grad_w):
            return torch.empty_like(r), torch.empty_like(w), torch.empty_like(grad_out)

        def forward_setup(ctx, inputs, output):
            r, w, centers, n_atoms = inputs
            ctx.n_atoms = n_atoms
            ctx.save_for_backward(r, w, centers, output[1])
            ctx.mark_non_differentiable(output[1])
            ctx.set_materialize_grads(False)  # else autograd zero-fills a saved-sized gradient on every call

        def forward_grad(ctx, grad_out, _grad_saved):
            if grad_out is None:
                return None, None, None, None
            r, w, centers, saved = ctx.saved_tensors
            grad_r, grad_w = backward(r, w, centers, ctx.n_atoms, saved, grad_out)
            return grad_r, grad_w, None, None

        def backward_setup(ctx, inputs, output):
            r, w, centers, n_atoms, _saved, grad_out = inputs
            ctx.n_atoms = n_atoms
            ctx.save_for_backward(r, w, centers, grad_out)

        def backward_grad(ctx, grad_grad_r, grad_grad_w):
            r, w, centers, grad_out = ctx.saved_tensors
            grad_r, grad_w, grad_grad_out = double_backward(r, w, centers, ctx.n_atoms, grad_out, grad_grad_r,
                                                            grad_grad_w)
            # saved is a function of (r, w): the double backward differentiates through it already
            return grad_r, grad_w, None, None, None, grad_grad_out

        forward.register_autograd(forward_grad, setup_context=forward_setup)
        backward.register_autograd(backward_grad, setup_context=backward_setup)
        self.forward, self.infer, self.backward, self.double_backward = forward, infer, backward, double_backward
        if library is not None:
            self.attach_library(library)

    def attach_library(self, library) -> None:
        """Serve CPU tensors with the fused kernels of `library` (built for this Basis), from now on: through the
        C++ kernels and autograd of runtime/kernels/torch_glue.py where it builds (``native``), else through
        Python kernels on the same library (one warning naming why)."""
        if self.library is not None:
            return
        from . import cpu_backend, torch_glue

        try:
            torch_glue.attach(self.prefix, library)
            self.devices["cpu"] = library
            self.native = True
        except cpu_backend.CpuBackendError as exc:
            import warnings

            from .load import BackendWarning

            warnings.warn(f"cartinv: the C++ op glue is unavailable ({exc}); the fused CPU kernels run through "
                          f"Python's autograd instead (same results, more time per call)", BackendWarning,
                          stacklevel=2)
            self.attach("cpu", library)
        self.library = library

    def attach(self, device_type: str, impl) -> None:
        """Serve tensors on ``device_type`` with ``impl`` from now on (once per device type): its ``forward``,
        ``infer`` (the forward without the saved moments) and ``backward``, and its ``double_backward`` where it
        has one (else the torch core's, on that device)."""
        if device_type in self.devices:
            return
        if impl.n_invariants != self.torch_impl.kernels.n_invariants:
            raise ValueError(f"{impl!r} has {impl.n_invariants} invariants, the Basis "
                             f"{self.torch_impl.kernels.n_invariants}")

        @self.forward.register_kernel(device_type)
        def _(r, w, centers, n_atoms):
            r, w, centers = _contiguous(r, w, centers)
            return impl.forward(r, w, centers, n_atoms)

        @self.infer.register_kernel(device_type)
        def _(r, w, centers, n_atoms):
            r, w, centers = _contiguous(r, w, centers)
            return impl.infer(r, w, centers, n_atoms)

        @self.backward.register_kernel(device_type)
        def _(r, w, centers, n_atoms, saved, grad_out):
            r, w, centers, saved, grad_out = _contiguous(r, w, centers, saved, grad_out)
            return impl.backward(r, w, centers, n_atoms, saved, grad_out)

        if hasattr(impl, "double_backward"):
            @self.double_backward.register_kernel(device_type)
            def _(r, w, centers, n_atoms, grad_out, grad_grad_r, grad_grad_w):
                args = _contiguous(r, w, centers, grad_out, grad_grad_r, grad_grad_w)
                return impl.double_backward(args[0], args[1], args[2], n_atoms, *args[3:])

        self.devices[device_type] = impl

    def invariants(self, r, w, centers, n_atoms: int):
        """I [n_atoms, G, N_INVARIANTS] from r [P, 3], w [P, G, CHANNELS], int64 centres: differentiable twice.
        A call that cannot need a gradient runs the infer op, which does not write the moments."""
        if torch.is_grad_enabled() and (r.requires_grad or w.requires_grad):
            return self.forward(r, w, centers, n_atoms)[0]
        return self.infer(r, w, centers, n_atoms)

    def evaluate(self, r, centers, w, n_atoms: int):
        """``invariants`` in a module's argument order, w [P, G] accepted when CHANNELS == 1, any integer centres."""
        if w.dim() == 2:
            w = w.unsqueeze(-1)
        return self.invariants(r, w, centers.to(torch.int64), int(n_atoms))


def family(folder, name: str, basis_hash: str, library=None) -> OpFamily:
    """The op family of a Basis (registered once per process); `library`, when given, serves CPU tensors."""
    return _registered(folder, name, name, basis_hash, library)


def torch_core_family(folder, name: str, basis_hash: str) -> OpFamily:
    """The Basis's ops with the torch core on every device, registered apart (``cartinv::<name>_torchcore_...``):
    what a module evaluates with where its backend is unavailable, so the fallback keeps the family's autograd
    path and never picks up kernels attached to the main family."""
    return _registered(folder, name, f"{name}_torchcore", basis_hash, None)


def _registered(folder, name: str, op_name: str, basis_hash: str, library) -> OpFamily:
    key = (op_name, basis_hash)
    known = _FAMILIES.get(key)
    if known is not None and (library is None or known.library is not None):
        return known  # no lock on this path: it runs on every call, also inside torch.compile's tracing
    with _LOCK:
        if key not in _FAMILIES:
            kernels = import_torch_module(folder, name, basis_hash)._kernels
            _FAMILIES[key] = OpFamily(op_name, basis_hash, kernels, library)
        elif library is not None:
            _FAMILIES[key].attach_library(library)
        return _FAMILIES[key]


class CustomOpInvariants(torch.nn.Module):
    """forward(r, centers, w, n_atoms) -> I [n_atoms, G, K] through the Basis's op family (compile/export-able):
    the fused CPU kernels where a compiler is found, the torch core elsewhere."""

    def __init__(self, basis_or_name):
        super().__init__()
        basis = resolve_basis(basis_or_name)
        folder, name = generated_dir(basis)
        library = None
        from . import cpu_backend

        try:
            library = cpu_backend.fused_library(folder, name, basis.content_hash(), quiet=False)
        except cpu_backend.CpuBackendError:
            library = None  # the torch core serves CPU tensors too
        self.ops = family(folder, name, basis.content_hash(), library)
        self.basis_name = name
        self.n_invariants = self.ops.torch_impl.kernels.n_invariants

    def extra_repr(self) -> str:
        return f"basis={self.basis_name!r}, invariants={self.n_invariants}"

    def forward(self, r, centers, w, n_atoms: int):
        return self.ops.evaluate(r, centers, w, n_atoms)
