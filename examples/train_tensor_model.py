"""Learning curves of two cartinv potentials on EMT copper: l ≤ 3 with degree ≤ 4 invariants vs degree ≤ 2.

Both models are ``CartinvPotential``s of the same size (features, channels, radial functions, MLP) trained with
the same budget (optimizer steps, batch size, learning-rate schedule) on energies and forces (the force loss is
trained through the double backward of the invariants). They differ only in the basis:

* ``lmax3_deg4``: the 13 invariants of one tied channel with l ≤ 3 up to degree 4 (5-body per layer);
* ``lmax3_deg2``: its degree ≤ 2 part, the 4 invariants T0, |T1|², |T2|², |T3|² (pairwise in the neighbours,
  i.e. 3-body).

For every training-set size both are trained from the same seeds (two by default; single trainings of these
small models scatter by tens of percent) and scored on one fixed test set. The script prints a table of the
mean energy and force RMSEs, writes every run to JSON, and plots the learning curve as a PNG.

    python examples/make_dataset.py            # optional: examples/data/cu_emt.xyz (generated here if absent)
    python examples/train_tensor_model.py      # defaults: 4 minutes on 2 CPU cores (241 s, measured)

Outputs go to ``--outdir`` (default ``cartinv_output/train_tensor_model`` in the current folder, or under
``$CARTINV_EXAMPLES_OUTPUT``): ``learning_curve.png``, ``learning_curve.json`` and the trained models
``models/<basis>_<size>_seed<k>.pt`` (``CartinvPotential.load``; e.g. for examples/md_ase.py). The checked-in
``examples/output`` holds the results quoted in the README; nothing here writes into the checkout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cartinv.runtime.training.data import Structure, collate, featurize, fit_e0s, predict, read_frames
from cartinv.runtime.training.fit import force_scale

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE / "data" / "cu_emt.xyz"
# Outputs go outside the tracked tree: ./cartinv_output (or $CARTINV_EXAMPLES_OUTPUT), never the checkout's files.
OUTPUT = Path(os.environ.get("CARTINV_EXAMPLES_OUTPUT") or "cartinv_output")

BASES = ("lmax3_deg4", "lmax3_deg2")


# ---------------------------------------------------------------------------------------------- data
def data_file(path: Path, seed: int, outdir: Path) -> Path:
    """``path``, or when it is absent the EMT data set generated (seeded) into ``outdir``."""
    if not path.exists():
        path = outdir / path.name
        sys.path.insert(0, str(HERE))
        from make_dataset import make_dataset

        print(f"{path} not found: generating the EMT data set (seed {seed}) into {path}")
        frames = make_dataset(seed=seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        from ase.io import write

        write(path, frames, format="extxyz")
    return path


# ---------------------------------------------------------------------------------------------- training
def train(model, train_set: list[Structure], e0s: dict, f_scale: float, steps: int, batch_size: int, lr: float,
          energy_weight: float, seed: int, log_every: int = 0) -> None:
    """Fixed-step Adam with a cosine schedule (the same budget for every model and size)."""
    model.set_energy_reference([e0s[e] for e in model.elements], scale=f_scale)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.02)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train_set))
    pos = 0
    bs = min(batch_size, len(train_set))
    for step in range(steps):
        if pos + bs > len(order):
            order, pos = rng.permutation(len(train_set)), 0
        batch = collate([train_set[k] for k in order[pos:pos + bs]])
        pos += bs
        energy, forces, _ = predict(model, batch, training=True)
        n = batch.n_atoms.to(energy.dtype)
        loss_e = ((energy - batch.energy) / n).pow(2).mean()
        loss_f = (forces - batch.forces).pow(2).mean()
        loss = energy_weight * loss_e + loss_f
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"    step {step:4d}  E rmse/atom {math.sqrt(loss_e.item()) * 1e3:7.2f} meV  "
                  f"F rmse {math.sqrt(loss_f.item()) * 1e3:7.1f} meV/Å", flush=True)


def evaluate(model, test_set: list[Structure], batch_size: int = 32) -> tuple[float, float]:
    """Energy RMSE per atom (meV/atom) and force-component RMSE (meV/Å) on ``test_set``."""
    se_e, se_f, n_s, n_f = 0.0, 0.0, 0, 0
    for k in range(0, len(test_set), batch_size):
        batch = collate(test_set[k:k + batch_size])
        energy, forces, _ = predict(model, batch, training=False)
        energy, forces = energy.detach(), forces.detach()
        n = batch.n_atoms.to(energy.dtype)
        se_e += float((((energy - batch.energy) / n) ** 2).sum())
        se_f += float(((forces - batch.forces) ** 2).sum())
        n_s += len(n)
        n_f += forces.numel()
    return math.sqrt(se_e / n_s) * 1e3, math.sqrt(se_f / n_f) * 1e3


def plot(results: dict, sizes, path: Path) -> bool:
    """Mean test RMSE over the seeds against training-set size (bars: lowest and highest seed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, style in zip(results, ("o-", "s--")):
        rows = results[name]
        for ax, key in zip(axes, ("energy_rmse", "force_rmse")):
            mean = np.array([r[key] for r in rows])
            low = mean - np.array([min(r[key + "_seeds"]) for r in rows])
            high = np.array([max(r[key + "_seeds"]) for r in rows]) - mean
            ax.errorbar(sizes, mean, yerr=[low, high], fmt=style, capsize=3, label=name)
    axes[0].set_ylabel("energy RMSE (meV/atom)")
    axes[1].set_ylabel("force RMSE (meV/Å)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training structures")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("EMT Cu: cartinv l ≤ 3, degree ≤ 4 vs degree ≤ 2 invariants (same model size and budget)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def build_basis(name: str):
    """A checked-in basis (both are: ``lmax3_deg2`` holds the degree ≤ 2, pairwise invariants)."""
    from cartinv.runtime.models.nn import resolve_basis

    return resolve_basis(name)


# ---------------------------------------------------------------------------------------------- tasks
_WORKER: dict = {}


def _prepare(args) -> dict:
    """Data (featurised once per process), the fixed test set and the training pool."""
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    frames = read_frames(data_file(args.data, args.seed, args.outdir))
    elements = sorted({s for f in frames for s in f.symbols})
    structs = featurize(frames, elements, args.cutoff, dtype)
    perm = np.random.default_rng(args.seed).permutation(len(structs))
    return {
        "args": args,
        "dtype": dtype,
        "elements": elements,
        "test": [structs[k] for k in perm[:args.test]],
        "pool": [structs[k] for k in perm[args.test:]],  # training sets are nested prefixes of this pool
        "pool_frames": [frames[k] for k in perm[args.test:]],
        "neighbours": float(np.mean([s.rij.shape[0] / s.n_atoms for s in structs])),
        "n_structures": len(structs),
    }


def _init_worker(args) -> None:
    _WORKER.update(_prepare(args))


def run_task(task) -> dict:
    """Train one model (basis name, training-set size, seed number) and score it on the test set.

    Seed number k initialises the model with seed + k and orders the batches with seed + k + size, identically
    for both bases.
    """
    from cartinv.runtime.models.potential import CartinvPotential

    name, size, k = task
    data, args = _WORKER, _WORKER["args"]
    start, cpu = time.perf_counter(), time.process_time()
    basis = build_basis(name)
    model = CartinvPotential(data["elements"], basis=basis, cutoff=args.cutoff, n_features=args.features,
                             n_radial=args.radial, hidden=tuple(args.hidden), backend=args.backend,
                             dtype=data["dtype"], seed=args.seed + k)
    e0s = fit_e0s(data["pool_frames"][:size], data["elements"])
    train(model, data["pool"][:size], e0s, force_scale(data["pool_frames"][:size]), args.steps, args.batch, args.lr,
          args.energy_weight, args.seed + k + size, args.log_every)
    e_rmse, f_rmse = evaluate(model, data["test"])
    if args.save_models:
        folder = args.outdir / "models"
        folder.mkdir(parents=True, exist_ok=True)
        model.save(folder / f"{name}_{size}_seed{k}.pt")
    return {"basis": name, "invariants": len(basis.invariants), "size": size, "seed": k, "energy_rmse": e_rmse,
            "force_rmse": f_rmse, "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}


def aggregate(rows: list[dict], sizes) -> dict:
    """basis -> one row per size: mean RMSEs over the seeds, and every seed's value."""
    out = {}
    for name in BASES:
        out[name] = []
        for size in sizes:
            mine = sorted((r for r in rows if r["basis"] == name and r["size"] == size), key=lambda r: r["seed"])
            out[name].append({
                "size": size,
                "energy_rmse": float(np.mean([r["energy_rmse"] for r in mine])),
                "force_rmse": float(np.mean([r["force_rmse"] for r in mine])),
                "energy_rmse_seeds": [r["energy_rmse"] for r in mine],
                "force_rmse_seeds": [r["force_rmse"] for r in mine],
                "seconds": [r["seconds"] for r in mine],
            })
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--outdir", type=Path, default=OUTPUT / "train_tensor_model")
    p.add_argument("--sizes", type=int, nargs="+", default=[3, 10, 50, 600])
    p.add_argument("--test", type=int, default=120, help="test structures (fixed, disjoint from training)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps per model, size and seed")
    p.add_argument("--seeds", type=int, default=2, help="independent trainings per model and size (averaged)")
    p.add_argument("--batch", type=int, default=4, help="structures per step")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--energy-weight", type=float, default=10.0, help="weight of (eV/atom)² against (eV/Å)²")
    p.add_argument("--cutoff", type=float, default=4.0)
    p.add_argument("--features", type=int, default=16)
    p.add_argument("--radial", type=int, default=6)
    p.add_argument("--hidden", type=int, nargs="+", default=[32])
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--backend", default="auto")
    p.add_argument("--workers", type=int, default=2, help="training processes run side by side")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--seed", type=int, default=20250331)
    p.add_argument("--log-every", type=int, default=0)
    p.add_argument("--no-save-models", dest="save_models", action="store_false",
                   help="do not write the trained models to OUTDIR/models/<basis>_<size>_seed<k>.pt")
    args = p.parse_args(argv)
    start = time.perf_counter()

    _init_worker(args)  # this process: data summary (and the work itself when --workers 1)
    data = _WORKER
    if args.test + max(args.sizes) > data["n_structures"]:
        raise SystemExit(f"{data['n_structures']} structures cannot hold a test set of {args.test} and a training "
                         f"set of {max(args.sizes)}")
    print(f"{data['n_structures']} structures, elements {data['elements']}, cutoff {args.cutoff} Å, "
          f"{data['neighbours']:.1f} neighbours/atom; test set {args.test}; sizes {args.sizes}; "
          f"{args.steps} steps x {args.batch} structures; {args.workers} worker(s) x {args.threads} thread(s)",
          flush=True)

    # the slow (degree 4) tasks first, so the workers finish together
    tasks = sorted(((name, size, k) for size in args.sizes for name in BASES for k in range(args.seeds)),
                   key=lambda t: (BASES.index(t[0]), -t[1], t[2]))

    def report(row):
        print(f"  size {row['size']:4d}  seed {row['seed']}  {row['basis']:11s} ({row['invariants']:2d} invariants): "
              f"E {row['energy_rmse']:7.2f} meV/atom   F {row['force_rmse']:7.1f} meV/Å   "
              f"({row['seconds']:.0f} s)", flush=True)

    rows = []
    if args.workers <= 1:
        for task in tasks:
            rows.append(run_task(task))
            report(rows[-1])
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                 initargs=(args,)) as pool:
            futures = [pool.submit(run_task, task) for task in tasks]
            for fut in as_completed(futures):
                rows.append(fut.result())
                report(rows[-1])
    sizes = sorted(args.sizes)
    results = aggregate(rows, sizes)

    print(f"\nTest-set RMSE, mean over {args.seeds} seed(s) (energy meV/atom, force meV/Å); same model size and "
          f"training budget")
    header = f"{'size':>6} | " + " | ".join(f"{n + ' E':>15} {n + ' F':>15}" for n in BASES)
    print(header)
    print("-" * len(header))
    for k, size in enumerate(sizes):
        cells = " | ".join(f"{results[n][k]['energy_rmse']:15.2f} {results[n][k]['force_rmse']:15.1f}"
                           for n in BASES)
        print(f"{size:>6} | {cells}")
    args.outdir.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter() - start
    summary = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "results": results, "seconds": total}
    (args.outdir / "learning_curve.json").write_text(json.dumps(summary, indent=1))
    if plot(results, sizes, args.outdir / "learning_curve.png"):
        print(f"plot: {args.outdir / 'learning_curve.png'}")
    print(f"total time {total:.0f} s")
    return summary


if __name__ == "__main__":
    main()
