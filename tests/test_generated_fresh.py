"""The checked-in generated/ tree is exactly what `cartinv generate` produces now (byte for byte).

The flexible basis has invariants of degree 10, whose programs take minutes of SymPy to build: its code files are
compared in the slow run (-m slow); by default its Basis file and the hash in its headers are compared.
"""

from pathlib import Path

import pytest

from cartinv.codegen import generate as gen

ROOT = Path(gen.__file__).resolve().parent.parent / "generated"
SLOW = {"lmax3_flexible"}


def checked_in(name):
    folder = ROOT / name
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_no_stray_generated_folders():
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(gen.STANDARD_BASES)


@pytest.mark.parametrize("name", sorted(gen.STANDARD_BASES))
def test_basis_file_and_headers_are_current(name):
    basis = gen.standard_basis(name)
    files = checked_in(name)
    assert files[f"{name}.json"] == basis.to_json().encode()
    header = gen.header_text(basis, name, gen.STANDARD_COMMAND).encode()
    for fname, data in files.items():
        if fname.endswith(".json"):
            continue
        assert basis.content_hash().encode() in data[:400], f"{name}/{fname} was generated from another Basis"
        if fname.endswith(".py"):
            assert data.startswith(header + b"\n"), f"{name}/{fname} header differs"


def _compare(name, tmp_path):
    paths = gen.generate(gen.standard_basis(name), tmp_path / name, name=name,
                         regenerate_command=gen.STANDARD_COMMAND)
    fresh = {p.name: p.read_bytes() for p in paths}
    files = checked_in(name)
    assert sorted(files) == sorted(fresh), f"generated/{name} holds {sorted(files)}, expected {sorted(fresh)}"
    stale = [f for f in fresh if files[f] != fresh[f]]
    assert not stale, f"generated/{name}: {stale} differ from a fresh generation; run `{gen.STANDARD_COMMAND}`"


@pytest.mark.parametrize("name", sorted(set(gen.STANDARD_BASES) - SLOW))
def test_generated_files_are_fresh(name, tmp_path):
    _compare(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_generated_files_are_fresh_slow(name, tmp_path):
    _compare(name, tmp_path)


def test_generate_standard_writes_every_standard_basis(tmp_path, monkeypatch):
    """generate_standard = generate() of each STANDARD_BASES entry into root/<name> with the standard command."""
    monkeypatch.setattr(gen, "STANDARD_BASES", {"lmax2_deg4": gen.STANDARD_BASES["lmax2_deg4"]})
    paths = gen.generate_standard(tmp_path)
    assert {p.parent for p in paths} == {tmp_path / "lmax2_deg4"}
    assert {p.name: p.read_bytes() for p in paths} == checked_in("lmax2_deg4")
