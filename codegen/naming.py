"""Names shared by the CUDA code generator and the runtime that launches its kernels (no SymPy, no jinja2)."""

from __future__ import annotations

import re
from cartinv.errors import ArgumentError

KERNELS = ("forward", "invariants_backward", "pairs_backward")
SCALAR_TYPES = {"f32": "float", "f64": "double"}


def c_identifier(name: str) -> str:
    """A valid C/C++ identifier from a Basis or file name (other characters become '_')."""
    ident = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if not ident or ident[0].isdigit():
        ident = "basis_" + ident
    return ident


def kernel_symbol(name: str, kernel: str, suffix: str) -> str:
    """extern "C" symbol of a kernel in <name>.cu, e.g. lmax3_deg4_forward_f32."""
    if kernel not in KERNELS:
        raise ArgumentError(f"unknown kernel {kernel!r}; expected one of {KERNELS}")
    if suffix not in SCALAR_TYPES:
        raise ArgumentError(f"unknown dtype suffix {suffix!r}; expected one of {tuple(SCALAR_TYPES)}")
    return f"{c_identifier(name)}_{kernel}_{suffix}"
