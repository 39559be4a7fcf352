import json

import pytest

from cartinv.symbolic import basisfile
from cartinv.symbolic.basisfile import BasisFileError


def test_round_trip(basis_l3d4, tmp_path):
    path = tmp_path / "b.json"
    basis_l3d4.save(path)
    loaded = basisfile.load(path)
    assert loaded.to_json() == basis_l3d4.to_json() == path.read_text()
    assert loaded.content_hash() == basis_l3d4.content_hash()


def _tampered(basis, edit):
    data = json.loads(basis.to_json())
    edit(data)
    return json.dumps(data)


@pytest.mark.parametrize("edit,match", [
    (lambda d: d.update(schema_version=99), "schema_version 99 is not supported"),
    (lambda d: d.pop("invariants"), "missing 'invariants'"),
    (lambda d: d["invariants"][3]["edges"].__setitem__(0, [0, 1, 2]), "vertex degrees"),
    (lambda d: d["invariants"][3].update(degree=5), "'degree' 5"),
    (lambda d: d["invariants"][2]["edges"].__setitem__(0, [0, 0, 2]), "self-loop"),
    (lambda d: d["invariants"][4].update(formula=""), "lacks a 'formula'"),
    (lambda d: d["dropped"][0].update(reason="because"), "'reason' must be one of"),
    (lambda d: d.update(rank=99), "rank 99 outside"),
    (lambda d: d["coordinates"].reverse(), "out of order"),
    (lambda d: d["invariants"][1].update(id="I1"), "duplicate id"),
    (lambda d: d["invariants"][1].update(orders=[1, 7]), "order outside"),
    (lambda d: d.update(kind="magic"), "'kind' must be one of"),
    (lambda d: (d.update(kind="ace"), d["invariants"][2].pop("degree")), r"invariants\[2\]: 'degree' must be a positive"),
])
def test_tampered_files_are_rejected_with_a_named_problem(basis_l3d4, edit, match):
    with pytest.raises(BasisFileError, match=match):
        basisfile.loads(_tampered(basis_l3d4, edit))


def test_not_json_and_missing_file(tmp_path):
    with pytest.raises(BasisFileError, match="not valid JSON"):
        basisfile.loads("{oops")
    with pytest.raises(BasisFileError, match="cannot read Basis file"):
        basisfile.load(tmp_path / "absent.json")
