"""Files are data: each reproduction of the Trust issue (crafted Basis files, saved models, caches, CLI inputs)."""

import json
import pickle
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import cartinv
from cartinv.cli import main
from cartinv.codegen import escape
from cartinv.codegen.generate import render_files
from cartinv.symbolic.basisfile import Basis, BasisFileError, loads

ROOT = Path(__file__).resolve().parent.parent
LMAX2 = ROOT / "generated" / "lmax2_deg4" / "lmax2_deg4.json"
CANARY = "cartinv_trust_canary"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CARTINV_CACHE", str(tmp_path / "cache"))


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cartinv.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def payload(tmp_path) -> str:
    """Python that would create a canary file in tmp_path if it ever ran."""
    return f"__import__('pathlib').Path({str(tmp_path / CANARY)!r}).write_text('ran')"


def hostile_edits(tmp_path):
    code = payload(tmp_path)
    return {
        "name_docstring": lambda d: d.update(name=f'x"""\n{code}\n"""'),
        "name_newline": lambda d: d.update(name=f"x\n{code}"),
        "id_newline": lambda d: d["invariants"][1].update(id=f"I2\n{code}"),
        "id_quote_c": lambda d: d["invariants"][1].update(id='I2", "x'),
        "notation_docstring": lambda d: d["invariants"][1].update(index_notation=f'T1[a]"""\n{code}\n#'),
        "notation_c_comment": lambda d: d["invariants"][1].update(index_notation="x */ int evil(); /*"),
        "latex": lambda d: d["invariants"][1].update(latex="\\input{/etc/passwd}"),
        "coordinate_name": lambda d: d["coordinates"][0].update(name=code),
        "formula_call": lambda d: d["invariants"][0].update(formula=code),
        "id_path": lambda d: d["invariants"][0].update(id="../../x"),
        "id_abs_path": lambda d: d["invariants"][0].update(id="/tmp/x"),
        "relation_escape": lambda d: d["dropped"][0].update(relation="\x1b[2J"),
        "kind_ace": lambda d: d.update(kind="ace"),
    }


def edited(edit) -> str:
    data = json.loads(LMAX2.read_text())
    edit(data)
    return json.dumps(data)


@pytest.mark.parametrize("case", sorted(hostile_edits(Path("/x"))))
def test_hostile_basis_files_are_refused_by_every_reader_and_run_nothing(tmp_path, case, capsys):
    path = tmp_path / "hostile.json"
    path.write_text(edited(hostile_edits(tmp_path)[case]))
    with pytest.raises(BasisFileError) as info:
        cartinv.load_basis(path)
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{path}: ")
    with pytest.raises(BasisFileError):
        cartinv.load(str(path))
    out = tmp_path / "out"
    for argv in (("export", "--basis", str(path), "--target", "c", "-o", str(out)),
                 ("export", "--basis", str(path), "--target", "torch", "-o", str(out)),
                 ("generate", "--basis", str(path), "-o", str(out)),
                 ("draw", str(path), "-o", str(out)),
                 ("explain", str(path))):
        assert main(list(argv)) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("cartinv: error: ")
    assert not (tmp_path / CANARY).exists()
    assert not out.exists() or not any(out.rglob("*.py"))


def test_codegen_validates_a_basis_object_built_in_python(tmp_path):
    data = json.loads(LMAX2.read_text())
    data["invariants"][1]["index_notation"] = f'x"""\n{payload(tmp_path)}\n"""'
    with pytest.raises(BasisFileError, match=r"invariants\[1\]\.index_notation"):
        render_files(Basis(data))
    with pytest.raises(ValueError, match="is not an identifier"):
        render_files(loads(LMAX2.read_text()), name="x\nimport os")


def test_a_basis_object_with_a_path_for_a_name_never_reaches_the_file_system(tmp_path):
    data = json.loads(LMAX2.read_text())
    data["name"] = "../../escaped"
    with pytest.raises(BasisFileError, match=r"name: '\.\./\.\./escaped' is not an identifier"):
        cartinv.load(Basis(data))
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "cache").exists()


def test_saved_potential_and_lammps_export_carry_no_code(tmp_path):
    from cartinv.runtime.integrations.lammps import export_lammps, load_lammps
    from cartinv.runtime.models.potential import CartinvPotential

    model = CartinvPotential(["Cu"], basis="lmax2_deg4", n_features=4, hidden=(4,), seed=0)
    good = tmp_path / "m.pt"
    model.save(good)
    data = torch.load(good, weights_only=True)
    basis = json.loads(data["basis_json"])
    basis["invariants"][1]["index_notation"] = f'x"""\n{payload(tmp_path)}\n"""'
    data["basis_json"] = json.dumps(basis)
    bad = tmp_path / "bad.pt"
    torch.save(data, bad)
    with pytest.raises(ValueError, match=r"invariants\[1\]\.index_notation"):
        CartinvPotential.load(bad)
    proc = run("lammps-export", str(bad), "-o", str(tmp_path / "x.pkl"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    for key, value, match in (("config", {**data["config"], "n_layers": True}, r"config\.n_layers"),
                              ("config", {**data["config"], "backend": "torch"}, "unexpected or missing key"),
                              ("basis_name", "../x", "basis_name: not an identifier"),
                              ("weights", {"head.0.weight": float("nan")}, "weights: must map")):
        torch.save({**torch.load(good, weights_only=True), key: value}, bad)
        with pytest.raises(ValueError, match=match):
            CartinvPotential.load(bad)
    assert not (tmp_path / CANARY).exists()
    # LAMMPS files: the only global a file may name is CartinvMLIAP; anything else is refused before it runs.
    pkl = tmp_path / "model.pkl"
    export_lammps(good, pkl)
    assert load_lammps(pkl).element_types == ["Cu"]

    class Evil:
        def __reduce__(self):
            return (exec, (payload(tmp_path),))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match=r"not a cartinv LAMMPS model .*builtins\.exec"):
        load_lammps(evil)
    assert not (tmp_path / CANARY).exists()


def test_lammps_export_refuses_an_infinite_neighbour_cutoff(tmp_path):
    from cartinv.runtime.models.potential import CartinvPotential

    model = CartinvPotential(["Cu"], basis="lmax2_deg4", n_features=4, hidden=(4,), seed=0)
    model.save(tmp_path / "m.pt")
    for value in ("inf", "nan", "-1"):
        proc = run("lammps-export", str(tmp_path / "m.pt"), "-o", str(tmp_path / "x.pkl"), "--neighbor-cutoff", value)
        assert proc.returncode == 2 and "--neighbor-cutoff must be a positive finite distance" in proc.stderr
    assert not (tmp_path / "x.pkl").exists()


# ------------------------------------------------------------------------------------------------- formulas
def test_ace_kind_cannot_skip_the_formula_check(tmp_path):
    from cartinv.symbolic import ace

    good = ace.derive_ace_basis(2, 1, 2)
    data = json.loads(good.to_json())
    inv = next(i for i in data["invariants"] if i["nl"][0][2] == 1)
    inv["formula"] = inv["formula"].replace("T1_0*T1_0", "T1_0*T1_1", 1).replace("T1_0**2", "T1_0*T1_1", 1)
    path = tmp_path / "bad_ace.json"
    path.write_text(json.dumps(data))
    proc = run("export", "--basis", str(path), "--target", "torch", "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and f"invariant {inv['id']}: the formula is not invariant" in proc.stderr
    data = json.loads(good.to_json())
    data["invariants"][1]["formula"] += " + T0_0"  # invariant but of the wrong degree
    (tmp_path / "deg.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="a term has degree 1, the recorded degree is 2"):
        cartinv.load(str(tmp_path / "deg.json"))


def test_verifier_accepts_every_checked_in_and_ace_formula():
    from cartinv.codegen import plan, verify
    from cartinv.symbolic import ace

    for basis in (cartinv.load_basis(LMAX2), ace.derive_ace_basis(3, 2, 2)):
        exprs = plan.invariant_exprs(basis)
        verify.check_invariants(basis.coordinates, [(i["id"], e, i["degree"])
                                                    for i, e in zip(basis.invariants, exprs)], seed=3)


def test_surd_arithmetic_is_exact():
    from cartinv.codegen.verify import Surd

    s2, s3, s6 = (Surd.of_sqrt(Fraction(n)) for n in (2, 3, 6))
    assert s2 * s3 == s6 and s2 * s2 == Surd({1: Fraction(2)})
    assert Surd.of_sqrt(Fraction(1, 2)) == Surd({2: Fraction(1, 2)})
    assert (s2 + s3) * (s2 + s3) == Surd({1: Fraction(5), 6: Fraction(2)})


# ------------------------------------------------------------------------------------------------- modular
@pytest.mark.parametrize("l", range(7, 13))
def test_modular_contraction_is_exact_for_every_order(l):
    from cartinv.symbolic.modular import PRIMES, contract_mod

    p = PRIMES[0]
    rng = np.random.default_rng(l)
    letters = "abcdefghijklmnopqrstuvwxyz"
    sa = letters[:l]
    shape = (2,) + (3,) * l
    a = rng.integers(p - 1000, p, size=shape, dtype=np.int64)  # near the top: the worst case for overflow
    b = rng.integers(p - 1000, p, size=shape, dtype=np.int64)
    got = contract_mod(a, sa, b, sa, "", p)
    exact = [sum(int(x) * int(y) for x, y in zip(a[k].ravel(), b[k].ravel())) % p for k in range(2)]
    assert got.tolist() == exact
    # a partial contraction (one free index on each side) too
    sb = "z" + letters[1:l]
    got = contract_mod(a, sa, b, sb, "az", p)
    exact = np.einsum(f"...{sa},...{sb}->...az", a.astype(object), b.astype(object)) % p
    assert (got.astype(object) == exact).all()


@pytest.mark.slow
def test_order_nine_degree_four_keeps_four_and_relates_the_rest():
    """`cartinv basis --orders 9 --degree 4` (about 4 minutes on 1 core; run with -m slow)."""
    from cartinv.symbolic.select import BasisRequest, derive_basis

    basis = derive_basis(BasisRequest(orders=(9,), degree=4))
    assert len(basis.invariants) == 4
    assert all(d["reason"] in ("reducible", "algebraic") and d["relation_terms"] for d in basis.dropped)


# ------------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("argv, message", [
    (("basis", "--degree", "1000000000"), "degree must be an integer in 1..32, got 1000000000"),
    (("basis", "--complete", "--degree", "6", "--max-degree", "3"), "degree 6 is above the cap --max-degree 3"),
    (("basis", "--max-degree", "99999", "--complete"), "max degree must be an integer in 1..32"),
    (("basis", "--channels", "1000000"), "channels must be 1..4"),
    (("basis", "-o", "/nonexistent_dir/b.json"), "-o /nonexistent_dir/b.json: the directory /nonexistent_dir does not exist"),
    (("basis", "--name", "a/b"), "--name: 'a/b' is not an identifier"),
])
def test_oversized_or_impossible_requests_are_refused_at_once(argv, message):
    proc = run(*argv)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_oversized_searches_are_refused_with_an_estimate_and_large_ones_announced():
    from cartinv.symbolic import estimate
    from cartinv.symbolic.select import BasisRequest

    proc = run("basis", "--lmax", "7", "--flexible")
    assert proc.returncode == 2 and "request too large: estimate: flexible (every stratum) search over 8 blocks" \
        in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert estimate.seconds(BasisRequest(orders=tuple(range(7)), flexible=True)) > estimate.ANNOUNCE_SECONDS
    assert estimate.seconds(BasisRequest(orders=(0, 1, 2, 3), flexible=True)) < estimate.ANNOUNCE_SECONDS
    assert "roughly 13 min" in estimate.describe(BasisRequest(orders=tuple(range(7)), flexible=True))


def test_basis_file_limits_refuse_in_milliseconds(tmp_path):
    import time

    for edit in (lambda d: d["request"].update(channels=1000000),
                 lambda d: d["invariants"][0].update(formula="T0_0**99999999"),
                 lambda d: d.update(schema_version=True)):
        start = time.monotonic()
        with pytest.raises(BasisFileError):
            loads(edited(edit))
        assert time.monotonic() - start < 5
    with pytest.raises(BasisFileError, match="nests 5001 levels deep"):
        loads("[" * 5001 + "]" * 5001)
    (tmp_path / "latin1.json").write_bytes(b'{"name": "\xe9"}')
    with pytest.raises(BasisFileError, match="not UTF-8 text"):
        cartinv.load_basis(tmp_path / "latin1.json")
    with pytest.raises(BasisFileError, match="NaN is not a number"):
        loads('{"schema_version": NaN}')
    with pytest.raises(BasisFileError, match="duplicate key 'name'"):
        loads('{"name": "a", "name": "b"}')


def test_draw_onto_a_file_and_into_missing_dirs(tmp_path):
    target = tmp_path / "afile"
    target.write_text("")
    proc = run("draw", str(LMAX2), "-o", str(target))
    assert proc.returncode == 2 and "exists and is not a directory" in proc.stderr
    proc = run("draw", str(LMAX2), "-o", str(tmp_path / "new" / "dir"))
    assert proc.returncode == 0 and len(list((tmp_path / "new" / "dir").glob("*.svg"))) == 6


# ------------------------------------------------------------------------------------------------- escaping
HOSTILE_TEXT = ['"""', "'''", "\\", "\n", "\r", "*/", "/*", "??/", "\\\n", "\x00", "é", "\u2028", "😀", '"; x(); "',
                "# \n import os", "}}{{", "`"]


def test_python_escapes_stay_inside_their_construct():
    import ast

    for text in HOSTILE_TEXT:
        tree = ast.parse(f"# {escape.python_comment(text)}\nx = 1\n")
        assert len(tree.body) == 1
        doc = ast.parse(f'"""{escape.python_docstring(text)}"""\n').body
        assert len(doc) == 1 and isinstance(doc[0].value, ast.Constant)
        assert ast.literal_eval(escape.python_string(text)) == text


def test_c_escapes_stay_inside_their_construct(tmp_path):
    lines = ['#include <cstdio>', 'int main() {']
    for k, text in enumerate(HOSTILE_TEXT):
        lines.append(f"    // {escape.c_comment(text)}")
        lines.append(f"    /* {escape.c_comment(text)} */")
        lines.append(f"    {{ const char* s = {escape.c_string(text)}; for (const char* p = s; *p; ++p) "
                     f"std::printf(\"%02x\", (unsigned char)*p); std::printf(\"\\n\"); }}")
    lines += ["    return 0;", "}"]
    src = tmp_path / "esc.cpp"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "esc"
    proc = subprocess.run(["g++", "-std=c++14", "-Wall", "-Werror", "-Wno-comment", str(src), "-o", str(exe)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True).stdout.split("\n")
    for text, line in zip(HOSTILE_TEXT, out):
        assert bytes.fromhex(line) == text.encode("utf-8").split(b"\x00")[0]


# ------------------------------------------------------------------------------------------------- exported module
def test_exported_torch_module_checks_inputs_on_request(tmp_path):
    import importlib.util

    from cartinv.runtime.kernels import export

    paths = export.export("lmax2_deg4", "torch", tmp_path)
    guide = (tmp_path / "EMBEDDING.md").read_text()
    assert "check_inputs=True" in guide and "zero-length pair vector" in guide
    spec = importlib.util.spec_from_file_location("exported_lmax2", next(p for p in paths if p.suffix == ".py"))
    kernels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernels)
    r = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    c = torch.tensor([0, 1])
    w = torch.ones(2, 3, dtype=torch.float64)
    assert torch.isnan(kernels.InvariantModel()(r, c, w, 2)).any()  # unchecked: NaN, as documented
    checked = kernels.InvariantModel(check_inputs=True)
    for args, match in (((r, c, w, 2), "zero length"),
                        ((r[:1], c[:1], w[:1], 0), "centers must lie in"),
                        ((r[:1] * float("nan"), c[:1], w[:1], 1), "finite"),
                        ((r[:1], c[:1], w[:1].float(), 1), "w must be"),
                        ((r[:1, :2], c[:1], w[:1], 1), r"r must be .* \[P, 3\]")):
        with pytest.raises(ValueError, match=match):
            checked(*args)
    good = checked(r[:1], c[:1], w[:1], 1)
    assert torch.isfinite(good).all()


def test_cuda_sources_and_torch_core_program_are_read_only_as_sealed(tmp_path):
    """The CUDA kernels' sources and the torch module whose core gives their double backward."""
    from cartinv.runtime.kernels import cuda_backend, kernel_cache
    from cartinv.runtime.kernels.kernel_cache import CacheError
    from cartinv.runtime.kernels.load import generated_dir

    from conftest import derived

    basis = derived((1, 2), degree=3, channels=2)
    folder, name = generated_dir(basis)
    assert cuda_backend.KernelSource.load(folder, name).name == name
    assert kernel_cache.verified_source(folder, f"{name}_torch.py", basis.content_hash(), name)
    for fname in (f"{name}.cu", f"{name}_torch.py"):
        path = folder / fname
        good = path.read_text()
        path.write_text(good.replace("0.5", "0.6", 1) if "0.5" in good else good + "\n// x\n")
        with pytest.raises(CacheError, match="does not match its folder's MANIFEST.json"):
            if fname.endswith(".cu"):
                cuda_backend.KernelSource.load(folder, name)
            else:
                kernel_cache.verified_source(folder, fname, basis.content_hash(), name)
        path.write_text(good)
