"""Floating-point evaluation of B functions from moments (examples and fits; never a decision)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .. import cg
from .request import AceFunction
from .enumeration import block_layout
from .couplings import lambda2
from .modular_eval import _by_pattern


@lru_cache(maxsize=None)
def real_chain(ls: tuple[int, ...], couplings: tuple[int, ...]) -> tuple[tuple[np.ndarray, ...], float]:
    """Float step tensors in the real basis and the overall sign: B = sign · chain(A^real, tensors).

    Each real-basis coupling Σ U U conj(U) ⟨..|..⟩ is real for an even L_{k−1}+l_k+L_k and imaginary for an odd
    one (then its imaginary part is used). The number of odd steps has the parity of Σ l: for even Σ l the product
    of their i's is ±1; for odd Σ l (pseudoscalars) it is ±i, and B / i is returned (as symbolic/ace/formulas.py).
    """
    nu = len(ls)
    if nu == 1:
        return (), 1.0
    chain = (ls[0],) + couplings + (0,)
    out, odd = [], 0
    for k in range(1, nu):
        lin, lk, lout = chain[k - 1], ls[k], chain[k]
        c = np.zeros((2 * lin + 1, 2 * lk + 1, 2 * lout + 1))
        for mi in range(-lin, lin + 1):
            for mk in range(-lk, lk + 1):
                if abs(mi + mk) <= lout:
                    c[mi + lin, mk + lk, mi + mk + lout] = cg.cg_float(lin, mi, lk, mk, lout, mi + mk)
        w = np.einsum("Ma,mb,Nc,MmN->abc", cg.complex_from_real_matrix(lin), cg.complex_from_real_matrix(lk),
                      cg.complex_from_real_matrix(lout).conj(), c)
        if (lin + lk + lout) % 2:
            odd += 1
            out.append(np.ascontiguousarray(w.imag))
        else:
            out.append(np.ascontiguousarray(w.real))
    if odd % 2 != sum(ls) % 2:
        raise AssertionError(f"{odd} parity-odd couplings in {ls} {couplings}: not the parity of sum(l)")
    return tuple(out), (-1.0) ** (odd // 2)  # i^odd, divided by i when odd is odd


class AceEvaluator:
    """Float64 B functions (and their gradients) from block coordinates T, for a fixed list of functions.

    T has shape (atoms, D) in Basis coordinate order (channel-major, then l, then m); A = λ_l T.
    """

    def __init__(self, functions: list[AceFunction], nmax: int, lmax: int, species: int = 1):
        self.functions = list(functions)
        self.nmax = nmax
        self.blocks, self.offsets, self.dim = block_layout(nmax, lmax, species)
        self.scale = np.concatenate([np.full(2 * l + 1, float(lambda2(l)) ** 0.5) for _, l in self.blocks])
        self.groups = []
        for pattern, idx in _by_pattern(range(len(self.functions)), self.functions).items():
            fns = [self.functions[i] for i in idx]
            cols = []
            for k, l in enumerate(pattern[0]):
                starts = np.array([self.offsets[f.blocks(nmax)[k]] for f in fns])
                cols.append(starts[:, None] + np.arange(2 * l + 1)[None, :])
            tensors, sign = real_chain(*pattern)
            self.groups.append((np.array(idx), cols, tensors, sign))

    @staticmethod
    def _step(q, x, w):
        outer = q[..., :, None] * x[..., None, :]
        return outer.reshape(outer.shape[:-2] + (-1,)) @ w.reshape(-1, w.shape[2])

    def values(self, t: np.ndarray) -> np.ndarray:
        """(atoms, D) -> (atoms, K)."""
        a = np.asarray(t, dtype=np.float64) * self.scale
        out = np.empty((a.shape[0], len(self.functions)))
        for idx, cols, tensors, sign in self.groups:
            q = a[:, cols[0]]
            for c, w in zip(cols[1:], tensors):
                q = self._step(q, a[:, c], w)
            out[:, idx] = sign * q[..., 0]
        return out

    def values_and_gradients(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(atoms, D) -> values (atoms, K) and ∂B/∂T (atoms, K, D), by one reverse sweep along each chain.

        Step k computes Q_k[o] = Σ_ij W[i, j, o] Q_{k−1}[i] X_k[j]; with G_k = ∂B/∂Q_k and
        R[i, j] = Σ_o W[i, j, o] G_k[o]: ∂B/∂X_k[j] = Σ_i Q_{k−1}[i] R[i, j] and G_{k−1}[i] = Σ_j R[i, j] X_k[j].
        """
        a = np.asarray(t, dtype=np.float64) * self.scale
        n = a.shape[0]
        vals = np.empty((n, len(self.functions)))
        grads = np.zeros((n, len(self.functions), self.dim))
        for idx, cols, tensors, sign in self.groups:
            xs = [a[:, c] for c in cols]  # (atoms, F, dim)
            prefix = [xs[0]]
            for x, w in zip(xs[1:], tensors):
                prefix.append(self._step(prefix[-1], x, w))
            vals[:, idx] = sign * prefix[-1][..., 0]
            adj = np.full(prefix[-1].shape, sign)
            dx = [None] * len(cols)
            for k in range(len(cols) - 1, 0, -1):
                w = tensors[k - 1]
                r = (adj @ w.reshape(-1, w.shape[2]).T).reshape(adj.shape[:-1] + w.shape[:2])
                dx[k] = np.einsum("afi,afij->afj", prefix[k - 1], r)
                adj = np.einsum("afij,afj->afi", r, xs[k])
            dx[0] = adj
            for c, g in zip(cols, dx):
                # one factor position: every function has its own row, so (row, column) pairs are distinct;
                # the chain rule through A = λ T multiplies by λ
                grads[:, np.broadcast_to(idx[:, None], c.shape), c] += g * self.scale[c][None]
        return vals, grads
