"""CUDA backend: the generated <name>.cu kernels compiled at run time (CuPy + NVRTC) behind a torch module.

Pieces, each usable and testable on its own:

- ``available()``: whether this process can run the backend, and why not;
- ``KernelSource``: the generated header and kernels of one Basis, their constants, and the single NVRTC source
  (header inlined, so NVRTC needs no include path);
- ``cache_key`` / ``BinaryCache`` (over kernel_cache.BinaryCache): compiled binaries cached on disk under
  ``$CARTINV_CACHE`` (default ``~/.cache/cartinv``), keyed by sha256 of (source, NVRTC version, architecture,
  options), written atomically (temporary file + ``os.replace``) so concurrent processes never see half a file;
- ``centre_counts`` / ``build_csr``: centres checked and counted; pairs sorted by centre (stable) and CSR offsets;
  ``LayoutCache`` keeps the last one, so a step sorts its pairs once;
- launch configurations (pure functions of the sizes);
- ``CupyLauncher``: compiles, loads and launches the kernels on torch's current CUDA stream, passing torch
  tensors zero-copy through DLPack;
- ``CudaInvariants``: an ``nn.Module`` with ``forward(r, centers, w, n_atoms) -> I`` through the Basis's one op
  family (runtime/kernels/ops.py), where the kernels are attached for CUDA tensors: forward and first derivatives
  run the CUDA kernels; the double backward is the family's torch core on the GPU.

A launcher is anything with ``check(tensor)``, ``max_threads(symbol, device)`` and
``launch(symbol, device, grid, block, shared_mem, args)``, where args are torch tensors and numpy int32/int64
scalars in the kernel's parameter order; tests use this to run the same kernels through a CPU emulation.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from cartinv.codegen.naming import c_identifier, kernel_symbol
from cartinv.errors import ArgumentError, CartinvError

from . import core_sources, kernel_cache
from .generated_files import Manifest, read_checked, read_manifest
from .kernel_cache import cache_root

SHARED_MEMORY_LIMIT = 48 * 1024  # bytes of dynamic shared memory a block may use without opting in
DEFAULT_THREADS = 128
PAIR_LANES_MAX = 32  # lanes (threads) sharing one pair in the pair-gradient kernel: at most a warp
CACHE_FORMAT = 1  # bump when the cache layout or the compile options change meaning


class CudaBackendError(CartinvError, RuntimeError):
    """The CUDA backend cannot run (no CuPy, no GPU, NVRTC failure, bad inputs): the message says which."""


# ----------------------------------------------------------------------------------------------------------
# Availability


def _import_cupy():
    import cupy  # noqa: PLC0415 (optional dependency)

    return cupy


def _nvrtc():
    """CuPy's NVRTC wrapper (module path differs across CuPy versions)."""
    try:
        from cupy_backends.cuda.libs import nvrtc  # noqa: PLC0415
    except ImportError:
        from cupy.cuda import nvrtc  # noqa: PLC0415
    return nvrtc


def available() -> tuple[bool, str]:
    """(True, description) when CuPy, NVRTC and a CUDA device visible to torch are all usable; else (False, why)."""
    try:
        cupy = _import_cupy()
    except ImportError:
        return False, ("CuPy is not installed (pip install the cupy-cuda12x or cupy-cuda13x wheel matching your CUDA "
                       "driver; cartinv[cuda] gives cupy-cuda12x)")
    except Exception as exc:  # a broken CuPy install raises all sorts of errors at import
        return False, f"CuPy failed to import: {exc}"
    if not torch.cuda.is_available():
        return False, "torch sees no CUDA device (CPU-only torch build, no GPU, or no driver)"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"CuPy cannot reach a CUDA device: {exc}"
    if count == 0:
        return False, "CuPy sees no CUDA device"
    try:
        major, minor = _nvrtc().getVersion()
    except Exception as exc:
        return False, f"NVRTC is not usable: {exc}"
    return True, f"CuPy {cupy.__version__}, NVRTC {major}.{minor}, {count} CUDA device(s)"


# ----------------------------------------------------------------------------------------------------------
# Generated sources


@dataclass(frozen=True)
class KernelSource:
    """The generated C/CUDA targets of one Basis, checked against its manifest, and the manifest's sizes."""

    name: str
    header: str
    kernels: str
    manifest: Manifest

    @classmethod
    def load(cls, generated_dir, name: str) -> "KernelSource":
        folder = Path(generated_dir)
        paths = {suffix: folder / f"{name}{suffix}" for suffix in (".h", ".cu")}
        for path in paths.values():
            if not path.is_file():
                raise CudaBackendError(f"missing generated file {path} (run `cartinv generate` for this Basis)")
        record = read_manifest(folder, name)
        if "HARMONICS_STRIDE" not in dict(record.sizes):
            raise CudaBackendError(f"{folder}: the manifest records no C/CUDA targets (regenerate the folder)")
        header, kernels = (read_checked(folder, name, paths[s].name).decode("utf-8") for s in (".h", ".cu"))
        return cls(name, header, kernels, record)

    @property
    def constants(self) -> dict[str, int]:
        """The header's size constants, as the manifest records them."""
        return dict(self.manifest.sizes)

    def symbol(self, kernel: str, dtype: torch.dtype) -> str:
        return kernel_symbol(self.name, kernel, _suffix(dtype))

    def nvrtc_source(self) -> str:
        """One self-contained translation unit: the kernels with the header and cartinv's core sources pasted in
        place of their #include lines (runtime/kernels/core_sources.py)."""
        include = f'#include "{self.name}.h"'
        if sum(line.strip() == include for line in self.kernels.splitlines()) != 1:
            raise CudaBackendError(f"{self.name}.cu must include {self.name}.h exactly once")
        files = core_sources.texts("cuda")
        files[f"{self.name}.h"] = self.header
        return core_sources.inline_includes(self.kernels, files)


def _suffix(dtype: torch.dtype) -> str:
    if dtype == torch.float32:
        return "f32"
    if dtype == torch.float64:
        return "f64"
    raise CudaBackendError(f"the CUDA kernels take float32 or float64, got {dtype}")


# ----------------------------------------------------------------------------------------------------------
# Disk cache of compiled binaries


def cache_key(source: str, compiler: str, arch: str, options: Sequence[str] = ()) -> str:
    """sha256 (hex) identifying a compiled binary: changes with the source, compiler version, arch or options."""
    record = {"format": CACHE_FORMAT, "source": source, "compiler": compiler, "arch": arch, "options": list(options)}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


class BinaryCache(kernel_cache.BinaryCache):
    """Compiled CUDA binaries by key (``<root>/cuda`` by default); an empty build raises CudaBackendError."""

    def __init__(self, root: Path | None = None):
        super().__init__(root if root is not None else cache_root() / "cuda", error=CudaBackendError)


# ----------------------------------------------------------------------------------------------------------
# Pair bookkeeping and launch configurations


@dataclass(frozen=True)
class PairLayout:
    """Pairs grouped by centre: order[q] is the q-th pair in (centre, original index) order, offsets[i] the start
    of atom i's pairs in order (offsets[n_atoms] = n_pairs), centers the original centre of each pair."""

    order: torch.Tensor
    offsets: torch.Tensor
    centers: torch.Tensor
    n_atoms: int

    @property
    def n_pairs(self) -> int:
        return self.order.numel()


def centre_counts(centers: torch.Tensor, n_atoms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(int64 centres, pairs per atom), with a one-line error for centres that are not atom indices < n_atoms."""
    if centers.dim() != 1:
        raise ArgumentError(f"centers must be one-dimensional, got shape {tuple(centers.shape)}")
    if centers.dtype.is_floating_point or centers.dtype == torch.bool or centers.is_complex():
        raise ArgumentError(f"centers must hold integer atom indices, got {centers.dtype}")
    n_atoms = int(n_atoms)
    if n_atoms < 0:
        raise ArgumentError(f"n_atoms must be non-negative, got {n_atoms}")
    centers = centers.to(torch.int64).contiguous()
    if centers.numel() and n_atoms == 0:
        raise ArgumentError("pairs given but n_atoms is 0")
    try:
        counts = torch.bincount(centers, minlength=n_atoms)
    except RuntimeError as exc:
        raise ArgumentError(f"centers must be non-negative atom indices ({exc})") from None
    if counts.numel() != n_atoms:
        raise ArgumentError(f"a centre index is >= n_atoms = {n_atoms}")
    return centers, counts


def build_csr(centers: torch.Tensor, n_atoms: int) -> PairLayout:
    """Stable sort of pairs by centre and CSR offsets (int64, on the centres' device)."""
    centers, counts = centre_counts(centers, n_atoms)
    n_atoms = int(n_atoms)
    offsets = torch.zeros(n_atoms + 1, dtype=torch.int64, device=centers.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    order = torch.argsort(centers, stable=True)
    return PairLayout(order, offsets, centers, n_atoms)


class LayoutCache:
    """The PairLayout of the last centres seen, so that a training step's forward, backward and input check sort
    and count the pairs once (each build costs a bincount, a device-to-host sync and an argsort).

    The key is the centres' storage address, version counter, dtype, device, shape and strides, and n_atoms. The
    entry holds the layout, and through it the int64 centres it was keyed on, so that storage cannot be freed and
    its address reused while the entry lives; an in-place change bumps the version and misses. Inference tensors
    carry no version counter and are never cached."""

    def __init__(self):
        self._last = None  # (key, layout)

    @staticmethod
    def _key(centers: torch.Tensor, n_atoms: int):
        return (centers.data_ptr(), centers._version, centers.dtype, centers.device, tuple(centers.shape),
                centers.stride(), int(n_atoms))

    def layout(self, centers: torch.Tensor, n_atoms: int) -> PairLayout:
        if centers.is_inference():
            return build_csr(centers, n_atoms)
        last = self._last
        if last is not None and last[0] == self._key(centers, n_atoms):
            return last[1]
        layout = build_csr(centers, n_atoms)
        if not layout.centers.is_inference():
            self._last = (self._key(layout.centers, n_atoms), layout)
        return layout


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _prev_pow2(n: int) -> int:
    return 1 << (int(n).bit_length() - 1)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Launch:
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_mem: int


def forward_launch(n_atoms: int, groups: int, harmonics_stride: int, itemsize: int,
                   max_threads: int = DEFAULT_THREADS) -> Launch:
    """Block (lanes, rows): lanes over groups (power of two), rows over atoms; shared memory per thread is one
    pair index and one pair's harmonics."""
    threads = _prev_pow2(max(1, max_threads))
    per_thread = 8 + harmonics_stride * itemsize
    while threads > 1 and threads * per_thread > SHARED_MEMORY_LIMIT:
        threads //= 2
    lanes = min(_next_pow2(groups), threads)
    rows = threads // lanes
    return Launch((_ceil_div(n_atoms, rows), _ceil_div(groups, lanes), 1), (lanes, rows, 1), lanes * rows * per_thread)


def pairs_backward_launch(n_pairs: int, groups: int, itemsize: int, max_threads: int = DEFAULT_THREADS) -> Launch:
    """Block (lanes, slots): up to a warp of lanes split one pair's groups, slots over pairs."""
    threads = _prev_pow2(max(1, max_threads))
    lanes = min(_next_pow2(groups), PAIR_LANES_MAX, threads)
    slots = threads // lanes
    return Launch((_ceil_div(n_pairs, slots), 1, 1), (lanes, slots, 1), lanes * slots * 3 * itemsize)


def rows_launch(rows: int, max_threads: int = DEFAULT_THREADS) -> Launch:
    threads = _prev_pow2(max(1, max_threads))
    return Launch((_ceil_div(rows, threads), 1, 1), (threads, 1, 1), 0)


# ----------------------------------------------------------------------------------------------------------
# CuPy launcher


def _compile_nvrtc(source: str, filename: str, arch: str, options: Sequence[str]) -> bytes:
    nvrtc = _nvrtc()
    program = nvrtc.createProgram(source, filename, (), ())
    try:
        try:
            nvrtc.compileProgram(program, [f"--gpu-architecture={arch}", *options])
        except Exception as exc:
            log = nvrtc.getProgramLog(program)
            raise CudaBackendError(f"NVRTC could not compile {filename} for {arch}: {exc}\n{log}") from None
        return nvrtc.getCUBIN(program) if arch.startswith("sm_") else nvrtc.getPTX(program)
    finally:
        nvrtc.destroyProgram(program)


def _target_arch(compute_capability: int) -> str:
    """sm_XY when NVRTC can emit a cubin for the device, else PTX for the newest virtual arch it knows (JIT)."""
    nvrtc = _nvrtc()
    try:
        supported = tuple(int(a) for a in nvrtc.getSupportedArchs())
    except Exception:  # very old NVRTC: assume the device is supported
        return f"sm_{compute_capability}"
    if compute_capability in supported:
        return f"sm_{compute_capability}"
    older = [a for a in supported if a <= compute_capability]
    if not older:
        raise CudaBackendError(f"NVRTC supports none of the architectures up to sm_{compute_capability}")
    return f"compute_{max(older)}"


class CupyLauncher:
    """Compiles the kernels once per device architecture (disk-cached), launches them on torch's current stream."""

    OPTIONS = ("--std=c++17",)

    def __init__(self, source: KernelSource, cache: BinaryCache | None = None):
        ok, why = available()
        if not ok:
            raise CudaBackendError(f"the CUDA backend is unavailable: {why}")
        self.source = source
        self.cache = cache if cache is not None else BinaryCache()
        self._modules: dict[int, object] = {}
        self._kernels: dict[tuple[int, str], object] = {}

    def check(self, tensor: torch.Tensor) -> None:
        if not tensor.is_cuda:
            raise CudaBackendError(f"the CUDA backend needs CUDA tensors, got one on {tensor.device}")

    def binary(self, device_index: int) -> Path:
        """Path of the compiled module for a device (compiling and caching it when needed)."""
        cupy = _import_cupy()
        arch = _target_arch(int(cupy.cuda.Device(device_index).compute_capability))
        nv_major, nv_minor = _nvrtc().getVersion()
        source = self.source.nvrtc_source()
        key = cache_key(source, f"nvrtc {nv_major}.{nv_minor}", arch, self.OPTIONS)
        suffix = ".cubin" if arch.startswith("sm_") else ".ptx"
        return self.cache.get_or_build(
            key, suffix, lambda: _compile_nvrtc(source, f"{self.source.name}.cu", arch, self.OPTIONS)
        )

    def _kernel(self, device_index: int, symbol: str):
        key = (device_index, symbol)
        if key not in self._kernels:
            cupy = _import_cupy()
            with cupy.cuda.Device(device_index):
                if device_index not in self._modules:
                    self._modules[device_index] = cupy.RawModule(path=str(self.binary(device_index)))
                self._kernels[key] = self._modules[device_index].get_function(symbol)
        return self._kernels[key]

    def max_threads(self, symbol: str, device: torch.device) -> int:
        return int(self._kernel(device.index, symbol).max_threads_per_block)

    def launch(self, symbol: str, device: torch.device, grid, block, shared_mem: int, args: Sequence) -> None:
        cupy = _import_cupy()
        kernel = self._kernel(device.index, symbol)
        stream = torch.cuda.current_stream(device)
        with cupy.cuda.Device(device.index), cupy.cuda.ExternalStream(stream.cuda_stream):
            converted = tuple(cupy.from_dlpack(a.detach()) if isinstance(a, torch.Tensor) else a for a in args)
            kernel(tuple(grid), tuple(block), converted, shared_mem=int(shared_mem))


# ----------------------------------------------------------------------------------------------------------
# Kernel runner (sizes, allocation, launches) and autograd


class KernelRunner:
    """Allocates outputs and launches the three kernels of one Basis through a launcher."""

    def __init__(self, source: KernelSource, launcher, max_threads: int = DEFAULT_THREADS):
        self.source = source
        self.launcher = launcher
        self.max_threads = int(max_threads)
        c = source.constants
        self.channels = c["CHANNELS"]
        self.n_harmonics = c["N_HARMONICS"]
        self.n_coords = c["N_COORDS"]
        self.n_invariants = c["N_INVARIANTS"]
        self.harmonics_stride = c["HARMONICS_STRIDE"]

    def _threads(self, kernel: str, dtype: torch.dtype, device: torch.device) -> tuple[str, int]:
        symbol = self.source.symbol(kernel, dtype)
        return symbol, min(self.max_threads, self.launcher.max_threads(symbol, device))

    @staticmethod
    def _nonempty(t: torch.Tensor) -> torch.Tensor:
        """Kernels never read an empty tensor; give them a valid one-element buffer instead of a null pointer."""
        return t if t.numel() else torch.zeros(1, dtype=t.dtype, device=t.device)

    def forward(self, r: torch.Tensor, w: torch.Tensor, layout: PairLayout, store_moments: bool):
        """I [n_atoms, groups, N_INVARIANTS] and, when store_moments, T [n_atoms, groups, N_COORDS] (else None)."""
        groups = w.shape[1]
        n_atoms = layout.n_atoms
        out = torch.empty(n_atoms, groups, self.n_invariants, dtype=r.dtype, device=r.device)
        moments = torch.empty(n_atoms, groups, self.n_coords, dtype=r.dtype, device=r.device) if store_moments else None
        if n_atoms == 0 or groups == 0:
            return out, moments
        symbol, threads = self._threads("forward", r.dtype, r.device)
        cfg = forward_launch(n_atoms, groups, self.harmonics_stride, r.element_size(), threads)
        args = (
            self._nonempty(r), self._nonempty(w), self._nonempty(layout.order), layout.offsets,
            np.int64(n_atoms), np.int32(groups), np.int32(1 if store_moments else 0),
            moments if store_moments else self._nonempty(out.new_empty(0)), out,
        )
        self.launcher.launch(symbol, r.device, cfg.grid, cfg.block, cfg.shared_mem, args)
        return out, moments

    def backward(self, r, w, moments, grad_out, layout: PairLayout):
        """(grad_r [P, 3], grad_w [P, groups, CHANNELS]) from the invariant gradient [n_atoms, groups, K]."""
        groups = w.shape[1]
        grad_r = torch.empty_like(r)
        grad_w = torch.empty_like(w)
        if layout.n_pairs == 0 or groups == 0:
            return grad_r.zero_(), grad_w.zero_()
        rows = layout.n_atoms * groups
        grad_moments = torch.empty(layout.n_atoms, groups, self.n_coords, dtype=r.dtype, device=r.device)
        symbol, threads = self._threads("invariants_backward", r.dtype, r.device)
        cfg = rows_launch(rows, threads)
        self.launcher.launch(symbol, r.device, cfg.grid, cfg.block, cfg.shared_mem,
                             (moments, grad_out, np.int64(rows), grad_moments))
        symbol, threads = self._threads("pairs_backward", r.dtype, r.device)
        cfg = pairs_backward_launch(layout.n_pairs, groups, r.element_size(), threads)
        self.launcher.launch(
            symbol, r.device, cfg.grid, cfg.block, cfg.shared_mem,
            (r, w, layout.order, layout.centers, grad_moments, np.int64(layout.n_pairs), np.int32(groups),
             grad_r, grad_w),
        )
        return grad_r, grad_w


# ----------------------------------------------------------------------------------------------------------
# The module


_EMULATED = itertools.count()


def _torch_module(generated_dir: Path, name: str) -> types.ModuleType:
    """The generated <name>_torch.py of any folder with a manifest, executed from bytes the manifest records."""
    path = Path(generated_dir) / f"{name}_torch.py"
    module = types.ModuleType(f"cartinv_generated_{c_identifier(name)}_torch_{next(_EMULATED)}")
    module.__file__ = str(path)
    exec(compile(read_checked(path.parent, name, path.name), str(path), "exec"), module.__dict__)
    return module


class CudaInvariants(torch.nn.Module):
    """The invariants of a generated Basis on CUDA: ``forward(r, centers, w, n_atoms) -> I``.

    r [P, 3] pair vectors (float32 or float64, CUDA), centers [P] integer centre atom of each pair, w the pair
    weights: [P, C] for a tied (one-channel) Basis -> I [n_atoms, C, K], or [P, G, N] with N = the Basis's channels
    -> I [n_atoms, G, K]; K invariants in Basis order. Differentiable w.r.t. r and w, to any order, through the
    Basis's op family (runtime/kernels/ops.py), where these kernels serve CUDA tensors: forward and backward run
    the CUDA kernels, the double backward the torch core (the generated <name>_torch.py) on the GPU.

    launcher: defaults to a CupyLauncher (requires ``available()``); max_threads caps the threads per block.
    device_type: the tensors the kernels serve, "cuda"; the tests pass "cpu" with a CPU emulation of the kernels,
    which then serve CPU tensors in an op family of this module's own (no other family changes).
    """

    def __init__(self, generated_dir, name: str, *, launcher=None, max_threads: int = DEFAULT_THREADS,
                 device_type: str = "cuda"):
        super().__init__()
        self.generated_dir = Path(generated_dir)
        self.name = name
        self.source = KernelSource.load(self.generated_dir, name)
        self.basis_hash = self.source.manifest.basis_hash
        self._launcher = launcher
        self._runner: KernelRunner | None = None
        self._family = None
        self.max_threads = max_threads
        self.device_type = device_type
        constants = self.source.constants
        self.channels = constants["CHANNELS"]
        self.n_invariants = constants["N_INVARIANTS"]

    @property
    def runner(self) -> KernelRunner:
        if self._runner is None:
            launcher = self._launcher if self._launcher is not None else CupyLauncher(self.source)
            self._runner = KernelRunner(self.source, launcher, self.max_threads)
        return self._runner

    @property
    def family(self):
        """The op family with these kernels attached for ``device_type`` (built on first use)."""
        if self._family is None:
            from . import ops

            if not (self.generated_dir / f"{self.name}_torch.py").is_file():
                raise CudaBackendError(f"missing generated torch module {self.generated_dir / self.name}_torch.py, "
                                       f"needed for second derivatives")
            if self.device_type == "cuda":  # a checked-in or cache folder (cartinv.load): the Basis's family
                family = ops.family(self.generated_dir, self.name, self.basis_hash)
            else:
                family = ops.OpFamily(f"{self.name}_on_{self.device_type}_{next(_EMULATED)}", self.basis_hash,
                                      _torch_module(self.generated_dir, self.name)._kernels)
            family.attach(self.device_type, ops.CudaKernelsImpl(self.runner))
            self._family = family
        return self._family

    def _weights(self, w: torch.Tensor, n_pairs: int) -> torch.Tensor:
        if w.dim() == 2:
            if self.channels != 1:
                raise ArgumentError(
                    f"weights of shape {tuple(w.shape)}: a Basis with {self.channels} channels takes [P, G, "
                    f"{self.channels}] weights"
                )
            w = w.unsqueeze(-1)
        if w.dim() != 3 or w.shape[0] != n_pairs or w.shape[2] != self.channels:
            raise ArgumentError(
                f"weights must be [P, C] (one-channel Basis) or [P, G, {self.channels}] with P = {n_pairs}, "
                f"got {tuple(w.shape)}"
            )
        return w

    def forward(self, r: torch.Tensor, centers: torch.Tensor, w: torch.Tensor, n_atoms: int) -> torch.Tensor:
        if r.dim() != 2 or r.shape[1] != 3:
            raise ArgumentError(f"r must be [P, 3], got {tuple(r.shape)}")
        if centers.shape != (r.shape[0],):
            raise ArgumentError(f"centers must be [P] = [{r.shape[0]}], got {tuple(centers.shape)}")
        if r.dtype != w.dtype:
            raise ArgumentError(f"r and w must share a dtype, got {r.dtype} and {w.dtype}")
        _suffix(r.dtype)
        runner = self.runner
        for t in (r, centers, w):
            runner.launcher.check(t)
        w3 = self._weights(w, r.shape[0]).contiguous()
        family = self.family
        # the one-line errors for bad centres, before the op; the op's forward and backward reuse this sort
        centers = family.devices[self.device_type].layouts.layout(centers, int(n_atoms)).centers
        return family.invariants(r.contiguous(), w3, centers, int(n_atoms))
