import json
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cartinv.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_basis_default_prints_table_and_writes_file(tmp_path):
    out = tmp_path / "b.json"
    r = run("basis", "-q", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "13 invariants, rank 13 of bound 13 (complete)" in r.stdout
    assert "T3[abc] T3[abc]" in r.stdout
    data = json.loads(out.read_text())
    assert data["schema_version"] == 1 and len(data["invariants"]) == 13


def test_formats_and_explain_and_draw(tmp_path):
    out = tmp_path / "b.json"
    r = run("basis", "--lmax", "2", "--degree", "4", "--format", "json", "-q", "-o", str(out))
    assert r.returncode == 0 and json.loads(r.stdout)["bound"] == 6
    r = run("basis", "--lmax", "2", "--degree", "3", "--format", "latex", "-q")
    assert "\\begin{tabular}" in r.stdout and "T^{(2)}" in r.stdout
    r = run("explain", str(out))
    assert r.returncode == 0 and "algebraic" in r.stdout and "= 1/2*" in r.stdout
    r = run("draw", str(out), "-o", str(tmp_path / "svg"))
    assert r.returncode == 0
    svgs = sorted((tmp_path / "svg").glob("*.svg"))
    assert len(svgs) == 6 and svgs[0].read_text().startswith("<svg")


def test_preset_hiphop_keeps_its_13_columns():
    r = run("basis", "--preset", "hiphop", "--format", "json", "-q")
    data = json.loads(r.stdout)
    assert data["name"] == "hiphop_lmax3_deg4"
    assert [i["id"] for i in data["invariants"]] == [f"I{k}" for k in range(1, 14)]
    assert data["rank"] == 13


@pytest.mark.parametrize("args,msg", [
    (("basis", "--orders=-1,2", "--degree", "2"), "non-negative"),
    (("basis", "--lmax", "3", "--degree", "0"), "degree must be an integer in 1..32, got 0"),
    (("basis", "--orders", "1,3", "--degree", "1"), "even total order"),
    (("basis", "--lmax", "5", "--degree", "9"), "exhaustive search limit"),
    (("basis", "--lmax", "3", "--complete", "--max-degree", "3"), "not reached"),
    (("basis", "--lmax", "3", "--orders", "1,2"), "either --orders or --lmax"),
])
def test_bad_requests_one_line_error(args, msg):
    r = run(*args)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and msg in r.stderr and "Traceback" not in r.stderr


def test_tampered_file_one_line_error(tmp_path, basis_l3d4):
    data = json.loads(basis_l3d4.to_json())
    data["invariants"][5]["edges"][0][2] += 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    r = run("explain", str(bad))
    assert r.returncode == 2 and r.stderr.startswith("cartinv: error:") and "Traceback" not in r.stderr
    (tmp_path / "junk.json").write_text("not json")
    r = run("explain", str(tmp_path / "junk.json"))
    assert r.returncode == 2 and "not valid JSON" in r.stderr


@pytest.mark.parametrize("edit, msg", [
    (lambda inv: inv.update(formula=inv["formula"].replace("sqrt(6)", "sqrt(5)", 1)),
     "its contraction 'a,b,ab->' and its formula disagree"),
    (lambda inv: inv.update(formula="__import__('os').getcwd()"),
     "unknown name '__import__' (not a coordinate of this Basis)"),
])
def test_generate_from_a_file_whose_formula_is_wrong_one_line_error(tmp_path, edit, msg):
    root = Path(__file__).resolve().parent.parent / "generated" / "lmax2_deg4"
    data = json.loads((root / "lmax2_deg4.json").read_text())
    edit(next(inv for inv in data["invariants"] if inv["einsum"] == "a,b,ab->"))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    proc = run("generate", "--basis", str(path), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cartinv: error: {path}: ") and msg in lines[0]
    assert "I4" in lines[0] or "invariants[3]" in lines[0]  # names the invariant
    assert not (tmp_path / "out").exists()


def test_every_option_has_help_text():
    from cartinv.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"cartinv {name}: {action.dest} has no help text"
