"""MACE's symmetric contraction as a kernel-benchmark peer: the invariant product basis users would pick instead.

``MaceInvariants(channels, dtype)(r, centers, w, n_atoms) -> [n_atoms, channels, 1]``: e3nn real spherical
harmonics of l = 0..3 per pair, the moments A [n_atoms, channels, 16] = sum over pairs of w Y (MACE's
atomic basis with the same tied radial weights as cartinv's benchmark), then mace-torch's
``SymmetricContraction`` (correlation 3, one element, output channels x 0e). It is not the same function as
cartinv's basis: MACE contracts with learned weights into one invariant per channel, where cartinv evaluates every
invariant of the basis; the benchmark reports its time side by side, not an agreement.

mace-torch's pinned e3nn unpickles its constants with torch.load(weights_only=True), which torch 2.13 refuses for
``slice`` unless it is allowed first (done here before the import).
"""

from __future__ import annotations

import torch

ORDERS = (0, 1, 2, 3)


def _imports():
    torch.serialization.add_safe_globals([slice])
    from e3nn import o3
    from mace.modules.symmetric_contraction import SymmetricContraction

    return o3, SymmetricContraction


class MaceInvariants(torch.nn.Module):
    """Moments + MACE symmetric contraction (correlation 3, L = 3 inputs) on pair data."""

    def __init__(self, channels: int, dtype=torch.float64, correlation: int = 3, seed: int = 0):
        super().__init__()
        o3, SymmetricContraction = _imports()
        self.o3 = o3
        self.irreps_sh = o3.Irreps("+".join(f"{l}{'e' if l % 2 == 0 else 'o'}" for l in ORDERS))
        irreps_in = o3.Irreps("+".join(f"{channels}x{l}{'e' if l % 2 == 0 else 'o'}" for l in ORDERS))
        torch.manual_seed(seed)
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # the coupling tensors are built in the default dtype: float64 needs them exact
        try:
            self.contraction = SymmetricContraction(irreps_in, o3.Irreps(f"{channels}x0e"), correlation=correlation,
                                                    num_elements=1).to(dtype)
        finally:
            torch.set_default_dtype(default)

    def forward(self, r, centers, w, n_atoms):
        y = self.o3.spherical_harmonics(self.irreps_sh, r, normalize=True, normalization="component")  # [P, 16]
        a = torch.zeros((n_atoms, w.shape[1], y.shape[1]), dtype=r.dtype, device=r.device)
        a = a.index_add(0, centers, w[:, :, None] * y[:, None, :])
        species = torch.ones((n_atoms, 1), dtype=r.dtype, device=r.device)
        return self.contraction(a, species)[:, :, None]
