"""The per-pair contraction w[p, c] = sum_ν s[p, ν] z[j_p, ν, c] of the interaction layer, two ways.

``per_pair``: gather z for every pair and reduce the product: P x n_radial x channels temporaries. Force training
differentiates it twice, and on a CPU the dozen or so passes over those temporaries were a third of the step.

``grouped``: the pairs sharing a neighbour j form the rows of one small matrix S_j [slots, n_radial], zero-padded
to the largest group, and w = S_j @ z[j] is one batched matrix product (torch.bmm), with no pair-sized
temporary wider than the weights themselves. Its derivatives are bmm's and index copies. It is the same sum in
another order (values agree to rounding), used on CPUs when padding wastes at most ``MAX_PADDING`` x the pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["MAX_PADDING", "PairGroups", "pair_groups", "per_pair", "grouped", "contract"]

MAX_PADDING = 3.0  # padded slots / pairs above which the grouped form falls back to per_pair


@dataclass(frozen=True)
class PairGroups:
    """Where each pair sits in the padded layout: row j_p, slot = its rank among the pairs of j_p."""

    flat: torch.Tensor  # [P] int64: j_p * width + slot_p
    n_atoms: int
    width: int  # slots per row: the largest number of pairs sharing one neighbour


def pair_groups(pair_j: torch.Tensor, n_atoms: int, max_padding: float | None = None) -> PairGroups | None:
    """The padded layout of the pairs grouped by neighbour, or None when it would exceed ``max_padding`` x P slots
    (default ``MAX_PADDING``)."""
    max_padding = MAX_PADDING if max_padding is None else max_padding
    n_pairs = pair_j.shape[0]
    if n_pairs == 0:
        return None
    j = pair_j.to(torch.int64)
    counts = torch.bincount(j, minlength=n_atoms)
    width = int(counts.max())
    if n_atoms * width > max_padding * n_pairs:
        return None
    order = torch.argsort(j, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    j_sorted = j[order]
    slot = torch.empty_like(order)
    slot[order] = torch.arange(n_pairs, device=j.device) - starts[j_sorted]
    return PairGroups(flat=j * width + slot, n_atoms=n_atoms, width=width)


def per_pair(s: torch.Tensor, z: torch.Tensor, pair_j: torch.Tensor) -> torch.Tensor:
    """w [P, C] from s [P, R] and z [N, R, C]: a gather and an elementwise product reduced over R.

    Not einsum: einsum runs this as P tiny [1, R] x [R, C] matrix products, 1.8x slower in the force-training
    double backward."""
    return (s.unsqueeze(2) * z.index_select(0, pair_j)).sum(1)


def grouped(s: torch.Tensor, z: torch.Tensor, groups: PairGroups) -> torch.Tensor:
    """w [P, C] from s [P, R] and z [N, R, C] as one bmm over the neighbours' padded groups."""
    n_rad, n_out = z.shape[1], z.shape[2]
    padded = s.new_zeros((groups.n_atoms * groups.width, n_rad)).index_copy(0, groups.flat, s)
    out = torch.bmm(padded.reshape(groups.n_atoms, groups.width, n_rad), z)
    return out.reshape(groups.n_atoms * groups.width, n_out).index_select(0, groups.flat)


def contract(s: torch.Tensor, z: torch.Tensor, pair_j: torch.Tensor) -> torch.Tensor:
    """w [P, C] = sum_ν s[p, ν] z[j_p, ν, c], in whichever form is faster here (see the module docstring).

    Grouped on CPU tensors outside torch.compile (its layout depends on the data); per pair elsewhere."""
    if s.device.type == "cpu" and not torch.compiler.is_compiling():
        groups = pair_groups(pair_j, z.shape[0])
        if groups is not None:
            return grouped(s, z, groups)
    return per_pair(s, z, pair_j)
