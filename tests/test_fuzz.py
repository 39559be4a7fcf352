"""Property-based fuzzing of every reader: mutated Basis files, saved-model payloads, training checkpoints and CLI
arguments.

Each property: the input is accepted, or refused with a one-line error naming the field (exit code 2 from the
CLI); never a traceback, never a file written outside the output folder, never a payload executed (a canary file
that any executed payload would create). The default run is bounded for CI; `pytest -m fuzz -s` runs 10,000+
cases and prints how many ran and how many distinct error messages they produced.
"""

import copy
import io
import json
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cartinv.cli import main
from cartinv.symbolic.basisfile import BasisFileError, loads

ROOT = Path(__file__).resolve().parent.parent
BASIS_TEXT = (ROOT / "generated" / "lmax2_deg4" / "lmax2_deg4.json").read_text()
SCALES = [pytest.param(300, id="ci"), pytest.param(6000, id="long", marks=pytest.mark.fuzz)]
CANARY = Path("/tmp/cartinv_fuzz_canary")


def _payloads():
    code = f"__import__('pathlib').Path('{CANARY}').write_text('ran')"
    return [code, f'"""\n{code}\n"""', f"x\n{code}", f"*/ {code} /*", f'", {code}, "', "../../etc/x", "/tmp/x",
            "\x00", "\u2028", "é", "A" * 100_000, "T1_0**99999999", "sqrt(-1)", "1/0", "T0_0" + "*T0_0" * 5000,
            "(" * 500 + ")" * 500, "NaN"]


HOSTILE = st.one_of(
    st.sampled_from(_payloads()),
    st.text(max_size=40),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([True, False, None, 0, 1, -1, 2**63, 1e308, 0.5, [], {}, [[0, 0]], [0, 1, 1], {"a": 1}]),
    st.lists(st.integers(-3, 20), max_size=5),
)


def _normalise(message: str) -> str:
    """A message with its file name, numbers and quoted values removed: distinct kinds of error."""
    message = re.sub(r"'[^']*'|\"[^\"]*\"", "Q", message.split(": ", 1)[-1])
    return re.sub(r"\d+", "N", message)[:80]


def mutate_tree(draw, tree, values, root_keys=None):
    """``tree`` (nested dicts and lists) with one value somewhere replaced, deleted or added, in place: a random
    walk down from the root picks the place. With ``root_keys`` the walk may stop at the root, which then gets one
    of those keys set; without, it takes at least one step. A list of one element is never shortened or grown."""
    node, path = tree, []
    while isinstance(node, (dict, list)) and node and (root_keys is None and not path or draw(st.booleans())):
        keys = sorted(node, key=str) if isinstance(node, dict) else list(range(len(node)))
        path.append(draw(st.sampled_from(keys)))
        node = node[path[-1]]
    if not path:
        tree[draw(st.sampled_from(root_keys))] = draw(values)
        return tree
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["replace", "delete", "insert"]))
    if action == "replace" or isinstance(parent, list) and len(parent) < 2:
        parent[path[-1]] = draw(values)
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(max_size=8))] = draw(values)
    else:
        parent.insert(path[-1], draw(values))
    return tree


@st.composite
def mutated_basis(draw):
    return json.dumps(mutate_tree(draw, json.loads(BASIS_TEXT), HOSTILE, root_keys=["extra", "name", "kind"]))


@pytest.mark.parametrize("examples", SCALES)
def test_mutated_basis_files(examples):
    messages = set()
    ran = [0]

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(mutated_basis())
    def check(text):
        ran[0] += 1
        try:
            basis = loads(text)
        except BasisFileError as exc:
            msg = str(exc)
            assert "\n" not in msg and msg.startswith("<string>: ") and len(msg) < 400
            messages.add(_normalise(msg))
            return
        from cartinv.codegen.generate import render_files

        try:
            files = render_files(basis)
        except ValueError as exc:
            assert "\n" not in str(exc)
            messages.add(_normalise(str(exc)))
            return
        source = files[f"{basis.name}_torch.py"]
        exec(compile(source, "fuzz.py", "exec"), {"__name__": "fuzz"})  # defines functions only

    check()
    assert not CANARY.exists()
    print(f"\nBasis files: {ran[0]} cases, {len(messages)} distinct error messages")
    assert len(messages) >= (15 if examples < 1000 else 40)


@pytest.fixture(scope="module")
def saved_payload(tmp_path_factory):
    from cartinv.runtime.models.potential import CartinvPotential

    path = tmp_path_factory.mktemp("model") / "m.pt"
    CartinvPotential(["Cu", "O"], basis="lmax2_deg4", n_features=4, hidden=(4,), seed=0).save(path)
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("examples", [pytest.param(80, id="ci"), pytest.param(1500, id="long", marks=pytest.mark.fuzz)])
def test_mutated_saved_model_headers(examples, saved_payload, tmp_path):
    from cartinv.runtime.models.potential import CartinvPotential

    keys = sorted(saved_payload) + [f"config.{k}" for k in sorted(saved_payload["config"])] + ["new"]
    messages = set()
    ran = [0]

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(keys), HOSTILE, st.booleans())
    def check(key, value, delete):
        ran[0] += 1
        payload = dict(saved_payload, config=dict(saved_payload["config"]))
        target, name = (payload["config"], key[7:]) if key.startswith("config.") else (payload, key)
        if delete and name in target:
            del target[name]
        else:
            target[name] = value
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        path = tmp_path / "m.pt"
        path.write_bytes(buffer.getvalue())
        try:
            CartinvPotential.load(path)
        except ValueError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(str(path))
            messages.add(_normalise(str(exc)))

    check()
    assert not CANARY.exists()
    print(f"\nsaved models: {ran[0]} cases, {len(messages)} distinct error messages")
    assert len(messages) >= 8


ARGV = st.lists(st.sampled_from(
    ["basis", "explain", "draw", "generate", "export", "ace", "lammps-export", "--lmax", "--orders", "--degree",
     "--channels", "--max-degree", "--complete", "--flexible", "--name", "-o", "--format", "--target", "--basis",
     "--nu", "--nmax", "--species", "--neighbor-cutoff", "--prefer", "-q", "0", "1", "2", "13", "-1", "1000000000",
     "0,1,2", "a,b", "inf", "nan", "json", "c", "torch", "lmax2_deg4", "../outside", "/nonexistent/x", "out",
     "basis.json", "T2[ab] T2[ab]", "x\ny", "\x00"] + _payloads()[:5]), min_size=1, max_size=7)


@pytest.mark.parametrize("examples", [pytest.param(150, id="ci"), pytest.param(3000, id="long", marks=pytest.mark.fuzz)])
def test_cli_arguments(examples, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "basis.json").write_text(BASIS_TEXT)
    monkeypatch.chdir(work)
    monkeypatch.setenv("CARTINV_CACHE", str(tmp_path / "cache"))
    messages = set()
    ran = [0]

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(ARGV)
    def check(argv):
        ran[0] += 1
        if argv[0] == "basis" and ("--complete" in argv or "--flexible" in argv):
            argv = argv + ["--max-degree", "3"]  # keep each accepted search to a second or two
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        err = capsys.readouterr().err
        assert code in (0, 2), (argv, err)
        if code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("cartinv: error: "), (argv, err)
            messages.add(_normalise(lines[0]))

    check()
    assert sorted(p.name for p in tmp_path.iterdir()) in (["cache", "work"], ["work"])  # nothing outside -o
    assert not Path("/nonexistent").exists() and not CANARY.exists()
    print(f"\nCLI: {ran[0]} cases, {len(messages)} distinct error messages")


CHECKPOINT_VALUES = st.one_of(HOSTILE, st.sampled_from([
    torch.zeros(3), torch.zeros(4, 3, dtype=torch.float64), torch.tensor(float("nan")), torch.tensor(-1.0),
    torch.full((2, 2), float("inf")), torch.zeros(0), torch.ones(4, dtype=torch.int64), torch.tensor(7.0)]))


@pytest.fixture(scope="module")
def checkpoint_run(tmp_path_factory):
    """(build, structures, config, checkpoint) of a tiny CartinvPotential trained one epoch."""
    pytest.importorskip("ase")
    from cartinv.runtime.models.potential import CartinvPotential
    from cartinv.runtime.training import TrainConfig, read_frames
    from cartinv.runtime.training.data import featurize
    from cartinv.runtime.training.fit import fit_model

    frames = read_frames(ROOT / "examples" / "data" / "xtb_molecules.extxyz")[:12]
    elements = sorted({s for f in frames for s in f.symbols})
    structs = featurize(frames, elements, 4.0, torch.float64)
    config = TrainConfig(max_epochs=1, n_features=4, hidden=(8,), n_radial=4, dtype="float64", threads=1,
                         progress=False, batch_size=4)

    def build():
        model = CartinvPotential(elements, n_features=4, hidden=(8,), n_radial=4, dtype=torch.float64, seed=0)
        model.set_energy_reference([0.0] * len(elements))
        return model

    folder = tmp_path_factory.mktemp("checkpoint")
    fit_model(build(), structs[:8], structs[8:], config, outdir=folder, log=None)
    return build, structs, config, torch.load(folder / "checkpoint.pt", weights_only=True)


@pytest.mark.parametrize("examples", [pytest.param(60, id="ci"), pytest.param(1500, id="long", marks=pytest.mark.fuzz)])
def test_mutated_training_checkpoints(examples, checkpoint_run, tmp_path):
    """A training checkpoint with one value changed anywhere (weights, Adam's state, the schedule, the counters,
    the stored buffers, the config) resumes, or is refused in one line naming the file; never a traceback."""
    from cartinv.runtime.training import ConfigError
    from cartinv.runtime.training.fit import fit_model

    build, structs, config, good = checkpoint_run
    messages = set()
    ran = [0]

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        ran[0] += 1
        folder = tmp_path / f"run{ran[0]}"
        folder.mkdir()
        torch.save(mutate_tree(data.draw, copy.deepcopy(good), CHECKPOINT_VALUES), folder / "checkpoint.pt")
        try:
            fit_model(build(), structs[:8], structs[8:], config, outdir=folder, resume=True, log=None)
        except ConfigError as exc:
            msg = str(exc)
            assert "\n" not in msg and msg.startswith(str(folder)), msg
            messages.add(_normalise(msg))

    check()
    print(f"\ntraining checkpoints: {ran[0]} cases, {len(messages)} distinct error messages")
    assert len(messages) >= 5
