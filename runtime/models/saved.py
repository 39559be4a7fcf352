"""What every file cartinv saves carries: a format tag and version, the cartinv version, and dtype names.

A saved potential (runtime/models/potential.py) and an exported LAMMPS model (runtime/integrations/lammps.py) are only read back by
the cartinv version that wrote them (the invariant columns and module layout may change between versions); the
header check says which of these does not match, and what to do about it.
"""

from __future__ import annotations

import re

import torch
from cartinv.errors import ArgumentError, FileFormatError

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def dtype_name(dtype) -> str:
    """"float32" or "float64" for a torch dtype (or that name itself); ValueError otherwise."""
    if isinstance(dtype, str) and dtype in DTYPES:
        return dtype
    for name, d in DTYPES.items():
        if d == dtype:
            return name
    raise ArgumentError(f"dtype must be float32 or float64, got {dtype!r}")


def cartinv_version() -> str:
    import cartinv

    return cartinv.__version__


def header(fmt: str, version: int) -> dict:
    """The leading entries of a saved payload."""
    return {"format": fmt, "format_version": version, "cartinv_version": cartinv_version()}


def _shown(value) -> str:
    """A version as written when it looks like one, else a short escaped rendering (never a second line)."""
    if isinstance(value, str) and re.fullmatch(r"[0-9A-Za-z.+_-]{1,40}", value):
        return value
    return ascii(value)[:40]


def check_header(payload, source: str, fmt: str, version: int, foreign: str, written: str, remedy: str) -> None:
    """ValueError unless `payload` is a dict written by this cartinv in format `fmt`, version `version`.

    foreign: the message for a file of another kind; written: the verb of the version message ("saved",
    "exported"); remedy: what the user should do when the cartinv versions differ.
    """
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise FileFormatError(f"{source}: {foreign}")
    if type(payload.get("format_version")) is not int or payload["format_version"] != version:
        raise FileFormatError(f"{source}: file format version {ascii(payload.get('format_version'))[:40]} is not "
                         f"supported (this cartinv reads version {version})")
    current = cartinv_version()
    if payload.get("cartinv_version") != current:
        raise FileFormatError(f"{source}: {written} with cartinv {_shown(payload.get('cartinv_version'))}, this is "
                         f"cartinv {current}; {remedy}")
