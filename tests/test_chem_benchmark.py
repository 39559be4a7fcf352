"""The chemistry benchmark's models obey one contract: energies invariant, forces = −∂E/∂r, and the smoke run works."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("ase")

from benchmarks import chem_models  # noqa: E402
from cartinv.runtime.training import read_frames  # noqa: E402
from cartinv.runtime.training.data import collate, featurize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "xtb_molecules.extxyz"

KINDS = [
    ("cartinv", {"basis": "lmax3_deg4", "n_features": 8, "n_layers": 2, "hidden": (8,)}, None),
    ("hipnn_ts", {"n_features": 8}, "hippynn"),
    ("hiphop", {"n_features": 8}, "hippynn"),
    ("mace", {"channels": 8, "max_L": 1, "correlation": 2}, "mace"),
]


def _skip_missing(module):
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")


def _energy_and_forces(model, predict_fn, frame, elements, positions=None):
    from dataclasses import replace

    if positions is not None:
        frame = replace(frame, positions=positions)
    batch = collate(featurize([frame], elements, 5.0, torch.float64))
    energy, forces, _ = predict_fn(model, batch, training=False)
    return float(energy[0]), forces.detach().numpy()


@pytest.mark.parametrize("kind,options,module", KINDS, ids=[k[0] for k in KINDS])
def test_forces_are_minus_the_gradient_and_energy_is_invariant(kind, options, module):
    _skip_missing(module)
    frame = read_frames(DATA)[70]  # malonaldehyde
    elements = sorted(set(frame.symbols))
    e0s = {e: -10.0 * (k + 1) for k, e in enumerate(elements)}
    model, predict_fn = chem_models.build(kind, elements, e0s, 0.3, 5.0, seed=1, avg_neighbours=8.0, **options)
    model.eval()
    energy, forces = _energy_and_forces(model, predict_fn, frame, elements)
    assert np.isfinite(energy) and abs(forces).max() > 1e-6
    rng = np.random.default_rng(0)
    h = 1e-5
    for atom, axis in [(0, 0), (3, 2), (7, 1)]:
        plus, minus = frame.positions.copy(), frame.positions.copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        fd = -(_energy_and_forces(model, predict_fn, frame, elements, plus)[0]
               - _energy_and_forces(model, predict_fn, frame, elements, minus)[0]) / (2 * h)
        assert abs(fd - forces[atom, axis]) < 1e-6 * max(1.0, abs(fd)), (atom, axis, fd, forces[atom, axis])
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    moved = (frame.positions - frame.positions.mean(0)) @ q.T + rng.normal(size=3)
    e_rot, f_rot = _energy_and_forces(model, predict_fn, frame, elements, moved)
    assert abs(e_rot - energy) < 1e-9 * max(1.0, abs(energy))
    assert np.allclose(f_rot, forces @ q.T, atol=1e-9)


def test_quick_benchmark_runs_and_resumes(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "chemistry.py"), "--quick", "--outdir", str(tmp_path),
           "--models", "cartinv_lmax3_deg2", "cartinv_lmax3_deg4", "hipnn_ts"]
    if importlib.util.find_spec("hippynn") is None:
        cmd = cmd[:-1]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "results_quick.jsonl").read_text().splitlines()]
    assert {row["model"] for row in rows} == set(cmd[cmd.index("--models") + 1:])
    for row in rows:
        assert row["epochs"] >= 1 and np.isfinite(row["force_mae_mev_a"])
        assert row["train_seconds"] < 4.0 + 30.0  # the budget, plus at most one step past it
    assert "E MAE" in r.stdout and (tmp_path / "accuracy_vs_cost_time.png").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and " ..." not in again.stdout  # every result was already there: nothing re-run
    assert len((tmp_path / "results_quick.jsonl").read_text().splitlines()) == len(rows)


def test_convergence_run_continues_from_its_checkpoint(tmp_path, monkeypatch):
    """A run that hit --max-time resumes from its checkpoint under a larger cap, and its result line is replaced."""
    import lzma

    import ase.io

    from benchmarks import chemistry
    from cartinv.runtime.training import read_frames
    from cartinv.runtime.training.data import fingerprint

    (tmp_path / "data").mkdir()
    ethanol = [a for a in ase.io.read(str(DATA), ":") if a.info.get("molecule") == "ethanol"]
    ase.io.write(str(tmp_path / "ethanol.extxyz"), ethanol)
    # compressed, as the committed data sets are (benchmarks/data/*.extxyz.xz)
    (tmp_path / "data" / "ethanol.extxyz.xz").write_bytes(lzma.compress((tmp_path / "ethanol.extxyz").read_bytes()))
    monkeypatch.setattr(chemistry, "N_TEST", 20)
    monkeypatch.setattr(chemistry, "N_VALID", 10)
    ck = tmp_path / "ck"
    args = ["--data", str(tmp_path / "data"), "--molecules", "ethanol", "--models", "cartinv_lmax3_deg2",
            "--sizes", "20", "--budget", "converge", "--checkpoints", str(ck), "--outdir", str(tmp_path)]
    results = tmp_path / "results.jsonl"
    first = chemistry.main(args + ["--max-time", "1.5"])
    assert len(first) == 1 and first[0]["stop"] == "max_time"
    assert first[0]["data_fingerprint"] == fingerprint(read_frames(tmp_path / "ethanol.extxyz"))
    assert isinstance(first[0]["settings"]["kept_freed_memory"], bool)
    history = json.loads((ck / chemistry.run_folder("converge", "ethanol", 20, "cartinv_lmax3_deg2", 0)
                          / "history.json").read_text())
    assert history[-1]["epoch"] == first[0]["epochs"]
    second = chemistry.main(args + ["--max-time", "3"])
    assert len(results.read_text().splitlines()) == 1  # replaced, not appended
    assert second[0]["epochs"] > first[0]["epochs"] and second[0]["train_seconds"] >= 3.0
    assert second[0]["data_fingerprint"] == first[0]["data_fingerprint"]
    history = json.loads((ck / chemistry.run_folder("converge", "ethanol", 20, "cartinv_lmax3_deg2", 0)
                          / "history.json").read_text())
    epochs = [h["epoch"] for h in history]  # validated epochs (every 10th at N = 20, and the last of each run)
    assert epochs == sorted(set(epochs)) and epochs[-1] == second[0]["epochs"]  # one run, continued
    after = epochs.index(first[0]["epochs"]) + 1
    assert history[after]["seconds"] > first[0]["train_seconds"]  # its clock went on from the first run's
    stored = results.read_text()
    third = chemistry.main(args + ["--max-time", "3"])  # nothing left to extend: the stored line is kept
    assert results.read_text() == stored and third[0]["epochs"] == second[0]["epochs"]


def test_training_step_benchmark_times_both_pair_contractions(capsys):
    from benchmarks import training_step
    from cartinv.runtime.models import pair_contraction

    bound = pair_contraction.MAX_PADDING
    rows = training_step.main(["--models", "cartinv_lmax3_deg2", "--structures", "2", "--repeats", "1"])
    assert [r["model"] for r in rows] == ["cartinv_lmax3_deg2 (grouped)", "cartinv_lmax3_deg2 (per_pair)"]
    assert rows[0]["params"] == rows[1]["params"] > 0
    assert all(r["ms"] > 0 for r in rows)
    # each form runs ceil(repeats / rounds) steps in each of the 4 alternating rounds, and the table says so
    assert [r["steps"] for r in rows] == [4, 4]
    assert pair_contraction.MAX_PADDING == bound  # the forced per-pair run leaves the module as it was
    out = capsys.readouterr().out
    assert "toluene: 2 structures, 30 atoms" in out
    assert [line.split()[3] for line in out.splitlines() if line.startswith("cartinv_lmax3_deg2")] == ["4", "4"]


def test_table_marks_unmeasured_inference_cost():
    from benchmarks.chemistry import table

    row = {"budget": "converge", "molecule": "toluene", "size": 1000, "model": "mace", "energy_mae_mev_atom": 0.1,
           "force_mae_mev_a": 5.0, "params": 3, "train_seconds": 4.0, "epochs": 5}
    lines = table([{**row, "inference_us_atom": float("nan")},
                   {**row, "model": "hipnn_ts", "inference_us_atom": 12.34}]).splitlines()
    assert lines[2].endswith(" 12.3") and lines[3].endswith(" -") and "nan" not in "".join(lines)
