"""Run hippynn's HIP-HOP-NN layers on cartinv's generated invariants (hippynn is optional).

hippynn's ``HOPInteractionLayer`` computes, per pair p = (i, j), the sensitivities s_ν(r_p) and its STF
harmonics, accumulates E[i, ν, :, f] = sum_p s_ν(r_p) Y(r̂_p) z[j_p, f] (``envsum``), contracts with its
interaction weights V[ν, c, f] to tied moments T[i, c, :], evaluates its 13 hand-written invariants per
(atom, channel), optionally group-normalises them and mixes them to the output features.

The moments are linear in the weights, so the same T follows from per-pair tied weights
w[p, c] = sum_{ν,f} V[ν,c,f] s_ν(r_p) z[j_p, f]; ``CartinvHOPInteractionLayer`` computes these and hands
(r_p, i_p, w, n_atoms) to the module from ``cartinv.load(basis)``, whose invariants replace hippynn's. With the
``"hiphop_lmax3_deg4"`` basis (hippynn's 13 contractions in hippynn's column order) the layer reproduces
hippynn's outputs to round-off, with the same parameters and the same state_dict keys.

Use ``use_cartinv_invariants(model)`` to convert every ``HOPInteractionLayer`` inside a hippynn network (e.g.
``HipHopNNModule``, also inside ``ResNetWrapper``) in place, or ``cartinv_hop_layer(layer)`` for one layer.
"""

from __future__ import annotations

import copy
import warnings

import torch

from cartinv.errors import ArgumentError

from ..models.nn import resolve_basis

__all__ = ["DEFAULT_BASIS", "hippynn_available", "use_cartinv_invariants", "cartinv_hop_layer",
           "CartinvHOPInteractionLayer"]

DEFAULT_BASIS = "hiphop_lmax3_deg4"
_MISSING = "hippynn is required for cartinv.runtime.integrations.hippynn_adapter: pip install hippynn"

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from hippynn.layers.hiplayers import HOPInteractionLayer as _HOPInteractionLayer
except ImportError:  # hippynn is optional; the functions below say so when called
    _HOPInteractionLayer = None


def hippynn_available() -> bool:
    return _HOPInteractionLayer is not None


def _require_hippynn():
    if _HOPInteractionLayer is None:
        raise ImportError(_MISSING)


def _hop_forward(self, in_features, pair_first, pair_second, dist_pairs, tensor_rhats):
    """HOPInteractionLayer.forward with the moments and invariants computed by cartinv."""
    n_atoms = in_features.shape[0]
    n_pairs = dist_pairs.shape[0]
    self_part = self.selfint(in_features)
    sense = self.sensitivity(dist_pairs)  # [P, n_dist]
    # z V at atom level: [N, n_dist * nf_out], then gathered at the neighbour of each pair
    v = self.int_weights.permute(2, 0, 1).reshape(self.nf_in, self.n_dist * self.nf_out)
    zv = (in_features @ v).index_select(0, pair_second).reshape(n_pairs, self.n_dist, self.nf_out)
    w = torch.einsum("pn,pnc->pc", sense, zv)
    # hippynn passes unit vectors inside its l = 1 harmonics (coordinates 1..3) and the distances apart
    rvec = tensor_rhats[:, 1:4] * dist_pairs.unsqueeze(1)
    inv = self.cartinv_invariants(rvec, pair_first, w, n_atoms)  # [N, nf_out, K]
    if self.group_norm is not None:
        k = inv.shape[2]
        flat = inv.permute(0, 2, 1).reshape(n_atoms, k * self.nf_out)
        inv = self.group_norm(flat).reshape(n_atoms, k, self.nf_out).permute(0, 2, 1)
    mixed = inv.reshape(n_atoms, -1) @ self.mixing_weights.reshape(-1, self.nf_out)
    return mixed + self_part


if _HOPInteractionLayer is not None:

    class CartinvHOPInteractionLayer(_HOPInteractionLayer):
        """A hippynn ``HOPInteractionLayer`` whose moments and invariants come from cartinv.

        Made by converting an existing layer (``cartinv_hop_layer`` / ``use_cartinv_invariants``): it keeps that
        layer's parameters, sensitivities, group norm and state_dict keys, and adds the submodule
        ``cartinv_invariants`` (the module from ``cartinv.load``).
        """

        forward = _hop_forward

else:  # keeps the name importable; converting needs hippynn
    CartinvHOPInteractionLayer = None


def _convert_layer(layer, basis, backend):
    import cartinv

    if layer.invars.l_max < 1:
        raise ArgumentError("the cartinv adapter needs l_max >= 1 (pair directions come from the l = 1 harmonics)")
    module = cartinv.load(basis, backend=backend)
    n_inv = layer.n_invariants
    probe = len(resolve_basis(basis).invariants)
    if probe != n_inv:
        raise ArgumentError(f"basis {basis if isinstance(basis, str) else basis.name!r} has {probe} invariants but the "
                         f"hippynn layer (l_max={layer.invars.l_max}, n_max={layer.invars.n_max}) mixes {n_inv}")
    dtype = layer.int_weights.dtype
    device = layer.int_weights.device
    layer.__class__ = CartinvHOPInteractionLayer
    layer.cartinv_invariants = module.to(device=device, dtype=dtype)
    return layer


def cartinv_hop_layer(layer, basis=DEFAULT_BASIS, backend: str = "auto"):
    """A copy of hippynn ``HOPInteractionLayer`` ``layer`` that evaluates its invariants with cartinv."""
    _require_hippynn()
    if not isinstance(layer, _HOPInteractionLayer):
        raise TypeError(f"expected a hippynn HOPInteractionLayer, got {type(layer).__name__}")
    if isinstance(layer, CartinvHOPInteractionLayer):
        raise ArgumentError("this layer already uses cartinv invariants")
    return _convert_layer(copy.deepcopy(layer), basis, backend)


def use_cartinv_invariants(model: torch.nn.Module, basis=DEFAULT_BASIS, backend: str = "auto") -> int:
    """Convert, in place, every hippynn ``HOPInteractionLayer`` inside ``model``; returns how many.

    Parameters and state_dict keys are kept, so a trained hippynn model gives the same predictions (to
    round-off) with the ``"hiphop_lmax3_deg4"`` basis. Raises ValueError if ``model`` holds no such layer.
    """
    _require_hippynn()
    layers = [m for m in model.modules()
              if isinstance(m, _HOPInteractionLayer) and not isinstance(m, CartinvHOPInteractionLayer)]
    if not layers:
        raise ArgumentError(f"{type(model).__name__} holds no hippynn HOPInteractionLayer to convert")
    for layer in layers:
        _convert_layer(layer, basis, backend)
    return len(layers)
