"""The SO(3) basis (symbolic/pseudoscalars.py): one pseudoscalar on top of the O(3) basis, relations for every
dropped pseudoscalar candidate, the strata report, and generated kernels that tell mirror images apart."""

import copy
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import cartinv
from cartinv.codegen.generate import standard_basis
from cartinv.symbolic import basisfile
from cartinv.symbolic.graphs import parse_index_notation
from cartinv.symbolic.select import BasisRequest, RequestError, derive_basis

from helpers import random_blocks, random_rotation
from test_levi_civita import value

NAME = "lmax3_deg4_so3"


def terms(text):
    """(integer coefficient, index notation) of each '[...]' term right of ' = ' in a relation text."""
    body, out, i, sign, mult = text.split(" = ", 1)[1], [], 0, 1, 1
    while i < len(body):
        ch = body[i]
        if ch == "-":
            sign, i = -1, i + 1
        elif ch in "+ ":
            i += 1
        elif ch.isdigit():
            j = body.index("*", i)
            mult, i = int(body[i:j]), j + 1
        else:
            assert ch == "[", body[i:]
            depth, j = 0, i
            while True:
                depth += {"[": 1, "]": -1}.get(body[j], 0)
                if depth == 0:
                    break
                j += 1
            out.append((sign * mult, body[i + 1:j]))
            sign, mult, i = 1, 1, j + 1
    return out


@pytest.fixture(scope="module")
def so3():
    return standard_basis(NAME)


def test_o3_part_is_the_o3_basis_and_one_pseudoscalar_follows(so3):
    o3 = standard_basis("lmax3_deg4")
    assert [i["index_notation"] for i in so3.invariants[:-1]] == [i["index_notation"] for i in o3.invariants]
    assert [i["formula"] for i in so3.invariants[:-1]] == [i["formula"] for i in o3.invariants]
    last = so3.invariants[-1]
    assert last["index_notation"] == "eps[abc] T1[a] T1[d] T2[be] T3[cde]"  # the cheapest non-zero (1123)
    assert last["degree"] == 4 and last["channels"][0] == -1
    assert so3.rank == o3.rank == so3.bound  # a pseudoscalar never raises the Jacobian rank
    assert so3.data["span_check"]["group"] == "so3"
    assert so3.data["span_check"]["dimension"] == 39  # 36 O(3) + 3 pseudoscalars up to degree 4


def test_square_and_dropped_relations_hold(so3):
    """Every dropped pseudoscalar has a relation (none 'functional'); the product relations and the kept one's
    square hold with float einsum at random blocks."""
    rng = np.random.default_rng(11)
    _, cart = random_blocks(rng, [(0, l) for l in range(4)])
    kept = so3.invariants[-1]
    p = parse_index_notation(kept["index_notation"])

    def rhs(text):
        return sum(sign * value(parse_index_notation(notation), cart) for sign, notation in terms(text))

    (square,) = so3.data["chirality"]["pseudoscalars"]
    assert square["id"] == kept["id"]
    assert value(p, cart) ** 2 == pytest.approx(rhs(square["square"]), rel=1e-9)
    pseudo = [d for d in so3.dropped if d["channels"][0] == -1]
    assert len(pseudo) == 15 and all(d["reason"] != "functional" for d in pseudo)
    products = [d for d in pseudo if d["reason"] == "implicit"]
    assert len(products) == 2  # the non-zero pseudoscalars of multidegrees 1233 and 2223
    for d in products:
        q = parse_index_notation(d["index_notation"])
        assert d["relation"].startswith(f"{kept['id']}*{d['id']} = ")
        assert value(p, cart) * value(q, cart) == pytest.approx(rhs(d["relation"]), rel=1e-9)
    for d in pseudo:
        if d["relation"] == f"{d['id']} = 0":
            assert value(parse_index_notation(d["index_notation"]), cart) == pytest.approx(0, abs=1e-10)


def test_strata_report(so3):
    """The kept pseudoscalar (T1 T1 T2 T3) survives exactly where T1, T2 and T3 are all non-zero; with T1 = 0 the
    2223 pseudoscalar would separate mirror images."""
    strata = so3.data["chirality"]["strata"]
    assert len(strata) == len(so3.strata)
    for s in strata:
        zero = {tuple(z) for z in s["zero"]}
        assert s["separated"] == (not zero & {(0, 1), (0, 2), (0, 3)})
        if zero in ({(0, 1)}, {(0, 0), (0, 1)}):
            assert s["candidate"] == "eps[abc] T2[ad] T2[be] T2[df] T3[cef]"
        elif not s["separated"]:
            assert s["candidate"] is None


def test_requests():
    with pytest.raises(RequestError, match="group"):
        BasisRequest(orders=(0, 1, 2), degree=3, group="su2").validate()
    with pytest.raises(RequestError, match="first is at degree 15 .* beyond"):  # the binary sextic's degree-15
        BasisRequest(orders=(3,), degree=4, group="so3").validate()
    with pytest.raises(RequestError, match="raise --degree to 6"):
        BasisRequest(orders=(1, 2), degree=4, group="so3").validate()
    b = derive_basis(BasisRequest(orders=(1, 2), degree=6, group="so3"))
    assert b.name == "orders12_deg6_so3"
    assert b.invariants[-1]["index_notation"] == "eps[abc] T1[a] T1[d] T1[e] T2[bd] T2[cf] T2[ef]"
    assert b.invariants[-1]["degree"] == 6


def test_schema_refuses_bad_so3_files(so3):
    data = json.loads(so3.to_json())

    def refuse(mutate, field):
        bad = copy.deepcopy(data)
        mutate(bad)
        with pytest.raises(basisfile.BasisFileError, match=re.escape(field)):
            basisfile.loads(json.dumps(bad))

    refuse(lambda d: d.pop("chirality"), "chirality")
    refuse(lambda d: d["request"].pop("group"), "invariants[13].channels[0]")
    refuse(lambda d: d["request"].update(group="o3"), "request.group")
    refuse(lambda d: d["invariants"][13].update(degree=5), "invariants[13].degree")
    refuse(lambda d: d["chirality"]["pseudoscalars"][0].update(id="I99"), "chirality.pseudoscalars[0].id")
    refuse(lambda d: d["chirality"]["strata"][0].update(separated="yes"), "chirality.strata[0].separated")
    refuse(lambda d: d["span_check"].update(group="o3"), "span_check.group")

    def double_leg(d):  # eps with two legs on one factor: [0,1,1],[0,2,1],[0,4,1] -> [0,1,2],[0,4,1]
        inv = d["invariants"][13]
        inv["edges"] = [[0, 1, 2], [0, 4, 1]] + [e for e in inv["edges"] if e[0] != 0]
    refuse(double_leg, "invariants[13].edges")


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_generated_kernels_tell_mirror_images_apart(backend):
    """An environment and its mirror image: equal O(3) invariants, opposite non-zero pseudoscalar; a proper
    rotation leaves every column unchanged (fp64, torch and fused CPU backends)."""
    module = cartinv.load(NAME, backend=backend)
    rng = np.random.default_rng(2)
    n_atoms, n_pairs = 3, 24
    r = torch.tensor(rng.normal(size=(n_pairs, 3)) * 1.3)
    centers = torch.tensor(np.sort(rng.integers(0, n_atoms, n_pairs)))
    w = torch.tensor(rng.normal(size=(n_pairs, 2)))  # two weight groups (radial channels)
    base = module(r, centers, w, n_atoms)
    assert base.shape == (n_atoms, 2, 14)
    assert (base[..., -1].abs() > 1e-6).all()
    for reflect in (False, True):
        rot = torch.tensor(random_rotation(rng, reflect))
        got = module(r @ rot.T, centers, w, n_atoms)
        want = base.clone()
        if reflect:
            want[..., -1] = -want[..., -1]
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
    mirror = r * torch.tensor([-1.0, 1.0, 1.0])
    got = module(mirror, centers, w, n_atoms)
    assert torch.allclose(got[..., :-1], base[..., :-1], rtol=1e-10, atol=1e-12)
    assert torch.allclose(got[..., -1], -base[..., -1], rtol=1e-10, atol=1e-12)


def test_gradcheck_and_gradgradcheck_fused():
    module = cartinv.load(NAME, backend="cpu")
    rng = np.random.default_rng(4)
    r = torch.tensor(rng.normal(size=(12, 3)), requires_grad=True)
    centers = torch.tensor(np.sort(rng.integers(0, 3, 12)))
    w = torch.tensor(rng.normal(size=(12, 1)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: module(a, centers, b, 3), (r, w))
    assert torch.autograd.gradgradcheck(lambda a, b: module(a, centers, b, 3), (r, w))


def test_cli_basis_group_so3(tmp_path):
    out = tmp_path / "b.json"
    res = subprocess.run([sys.executable, "-m", "cartinv.cli", "basis", "--lmax", "3", "--degree", "4", "--group",
                          "so3", "-q", "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "pseudoscalar I14 = eps[abc] T1[a] T1[d] T2[be] T3[cde]" in res.stdout
    assert "mirror images told apart on 2 of 15 strata" in res.stdout
    assert basisfile.load(out).content_hash() == standard_basis(NAME).content_hash()
