"""Numerical helpers for tests: random rotations and STF tensors, and einsum evaluation of graph entries."""

from collections import Counter
from fractions import Fraction

import numpy as np

from cartinv.symbolic import stf
from cartinv.symbolic.graphs import canonical
from cartinv.symbolic.modular import PRIMES, ModularPoints

P = PRIMES[1]  # the prime of the exact relation checks


def random_rotation(rng, reflect=False):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return -q if reflect else q


def rotate_tensor(t, rot):
    for axis in range(t.ndim):
        t = np.moveaxis(np.tensordot(rot, t, axes=([1], [axis])), 0, axis)
    return t


def random_blocks(rng, blocks):
    """Random orthonormal coordinates per block (channel, l) -> (coords dict, cartesian dict)."""
    coords = {b: rng.normal(size=2 * b[1] + 1) for b in blocks}
    return coords, {b: stf.to_cartesian(b[1], c) for b, c in coords.items()}


def einsum_value(entry, cart):
    ops = [cart[(c, l)] for c, l in zip(entry["channels"], entry["orders"])]
    if len(ops) == 1:
        return float(ops[0])
    return float(np.einsum(entry["einsum"], *ops))


# ---------------------------------------------------------------------------------- exact relation checks
def graph_of(entry):
    """The ContractionGraph of a Basis entry."""
    return canonical(tuple(zip(entry["channels"], entry["orders"])), [tuple(e) for e in entry["edges"]])


def modular_values(basis, seed=99, batch=12):
    """Values mod P of every kept and dropped graph at random integer points no search used."""
    blocks = tuple((c, l) for c in range(basis.channels) for l in basis.orders)
    pts = ModularPoints(blocks, P, batch, seed)
    return {e["id"]: pts.values(graph_of(e)).astype(object) % P for e in basis.invariants + basis.dropped}


def check_relations_exactly(basis):
    """Every relation holds mod P at points neither search used; returns the reasons seen."""
    vals = modular_values(basis)
    reasons = Counter()
    for d in basis.dropped:
        reasons[d["reason"]] += 1
        if d["reason"] == "functional":
            assert d["relation_terms"] is None
            continue
        total = 0
        for coeff, ids in d["relation_terms"]:
            q = Fraction(coeff)
            term = q.numerator * pow(q.denominator, -1, P) % P
            for i in ids:
                term = term * vals[i] % P
            total = (total + term) % P
        lhs = 0 if d["reason"] == "implicit" else vals[d["id"]]
        assert np.all((total - lhs) % P == 0), d["relation"]
    return reasons
