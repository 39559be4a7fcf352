"""Exact evaluation of the B functions mod p at random points (values and Jacobian rows)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..modular import INT64_MAX
from .request import AceFunction, SEED
from .enumeration import block_layout
from .couplings import _chain_mod


class ModularAce:
    """Values and Jacobian rows of P_B mod a prime at random points of the rescaled complex chart a.

    Columns (variables) follow the Basis coordinates: block (channel, l) in coordinate_table order, then m = −l..l.
    Random points are drawn from a seeded generator, one array (batch, D) per call. Exactness of int64: primes
    are below 2^25 and a step sums (2L+1)(2l+1) ≤ 65·17 products below 2^50 (L ≤ Σ of the remaining orders ≤ 32
    within the request limits), which stays below 2^63.
    """

    def __init__(self, nmax: int, lmax: int, species: int, prime: int):
        self.prime, self.nmax = prime, nmax
        self.blocks, self.offsets, self.dim = block_layout(nmax, lmax, species)

    def points(self, batch: int, seed) -> np.ndarray:
        rng = np.random.default_rng([SEED, self.prime, batch] + list(np.atleast_1d(seed)))
        return rng.integers(0, self.prime, size=(batch, self.dim), dtype=np.int64)

    def _factor_columns(self, fns: list[AceFunction], k: int) -> np.ndarray:
        """(F, 2l_k+1) column indices of factor k of each function (all share the pattern)."""
        l = fns[0].ls[k]
        starts = np.array([self.offsets[f.blocks(self.nmax)[k]] for f in fns], dtype=np.int64)
        return starts[:, None] + np.arange(2 * l + 1)[None, :]

    def _step(self, q: np.ndarray, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """q (..., i), x (..., j), w (i, j, o) -> (..., o), all mod p."""
        p = self.prime
        outer = (q[..., :, None] * x[..., None, :]) % p
        flat = outer.reshape(outer.shape[:-2] + (-1,))
        assert flat.shape[-1] * (p - 1) ** 2 <= INT64_MAX  # at most (2L+1)(2l+1) products summed
        return (flat @ w.reshape(-1, w.shape[2])) % p

    def values(self, fns: list[AceFunction], pts: np.ndarray) -> np.ndarray:
        """P_B at every point, shape (F, batch); all fns must share one pattern."""
        ls, couplings = fns[0].pattern
        ws = _chain_mod(ls, couplings, self.prime)
        xs = [np.moveaxis(pts[:, self._factor_columns(fns, k)], 0, 1) for k in range(len(ls))]  # (F, batch, dim)
        q = xs[0]
        for x, w in zip(xs[1:], ws):
            q = self._step(q, x, w)
        return q[..., 0] % self.prime

    def jacobian_rows(self, fns: list[AceFunction], pt: np.ndarray) -> np.ndarray:
        """∂P_B/∂a at one point pt (D,), shape (F, D); all fns must share one pattern."""
        ls, couplings = fns[0].pattern
        ws = _chain_mod(ls, couplings, self.prime)
        p, nu, nf = self.prime, len(ls), len(fns)
        cols = [self._factor_columns(fns, k) for k in range(nu)]
        xs = [pt[c] for c in cols]  # (F, dim_k)
        prefix = [xs[0]]
        for x, w in zip(xs[1:], ws):
            prefix.append(self._step(prefix[-1], x, w))
        rows = np.zeros((nf, self.dim), dtype=np.int64)
        for k in range(nu):
            e = 2 * ls[k] + 1
            eye = np.broadcast_to(np.eye(e, dtype=np.int64), (nf, e, e))
            if k == 0:
                q = eye.copy()
            else:
                q = self._step(prefix[k - 1][:, None, :], eye, ws[k - 1])  # (F, e, out)
            for j in range(k + 1, nu):
                q = self._step(q, xs[j][:, None, :], ws[j - 1])
            grad = q[..., 0] % p  # (F, e)
            rows[np.arange(nf)[:, None], cols[k]] += grad
        return rows % p


    def jacobian(self, fns: list[AceFunction], pt: np.ndarray) -> np.ndarray:
        """∂P_B/∂a at one point for any functions (grouped by pattern), shape (F, D), rows in the order of fns."""
        rows = np.zeros((len(fns), self.dim), dtype=np.int64)
        for idx in _by_pattern(range(len(fns)), fns).values():
            rows[idx] = self.jacobian_rows([fns[i] for i in idx], pt)
        return rows


def _by_pattern(indices, fns):
    groups = defaultdict(list)
    for i in indices:
        groups[fns[i].pattern].append(i)
    return groups
