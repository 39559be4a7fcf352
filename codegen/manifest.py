"""<name>_manifest.json: what the runtime needs to know about a generated folder, as checked data.

codegen/generate.py writes it next to the generated files; the runtime reads the sizes, kernel symbols and file
hashes from it instead of parsing headers with regular expressions or importing code to find them. It is data:
``parse`` checks every field's exact type and range, and a bad file raises ManifestError naming the field.
Pure Python (no SymPy, no torch), so the runtime can import it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from cartinv.errors import CartinvError

from .naming import KERNELS, SCALAR_TYPES, c_identifier, kernel_symbol

FORMAT = "cartinv-generated"
FORMAT_VERSION = 1
SIZE_NAMES = ("L_MAX", "N_ORDERS", "CHANNELS", "N_HARMONICS", "N_COORDS", "N_INVARIANTS")
OPTIONAL_SIZES = ("HARMONICS_STRIDE",)  # present when the C/CUDA targets were generated
MAX_SIZE = 1 << 16  # far above any Basis cartinv derives; bounds every size the runtime allocates from
MAX_BYTES = 1 << 22
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FILE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}(_torch\.py|\.h|\.cu|\.json)")
_VERSION = re.compile(r"[0-9A-Za-z.+_-]{1,40}")


class ManifestError(CartinvError, ValueError):
    """A manifest that is not what codegen writes: the message names the file and the field."""


def file_name(name: str) -> str:
    return f"{name}_manifest.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """Sizes, kernel symbols and file hashes of one generated Basis folder."""

    name: str
    basis_name: str
    basis_hash: str
    cartinv_version: str
    orders: tuple[int, ...]
    sizes: tuple[tuple[str, int], ...]
    invariant_ids: tuple[str, ...]
    invariant_degrees: tuple[int, ...]
    files: tuple[tuple[str, str], ...]  # (file name, sha256 of its bytes), sorted by name

    def size(self, key: str) -> int:
        return dict(self.sizes)[key]

    @property
    def namespace(self) -> str:
        """The C++ namespace (cartinv::<namespace>) of the generated header."""
        return c_identifier(self.name)

    def symbols(self) -> dict[str, dict[str, str]]:
        """extern "C" symbols of the CUDA kernels: kernel -> dtype suffix -> symbol."""
        return {k: {s: kernel_symbol(self.name, k, s) for s in SCALAR_TYPES} for k in KERNELS}

    def file_hash(self, fname: str) -> str | None:
        return dict(self.files).get(fname)

    def to_json(self) -> str:
        """Deterministic text (sorted keys, fixed layout)."""
        data = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "namespace": self.namespace,
            "basis_name": self.basis_name,
            "basis_hash": self.basis_hash,
            "cartinv_version": self.cartinv_version,
            "orders": list(self.orders),
            "sizes": dict(self.sizes),
            "invariant_ids": list(self.invariant_ids),
            "invariant_degrees": list(self.invariant_degrees),
            "cuda_symbols": self.symbols() if "HARMONICS_STRIDE" in dict(self.sizes) else {},
            "files": dict(self.files),
        }
        return json.dumps(data, indent=1, sort_keys=True) + "\n"


def _field(data: dict, key: str, kind, source: str):
    if key not in data:
        raise ManifestError(f"{source}: field {key!r} is missing")
    value = data[key]
    if type(value) is not kind:
        raise ManifestError(f"{source}: field {key!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _int(value, where: str, source: str, low: int = 0) -> int:
    if type(value) is not int or not low <= value <= MAX_SIZE:
        raise ManifestError(f"{source}: {where} must be an integer in {low}..{MAX_SIZE}, got {ascii(value)[:40]}")
    return value


def parse(text: str | bytes, source: str) -> Manifest:
    """A Manifest from the text of a manifest file; ManifestError naming the field for anything else."""
    if len(text) > MAX_BYTES:
        raise ManifestError(f"{source}: {len(text)} bytes, more than a manifest holds ({MAX_BYTES})")
    try:
        data = json.loads(text, parse_constant=lambda token: (_ for _ in ()).throw(ValueError(token)))
    except (ValueError, RecursionError) as exc:
        raise ManifestError(f"{source}: not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(f"{source}: not a cartinv generated-folder manifest")
    if data.get("format_version") != FORMAT_VERSION or type(data.get("format_version")) is not int:
        raise ManifestError(f"{source}: format_version {ascii(data.get('format_version'))[:20]} is not supported "
                            f"(this cartinv reads version {FORMAT_VERSION})")
    expected = {"format", "format_version", "name", "namespace", "basis_name", "basis_hash", "cartinv_version",
                "orders", "sizes", "invariant_ids", "invariant_degrees", "cuda_symbols", "files"}
    if set(data) != expected:
        odd = sorted(set(data) ^ expected)[0]
        raise ManifestError(f"{source}: field {ascii(odd)[:40]} is " + ("missing" if odd in expected else "unknown"))
    name, basis_name = _field(data, "name", str, source), _field(data, "basis_name", str, source)
    for key, value in (("name", name), ("basis_name", basis_name)):
        if not _NAME.fullmatch(value):
            raise ManifestError(f"{source}: field {key!r} is not an identifier")
    basis_hash = _field(data, "basis_hash", str, source)
    if not _HEX64.fullmatch(basis_hash):
        raise ManifestError(f"{source}: field 'basis_hash' is not a sha256 hex digest")
    version = _field(data, "cartinv_version", str, source)
    if not _VERSION.fullmatch(version):
        raise ManifestError(f"{source}: field 'cartinv_version' is malformed")
    orders = tuple(_int(v, "orders[]", source) for v in _field(data, "orders", list, source))
    if not orders or list(orders) != sorted(set(orders)):
        raise ManifestError(f"{source}: field 'orders' must be a non-empty increasing list")
    raw_sizes = _field(data, "sizes", dict, source)
    allowed = set(SIZE_NAMES) | set(OPTIONAL_SIZES)
    if not set(SIZE_NAMES) <= set(raw_sizes) <= allowed:
        odd = sorted((set(raw_sizes) ^ set(SIZE_NAMES)) - set(OPTIONAL_SIZES))
        raise ManifestError(f"{source}: field 'sizes' has the wrong keys ({ascii(odd[:2])[:60]})")
    sizes = {k: _int(v, f"sizes.{k}", source, low=0 if k in ("N_INVARIANTS", "L_MAX") else 1)
             for k, v in raw_sizes.items()}
    if sizes["N_ORDERS"] != len(orders) or sizes["L_MAX"] != orders[-1]:
        raise ManifestError(f"{source}: sizes.N_ORDERS / sizes.L_MAX disagree with 'orders'")
    if sizes["N_HARMONICS"] != sum(2 * l + 1 for l in orders):
        raise ManifestError(f"{source}: sizes.N_HARMONICS disagrees with 'orders'")
    if sizes["N_COORDS"] != sizes["CHANNELS"] * sizes["N_HARMONICS"]:
        raise ManifestError(f"{source}: sizes.N_COORDS is not CHANNELS * N_HARMONICS")
    ids = tuple(_field(data, "invariant_ids", list, source))
    degrees = tuple(_field(data, "invariant_degrees", list, source))
    if len(ids) != sizes["N_INVARIANTS"] or len(degrees) != len(ids):
        raise ManifestError(f"{source}: invariant_ids / invariant_degrees do not have N_INVARIANTS entries")
    for v in ids:
        if type(v) is not str or not _NAME.fullmatch(v):
            raise ManifestError(f"{source}: invariant_ids[] holds a non-identifier")
    degrees = tuple(_int(v, "invariant_degrees[]", source, low=1) for v in degrees)
    files = _field(data, "files", dict, source)
    for fname, digest in files.items():
        if not _FILE.fullmatch(fname) or type(digest) is not str or not _HEX64.fullmatch(digest):
            raise ManifestError(f"{source}: files entry {ascii(fname)[:40]} is malformed")
    manifest = Manifest(name, basis_name, basis_hash, version, orders, tuple(sorted(sizes.items())), ids, degrees,
                        tuple(sorted(files.items())))
    if data["namespace"] != manifest.namespace:
        raise ManifestError(f"{source}: field 'namespace' disagrees with 'name'")
    if data["cuda_symbols"] != (manifest.symbols() if "HARMONICS_STRIDE" in sizes else {}):
        raise ManifestError(f"{source}: field 'cuda_symbols' disagrees with 'name'")
    return manifest
