"""Numerical helpers for tests: random rotations and STF tensors, and einsum evaluation of graph entries."""

import numpy as np

from cartinv.symbolic import stf


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
