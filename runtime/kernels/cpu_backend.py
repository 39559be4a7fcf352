"""Fused CPU backend: runtime/kernels/csrc/fused_cpu.cpp compiled with a Basis's generated header, as torch ops.

One pass over atoms per call (threads over atoms, SIMD over groups), forward, backward and double backward, float32
and float64. Pieces:

- ``available()``: whether a C++ compiler is found (``$CXX``, else g++, else c++), and why not;
- ``build_library(folder, name)``: the shared library of one Basis, compiled on first use and kept in the binary
  cache (``$CARTINV_CACHE/cpu``, keyed by sha256 of the sources, compiler, flags and CPU), loaded with ctypes;
  a compile prints one line to stderr first (it takes seconds to a minute);
- ``FusedLibrary``: the typed ctypes entry points, checking that the library belongs to the expected Basis; its
  outputs come from ``BufferPool``s, which reuse memory once nothing holds it (``release_buffers()`` drops it);
- ``fused_ops``: the Basis's one ``torch.library`` op family (runtime/kernels/ops.py, ``cartinv::<name>_<hash>_{forward,
  infer, backward, double_backward}``) with these kernels registered for CPU tensors (in C++ with their autograd by
  runtime/kernels/torch_glue.py, else through Python): differentiable twice through it (gradcheck, gradgradcheck,
  torch.compile, torch.export, opcheck);
- ``FusedInvariants``: an ``nn.Module`` with ``forward(r, centers, w, n_atoms) -> I``.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

import torch

from cartinv.codegen.naming import c_identifier
from cartinv.errors import ArgumentError, CartinvError

from . import core_sources
from .generated_files import read_checked, read_manifest
from .kernel_cache import BinaryCache, cache_root

CACHE_FORMAT = 1  # bump when the build recipe changes meaning
# -fno-math-errno: sqrt need not set errno (nothing reads it), so it vectorises; IEEE results are unchanged
CXX_FLAGS = ("-O3", "-fno-dse", "-ffp-contract=fast", "-fno-math-errno", "-march=native", "-std=c++17", "-shared",
             "-fPIC", "-pthread", "-Wno-psabi")
COMPILE_TIMEOUT_S = 900
ERRORS = {-1: "a centre index is outside 0..n_atoms-1", -2: "bad sizes (negative counts or no groups)",
          -3: "a pair vector has zero length, or a squared length that is NaN, inf or overflows",
          -4: "a moment is NaN or inf (NaN or inf in w, or an overflow)"}
VALUE_ERRORS = (-1, -3, -4)  # codes about the data (as opposed to the call)
# how every kernel-status error begins ("fused CPU <kernel>: <why>"), here and in the C++ glue (given it at attach)
ERROR_PREFIX = "fused CPU "
SIZE_KEYS = ("CHANNELS", "N_HARMONICS", "N_COORDS", "N_INVARIANTS")  # reported by cartinv_fused_sizes


class CpuBackendError(CartinvError, RuntimeError):
    """The fused CPU backend cannot be built or run here: the message says why."""


class BadValues(CpuBackendError):
    """The kernels found data they cannot evaluate (see ERRORS); cartinv.load's module names the element."""


# ----------------------------------------------------------------------------------------------------------
# Compiler and machine


def compiler() -> str | None:
    """The C++ compiler: ``$CXX`` when set, else g++ or c++ on the PATH; None when there is none."""
    env = os.environ.get("CXX", "").strip()
    if env:
        return shutil.which(env)
    return shutil.which("g++") or shutil.which("c++")


@lru_cache(maxsize=None)
def compiler_version(cxx: str) -> str:
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CpuBackendError(f"the C++ compiler {cxx} does not run ({exc})") from None
    if out.returncode != 0 or not out.stdout.strip():
        raise CpuBackendError(f"`{cxx} --version` failed")
    return out.stdout.splitlines()[0].strip()


def available() -> tuple[bool, str]:
    """(True, compiler description) when the fused CPU backend can be built, else (False, why)."""
    if sys.platform == "win32":
        return False, "the fused CPU backend is built with a POSIX C++ compiler; not supported on Windows"
    cxx = compiler()
    if cxx is None:
        return False, ("no C++ compiler found ($CXX, g++ or c++); install one (e.g. apt install g++) to build "
                       "the fused CPU kernels")
    try:
        return True, compiler_version(cxx)
    except CpuBackendError as exc:
        return False, str(exc)


@lru_cache(maxsize=1)
def cpu_identity() -> tuple[str, int]:
    """(description of this CPU for the cache key, SIMD lane width in bytes): -march=native code is specific to
    the instruction sets of the CPU it was built on."""
    flags: set[str] = set()
    model = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("flags", "Features") and not flags:
                flags = set(value.split())
            elif key in ("model name", "CPU part") and model == platform.machine():
                model = f"{platform.machine()} {value.strip()}"
    except OSError:
        pass
    lanes = 64 if "avx512f" in flags else 32 if "avx" in flags else 16
    return f"{model} [{' '.join(sorted(flags))}]", lanes


def core_source() -> str:
    """The hand-written kernel core (runtime/kernels/csrc/fused_cpu.cpp)."""
    return core_sources.read("fused_cpu.cpp")


def core_headers() -> dict[str, str]:
    """The hand-written headers the generated header includes (runtime/kernels/core_sources.py), by file name."""
    return core_sources.texts("c")


# ----------------------------------------------------------------------------------------------------------
# Building and loading


def _compile(cxx: str, header: bytes, name: str, flags: list[str]) -> bytes:
    with tempfile.TemporaryDirectory(prefix="cartinv-cpu-") as tmp:
        folder = Path(tmp)
        (folder / f"{name}.h").write_bytes(header)
        (folder / "fused_cpu.cpp").write_text(core_source())
        for fname, text in core_headers().items():  # beside the header: its quoted includes find them there
            (folder / fname).write_text(text)
        command = [cxx, *flags, "-include", str(folder / f"{name}.h"), str(folder / "fused_cpu.cpp"),
                   "-o", str(folder / "fused.so")]
        run_compiler(command, f"the fused CPU kernels of {name}")
        return (folder / "fused.so").read_bytes()


def run_compiler(command: list[str], what: str) -> None:
    """Run a compile command; CpuBackendError naming `what` and the first error line when it fails or times out."""
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise CpuBackendError(f"compiling {what} took over {COMPILE_TIMEOUT_S} s") from None
    if out.returncode != 0:
        first = next((line for line in out.stderr.splitlines() if "error" in line), out.stderr.strip()[:300])
        raise CpuBackendError(f"compiling {what} failed: {first}")


def build_library(folder, name: str, cache: BinaryCache | None = None, quiet: bool = False,
                  lane_bytes: int | None = None) -> Path:
    """Path of the compiled library of the Basis generated in `folder` under `name` (built when not cached).
    lane_bytes: SIMD width of the group lanes (default: this CPU's widest, 64 / 32 / 16)."""
    ok, why = available()
    if not ok:
        raise CpuBackendError(why)
    cxx = compiler()
    header = read_checked(Path(folder), name, f"{name}.h")
    cpu, native_lanes = cpu_identity()
    lane_bytes = native_lanes if lane_bytes is None else lane_bytes
    if lane_bytes not in (16, 32, 64):
        raise ArgumentError(f"lane_bytes must be 16, 32 or 64, got {lane_bytes!r}")
    flags = [*CXX_FLAGS, f"-DCARTINV_LANE_BYTES={lane_bytes}", f"-DCARTINV_BASIS_NS={c_identifier(name)}"]
    record = {"format": CACHE_FORMAT, "core": core_source(), "core_headers": core_headers(),
              "header": hashlib.sha256(header).hexdigest(),
              "compiler": compiler_version(cxx), "flags": flags, "cpu": cpu}
    key = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    cache = cache if cache is not None else BinaryCache(cache_root() / "cpu", error=CpuBackendError)

    def build() -> bytes:
        if not quiet:
            print(f"cartinv: compiling the fused CPU kernels of basis '{name}' (once per machine; seconds to a "
                  f"minute; cached in {cache.root})", file=sys.stderr, flush=True)
        return _compile(cxx, header, name, flags)

    return cache.get_or_build(key, ".so", build)


_Ptr = ctypes.c_void_p
_I64 = ctypes.c_int64
HUGE_PAGE = 1 << 21
MADV_HUGEPAGE = 14  # Linux


@lru_cache(maxsize=1)
def _madvise():
    """libc's madvise on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def fresh(shape, like: torch.Tensor) -> torch.Tensor:
    """torch.empty for an output the kernels write in full; buffers of several MB are marked for transparent huge
    pages before first touch, so the kernel maps them with 512x fewer page faults (measured here on a 41 MB buffer:
    29 ms of faults and zero-filling drop to 8 ms; a hint only, ignored where unsupported)."""
    out = torch.empty(shape, dtype=like.dtype, device=like.device)
    madvise = _madvise()
    nbytes = out.numel() * out.element_size()
    if madvise is not None and nbytes >= 2 * HUGE_PAGE:
        start = (out.data_ptr() + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1)
        length = (out.data_ptr() + nbytes - start) & ~(HUGE_PAGE - 1)
        if length > 0:
            madvise(start, length, MADV_HUGEPAGE)
    return out


def _references(held: list, k: int) -> tuple[int, int]:
    """(Python references, StorageImpl references) of the storage held[k], as seen from here."""
    storage = held[k]
    return sys.getrefcount(storage), torch._C._storage_Use_Count(storage._cdata)


# what _references reports for a storage that only a list holds (measured, not assumed: the Python count seen
# from a frame depends on the interpreter version)
_FREE = _references([torch.empty(1).untyped_storage()], 0)


def _unshared(held: list, k: int) -> bool:
    """Whether only `held` holds the memory of held[k]: no tensor, view, shallow copy or other storage object on
    it (each holds a reference to the StorageImpl), and no other Python reference to the storage object."""
    return _references(held, k) == _FREE


class BufferPool:
    """Memory for outputs the kernels fill in full, reused once nothing else holds it.

    A fresh buffer over 32 MB is mapped and zero-filled by the kernel on every call: at 20,000 atoms float32 the
    saved moments (41 MB), the invariants (33 MB) and the w gradient (77 MB). Measured here: the forward 38 -> 31 ms
    on 1 thread, the backward 44 -> 32 ms on 2. The pool keeps the storages and hands out new tensors on them, so no
    autograd history carries over; a storage is handed out again only when the pool's reference is its last one
    (``_unshared``): memory still saved for a backward, kept by the caller, viewed or shallow-copied is never
    written. Holds at most ``keep`` storages, the newest: a new one displaces an idle one, else the oldest."""

    def __init__(self, keep: int = 2):
        self.keep = keep
        self._held: list = []  # untyped storages
        self._lock = threading.Lock()

    def take(self, shape, like: torch.Tensor) -> torch.Tensor:
        """An uninitialised contiguous tensor of `shape` with `like`'s dtype and device (never pooled in inference
        mode: its tensors cannot be saved for a backward later)."""
        shape = tuple(int(s) for s in shape)
        if torch.is_inference_mode_enabled():
            return fresh(shape, like)
        nbytes = math.prod(shape) * like.element_size()
        with self._lock:
            for k in range(len(self._held)):  # no local here names a held storage: _unshared counts references
                if self._fits(k, nbytes, like.device) and _unshared(self._held, k):
                    return self._tensor(k, shape, like)
            out = fresh(shape, like)
            if nbytes > 0:
                if len(self._held) >= self.keep:  # make room: an idle storage, else the oldest (its holder keeps it)
                    idle = [k for k in range(len(self._held)) if _unshared(self._held, k)]
                    del self._held[idle[0] if idle else 0]
                self._held.append(out.untyped_storage())
            return out

    def _fits(self, k: int, nbytes: int, device) -> bool:
        return self._held[k].nbytes() == nbytes and self._held[k].device == device

    def _tensor(self, k: int, shape, like: torch.Tensor) -> torch.Tensor:
        return torch.empty(0, dtype=like.dtype, device=like.device).set_(self._held[k], 0, shape)

    def clear(self) -> None:
        with self._lock:
            self._held.clear()


class FusedLibrary:
    """The C entry points of one compiled Basis library, on torch tensors."""

    def __init__(self, path: Path, basis_hash: str):
        self.path = Path(path)
        lib = ctypes.CDLL(str(self.path))  # ctypes releases the GIL during each call
        lib.cartinv_fused_basis_hash.restype = ctypes.c_char_p
        found = lib.cartinv_fused_basis_hash().decode()
        if found != basis_hash:
            raise CpuBackendError(f"{self.path} was built for Basis {found[:12]}, not {basis_hash[:12]}")
        sizes = (ctypes.c_int * 6)()
        lib.cartinv_fused_sizes(sizes)
        self.channels, self.n_harmonics, self.n_coords, self.n_invariants = (int(v) for v in sizes[:4])
        self.lanes = {torch.float32: int(sizes[4]), torch.float64: int(sizes[5])}
        self._fn = {}
        for suffix, dtype in (("f32", torch.float32), ("f64", torch.float64)):
            for kernel, n_ptrs in (("forward", 5), ("backward", 7), ("double_backward", 9)):
                fn = getattr(lib, f"cartinv_fused_{kernel}_{suffix}")
                # (r, w, centers), n_pairs, n_atoms, groups, the remaining pointers, n_threads
                fn.argtypes = [_Ptr, _Ptr, _Ptr, _I64, _I64, _I64] + [_Ptr] * (n_ptrs - 3) + [ctypes.c_int]
                fn.restype = ctypes.c_int
                self._fn[kernel, dtype] = fn
        self._lib = lib
        # one pool per output, so two outputs of one call never share memory
        self.pools = {role: BufferPool() for role in ("invariants", "moments", "grad_r", "grad_w")}

    def entry(self, kernel: str, dtype: torch.dtype):
        """The C entry point of `kernel` ("forward", "backward", "double_backward") for `dtype`."""
        return self._fn[kernel, dtype]

    def _out(self, role: str, shape, like: torch.Tensor) -> torch.Tensor:
        return self.pools[role].take(shape, like)

    def moments_width(self, groups: int, dtype: torch.dtype) -> int:
        """Scalars per atom in the private moments layout [blocks][N_COORDS][lanes]."""
        lanes = self.lanes[dtype]
        return -(-groups // lanes) * self.n_coords * lanes

    def _call(self, kernel: str, dtype, r, w, centers, n_atoms: int, *tensors) -> None:
        ptrs = [t.data_ptr() if t is not None else None for t in tensors]
        status = self._fn[kernel, dtype](r.data_ptr(), w.data_ptr(), centers.data_ptr(), r.shape[0], n_atoms,
                                         w.shape[1], *ptrs, torch.get_num_threads())
        if status != 0:
            error = BadValues if status in VALUE_ERRORS else CpuBackendError
            raise error(f"{ERROR_PREFIX}{kernel}: {ERRORS.get(status, f'error {status}')}")

    def forward(self, r, w, centers, n_atoms: int):
        groups = w.shape[1]
        out = self._out("invariants", (n_atoms, groups, self.n_invariants), r)
        moments = self._out("moments", (n_atoms, self.moments_width(groups, r.dtype)), r)
        self._call("forward", r.dtype, r, w, centers, n_atoms, out, moments)
        return out, moments

    def infer(self, r, w, centers, n_atoms: int):
        """I alone: the moments are not written (what a call that needs no gradient runs)."""
        out = self._out("invariants", (n_atoms, w.shape[1], self.n_invariants), r)
        self._call("forward", r.dtype, r, w, centers, n_atoms, out, None)
        return out

    def backward(self, r, w, centers, n_atoms: int, moments, grad_out):
        grad_r, grad_w = self._out("grad_r", r.shape, r), self._out("grad_w", w.shape, w)
        self._call("backward", r.dtype, r, w, centers, n_atoms, moments, grad_out, grad_r, grad_w)
        return grad_r, grad_w

    def double_backward(self, r, w, centers, n_atoms: int, grad_out, grad_grad_r, grad_grad_w):
        grad_r, grad_w = self._out("grad_r", r.shape, r), self._out("grad_w", w.shape, w)
        grad_grad_out = self._out("invariants", grad_out.shape, grad_out)
        self._call("double_backward", r.dtype, r, w, centers, n_atoms, grad_out, grad_grad_r, grad_grad_w,
                   grad_r, grad_w, grad_grad_out)
        return grad_r, grad_w, grad_grad_out


# ----------------------------------------------------------------------------------------------------------
# The Basis's op family on these kernels


_LIBRARIES: dict[tuple[str, str], FusedLibrary] = {}


def fused_library(folder, name: str, basis_hash: str, quiet: bool = False) -> FusedLibrary:
    """The fused library of a Basis (built or taken from the cache, and loaded, once per process)."""
    key = (name, basis_hash)
    if key not in _LIBRARIES:
        _LIBRARIES[key] = FusedLibrary(build_library(folder, name, quiet=quiet), basis_hash)
    return _LIBRARIES[key]


def release_buffers() -> None:
    """Drop the output memory every loaded library keeps for reuse (what tensors still hold stays alive)."""
    from . import torch_glue

    for library in list(_LIBRARIES.values()):
        for pool in library.pools.values():
            pool.clear()
    torch_glue.release_buffers()


def fused_ops(folder, name: str, basis_hash: str, quiet: bool = False):
    """The op family of a Basis (runtime/kernels/ops.py) with these kernels serving CPU tensors."""
    from . import ops

    return ops.family(folder, name, basis_hash, fused_library(folder, name, basis_hash, quiet=quiet))


class FusedInvariants(torch.nn.Module):
    """``forward(r, centers, w, n_atoms) -> I`` on the fused CPU kernels of one Basis (shapes and dtypes validated
    by the caller, see cartinv.runtime.kernels.checks; the values are checked by the kernels, raising BadValues). Holds only the Basis's folder, name and hash (the loaded library lives
    in a per-process registry), so models that contain it deep-copy and pickle."""

    def __init__(self, folder, name: str, basis_hash: str, quiet: bool = False):
        super().__init__()
        self.folder, self.name, self.basis_hash = str(folder), name, basis_hash
        library = fused_ops(folder, name, basis_hash, quiet=quiet).library  # built here, once
        record = read_manifest(folder, name)
        found = (library.channels, library.n_harmonics, library.n_coords, library.n_invariants)
        if record.basis_hash != basis_hash or found != tuple(record.size(k) for k in SIZE_KEYS):
            raise CpuBackendError(f"the fused library of {name} has sizes {found}, its manifest records "
                                  f"{tuple(record.size(k) for k in SIZE_KEYS)} for Basis {record.basis_hash[:12]}")
        self.channels = library.channels

    @property
    def ops(self):
        return fused_ops(self.folder, self.name, self.basis_hash)

    def forward(self, r, centers, w, n_atoms):
        try:
            return self.ops.evaluate(r, centers, w, n_atoms)
        except ValueError as exc:  # the C++ kernels' form of BadValues (runtime/kernels/csrc/torch_ops.cpp)
            if str(exc).startswith(ERROR_PREFIX):
                raise BadValues(str(exc)) from None
            raise
