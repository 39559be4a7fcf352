"""SO(3) ACE bases (symbolic/ace/chirality.py): pseudoscalar B functions (odd sum of l), their counts against the
characters, the kept one's square, the strata, exact formulas against the float evaluator, and generated kernels
that tell mirror images apart."""

import json
from collections import Counter

import numpy as np
import pytest
import sympy as sp
import torch

import cartinv
from cartinv.cli import main
from cartinv.codegen import verify
from cartinv.symbolic import ace, basisfile, molien
from cartinv.symbolic.basisfile import BasisFileError

from helpers import random_rotation


@pytest.fixture(scope="module")
def so3():
    return ace.derive_ace_basis(4, 1, 3, group="so3")


@pytest.fixture(scope="module")
def so3_two_channels():
    return ace.derive_ace_basis(3, 2, 2, group="so3")


def test_linear_counts_are_the_so3_characters(so3, so3_two_channels):
    """Per label tuple, the linearly independent B functions number the SO(3) invariants (pseudoscalars for odd
    sum of l); in total, l <= 3 to nu = 4 gives the tensor bases' 39 = 36 + 3."""
    for basis, args in ((so3, (4, 1, 3)), (so3_two_channels, (3, 2, 2))):
        fns = ace.functions_of(basis, "invariants") + ace.functions_of(basis, "dropped")
        reasons = [None] * len(basis.invariants) + [d["reason"] for d in basis.dropped]
        survivors = Counter(f.nl for f, r in zip(fns, reasons) if r != "linear")
        tuples = {f.nl for f in fns}
        for t in tuples:
            assert survivors[t] == ace.invariant_dimension(t, "so3"), t
        assert sum(survivors.values()) == ace.linear_dimension(*args, group="so3") == basis.data["stats"]["linear"]
    by_degree = molien.count([0, 1, 2, 3], 4, group="so3")["by_degree"]
    assert so3.data["stats"]["linear"] == sum(by_degree[str(d)] for d in range(1, 5)) == 39


def test_o3_part_plus_one_pseudoscalar(so3, so3_two_channels):
    for basis, args in ((so3, (4, 1, 3)), (so3_two_channels, (3, 2, 2))):
        o3 = ace.derive_ace_basis(*args)
        kept = ace.functions_of(basis)
        assert [f for f in kept if not f.odd] == ace.functions_of(o3)
        (p,) = [f for f in kept if f.odd]
        assert basis.rank == o3.rank == basis.bound  # a pseudoscalar never raises the rank of a complete basis
        assert basis.name == o3.name + "_so3" and basis.data["request"]["group"] == "so3"
        assert all(f.odd for f, d in zip(ace.functions_of(basis, "dropped"), basis.dropped)
                   if d["reason"] == "functional" and f not in ace.functions_of(o3, "dropped"))
    # the cheapest pseudoscalar of one channel is the tensor bases' 1123 one; with two channels, eps a Q1 Q2
    assert [f.nl for f in ace.functions_of(so3) if f.odd] == [((0, 1, 1), (0, 1, 1), (0, 1, 2), (0, 1, 3))]
    assert [f.nl for f in ace.functions_of(so3_two_channels) if f.odd] == [((0, 1, 1), (0, 1, 2), (0, 2, 2))]


def _coefficient(text):
    return float(sp.sympify(text))


@pytest.mark.parametrize("which", ["so3", "so3_two_channels"])
def test_square_holds_in_floats(which, request):
    """Bp**2 = sum c_k B_k over the O(3) B functions of the doubled tuple, checked with the float evaluator at random
    block coordinates (independent of the modular solve), and the file's text is that relation."""
    basis = request.getfixturevalue(which)
    req = basis.data["request"]
    (p,) = [f for f in ace.functions_of(basis) if f.odd]
    terms = ace.chirality.square_terms(p, req["nmax"], req["lmax"], req["species"])
    assert terms and all(not b.odd for _, b in terms)
    (record,) = basis.data["chirality"]["pseudoscalars"]
    assert record["square"] == ace.chirality.square_text(f"{record['id']}**2", terms)
    rng = np.random.default_rng(3)
    t = rng.normal(size=(5, len(basis.coordinates)))
    ev_p = ace.AceEvaluator([p], req["nmax"], req["lmax"])
    ev_b = ace.AceEvaluator([b for _, b in terms], req["nmax"], req["lmax"])
    lhs = ev_p.values(t)[:, 0] ** 2
    rhs = ev_b.values(t) @ np.array([_coefficient(c) for c, _ in terms])
    assert np.abs(lhs).min() > 1e-6
    np.testing.assert_allclose(rhs, lhs, rtol=1e-9)


def test_formula_equals_float_evaluator_and_flips_under_parity(so3_two_channels):
    basis = so3_two_channels
    req = basis.data["request"]
    names = [sp.Symbol(c["name"]) for c in basis.coordinates]
    rng = np.random.default_rng(8)
    t = rng.normal(size=len(names))
    parity = np.array([(-1) ** c["l"] for c in basis.coordinates])
    fns = ace.functions_of(basis)
    values = ace.AceEvaluator(fns, req["nmax"], req["lmax"]).values(np.stack([t, t * parity]))
    for k, (entry, fn) in enumerate(zip(basis.invariants, fns)):
        f = sp.lambdify(names, sp.sympify(entry["formula"], locals={n.name: n for n in names}))
        assert f(*t) == pytest.approx(values[0, k], rel=1e-10, abs=1e-12)
        assert values[1, k] == pytest.approx(-values[0, k] if fn.odd else values[0, k], rel=1e-10, abs=1e-12)


def test_strata(so3):
    """One channel: the 1123 pseudoscalar survives where T1, T2, T3 are non-zero; with T1 = 0 the 2223 one would."""
    strata = so3.data["chirality"]["strata"]
    assert sum(s["separated"] for s in strata) == 2 and len(strata) == 15
    for s in strata:
        zero = {tuple(z) for z in s["zero"]}
        assert s["separated"] == (not zero & {(0, 1), (0, 2), (0, 3)})
        if zero in ({(0, 1)}, {(0, 0), (0, 1)}):
            assert s["candidate"].startswith("ACE A(0,1,2) A(0,1,2) A(0,1,2) A(0,1,3)")
        elif not s["separated"]:
            assert s["candidate"] is None


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_generated_kernels_tell_mirror_images_apart(so3, backend):
    module = cartinv.load(so3, backend=backend)
    odd = torch.tensor([f.odd for f in ace.functions_of(so3)])
    rng = np.random.default_rng(6)
    r = torch.tensor(rng.normal(size=(18, 3)) * 1.3)
    centers = torch.tensor(np.sort(rng.integers(0, 2, 18)))
    w = torch.tensor(rng.normal(size=(18, 2)))
    base = module(r, centers, w, 2)
    assert (base[..., odd].abs() > 1e-8).all()
    for reflect in (False, True):
        got = module(r @ torch.tensor(random_rotation(rng, reflect)).T, centers, w, 2)
        want = torch.where(odd, -base, base) if reflect else base
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)
    if backend == "cpu":
        r.requires_grad_(True)
        assert torch.autograd.gradcheck(lambda a: module(a, centers, w, 2), (r,))


def test_refusals_and_schema(so3, capsys):
    with pytest.raises(ace.AceRequestError, match="no pseudoscalar .* up to nu = 3 .* raise nu"):
        ace.derive_ace_basis(3, 1, 3, group="so3")
    with pytest.raises(ace.AceRequestError, match="raise lmax"):
        ace.derive_ace_basis(4, 2, 0, group="so3")
    with pytest.raises(ace.AceRequestError, match="group"):
        ace.derive_ace_basis(2, 1, 1, group="su2")
    # a pseudoscalar in an O(3) file, or an SO(3) file without its chirality record, is named
    data = json.loads(so3.to_json())
    del data["request"]["group"], data["chirality"]
    with pytest.raises(BasisFileError, match=r"invariants\[\d+\]\.nl: has an odd sum of l"):
        basisfile.loads(json.dumps(data))
    data = json.loads(so3.to_json())
    del data["chirality"]
    with pytest.raises(BasisFileError, match="chirality"):
        basisfile.loads(json.dumps(data))
    # the exact formula check: a pseudoscalar passes only in an SO(3) Basis
    (entry,) = [e for e, f in zip(so3.invariants, ace.functions_of(so3)) if f.odd]
    names = {c["name"]: sp.Symbol(c["name"]) for c in so3.coordinates}
    item = [(entry["id"], sp.sympify(entry["formula"], locals=names), entry["degree"])]
    verify.check_invariants(so3.coordinates, item, seed=1, group="so3")
    with pytest.raises(verify.VerifyError, match="odd total order"):
        verify.check_invariants(so3.coordinates, item, seed=1)


def test_cli(tmp_path, capsys):
    out = tmp_path / "a.json"
    assert main(["ace", "--nu", "4", "--nmax", "1", "--lmax", "3", "--group", "so3", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ACE basis ace_nu4_n1_l3_so3" in text
    assert "pseudoscalar I11 = ACE A(0,1,1) A(0,1,1) A(0,1,2) A(0,1,3); couplings [2, 3]" in text
    assert "mirror images told apart on 2 of 15 strata" in text
    assert basisfile.load(out).data["request"]["group"] == "so3"
    assert main(["report", str(out), "--format", "md", "-o", str(tmp_path / "r.md")]) == 0
    assert "I11" in (tmp_path / "r.md").read_text()
