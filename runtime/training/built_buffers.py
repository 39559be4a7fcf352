"""The buffers a training checkpoint stores once: those that training leaves as the model was built.

Constants such as MACE's coupling tensors (6.5 MB of its 7.2 MB of state, 99.5 % zeros) are the same in the current
and the best weights, so a checkpoint keeps them once, zlib-compressed, and leaves them out of both weight sets
(version 3). They are stored by value, not rebuilt at resume: values computed from the data or by a BLAS can differ
between machines (a MACE checkpoint of version 2, which kept only their hashes, could not be resumed on another
machine). Everything read back is checked: names, dtypes, shapes, and the exact decompressed size.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from pathlib import Path

import torch

from .config import ConfigError

__all__ = ["PACK_MIN_BYTES", "MAX_BUFFER_BYTES", "tensor_hash", "same_bits", "buffers", "pack", "unpack",
           "unpack_all", "strip", "restore", "check_hashes"]

PACK_MIN_BYTES = 4096  # smaller buffers are stored as plain tensors
MAX_BUFFER_BYTES = 1 << 31  # a packed buffer declaring more is refused before decompressing
_DTYPES = {str(d).removeprefix("torch."): d for d in (torch.float16, torch.bfloat16, torch.float32, torch.float64,
                                                       torch.complex64, torch.complex128, torch.int8, torch.uint8,
                                                       torch.int16, torch.int32, torch.int64, torch.bool)}
_FIELD = "checkpoint field 'built_buffers'"


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def tensor_hash(t: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes (version 2 checkpoints store these)."""
    return hashlib.sha256(f"{t.dtype} {tuple(t.shape)}".encode() + _bytes(t).numpy().tobytes()).hexdigest()


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal dtype, shape and bytes (so -0.0 differs from 0.0 and a NaN equals itself)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bytes(a), _bytes(b))


def buffers(model) -> dict[str, torch.Tensor]:
    """Copies of ``model``'s saved buffers (state_dict tensors that are not parameters; hippynn's modules also put
    dicts there, which stay with the weights), by state_dict key."""
    params = {name for name, _ in model.named_parameters()}
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if k not in params and isinstance(v, torch.Tensor)}


def pack(t: torch.Tensor):
    """``t`` as stored: itself when small, else {dtype, shape, zlib}: its bytes compressed (lossless)."""
    t = t.detach().cpu().contiguous()
    if t.numel() * t.element_size() < PACK_MIN_BYTES or t.dtype not in _DTYPES.values():
        return t
    data = zlib.compress(_bytes(t).numpy().tobytes(), 6)
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": [int(n) for n in t.shape],
            "zlib": torch.frombuffer(bytearray(data), dtype=torch.uint8)}


def unpack(value, name: str, path: Path) -> torch.Tensor:
    """The tensor ``pack`` stored, checked: a one-line ConfigError naming the buffer for anything malformed."""
    if isinstance(value, torch.Tensor):
        return value
    where = f"{path}: {_FIELD} entry {name!r}"
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "zlib"}:
        raise ConfigError(f"{where} is neither a tensor nor a packed tensor {{dtype, shape, zlib}}")
    dtype = _DTYPES.get(value["dtype"]) if isinstance(value["dtype"], str) else None
    if dtype is None:
        raise ConfigError(f"{where} has an unknown dtype {str(value['dtype'])[:40]!r}")
    shape = value["shape"]
    if (not isinstance(shape, list) or len(shape) > 16
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in shape)):
        raise ConfigError(f"{where} has a malformed shape")
    n_bytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if n_bytes > MAX_BUFFER_BYTES:
        raise ConfigError(f"{where} declares {n_bytes} bytes (at most {MAX_BUFFER_BYTES})")
    data = value["zlib"]
    if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8 or data.dim() != 1:
        raise ConfigError(f"{where}: 'zlib' is not a 1-d uint8 tensor")
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(data.numpy().tobytes(), n_bytes + 1)  # never more than one byte past the shape
    except zlib.error:
        raise ConfigError(f"{where}: 'zlib' is not zlib data") from None
    if len(raw) != n_bytes or not inflate.eof or inflate.unused_data:
        raise ConfigError(f"{where}: 'zlib' does not hold exactly {n_bytes} bytes of its shape and dtype")
    if n_bytes == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape).clone()


def unpack_all(stored, path: Path) -> dict[str, torch.Tensor]:
    """Every buffer of a version 3 checkpoint's 'built_buffers', checked."""
    if not isinstance(stored, dict) or not all(isinstance(k, str) for k in stored):
        raise ConfigError(f"{path}: {_FIELD} is not a map of buffer names")
    return {k: unpack(v, k, path) for k, v in stored.items()}


def strip(state: dict, built: dict[str, torch.Tensor]) -> dict:
    """``state`` without the buffers that still hold their built value (bit for bit)."""
    return {k: v for k, v in state.items()
            if not (k in built and isinstance(v, torch.Tensor) and same_bits(v, built[k]))}


def restore(state: dict, model, built: dict[str, torch.Tensor], path: Path) -> dict:
    """``state`` completed with the buffers the checkpoint left out, from ``built`` (the checkpoint's values)."""
    missing = [k for k in model.state_dict() if k not in state]
    for k in missing:
        if k not in built:
            raise ConfigError(f"{path}: checkpoint lacks {k!r} (neither in the weights nor in 'built_buffers')")
    return {**state, **{k: built[k].clone() for k in missing}}


def check_hashes(stored, now: dict[str, torch.Tensor], missing: set[str], path: Path) -> None:
    """Version 2: the buffers a checkpoint left out (``missing``) must hash as the model built now holds them."""
    if not isinstance(stored, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in stored.items()):
        raise ConfigError(f"{path}: {_FIELD} is not a map of names to hashes")
    for k in sorted(missing):
        if k not in stored or k not in now or tensor_hash(now[k]) != stored[k]:
            raise ConfigError(f"{path}: checkpoint lacks {k!r} and this model was not built with the value it "
                              f"records (a version 2 checkpoint keeps only its hash)")
