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


@pytest.mark.parametrize("blocks, degree, expected, pseudo", [
    ((T(3),), 15, [2, 4, 6, 10, 15], [15]),  # binary sextic: the skew invariant of degree 15 (Clebsch, Gordan)
    ((T(1), T(2)), 6, [2, 2, 3, 3, 4, 6], [6]),  # + det[a, Qa, Q^2 a], the one pseudoscalar generator
    ((T(2),), 6, [2, 3], []),  # even orders only: -1 acts trivially, SO(3) = O(3) invariants
    ((T(4),), 6, [2, 3, 4, 5, 6], []),
])
def test_classical_so3_generator_degrees(blocks, degree, expected, pseudo):
    result = find_generators(blocks, degree, group="so3")
    assert result.degrees() == expected
    assert [d for g, d in zip(result.generators, result.degrees()) if g.labels[0] == (-1, 3)] == pseudo
    counts = molien.count(sorted({l for _, l in blocks}), degree, group="so3")
    assert result.span.group == "so3"
    assert result.span.rank == result.span.dimension == sum(counts["by_degree"][str(d)] for d in range(1, degree + 1))
    # the O(3) generators are the same: a pseudoscalar only joins at odd total order
    assert [d for g, d in zip(result.generators, result.degrees()) if g.labels[0] != (-1, 3)] \
        == find_generators(blocks, degree).degrees()


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


def test_so3_generator_basis_lmax3():
    """SO(3) generators of l <= 3 to degree 4: the 17 O(3) generators and the 3 pseudoscalars (multidegrees 1123,
    1233, 2223); every other graph has an exact relation, and the generated kernels tell mirror images apart."""
    b = derive_basis(BasisRequest(orders=(0, 1, 2, 3), degree=4, generators=True, group="so3"))
    o3 = derive_basis(BasisRequest(orders=(0, 1, 2, 3), degree=4, generators=True))
    assert b.name == "lmax3_gen4_so3" and b.data["request"]["group"] == "so3"
    pseudo = [e for e in b.invariants if e["channels"][0] == -1]
    assert len(b.invariants) == 20 and len(pseudo) == 3 and b.rank == b.bound == 13
    assert sorted(tuple(sorted(e["orders"][1:])) for e in pseudo) == [(1, 1, 2, 3), (1, 2, 3, 3), (2, 2, 2, 3)]
    assert [e["index_notation"] for e in b.invariants if e["channels"][0] != -1] \
        == [e["index_notation"] for e in o3.invariants]
    reasons = check_relations_exactly(b)
    assert reasons["functional"] == 0 and sum(reasons.values()) == len(b.dropped)
    span = b.data["span_check"]
    assert span["group"] == "so3" and span["rank"] == span["dimension"] == 39  # 36 O(3) + 3 pseudoscalars
    chir = b.data["chirality"]
    assert [p["id"] for p in chir["pseudoscalars"]] == [e["id"] for e in pseudo]
    # separated wherever T2 and T3 live and T1 or (T2 alone) carries a pseudoscalar: {T1,T2,T3} or {T2,T3}
    for st in chir["strata"]:
        zero = {tuple(z) for z in st["zero"]}
        assert st["separated"] == (not zero & {(0, 2), (0, 3)}) and st["candidate"] is None
    assert basisfile.loads(b.to_json()).content_hash() == b.content_hash()

    import numpy as np
    import torch

    import cartinv
    from helpers import random_rotation

    module = cartinv.load(b, backend="torch")
    rng = np.random.default_rng(5)
    r = torch.tensor(rng.normal(size=(20, 3)) * 1.2)
    centers = torch.tensor(np.sort(rng.integers(0, 2, 20)))
    w = torch.tensor(rng.normal(size=(20, 1)))
    base = module(r, centers, w, 2)
    cols = torch.tensor([e["channels"][0] == -1 for e in b.invariants])
    sign = torch.where(cols, -1.0, 1.0).to(base.dtype)
    assert (base[..., cols].abs() > 1e-8).all()
    for reflect in (False, True):
        got = module(r @ torch.tensor(random_rotation(rng, reflect)).T, centers, w, 2)
        assert torch.allclose(got, base * sign if reflect else base, rtol=1e-9, atol=1e-12)


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
