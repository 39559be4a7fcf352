"""The models of the chemistry benchmark, each with the same contract so one training protocol fits all.

Every builder returns ``(model, predict_fn)`` where ``predict_fn(model, batch, training, want_stress)`` gives
structure energies [S] and forces [N, 3] (forces by autograd through the pair vectors rij = r_j − r_i, exactly as
for a ``CartinvPotential``), so ``cartinv.runtime.training.fit_model`` trains and scores all of them alike.

- cartinv: ``CartinvPotential`` with any basis (its own predict function);
- hippynn: HIP-NN-TS (``HipnnQuad``, l <= 2 tensor sensitivities) and HIP-HOP-NN (``HipHopNNModule``, l <= 3,
  n <= 4) from ``hippynn.networks`` with hippynn's hierarchical ``HEnergy`` head: hippynn's own modules, fed the
  same flat pair list;
- MACE: ``mace.modules.ScaleShiftMACE`` (mace-torch) with MACE's own radial basis, interactions and symmetric
  contraction; edges are given as (sender j, receiver i) with zero positions and the pair vectors as shifts, so
  MACE sees exactly rij and the gradient flows to rij.

Every model predicts E = sum_i e0[Z_i] + scale x (network output), with the same fitted e0 and force-RMS scale.
"""

from __future__ import annotations

import os
import warnings

import torch

__all__ = ["build", "MODEL_KINDS", "n_parameters"]

ATOMIC_NUMBERS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9, "S": 16, "Cl": 17, "Cu": 29}


def _predict_per_atom(atom_energy_fn):
    """A predict function from ``atom_energy_fn(model, batch, rij) -> [N]`` (energies and forces via rij)."""
    from cartinv.runtime.models.potential import pair_forces

    def predict(model, batch, training, want_stress=False):
        rij = batch.rij.detach().requires_grad_(True)
        e_atom = atom_energy_fn(model, batch, rij)
        energy = e_atom.new_zeros(batch.n_atoms.shape[0]).index_add(0, batch.atom_structure, e_atom)
        (grad,) = torch.autograd.grad(energy.sum(), rij, create_graph=training)
        return energy, pair_forces(grad, batch.pair_i, batch.pair_j, batch.species.shape[0]), None

    return predict


class HippynnEnergy(torch.nn.Module):
    """A hippynn network (HIP-NN-TS or HIP-HOP-NN) with hippynn's HEnergy head, plus e0 and scale."""

    def __init__(self, kind: str, elements, e0s: dict, scale: float, cutoff: float, n_features: int = 32,
                 n_interactions: int = 2, n_atom_layers: int = 3, n_sensitivities: int = 20,
                 dtype=torch.float64, seed: int = 0):
        super().__init__()
        os.environ.setdefault("HIPPYNN_USE_CUSTOM_KERNELS", "False")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import hippynn.custom_kernels
            from hippynn.layers.targets import HEnergy
            from hippynn.networks.hiphop import HipHopNNModule
            from hippynn.networks.hipnn import HipnnQuad
            # hippynn's default CPU kernels go through torch.compile and hit its recompile limit in a training
            # loop; its plain-torch kernels are the same maths without the compiler
            hippynn.custom_kernels.set_custom_kernels("_pytorch_raw")
        cls = {"hipnn_ts": HipnnQuad, "hiphop": HipHopNNModule}[kind]
        species = [0] + [ATOMIC_NUMBERS[e] for e in elements]
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.net = cls(n_features=n_features, n_sensitivities=n_sensitivities, dist_soft_min=0.75,
                           dist_soft_max=cutoff - 0.5, dist_hard_max=cutoff, n_atom_layers=n_atom_layers,
                           n_interaction_layers=n_interactions, possible_species=species)
        self.head = HEnergy(self.net.feature_sizes)
        self.n_species = len(elements)
        self.register_buffer("e0", torch.tensor([e0s[e] for e in elements]))
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.to(dtype)

    def atom_energies(self, species, pair_i, pair_j, rij):
        onehot = torch.nn.functional.one_hot(species, self.n_species).to(rij.dtype)
        dist = torch.linalg.vector_norm(rij, dim=1)
        feats = self.net(onehot, pair_i, pair_j, dist, rij)
        mol = torch.zeros(species.shape[0], dtype=torch.int64, device=species.device)
        _, atom_e, *_ = self.head(feats, mol, 1)
        return self.e0[species] + self.scale * atom_e.squeeze(1)


class MaceEnergy(torch.nn.Module):
    """mace-torch's ScaleShiftMACE on the flat pair list (positions zero, shifts = rij)."""

    def __init__(self, elements, e0s: dict, scale: float, cutoff: float, avg_neighbours: float, channels: int = 32,
                 max_L: int = 1, correlation: int = 3, n_interactions: int = 2, max_ell: int = 3, num_bessel: int = 8,
                 dtype=torch.float64, seed: int = 0):
        super().__init__()
        torch.serialization.add_safe_globals([slice])  # e3nn's constants load under torch's weights_only default
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import numpy as np
            from e3nn import o3
            from mace import modules
        torch.manual_seed(seed)
        hidden = "+".join(f"{channels}x{lv}{'e' if lv % 2 == 0 else 'o'}" for lv in range(max_L + 1))
        self.mace = modules.ScaleShiftMACE(
            r_max=cutoff, num_bessel=num_bessel, num_polynomial_cutoff=5, max_ell=max_ell,
            interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            num_interactions=n_interactions, num_elements=len(elements), hidden_irreps=o3.Irreps(hidden),
            MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.array([e0s[e] for e in elements]),
            avg_num_neighbors=avg_neighbours, atomic_numbers=[ATOMIC_NUMBERS[e] for e in elements],
            correlation=correlation, gate=torch.nn.functional.silu, atomic_inter_scale=float(scale),
            atomic_inter_shift=0.0)
        self.n_species = len(elements)
        self.to(dtype)

    def atom_energies(self, species, pair_i, pair_j, rij):
        n = species.shape[0]
        data = {
            "node_attrs": torch.nn.functional.one_hot(species, self.n_species).to(rij.dtype),
            "positions": torch.zeros((n, 3), dtype=rij.dtype),
            "edge_index": torch.stack([pair_j, pair_i]),  # (sender, receiver): vectors = 0 - 0 + shifts = rij
            "shifts": rij,
            "unit_shifts": torch.zeros_like(rij),
            "cell": torch.zeros((1, 3, 3), dtype=rij.dtype),
            "batch": torch.zeros(n, dtype=torch.int64),
            "ptr": torch.tensor([0, n]),
        }
        out = self.mace(data, training=self.training, compute_force=False)
        return out["node_energy"]


def _atom_energy(model, batch, rij):
    return model.atom_energies(batch.species, batch.pair_i, batch.pair_j, rij)


MODEL_KINDS = ("cartinv", "hipnn_ts", "hiphop", "mace")


def build(kind: str, elements, e0s: dict, scale: float, cutoff: float, dtype=torch.float64, seed: int = 0,
          avg_neighbours: float = 10.0, **options):
    """``(model, predict_fn)`` of one benchmark model (see the module docstring); ``options`` go to its builder."""
    if kind == "cartinv":
        from cartinv.runtime.models.potential import CartinvPotential
        from cartinv.runtime.training.data import predict

        model = CartinvPotential(list(elements), cutoff=cutoff, dtype=dtype, seed=seed, **options)
        model.set_energy_reference([e0s[e] for e in elements], scale=scale)
        return model, predict
    if kind in ("hipnn_ts", "hiphop"):
        return HippynnEnergy(kind, elements, e0s, scale, cutoff, dtype=dtype, seed=seed, **options), \
            _predict_per_atom(_atom_energy)
    if kind == "mace":
        return MaceEnergy(elements, e0s, scale, cutoff, avg_neighbours, dtype=dtype, seed=seed, **options), \
            _predict_per_atom(_atom_energy)
    raise ValueError(f"unknown model kind {kind!r}; known: {MODEL_KINDS}")


def n_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
