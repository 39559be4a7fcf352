import itertools

import numpy as np
import pytest
import sympy as sp

from cartinv.symbolic import stf
from helpers import random_rotation, rotate_tensor


@pytest.mark.parametrize("l", range(0, 7))
def test_orthonormal_basis_is_orthonormal_symmetric_traceless(l):
    e = stf.orthonormal_basis(l)
    assert e.shape == (2 * l + 1, 3**l)
    assert np.allclose(e @ e.T, np.eye(2 * l + 1), atol=1e-14)
    for row in e:
        t = row.reshape((3,) * l)
        for perm in itertools.permutations(range(l)):
            assert np.allclose(t, np.transpose(t, perm), atol=1e-14)
        if l >= 2:
            assert np.allclose(np.trace(t, axis1=0, axis2=1), 0, atol=1e-14)


@pytest.mark.parametrize("l", range(0, 7))
def test_integer_basis_is_exact_stf(l):
    b = stf.integer_basis(l)
    assert b.dtype == np.int64
    assert np.linalg.matrix_rank(b.astype(float)) == 2 * l + 1
    for k in range(2 * l + 1):
        t = b[:, k].reshape((3,) * l)
        for perm in itertools.permutations(range(l)):
            assert np.array_equal(t, np.transpose(t, perm))
        if l >= 2:
            assert not np.trace(t, axis1=0, axis2=1).any()


@pytest.mark.parametrize("l", range(0, 6))
def test_y_coordinates_norm_and_rotation(l):
    rng = np.random.default_rng(l)
    u = rng.normal(size=(20, 3))
    c = stf.y_coordinates(l, u)
    assert np.allclose((c**2).sum(-1), float(stf.y_norm2(l)), rtol=1e-13)
    for reflect in (False, True):
        rot = random_rotation(rng, reflect)
        for k in range(5):
            lhs = stf.to_cartesian(l, stf.y_coordinates(l, (rot @ u[k])[None])[0])
            rhs = rotate_tensor(stf.to_cartesian(l, c[k]), rot)
            assert np.allclose(lhs, rhs, atol=1e-13)


@pytest.mark.parametrize("l", range(0, 5))
def test_y_coordinates_are_stf_part_of_outer_power(l):
    rng = np.random.default_rng(10 + l)
    u = rng.normal(size=3)
    u /= np.linalg.norm(u)
    outer = np.ones(())
    for _ in range(l):
        outer = np.multiply.outer(outer, u)
    assert np.allclose(stf.to_cartesian(l, stf.y_coordinates(l, u[None])[0]), stf.stf_part(outer), atol=1e-14)
    if l == 2:  # Y_2 = u⊗u − I/3
        assert np.allclose(stf.stf_part(outer), np.outer(u, u) - np.eye(3) / 3, atol=1e-14)


@pytest.mark.parametrize("l", range(0, 5))
def test_exact_harmonic_coordinates_match_floats(l):
    rng = np.random.default_rng(20 + l)
    u = rng.normal(size=3)
    u /= np.linalg.norm(u)
    exprs = stf.harmonic_coordinates(l)
    vals = [float(e.subs({stf.X: u[0], stf.Y: u[1], stf.Z: u[2]})) for e in exprs]
    assert np.allclose(vals, stf.y_coordinates(l, u[None])[0], atol=1e-14)


def test_round_trip_and_bad_shape():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(4, 7))
    assert np.allclose(stf.from_cartesian(3, stf.to_cartesian(3, c)), c)
    with pytest.raises(ValueError, match="order 3 needs 7 coordinates"):
        stf.to_cartesian(3, np.zeros(5))


def test_coordinate_order_follows_real_solid_harmonics():
    # m = -2 is xy, m = 0 is 3z^2 - r^2, m = 2 is x^2 - y^2 (positive factors).
    x, y, z = stf.X, stf.Y, stf.Z
    c = stf.harmonic_coordinates(2)
    assert sp.simplify(c[0] / (x * y)).is_positive
    assert sp.simplify(c[4] / (x**2 - y**2)).is_positive
    assert sp.simplify(c[2] / (2 * z**2 - x**2 - y**2)).is_positive
