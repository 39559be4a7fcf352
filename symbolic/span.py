"""Proof that the contraction graphs span every invariant of each enumerated multidegree.

For a multidegree (how many factors of each block), every full contraction of those factors is an invariant, so
the rank of their values is at most the exact dimension of the invariant space (symbolic/molien.py). The rank
of the value matrix mod p at random integer points is at most the rank over the rationals. Equality of the
modular rank with the Molien dimension therefore proves that the graphs span the whole space; a smaller rank
is retried at more points with the second prime before it is reported, because it would mean the search
misses invariants (a defect, never a property of the input).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cartinv.errors import ArgumentError

from . import levi_civita, molien
from .graphs import Label, graphs_for_labels, sample_graphs
from .modular import PRIMES, Echelon, ModularPoints, rank_mod_p

SEED = 20261203
EXHAUSTIVE_MAX_DEGREE = 6  # above this, graphs are sampled (listing every multigraph takes minutes at degree 8)
SAMPLES = 48
MAX_SAMPLES = 3072  # sampled rounds: 48, 192, 768, 3072 graphs


class SpanError(RuntimeError):
    """The contraction graphs of a multidegree span less than the Molien dimension."""


@dataclass(frozen=True)
class SpanCheck:
    """The record a Basis file keeps: how many multidegrees were checked, up to which degree, and the totals."""

    group: str
    max_degree: int
    multidegrees: int
    graphs: int
    dimension: int
    rank: int

    def to_json(self) -> dict:
        return {"group": self.group, "max_degree": self.max_degree, "multidegrees": self.multidegrees,
                "graphs": self.graphs, "dimension": self.dimension, "rank": self.rank}


def graphs_of(labels: tuple[Label, ...], samples: int = SAMPLES, group: str = "o3") -> tuple:
    """Every graph with these labels up to EXHAUSTIVE_MAX_DEGREE vertices, else `samples` distinct random ones
    (any subset that reaches the dimension is a proof; a sampled shortfall is retried with more samples). With an
    odd total order and group "so3", the graphs are the pseudoscalar ones (one Levi-Civita vertex;
    symbolic/levi_civita.py); with "o3" there are none."""
    if levi_civita.parity(labels):
        if group == "o3":
            return ()
        if len(labels) <= EXHAUSTIVE_MAX_DEGREE:
            return levi_civita.pseudo_graphs(labels, connected=False)
        return levi_civita.sample_pseudo_graphs(labels, samples, SEED, connected=False)
    if len(labels) <= EXHAUSTIVE_MAX_DEGREE:
        return graphs_for_labels(labels, connected=False)
    return sample_graphs(labels, samples, SEED, connected=False)


def multidegree_rank(blocks: tuple[Label, ...], labels: tuple[Label, ...], dimension: int,
                     group: str = "o3") -> tuple[int, int]:
    """(number of graphs, modular rank of their values) for one label multiset, proving rank == dimension
    whenever the returned rank equals it (more points, the second prime and, for sampled degrees, rounds of
    four times more samples up to MAX_SAMPLES are tried before a smaller rank is returned)."""
    count, rank = _rank(blocks, labels, dimension, graphs_of(labels, group=group))
    samples = SAMPLES
    while rank < dimension and len(labels) > EXHAUSTIVE_MAX_DEGREE and samples < MAX_SAMPLES:
        samples *= 4
        count, rank = _rank(blocks, labels, dimension, graphs_of(labels, samples, group))
    return count, rank


def spanning_graphs(blocks: tuple[Label, ...], labels: tuple[Label, ...], dimension: int) -> tuple[tuple, bool]:
    """`dimension` graphs with these labels whose values span all the invariants, and whether that is proven:
    random samples first (SAMPLES, then four times more up to MAX_SAMPLES; a graph is kept when it raises the
    rank), the full list up to EXHAUSTIVE_MAX_DEGREE vertices when the samples fall short (a sampled shortfall
    above it is returned unproven)."""
    pts = ModularPoints(tuple(blocks), PRIMES[0], dimension + 2, SEED)
    echelon, kept, tried = Echelon(dimension + 2, PRIMES[0]), [], set()

    def take(graphs) -> bool:
        for g in graphs:
            if g in tried:
                continue
            tried.add(g)
            if echelon.add(pts.values(g).astype(np.int64) % PRIMES[0]):
                kept.append(g)
                if echelon.rank == dimension:
                    return True
        return False

    samples = SAMPLES
    while True:
        graphs = sample_graphs(labels, samples, SEED, connected=False)
        if take(graphs):
            return tuple(kept), True
        if samples >= MAX_SAMPLES or len(graphs) < samples:  # fewer distinct graphs than asked: all were drawn
            break
        samples *= 4
    if len(labels) <= EXHAUSTIVE_MAX_DEGREE and take(graphs_for_labels(labels, connected=False)):
        return tuple(kept), True
    return tuple(kept), False


def _rank(blocks, labels, dimension: int, graphs) -> tuple[int, int]:
    if not graphs or dimension == 0:
        return len(graphs), 0
    rank = 0
    for prime, extra in ((PRIMES[0], 2), (PRIMES[1], dimension + 8)):
        pts = ModularPoints(tuple(blocks), prime, dimension + extra, SEED)
        values = np.stack([pts.values(g) for g in graphs])
        rank = max(rank, rank_mod_p(values, prime))
        if rank == dimension:
            break
    return len(graphs), rank


def multidegree(blocks: tuple[Label, ...], labels: tuple[Label, ...]) -> tuple[int, ...]:
    """How many of `labels` are each of the (sorted) `blocks`: the argument molien.invariant_dimension takes."""
    return tuple(labels.count(b) for b in blocks)


def check_span(blocks: tuple[Label, ...], label_multisets, group: str = "o3") -> SpanCheck:
    """Check every given label multiset (tuples of blocks); raise SpanError naming the first that fails.

    O(3): Kronecker contractions of multisets of even total order. SO(3): the same, and Levi-Civita
    (pseudoscalar) contractions of the multisets of odd total order, against the SO(3) dimension.
    """
    if group not in molien.GROUPS:
        raise ArgumentError(f"group must be one of {molien.GROUPS}, got {group!r}")
    blocks = tuple(sorted(blocks))
    n_md = n_graphs = total_dim = total_rank = top = 0
    for labels in sorted(set(tuple(sorted(ms)) for ms in label_multisets), key=lambda ms: (len(ms), ms)):
        md = multidegree(blocks, labels)
        dim = molien.invariant_dimension(tuple(l for _, l in blocks), md, group)
        count, rank = multidegree_rank(blocks, labels, dim, group)
        if rank != dim:
            sampled = len(labels) > EXHAUSTIVE_MAX_DEGREE
            raise SpanError(
                f"{'sampled ' if sampled else ''}contraction graphs of multidegree "
                f"{dict((f'{c}:{l}', n) for (c, l), n in zip(blocks, md) if n)} span {rank} of the {dim} invariants "
                f"(Molien dimension) with {count} graphs"
                + ("" if sampled else ": the candidate search is incomplete"))
        n_md += 1
        n_graphs += count
        total_dim += dim
        total_rank += rank
        top = max(top, len(labels))
    return SpanCheck(group, top, n_md, n_graphs, total_dim, total_rank)
