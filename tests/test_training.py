"""cartinv train / evaluate: data checks, training, resume, metrics, and the saved model in ASE and LAMMPS export."""

import copy
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ase = pytest.importorskip("ase")
from ase.io import read, write  # noqa: E402

from cartinv.runtime.training import (ConfigError, DataError, TrainConfig, evaluate, load_config,  # noqa: E402
                                      read_frames, train)
from cartinv.runtime.training.data import collate, featurize, fit_e0s, predict  # noqa: E402
from cartinv.runtime.integrations.lammps import lammps_support  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MOLECULES = ROOT / "examples" / "data" / "xtb_molecules.extxyz"

# small and fast: every test here trains in a second or two
TINY = dict(n_features=4, hidden=(8,), n_radial=4, dtype="float64", threads=1, progress=False, batch_size=4)


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cartinv.cli", *args], capture_output=True, text=True, cwd=cwd)


def molecules(name=None, n=None):
    frames = read(str(MOLECULES), ":")
    if name is not None:
        frames = [f for f in frames if f.info["molecule"] == name]
    return frames[:n] if n else frames


@pytest.fixture(scope="module")
def ethanol_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ethanol.extxyz"
    write(str(path), molecules("ethanol", 40))
    return path


def test_shipped_dataset_is_small_and_labelled():
    assert MOLECULES.stat().st_size < 5 * 2 ** 20
    frames = read_frames(MOLECULES)
    names = {f.source for f in frames}
    assert len(names) == len(frames)
    kinds = {a.info["molecule"] for a in molecules()}
    assert kinds == {"ethanol", "malonaldehyde", "aspirin", "naphthalene", "salicylic_acid", "toluene"}
    assert all(np.isfinite(f.forces).all() and f.forces.shape == (f.n_atoms, 3) for f in frames)


def test_training_reduces_the_loss_on_mixed_molecules(tmp_path):
    frames = read_frames(MOLECULES)
    mixed = [f for k, f in enumerate(frames) if k % 10 == 0][:48]  # every molecule, several compositions
    config = TrainConfig(max_epochs=10, **{**TINY, "n_features": 8, "hidden": (16,)})
    result = train(mixed, config, outdir=tmp_path / "run", log=None)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 10 and result.epochs == 10 and result.stop_reason == "max_epochs"
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    assert result.valid_metrics["force_mae"] < history[0]["valid_force_mae"]
    assert set(result.elements) == {"C", "H", "O"}
    assert (tmp_path / "run" / "model.pt").is_file()


def test_resume_equals_an_uninterrupted_run(tmp_path, ethanol_file):
    config = TrainConfig(max_epochs=4, **TINY)
    whole = train(ethanol_file, config, outdir=tmp_path / "whole", log=None)
    train(ethanol_file, config.replace(max_epochs=2), outdir=tmp_path / "split", log=None)
    lines = []
    resumed = train(ethanol_file, config, outdir=tmp_path / "split", resume=True, log=lines.append)
    assert any("resumed" in line and "epoch 2" in line for line in lines)
    assert resumed.epochs == whole.epochs == 4 and resumed.best_epoch == whole.best_epoch
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["weights"]
    b = torch.load(tmp_path / "split" / "model.pt", weights_only=True)["weights"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ha = json.loads((tmp_path / "whole" / "history.json").read_text())
    hb = json.loads((tmp_path / "split" / "history.json").read_text())
    assert [r["valid_loss"] for r in ha] == [r["valid_loss"] for r in hb]


def test_resume_refuses_changed_settings_or_data(tmp_path, ethanol_file):
    config = TrainConfig(max_epochs=1, **TINY)
    train(ethanol_file, config, outdir=tmp_path / "r", log=None)
    with pytest.raises(ConfigError, match=r"settings \['lr'\] differ"):
        train(ethanol_file, config.replace(lr=1e-3, max_epochs=2), outdir=tmp_path / "r", resume=True, log=None)
    other = tmp_path / "other.extxyz"
    write(str(other), molecules("ethanol", 41)[1:])
    with pytest.raises(ConfigError, match="data differ"):
        train(other, config.replace(max_epochs=2), outdir=tmp_path / "r", resume=True, log=None)


def test_max_time_stops_within_an_epoch(tmp_path, ethanol_file):
    result = train(ethanol_file, TrainConfig(max_time=1e-6, **TINY), outdir=tmp_path / "t", log=None)
    assert result.stop_reason == "max_time" and result.epochs == 1
    history = json.loads((tmp_path / "t" / "history.json").read_text())
    assert history[0]["partial"] is True


def test_e0s_fit_recovers_reference_energies():
    from cartinv.runtime.training.data import Frame

    true = {"C": -148.3, "H": -10.7, "O": -201.9}
    frames = []
    for k, formula in enumerate(["CH4", "H2O", "CO2", "CH3CH2OH", "H2CO", "O2"]):
        from ase.build import molecule

        atoms = molecule(formula)
        e = sum(true[s] for s in atoms.get_chemical_symbols())
        frames.append(Frame(tuple(atoms.get_chemical_symbols()), atoms.positions, np.zeros((3, 3)),
                            (False,) * 3, e, np.zeros((len(atoms), 3)), None, f"f{k}"))
    fitted = fit_e0s(frames, ["C", "H", "O"])
    assert all(abs(fitted[e] - true[e]) < 1e-9 for e in true)


def test_evaluate_matches_the_ase_calculator(tmp_path, ethanol_file):
    from cartinv.runtime.integrations.ase import CartinvCalculator

    result = train(ethanol_file, TrainConfig(max_epochs=1, **TINY), outdir=tmp_path / "m", log=None)
    m, pred = evaluate(result.model_path, ethanol_file)
    calc = CartinvCalculator(result.model_path)
    frames = read(str(ethanol_file), ":")
    energies, forces = [], []
    for atoms in frames:
        ref_e, ref_f = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = calc
        energies.append(atoms.get_potential_energy() - ref_e)
        forces.append(atoms.get_forces() - ref_f)
    err_e = np.array(energies) / np.array([len(a) for a in frames])
    err_f = np.concatenate(forces)
    assert m["n_structures"] == len(frames)
    assert math.isclose(m["energy_mae_per_atom"], np.abs(err_e).mean(), rel_tol=1e-9)
    assert math.isclose(m["energy_rmse_per_atom"], np.sqrt((err_e ** 2).mean()), rel_tol=1e-9)
    assert math.isclose(m["force_mae"], np.abs(err_f).mean(), rel_tol=1e-9)
    assert math.isclose(m["force_rmse"], np.sqrt((err_f ** 2).mean()), rel_tol=1e-9)


def test_stress_of_a_batch_equals_the_calculators(tmp_path):
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from cartinv.runtime.integrations.ase import CartinvCalculator
    from cartinv.runtime.models.potential import CartinvPotential

    rng = np.random.default_rng(3)
    frames = []
    for k in range(3):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.05 * k, cubic=True).repeat((2, 1, 1))
        atoms.rattle(0.05, seed=k)
        atoms.set_cell(atoms.cell * (1 + 0.01 * rng.normal(size=(3, 3))), scale_atoms=True)
        atoms.calc = EMT()
        atoms.get_stress()
        frames.append(atoms)
    path = tmp_path / "cu.extxyz"
    write(str(path), frames)
    parsed = read_frames(path)
    assert all(f.stress is not None for f in parsed)
    model = CartinvPotential(["Cu"], basis="lmax2_deg4", cutoff=4.0, n_features=4, hidden=(8,), seed=1)
    structs = featurize(parsed, ["Cu"], model.cutoff, model.dtype)
    _, _, stress = predict(model, collate(structs), training=False, want_stress=True)
    calc = CartinvCalculator(model)
    for k, frame in enumerate(parsed):  # the frames as read back (extxyz rounds positions to 8 decimals)
        atoms = frame.atoms()
        atoms.calc = calc
        assert np.allclose(stress[k].detach().numpy(), atoms.get_stress(), rtol=1e-10, atol=1e-12)
    result = train(path, TrainConfig(max_epochs=2, cutoff=4.0, valid_fraction=0.34, **TINY), outdir=tmp_path / "s",
                   log=None)
    assert "stress_mae" in result.valid_metrics


def test_cli_train_evaluate_and_use_the_model(tmp_path, ethanol_file):
    out = tmp_path / "cli"
    r = run("train", str(ethanol_file), "-o", str(out), "--epochs", "2", "--features", "4", "--hidden", "8",
            "--radial", "4", "--threads", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("model: ") and r.stdout.count("\n") == 1
    r = run("evaluate", str(out / "model.pt"), str(ethanol_file), "--format", "json", "--plot",
            str(tmp_path / "parity.png"))
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert {"n_structures", "energy_mae_per_atom", "energy_rmse_per_atom", "force_mae", "force_rmse"} <= set(m)
    assert m["n_structures"] == 40
    assert (tmp_path / "parity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = run("lammps-export", str(out / "model.pt"), "-o", str(tmp_path / "model.pkl"))
    assert r.returncode == 0, r.stderr


def test_config_file_json_and_toml(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"basis": "lmax3_deg2", "hidden": [16, 16], "lr": 0.001}))
    c = load_config(tmp_path / "c.json")
    assert c.basis == "lmax3_deg2" and c.hidden == (16, 16) and c.lr == 0.001
    (tmp_path / "c.toml").write_text('basis = "lmax2_deg4"\ne0s = { H = -13.6, O = -2041.0 }\n')
    c = load_config(tmp_path / "c.toml")
    assert c.e0s == {"H": -13.6, "O": -2041.0}
    for text, field in [({"learning_rate": 1}, "unknown setting 'learning_rate'"),
                        ({"cutoff": "5"}, "cutoff must be"), ({"hidden": [0]}, "hidden must be"),
                        ({"max_epochs": True}, "max_epochs must be"), ({"dtype": "float16"}, "dtype must be")]:
        (tmp_path / "bad.json").write_text(json.dumps(text))
        with pytest.raises(ConfigError, match=field):
            load_config(tmp_path / "bad.json")
    (tmp_path / "nan.json").write_text('{"lr": NaN}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(tmp_path / "nan.json")


def _bad_files(tmp_path, ethanol_file):
    frames = read(str(ethanol_file), ":8")
    out = {}
    no_forces = [f.copy() for f in frames]
    for a, src in zip(no_forces, frames):
        a.info["energy"] = src.get_potential_energy()
    out["no_forces"] = (no_forces, "frame 0: no forces under the key 'forces'")
    nan = [f.copy() for f in frames]
    for k, (a, src) in enumerate(zip(nan, frames)):
        from ase.calculators.singlepoint import SinglePointCalculator

        a.calc = SinglePointCalculator(a, energy=math.nan if k == 5 else src.get_potential_energy(),
                                       forces=src.get_forces())
    out["nan_energy"] = (nan, "frame 5: energy 'energy' is nan")
    # a periodic frame whose cell is NaN, or flat: no neighbour list exists (NaN cells once failed deep in numpy)
    for name, cell, msg in [("nan_cell", np.full((3, 3), np.nan), "frame 2: the cell holds NaN or infinite values"),
                            ("flat_cell", np.diag([20.0, 20.0, 0.0]),
                             "frame 2: the periodic cell vectors (a, b, c) are degenerate: they span no volume")]:
        images = [f.copy() for f in frames]
        for a, src in zip(images, frames):
            a.calc = SinglePointCalculator(a, energy=src.get_potential_energy(), forces=src.get_forces())
        images[2].cell, images[2].pbc = cell, True
        out[name] = (images, msg)
    paths = {}
    for name, (images, msg) in out.items():
        paths[name] = (tmp_path / f"{name}.extxyz", msg)
        write(str(paths[name][0]), images)
    (tmp_path / "empty.extxyz").write_text("")
    paths["empty"] = (tmp_path / "empty.extxyz", "empty file (no frames)")
    return paths


def test_bad_data_is_a_one_line_error_naming_file_and_frame(tmp_path, ethanol_file):
    cases = _bad_files(tmp_path, ethanol_file)
    for name, (path, msg) in cases.items():
        r = run("train", str(path), "-o", str(tmp_path / "o"), "--epochs", "1", "--quiet")
        assert r.returncode == 2, (name, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, (name, r.stderr)
        assert str(path) in r.stderr and msg in r.stderr, (name, r.stderr)
    r = run("train", str(ethanol_file), "--energy-key", "REF_energy", "-o", str(tmp_path / "o"), "--quiet")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert f"{ethanol_file}: frame 0: no energy under the key 'REF_energy'" in r.stderr
    # a species the training data never saw, in the validation file
    water = tmp_path / "water.extxyz"
    from ase.build import molecule
    from ase.calculators.singlepoint import SinglePointCalculator

    w = molecule("SH2")
    w.calc = SinglePointCalculator(w, energy=-1.0, forces=np.zeros((3, 3)))
    write(str(water), [w])
    r = run("train", str(ethanol_file), "--valid", str(water), "-o", str(tmp_path / "o"), "--quiet")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert f"{water}: frame 0: species ['S'] never occur in the training data" in r.stderr
    r = run("train", str(tmp_path / "missing.extxyz"), "-o", str(tmp_path / "o"), "--quiet")
    assert r.returncode == 2 and "missing.extxyz: no such file" in r.stderr


def test_evaluate_refuses_unknown_species_and_foreign_files(tmp_path, ethanol_file):
    result = train(ethanol_file, TrainConfig(max_epochs=1, **TINY), outdir=tmp_path / "m", log=None)
    other = tmp_path / "cu.extxyz"
    write(str(other), read(str(ROOT / "examples" / "data" / "cu_emt.xyz"), ":2"))
    r = run("evaluate", str(result.model_path), str(other), "--no-plot")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "species ['Cu'] never occur in the model" in r.stderr
    r = run("evaluate", str(ethanol_file), str(ethanol_file), "--no-plot")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a saved CartinvPotential" in r.stderr


def test_compressed_data_reads_as_the_plain_file(tmp_path, ethanol_file, monkeypatch):
    """.xz, .gz and .bz2 copies give the same frames (fingerprint, and an index slice), inflated once in memory;
    a corrupt or oversized one is a one-line DataError naming the file."""
    import bz2
    import gzip
    import lzma

    from cartinv.runtime.training import data
    from cartinv.runtime.training.data import fingerprint

    plain = read_frames(ethanol_file)
    raw = ethanol_file.read_bytes()
    for ext, compress in (("xz", lzma.compress), ("gz", gzip.compress), ("bz2", bz2.compress)):
        packed = tmp_path / f"ethanol.extxyz.{ext}"
        packed.write_bytes(compress(raw))
        frames = read_frames(packed)
        assert fingerprint(frames) == fingerprint(plain) and frames[3].source == f"{packed}: frame 3"
        assert fingerprint(read_frames(packed, index="2:5")) == fingerprint(plain[2:5])
    corrupt = tmp_path / "bad.extxyz.xz"
    corrupt.write_bytes(lzma.compress(raw)[:-40])
    with pytest.raises(DataError, match=r"bad.extxyz.xz: cannot decompress") as err:
        read_frames(corrupt)
    assert "\n" not in str(err.value)
    monkeypatch.setattr(data, "MAX_DECOMPRESSED_BYTES", len(raw) - 1)
    with pytest.raises(DataError, match=rf"ethanol.extxyz.xz: decompresses to more than {len(raw) - 1} bytes"):
        read_frames(tmp_path / "ethanol.extxyz.xz")


def test_data_errors_are_value_errors():
    assert issubclass(DataError, ValueError) and issubclass(ConfigError, ValueError)


def test_valid_every_scores_the_validation_set_on_schedule(tmp_path, ethanol_file):
    result = train(ethanol_file, TrainConfig(max_epochs=5, valid_every=2, **TINY), outdir=tmp_path / "v", log=None)
    history = json.loads((tmp_path / "v" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [2, 4, 5]  # and always after the last epoch
    assert result.epochs == 5 and result.best_epoch in (2, 4, 5)


def test_md_stability_example_runs_on_a_trained_model(tmp_path, ethanol_file):
    """examples/md_molecule.py: a short NVT run, bonds followed, bond lengths compared with the reference MD."""
    result = train(ethanol_file, TrainConfig(max_epochs=2, **TINY), outdir=tmp_path / "m", log=None)
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "md_molecule.py"), str(result.model_path),
                        str(ethanol_file), "--time", "0.02", "--stride", "5", "--out", str(tmp_path / "md")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "md" / "ethanol_md.json").read_text())
    assert summary["bonds_followed"] == 8  # ethanol: 5 C-H, 1 C-C, 1 C-O, 1 O-H
    assert set(summary["bond_lengths"]) == {"C-C", "C-H", "C-O", "H-O"}
    xtb = summary["bond_lengths"]["C-H"]["xtb_mean"]
    assert 1.05 < xtb < 1.15
    assert summary["simulated_ps"] > 0 or summary["blew_up"] is not None


@pytest.mark.skipif(lammps_support() is not None, reason=f"LAMMPS ML-IAP unified unavailable: {lammps_support()}")
def test_md_stability_example_runs_in_lammps(tmp_path, ethanol_file):
    """examples/md_molecule.py --engine lammps: the exported model in LAMMPS gives the ASE calculator's energy at
    the start (same model, same geometry), then a short Langevin run with the same analysis."""
    result = train(ethanol_file, TrainConfig(max_epochs=2, **TINY), outdir=tmp_path / "m", log=None)
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "md_molecule.py"), str(result.model_path),
                        str(ethanol_file), "--engine", "lammps", "--time", "0.02", "--stride", "5",
                        "--out", str(tmp_path / "md")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "md" / "ethanol_lammps_md.json").read_text())
    assert summary["engine"] == "lammps" and summary["bonds_followed"] == 8
    assert summary["start_energy_difference_eV"] < 1e-8
    assert summary["simulated_ps"] > 0 or summary["blew_up"] is not None


def _tiny_structs():
    """(elements, 24 featurised structures) of the shipped molecules, for the checkpoint tests."""
    frames = read_frames(MOLECULES)[:24]
    elements = sorted({s for f in frames for s in f.symbols})
    return elements, featurize(frames, elements, 4.0, torch.float64)


def _with_coupling(elements, coupling: torch.Tensor):
    """A tiny CartinvPotential (seed 0) carrying ``coupling`` as a buffer that training leaves as built."""
    from cartinv.runtime.models.potential import CartinvPotential

    torch.manual_seed(0)
    model = CartinvPotential(elements, n_features=4, hidden=(8,), n_radial=4, dtype=torch.float64, seed=0)
    model.set_energy_reference([0.0] * len(elements))
    model.register_buffer("coupling", coupling)
    return model


def test_checkpoint_stores_built_buffers_once_and_resumes_with_them(tmp_path):
    """A buffer training leaves as built (MACE's coupling tensors, 6.5 MB) is stored once, compressed, outside both
    weight sets; a resumed run takes it from the checkpoint, so it continues exactly even where this machine builds
    another value (which it reports), and the result equals an uninterrupted run's bit for bit."""
    from cartinv.runtime.training.fit import fit_model

    elements, structs = _tiny_structs()
    config = TrainConfig(max_epochs=2, **TINY)

    def build(constant=1.0):
        coupling = torch.zeros((256, 256), dtype=torch.float64)
        coupling[::7, ::5] = constant  # mostly zeros, as coupling tensors are
        return _with_coupling(elements, coupling)

    whole = build()
    fit_model(whole, structs[:16], structs[16:], config.replace(max_epochs=4), outdir=tmp_path / "whole", log=None)
    split = build()
    fit_model(split, structs[:16], structs[16:], config, outdir=tmp_path / "split", log=None)
    ck = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert ck["version"] == 3
    assert "coupling" not in ck["model"] and "coupling" not in ck["best_model"]
    assert set(ck["built_buffers"]["coupling"]) == {"dtype", "shape", "zlib"}
    assert (tmp_path / "split" / "checkpoint.pt").stat().st_size < 256 * 256 * 8 / 4  # the buffer alone is 512 KiB
    for k in ("split", "other"):  # "other": a machine that builds another coupling resumes with the stored one
        if k == "other":
            shutil.copytree(tmp_path / "split", tmp_path / "other", dirs_exist_ok=True)
            (tmp_path / "other" / "checkpoint.pt").write_bytes(ck_bytes)
        else:
            ck_bytes = (tmp_path / "split" / "checkpoint.pt").read_bytes()
        lines = []
        resumed = build(1.0 if k == "split" else 2.0)
        fit_model(resumed, structs[:16], structs[16:], config.replace(max_epochs=4), outdir=tmp_path / k,
                  resume=True, log=lines.append)
        a, b = whole.state_dict(), resumed.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
        differ = [line for line in lines if "differ from the checkpoint's" in line]
        assert (differ == []) if k == "split" else ("coupling" in differ[0])


def test_version_2_checkpoint_resumes_where_the_model_rebuilds_its_buffers_alike(tmp_path):
    """A version 2 checkpoint (left-out buffers kept as hashes) still resumes when the model built now holds the same
    values, and is refused in one line naming the buffer otherwise; its next save is version 3."""
    from cartinv.runtime.training import built_buffers
    from cartinv.runtime.training.fit import fit_model

    elements, structs = _tiny_structs()
    config = TrainConfig(max_epochs=2, **TINY)

    def build(constant=1.0):
        return _with_coupling(elements, torch.full((64, 64), constant, dtype=torch.float64))

    whole = build()
    fit_model(whole, structs[:16], structs[16:], config.replace(max_epochs=4), outdir=tmp_path / "whole", log=None)
    fit_model(build(), structs[:16], structs[16:], config, outdir=tmp_path / "v2", log=None)
    path = tmp_path / "v2" / "checkpoint.pt"
    ck = torch.load(path, weights_only=True)
    values = built_buffers.unpack_all(ck["built_buffers"], path)
    ck["version"], ck["built_buffers"] = 2, {k: built_buffers.tensor_hash(v) for k, v in values.items()}
    torch.save(ck, path)
    shutil.copytree(tmp_path / "v2", tmp_path / "v2b")
    with pytest.raises(ConfigError, match=r"checkpoint lacks 'coupling' and this model was not built with"):
        fit_model(build(2.0), structs[:16], structs[16:], config.replace(max_epochs=4), outdir=tmp_path / "v2b",
                  resume=True, log=None)
    resumed = build()
    fit_model(resumed, structs[:16], structs[16:], config.replace(max_epochs=4), outdir=tmp_path / "v2",
              resume=True, log=None)
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    assert torch.load(path, weights_only=True)["version"] == 3


def _one_epoch_run(folder: Path, size: int = 64):
    """(build, structures, config, checkpoint) of a tiny model with a zero 'coupling' buffer of size x size,
    trained one epoch into ``folder``: the starting point of the checkpoint tests below."""
    from cartinv.runtime.training.fit import fit_model

    elements, structs = _tiny_structs()
    config = TrainConfig(max_epochs=1, **TINY)

    def build():
        return _with_coupling(elements, torch.zeros((size, size), dtype=torch.float64))

    fit_model(build(), structs[:16], structs[16:], config, outdir=folder, log=None)
    return build, structs, config, torch.load(folder / "checkpoint.pt", weights_only=True)


def test_malformed_built_buffers_are_one_line_errors(tmp_path):
    """A checkpoint whose stored buffers are malformed (unknown dtype, a size past the shape, not zlib, a name the
    model lacks with its weights left out) is refused in one line naming the field and the buffer."""
    from cartinv.runtime.training.fit import fit_model

    build, structs, config, good = _one_epoch_run(tmp_path / "ok")
    packed = good["built_buffers"]["coupling"]
    bad = {
        "dtype": ({**packed, "dtype": "object"}, r"entry 'coupling' has an unknown dtype"),
        "shape": ({**packed, "shape": [64, 65]}, r"entry 'coupling': 'zlib' does not hold exactly 33280 bytes"),
        "huge": ({**packed, "shape": [1 << 20, 1 << 20]}, r"entry 'coupling' declares \d+ bytes"),
        "zlib": ({**packed, "zlib": torch.arange(10, dtype=torch.uint8)}, r"entry 'coupling': 'zlib' is not zlib"),
        "keys": ({"shape": [1]}, r"entry 'coupling' is neither a tensor nor a packed tensor"),
        "gone": (None, r"checkpoint lacks 'coupling'"),
    }
    for name, (entry, message) in bad.items():
        ck = copy.deepcopy(good)
        if entry is None:
            del ck["built_buffers"]["coupling"]
        else:
            ck["built_buffers"]["coupling"] = entry
        folder = tmp_path / name
        shutil.copytree(tmp_path / "ok", folder)
        torch.save(ck, folder / "checkpoint.pt")
        with pytest.raises(ConfigError, match=message) as err:
            fit_model(build(), structs[:16], structs[16:], config.replace(max_epochs=2), outdir=folder, resume=True,
                      log=None)
        assert "\n" not in str(err.value) and "'built_buffers'" in str(err.value)


def test_checkpoint_weights_and_moments_are_checked_at_resume(tmp_path):
    """The best weights of a checkpoint are loaded only when training ends, and Adam's moments are first used in the
    first step: weights or moments that do not fit the model (a tensor of another shape, a missing or foreign name,
    a buffer stored at another shape) are refused in one line when the run resumes, not with a traceback later;
    so are optimiser and schedule settings other than the config's, which load_state_dict would take silently."""
    from cartinv.runtime.training import built_buffers
    from cartinv.runtime.training.fit import fit_model

    build, structs, config, good = _one_epoch_run(tmp_path / "ok")
    name = next(k for k, v in good["best_model"].items() if isinstance(v, torch.Tensor) and v.dim() == 2)

    def spoil_moment(ck):  # Adam's first moment of one parameter at another shape: the first step would fail
        state = next(iter(ck["optimizer"]["state"].values()))
        state["exp_avg"] = torch.zeros(5, dtype=torch.float64)

    def setter(field, key, value, group=None):
        def spoil(ck):
            target = ck[field] if group is None else ck[field]["param_groups"][group]
            target[key] = value
        return spoil

    cases = {
        "optimizer": spoil_moment,
        # settings that load_state_dict would take silently from the file, and progress out of range
        "betas": setter("optimizer", "betas", (0.5, 0.5), group=0),
        "lr": setter("optimizer", "lr", -1.0, group=0),
        "factor": setter("scheduler", "factor", 2.0),
        "counter": setter("scheduler", "num_bad_epochs", -3),
        "extra": setter("scheduler", "optimizer", {}),  # would replace the schedule's optimiser
        "last_lr": setter("scheduler", "_last_lr", [float("nan")]),
        "nan": lambda ck: ck["best_model"][name].fill_(float("nan")),
        "moment": lambda ck: next(iter(ck["optimizer"]["state"].values()))["exp_avg_sq"].fill_(-1.0),
        "shape": lambda ck: ck["best_model"].__setitem__(name, torch.zeros(3, 3, dtype=torch.float64)),
        "missing": lambda ck: ck["best_model"].pop(name),
        "foreign": lambda ck: ck["best_model"].__setitem__("extra.weight", torch.zeros(2)),
        "buffer": lambda ck: ck["built_buffers"].__setitem__(
            "coupling", built_buffers.pack(torch.zeros((32, 128), dtype=torch.float64))),
    }
    for case, spoil in cases.items():
        ck = copy.deepcopy(good)
        spoil(ck)
        folder = tmp_path / case
        shutil.copytree(tmp_path / "ok", folder)
        torch.save(ck, folder / "checkpoint.pt")
        expected = f"checkpoint lacks {name!r}" if case == "missing" else "checkpoint does not fit this model"
        with pytest.raises(ConfigError, match=re.escape(expected)) as err:
            fit_model(build(), structs[:16], structs[16:], config.replace(max_epochs=2), outdir=folder, resume=True,
                      log=None)
        assert "\n" not in str(err.value)
        assert json.loads((folder / "history.json").read_text()) == json.loads(
            (tmp_path / "ok" / "history.json").read_text()), case  # refused before any epoch ran


@pytest.mark.parametrize("field, value", [
    ("epoch", -1), ("best_epoch", 99), ("bad_epochs", -5), ("elapsed", float("nan")), ("elapsed", -10.0),
    ("best_loss", float("nan")), ("stopped", "forever"), ("history", [{"epoch": torch.zeros(1)}]),
    ("history", [{"epoch": 1}] * 5), ("format", "other"), ("version", True), ("model", [])])
def test_checkpoint_progress_fields_are_checked(tmp_path, field, value):
    """Counters a crafted or damaged checkpoint could hold (a NaN time never reaches max_time, a negative count of
    bad epochs extends the patience) are refused in one line naming the field, before any epoch runs."""
    from cartinv.runtime.training.fit import fit_model

    build, structs, config, ck = _one_epoch_run(tmp_path, size=8)
    ck[field] = value
    torch.save(ck, tmp_path / "checkpoint.pt")
    with pytest.raises(ConfigError) as err:
        fit_model(build(), structs[:16], structs[16:], config.replace(max_epochs=3), outdir=tmp_path, resume=True,
                  log=None)
    text = str(err.value)
    assert "\n" not in text and (f"field {field!r}" in text or "not a cartinv training checkpoint" in text)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == ck["epoch"]  # nothing ran


def test_pair_estimate_and_oversized_pair_lists(monkeypatch):
    """The pair count is estimated before any list is built: n (n - 1) for small molecules, within 3x above the
    count for a 2,048-atom cluster, within 25 % of it for a periodic crystal, above it and within 4x for a slab
    and a wire. A data set whose pair lists would exceed memory_limit() is refused in one line
    naming the densest frame, before ASE lists anything (a 100 Å cutoff in 4,000 atoms of copper: 1.4 billion
    pairs)."""
    from ase.build import bulk, fcc111

    from cartinv.runtime.models import pair_count
    from cartinv.runtime.training import data

    def estimated(f, cutoff):
        return pair_count.estimated_pairs(f.positions, f.cell, f.pbc, cutoff)

    def frame(atoms, source):
        return data.Frame(tuple(atoms.get_chemical_symbols()), atoms.positions, np.array(atoms.cell),
                          tuple(atoms.pbc), 0.0, np.zeros((len(atoms), 3)), None, source)

    for molecule in read_frames(MOLECULES)[:3]:
        listed = featurize([molecule], ["C", "H", "O"], 4.0, torch.float64)[0].rij.shape[0]
        assert estimated(molecule, 4.0) >= listed
    cluster = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(8)  # 2,048 atoms, not periodic: a large molecule
    cluster.pbc = False
    cluster = frame(cluster, "cluster")
    listed = featurize([cluster], ["Cu"], 5.0, torch.float64)[0].rij.shape[0]
    assert listed <= estimated(cluster, 5.0) < 3 * listed  # not n (n - 1), which would be 60x too many
    crystal = frame(bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3), "cu")  # 108 atoms
    listed = featurize([crystal], ["Cu"], 5.0, torch.float64)[0].rij.shape[0]
    assert abs(estimated(crystal, 5.0) / listed - 1) < 0.25
    # periodic in some directions: the density of the atoms, not of the cell with its vacuum (which gave half the
    # slab's pairs); a thin wire stays within 4x above
    slab = frame(fcc111("Cu", size=(6, 6, 6), vacuum=10.0), "slab")
    wire = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 10))
    wire.pbc = (False, False, True)
    wire.center(vacuum=10.0, axis=(0, 1))
    for atoms in (slab, frame(wire, "wire")):
        listed = featurize([atoms], ["Cu"], 5.0, torch.float64)[0].rij.shape[0]
        assert listed <= estimated(atoms, 5.0) < 4 * listed
    flat = np.random.default_rng(0).random((10, 3)) * 5.0  # degenerate periodic vectors: the bounding box
    assert pair_count.estimated_pairs(flat, np.zeros((3, 3)), (True, True, False), 5.0) == 90
    # nearly flat: the floating-point Gram determinant rounds below 0, the exact one is 1e-26 Å^6; its images crowd
    # the cutoff sphere (once estimated as a molecule without images: 90 pairs)
    side = np.array([3.0, 0.1, 0.2])
    sliver = np.array([side, [0.0, 3.0, 0.0], side + [0.0, 0.0, 1e-13]])
    assert np.linalg.det(sliver @ sliver.T) <= 0
    assert pair_count.estimated_pairs(flat, sliver, (True, True, True), 5.0) > 1e15
    assert pair_count.estimated_pairs(flat, np.eye(3) * 1e200, (True, True, True), 5.0) == 0  # beyond a float

    big = frame(bulk("Cu", "fcc", a=3.6, cubic=True).repeat(10), "big.extxyz:0")
    assert estimated(big, 100.0) > 1.4e9
    monkeypatch.setattr(pair_count, "memory_limit", lambda: 8 << 30)  # as on a 16 GiB machine, whatever this one has
    with pytest.raises(DataError, match=r"^big.extxyz:0: about 1,4\d\d,\d{3},\d{3} pairs within the cutoff "
                                        r"100.0 Å in 1 frame\(s\) \([\d,.]+ GiB") as err:
        featurize([big], ["Cu"], 100.0, torch.float64)
    assert "\n" not in str(err.value)
