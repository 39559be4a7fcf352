"""Side-by-side accuracy and cost on GFN2-xTB molecular data: cartinv bases against hippynn and MACE.

Every model is trained with the same protocol (``cartinv.runtime.training.fit_model``: Adam, loss 10 x MSE(energy
per atom) + MSE(force components), learning rate halved on validation plateaus, best validation weights kept) on
the same splits: per molecule a fixed test set (300 frames), a fixed validation set (100) and nested training sets
(the first N of the remaining frames). Two budgets:

- ``--budget time``: equal training time per model (``--time-budget`` seconds of CPU time, one thread each, so
  that other programs on the machine do not change any model's budget);
- ``--budget converge``: early stopping (``--patience`` validation checks without a better validation loss),
  capped at ``--max-epochs`` and ``--max-time`` (CPU seconds; the ``stop`` field says which ended the run).

The validation set is scored about every 200 training structures (every epoch from N = 200 on); training time
excludes validation.

Each (budget, molecule, size, model, seed) result is appended as one JSON line to ``--results`` and skipped when
already there, so a long run can be completed in several pieces. With ``--checkpoints DIR`` every training run keeps
its checkpoint (weights, optimiser, schedule, CPU seconds so far) in a folder of DIR, and a convergence run that
stopped at ``--max-time`` is continued from it when asked again with a larger ``--max-time``: its result line is
replaced by the longer run's, whose epochs and training time count from the start. The table gives test energy
MAE (meV/atom), force MAE (meV/Å), parameters, training time and inference cost; the plot shows force MAE against
inference cost.
Inference cost (µs per atom for energy and forces, one structure per call, one thread; it depends on the
architecture and the molecule, not on the weights) is measured by ``--cost``: every model side by side in one
process, best of 3 over 50 test structures; run it on an otherwise idle machine.

    python examples/xtb_data.py                                  # the data (about 8 minutes)
    python benchmarks/chemistry.py --data benchmarks/data ...     # or the committed data of four of the molecules
    python benchmarks/chemistry.py --budget time --molecules ethanol aspirin --sizes 50 200 1000
    python benchmarks/chemistry.py --budget converge --sizes 1000
    python benchmarks/chemistry.py --budget converge --sizes 1000 --max-time 14400 --checkpoints DIR  # resumable
    python benchmarks/chemistry.py --cost                        # inference cost of every model (idle machine)
    python benchmarks/chemistry.py --quick                       # smoke run on the shipped small file (CI)
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

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import chem_models  # noqa: E402
from cartinv.allocator import keep_freed_memory  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "examples" / "data" / "xtb_molecules.extxyz"
OUTPUT = Path(os.environ.get("CARTINV_EXAMPLES_OUTPUT") or "cartinv_output")

# name -> (kind, options). Two interaction layers everywhere (hippynn's and MACE's usual depth), 32 features.
MODELS = {
    "cartinv_lmax3_deg4": ("cartinv", {"basis": "lmax3_deg4", "n_features": 32, "n_layers": 2, "hidden": (64,)}),
    "cartinv_lmax3_deg2": ("cartinv", {"basis": "lmax3_deg2", "n_features": 32, "n_layers": 2, "hidden": (64,)}),
    "cartinv_lmax3_flexible": ("cartinv", {"basis": "lmax3_flexible", "n_features": 32, "n_layers": 2,
                                           "hidden": (64,)}),
    "cartinv_lmax4_deg4": ("cartinv", {"basis": "lmax4_deg4", "n_features": 32, "n_layers": 2, "hidden": (64,)}),
    "hipnn_ts": ("hipnn_ts", {"n_features": 32}),
    "hiphop": ("hiphop", {"n_features": 32}),
    "mace": ("mace", {"channels": 32, "max_L": 1, "correlation": 3}),
}
N_TEST, N_VALID = 300, 100


def available(kind: str) -> str:
    """'' when the model's package imports, else the reason it is skipped."""
    module = {"hipnn_ts": "hippynn", "hiphop": "hippynn", "mace": "mace"}.get(kind)
    if module is None:
        return ""
    import importlib.util

    return "" if importlib.util.find_spec(module) else f"{module} is not installed"


def load_molecules(args) -> dict:
    """molecule -> frames (from --data/<molecule>.extxyz or .extxyz.xz, or the shipped small file with --quick)."""
    from cartinv.runtime.training import read_frames

    out = {}
    if args.data is None:
        import ase.io

        images = ase.io.read(str(SHIPPED), ":")
        for name in args.molecules:
            picked = [a for a in images if a.info.get("molecule") == name]
            tmp = args.outdir / f"_{name}.extxyz"
            tmp.parent.mkdir(parents=True, exist_ok=True)
            ase.io.write(str(tmp), picked)
            out[name] = read_frames(tmp)
    else:
        for name in args.molecules:
            path = args.data / f"{name}.extxyz"
            if not path.exists() and path.with_name(path.name + ".xz").exists():  # the committed copies
                path = path.with_name(path.name + ".xz")
            out[name] = read_frames(path)
    return out


def splits(frames: list, n_test: int, n_valid: int, seed: int):
    """(test, valid, pool): a fixed permutation; training sets are prefixes of the pool."""
    perm = np.random.default_rng([seed, 11]).permutation(len(frames))
    pick = (lambda idx: [frames[k] for k in idx])
    return pick(perm[:n_test]), pick(perm[n_test:n_test + n_valid]), pick(perm[n_test + n_valid:])


def inference_cost(model, predict_fn, structs, repeats: int = 3) -> float:
    """Best of ``repeats`` of the seconds per atom to evaluate energy and forces one structure at a time."""
    from cartinv.runtime.training.data import collate

    model.eval()
    batches = [collate([s]) for s in structs]
    predict_fn(model, batches[0], training=False)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for b in batches:
            predict_fn(model, b, training=False)
        times.append(time.perf_counter() - start)
    return float(np.min(times)) / sum(int(b.n_atoms.sum()) for b in batches)


def run_one(name: str, molecule: str, size: int, seed: int, data: dict, args) -> dict:
    from cartinv.runtime.training import TrainConfig
    from cartinv.runtime.training.data import featurize, fingerprint, fit_e0s
    from cartinv.runtime.training.fit import fit_model, force_scale
    from cartinv.runtime.training.metrics import metrics, predict_all

    kind, options = MODELS[name]
    test, valid, pool = data
    train_frames = pool[:size]
    elements = sorted({s for f in train_frames for s in f.symbols})
    dtype = getattr(torch, args.dtype)
    e0s, scale = fit_e0s(train_frames, elements), force_scale(train_frames)
    sets = [featurize(x, elements, args.cutoff, dtype) for x in (train_frames, valid, test)]
    neighbours = sum(s.rij.shape[0] for s in sets[0]) / sum(s.n_atoms for s in sets[0])
    model, predict_fn = chem_models.build(kind, elements, e0s, scale, args.cutoff, dtype=dtype, seed=seed,
                                          avg_neighbours=neighbours, **options)
    # score the validation set about every 200 training structures, so small sets do not spend their time there
    every = max(1, -(-200 // size))
    if args.budget == "time":
        config = TrainConfig(max_time=args.time_budget, clock="cpu", max_epochs=10 ** 6, patience=10 ** 6,
                             seed=seed, batch_size=args.batch_size, lr=args.lr, progress=False, valid_every=every)
    else:
        config = TrainConfig(max_time=args.max_time, clock="cpu", max_epochs=args.max_epochs, patience=args.patience,
                             seed=seed, batch_size=args.batch_size, lr=args.lr, progress=False, valid_every=every)
    ck_dir = (None if args.checkpoints is None
              else args.checkpoints / run_folder(args.budget, molecule, size, name, seed))
    loop = fit_model(model, sets[0], sets[1], config, predict_fn=predict_fn, outdir=ck_dir, resume=ck_dir is not None,
                     data_hash=fingerprint(train_frames) + fingerprint(valid),
                     log=(lambda line: print("      " + line, flush=True)) if args.verbose or ck_dir else None)
    test_m = metrics(predict_all(model, sets[2], predict_fn=predict_fn))
    return {"budget": args.budget, "molecule": molecule, "size": size, "model": name, "seed": seed,
            "params": chem_models.n_parameters(model), "epochs": loop.epochs, "best_epoch": loop.best_epoch,
            "stop": loop.stop_reason, "train_seconds": loop.train_seconds,
            "energy_mae_mev_atom": test_m["energy_mae_per_atom"] * 1e3, "force_mae_mev_a": test_m["force_mae"] * 1e3,
            "force_rmse_mev_a": test_m["force_rmse"] * 1e3,
            # the molecule's data file (its frames in file order): rows compare only where this agrees
            "data_fingerprint": args.fingerprints[molecule],
            "settings": {"time_budget": args.time_budget if args.budget == "time" else None,
                         "max_time": args.max_time if args.budget == "converge" else None,
                         "max_epochs": args.max_epochs, "patience": args.patience, "dtype": args.dtype,
                         "batch_size": args.batch_size, "lr": args.lr, "cutoff": args.cutoff,
                         "threads": torch.get_num_threads(), "kept_freed_memory": args.kept_freed_memory}}


def measure_costs(data: dict, models: list[str], args) -> dict:
    """molecule -> model -> µs per atom (energy + forces, one structure per call), all models in this process."""
    out = {}
    dtype = getattr(torch, args.dtype)
    for molecule, frames in data.items():
        from cartinv.runtime.training.data import featurize, fit_e0s
        from cartinv.runtime.training.fit import force_scale

        structs_frames = frames[:args.timing_structures]
        elements = sorted({s for f in frames for s in f.symbols})
        e0s, scale = fit_e0s(frames, elements), force_scale(frames)
        structs = featurize(structs_frames, elements, args.cutoff, dtype)
        neighbours = sum(s.rij.shape[0] for s in structs) / sum(s.n_atoms for s in structs)
        out[molecule] = {}
        for name in models:
            kind, options = MODELS[name]
            model, predict_fn = chem_models.build(kind, elements, e0s, scale, args.cutoff, dtype=dtype,
                                                  avg_neighbours=neighbours, **options)
            out[molecule][name] = inference_cost(model, predict_fn, structs) * 1e6
            print(f"  {molecule:15s} {name:24s} {out[molecule][name]:9.1f} µs/atom", flush=True)
    return out


def cost_file(args) -> Path:
    return args.outdir / f"cost_{args.dtype}.json"


def with_costs(rows: list[dict], costs: dict) -> list[dict]:
    """Rows with ``inference_us_atom`` from the cost table (NaN where it was not measured)."""
    return [{**r, "inference_us_atom": costs.get(r["molecule"], {}).get(r["model"], float("nan"))} for r in rows]


def key(row: dict) -> tuple:
    return row["budget"], row["molecule"], row["size"], row["model"], row["seed"]


def run_folder(budget: str, molecule: str, size: int, name: str, seed: int) -> str:
    """The checkpoint folder of one training run inside ``--checkpoints``."""
    return f"{budget}_{molecule}_n{size}_{name}_seed{seed}"


def can_extend(row: dict, args) -> bool:
    """Whether a stored convergence result stopped at its time cap below this run's ``--max-time`` (and can resume)."""
    return (args.checkpoints is not None and row["budget"] == "converge" and row["stop"] == "max_time"
            and row["train_seconds"] < args.max_time)


def replace_result(path: Path, row: dict) -> None:
    """Write ``row`` into the results file in place of the line with its key (appended when there is none)."""
    rows = [r for r in read_results(path) if key(r) != key(row)] + [row]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table(rows: list[dict]) -> str:
    head = (f"{'budget':8s} {'molecule':15s} {'N':>5s} {'model':24s} {'E MAE':>8s} {'F MAE':>8s} {'params':>8s} "
            f"{'train s':>8s} {'epochs':>6s} {'µs/atom':>8s}")
    lines = [head, "-" * len(head)]
    for r in sorted(rows, key=lambda r: (r["budget"], r["molecule"], r["size"], list(MODELS).index(r["model"])
                                         if r["model"] in MODELS else 99)):
        lines.append(f"{r['budget']:8s} {r['molecule']:15s} {r['size']:5d} {r['model']:24s} "
                     f"{r['energy_mae_mev_atom']:8.2f} {r['force_mae_mev_a']:8.1f} {r['params']:8d} "
                     f"{r['train_seconds']:8.0f} {r['epochs']:6d} {_cost(r['inference_us_atom']):>8s}")
    return "\n".join(lines) + ("\n(E MAE meV/atom, F MAE meV/Å, test set; inference with forces, 1 structure per call; "
                               "'-': not measured, see --cost)")


def _cost(us: float) -> str:
    return "-" if math.isnan(us) else f"{us:.1f}"


def plot(rows: list[dict], path: Path) -> bool:
    """Force MAE against inference cost, one panel per (budget, size), one colour per model."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    panels = sorted({(r["budget"], r["size"]) for r in rows})
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.0), squeeze=False)
    markers = dict(zip(sorted({r["molecule"] for r in rows}), "osD^v<>p"))
    colours = {m: f"C{k}" for k, m in enumerate(MODELS)}
    for ax, (budget, size) in zip(axes[0], panels):
        for r in rows:
            if (r["budget"], r["size"]) != (budget, size):
                continue
            if not np.isfinite(r["inference_us_atom"]):
                continue
            ax.scatter(r["inference_us_atom"], r["force_mae_mev_a"], color=colours.get(r["model"], "k"),
                       marker=markers[r["molecule"]], s=30)
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # decade labels only: minor labels overlap on narrow ranges
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("inference µs/atom (energy + forces, 1 thread)")
        ax.set_ylabel("test force MAE (meV/Å)")
        ax.set_title(f"budget {budget}, N = {size}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=m) for m, c in colours.items()
               if any(r["model"] == m for r in rows)]
    handles += [plt.Line2D([], [], color="gray", marker=mk, ls="", label=mol) for mol, mk in markers.items()]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return True


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=OUTPUT / "xtb",
                   help="folder of <molecule>.extxyz from examples/xtb_data.py (default cartinv_output/xtb)")
    p.add_argument("--molecules", nargs="+", default=["ethanol", "malonaldehyde", "aspirin", "naphthalene",
                                                      "salicylic_acid", "toluene"])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    p.add_argument("--budget", choices=("time", "converge"), default="time")
    p.add_argument("--time-budget", type=float, default=600.0, help="seconds of training per model (--budget time)")
    p.add_argument("--max-epochs", type=int, default=2000, help="epoch cap (--budget converge)")
    p.add_argument("--max-time", type=float, default=3 * 3600.0,
                   help="CPU-time cap in seconds (--budget converge)")
    p.add_argument("--patience", type=int, default=50, help="early-stopping patience in epochs (--budget converge)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--cutoff", type=float, default=5.0)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--timing-structures", type=int, default=50, help="structures timed for inference cost")
    p.add_argument("--cost", action="store_true",
                   help="only measure the inference cost of every model (writes OUTDIR/cost_<dtype>.json)")
    p.add_argument("--outdir", type=Path, default=OUTPUT / "chemistry")
    p.add_argument("--results", type=Path, help="results file (JSON lines; default OUTDIR/results.jsonl)")
    p.add_argument("--checkpoints", type=Path,
                   help="keep each training run's checkpoint in a folder here; a convergence run that hit "
                        "--max-time continues from it when asked again with a larger --max-time")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: shipped small data, ethanol, N = 20, 4 s per model, test set 20")
    p.add_argument("-v", "--verbose", action="store_true", help="print every epoch")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    # as `cartinv train` does; process-wide, so every model here runs with it alike (cartinv/allocator.py)
    args.kept_freed_memory = keep_freed_memory()
    n_test, n_valid = N_TEST, N_VALID
    if args.quick:
        args.data, args.molecules, args.sizes, args.budget, args.time_budget = None, ["ethanol"], [20], "time", 4.0
        args.timing_structures = 5
        n_test, n_valid = 20, 10
        if args.results is None:
            args.results = args.outdir / "results_quick.jsonl"
    args.results = args.results or args.outdir / "results.jsonl"
    args.outdir.mkdir(parents=True, exist_ok=True)
    from cartinv.runtime.training.data import fingerprint

    data = load_molecules(args)
    args.fingerprints = {molecule: fingerprint(frames) for molecule, frames in data.items()}
    done = {key(r) for r in read_results(args.results) if not can_extend(r, args)}
    for name in args.models:
        reason = available(MODELS[name][0])
        if reason:
            print(f"skipping {name}: {reason}")
    models = [m for m in args.models if not available(MODELS[m][0])]
    if args.cost or args.quick:
        costs = measure_costs(data, models, args)
        if args.cost:
            old = json.loads(cost_file(args).read_text()) if cost_file(args).is_file() else {}
            cost_file(args).write_text(json.dumps({**old, **costs}, indent=1) + "\n")
            print(f"wrote {cost_file(args)}")
            return []
    else:
        costs = json.loads(cost_file(args).read_text()) if cost_file(args).is_file() else {}
    for molecule, frames in data.items():
        test, valid, pool = splits(frames, n_test, n_valid, seed=2026)
        for size in args.sizes:
            if size > len(pool):
                raise SystemExit(f"{molecule}: {len(frames)} frames hold no training set of {size} after "
                                 f"{n_test} test and {n_valid} validation frames")
            for seed in range(args.seeds):
                for name in models:
                    if (args.budget, molecule, size, name, seed) in done:
                        continue
                    print(f"  {args.budget} {molecule} N={size} {name} seed {seed} ...", flush=True)
                    row = run_one(name, molecule, size, seed, (test, valid, pool), args)
                    replace_result(args.results, row)
                    print(f"    E {row['energy_mae_mev_atom']:.2f} meV/atom  F {row['force_mae_mev_a']:.1f} meV/Å  "
                          f"{row['params']} params  {row['epochs']} epochs  {row['train_seconds']:.0f} s", flush=True)
    rows = with_costs([r for r in read_results(args.results) if r["molecule"] in data and r["size"] in args.sizes
                       and r["model"] in models and r["budget"] == args.budget], costs)
    print(table(rows))
    if plot(rows, args.outdir / f"accuracy_vs_cost_{args.budget}.png"):
        print(f"plot: {args.outdir / f'accuracy_vs_cost_{args.budget}.png'}")
    return rows


if __name__ == "__main__":
    main()
