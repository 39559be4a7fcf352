"""Enumeration of the B functions: label tuples with even Σl (and odd Σl for SO(3)) and every sequential coupling
path."""

from __future__ import annotations

import itertools
from .request import AceFunction, AceRequestError, Label, MAX_FUNCTIONS, check_request


def coupling_paths(ls: tuple[int, ...]) -> list[tuple[int, ...]]:
    """All sequential coupling paths L_2..L_{ν−1} that couple orders ls to a scalar (see module docstring)."""
    nu = len(ls)
    if nu == 1:
        return [()] if ls[0] == 0 else []
    if nu == 2:
        return [()] if ls[0] == ls[1] else []
    out: list[tuple[int, ...]] = []
    suffix = [sum(ls[k:]) for k in range(nu + 1)]

    def rec(k: int, prev: int, acc: tuple[int, ...]):
        # choose L_k (1-based k = 2..ν−1) coupling prev (L_{k−1}) with l_k = ls[k−1]
        if k == nu:
            if prev == ls[-1]:
                out.append(acc)
            return
        lk = ls[k - 1]
        for L in range(abs(prev - lk), prev + lk + 1):
            if L <= suffix[k]:  # the remaining orders must be able to couple L back to 0
                rec(k + 1, L, acc + (L,))

    rec(2, ls[0], ())
    return out


def single_particle_labels(nmax: int, lmax: int, species: int) -> list[Label]:
    return [(z, n, l) for z in range(species) for n in range(1, nmax + 1) for l in range(lmax + 1)]


def block_layout(nmax: int, lmax: int, species: int) -> tuple[list[Label], dict[Label, int], int]:
    """Blocks (channel, l) channel-major (the Basis coordinate order), each block's first coordinate, and the total."""
    blocks = [(c, l) for c in range(species * nmax) for l in range(lmax + 1)]
    offsets, off = {}, 0
    for b in blocks:
        offsets[b] = off
        off += 2 * b[1] + 1
    return blocks, offsets, off


def enumerate_ace(nu: int, nmax: int, lmax: int, species: int = 1, group: str = "o3") -> list[AceFunction]:
    """The full ACE basis for these parameters, in ACE order (AceFunction.sort_key); with group "so3" the label
    tuples of odd Σ l too (pseudoscalars: couplings of either parity reach 0, B is then purely imaginary)."""
    check_request(nu, nmax, lmax, species, group)
    singles = single_particle_labels(nmax, lmax, species)
    out = []
    for order in range(1, nu + 1):
        for tup in itertools.combinations_with_replacement(singles, order):
            ls = tuple(l for _, _, l in tup)
            if sum(ls) % 2 and group == "o3":
                continue
            for path in coupling_paths(ls):
                out.append(AceFunction(tuple(tup), path))
                if len(out) > MAX_FUNCTIONS:
                    raise AceRequestError(
                        f"request too large: more than {MAX_FUNCTIONS:,} B functions; lower nu, nmax, lmax or species"
                    )
    out.sort(key=AceFunction.sort_key)
    return out
