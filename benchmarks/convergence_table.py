"""The README's table of convergence runs at N = 1000, made from the committed results and checkpoints.

A finished run is a line of ``benchmarks/results/chemistry_converge_<molecule>.jsonl`` (ethanol:
``chemistry_converge_ethanol_long.jsonl``) with the model's CPU-time cap; a run still under way is a checkpoint
folder in ``benchmarks/results/checkpoints/`` (its ``history.json``: epochs, CPU seconds, validation errors). The
table is printed in Markdown; tests/test_convergence_table.py checks that the README carries exactly this table, so
results and README cannot drift apart. ``--plot`` also draws the finished runs' test force error against the
models' inference cost (``chemistry_cost_float64.json``, measured by ``benchmarks/chemistry.py --cost``).
Where both cartinv bases finished on a molecule, the comparison with MACE takes the one with the lower validation
force error (from its committed ``history.json``): a choice a user can make without the test set.

    python benchmarks/convergence_table.py
    python benchmarks/convergence_table.py --plot benchmarks/results/chemistry_converged_vs_cost.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MOLECULES = ("ethanol", "malonaldehyde", "toluene", "naphthalene", "aspirin", "salicylic_acid")
# model -> (column title, CPU-time cap of its convergence runs in seconds)
MODELS = {"cartinv_lmax3_deg4": ("cartinv lmax3_deg4", 14400.0), "cartinv_lmax4_deg4": ("cartinv lmax4_deg4", 14400.0),
          "mace": ("MACE", 14400.0), "hipnn_ts": ("HIP-NN-TS", 6000.0)}
CARTINV = ("cartinv_lmax3_deg4", "cartinv_lmax4_deg4")  # the cartinv bases compared with MACE
STOPS = {"max_epochs": "epoch cap", "max_time": "cap", "early_stopping": "early stop"}
COSTS = RESULTS / "chemistry_cost_float64.json"
COLOURS = {"cartinv_lmax3_deg4": "C0", "cartinv_lmax4_deg4": "C3", "hipnn_ts": "C4", "mace": "C6"}  # as in benchmarks/chemistry.py's plot
MARKERS = dict(zip(MOLECULES, "sD^vop"))


def results_file(molecule: str, results: Path = RESULTS) -> Path:
    name = "ethanol_long" if molecule == "ethanol" else molecule
    return results / f"chemistry_converge_{name}.jsonl"


def finished(molecule: str, model: str, results: Path = RESULTS) -> dict | None:
    """The result line of the model's convergence run on the molecule (N = 1000, seed 0, the model's cap)."""
    path = results_file(molecule, results)
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if (row.get("budget"), row.get("size"), row.get("model"), row.get("seed")) == ("converge", 1000, model, 0) \
                and row["settings"]["max_time"] == MODELS[model][1]:
            return row
    return None


def history_file(molecule: str, model: str, results: Path = RESULTS) -> Path:
    """The committed checkpoint history (epochs, CPU seconds, validation errors) of a model's run on a molecule."""
    return results / "checkpoints" / f"converge_{molecule}_n1000_{model}_seed0" / "history.json"


def validation_force(molecule: str, row: dict, results: Path = RESULTS) -> float:
    """Validation force MAE (meV/Å) of a finished run at its best validation epoch, from its committed history."""
    path = history_file(molecule, row["model"], results)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no history of the {row['model']} run on {molecule} to choose a basis by")
    epochs = {h["epoch"]: h for h in json.loads(path.read_text())}
    if row["best_epoch"] not in epochs:
        raise ValueError(f"{path}: no epoch {row['best_epoch']} (the result's best_epoch)")
    return epochs[row["best_epoch"]]["valid_force_mae"] * 1e3


def chosen(molecule: str, results: Path = RESULTS, rows: dict | None = None) -> dict | None:
    """The finished cartinv run compared with MACE: the only one, or the one with the lower validation force MAE.
    rows: the molecule's finished runs by model, where the caller has them already."""
    if rows is None:
        rows = {m: finished(molecule, m, results) for m in CARTINV}
    runs = [rows[m] for m in CARTINV if rows.get(m) is not None]
    if len(runs) < 2:
        return runs[0] if runs else None
    return min(runs, key=lambda r: validation_force(molecule, r, results))


def running(molecule: str, model: str, results: Path = RESULTS) -> dict | None:
    """(epochs, CPU seconds, validation force MAE in meV/Å at the best validation loss) of a checkpointed run."""
    path = history_file(molecule, model, results)
    if not path.is_file():
        return None
    history = [h for h in json.loads(path.read_text()) if not h.get("partial")]
    if not history:
        return None
    best = min(history, key=lambda h: h["valid_loss"])
    return {"epochs": history[-1]["epoch"], "seconds": history[-1]["seconds"],
            "valid_force": best["valid_force_mae"] * 1e3}


ERRORS = ("energy_mae_mev_atom", "force_mae_mev_a")  # the two test errors of a cell, in its order


def cell(row: dict | None, progress: dict | None, best: tuple[bool, bool]) -> str:
    """A model's cell: test energy / force MAE of a finished run (each in bold where it is the molecule's lowest),
    or the progress of a running one."""
    if row is not None:
        energy, force = f"{row['energy_mae_mev_atom']:.2f}", f"{row['force_mae_mev_a']:.1f}"
        values = " / ".join(f"**{v}**" if b else v for v, b in zip((energy, force), best))
        return f"{values} ({row['epochs']:,}, {row['train_seconds']:,.0f} s, {STOPS[row['stop']]})"
    if progress is not None:
        return (f"running (validation {progress['valid_force']:.1f} after {progress['epochs']:,} epochs, "
                f"{progress['seconds']:,.0f} s)")
    return "not yet run"


def comparison(cartinv: dict | None, mace: dict | None) -> str:
    """cartinv's test force MAE against MACE's, once both runs have finished, naming the cartinv basis."""
    if cartinv is None or mace is None:
        return "–"
    ratio = cartinv["force_mae_mev_a"] / mace["force_mae_mev_a"] - 1
    basis = MODELS[cartinv["model"]][0].removeprefix("cartinv ")
    return f"{abs(ratio) * 100:.0f} % {'lower' if ratio < 0 else 'higher'} ({basis})"


def table(results: Path = RESULTS) -> str:
    head = "| molecule | " + " | ".join(title for title, _ in MODELS.values()) + \
        " | cartinv's force MAE against MACE's (basis: lower validation error) |"
    lines = [head, "| --- " * (len(MODELS) + 2) + "|"]
    for molecule in MOLECULES:
        rows = {m: finished(molecule, m, results) for m in MODELS}
        done = [r for r in rows.values() if r is not None]
        # each error's lowest value, once two or more runs have finished
        lowest = {k: min(r[k] for r in done) for k in ERRORS} if len(done) > 1 else {}
        cells = [cell(rows[m], running(molecule, m, results),
                      tuple(rows[m] is not None and rows[m][k] == lowest.get(k) for k in ERRORS))
                 for m in MODELS]
        lines.append(f"| {molecule.replace('_', ' ')} | " + " | ".join(cells) + " | "
                     + comparison(chosen(molecule, results, rows), rows["mace"]) + " |")
    return "\n".join(lines)


def points(results: Path = RESULTS, costs: Path = COSTS) -> list[tuple[str, str, float, float]]:
    """(molecule, model, inference µs/atom, test force MAE meV/Å) of every finished run whose cost was measured."""
    measured = json.loads(costs.read_text()) if costs.is_file() else {}
    out = []
    for molecule in MOLECULES:
        for model in MODELS:
            row = finished(molecule, model, results)
            cost = measured.get(molecule, {}).get(model, math.nan)
            if row is not None and math.isfinite(cost):
                out.append((molecule, model, float(cost), float(row["force_mae_mev_a"])))
    return out


def plot(path: Path, results: Path = RESULTS, costs: Path = COSTS) -> int:
    """Test force MAE against inference cost of the finished convergence runs (one marker per molecule, one colour
    per model); returns the number of points drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    drawn = points(results, costs)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for molecule, model, cost, force in drawn:
        ax.scatter(cost, force, color=COLOURS[model], marker=MARKERS[molecule], s=36)
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers at 1-2-5 steps: the data span about one decade each way
        axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:g}"))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("inference µs/atom (energy + forces, 1 thread, float64)")
    ax.set_ylabel("test force MAE (meV/Å)")
    ax.set_title("trained to convergence, N = 1000", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    handles = [plt.Line2D([], [], color=COLOURS[m], marker="o", ls="", label=MODELS[m][0]) for m in MODELS
               if any(p[1] == m for p in drawn)]
    handles += [plt.Line2D([], [], color="gray", marker=MARKERS[mol], ls="", label=mol.replace("_", " "))
                for mol in MOLECULES if any(p[0] == mol for p in drawn)]
    ax.legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return len(drawn)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plot", type=Path, help="also draw test force MAE against inference cost into this PNG")
    args = p.parse_args(argv)
    print(table())
    if args.plot is not None:
        print(f"plot: {args.plot} ({plot(args.plot)} finished runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
