"""Generate molecular training data with GFN2-xTB labels (tblite): Langevin MD at 500 K from SMILES.

Each molecule is built from its SMILES with RDKit (hydrogens added, 3-D embedding with a fixed seed, MMFF
relaxation), then run through Langevin MD at ``--temperature`` (500 K) with tblite's GFN2-xTB as the ASE
calculator; after ``--equilibrate`` steps one frame is kept every ``--stride`` steps. Every kept frame carries
the xTB energy (eV) and forces (eV/Å), so the files train with ``cartinv train`` unchanged. Everything is
seeded: the same command writes the same frames (up to the last bits of tblite's floating point).

    python examples/xtb_data.py                       # six molecules, 1500 frames each
    python examples/xtb_data.py --frames 50 --molecules ethanol toluene --out tiny/
    python examples/xtb_data.py --water --frames 200  # also liquid water (periodic; about 0.1-0.3 s a call)
    python examples/xtb_data.py --frames 60 --out cartinv_output/xtb_small \
        --combined examples/data/xtb_molecules.extxyz   # the small copy shipped for tests

Writes ``OUT/<molecule>.extxyz`` (info keys ``energy``, ``molecule``, ``temperature``, ``step``; array
``forces``) and ``OUT/labels.json`` with the labelling cost per frame (seconds of xTB per kept frame, and per
call). tblite handles periodic cells (GFN2-xTB with Ewald-summed electrostatics), so ``--water`` adds a cubic
box of 8 molecules at 1 g/cm³ (24 atoms) with energies, forces and stress.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

MOLECULES = {
    "ethanol": "CCO",
    "malonaldehyde": "O=CC=CO",
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "naphthalene": "c1ccc2ccccc2c1",
    "salicylic_acid": "O=C(O)c1ccccc1O",
    "toluene": "Cc1ccccc1",
}

DEFAULT_OUT = Path(os.environ.get("CARTINV_EXAMPLES_OUTPUT") or "cartinv_output") / "xtb"


def from_smiles(smiles: str, seed: int):
    """An ASE Atoms object for ``smiles``: hydrogens added, RDKit ETKDG embedding (seeded), MMFF-relaxed."""
    from ase import Atoms
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise RuntimeError(f"RDKit could not embed {smiles!r}")
    AllChem.MMFFOptimizeMolecule(mol)
    pos = mol.GetConformer().GetPositions()
    atoms = Atoms([a.GetSymbol() for a in mol.GetAtoms()], positions=pos)
    atoms.center()
    return atoms


def water_box(seed: int, n_side: int = 2, density: float = 1.0):
    """``n_side``³ water molecules with random orientations on a cubic grid at ``density`` g/cm³ (periodic)."""
    from ase import Atoms
    from ase.build import molecule

    n = n_side ** 3
    volume = n * 18.015 / 0.6022140857 / density  # Å³
    cell = volume ** (1.0 / 3.0)
    rng = np.random.default_rng(seed)
    atoms = Atoms(cell=[cell] * 3, pbc=True)
    for x in range(n_side):
        for y in range(n_side):
            for z in range(n_side):
                w = molecule("H2O")
                w.rotate(float(rng.uniform(0, 360)), rng.normal(size=3))
                w.translate((np.array([x, y, z]) + 0.5) * cell / n_side)
                atoms += w
    return atoms


class CountingCalculator:
    """Wraps an ASE calculator's ``calculate`` to count calls and the seconds spent in them."""

    def __init__(self, calc):
        self.calc, self.calls, self.seconds = calc, 0, 0.0
        inner = calc.calculate

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        calc.calculate = timed


def labels_forces(atoms) -> np.ndarray:
    """The calculator's forces, -dE/dx, without the MD constraint's projection. ASE's get_forces() applies the
    constraints by default, and FixCom subtracts m_i (sum_j m_j F_j) / (sum_j m_j^2) from every atom: up to
    0.6 eV/Å on ethanol at 500 K. Those are the forces of the constrained dynamics, not labels of the energy
    surface (no model can fit them together with the energies)."""
    return atoms.get_forces(apply_constraint=False).copy()


def run_md(name: str, atoms, frames: int, args, rng_seed: int, periodic: bool = False) -> tuple[list, dict]:
    """Langevin MD with GFN2-xTB; ``frames`` snapshots (energy, forces[, stress]) after equilibration."""
    from ase import units
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md import velocitydistribution
    from ase.md.langevin import Langevin
    from tblite.ase import TBLite

    from ase.constraints import FixCom

    calc = TBLite(method="GFN2-xTB", verbosity=0)
    counter = CountingCalculator(calc)
    atoms.calc = calc
    rng = np.random.default_rng(rng_seed)
    thermalize = getattr(velocitydistribution, "thermalize_momenta", None)  # ASE >= 3.29
    if thermalize is not None:
        thermalize(atoms, args.temperature, rng=rng)
    else:
        velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=rng)
    velocitydistribution.Stationary(atoms)
    velocitydistribution.ZeroRotation(atoms)
    atoms.set_constraint(FixCom())  # the centre of mass stays put (Langevin's own fixcm is deprecated)
    dyn = Langevin(atoms, args.timestep * units.fs, temperature_K=args.temperature, friction=args.friction / units.fs,
                   fixcm=False, rng=np.random.RandomState(rng_seed % (2 ** 32)))
    dyn.run(args.equilibrate)
    out = []
    start = time.perf_counter()
    for k in range(frames):
        dyn.run(args.stride)
        snap = atoms.copy()
        snap.set_constraint()
        snap.set_momenta(None)  # labels only: positions, energy, forces (and stress)
        results = {"energy": float(atoms.get_potential_energy()), "forces": labels_forces(atoms)}
        if periodic:
            results["stress"] = atoms.get_stress(apply_constraint=False).copy()
        snap.calc = SinglePointCalculator(snap, **results)
        snap.info.update({"molecule": name, "temperature": float(args.temperature),
                          "step": int(args.equilibrate + (k + 1) * args.stride)})
        out.append(snap)
        if args.verbose and (k + 1) % max(1, frames // 10) == 0:
            print(f"  {name}: {k + 1}/{frames} frames ({time.perf_counter() - start:.0f} s)", flush=True)
    cost = {"atoms": len(atoms), "frames": frames, "xtb_calls": counter.calls, "xtb_seconds": counter.seconds,
            "seconds_per_call": counter.seconds / max(counter.calls, 1),
            "seconds_per_frame": counter.seconds / max(frames, 1)}
    return out, cost


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (one .extxyz per molecule)")
    p.add_argument("--molecules", nargs="+", default=list(MOLECULES), choices=list(MOLECULES),
                   help="molecules to sample (default: all six)")
    p.add_argument("--frames", type=int, default=1500, help="frames kept per molecule")
    p.add_argument("--water", action="store_true", help="also sample liquid water (periodic, 24 atoms; slow)")
    p.add_argument("--water-frames", type=int, default=None, help="frames of water (default: --frames)")
    p.add_argument("--temperature", type=float, default=500.0, help="Langevin temperature (K)")
    p.add_argument("--timestep", type=float, default=0.5, help="MD time step (fs)")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction (1/fs)")
    p.add_argument("--equilibrate", type=int, default=400, help="MD steps before the first kept frame")
    p.add_argument("--stride", type=int, default=10, help="MD steps between kept frames")
    p.add_argument("--combined", type=Path,
                   help="also write every frame of every molecule into this one file (the shipped test copy: "
                        "--frames 60 --combined examples/data/xtb_molecules.extxyz)")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--quiet", dest="verbose", action="store_false")
    args = p.parse_args(argv)
    from ase.io import write

    args.out.mkdir(parents=True, exist_ok=True)
    systems = [(name, from_smiles(MOLECULES[name], args.seed), args.frames, False) for name in args.molecules]
    if args.water:
        systems.append(("water", water_box(args.seed), args.water_frames or args.frames, True))
    costs, everything = {}, []
    for k, (name, atoms, frames, periodic) in enumerate(systems):
        start = time.perf_counter()
        snaps, cost = run_md(name, atoms, frames, args, args.seed + 1000 * k, periodic)
        write(args.out / f"{name}.extxyz", snaps, format="extxyz")
        everything.extend(snaps)
        cost["wall_seconds"] = time.perf_counter() - start
        costs[name] = cost
        print(f"{name:15s} {cost['atoms']:3d} atoms  {frames} frames  xTB {cost['seconds_per_call'] * 1e3:7.1f} ms/call "
              f"{cost['seconds_per_frame']:6.3f} s/frame  ({cost['wall_seconds']:.0f} s)", flush=True)
    if args.combined is not None:
        write(args.combined, everything, format="extxyz")
    summary = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "method": "GFN2-xTB (tblite)", "cost": costs}
    (args.out / "labels.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
