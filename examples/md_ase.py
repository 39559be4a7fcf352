"""Molecular dynamics with a cartinv potential through ASE: NVE (velocity Verlet) or NVT (Langevin) on fcc Cu.

    python examples/md_ase.py                                  # NVE, 108 atoms, 300 K
    python examples/md_ase.py --model my_model.pt --ensemble nvt --temperature 600

Model: ``--model``, else the degree-4 model trained on 600 structures by examples/train_tensor_model.py
(``cartinv_output/train_tensor_model/models/lmax3_deg4_600_seed0.pt``) when it exists, else
``cartinv_output/md_ase/md_lmax3_deg4.pt``, trained here on the EMT data set (38 s in all, measured) when missing
(``cartinv_output`` is in the current folder, or ``$CARTINV_EXAMPLES_OUTPUT``; nothing is written into the checkout). MD runs in float64 (the model is converted).
Along the trajectory it reports the temperature, the total energy (NVE: its drift) and the deviation of the
model's forces from EMT's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin
from ase.md.verlet import VelocityVerlet
from ase.md import velocitydistribution

from cartinv.runtime.integrations.ase import CartinvCalculator
from cartinv.runtime.models.potential import CartinvPotential

HERE = Path(__file__).resolve().parent
# Outputs go outside the tracked tree: ./cartinv_output (or $CARTINV_EXAMPLES_OUTPUT), never the checkout's files.
OUTPUT = Path(os.environ.get("CARTINV_EXAMPLES_OUTPUT") or "cartinv_output")
TRAINED_MODEL = OUTPUT / "train_tensor_model" / "models" / "lmax3_deg4_600_seed0.pt"
DEFAULT_MODEL = OUTPUT / "md_ase" / "md_lmax3_deg4.pt"


def train_default_model(path: Path, steps: int = 800, size: int = 200, seed: int = 20250331) -> CartinvPotential:
    """A small lmax3_deg4 model on the EMT copper set (the same recipe as train_tensor_model.py)."""
    sys.path.insert(0, str(HERE))
    import train_tensor_model as ttm

    torch.manual_seed(seed)
    frames = ttm.read_frames(ttm.data_file(ttm.DEFAULT_DATA, seed, OUTPUT))
    structs = ttm.featurize(frames, ["Cu"], 4.0, torch.float32)
    order = np.random.default_rng(seed).permutation(len(structs))
    train_frames = [frames[k] for k in order[:size]]
    model = CartinvPotential(["Cu"], basis="lmax3_deg4", cutoff=4.0, n_features=16, n_radial=6, hidden=(32,),
                             dtype=torch.float32, seed=seed)
    print(f"training {path.name}: {size} structures, {steps} steps ...", flush=True)
    start = time.perf_counter()
    ttm.train(model, [structs[k] for k in order[:size]], ttm.fit_e0s(train_frames, ["Cu"]),
              ttm.force_scale(train_frames), steps, 4, 1e-2, 10.0, seed)
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return model


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="a saved CartinvPotential (default: train one)")
    p.add_argument("--ensemble", choices=("nve", "nvt"), default="nve")
    p.add_argument("--temperature", type=float, default=300.0, help="initial (NVE) or bath (NVT) temperature, K")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--timestep", type=float, default=2.0, help="fs")
    p.add_argument("--repeat", type=int, default=3, help="fcc cubic cell repeated n x n x n (4 n^3 atoms)")
    p.add_argument("--every", type=int, default=20, help="report every this many steps")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    if args.model is not None:
        model = CartinvPotential.load(args.model)
    elif TRAINED_MODEL.exists():
        model = CartinvPotential.load(TRAINED_MODEL)
    elif DEFAULT_MODEL.exists():
        model = CartinvPotential.load(DEFAULT_MODEL)
    else:
        model = train_default_model(DEFAULT_MODEL)
    calc = CartinvCalculator(model.double())

    rng = np.random.default_rng(args.seed)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((args.repeat,) * 3)
    atoms.calc = calc
    thermalize = getattr(velocitydistribution, "thermalize_momenta", None) or \
        velocitydistribution.MaxwellBoltzmannDistribution
    thermalize(atoms, temperature_K=args.temperature, rng=rng)
    velocitydistribution.Stationary(atoms)
    if args.ensemble == "nve":
        dyn = VelocityVerlet(atoms, timestep=args.timestep * units.fs)
    else:
        dyn = Langevin(atoms, args.timestep * units.fs, temperature_K=args.temperature, friction=0.01,
                       fixcm=False, rng=rng)
    emt = EMT()
    totals, force_errors = [], []

    def report():
        epot = atoms.get_potential_energy()
        ekin = atoms.get_kinetic_energy()
        totals.append(epot + ekin)
        ref = atoms.copy()
        ref.calc = emt
        err = np.sqrt(np.mean((atoms.get_forces() - ref.get_forces()) ** 2)) * 1e3
        force_errors.append(err)
        print(f"  step {dyn.nsteps:5d}  T {atoms.get_temperature():7.1f} K  Epot {epot / len(atoms):9.5f} eV/atom  "
              f"Etot {(epot + ekin) / len(atoms):9.6f} eV/atom  |F - F_EMT| {err:6.1f} meV/Å", flush=True)

    print(f"{args.ensemble.upper()} MD of {len(atoms)} Cu atoms, {args.steps} steps of {args.timestep} fs, "
          f"model {model.basis_name} (cutoff {model.cutoff} Å)")
    dyn.attach(report, interval=args.every)  # ASE calls it before the first step too
    start = time.perf_counter()
    dyn.run(args.steps)
    seconds = time.perf_counter() - start
    drift = (totals[-1] - totals[0]) / len(atoms)
    print(f"{args.steps} steps in {seconds:.1f} s ({seconds / args.steps * 1e3:.0f} ms/step)")
    if args.ensemble == "nve":
        spread = (max(totals) - min(totals)) / len(atoms)
        print(f"total energy drift {drift * 1e6:.1f} µeV/atom over {args.steps * args.timestep / 1000:.2f} ps "
              f"(max - min {spread * 1e6:.1f} µeV/atom)")
    print(f"force RMSE vs EMT along the trajectory: {np.mean(force_errors):.1f} meV/Å")
    return {"drift_ev_per_atom": drift, "seconds": seconds, "force_rmse_vs_emt": float(np.mean(force_errors))}


if __name__ == "__main__":
    main()
