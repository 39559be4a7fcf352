"""Load the kernels of a Basis as a torch module: ``load(basis_or_name, backend="auto")``.

Where the generated code comes from:

- a checked-in name ("lmax3_deg4", see ``checked_in_names()``): the files under cartinv/generated/<name>/, imported
  without SymPy;
- a path to a Basis file, or a Basis object: the same files, generated on first use into a per-user cache
  (``$CARTINV_CACHE``, default ``~/.cache/cartinv``, under generated/<cartinv version>-<generator fingerprint>/<content hash>/) and
  imported from there; a Basis identical to a checked-in one uses the checked-in files.

Backends: "torch" (the generated PyTorch module: any device), "cpu" (the fused C++ kernels of
cartinv.runtime.kernels.cpu_backend, compiled on first use), "cuda" (the generated CUDA kernels through
cartinv.runtime.kernels.cuda_backend, CuPy + NVRTC), "auto" (CUDA for inputs on a GPU, the fused kernels for inputs on the
CPU, each where usable, else torch). When a backend was requested, or expected from the inputs' device, but cannot
run (no C++ compiler, no CuPy, ...), the module warns once, naming the reason, and evaluates with the torch core
through the Basis's ops (cartinv.runtime.kernels.ops.torch_core_family): the fused kernels' autograd path.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
import warnings
from importlib import resources
from pathlib import Path

import torch

from cartinv import __version__
from cartinv.codegen.manifest import file_name as manifest_file
from cartinv.errors import ArgumentError
from cartinv.symbolic import basisfile
from cartinv.symbolic.basisfile import Basis

from . import kernel_cache
from .checks import InputError, check_inputs
from .kernel_cache import cache_root  # noqa: F401 (part of this module's API)

BACKENDS = ("auto", "torch", "cpu", "cuda")


class BackendWarning(UserWarning):
    """A requested or expected backend is unavailable; the message names the reason and the fallback."""


# ------------------------------------------------------------------------------------------------------------
# Finding bases and their generated files


def checked_in_root() -> Path:
    """The folder holding the checked-in generated bases (the cartinv.generated package)."""
    return Path(str(resources.files("cartinv.generated")))


def checked_in_names() -> list[str]:
    """Names of the checked-in generated bases."""
    root = checked_in_root()
    return sorted(
        p.name for p in root.iterdir()
        if p.is_dir() and (p / f"{p.name}_torch.py").is_file() and (p / f"{p.name}.json").is_file()
    )


def checked_in_basis(name: str) -> Basis | None:
    """The Basis checked in under `name`, or None when there is none."""
    if not isinstance(name, str) or not name.isidentifier():
        return None
    path = checked_in_root() / name / f"{name}.json"
    return basisfile.load(path) if path.is_file() else None


def resolve_basis(basis_or_name) -> Basis:
    """A Basis from a Basis object, a checked-in name, or a path to a Basis file."""
    if isinstance(basis_or_name, Basis):
        return basis_or_name
    if isinstance(basis_or_name, os.PathLike):
        return basisfile.load(basis_or_name)
    if not isinstance(basis_or_name, str):
        raise TypeError(f"expected a Basis, a basis name or a Basis file path, got {type(basis_or_name).__name__}")
    basis = checked_in_basis(basis_or_name)
    if basis is not None:
        return basis
    path = Path(basis_or_name).expanduser()
    if path.is_file():
        return basisfile.load(path)
    raise ArgumentError(
        f"{basis_or_name!r} is neither a checked-in basis ({', '.join(checked_in_names()) or 'none'}) nor a "
        f"Basis file; derive one with `cartinv basis ... -o FILE.json`"
    )


def _same_as_checked_in(basis: Basis) -> Path | None:
    path = checked_in_root() / basis.name
    json_path = path / f"{basis.name}.json"
    if json_path.is_file() and json_path.read_text() == basis.to_json():
        return path
    return None


def generated_dir(basis: Basis) -> tuple[Path, str]:
    """(folder, name) of the generated files of `basis`: checked in, or a sealed folder of the kernel cache
    (generated now when absent or when it fails its integrity check; see runtime/kernels/kernel_cache.py)."""
    basisfile.validate(basis.data, source="Basis")  # a Basis built in Python too: its name becomes a path
    checked = _same_as_checked_in(basis)
    if checked is not None:
        return checked, basis.name
    name = basis.name
    required = (f"{name}_torch.py", f"{name}.json", manifest_file(name))  # older folders lack the manifest

    def build(staging: Path) -> None:
        from cartinv.codegen.generate import generate  # needs SymPy; only when generating

        generate(basis, staging, name=name, regenerate_command=f"cartinv generate --basis {name}.json --name {name}")

    key = f"{__version__}-{generator_fingerprint()}/{basis.content_hash()}"
    return kernel_cache.sealed_folder(key, name, basis.content_hash(), required, build), name


_FINGERPRINT: list[str] = []


def generator_fingerprint() -> str:
    """12 hex digits of sha256 over the code generator's sources (cartinv.codegen and cartinv.templates): cached
    generated folders are keyed by it, so a changed template or printer never serves files an older one wrote."""
    if not _FINGERPRINT:
        import hashlib

        digest = hashlib.sha256()
        for package in ("cartinv.codegen", "cartinv.templates"):
            root = resources.files(package)
            for entry in sorted(root.iterdir(), key=lambda e: e.name):
                if entry.is_file() and entry.name.endswith((".py", ".j2")):
                    digest.update(f"{package}/{entry.name}\0".encode())
                    digest.update(entry.read_bytes())
        _FINGERPRINT.append(digest.hexdigest()[:12])
    return _FINGERPRINT[0]


_MODULES: dict[tuple[Path, str], object] = {}


def import_torch_module(folder: Path, name: str, basis_hash: str | None = None):
    """The module <folder>/<name>_torch.py (once per process).

    Checked-in files are imported as the package ``cartinv.generated``; cached files are executed from the exact
    bytes that passed the cache's integrity check (no bytecode cache is read or written for them).
    """
    path = (Path(folder) / f"{name}_torch.py").resolve()
    key = (path, basis_hash or "")
    if key in _MODULES:
        return _MODULES[key]
    if path.parent.parent == checked_in_root().resolve():
        module = importlib.import_module(f"cartinv.generated.{name}.{name}_torch")
    else:
        if basis_hash is None:
            raise ArgumentError("importing a cached kernel module needs the Basis hash its manifest is checked against")
        source = kernel_cache.verified_source(path.parent, path.name, basis_hash, name)
        mod_name = f"cartinv_generated_{name}_{basis_hash[:16]}"
        module = types.ModuleType(mod_name)
        module.__file__ = str(path)
        sys.modules[mod_name] = module
        exec(compile(source, str(path), "exec"), module.__dict__)  # verified generated code, see kernel_cache
    _MODULES[key] = module
    return module


# ------------------------------------------------------------------------------------------------------------
# The module


def _cuda_backend_status() -> tuple[object | None, str]:
    """(cartinv.runtime.kernels.cuda_backend, description) when usable, else (None, reason)."""
    try:
        from cartinv.runtime.kernels import cuda_backend
    except ImportError as exc:
        return None, f"cartinv.runtime.kernels.cuda_backend cannot be imported ({exc})"
    ok, why = cuda_backend.available()
    return (cuda_backend, why) if ok else (None, why)


class CartinvModule(torch.nn.Module):
    """``forward(r, centers, w, n_atoms) -> I [n_atoms, G, n_invariants]`` for one Basis, validated inputs.

    r [P, 3] pair vectors, centers [P] centre atom of each pair (int64 or int32), w [P, C] (one-channel Basis)
    or [P, G, channels] weights, n_atoms. Differentiable twice in r and w. `check_values=False` skips the checks
    that read the data (range of centres, NaN/inf, zero-length vectors); shapes, dtypes and devices are always
    checked. The fused CPU backend checks the values while it computes (at no cost), whatever `check_values` says.
    """

    def __init__(self, torch_module, folder: Path, name: str, backend: str = "auto", check_values: bool = True):
        super().__init__()
        if backend not in BACKENDS:
            raise ArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.folder = Path(folder)
        self.name = name
        self.backend = backend
        self.check_values = check_values
        self.torch_impl = torch_module.InvariantModel()
        self.basis_name = torch_module.BASIS_NAME
        self.basis_hash = torch_module.BASIS_HASH
        self.channels = torch_module.CHANNELS
        self.orders = torch_module.ORDERS
        self.n_invariants = torch_module.N_INVARIANTS
        self.invariant_ids = torch_module.INVARIANT_IDS
        self.invariant_degrees = torch_module.INVARIANT_DEGREES
        self._cuda_impl = None
        self._cuda_reason: str | None = None
        self._cpu_impl = None
        self._cpu_reason: str | None = None
        self._warned = False
        if backend == "cuda":
            self._cuda()
        elif backend == "cpu":
            self._cpu()

    def extra_repr(self) -> str:
        return f"basis={self.basis_name!r}, invariants={self.n_invariants}, backend={self.backend!r}"

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(message, BackendWarning, stacklevel=3)

    def _cuda(self):
        """The CUDA implementation, or None (after one warning naming the reason)."""
        if self._cuda_impl is None and self._cuda_reason is None:
            backend, why = _cuda_backend_status()
            if backend is None:
                self._cuda_reason = why
            elif not (self.folder / f"{self.name}.cu").is_file():
                self._cuda_reason = f"{self.folder / (self.name + '.cu')} was not generated"
            else:
                self._cuda_impl = backend.CudaInvariants(self.folder, self.name)
        if self._cuda_impl is None:
            wanted = "requested" if self.backend == "cuda" else "expected for GPU inputs"
            self._warn_once(f"cartinv: the CUDA backend was {wanted} but is unavailable: {self._cuda_reason}; "
                            f"using the torch backend")
        return self._cuda_impl

    def _cpu(self):
        """The fused CPU implementation, or None (after one warning naming the reason)."""
        if self._cpu_impl is None and self._cpu_reason is None:
            from cartinv.runtime.kernels import cpu_backend

            try:
                self._cpu_impl = cpu_backend.FusedInvariants(self.folder, self.name, self.basis_hash)
            except cpu_backend.CpuBackendError as exc:
                self._cpu_reason = str(exc)
        if self._cpu_impl is None:
            wanted = "requested" if self.backend == "cpu" else "expected for CPU inputs"
            self._warn_once(f"cartinv: the fused CPU backend was {wanted} but is unavailable: {self._cpu_reason}; "
                            f"using the torch backend")
        return self._cpu_impl

    def active_backend(self, device) -> str:
        """The backend that evaluates inputs on `device`: "cuda", "cpu" or "torch"."""
        device = torch.device(device)
        if self.backend == "torch":
            return "torch"
        if device.type == "cuda":
            return "cuda" if self.backend in ("auto", "cuda") and self._cuda() is not None else "torch"
        if device.type == "cpu" and self.backend in ("auto", "cpu"):
            return "cpu" if self._cpu() is not None else "torch"
        return "torch"

    def forward(self, r, centers, w, n_atoms):
        # the fused CPU kernels check the values as they read them: the separate pass over the data (as costly
        # as the forward itself) runs only to name the element once they have found one
        fused_cpu = self.backend in ("auto", "cpu") and isinstance(r, torch.Tensor) and r.device.type == "cpu"
        r, centers, w, n_atoms = check_inputs(r, centers, w, n_atoms, channels=self.channels,
                                              values=self.check_values and not fused_cpu)
        if self.backend == "cuda" and r.device.type != "cuda" and self._cuda_impl is not None:
            raise InputError(f"backend='cuda' evaluates CUDA tensors; the inputs are on {r.device} "
                             f"(move them to the GPU, or load with backend='auto')")
        if self.backend == "cpu" and r.device.type != "cpu":
            raise InputError(f"backend='cpu' evaluates CPU tensors; the inputs are on {r.device} "
                             f"(load with backend='auto' to follow the inputs' device)")
        active = self.active_backend(r.device)
        if active == "cuda":
            return self._cuda_impl(r, centers, w, n_atoms)
        if active == "cpu":
            from cartinv.runtime.kernels.cpu_backend import BadValues

            try:
                return self._cpu_impl(r, centers, w, n_atoms)
            except BadValues as exc:
                check_inputs(r, centers, w, n_atoms, channels=self.channels)  # raises naming the element
                raise InputError(f"{exc} (no single input element is NaN, inf or zero-length: the values are "
                                 f"too large for {r.dtype})") from None
        if fused_cpu and self.check_values:  # the fused backend is unavailable: check before the torch backend
            check_inputs(r, centers, w, n_atoms, channels=self.channels)
        if self.backend == "torch":  # the torch core itself, with its own autograd: the reference
            return self.torch_impl(r, centers, w, n_atoms)
        # a backend was expected but is unavailable: the torch core through the Basis's ops (the same maths, and
        # derivatives of every order through the op family's one autograd path)
        from cartinv.runtime.kernels.ops import torch_core_family

        return torch_core_family(self.folder, self.name, self.basis_hash).evaluate(r, centers, w, n_atoms)


def load(basis_or_name, backend: str = "auto", check_values: bool = True) -> CartinvModule:
    """A torch module evaluating the invariants of a Basis: ``module(r, centers, w, n_atoms) -> I``.

    basis_or_name: a checked-in name (see ``checked_in_names()``), a path to a Basis file, or a Basis.
    backend: "auto" (CUDA for GPU inputs, fused C++ for CPU inputs, each when usable, else torch), "torch", "cpu"
    or "cuda".
    """
    if backend not in BACKENDS:
        raise ArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
    basis = resolve_basis(basis_or_name)
    folder, name = generated_dir(basis)
    module = import_torch_module(folder, name, basis.content_hash())
    if module.BASIS_HASH != basis.content_hash():
        raise RuntimeError(
            f"{folder / (name + '_torch.py')} was generated from a different Basis (hash {module.BASIS_HASH[:12]}, "
            f"expected {basis.content_hash()[:12]}); regenerate it with `cartinv generate`"
        )
    return CartinvModule(module, folder, name, backend=backend, check_values=check_values)
