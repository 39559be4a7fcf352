"""Names of blocks and coordinates (``T{l}`` / ``T{l}c{c}``, ``T{l}_{m+l}``): one source for every module.

Pure functions with no dependencies, so the Basis-file validator, the formulas, the graphs and the code
generators agree on every name without importing one another.
"""

from __future__ import annotations

Label = tuple[int, int]  # (channel, order)
EPS_LABEL: Label = (-1, 3)  # the Levi-Civita vertex of a pseudoscalar contraction (symbolic/levi_civita.py)
EPS_NAME = "eps"


def block_name(label: Label, channels: int = 1) -> str:
    """Name of block (channel c, order l): ``T{l}`` with one channel, else ``T{l}c{c}``; ``eps`` for the
    Levi-Civita vertex."""
    if tuple(label) == EPS_LABEL:
        return EPS_NAME
    c, l = label
    return f"T{l}" if channels == 1 else f"T{l}c{c}"


def coordinate_name(label: Label, m: int, channels: int = 1) -> str:
    """Name of coordinate c_{l,m} of a block: ``T{l}_{m+l}`` (one channel) or ``T{l}c{n}_{m+l}``."""
    return f"{block_name(label, channels)}_{m + label[1]}"


def coordinate_table(blocks, channels: int = 1) -> list[dict]:
    """The Basis file's ``coordinates``: channel-major, then l, then m = -l..l."""
    return [
        {"name": coordinate_name((c, l), m, channels), "channel": c, "l": l, "m": m}
        for c, l in sorted(blocks)
        for m in range(-l, l + 1)
    ]
