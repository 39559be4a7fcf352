import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from cartinv.symbolic import bounds
from cartinv.symbolic.graphs import ContractionGraph
from cartinv.symbolic.modular import PRIMES, ModularPoints, rank_mod_p
from cartinv.symbolic.select import BasisRequest, RequestError, derive_basis
from conftest import derived
from helpers import einsum_value, random_blocks, random_rotation, rotate_tensor


def graph_of(entry):
    return ContractionGraph(tuple(zip(entry["channels"], entry["orders"])), tuple(tuple(e) for e in entry["edges"]))


@pytest.mark.parametrize("lmax", [2, 3, 4])
def test_complete_single_channel_reaches_bound(lmax):
    b = derived(tuple(range(lmax + 1)), complete=True)
    assert b.bound == (lmax + 1) ** 2 - 3
    assert b.rank == b.bound == len(b.invariants)
    assert b.data["complete"] is True
    assert b.data["degree_needed"] == max(inv["degree"] for inv in b.invariants)


def test_lmax3_degree4_has_13_and_trq4_is_algebraic(basis_l3d4):
    b = basis_l3d4
    assert len(b.invariants) == 13 and b.rank == 13 == b.bound
    quad_t2 = next(i for i in b.invariants if i["orders"] == [2, 2])
    trq4 = next(d for d in b.dropped if d["orders"] == [2, 2, 2, 2] and d["reason"] != "reducible")
    assert trq4["reason"] == "algebraic"
    assert trq4["relation_terms"] == [["1/2", [quad_t2["id"], quad_t2["id"]]]]
    assert trq4["relation"] == f"{trq4['id']} = 1/2*{quad_t2['id']}**2"


def test_every_dropped_has_reason_and_relations_hold_numerically(basis_l3d4):
    b = basis_l3d4
    by_id = {e["id"]: e for e in b.invariants + b.dropped}
    rng = np.random.default_rng(3)
    blocks = [(0, l) for l in b.orders]
    for _ in range(3):
        _, cart = random_blocks(rng, blocks)
        for d in b.dropped:
            assert d["reason"] in ("reducible", "linear", "algebraic", "implicit", "functional")
            if d["relation_terms"] is None:
                assert d["reason"] == "functional"
                continue
            terms = [float(Fraction(c)) * np.prod([einsum_value(by_id[i], cart) for i in ids])
                     for c, ids in d["relation_terms"]]
            # implicit relations list every term of P = 0; the others give the candidate's value
            lhs = 0.0 if d["reason"] == "implicit" else einsum_value(d, cart)
            assert abs(lhs - sum(terms)) <= 1e-10 * max(1.0, abs(lhs), *map(abs, terms))


def test_kept_formulas_invariant_under_rotations_and_reflections(basis_l3d4):
    b = basis_l3d4
    syms = [sp.Symbol(c["name"]) for c in b.coordinates]
    fns = [sp.lambdify(syms, sp.parse_expr(inv["formula"], local_dict={str(s): s for s in syms})) for inv in b.invariants]
    rng = np.random.default_rng(5)
    blocks = [(0, l) for l in b.orders]
    from cartinv.symbolic import stf
    for reflect in (False, True):
        coords, cart = random_blocks(rng, blocks)
        rot = random_rotation(rng, reflect)
        rcoords = {k: stf.from_cartesian(k[1], rotate_tensor(v, rot)) for k, v in cart.items()}
        flat = np.concatenate([coords[k] for k in blocks])
        rflat = np.concatenate([rcoords[k] for k in blocks])
        for inv, fn in zip(b.invariants, fns):
            v0, v1 = fn(*flat), fn(*rflat)
            assert abs(v0 - v1) <= 1e-12 * max(1.0, abs(v0))
            assert abs(v0 - einsum_value(inv, cart)) <= 1e-12 * max(1.0, abs(v0))


def test_kept_set_has_full_jacobian_rank_exactly(basis_l3d4):
    b = basis_l3d4
    blocks = tuple((0, l) for l in b.orders)
    for p in PRIMES:
        pts = ModularPoints(blocks, p, 1, seed=99)
        jac = np.stack([pts.jacobian_rows(graph_of(i))[0] for i in b.invariants])
        assert rank_mod_p(jac, p) == len(b.invariants)


def test_dropped_members_do_not_raise_rank(basis_l3d4):
    b = basis_l3d4
    blocks = tuple((0, l) for l in b.orders)
    pts = ModularPoints(blocks, PRIMES[0], 1, seed=123)
    jac = np.stack([pts.jacobian_rows(graph_of(i))[0] for i in b.invariants])
    for d in b.dropped:
        row = pts.jacobian_rows(graph_of(d))
        assert rank_mod_p(np.concatenate([jac, row]), PRIMES[0]) == b.rank


def test_strata_report_and_flexible_fix(basis_l3d4, basis_l3_flexible):
    failing = {tuple(map(tuple, s["zero"])) for s in basis_l3d4.strata if not s["complete"]}
    assert ((0, 1),) in failing and ((0, 2),) in failing  # no vector or no quadrupole: the 13 are not enough
    assert ((),) not in failing and all(s["bound"] == bounds.bound(
        [(0, l) for l in basis_l3d4.orders if [0, l] not in s["zero"]]) for s in basis_l3d4.strata)
    flex = basis_l3_flexible
    assert flex.rank == flex.bound == 13
    assert all(s["complete"] for s in flex.strata) and len(flex.strata) == 15
    assert len(flex.invariants) > 13
    assert {tuple(e["block"]): e["degree"] for e in flex.data["block_degrees"]}[(0, 3)] == 10


def test_two_runs_byte_identical_across_processes(basis_l3d4, tmp_path):
    code = ("from cartinv.symbolic.select import BasisRequest, derive_basis;"
            "import sys; sys.stdout.write(derive_basis(BasisRequest(orders=(0,1,2,3), degree=4)).to_json())")
    outs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        outs.append(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    assert outs[0] == outs[1] == basis_l3d4.to_json()


def test_channels_cross_channel_bound():
    b = derived((1, 2), degree=3, channels=2)
    assert b.bound == 2 * (3 + 5) - 3
    assert any(len(set(i["channels"])) == 2 for i in b.invariants)
    assert all(len(i["channels"]) == i["degree"] for i in b.invariants)


@pytest.mark.parametrize("kwargs,match", [
    (dict(orders=(-1, 2), degree=2), "non-negative"),
    (dict(orders=(0, 2), degree=0), "degree must be an integer in 1..32, got 0"),
    (dict(orders=(1, 3), degree=1), "even total order"),
    (dict(orders=(), degree=2), "no orders"),
    (dict(orders=(0, 1, 2, 3, 4, 5), degree=9), "exhaustive search limit"),
    (dict(orders=tuple(range(9)), degree=6, channels=4), "too large"),
    (dict(orders=(2, 2), degree=2), "repeat"),
])
def test_bad_requests(kwargs, match):
    with pytest.raises(RequestError, match=match):
        derive_basis(BasisRequest(**kwargs))


def test_complete_cap_message():
    with pytest.raises(RequestError, match="not reached by degree 2"):
        derive_basis(BasisRequest(orders=(0, 1, 2, 3), complete=True, max_degree=2))


def test_flexible_basis_is_irredundant(basis_l3_flexible):
    """Removing any member of the flexible basis leaves some stratum incomplete."""
    from cartinv.symbolic.select import _strata_report

    flex = basis_l3_flexible
    blocks = tuple((0, l) for l in flex.orders)
    kept = [(i["id"], graph_of(i)) for i in flex.invariants]
    for k in range(len(kept)):
        report = _strata_report(blocks, kept[:k] + kept[k + 1:])
        assert not all(s["complete"] for s in report), kept[k][0]


@pytest.mark.parametrize("l", [0, 1, 2, 3, 4, 5, 6, pytest.param(7, marks=pytest.mark.slow),
                               pytest.param(8, marks=pytest.mark.slow)])
def test_pure_block_degree_table_is_what_the_search_finds(l):
    """PURE_BLOCK_DEGREES (used instead of the search in every derivation) holds what pure_block_degree computes,
    and the cap decides only whether it is reported."""
    from cartinv.symbolic import select

    found = select.pure_block_degree.__wrapped__(l, 10)
    assert select.PURE_BLOCK_DEGREES[l] == found
    assert select.block_degree(l, found) == found and select.block_degree(l, found - 1) is None
    assert select.block_degree(l, 12) == found
