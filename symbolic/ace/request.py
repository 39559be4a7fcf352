"""Limits of an ACE request, its error, and one B function's labels (AceFunction)."""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np

from ..molien import GROUPS
from ..schema import ACE_CONVENTION, ace_notation
from ..select import RequestError


SEED = 20250401
MAX_NU = 6
MAX_LMAX = 8
MAX_NMAX = 8
MAX_SPECIES = 4
MAX_CHANNELS = 16
MAX_FUNCTIONS = 60000
LINEAR_MARGIN = 8
CHECK_POINTS = 8

CONVENTION = ACE_CONVENTION


class AceRequestError(RequestError):
    """An impossible or too large ACE request (a ValueError); the one-line message says why."""


Label = tuple[int, int, int]  # (z, n, l), n starting at 1


@dataclass(frozen=True)
class AceFunction:
    """One ACE B function: sorted single-particle labels (z, n, l) and the intermediate couplings L_2..L_{ν−1}."""

    nl: tuple[Label, ...]
    couplings: tuple[int, ...]

    @property
    def nu(self) -> int:
        return len(self.nl)

    @property
    def ls(self) -> tuple[int, ...]:
        return tuple(l for _, _, l in self.nl)

    @property
    def chain(self) -> tuple[int, ...]:
        """L_1 .. L_ν: l_1, the couplings, then 0 (for ν = 1 just (0,))."""
        if self.nu == 1:
            return (0,)
        return (self.ls[0],) + self.couplings + (0,)

    @property
    def pattern(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """What the coupling coefficients depend on: the orders and the couplings."""
        return self.ls, self.couplings

    @property
    def odd(self) -> bool:
        """Odd Σ l: a pseudoscalar (SO(3) invariant that changes sign under reflections; B is i times a real one)."""
        return sum(self.ls) % 2 == 1

    @property
    def ace_degree(self) -> int:
        """Σ (n + l): ACE's usual degree."""
        return sum(n + l for _, n, l in self.nl)

    def sort_key(self):
        return (self.nu, self.ace_degree, self.nl, self.couplings)

    def blocks(self, nmax: int) -> tuple[tuple[int, int], ...]:
        """cartinv block (channel, l) of each factor, channel = z·n_max + n − 1."""
        return tuple((z * nmax + n - 1, l) for z, n, l in self.nl)

    def to_json(self) -> dict:
        return {"nu": self.nu, "nl": [list(v) for v in self.nl], "couplings": list(self.couplings)}

    @staticmethod
    def from_json(entry: dict) -> "AceFunction":
        nl = tuple(tuple(int(x) for x in v) for v in entry["nl"])
        return AceFunction(nl, tuple(int(x) for x in entry["couplings"]))

    def label(self) -> str:
        parts = " ".join(f"({z},{n},{l})" for z, n, l in self.nl)
        return f"nu={self.nu} [{parts}] L={list(self.couplings)}"

    def notation(self) -> str:
        """Readable one-line description (the Basis entry's index_notation): factors A(z,n,l) and couplings."""
        return ace_notation(self.nl, self.couplings)


# ----------------------------------------------------------------------------------------------- request checks
def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def check_request(nu, nmax, lmax, species, group: str = "o3") -> None:
    """Raise AceRequestError (one line) for bad or too large parameters."""
    for name, value in (("nu", nu), ("nmax", nmax), ("lmax", lmax), ("species", species)):
        if not _is_int(value):
            raise AceRequestError(f"{name} must be an integer, got {value!r}")
    if group not in GROUPS:
        raise AceRequestError(f"group must be one of {list(GROUPS)}, got {group!r}")
    if nu < 1:
        raise AceRequestError(f"nu (correlation order) must be at least 1, got {nu}")
    if nmax < 1:
        raise AceRequestError(f"nmax (radial functions per species) must be at least 1, got {nmax}")
    if lmax < 0:
        raise AceRequestError(f"lmax must be non-negative, got {lmax}")
    if species < 1:
        raise AceRequestError(f"species must be at least 1, got {species}")
    if nu > MAX_NU:
        raise AceRequestError(f"nu = {nu} exceeds the supported maximum {MAX_NU}")
    if lmax > MAX_LMAX:
        raise AceRequestError(f"lmax = {lmax} exceeds the supported maximum {MAX_LMAX}")
    if nmax > MAX_NMAX:
        raise AceRequestError(f"nmax = {nmax} exceeds the supported maximum {MAX_NMAX}")
    if species > MAX_SPECIES:
        raise AceRequestError(f"species = {species} exceeds the supported maximum {MAX_SPECIES}")
    if species * nmax > MAX_CHANNELS:
        raise AceRequestError(
            f"species * nmax = {species * nmax} channels exceeds the supported maximum {MAX_CHANNELS}; "
            f"lower nmax or the number of species"
        )
    singles = species * nmax * (lmax + 1)
    tuples = sum(comb(singles + k - 1, k) for k in range(1, nu + 1))
    if tuples > 4 * MAX_FUNCTIONS:
        raise AceRequestError(
            f"request too large: about {tuples:,} label tuples up to nu = {nu} over {singles} single-particle "
            f"functions (limit {4 * MAX_FUNCTIONS:,}); lower nu, nmax, lmax or species"
        )
