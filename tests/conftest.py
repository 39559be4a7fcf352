"""Shared fixtures: bases derived once per test session (derivation is deterministic)."""

import functools

import pytest


@functools.lru_cache(maxsize=None)
def derived(orders, degree=None, complete=False, flexible=False, channels=1, max_degree=10):
    from cartinv.symbolic.select import BasisRequest, derive_basis

    return derive_basis(BasisRequest(orders=orders, degree=degree, complete=complete, flexible=flexible,
                                     channels=channels, max_degree=max_degree))


@pytest.fixture(scope="session")
def basis_l3d4():
    return derived((0, 1, 2, 3), degree=4)


@pytest.fixture(scope="session")
def basis_l3_flexible():
    return derived((0, 1, 2, 3), flexible=True)
