"""Pseudoscalar graphs (symbolic/levi_civita.py): enumeration, the eps eps = det(delta) product, and the proof
that Levi-Civita contractions span every SO(3) invariant the Molien count allows."""

import itertools

import numpy as np
import pytest

from cartinv.symbolic import levi_civita as L
from cartinv.symbolic import molien
from cartinv.symbolic.graphs import parse_index_notation
from cartinv.symbolic.span import check_span

from helpers import random_blocks, random_rotation, rotate_tensor

BLOCKS3 = tuple((0, l) for l in range(4))


def eps_tensor():
    e = np.zeros((3, 3, 3))
    for a, b, c in itertools.permutations(range(3)):
        e[a, b, c] = np.linalg.det(np.eye(3)[[a, b, c]])
    return e


def value(graph, cart):
    """The contraction with numpy einsum on float tensors (independent of the modular and SymPy evaluators)."""
    ops = [eps_tensor() if lab == L.EPS else cart[lab] for lab in graph.labels]
    return float(np.einsum(graph.einsum, *ops)) if len(ops) > 1 else float(ops[0])


def test_levi_civita_tensor():
    assert np.array_equal(L.levi_civita(), eps_tensor().astype(np.int64))


def test_only_odd_total_order_has_pseudoscalar_graphs():
    assert L.pseudo_graphs(((0, 1), (0, 1), (0, 2), (0, 2))) == ()
    graphs = L.pseudo_graphs(((0, 1), (0, 1), (0, 2), (0, 3)))
    assert len(graphs) == 2
    for g in graphs:
        assert g.labels[0] == L.EPS and L.is_pseudo(g)
        assert all(k == 1 for u, v, k in g.edges if u == 0)  # three different factors on the eps legs


def test_parse_index_notation_reads_eps():
    g = parse_index_notation("eps[abc] T1[a] T1[d] T2[be] T3[cde]")
    assert g in L.pseudo_graphs(((0, 1), (0, 1), (0, 2), (0, 3)))
    assert g.index_notation() == "eps[abc] T1[a] T1[d] T2[be] T3[cde]"
    assert parse_index_notation("T3[cde] T2[be] eps[bca] T1[d] T1[a]") == g  # same graph, any factor order


def test_pseudoscalars_are_rotation_invariant_and_flip_under_reflection():
    rng = np.random.default_rng(3)
    _, cart = random_blocks(rng, BLOCKS3)
    graphs = [g for ms in itertools.combinations_with_replacement(BLOCKS3[1:], 4) for g in L.pseudo_graphs(ms)]
    nonzero = [g for g in graphs if abs(value(g, cart)) > 1e-9]
    assert len(nonzero) >= 3
    for reflect in (False, True):
        rot = random_rotation(rng, reflect)
        turned = {b: rotate_tensor(t, rot) for b, t in cart.items()}
        for g in graphs:
            want = value(g, cart) * (-1 if reflect else 1)
            assert value(g, turned) == pytest.approx(want, abs=1e-9)


def test_product_identity_against_einsum():
    """p * q = sum sign * O(3) contraction, checked with float einsum for every pair of degree-4 pseudoscalars."""
    rng = np.random.default_rng(5)
    _, cart = random_blocks(rng, BLOCKS3)
    graphs = [g for ms in itertools.combinations_with_replacement(BLOCKS3[1:], 4) for g in L.pseudo_graphs(ms)]
    for p, q in itertools.combinations_with_replacement(graphs, 2):
        terms = L.product_graphs(p, q)
        assert all(not L.is_pseudo(g) for _, g in terms)
        rhs = sum(s * value(g, cart) for s, g in terms)
        assert value(p, cart) * value(q, cart) == pytest.approx(rhs, abs=1e-8)


@pytest.mark.parametrize("orders, degree", [((0, 1, 2, 3), 4), ((0, 1, 2, 3, 4), 4), ((3,), 10)])
def test_so3_span_equals_molien_dimension(orders, degree):
    """Every multidegree up to `degree`: the (pseudoscalar, for odd total order) graphs reach the SO(3) dimension."""
    blocks = tuple((0, l) for l in orders)
    multisets = [c for d in range(1, degree + 1) for c in itertools.combinations_with_replacement(blocks, d)]
    check = check_span(blocks, multisets, "so3")
    assert check.group == "so3" and check.rank == check.dimension
    want = sum(n for d, n in molien.count(orders, degree, 1, "so3")["by_degree"].items() if d != "0")
    assert check.dimension == want


def test_odd_multisets_have_no_o3_graphs():
    """O(3) counts an odd multiset as dimension 0 with no graphs; SO(3) checks its pseudoscalars."""
    ms = [((0, 1), (0, 1), (0, 2), (0, 3))]
    assert (check_span(BLOCKS3, ms, "o3").graphs, check_span(BLOCKS3, ms, "o3").dimension) == (0, 0)
    assert (check_span(BLOCKS3, ms, "so3").graphs, check_span(BLOCKS3, ms, "so3").dimension) == (2, 1)


def test_pseudoscalar_counts_at_degree_four():
    """l <= 3, degree 4: 26 SO(3) against 23 O(3) invariants; the three pseudoscalars in 1123, 1233 and 2223."""
    so3 = molien.count([0, 1, 2, 3], 4, 1, "so3")
    o3 = molien.count([0, 1, 2, 3], 4, 1, "o3")
    assert (so3["by_degree"]["4"], o3["by_degree"]["4"]) == (26, 23)
    odd = [m["multidegree"] for m in so3["by_multidegree"]
           if m["degree"] == 4 and sum(n * l for n, l in zip(m["multidegree"], [0, 1, 2, 3])) % 2]
    assert sorted(odd) == sorted([[0, 2, 1, 1], [0, 1, 1, 2], [0, 0, 3, 1]])
