"""Reading a generated Basis folder: its manifest (codegen/manifest.py) and files checked against it.

Every file the backends compile or load is read through ``read_checked``: its sha256 must equal the one the
manifest records (and, in a kernel-cache folder, the cache's seal too), so what was generated is what runs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from cartinv.codegen import manifest as gm
from cartinv.codegen.manifest import Manifest, ManifestError

from .kernel_cache import read_sealed

__all__ = ["Manifest", "ManifestError", "read_manifest", "read_checked"]


def read_manifest(folder, name: str) -> Manifest:
    """The manifest of generated/<name>/ (or a cache folder); ManifestError naming the problem."""
    folder = Path(folder)
    path = folder / gm.file_name(name)
    if not path.is_file():
        raise ManifestError(f"{path} is missing (regenerate the folder with `cartinv generate`)")
    return _parsed(str(path), read_sealed(folder, path.name))


@lru_cache(maxsize=64)
def _parsed(source: str, data: bytes) -> Manifest:
    return gm.parse(data, source)


def read_checked(folder, name: str, fname: str) -> bytes:
    """The bytes of a generated file whose sha256 matches the folder's manifest (ManifestError otherwise)."""
    folder = Path(folder)
    record = read_manifest(folder, name)
    expected = record.file_hash(fname)
    if expected is None:
        raise ManifestError(f"{folder / gm.file_name(name)} does not list {fname}")
    data = read_sealed(folder, fname)
    if gm.sha256(data) != expected:
        raise ManifestError(f"{folder / fname} does not match the sha256 its manifest records (edited or stale; "
                            f"regenerate with `cartinv generate`)")
    return data
