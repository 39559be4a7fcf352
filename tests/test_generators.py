"""Minimal polynomial generators against classical invariant theory, as a Basis, and their refusals."""

import json

import pytest

from cartinv.cli import main
from cartinv.symbolic import basisfile, molien
from cartinv.symbolic.basisfile import BasisFileError
from cartinv.symbolic.generators import find_generators
from cartinv.symbolic.relations import Relation, RelationFinder
from cartinv.symbolic.select import BasisRequest, RequestError, derive_basis
from helpers import check_relations_exactly, graph_of

T = lambda l, c=0: (c, l)  # noqa: E731


@pytest.mark.parametrize("blocks, degree, expected", [
    ((T(2),), 6, [2, 3]),  # one deviator: tr Q^2, tr Q^3
    ((T(3),), 10, [2, 4, 6, 10]),  # binary sextic, real O(3) form (SO(3) adds degree 15)
    ((T(1), T(2)), 6, [2, 2, 3, 3, 4]),  # a vector and a deviator: a.a, tr Q^2, a.Q.a, tr Q^3, a.Q^2.a
    ((T(2, 0), T(2, 1)), 6, [2, 2, 2, 3, 3, 3, 3, 4]),  # two deviators: tr A^2 AB B^2, A^3 A^2B AB^2 B^3, A^2B^2
    ((T(4),), 10, [2, 3, 4, 5, 6, 7, 8, 9, 10]),  # binary octavic (von Gall; Shioda 1967): one in each degree
])
def test_classical_generator_degrees(blocks, degree, expected):
    result = find_generators(blocks, degree)
    assert result.degrees() == expected
    # the generators and their products reach the exact dimension of every multidegree
    counts = molien.count(sorted({l for _, l in blocks}), degree, channels=len({c for c, _ in blocks}))
    assert result.span.rank == result.span.dimension == sum(counts["by_degree"][str(d)] for d in range(1, degree + 1))


def test_generator_basis_lmax3():
    b = derive_basis(BasisRequest(orders=(0, 1, 2, 3), degree=4, generators=True))
    assert b.name == "lmax3_gen4" and b.data["request"]["generators"] is True
    assert len(b.invariants) == 17 and b.rank == b.bound == 13  # more generators than functional invariants
    assert all(d["reason"] in ("linear", "algebraic") for d in b.dropped)  # every other graph is polynomial
    assert check_relations_exactly(b)["algebraic"] == len(b.dropped)
    span = b.data["span_check"]
    assert span["rank"] == span["dimension"] == sum(molien.count([0, 1, 2, 3], 4)["by_degree"][str(d)]
                                                    for d in range(1, 5))
    # minimal: no generator is a polynomial in the others
    gens = [(e["id"], graph_of(e)) for e in b.invariants]
    finder = RelationFinder(tuple((0, l) for l in b.orders), seed=31)
    for k, (gid, g) in enumerate(gens):
        others = [x for x in gens if x[0] != gid]
        assert not isinstance(finder.find(g, others), Relation), gid
    # a generator basis is a Basis like any other: its file round-trips and tampering is named
    assert basisfile.loads(b.to_json()).content_hash() == b.content_hash()
    data = json.loads(b.to_json())
    data["request"]["generators"] = False
    with pytest.raises(BasisFileError, match=r"request\.generators: must be true when present"):
        basisfile.loads(json.dumps(data))


@pytest.mark.parametrize("request_kwargs, message", [
    (dict(orders=(0, 1, 2), degree=4, generators=True, complete=True), "not --complete"),
    (dict(orders=(0, 1, 2), degree=None, generators=True), "needs a degree"),
    (dict(orders=(3,), degree=13, generators=True), "up to degree 12, got 13"),
    (dict(orders=tuple(range(7)), degree=12, channels=2, generators=True), "request too large"),
])
def test_refusals_before_any_work(request_kwargs, message):
    with pytest.raises(RequestError, match=message):
        BasisRequest(**request_kwargs).validate()


def test_cli(capsys, tmp_path):
    out = tmp_path / "g.json"
    assert main(["basis", "--generators", "--orders", "1,2", "--degree", "6", "-q", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "minimal polynomial generators" in text and "5 invariants, rank 5 of bound 5" in text
    assert main(["report", str(out), "--format", "md", "-o", str(tmp_path / "r.md")]) == 0
    assert "--generators" in (tmp_path / "r.md").read_text()
    assert main(["basis", "--generators", "--orders", "3", "--complete"]) == 2
    assert "not --complete" in capsys.readouterr().err


def test_too_many_products_is_a_one_line_error(capsys, monkeypatch):
    from cartinv.symbolic import generators

    monkeypatch.setattr(generators, "MAX_PRODUCTS", 1)
    assert main(["basis", "--generators", "--orders", "1,2", "--degree", "6", "-q"]) == 2
    err = capsys.readouterr().err
    assert "more than 1 products of lower generators in multidegree" in err and "Traceback" not in err
