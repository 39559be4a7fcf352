"""Generate a copper training set with ASE's EMT potential (a real, if simple, physics code).

Structures (all Cu, EMT energies and forces):

* bulk fcc, 2x2x2 cubic cell (32 atoms), lattice constant scaled by a random factor in [0.97, 1.03];
* bulk with one vacancy (31 atoms);
* fcc(111) and fcc(100) slabs, 2x2x4 atoms with 8 Å of vacuum (periodic in x and y only);

each sampled from Langevin MD at several temperatures (300, 900, 1500 K by default): a short equilibration, then
one snapshot every ``--stride`` steps. Everything is seeded, so the same command writes the same file.

    python examples/make_dataset.py --out examples/data/cu_emt.xyz

Writes extended XYZ with energy and forces (read back with ``ase.io.read(path, ":")``); the info fields
``config_type`` and ``temperature`` name where each snapshot came from.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.md.langevin import Langevin
from ase.md import velocitydistribution

# Written outside the tracked tree by default; the shipped copy is examples/data/cu_emt.xyz (--out to refresh it).
DEFAULT_OUT = Path(os.environ.get("CARTINV_EXAMPLES_OUTPUT") or "cartinv_output") / "cu_emt.xyz"


def base_structures(rng: np.random.Generator) -> dict:
    """The four starting structures, each a function of a random lattice scale."""
    a0 = 3.61  # Cu, Å

    def bulk_cell(scale):
        return bulk("Cu", "fcc", a=a0 * scale, cubic=True).repeat((2, 2, 2))

    def vacancy(scale):
        atoms = bulk_cell(scale)
        del atoms[int(rng.integers(len(atoms)))]
        return atoms

    def slab111(scale):
        return _plain(fcc111("Cu", size=(2, 2, 4), a=a0 * scale, vacuum=4.0, periodic=False))

    def slab100(scale):
        return _plain(fcc100("Cu", size=(2, 2, 4), a=a0 * scale, vacuum=4.0, periodic=False))

    return {"bulk": bulk_cell, "vacancy": vacancy, "slab111": slab111, "slab100": slab100}


def _plain(atoms):
    atoms.info.pop("adsorbate_info", None)  # slab-builder metadata, not data
    return atoms


def _pbc(atoms, config_type):
    if config_type.startswith("slab"):
        atoms.pbc = (True, True, False)
    return atoms


def sample(config_type: str, build, temperature: float, n_snapshots: int, stride: int, rng) -> list:
    """Snapshots of Langevin MD (EMT) at ``temperature`` starting from a randomly scaled structure."""
    scale = float(rng.uniform(0.97, 1.03))
    atoms = _pbc(build(scale), config_type)
    atoms.calc = EMT()
    # ASE >= 3.29 names it thermalize_momenta; older versions MaxwellBoltzmannDistribution (same sampling)
    thermalize = getattr(velocitydistribution, "thermalize_momenta", None) or \
        velocitydistribution.MaxwellBoltzmannDistribution
    thermalize(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(atoms, 2.0 * units.fs, temperature_K=temperature, friction=0.02, fixcm=False, rng=rng)
    dyn.run(5 * stride)  # equilibrate
    frames = []
    for _ in range(n_snapshots):
        dyn.run(stride)
        snap = atoms.copy()
        snap.calc = SinglePointCalculator(snap, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        snap.info["config_type"] = config_type
        snap.info["temperature"] = float(temperature)
        frames.append(snap)
    return frames


def make_dataset(n_per_run: int = 30, temperatures=(300.0, 900.0, 1500.0), stride: int = 10,
                 runs: int = 2, seed: int = 20250331) -> list:
    """All snapshots: for every structure type, temperature and run, ``n_per_run`` MD snapshots."""
    rng = np.random.default_rng(seed)
    frames = []
    for config_type, build in base_structures(rng).items():
        for temperature in temperatures:
            for _ in range(runs):
                frames.extend(sample(config_type, build, temperature, n_per_run, stride, rng))
    return frames


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output extended XYZ file")
    parser.add_argument("--per-run", type=int, default=30, help="snapshots per MD run")
    parser.add_argument("--runs", type=int, default=2, help="independent MD runs per structure and temperature")
    parser.add_argument("--stride", type=int, default=10, help="MD steps (2 fs) between snapshots")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[300.0, 900.0, 1500.0])
    parser.add_argument("--seed", type=int, default=20250331)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    frames = make_dataset(args.per_run, tuple(args.temperatures), args.stride, args.runs, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write(args.out, frames, format="extxyz")
    n_atoms = sum(len(f) for f in frames)
    print(f"wrote {len(frames)} structures ({n_atoms} atoms) to {args.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
