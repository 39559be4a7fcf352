"""examples/xtb_data.py: the labels are the xTB energy surface (energies and -dE/dx), checked against fresh
single points; the shipped small copy is checked the same way."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "examples" / "data" / "xtb_molecules.extxyz"

tblite_ase = pytest.importorskip("tblite.ase", reason="tblite (GFN2-xTB) is needed to recompute the labels")
pytest.importorskip("rdkit", reason="rdkit builds the molecules")


def _module():
    spec = importlib.util.spec_from_file_location("xtb_data", ROOT / "examples" / "xtb_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["xtb_data"] = module
    spec.loader.exec_module(module)
    return module


def _fresh(atoms):
    a = atoms.copy()
    a.set_constraint()
    a.calc = tblite_ase.TBLite(method="GFN2-xTB", verbosity=0)
    return a.get_potential_energy(), a.get_forces()


def test_md_frames_carry_the_energy_surface_forces():
    """Forces recorded during the constrained (fixed centre of mass) Langevin MD equal a fresh single point's
    -dE/dx at the recorded positions, not the constraint-projected forces."""
    xtb = _module()
    args = type("Args", (), {"temperature": 500.0, "timestep": 0.5, "friction": 0.01, "equilibrate": 20,
                             "stride": 5, "verbose": False})()
    frames, cost = xtb.run_md("ethanol", xtb.from_smiles("CCO", 3), 3, args, rng_seed=3)
    assert len(frames) == 3 and cost["xtb_calls"] >= 35
    for snap in frames:
        energy, forces = _fresh(snap)
        assert abs(snap.get_potential_energy() - energy) < 1e-6
        np.testing.assert_allclose(snap.get_forces(), forces, atol=2e-3)
        assert np.abs(snap.get_forces().sum(axis=0)).max() < 1e-3  # an isolated molecule: no net force


def test_shipped_copy_has_energy_surface_forces():
    from ase.io import read

    frames = read(SHIPPED, ":")
    for snap in frames[:: max(1, len(frames) // 6)][:6]:
        energy, forces = _fresh(snap)
        assert abs(snap.get_potential_energy() - energy) < 1e-5
        np.testing.assert_allclose(snap.get_forces(), forces, atol=2e-3)
