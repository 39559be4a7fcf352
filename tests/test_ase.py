"""ASE calculator: forces and stress against finite differences of the energy, NVE energy conservation, errors."""

import numpy as np
import pytest

pytest.importorskip("ase")
torch = pytest.importorskip("torch")

from ase import Atoms, units  # noqa: E402
from ase.build import bulk, molecule  # noqa: E402
from ase.calculators.calculator import PropertyNotImplementedError  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402

from cartinv.runtime.integrations.ase import CartinvCalculator  # noqa: E402
from cartinv.runtime.models.potential import CartinvPotential  # noqa: E402

CUTOFF = 3.2


@pytest.fixture(scope="module")
def model():
    m = CartinvPotential(["Cu", "Al"], basis="lmax3_deg4", cutoff=CUTOFF, n_features=4, n_radial=4, hidden=(8,),
                         dtype=torch.float64, seed=3)
    m.set_energy_reference([-0.3, -0.2], scale=1.0)
    return m


def cell(seed=0, amplitude=0.08):
    """A distorted periodic Cu/Al cell of 4 atoms with neighbours through the periodic images."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.symbols[1] = "Al"
    atoms.set_cell(atoms.cell[:] @ (np.eye(3) + 0.03 * rng.standard_normal((3, 3))), scale_atoms=True)
    atoms.positions += amplitude * rng.standard_normal(atoms.positions.shape)
    return atoms


def energy_of(atoms, calc):
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy()


def test_forces_are_minus_finite_difference_gradient(model):
    atoms = cell(1)
    calc = CartinvCalculator(model)
    atoms.calc = calc
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 1e-3  # a non-trivial configuration
    h = 1e-5
    fd = np.zeros_like(forces)
    for a in range(len(atoms)):
        for x in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, x] += h
            minus.positions[a, x] -= h
            fd[a, x] = -(energy_of(plus, calc) - energy_of(minus, calc)) / (2 * h)
    np.testing.assert_allclose(forces, fd, atol=1e-7 * max(1.0, np.abs(fd).max()), rtol=0)
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-12)  # momentum conservation


def test_stress_is_strain_derivative(model):
    atoms = cell(2)
    calc = CartinvCalculator(model)
    atoms.calc = calc
    stress = atoms.get_stress(voigt=False)
    assert np.abs(stress).max() > 1e-5
    h = 1e-6
    fd = np.zeros((3, 3))
    vol = atoms.get_volume()
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] = eps[b, a] = h / 2 if a != b else h
            energies = []
            for sign in (1, -1):
                strained = atoms.copy()
                strained.set_cell(atoms.cell[:] @ (np.eye(3) + sign * eps), scale_atoms=True)
                energies.append(energy_of(strained, calc))
            # d E / d eps_ab with the symmetric perturbation counts the off-diagonal pair once
            fd[a, b] = (energies[0] - energies[1]) / (2 * h) / vol
    np.testing.assert_allclose(stress, fd, atol=1e-7 * max(1.0, np.abs(fd).max()), rtol=0)
    np.testing.assert_allclose(stress, stress.T, atol=1e-14)


def test_energy_matches_per_atom_energies_and_supercell(model):
    atoms = cell(3)
    calc = CartinvCalculator(model)
    atoms.calc = calc
    e = atoms.get_potential_energy()
    np.testing.assert_allclose(atoms.get_potential_energies().sum(), e, rtol=1e-13)
    big = atoms.repeat((2, 1, 2))
    big.calc = CartinvCalculator(model)
    np.testing.assert_allclose(big.get_potential_energy(), 4 * e, rtol=1e-11)
    np.testing.assert_allclose(big.get_stress(), atoms.get_stress(), atol=1e-11)
    np.testing.assert_allclose(big.get_forces()[:4], atoms.get_forces(), atol=1e-11)


def test_nve_energy_conservation(model):
    atoms = cell(4, amplitude=0.05).repeat((2, 1, 1))
    atoms.calc = CartinvCalculator(model)
    rng = np.random.default_rng(5)
    atoms.set_velocities(0.01 * rng.standard_normal((len(atoms), 3)))  # Å/(ASE time unit): a few hundred K
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    totals = []

    def record():
        totals.append(atoms.get_potential_energy() + atoms.get_kinetic_energy())

    potential = []
    dyn.attach(record, interval=1)
    dyn.attach(lambda: potential.append(atoms.get_potential_energy()), interval=1)
    dyn.run(100)
    totals = np.array(totals)
    drift = np.abs(totals - totals[0]).max()
    exchanged = np.ptp(potential)  # energy moved between kinetic and potential during the run
    assert exchanged > 1e-3
    assert drift < 1e-3 * exchanged, f"total energy drift {drift:.2e} eV vs {exchanged:.2e} eV exchanged"


def test_molecule_without_cell_and_isolated_atom(model):
    calc = CartinvCalculator(model)
    mol = Atoms("CuAlCu", positions=[[0, 0, 0], [2.3, 0.1, 0], [0.2, 2.4, 0.3]])
    mol.calc = calc
    assert np.isfinite(mol.get_potential_energy())
    np.testing.assert_allclose(mol.get_forces().sum(axis=0), 0.0, atol=1e-12)
    with pytest.raises(PropertyNotImplementedError):
        mol.get_stress()
    # an atom far from the others only has its self term: the energy of a lone atom
    lone = Atoms("Cu", positions=[[0, 0, 0]])
    lone.calc = calc
    far = mol + Atoms("Cu", positions=[[30.0, 0, 0]])
    far.calc = calc
    np.testing.assert_allclose(far.get_potential_energy(), mol.get_potential_energy() + lone.get_potential_energy(),
                               rtol=1e-12)
    np.testing.assert_allclose(far.get_forces()[-1], 0.0, atol=0)


def test_open_boundary_pairs_are_ases(model, monkeypatch):
    """Without periodicity, up to DIRECT_PAIRS_MAX atoms, the pairs come from the distance matrix: the same pairs
    and bit-identical vectors as ASE's neighbor_list (pairs at the cutoff and one ulp either side of it included),
    and the same energy and forces as through ASE's list."""
    from ase.neighborlist import neighbor_list

    from cartinv.runtime.integrations import ase as ase_calc

    rng = np.random.default_rng(7)
    atoms = Atoms("Cu20Al20", positions=rng.uniform(0, 7.0, (40, 3)))
    atoms.positions[:4] = 0.0  # from atom 0: exactly the cutoff, one ulp inside and one ulp outside
    atoms.positions[1, 0], atoms.positions[2, 1] = CUTOFF, np.nextafter(CUTOFF, 0)
    atoms.positions[3, 2] = np.nextafter(CUTOFF, 9)
    i, j, vec = ase_calc.open_pairs(atoms.positions, CUTOFF)
    ai, aj, shifts = neighbor_list("ijS", atoms, CUTOFF)
    assert not shifts.any() and len(ai) > 100
    order = np.lexsort((aj, ai))
    np.testing.assert_array_equal(np.stack([i, j]), np.stack([ai[order], aj[order]]))
    np.testing.assert_array_equal(vec, (atoms.positions[aj] - atoms.positions[ai])[order])
    direct = atoms.copy()
    direct.calc = CartinvCalculator(model)
    energy, forces = direct.get_potential_energy(), direct.get_forces()
    monkeypatch.setattr(ase_calc, "DIRECT_PAIRS_MAX", 0)
    listed = atoms.copy()
    listed.calc = CartinvCalculator(model)
    np.testing.assert_allclose(listed.get_potential_energy(), energy, rtol=1e-13)
    np.testing.assert_allclose(listed.get_forces(), forces, atol=1e-13)
    for periodic in (False, True):  # a NaN position is refused, not left without neighbours
        broken = atoms.copy()
        broken.positions[5, 1] = np.nan
        broken.pbc, broken.cell = periodic, np.eye(3) * 20.0
        broken.calc = CartinvCalculator(model)
        with pytest.raises(ValueError, match=r"^atom 5 has a non-finite position \[[^\n]*nan"):
            broken.get_potential_energy()
    for cell, pbc, msg in [(np.full((3, 3), np.inf), True, r"^the cell holds NaN or infinite values \(\[\[inf"),
                           (np.diag([20.0, 0.0, 20.0]), (True, True, False),
                            r"^the periodic cell vectors \(a, b\) are degenerate: they span no area$")]:
        broken = Atoms(atoms.symbols, positions=atoms.positions, cell=cell, pbc=pbc)
        broken.calc = CartinvCalculator(model)
        with pytest.raises(ValueError, match=msg):
            broken.get_potential_energy()


def test_errors(model, tmp_path):
    calc = CartinvCalculator(model)
    atoms = molecule("H2O")
    atoms.calc = calc
    with pytest.raises(ValueError, match=r"\['H', 'O'\] are not in this model"):
        atoms.get_potential_energy()
    with pytest.raises(ValueError, match="does not match the model cutoff"):
        CartinvCalculator(model, cutoff=CUTOFF + 1.0)
    path = tmp_path / "model.pt"
    model.save(path)
    from_file = CartinvCalculator(str(path), cutoff=CUTOFF)
    a, b = cell(6), cell(6)
    a.calc, b.calc = calc, from_file
    np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-13)


def test_cutoff_too_long_for_the_cell_is_refused_before_listing(model, monkeypatch):
    """A model whose cutoff would list more pairs than memory holds (a saved model may declare up to 1,000 Å) is
    refused with the estimate before ASE builds the list; the same cell at the model's own cutoff runs."""
    from cartinv.runtime.models import pair_count

    far = CartinvPotential(["Cu", "Al"], basis="lmax3_deg4", cutoff=1000.0, n_features=4, n_radial=4, hidden=(8,),
                           dtype=torch.float64, seed=3)
    atoms = cell(7)
    atoms.calc = CartinvCalculator(far)
    monkeypatch.setattr(pair_count, "memory_limit", lambda: 8 << 30)  # as on a 16 GiB machine
    with pytest.raises(ValueError, match=r"these 4 atoms would have about 1,4\d\d,\d{3},\d{3} pairs within the "
                                         r"model cutoff 1000.0 Å") as err:
        atoms.get_potential_energy()
    assert "\n" not in str(err.value)
    near = cell(7)
    near.calc = CartinvCalculator(model)
    assert np.isfinite(near.get_potential_energy())


def test_reexport():
    from cartinv.ase import CartinvCalculator as reexported

    assert reexported is CartinvCalculator
