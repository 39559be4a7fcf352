"""symbolic/modular.py: exact arithmetic mod p, checked against Python integers and classical identities."""

import itertools

import numpy as np
import pytest

from cartinv.symbolic import levi_civita as lc
from cartinv.symbolic.graphs import graphs_for_labels
from cartinv.symbolic.modular import (MAX_SUMMED, PRIMES, Echelon, ModularPoints, contract_mod, levi_civita,
                                      permutations_with_sign, rank_mod_p)


def test_levi_civita_is_the_determinant_of_permuted_unit_vectors():
    eps = levi_civita()
    eye = np.eye(3)
    for a, b, c in itertools.product(range(3), repeat=3):
        assert eps[a, b, c] == round(np.linalg.det(eye[[a, b, c]]))
    assert lc.levi_civita is levi_civita  # one definition, re-exported


def test_permutation_signs_multiply_like_the_symmetric_group():
    sign = dict(permutations_with_sign(4))
    assert len(sign) == 24 and sum(sign.values()) == 0
    for p, q in itertools.product(sign, repeat=2):
        composed = tuple(p[q[i]] for i in range(4))
        assert sign[composed] == sign[p] * sign[q]


def _exact_einsum(a, sa, b, sb, out):
    """The same contraction on Python integers (object arrays: no overflow)."""
    return np.einsum(f"...{sa},...{sb}->...{out}", a.astype(object), b.astype(object))


@pytest.mark.parametrize("summed", [2, 9, 10])
def test_contract_mod_equals_integer_contraction(summed):
    """Residues near p: the single-einsum path (3^2 products) and the split path (3^9, 3^10 > MAX_SUMMED)."""
    assert 3 ** 9 > MAX_SUMMED >= 3 ** 2
    prime = PRIMES[0]
    rng = np.random.default_rng(summed)
    letters = "abcdefghijkl"[:summed]
    sa, sb, out = letters + "y", letters + "z", "yz"
    a = rng.integers(prime - 50, prime, size=(2,) + (3,) * (summed + 1), dtype=np.int64)
    b = rng.integers(prime - 50, prime, size=(2,) + (3,) * (summed + 1), dtype=np.int64)
    got = contract_mod(a, sa, b, sb, out, prime)
    want = _exact_einsum(a, sa, b, sb, out) % prime
    assert got.dtype == np.int64 and np.array_equal(got.astype(object), want)


def _rank_gf(rows, prime):
    """Rank over GF(p) by textbook elimination on Python integers."""
    m = [[int(x) % prime for x in r] for r in rows]
    rank, cols = 0, len(m[0]) if m else 0
    for c in range(cols):
        piv = next((i for i in range(rank, len(m)) if m[i][c]), None)
        if piv is None:
            continue
        m[rank], m[piv] = m[piv], m[rank]
        inv = pow(m[rank][c], -1, prime)
        m[rank] = [x * inv % prime for x in m[rank]]
        for i in range(len(m)):
            if i != rank and m[i][c]:
                f = m[i][c]
                m[i] = [(x - f * y) % prime for x, y in zip(m[i], m[rank])]
        rank += 1
    return rank


@pytest.mark.parametrize("shape,inner", [((12, 9), 4), ((7, 15), 7), ((10, 10), 10), ((6, 6), 0)])
def test_echelon_and_rank_mod_p_agree_with_elimination_on_integers(shape, inner):
    prime = PRIMES[1]
    rng = np.random.default_rng(inner)
    left = rng.integers(0, prime, size=(shape[0], inner), dtype=np.int64).astype(object)
    right = rng.integers(0, prime, size=(inner, shape[1]), dtype=np.int64).astype(object)
    matrix = (left @ right % prime).astype(np.int64) if inner else np.zeros(shape, dtype=np.int64)
    want = _rank_gf(matrix.tolist(), prime)
    assert rank_mod_p(matrix, prime) == want
    ech = Echelon(shape[1], prime)
    raised = [ech.add(row) for row in matrix]
    assert ech.rank == want == sum(raised)
    assert not any(ech.would_raise(row) for row in matrix)


@pytest.mark.parametrize("labels,pseudo", [(((0, 2), (0, 2), (0, 2)), False),
                                          (((0, 1), (0, 2), (0, 2), (0, 3)), False), (((0, 3),) * 4, False),
                                          (((0, 1), (0, 1), (0, 2), (0, 3)), True)])
def test_jacobian_rows_satisfy_euler_identity(labels, pseudo):
    """A homogeneous polynomial f of degree n has sum_i x_i df/dx_i = n f: exact, mod p, at every point (the
    Levi-Civita vertex of a pseudoscalar is a constant, not a variable)."""
    graphs = lc.pseudo_graphs(labels) if pseudo else graphs_for_labels(labels)
    assert graphs
    for prime in PRIMES:
        pts = ModularPoints(tuple(sorted(set(labels))), prime, batch=5, seed=3)
        x = np.concatenate([pts.variables[b] for b in sorted(pts.variables)], axis=1)
        assert x.shape == (5, pts.dim)
        for g in graphs:
            rows = pts.jacobian_rows(g).astype(object)
            euler = (rows * x.astype(object)).sum(axis=1) % prime
            want = (len(labels) * pts.values(g).astype(object)) % prime
            assert np.array_equal(euler, want), g


def test_jacobian_rows_see_every_block():
    """At random points every block of a graph has a non-zero gradient; a block held at zero has zero values."""
    labels = ((0, 1), (0, 1), (0, 2))
    pts = ModularPoints(((0, 1), (0, 2)), PRIMES[0], batch=3, seed=4)
    for g in graphs_for_labels(labels):
        rows = pts.jacobian_rows(g)
        assert rows[:, pts.offsets[(0, 1)]:pts.offsets[(0, 1)] + 3].any()
        assert rows[:, pts.offsets[(0, 2)]:pts.offsets[(0, 2)] + 5].any()
    zero = ModularPoints(((0, 1), (0, 2)), PRIMES[0], batch=3, seed=4, zero=frozenset({(0, 2)}))
    assert not zero.variables[(0, 2)].any() and not zero.tensors[(0, 2)].any()
    assert all(not zero.values(g).any() for g in graphs_for_labels(labels))
