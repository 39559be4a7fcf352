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
    (lambda d: d.update(schema_version=99), r"schema_version: 99 is not supported"),
    (lambda d: d.update(schema_version=True), r"schema_version: True is not supported"),
    (lambda d: d.pop("invariants"), r"top level: lacks 'invariants'"),
    (lambda d: d["invariants"][3]["edges"].__setitem__(0, [0, 1, 2]), r"invariants\[3\]\.edges: vertex degrees"),
    (lambda d: d["invariants"][3].update(degree=5), r"invariants\[3\]\.degree: 5 != 2 tensor factors"),
    (lambda d: d["invariants"][2]["edges"].__setitem__(0, [0, 0, 2]), r"invariants\[2\]\.edges\[0\]: .* self-loop"),
    (lambda d: d["invariants"][4].update(formula=""), r"invariants\[4\]\.formula: must be a non-empty string"),
    (lambda d: d["dropped"][0].update(reason="because"), r"dropped\[0\]\.reason: must be one of"),
    (lambda d: d.update(rank=99), r"rank: 99 is outside 0\.\.13"),
    (lambda d: d["coordinates"].reverse(), r"coordinates\[0\]: .* is not"),
    (lambda d: d["invariants"][1].update(id="I1"), r"invariants\[1\]\.id: duplicate id 'I1'"),
    (lambda d: d["invariants"][1].update(orders=[1, 7]), r"invariants\[1\]\.orders\[1\]: 7 is outside 0\.\.3|"
                                                            r"order 7 is not among"),
    (lambda d: d.update(kind="magic"), r"kind: must be one of"),
    (lambda d: d.update(kind="ace"), r"request: lacks 'lmax'"),
    (lambda d: d["invariants"][5].update(einsum="ab,ab->"), r"invariants\[5\]\.einsum: .* is not what the edges imply"),
    (lambda d: d["invariants"][5].update(index_notation='T1[a]"""\nimport os'),
     r"invariants\[5\]\.index_notation: .* is not what the edges imply"),
    (lambda d: d["invariants"][5].update(latex="x"), r"invariants\[5\]\.latex"),
    (lambda d: d["coordinates"][0].update(name="import"), r"coordinates\[0\]: .* is not"),
    (lambda d: d["invariants"][0].update(formula="T0_0**99999999"), r"invariants\[0\]\.formula: exponent 99999999"),
    (lambda d: d["invariants"][0].update(formula="T9_0"), r"invariants\[0\]\.formula: unknown name 'T9_0'"),
    (lambda d: d.update(strata=None), r"strata: must be a list, got None"),
    (lambda d: d.update(name=7), r"name: must be a string, got 7"),
    (lambda d: d.update(name="a b"), r"name: 'a b' is not an identifier"),
    (lambda d: d["invariants"][0].update(id=["I1"]), r"invariants\[0\]\.id: must be a string"),
    (lambda d: d["dropped"][3].update(id="../../x"), r"dropped\[3\]\.id: '\.\./\.\./x' is not an identifier"),
    (lambda d: d["request"].update(channels=1000000), r"request\.channels: 1000000 is outside 1\.\.64"),
    (lambda d: d["dropped"][0].update(relation="a\nb"), r"dropped\[0\]\.relation: holds a character outside"),
    (lambda d: d["dropped"][0].update(relation_terms=[["1", ["Z9"]]]), r"dropped\[0\]\.relation_terms\[0\]: 'Z9'"),
    (lambda d: d.update(convention="mine"), r"convention: is not cartinv's tensor convention"),
    (lambda d: d.update(extra=1), r"top level: has an unknown key 'extra'"),
    (lambda d: d.update(complete=False), r"complete: must say whether rank == bound"),
])
def test_tampered_files_are_rejected_with_a_named_problem(basis_l3d4, edit, match):
    with pytest.raises(BasisFileError, match=match):
        basisfile.loads(_tampered(basis_l3d4, edit))


def test_not_json_and_missing_file(tmp_path):
    with pytest.raises(BasisFileError, match="not valid JSON"):
        basisfile.loads("{oops")
    with pytest.raises(BasisFileError, match="cannot read Basis file"):
        basisfile.load(tmp_path / "absent.json")


def test_build_is_the_one_constructor(basis_l3d4):
    """basisfile.build rebuilds a derived Basis byte for byte from its fields, and refuses fields the schema
    refuses (naming the field) instead of returning a Basis that could not be read back."""
    d = basis_l3d4.data
    fields = {k: d[k] for k in ("kind", "name", "request", "convention", "coordinates", "bound", "rank",
                                "degree_needed", "invariants", "dropped", "stats", "strata", "block_degrees",
                                "span_check")}
    assert basisfile.build(**fields).to_json() == basis_l3d4.to_json()
    with pytest.raises(BasisFileError, match="as built.*bound"):
        basisfile.build(**{**fields, "bound": "13"})
    with pytest.raises(BasisFileError, match="as built"):
        basisfile.build(**{**fields, "coordinates": fields["coordinates"][:-1]})
