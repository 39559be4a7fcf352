"""The on-disk kernel cache: generated files per Basis hash, each folder sealed by a manifest of file hashes.

Layout: ``<root>/generated/<cartinv version>-<generator fingerprint>/<Basis content hash>/<name>/`` holds the generated files and
``MANIFEST.json`` ({format, basis_hash, name, files: {file name: sha256}}). A folder is used only when its manifest
parses, names this Basis, and every listed file exists with that hash; otherwise it is reported once (a
`CacheWarning` naming the folder and the problem), set aside and generated again. Folders are built in a private
staging folder and renamed into place, so concurrent writers never see half a folder. When the cache root cannot
be written, a private temporary cache is used instead (one warning).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable

from cartinv.errors import CartinvError

MANIFEST = "MANIFEST.json"
MANIFEST_FORMAT = "cartinv-kernel-cache"
MAX_MANIFEST_BYTES = 64 * 1024


class CacheWarning(UserWarning):
    """A cache folder failed its integrity check (and was regenerated), or the cache root is not writable."""


class CacheError(CartinvError, RuntimeError):
    """The cache could not produce a sound folder even after regenerating it."""


_FALLBACK: list[Path] = []


def cache_root() -> Path:
    """``$CARTINV_CACHE`` when set and non-empty, else ``~/.cache/cartinv``; a private temporary folder once the
    configured root turned out not to be writable in this process."""
    if _FALLBACK:
        return _FALLBACK[0]
    env = os.environ.get("CARTINV_CACHE", "")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cartinv"


def use_private_cache(reason: str) -> Path:
    """Switch this process to a private temporary cache (once), warning with the reason."""
    if not _FALLBACK:
        private = Path(tempfile.mkdtemp(prefix="cartinv-cache-"))
        warnings.warn(f"cartinv: the kernel cache {cache_root()} is not writable ({reason}); using the private "
                      f"temporary cache {private} for this process", CacheWarning, stacklevel=3)
        _FALLBACK.append(private)
    return _FALLBACK[0]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_manifest(folder: Path, basis_hash: str, name: str) -> None:
    """Seal `folder`: record the sha256 of every file in it."""
    files = {p.name: sha256_file(p) for p in sorted(Path(folder).iterdir()) if p.is_file() and p.name != MANIFEST}
    record = {"format": MANIFEST_FORMAT, "basis_hash": basis_hash, "name": name, "files": files}
    (Path(folder) / MANIFEST).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def manifest_problem(folder: Path, basis_hash: str, name: str, required: tuple[str, ...]) -> str | None:
    """None when `folder` is sound, else what is wrong with it (one line)."""
    path = Path(folder) / MANIFEST
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            return f"{MANIFEST} is too large"
        record = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return f"{MANIFEST} is missing"
    except (OSError, UnicodeDecodeError, ValueError):
        return f"{MANIFEST} is unreadable"
    if not (isinstance(record, dict) and record.get("format") == MANIFEST_FORMAT
            and record.get("basis_hash") == basis_hash and record.get("name") == name
            and isinstance(record.get("files"), dict)):
        return f"{MANIFEST} does not describe this Basis"
    files = record["files"]
    for fname in required:
        if fname not in files:
            return f"{MANIFEST} does not list {fname}"
    for fname, digest in sorted(files.items()):
        target = Path(folder) / str(fname)
        if not isinstance(fname, str) or "/" in fname or "\\" in fname or fname.startswith("."):
            return f"{MANIFEST} lists a bad file name"
        try:
            actual = sha256_file(target)
        except FileNotFoundError:
            return f"{fname} is missing"
        except OSError as exc:
            return f"{fname} is unreadable ({exc.strerror})"
        if actual != digest:
            return f"{fname} does not match its recorded sha256 (modified or truncated)"
    return None


def _set_aside(folder: Path) -> None:
    """Move a bad folder out of the way atomically (a concurrent healer may have done it already), then delete it."""
    aside = folder.parent / f".stale-{folder.name}-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        os.rename(folder, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def sealed_folder(key: str, name: str, basis_hash: str, required: tuple[str, ...], build) -> Path:
    """The sound cache folder ``<root>/generated/<key>/<name>``: reused, or built by ``build(staging)`` and sealed.

    A folder that fails its check is reported once, set aside and built again; a root that cannot be written
    switches this process to a private temporary cache.
    """
    for attempt in range(3):
        target = cache_root() / "generated" / key / name
        problem = manifest_problem(target, basis_hash, name, required) if target.exists() else "absent"
        if problem is None:
            return target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if problem != "absent":
                warnings.warn(f"cartinv: cached kernels in {target} failed their integrity check ({problem}); "
                              f"regenerating them", CacheWarning, stacklevel=3)
                _set_aside(target)
            staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
        except OSError as exc:
            if attempt == 0 and not _FALLBACK:
                use_private_cache(exc.strerror or type(exc).__name__)
                continue
            raise CacheError(f"cannot write the kernel cache {target.parent}: {exc.strerror}") from None
        try:
            build(staging)
            write_manifest(staging, basis_hash, name)
            try:
                os.rename(staging, target)
            except OSError:  # another process finished first: its folder is checked on the next pass
                pass
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    target = cache_root() / "generated" / key / name
    problem = manifest_problem(target, basis_hash, name, required)
    if problem is not None:
        raise CacheError(f"cached kernels in {target} are unsound after regenerating them: {problem}")
    return target


def _manifest_record(folder: Path):
    """The parsed manifest of `folder`, or None when it has none or it is unreadable."""
    try:
        record = json.loads((Path(folder) / MANIFEST).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def read_sealed(folder: Path, fname: str) -> bytes:
    """The bytes of `fname`; in a sealed folder (one with a manifest, as every cache folder has) they must match
    the recorded sha256, else CacheError: what is checked is exactly what is used."""
    data = (Path(folder) / fname).read_bytes()
    if (Path(folder) / MANIFEST).exists():
        files = (_manifest_record(folder) or {}).get("files")
        if not isinstance(files, dict) or files.get(fname) != hashlib.sha256(data).hexdigest():
            raise CacheError(f"{Path(folder) / fname} does not match its folder's {MANIFEST} (modified or truncated); "
                             f"load the Basis again with cartinv.load to regenerate it")
    return data


def verified_source(folder: Path, fname: str, basis_hash: str, name: str) -> bytes:
    """The bytes of a file of the sealed cache folder of this Basis, checked against its manifest (what is hashed
    is what runs)."""
    record = _manifest_record(folder) or {}
    if record.get("basis_hash") != basis_hash or record.get("name") != name:
        raise CacheError(f"{Path(folder) / MANIFEST} changed after its integrity check; load the Basis again")
    return read_sealed(folder, fname)


# ------------------------------------------------------------------------------------------------------------
# Compiled binaries


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either no file, an older complete file, or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class BinaryCache:
    """Compiled binaries (CUDA modules, CPU shared libraries) by sha256 key in one folder, each stored with its
    sha256 beside it: an entry whose bytes no longer match is rebuilt (one CacheWarning), never loaded."""

    def __init__(self, root: Path, error: type[Exception] = None):
        self.root = Path(root)
        self.error = error or CacheError

    def path(self, key: str, suffix: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            raise ValueError(f"cache key must be a sha256 hex digest, got {key!r}")
        return self.root / f"{key}{suffix}"

    def get_or_build(self, key: str, suffix: str, build: Callable[[], bytes]) -> Path:
        """The cached file for `key`, building and storing it first when absent, or when its content does not
        match the sha256 stored beside it (then with one CacheWarning: a corrupted binary is never launched)."""
        path = self.path(key, suffix)
        seal = path.with_name(path.name + ".sha256")
        if path.is_file():
            try:
                recorded = seal.read_text().strip()
            except (OSError, UnicodeDecodeError):
                recorded = None
            if recorded == hashlib.sha256(path.read_bytes()).hexdigest():
                return path
            warnings.warn(f"cartinv: cached binary {path} failed its integrity check; compiling it again",
                          CacheWarning, stacklevel=2)
        data = build()
        if not data:
            raise self.error(f"compilation produced no output for cache entry {path.name}")
        atomic_write_bytes(path, data)
        atomic_write_bytes(seal, hashlib.sha256(data).hexdigest().encode() + b"\n")
        return path
