"""ASE calculator for a ``CartinvPotential``: energy, per-atom energies, forces and stress.

The neighbour list is ASE's ``neighbor_list`` with the model cutoff (periodic, mixed or open boundaries); a molecule
of up to ``DIRECT_PAIRS_MAX`` atoms without periodicity gets the same pairs from its distance matrix, which is 25x
faster there (21 atoms: 40 µs against 1.1 ms, a quarter of an MD step). One
backward pass gives g = ∂E/∂rij for every pair; forces and the strain derivative follow from it exactly
(``pair_forces``, ``pair_virial``): F_k = −∂E/∂r_k, stress = (1/V) ∂E/∂ε (ASE's convention, Voigt order
xx, yy, zz, yz, xz, xy).
"""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.neighborlist import neighbor_list

from cartinv.errors import ArgumentError

from ..models import pair_count
from ..models.potential import CartinvPotential, pair_forces, pair_virial

__all__ = ["CartinvCalculator", "open_pairs", "DIRECT_PAIRS_MAX"]

DIRECT_PAIRS_MAX = 512  # atoms up to which open boundaries use the distance matrix (about 9 MB of temporaries)


def open_pairs(positions: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, r_j - r_i) of every ordered pair closer than ``cutoff`` without periodicity, sorted by i then j: the
    pairs and vectors of ASE's ``neighbor_list`` (same distance test, same subtraction), from the distance matrix."""
    d = positions[None, :, :] - positions[:, None, :]
    close = np.sqrt(np.sum(d * d, axis=2)) < cutoff
    np.fill_diagonal(close, False)
    i, j = np.nonzero(close)
    return i, j, d[i, j]


class CartinvCalculator(Calculator):
    """ASE calculator for a ``CartinvPotential`` (or the path of a saved one).

    :param model: a ``CartinvPotential`` or a path for ``CartinvPotential.load``
    :param cutoff: optional; must equal the model cutoff (a guard against using a model with the wrong
        neighbour range). The neighbour list always uses the model cutoff.
    :param device: torch device for the evaluation
    :param backend: cartinv backend, only used when ``model`` is a path
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, model, cutoff: float | None = None, device="cpu", backend: str = "auto", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(model, CartinvPotential):
            model = CartinvPotential.load(model, backend=backend)
        if cutoff is not None and abs(float(cutoff) - model.cutoff) > 1e-12 * max(1.0, model.cutoff):
            raise ArgumentError(f"cutoff {cutoff} does not match the model cutoff {model.cutoff}; the model was "
                             f"trained with neighbours up to {model.cutoff}")
        self.model = model.to(device)
        self.model.eval()
        self.device = torch.device(device)

    def _species(self, atoms) -> torch.Tensor:
        return self.model.species_index(atoms.get_chemical_symbols()).to(self.device)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        species = self._species(atoms)
        n = len(atoms)
        want_stress = "stress" in properties
        if want_stress and not atoms.pbc.all():
            raise PropertyNotImplementedError("stress needs a cell periodic in all three directions")
        bad = np.flatnonzero(~np.isfinite(atoms.positions).all(axis=1))
        if bad.size:  # a NaN position lies within no cutoff: it would silently lose its neighbours
            raise ArgumentError(f"atom {bad[0]} has a non-finite position {atoms.positions[bad[0]].tolist()}")
        problem = pair_count.cell_problem(atoms.get_cell(), atoms.pbc)
        if problem is not None:
            raise ArgumentError(problem)
        if not atoms.pbc.any() and n <= DIRECT_PAIRS_MAX:
            i, j, vec = open_pairs(atoms.get_positions(), self.model.cutoff)
        else:
            pairs = pair_count.estimated_pairs(atoms.positions, atoms.get_cell(), atoms.pbc, self.model.cutoff)
            if pairs * pair_count.BYTES_PER_PAIR > pair_count.memory_limit():
                raise ArgumentError(f"these {n} atoms would have about {pairs:,} pairs within the model cutoff "
                                    f"{self.model.cutoff} Å, more than half this machine's memory holds; a model "
                                    f"with this cutoff cannot be evaluated on them")
            i, j, shifts = neighbor_list("ijS", atoms, self.model.cutoff)
            pos = atoms.get_positions()
            vec = pos[j] - pos[i] + shifts @ np.asarray(atoms.get_cell())
        dtype = self.model.dtype
        rij = torch.tensor(vec, dtype=dtype, device=self.device, requires_grad=True)
        pi = torch.as_tensor(i, dtype=torch.int64, device=self.device)
        pj = torch.as_tensor(j, dtype=torch.int64, device=self.device)
        energies = self.model(species, pi, pj, rij)
        energy = energies.sum()
        if rij.shape[0]:
            (grad,) = torch.autograd.grad(energy, rij)
        else:
            grad = torch.zeros_like(rij)
        forces = pair_forces(grad, pi, pj, n)
        e = float(energy.detach())
        self.results["energy"] = e
        self.results["free_energy"] = e
        self.results["energies"] = energies.detach().cpu().numpy().astype(np.float64)
        self.results["forces"] = forces.detach().cpu().numpy().astype(np.float64)
        if atoms.pbc.all():
            w = pair_virial(grad, rij.detach()).cpu().numpy().astype(np.float64) / atoms.get_volume()
            self.results["stress"] = np.array([w[0, 0], w[1, 1], w[2, 2], w[1, 2], w[0, 2], w[0, 1]])
