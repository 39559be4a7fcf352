"""benchmarks/convergence_table.py: the README's convergence table is the one the committed results make."""

import json
import re
from pathlib import Path

import pytest

from benchmarks import convergence_table as ct

README = Path(__file__).resolve().parent.parent / "README.md"


def _settled(table: str) -> str:
    """The table with unfinished runs alike, whether under way or not yet started: a training running in this
    checkout writes its checkpoint as it goes, so only finished results are compared."""
    return re.sub(r"running \(validation [^)]*\)|not yet run", "unfinished", table)


def test_readme_carries_the_generated_table():
    text = README.read_text()
    made = ct.table()
    head = made.splitlines()[0]
    assert text.count(head) == 1, "the README has no convergence table (or two)"
    start = text.index(head)
    shown = "\n".join(text[start:].splitlines()[:len(made.splitlines())])
    assert _settled(shown) == _settled(made), "README convergence table differs from `python benchmarks/convergence_table.py`"


def _row(model, force, stop="max_time", max_time=None, epochs=10, seconds=100.0):
    return {"budget": "converge", "size": 1000, "model": model, "seed": 0, "epochs": epochs, "best_epoch": epochs,
            "stop": stop, "train_seconds": seconds, "energy_mae_mev_atom": 0.123, "force_mae_mev_a": force,
            "settings": {"max_time": max_time if max_time is not None else ct.MODELS[model][1]}}


def test_cells_bold_comparison_and_progress(tmp_path):
    rows = [_row("cartinv_lmax3_deg4", 5.0, stop="early_stopping", epochs=1234, seconds=4567.4),
            _row("mace", 6.25), _row("hipnn_ts", 20.0, max_time=600.0)]  # another cap: not this table's run
    (tmp_path / "chemistry_converge_ethanol_long.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    folder = tmp_path / "checkpoints" / "converge_ethanol_n1000_hipnn_ts_seed0"
    folder.mkdir(parents=True)
    history = [{"epoch": 1, "seconds": 50.0, "valid_loss": 2.0, "valid_force_mae": 0.030, "partial": False},
               {"epoch": 2, "seconds": 1500.4, "valid_loss": 1.0, "valid_force_mae": 0.0251, "partial": False},
               {"epoch": 3, "seconds": 1600.0, "valid_loss": 1.5, "valid_force_mae": 0.020, "partial": True}]
    (folder / "history.json").write_text(json.dumps(history))
    lines = ct.table(tmp_path).splitlines()
    # equal energy errors: both in bold; the lower force error in bold
    assert lines[2] == ("| ethanol | **0.12** / **5.0** (1,234, 4,567 s, early stop) | not yet run "
                        "| **0.12** / 6.2 (10, 100 s, cap) | running (validation 25.1 after 2 epochs, 1,500 s) "
                        "| 20 % lower (lmax3_deg4) |")
    assert lines[3] == "| malonaldehyde | not yet run | not yet run | not yet run | not yet run | – |"
    assert len(lines) == 2 + len(ct.MOLECULES)
    worse = _row("cartinv_lmax3_deg4", 7.5)
    assert ct.comparison(worse, _row("mace", 6.25)) == "20 % higher (lmax3_deg4)"
    assert ct.comparison(worse, None) == "–"


def _history(tmp_path, molecule, model, valid_force_at_best, best_epoch=10):
    folder = tmp_path / "checkpoints" / f"converge_{molecule}_n1000_{model}_seed0"
    folder.mkdir(parents=True)
    history = [{"epoch": e, "seconds": 10.0 * e, "valid_loss": 1.0 / e, "lr": 1e-3, "partial": False,
                "valid_force_mae": (valid_force_at_best if e == best_epoch else 0.001) * 1e-3}
               for e in range(1, best_epoch + 1)]
    (folder / "history.json").write_text(json.dumps(history))


def test_comparison_takes_the_basis_with_the_lower_validation_error(tmp_path):
    # lmax4 has the lower test error but the higher validation error: the test set must not pick the basis
    rows = [_row("cartinv_lmax3_deg4", 7.5), _row("cartinv_lmax4_deg4", 7.0), _row("mace", 6.7)]
    (tmp_path / "chemistry_converge_naphthalene.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _history(tmp_path, "naphthalene", "cartinv_lmax3_deg4", 7.2)
    _history(tmp_path, "naphthalene", "cartinv_lmax4_deg4", 7.3)
    line = next(x for x in ct.table(tmp_path).splitlines() if x.startswith("| naphthalene |"))
    assert line.endswith("| 12 % higher (lmax3_deg4) |")
    assert ct.chosen("naphthalene", tmp_path)["model"] == "cartinv_lmax3_deg4"
    # with the validation errors the other way round, lmax4_deg4 is compared
    (tmp_path / "checkpoints" / "converge_naphthalene_n1000_cartinv_lmax4_deg4_seed0" / "history.json").unlink()
    (tmp_path / "checkpoints" / "converge_naphthalene_n1000_cartinv_lmax4_deg4_seed0").rmdir()
    _history(tmp_path, "naphthalene", "cartinv_lmax4_deg4", 6.8)
    assert ct.chosen("naphthalene", tmp_path)["model"] == "cartinv_lmax4_deg4"
    line = next(x for x in ct.table(tmp_path).splitlines() if x.startswith("| naphthalene |"))
    assert line.endswith("| 4 % higher (lmax4_deg4) |")


def test_choosing_a_basis_needs_both_histories(tmp_path):
    rows = [_row("cartinv_lmax3_deg4", 7.5), _row("cartinv_lmax4_deg4", 7.0)]
    (tmp_path / "chemistry_converge_toluene.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _history(tmp_path, "toluene", "cartinv_lmax3_deg4", 7.2)
    with pytest.raises(FileNotFoundError, match="cartinv_lmax4_deg4 run on toluene"):
        ct.chosen("toluene", tmp_path)
    _history(tmp_path, "toluene", "cartinv_lmax4_deg4", 7.3, best_epoch=5)  # a history without the result's epoch
    with pytest.raises(ValueError, match="no epoch 10"):
        ct.chosen("toluene", tmp_path)


def test_energy_and_force_are_bold_apart(tmp_path):
    cartinv, mace = _row("cartinv_lmax3_deg4", 15.3), _row("mace", 16.3)
    cartinv["energy_mae_mev_atom"], mace["energy_mae_mev_atom"] = 0.36, 0.28
    (tmp_path / "chemistry_converge_aspirin.jsonl").write_text(json.dumps(cartinv) + "\n" + json.dumps(mace) + "\n")
    aspirin = next(line for line in ct.table(tmp_path).splitlines() if line.startswith("| aspirin |"))
    columns = [c.strip() for c in aspirin.split("|")]
    cells = [columns[2 + list(ct.MODELS).index(m)] for m in ("cartinv_lmax3_deg4", "mace")]
    assert cells[0].startswith("0.36 / **15.3** (")
    assert cells[1].startswith("**0.28** / 16.3 (")


def test_plot_points_are_the_finished_runs_with_a_measured_cost(tmp_path):
    rows = [_row("cartinv_lmax3_deg4", 5.0), _row("mace", 6.25), _row("hipnn_ts", 20.0, max_time=600.0)]
    (tmp_path / "chemistry_converge_ethanol_long.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "chemistry_converge_toluene.jsonl").write_text(json.dumps(_row("mace", 7.0)) + "\n")
    costs = tmp_path / "cost.json"
    costs.write_text(json.dumps({"ethanol": {"cartinv_lmax3_deg4": 250.0, "mace": 3000.0, "hipnn_ts": 580.0}}))
    # HIP-NN-TS ran with another cap (not finished here); toluene's MACE run has no measured cost
    assert ct.points(tmp_path, costs) == [("ethanol", "cartinv_lmax3_deg4", 250.0, 5.0), ("ethanol", "mace", 3000.0, 6.25)]
    png = tmp_path / "plot.png"
    assert ct.plot(png, tmp_path, costs) == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_finished_run_has_a_measured_cost():
    """The committed plot leaves no finished run out for want of its inference cost."""
    finished = [(mol, m) for mol in ct.MOLECULES for m in ct.MODELS if ct.finished(mol, m) is not None]
    assert len(ct.points()) == len(finished)
