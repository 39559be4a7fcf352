"""Input validation for the runtime modules: every problem raises InputError with a message naming it.

``check_inputs(r, centers, w, n_atoms, channels=...)`` checks, in this order: types; n_atoms; dtypes (float32 or
float64 for r and w, the same for both; int64 or int32 for centers); shapes; devices; int32 index range;
and, unless ``values=False``, the values (centres within 0..n_atoms-1, finite r and w, no zero-length pair
vector). It returns contiguous tensors and n_atoms as an int. Value checks read the data once (and synchronise
with the GPU); structural checks cost nothing.
"""

from __future__ import annotations

import operator

import torch

from cartinv.errors import CartinvError

FLOAT_DTYPES = (torch.float32, torch.float64)
INDEX_DTYPES = (torch.int64, torch.int32)
INT32_MAX = 2**31 - 1


class InputError(CartinvError, ValueError):
    """Inputs a cartinv module cannot evaluate; the message says which argument and why."""


def _is_tensor(name: str, x) -> None:
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def atom_count(n_atoms) -> int:
    """n_atoms as a Python int: an int or a 0-d integer tensor, not negative."""
    if isinstance(n_atoms, torch.Tensor):
        if n_atoms.dim() != 0 or n_atoms.is_floating_point() or n_atoms.dtype == torch.bool:
            raise InputError(f"n_atoms must be an integer or a 0-d integer tensor, got a tensor of shape "
                             f"{tuple(n_atoms.shape)} and dtype {n_atoms.dtype}")
        n_atoms = int(n_atoms.item())
    else:
        if isinstance(n_atoms, bool):
            raise InputError(f"n_atoms must be an integer, got the bool {n_atoms!r}")
        try:
            n_atoms = operator.index(n_atoms)  # int, numpy integers
        except TypeError:
            raise InputError(f"n_atoms must be an integer, got {type(n_atoms).__name__} {n_atoms!r}") from None
    if n_atoms < 0:
        raise InputError(f"n_atoms must be non-negative, got {n_atoms}")
    return n_atoms


def _first(mask: torch.Tensor) -> int:
    return int(torch.nonzero(mask.reshape(mask.shape[0], -1).any(dim=1))[0, 0])


def check_inputs(r, centers, w, n_atoms, *, channels: int = 1, values: bool = True):
    """Validate (r [P, 3], centers [P], w [P, G] or [P, G, channels], n_atoms); return contiguous copies.

    channels: the Basis's channel count N (w [P, G] is accepted only when N == 1).
    values: also check the data (range of centres, NaN/inf, zero-length vectors).
    """
    _is_tensor("r", r)
    _is_tensor("centers", centers)
    _is_tensor("w", w)
    n_atoms = atom_count(n_atoms)

    if r.dtype not in FLOAT_DTYPES:
        raise InputError(f"r has dtype {r.dtype}; only torch.float32 and torch.float64 are supported")
    if w.dtype != r.dtype:
        raise InputError(f"w has dtype {w.dtype} but r has {r.dtype}; pass both in the same floating dtype")
    if centers.dtype not in INDEX_DTYPES:
        raise InputError(f"centers has dtype {centers.dtype}; use torch.int64 or torch.int32 atom indices")

    if r.dim() != 2 or r.shape[1] != 3:
        raise InputError(f"r must have shape [P, 3] (pair vectors), got {tuple(r.shape)}")
    n_pairs = r.shape[0]
    if centers.shape != (n_pairs,):
        raise InputError(f"centers must have shape [P] = [{n_pairs}] like r, got {tuple(centers.shape)}")
    if w.dim() == 2:
        if channels != 1:
            raise InputError(f"w has shape {tuple(w.shape)}, but this Basis couples {channels} channels: "
                             f"pass weights of shape [P, G, {channels}]")
    elif w.dim() != 3 or w.shape[2] != channels:
        expected = "[P, C] or [P, C, 1]" if channels == 1 else f"[P, G, {channels}]"
        raise InputError(f"w must have shape {expected}, got {tuple(w.shape)}")
    if w.shape[0] != n_pairs:
        raise InputError(f"w has {w.shape[0]} rows but r has {n_pairs} pairs")

    if not (r.device == centers.device == w.device):
        raise InputError(f"inputs on different devices: r on {r.device}, centers on {centers.device}, "
                         f"w on {w.device}")

    if centers.dtype == torch.int32:
        if n_atoms > INT32_MAX:
            raise InputError(f"n_atoms = {n_atoms} does not fit int32 centers; pass int64 centers")
        if n_pairs > INT32_MAX:
            raise InputError(f"{n_pairs} pairs cannot be indexed with int32; pass int64 centers")

    if values and n_pairs:
        low, high = int(centers.min()), int(centers.max())
        if low < 0 or high >= n_atoms:
            bad = _first((centers < 0) | (centers >= n_atoms))
            raise InputError(f"centers[{bad}] = {int(centers[bad])} is out of range for n_atoms = {n_atoms} "
                             f"(valid: 0..{n_atoms - 1})")
        finite_r = torch.isfinite(r)
        if not bool(finite_r.all()):
            bad = _first(~finite_r)
            raise InputError(f"r[{bad}] = {r[bad].tolist()} contains NaN or inf")
        finite_w = torch.isfinite(w)
        if not bool(finite_w.all()):
            bad = _first(~finite_w)
            raise InputError(f"w[{bad}] contains NaN or inf")
        zero = torch.linalg.vector_norm(r.detach(), dim=1) == 0
        if bool(zero.any()):
            bad = _first(zero)
            raise InputError(f"pair vector r[{bad}] has zero length (an atom paired with itself, or two atoms at "
                             f"the same position): its direction is undefined")
    return r.contiguous(), centers.contiguous(), w.contiguous(), n_atoms
