"""The Basis file: a versioned JSON record of a derived basis, validated on load (no SymPy needed here).

Schema (version 1); key order is fixed, so the same Basis always serialises to the same bytes:

- ``schema_version`` (1), ``kind`` ("tensor" or "ace"), ``name``.
- ``request``: ``orders``, ``degree`` (max degree searched, null in complete mode), ``channels``, ``complete``,
  ``max_degree``, ``flexible``.
- ``convention``: a sentence naming the coordinate convention (symbolic/stf.py).
- ``coordinates``: the block coordinates in order, each ``{name, channel, l, m}``; formulas are polynomials in
  these names. Order: channel-major, then l, then m = -l..l.
- ``bound``, ``rank``, ``complete``, ``degree_needed``.
- ``invariants``: each ``{id, orders, channels, edges, degree, einsum, index_notation, latex, formula, cost}``;
  edges are [u, v, multiplicity] on vertices in ``orders`` order; einsum operands are the blocks named by
  (channel, order) of each vertex.
- ``dropped``: each with the same graph fields (no formula) plus ``reason`` in
  {reducible, linear, algebraic, implicit, functional}, ``relation`` (text, or null) and ``relation_terms``
  ([[coefficient, [ids...]], ...]: the candidate equals their sum; for implicit, a monic polynomial in the
  candidate, the terms sum to zero and the first is ["-1", [candidate] * degree]; null for functional).
- ``strata``: each ``{zero, bound, rank, complete}``, ``zero`` listing the blocks set to zero as [channel, l].
- ``block_degrees``: for each block alone, ``{block, bound, degree}``: the degree at which its pure
  invariants reach the bound (null if not reached within the search).
- ``span_check`` (tensor bases derived by this version; optional when read): ``{group, max_degree,
  multidegrees, graphs, dimension, rank}``: in every multidegree the search listed exhaustively, the rank of all
  contraction graphs equals the exact Molien dimension (symbolic/span.py), summed here.
- ``chirality`` (SO(3) bases, ``request.group`` "so3"): ``{pseudoscalars: [{id, square}], strata: [{zero,
  separated, candidate}]}``: each kept pseudoscalar's square as O(3) contractions, and for each stratum whether a
  kept pseudoscalar survives there (else the cheapest candidate that would, or null). A pseudoscalar's graph has
  one Levi-Civita vertex: channel -1, order 3, named ``eps`` (symbolic/levi_civita.py).
- ``stats``: counts of candidates by reason, and the degree searched.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from cartinv.errors import CartinvError

from .schema import KINDS, REASONS, SCHEMA_VERSION, SchemaError  # noqa: F401 (re-exported)
from . import schema

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_JSON_DEPTH = 12


class BasisFileError(CartinvError, ValueError):
    """A Basis file that is malformed, tampered with, or from an unsupported schema version."""


@dataclass(frozen=True)
class Basis:
    """A derived basis as plain data: exactly what the Basis file holds."""

    data: dict = field(repr=False)

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def kind(self) -> str:
        return self.data["kind"]

    @property
    def invariants(self) -> list[dict]:
        return self.data["invariants"]

    @property
    def dropped(self) -> list[dict]:
        return self.data["dropped"]

    @property
    def coordinates(self) -> list[dict]:
        return self.data["coordinates"]

    @property
    def channels(self) -> int:
        return self.data["request"]["channels"]

    @property
    def orders(self) -> list[int]:
        return self.data["request"]["orders"]

    @property
    def bound(self) -> int:
        return self.data["bound"]

    @property
    def rank(self) -> int:
        return self.data["rank"]

    @property
    def strata(self) -> list[dict]:
        return self.data["strata"]

    def to_json(self) -> str:
        return dumps(self.data)

    def content_hash(self) -> str:
        """sha256 of the canonical JSON: names this Basis in generated code headers."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def columns_hash(self) -> str:
        """sha256 of what fixes the invariant columns and their values (kind, convention, coordinates, the
        request for ACE, and each kept invariant's id and graph or coupling), and nothing else: a trained model
        stays valid when only the reasons, relations or checks of a regenerated Basis change."""
        d = self.data
        fields = COLUMN_FIELDS[d["kind"]]
        signature = {"kind": d["kind"], "convention": d["convention"], "coordinates": d["coordinates"],
                     "request": d["request"] if d["kind"] == "ace" else None,
                     "columns": [[e[k] for k in fields] for e in d["invariants"]]}
        return hashlib.sha256(dumps(signature).encode()).hexdigest()

    def save(self, path) -> None:
        Path(path).write_text(self.to_json())


COLUMN_FIELDS = {"tensor": ("id", "orders", "channels", "edges"), "ace": ("id", "nu", "nl", "couplings")}


def build(*, kind: str, name: str, request: dict, convention: dict, coordinates: list, bound: int, rank: int,
          degree_needed, invariants: list, dropped: list, stats: dict, strata: list = (), block_degrees: list = (),
          span_check: dict | None = None, chirality: dict | None = None) -> Basis:
    """The one constructor of Basis files, tensor and ACE alike: the schema version, the fixed key order that
    `dumps` keeps (so files are byte-identical for the same content), `complete` from rank and bound, and the
    whole schema checked before the Basis is returned (a builder bug cannot write a file cartinv would refuse)."""
    data = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "name": name,
        "request": request,
        "convention": convention,
        "coordinates": coordinates,
        "bound": bound,
        "rank": rank,
        "complete": rank == bound,
        "degree_needed": degree_needed,
        "invariants": invariants,
        "dropped": dropped,
        "strata": list(strata),
        "block_degrees": list(block_degrees),
    }
    if span_check is not None:
        data["span_check"] = span_check
    if chirality is not None:
        data["chirality"] = chirality
    data["stats"] = stats
    validate(data, source=f"Basis {name!r} as built")
    return Basis(data)


def dumps(data: dict) -> str:
    """Canonical serialisation: fixed key order as built, 1-space indent, ASCII, trailing newline."""
    return json.dumps(data, indent=1, ensure_ascii=True) + "\n"


def load(path) -> Basis:
    """Read and validate a Basis file; raise BasisFileError naming the file and the first bad field."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BasisFileError(f"{path}: {size:,} bytes exceeds the Basis file limit of {MAX_FILE_BYTES:,}")
        raw = path.read_bytes()
    except IsADirectoryError:
        raise BasisFileError(f"cannot read Basis file {path}: it is a directory") from None
    except ValueError:  # a path with a NUL byte
        raise BasisFileError(f"cannot read Basis file {ascii(str(path))[:60]}: not a valid path") from None
    except OSError as exc:
        raise BasisFileError(f"cannot read Basis file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BasisFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return loads(text, source=str(path))


def loads(text: str, source: str = "<string>") -> Basis:
    """Parse and validate Basis JSON text (no SymPy); raise BasisFileError naming the first bad field."""
    if not isinstance(text, str):
        raise BasisFileError(f"{source}: expected JSON text, got {type(text).__name__}")
    if len(text) > MAX_FILE_BYTES:
        raise BasisFileError(f"{source}: {len(text):,} characters exceeds the Basis file limit of {MAX_FILE_BYTES:,}")
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise BasisFileError(f"{source}: JSON nests {depth} levels deep (a Basis file needs at most {MAX_JSON_DEPTH})")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise BasisFileError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError as exc:  # duplicate keys, NaN/Infinity, integers too long to read
        raise BasisFileError(f"{source}: {str(exc).splitlines()[0]}") from None
    validate(data, source)
    return Basis(data)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """Deepest nesting of JSON arrays/objects in `text` (strings skipped), without parsing it."""
    depth = best = 0
    for m in _BRACKETS.finditer(_STRING.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        best = max(best, depth)
    return best


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"duplicate key {ascii(dup)[:40]} in one object")
    return dict(pairs)


def _no_constant(name):
    raise ValueError(f"{name} is not a number a Basis file may hold")


def validate(data, source: str = "<basis>") -> None:
    """Every field against the strict schema (symbolic/schema.py); BasisFileError names the source and field."""
    try:
        schema.validate(data)
    except SchemaError as exc:
        raise BasisFileError(f"{source}: {exc}") from None
