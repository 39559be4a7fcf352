"""The op family's CPU kernels and autograd in C++ (runtime/kernels/csrc/torch_ops.cpp), built against torch.

Basis-independent: compiled once per machine, torch version and compiler (about 16 s; cached beside the fused
libraries, ``$CARTINV_CACHE/cpu``) and loaded with ctypes. ``attach(family, library)`` registers, for a Basis's
ops, C++ CPU kernels on the fused library's entry points and C++ autograd (forward -> backward -> double
backward through the dispatcher), in place of ops.py's Python ones: an eager call then runs no Python between the
op and the kernels. Where it cannot be built, ops.py keeps its Python kernels and autograd (one warning).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import sys
import tempfile
import threading
from pathlib import Path

import torch

from . import core_sources, cpu_backend
from .kernel_cache import BinaryCache, cache_root

GLUE_FORMAT = 1  # bump when the build recipe changes meaning
SOURCE = "torch_ops.cpp"
FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-pthread", "-w")
_LOCK = threading.Lock()
_LOADED: dict[str, object] = {}  # "glue" -> the loaded ctypes library, or "error" -> why it is unavailable


def source() -> str:
    return core_sources.read(SOURCE)


def torch_flags() -> list[str]:
    """Compiler flags for torch's headers and libraries (those of the torch this process runs)."""
    from torch.utils import cpp_extension

    lib = str(Path(torch.__file__).parent / "lib")
    return ([f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"]
            + [f"-I{p}" for p in cpp_extension.include_paths()]
            + [f"-L{lib}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{lib}"])


def build(quiet: bool = False) -> Path:
    """Path of the compiled glue (built when not cached)."""
    ok, why = cpu_backend.available()
    if not ok:
        raise cpu_backend.CpuBackendError(why)
    cxx = cpu_backend.compiler()
    flags = [*FLAGS, *torch_flags()]
    text = source()
    record = {"format": GLUE_FORMAT, "source": hashlib.sha256(text.encode()).hexdigest(),
              "torch": torch.__version__, "compiler": cpu_backend.compiler_version(cxx), "flags": flags}
    key = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    cache = BinaryCache(cache_root() / "cpu", error=cpu_backend.CpuBackendError)

    def compile_glue() -> bytes:
        if not quiet:
            print(f"cartinv: compiling the C++ op glue for torch {torch.__version__} (once per machine; about 20 s; "
                  f"cached in {cache.root})", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="cartinv-glue-") as tmp:
            (Path(tmp) / SOURCE).write_text(text)
            cpu_backend.run_compiler([cxx, str(Path(tmp) / SOURCE), "-o", str(Path(tmp) / "glue.so"), *flags],
                                     "the C++ op glue")
            return (Path(tmp) / "glue.so").read_bytes()

    return cache.get_or_build(key, ".so", compile_glue)


def glue(quiet: bool = False):
    """The loaded glue (built and loaded once per process); CpuBackendError naming why when it cannot be."""
    with _LOCK:
        if "glue" in _LOADED:
            return _LOADED["glue"]
        if "error" in _LOADED:
            raise cpu_backend.CpuBackendError(_LOADED["error"])
        try:
            lib = ctypes.CDLL(str(build(quiet=quiet)))
        except (cpu_backend.CpuBackendError, OSError) as exc:
            _LOADED["error"] = str(exc)
            raise cpu_backend.CpuBackendError(str(exc)) from None
        lib.cartinv_attach_family.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p),
                                              ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_char_p),
                                              ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_char_p,
                                              ctypes.c_int64]
        lib.cartinv_attach_family.restype = ctypes.c_int
        lib.cartinv_release_buffers.restype = None
        lib.cartinv_held_buffers.restype = ctypes.c_int64
        _LOADED["glue"] = lib
        return lib


def attach(prefix: str, library, quiet: bool = False) -> None:
    """Register the C++ CPU kernels (on `library`, a cpu_backend.FusedLibrary) and C++ autograd for the op family
    named `prefix` ("cartinv::<name>_<hash12>", its four ops defined already). CpuBackendError when it cannot."""
    lib = glue(quiet=quiet)
    ns, name = prefix.split("::")
    entries = (ctypes.c_void_p * 6)(*(ctypes.cast(library.entry(kernel, dtype), ctypes.c_void_p).value
                                      for dtype in (torch.float32, torch.float64)
                                      for kernel in ("forward", "backward", "double_backward")))
    sizes = (ctypes.c_int64 * 5)(library.channels, library.n_coords, library.n_invariants,
                                 library.lanes[torch.float32], library.lanes[torch.float64])
    errors = (ctypes.c_char_p * 4)(*(cpu_backend.ERRORS[-k].encode() for k in range(1, 5)))
    about_data = (ctypes.c_int * 4)(*(int(-k in cpu_backend.VALUE_ERRORS) for k in range(1, 5)))
    message = ctypes.create_string_buffer(512)
    if lib.cartinv_attach_family(ns.encode(), name.encode(), entries, sizes, errors, about_data,
                                 cpu_backend.ERROR_PREFIX.encode(), message, len(message)) != 0:
        raise cpu_backend.CpuBackendError(f"registering the C++ kernels of {prefix} failed: "
                                          f"{message.value.decode(errors='replace')}")


def release_buffers() -> None:
    """Drop the output memory the C++ kernels keep for reuse (nothing when the glue was never loaded)."""
    lib = _LOADED.get("glue")
    if lib is not None:
        lib.cartinv_release_buffers()


def held_buffers() -> int:
    """How many output storages the C++ kernels keep for reuse (0 when the glue was never loaded)."""
    lib = _LOADED.get("glue")
    return 0 if lib is None else int(lib.cartinv_held_buffers())
