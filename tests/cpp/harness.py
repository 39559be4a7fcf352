"""Test harness for the C/C++/CUDA targets (used by tests/test_c_targets.py and tests/test_cuda_backend.py).

- bases derived once per session, rendered into folders;
- compile helpers for the g++ header driver (check_header.cpp) and the CPU emulation of the CUDA kernels
  (emulate_kernels.cpp on cuda_emulation.h), with a skip that prints its reason when a compiler is missing;
- independent references: harmonics from stf.y_coordinates / Cartesian powers, invariants from each invariant's
  einsum on stf.to_cartesian blocks, derivatives by torch autograd through those Cartesian formulas;
- EmulatedLauncher: the launcher protocol of runtime/kernels/cuda_backend.py over the emulated kernels (CPU tensors).
"""

from __future__ import annotations

import ctypes
import functools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from cartinv.codegen.emit_c import c_identifier, render_c_targets
from cartinv.runtime.kernels.core_sources import csrc_dir
from cartinv.codegen.generate import manifest_of
from cartinv.codegen.manifest import file_name as manifest_file
from cartinv.symbolic import stf

CPP_DIR = Path(__file__).resolve().parent
CORE_DIR = csrc_dir()  # cartinv's hand-written C++/CUDA core files, included by the generated ones
GXX = shutil.which("g++")
NVCC = shutil.which("nvcc")
HEADER_COMMENT = "# cartinv test rendering of basis {name}\n# regenerate: pytest tests/test_c_targets.py\n"


def require(tool: str | None, what: str) -> str:
    if tool is None:
        reason = f"{what} is not installed: skipping the checks that compile with it"
        print(reason)
        pytest.skip(reason)
    return tool


@functools.lru_cache(maxsize=None)
def derived(orders: tuple[int, ...], degree: int, channels: int = 1):
    from cartinv.symbolic.select import BasisRequest, derive_basis

    return derive_basis(BasisRequest(orders=orders, degree=degree, channels=channels))


# Test bases: a tied l <= 3 basis (one channel), a two-channel basis, and one without order 0 (no constant harmonic).
BASES = {
    "tied": ((0, 1, 2, 3), 4, 1),
    "channels": ((0, 1, 2), 3, 2),
    "no_scalar": ((1, 2), 4, 1),
}


def basis_for(key: str):
    orders, degree, channels = BASES[key]
    return derived(orders, degree, channels)


@functools.lru_cache(maxsize=None)
def _rendered_texts(basis_json: str, torch_module: bool) -> tuple[tuple[str, str], ...]:
    from cartinv.codegen.generate import render_torch
    from cartinv.symbolic.basisfile import loads

    basis = loads(basis_json)
    comment = HEADER_COMMENT.format(name=basis.name)
    files = render_c_targets(basis, basis.name, comment)
    if torch_module:
        files[f"{basis.name}_torch.py"] = render_torch(basis, basis.name, comment.rstrip("\n"))
    files[f"{basis.name}.json"] = basis.to_json()
    files[manifest_file(basis.name)] = manifest_of(basis, basis.name, files).to_json()  # what backends read sizes from
    return tuple(sorted(files.items()))


def render(basis, folder: Path, torch_module: bool = False) -> dict[str, Path]:
    """Write the C targets of `basis` (and its torch module if asked), the Basis file and the manifest into
    `folder` (rendered once per session and Basis)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for fname, text in _rendered_texts(basis.to_json(), torch_module):
        path = folder / fname
        path.write_text(text)
        out[fname] = path
    return out


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return proc


def compile_driver(folder: Path, name: str) -> Path:
    gxx = require(GXX, "g++")
    exe = folder / f"check_{name}"
    run([
        gxx, "-std=c++14", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{folder}", f"-I{CORE_DIR}",
        f'-DCARTINV_HEADER="{name}.h"', f"-DCARTINV_NAMESPACE=cartinv::{c_identifier(name)}",
        str(CPP_DIR / "check_header.cpp"), "-o", str(exe),
    ])
    return exe


def run_driver(exe: Path, dtype: str, numbers: list) -> dict[str, np.ndarray]:
    text = " ".join(repr(float(x)) if not isinstance(x, (int, np.integer)) else str(int(x)) for x in numbers)
    proc = run([str(exe), dtype], input=text)
    sections: dict[str, np.ndarray] = {}
    tokens = proc.stdout.split()
    i = 0
    while i < len(tokens):
        name, count = tokens[i], int(tokens[i + 1])
        sections[name] = np.array([float(t) for t in tokens[i + 2: i + 2 + count]])
        i += 2 + count
    return sections


def compile_emulation(folder: Path, name: str) -> Path:
    gxx = require(GXX, "g++")
    lib = folder / f"emulate_{name}.so"
    run([
        gxx, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-Wall", "-Wextra", "-Werror",
        f"-I{folder}", f"-I{CORE_DIR}", f"-I{CPP_DIR}", f'-DCARTINV_KERNELS="{name}.cu"',
        f"-DCARTINV_NS={c_identifier(name)}",
        str(CPP_DIR / "emulate_kernels.cpp"), "-o", str(lib),
    ])
    return lib


class EmulatedLauncher:
    """Runs the generated CUDA kernels on CPU tensors through the emulation library (same protocol as CupyLauncher).

    Records every launch (symbol, grid, block, shared_mem) in `launches`.
    """

    def __init__(self, library: Path, name: str, max_threads: int = 1024):
        self.lib = ctypes.CDLL(str(library))
        self.prefix = c_identifier(name) + "_"
        self._max_threads = max_threads
        self.launches: list[tuple[str, tuple, tuple, int]] = []

    def check(self, tensor: torch.Tensor) -> None:
        if tensor.device.type != "cpu":
            raise AssertionError("the emulated kernels run on CPU tensors")

    def max_threads(self, symbol: str, device) -> int:
        return self._max_threads

    @staticmethod
    def _arg(a):
        if isinstance(a, torch.Tensor):
            assert a.is_contiguous(), "kernels take contiguous tensors"
            return ctypes.c_void_p(a.data_ptr())
        if isinstance(a, np.int64):
            return ctypes.c_longlong(int(a))
        if isinstance(a, np.int32):
            return ctypes.c_int(int(a))
        raise TypeError(f"kernel argument of unsupported type {type(a).__name__}")

    def launch(self, symbol, device, grid, block, shared_mem, args) -> None:
        assert symbol.startswith(self.prefix), symbol
        assert grid[2] == 1 and block[2] == 1
        assert all(g >= 1 for g in grid) and all(b >= 1 for b in block)
        self.launches.append((symbol, tuple(grid), tuple(block), int(shared_mem)))
        fn = getattr(self.lib, "emulate_" + symbol[len(self.prefix):])
        fn.restype = ctypes.c_int
        status = fn(
            ctypes.c_uint(grid[0]), ctypes.c_uint(grid[1]), ctypes.c_uint(block[0]), ctypes.c_uint(block[1]),
            ctypes.c_ulonglong(shared_mem), *[self._arg(a) for a in args],
        )
        if status:
            raise AssertionError(
                {1: "shared memory request exceeds the emulated capacity",
                 2: "a kernel wrote past its dynamic shared memory"}.get(status, f"status {status}")
                + f" ({symbol}, grid {grid}, block {block}, shared {shared_mem})"
            )


# ------------------------------------------------------------------------------------------------ references


def harmonic_offsets(orders) -> dict[int, int]:
    out, k = {}, 0
    for l in sorted(set(orders)):
        out[l] = k
        k += 2 * l + 1
    return out


def torch_harmonics(orders, u: torch.Tensor) -> torch.Tensor:
    """Y[..., N_HARMONICS] = orthonormal coordinates of u^{(x)l} (u not normalised here), Cartesian route."""
    parts = []
    for l in sorted(set(orders)):
        e = torch.tensor(stf.orthonormal_basis(l), dtype=u.dtype)
        power = torch.ones(u.shape[:-1] + (1,), dtype=u.dtype)
        for _ in range(l):
            power = (power[..., :, None] * u[..., None, :]).reshape(u.shape[:-1] + (-1,))
        parts.append(power @ e.T)
    return torch.cat(parts, dim=-1)


def torch_invariants(basis, T: torch.Tensor) -> torch.Tensor:
    """I[..., K] from moment rows T[..., N_COORDS] by each invariant's einsum on Cartesian blocks."""
    orders = sorted(set(basis.orders))
    offsets = harmonic_offsets(orders)
    n_h = sum(2 * l + 1 for l in orders)
    cart = {}
    for c in range(basis.channels):
        for l in orders:
            e = torch.tensor(stf.orthonormal_basis(l), dtype=T.dtype)
            block = T[..., c * n_h + offsets[l]: c * n_h + offsets[l] + 2 * l + 1]
            cart[(c, l)] = (block @ e).reshape(T.shape[:-1] + (3,) * l)
    values = []
    for inv in basis.invariants:
        ops = [cart[(c, l)] for c, l in zip(inv["channels"], inv["orders"])]
        subs = inv["einsum"].split("->")[0].split(",")
        values.append(torch.einsum(",".join("..." + s for s in subs) + "->...", *ops))
    return torch.stack(values, dim=-1)


def torch_pipeline(basis):
    """reference(r, centers, w3, n_atoms) -> I [n_atoms, G, K], differentiable (independent of generated code)."""
    orders = sorted(set(basis.orders))

    def reference(r, centers, w3, n_atoms):
        u = r / torch.linalg.vector_norm(r, dim=-1, keepdim=True)
        Y = torch_harmonics(orders, u)
        contrib = (w3[:, :, :, None] * Y[:, None, None, :]).reshape(w3.shape[0], w3.shape[1], -1)
        T = torch.zeros((n_atoms,) + contrib.shape[1:], dtype=r.dtype).index_add(0, centers.long(), contrib)
        return torch_invariants(basis, T)

    return reference


def random_system(rng, basis, n_atoms: int, n_pairs: int, groups: int, empty_atoms=(1,)):
    """Pair vectors (|r| in [0.8, 2.5]), weights [P, G, N] and shuffled centres (atoms in empty_atoms get none)."""
    direction = rng.normal(size=(n_pairs, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    r = direction * rng.uniform(0.8, 2.5, size=(n_pairs, 1))
    w = rng.normal(size=(n_pairs, groups, basis.channels))
    allowed = [i for i in range(n_atoms) if i not in set(empty_atoms)]
    centers = rng.choice(allowed, size=n_pairs)
    return r, w, centers


def assert_close(got, want, rtol: float, what: str) -> None:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    assert np.all(np.isfinite(got)), f"{what}: non-finite values"
    assert err <= rtol * scale, f"{what}: max error {err:.3e} > {rtol:.1e} x scale {scale:.3e}"
