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
  {reducible, linear, algebraic, functional}, ``relation`` (text, or null) and ``relation_terms``
  ([[coefficient, [ids...]], ...], or null).
- ``strata``: each ``{zero, bound, rank, complete}``, ``zero`` listing the blocks set to zero as [channel, l].
- ``block_degrees``: for each block alone, ``{block, bound, degree}``: the degree at which its pure
  invariants reach the bound (null if not reached within the search).
- ``stats``: counts of candidates by reason, and the degree searched.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA_VERSION = 1
REASONS = ("reducible", "linear", "algebraic", "functional")
KINDS = ("tensor", "ace")


class BasisFileError(ValueError):
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

    def save(self, path) -> None:
        Path(path).write_text(self.to_json())


def dumps(data: dict) -> str:
    """Canonical serialisation: fixed key order as built, 1-space indent, ASCII, trailing newline."""
    return json.dumps(data, indent=1, ensure_ascii=True) + "\n"


def load(path) -> Basis:
    """Read and validate a Basis file; raise BasisFileError naming the first problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise BasisFileError(f"cannot read Basis file {path}: {exc.strerror}") from None
    return loads(text, source=str(path))


def loads(text: str, source: str = "<string>") -> Basis:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BasisFileError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    validate(data, source)
    return Basis(data)


def _need(cond: bool, source: str, msg: str) -> None:
    if not cond:
        raise BasisFileError(f"{source}: {msg}")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_graph(entry: dict, where: str, source: str, n_channels: int, orders_allowed: set) -> None:
    for key in ("id", "orders", "channels", "edges", "degree", "einsum", "cost"):
        _need(key in entry, source, f"{where} lacks '{key}'")
    orders, chans, edges = entry["orders"], entry["channels"], entry["edges"]
    _need(isinstance(orders, list) and orders and all(_is_int(o) and o >= 0 for o in orders), source,
          f"{where}: 'orders' must be a non-empty list of non-negative integers")
    _need(all(o in orders_allowed for o in orders), source, f"{where}: order outside the request's orders")
    _need(isinstance(chans, list) and len(chans) == len(orders)
          and all(_is_int(c) and 0 <= c < n_channels for c in chans), source,
          f"{where}: 'channels' must give a channel in 0..{n_channels - 1} for every vertex")
    _need(entry["degree"] == len(orders), source, f"{where}: 'degree' {entry['degree']} != {len(orders)} vertices")
    deg = [0] * len(orders)
    _need(isinstance(edges, list), source, f"{where}: 'edges' must be a list")
    for e in edges:
        _need(isinstance(e, list) and len(e) == 3 and all(_is_int(x) for x in e), source,
              f"{where}: edge {e!r} is not [u, v, multiplicity]")
        u, v, k = e
        _need(0 <= u < len(orders) and 0 <= v < len(orders), source, f"{where}: edge {e} names a missing vertex")
        _need(u != v, source, f"{where}: edge {e} is a self-loop (trace of a traceless tensor)")
        _need(k >= 1, source, f"{where}: edge {e} has multiplicity < 1")
        deg[u] += k
        deg[v] += k
    _need(deg == orders, source, f"{where}: vertex degrees {deg} do not match orders {orders}")
    subs = entry["einsum"].split("->")[0].split(",") if entry["einsum"] != "->" else [""]
    _need(len(subs) == len(orders) and [len(s) for s in subs] == orders, source,
          f"{where}: einsum '{entry['einsum']}' does not match orders {orders}")


def validate(data, source: str = "<basis>") -> None:
    """Structural and consistency checks; every failure names the field."""
    _need(isinstance(data, dict), source, "top level must be a JSON object")
    ver = data.get("schema_version")
    _need(ver is not None, source, "missing 'schema_version'")
    _need(ver == SCHEMA_VERSION, source,
          f"schema_version {ver!r} is not supported (this cartinv reads version {SCHEMA_VERSION})")
    for key in ("kind", "name", "request", "coordinates", "bound", "rank", "invariants", "dropped", "strata"):
        _need(key in data, source, f"missing '{key}'")
    _need(data["kind"] in KINDS, source, f"'kind' must be one of {KINDS}, got {data['kind']!r}")
    req = data["request"]
    _need(isinstance(req, dict), source, "'request' must be an object")
    for key in ("orders", "channels"):
        _need(key in req, source, f"'request' lacks '{key}'")
    _need(isinstance(req["orders"], list) and req["orders"] and all(_is_int(o) and o >= 0 for o in req["orders"]),
          source, "'request.orders' must be a non-empty list of non-negative integers")
    _need(_is_int(req["channels"]) and req["channels"] >= 1, source, "'request.channels' must be a positive integer")
    n_ch, orders = req["channels"], set(req["orders"])
    coords = data["coordinates"]
    expected = [(c, l, m) for c in range(n_ch) for l in sorted(orders) for m in range(-l, l + 1)]
    _need(isinstance(coords, list) and len(coords) == len(expected), source,
          f"'coordinates' must list {len(expected)} block coordinates")
    names = set()
    for entry, (c, l, m) in zip(coords, expected):
        _need(isinstance(entry, dict) and (entry.get("channel"), entry.get("l"), entry.get("m")) == (c, l, m),
              source, f"coordinate {entry!r} out of order (expected channel {c}, l {l}, m {m})")
        _need(isinstance(entry.get("name"), str) and entry["name"].isidentifier(), source,
              f"coordinate name {entry.get('name')!r} is not an identifier")
        names.add(entry["name"])
    invs = data["invariants"]
    _need(isinstance(invs, list), source, "'invariants' must be a list")
    ids = set()
    for i, inv in enumerate(invs):
        where = f"invariants[{i}]"
        _need(isinstance(inv, dict), source, f"{where} must be an object")
        _check_graph(inv, where, source, n_ch, orders) if data["kind"] == "tensor" else None
        _need(isinstance(inv.get("formula"), str) and inv["formula"], source, f"{where} lacks a 'formula'")
        _need(_is_int(inv.get("degree")) and inv["degree"] >= 1, source,
              f"{where}: 'degree' must be a positive integer (the number of factors)")
        _need(inv["id"] not in ids, source, f"duplicate id {inv['id']!r}")
        ids.add(inv["id"])
    _need(_is_int(data["bound"]) and _is_int(data["rank"]), source, "'bound' and 'rank' must be integers")
    _need(0 <= data["rank"] <= data["bound"], source, f"rank {data['rank']} outside 0..bound {data['bound']}")
    _need(data["rank"] <= len(invs), source, f"rank {data['rank']} exceeds the {len(invs)} invariants listed")
    for i, d in enumerate(data["dropped"]):
        where = f"dropped[{i}]"
        _need(isinstance(d, dict), source, f"{where} must be an object")
        if data["kind"] == "tensor":
            _check_graph(d, where, source, n_ch, orders)
        _need(d.get("reason") in REASONS, source, f"{where}: 'reason' must be one of {REASONS}, got {d.get('reason')!r}")
        _need(d["id"] not in ids, source, f"duplicate id {d['id']!r}")
        ids.add(d["id"])
    for i, s in enumerate(data["strata"]):
        _need(isinstance(s, dict) and all(k in s for k in ("zero", "bound", "rank", "complete")), source,
              f"strata[{i}] must have zero, bound, rank, complete")
