"""cartinv's hand-written, basis-independent C++ / CUDA sources in runtime/kernels/csrc, and how they join generated files.

A generated <name>.h includes ``cartinv_core.h`` (qualifiers, square root) and, inside its namespace,
``cartinv_atom.inc`` (per-pair and per-atom maths); a generated <name>.cu includes ``cartinv_kernels.inc`` (the
CUDA kernel bodies). Compilers find them with ``-I`` ``csrc_dir()``; NVRTC gets one pasted translation unit
(``inline_includes``); ``cartinv export`` copies them next to the generated files.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

HEADERS = ("cartinv_core.h", "cartinv_atom.inc", "cartinv_kernels.inc")
FOR_TARGET = {"c": ("cartinv_core.h", "cartinv_atom.inc"), "cuda": HEADERS}
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')


def csrc_dir() -> Path:
    """The folder holding the core sources (an include path for g++ and nvcc)."""
    return Path(str(resources.files("cartinv.runtime.kernels").joinpath("csrc")))


SOURCES = ("fused_cpu.cpp", "torch_ops.cpp")  # the fused CPU core; the op family's C++ kernels and autograd


def read(name: str) -> str:
    """The text of one core source (one of HEADERS or SOURCES)."""
    if name not in HEADERS and name not in SOURCES:
        raise KeyError(name)
    return resources.files("cartinv.runtime.kernels").joinpath("csrc", name).read_text()


def texts(target: str) -> dict[str, str]:
    """{file name: text} of the core headers a target's generated files include ("c" or "cuda")."""
    return {name: read(name) for name in FOR_TARGET[target]}


def inline_includes(text: str, files: dict[str, str], depth: int = 0) -> str:
    """`text` with every ``#include "X"`` line whose X is a key of `files` replaced by that file's text, itself
    inlined the same way (NVRTC compiles one string, with no include path). Other includes stay as they are."""
    if depth > 4:
        raise ValueError("includes nested more than 4 deep")
    out = []
    for line in text.splitlines(keepends=True):
        match = _INCLUDE.match(line)
        if match and match.group(1) in files:
            body = inline_includes(files[match.group(1)], files, depth + 1)
            out.append(body if body.endswith("\n") else body + "\n")
        else:
            out.append(line)
    return "".join(out)
