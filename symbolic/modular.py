"""Exact evaluation of contractions modulo a prime at random integer points, with Jacobian rows.

Each STF block is parametrised by its 2l+1 free integer components (stf.integer_basis), so every contraction
is a polynomial with integer coefficients in those variables. At an integer point, values and gradients are
computed exactly mod p. Primes are below 2^25, so a product of two residues is below 2^50 and a sum of up to
2^13 such products still fits in int64. A pairwise step that would sum more products (3^k for k >= 9 contracted
indices, e.g. T9.T9) is split along contracted indices until each part sums at most 2^13 products, and each part
is reduced before the parts are added: every step is exact for every accepted order (asserted).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from . import stf
from .contract import execute
from .graphs import ContractionGraph, Label
from .naming import EPS_LABEL


def permutations_with_sign(n: int):
    """(permutation, sign) of range(n), in lexicographic order."""
    for perm in itertools.permutations(range(n)):
        inversions = sum(1 for i in range(n) for j in range(i + 1, n) if perm[i] > perm[j])
        yield perm, -1 if inversions % 2 else 1


def levi_civita() -> np.ndarray:
    """eps_abc as a 3x3x3 integer array (symbolic/levi_civita.py builds on it)."""
    e = np.zeros((3, 3, 3), dtype=np.int64)
    for perm, sign in permutations_with_sign(3):
        e[perm] = sign
    return e


PRIMES = (33554393, 33554383)  # the two largest primes below 2^25
INT64_MAX = (1 << 63) - 1
MAX_SUMMED = INT64_MAX // (max(PRIMES) - 1) ** 2  # products of two residues one int64 sum can hold (> 2^13)


def _take(x: np.ndarray, subs: str, letter: str, value: int) -> tuple[np.ndarray, str]:
    """x with index `letter` fixed to `value` (batch axes lead, the subscripts name the trailing axes)."""
    if letter not in subs:
        return x, subs
    axis = x.ndim - len(subs) + subs.index(letter)
    return np.take(x, value, axis=axis), subs.replace(letter, "")


def contract_mod(a: np.ndarray, sa: str, b: np.ndarray, sb: str, out: str, prime: int) -> np.ndarray:
    """einsum('...sa,...sb->...out') mod prime, exact: inputs are residues, and no int64 sum ever holds more
    than MAX_SUMMED products (larger contractions are split along a summed index, each part reduced)."""
    summed = sorted((set(sa) | set(sb)) - set(out))
    if 3 ** len(summed) <= MAX_SUMMED:
        assert (prime - 1) ** 2 * 3 ** len(summed) <= INT64_MAX
        return np.einsum(f"...{sa},...{sb}->...{out}", a, b) % prime
    letter = summed[0]
    total = None
    for v in range(3):
        a_v, sa_v = _take(a, sa, letter, v)
        b_v, sb_v = _take(b, sb, letter, v)
        part = contract_mod(a_v, sa_v, b_v, sb_v, out, prime)
        total = part if total is None else (total + part) % prime
    return total


@dataclass
class ModularPoints:
    """A batch of random integer points, one STF tensor per block, all reduced mod `prime`.

    `zero` lists blocks held at zero (a degenerate stratum). `offsets[b]` is where block b's variables start in
    a Jacobian row of length `dim`.
    """

    blocks: tuple[Label, ...]
    prime: int
    batch: int
    seed: int
    zero: frozenset = frozenset()
    tensors: dict = field(init=False)
    variables: dict = field(init=False)  # block -> (batch, 2l+1) residues: the free variables of a Jacobian row
    offsets: dict = field(init=False)
    dim: int = field(init=False)

    def __post_init__(self):
        rng = np.random.default_rng([self.seed, self.prime, self.batch])
        self.tensors, self.variables, self.offsets, off = {}, {}, {}, 0
        for b in sorted(self.blocks):
            l = b[1]
            x = rng.integers(0, self.prime, size=(self.batch, 2 * l + 1), dtype=np.int64)
            if b in self.zero:
                x[:] = 0
            basis = stf.integer_basis(l).astype(np.int64)
            assert int(np.abs(basis).sum(axis=1).max()) * (self.prime - 1) <= INT64_MAX  # row sums: 64 at l = 12
            full = (x @ basis.T) % self.prime
            self.tensors[b] = full.reshape((self.batch,) + (3,) * l)
            self.variables[b] = x
            self.offsets[b] = off
            off += 2 * l + 1
        self.dim = off
        eps = levi_civita() % self.prime  # the Levi-Civita vertex of pseudoscalars: a constant, no variables
        self.tensors[EPS_LABEL] = np.broadcast_to(eps, (self.batch, 3, 3, 3))

    def _pair(self, a, sa, b, sb, out):
        return contract_mod(a, sa, b, sb, out, self.prime)

    def _single(self, a, sa, out):
        return np.einsum(f"...{sa}->...{out}", a) % self.prime

    def values(self, graph: ContractionGraph) -> np.ndarray:
        """Values of the contraction at every point of the batch, shape (batch,)."""
        ops = [self.tensors[lab] for lab in graph.labels]
        if graph.degree == 1:
            return ops[0] % self.prime
        return execute(ops, graph.subscripts, "", self._pair, self._single)

    def jacobian_rows(self, graph: ContractionGraph) -> np.ndarray:
        """Gradient with respect to all free variables, shape (batch, dim): sum over vertices v of <G_v, B_l>."""
        rows = np.zeros((self.batch, self.dim), dtype=np.int64)
        subs = graph.subscripts
        for v, lab in enumerate(graph.labels):
            if lab == EPS_LABEL:
                continue
            l = lab[1]
            others = [k for k in range(graph.degree) if k != v]
            if others:
                env = execute([self.tensors[graph.labels[k]] for k in others], [subs[k] for k in others], subs[v],
                              self._pair, self._single)
            else:
                env = np.ones((self.batch,), dtype=np.int64)
            basis = stf.integer_basis(l).astype(np.int64)
            assert int(np.abs(basis).sum(axis=0).max()) * (self.prime - 1) <= INT64_MAX  # column sums < 2^18
            grad = (env.reshape(self.batch, 3**l) @ basis) % self.prime
            o = self.offsets[lab]
            rows[:, o:o + 2 * l + 1] = (rows[:, o:o + 2 * l + 1] + grad) % self.prime
        return rows


class Echelon:
    """Row-echelon form of a growing set of rows mod p: `add` reports whether a row raises the rank."""

    def __init__(self, dim: int, prime: int):
        self.prime, self.dim = prime, dim
        self.rows: list[np.ndarray] = []  # each normalised: pivot entry 1
        self.pivots: list[int] = []

    @property
    def rank(self) -> int:
        return len(self.rows)

    def reduce(self, row: np.ndarray) -> np.ndarray:
        r = np.array(row, dtype=np.int64) % self.prime
        for piv, base in zip(self.pivots, self.rows):
            if r[piv]:
                r = (r - r[piv] * base) % self.prime
        return r

    def would_raise(self, row) -> bool:
        return bool(self.reduce(row).any())

    def add(self, row) -> bool:
        r = self.reduce(row)
        nz = np.flatnonzero(r)
        if nz.size == 0:
            return False
        piv = int(nz[0])
        r = (r * pow(int(r[piv]), -1, self.prime)) % self.prime
        self.rows.append(r)
        self.pivots.append(piv)
        return True

    def copy(self) -> "Echelon":
        e = Echelon(self.dim, self.prime)
        e.rows, e.pivots = list(self.rows), list(self.pivots)
        return e


def rank_mod_p(matrix: np.ndarray, prime: int) -> int:
    """Rank of an integer matrix mod p by vectorised Gaussian elimination (exact; entries < p keep int64 exact)."""
    a = np.array(matrix, dtype=np.int64) % prime
    rank = 0
    for col in range(a.shape[1]):
        nz = np.flatnonzero(a[rank:, col])
        if nz.size == 0:
            continue
        piv = rank + int(nz[0])
        a[[rank, piv]] = a[[piv, rank]]
        a[rank] = a[rank] * pow(int(a[rank, col]), -1, prime) % prime
        others = np.flatnonzero(a[:, col])
        others = others[others != rank]
        if others.size:
            a[others] = (a[others] - (a[others, col][:, None] * a[rank][None, :]) % prime) % prime
        rank += 1
        if rank == a.shape[0]:
            break
    return rank
