"""Greedy selection of a minimal complete invariant set, with a reason for every dropped candidate.

Candidates are processed in a fixed cost order: fewer factors first, then lower total order, then the sorted
orders, then cheaper evaluation, then the canonical graph. A candidate is kept iff it raises the Jacobian rank
of the kept set (background §3); the rank is computed exactly mod p at a random integer point, so "raises the
rank" is a proof of independence (a rank at a point is a lower bound of the generic rank), and "does not raise
it" is confirmed at a second point mod a second prime. The order decides which members are chosen, never how
many. Dropped candidates are explained: reducible (disconnected), linear, algebraic or implicit (an explicit
relation, verified; symbolic/relations.py), or functional (rank unchanged, no relation within the stated cap).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from cartinv.errors import CartinvError

from . import bounds as B
from . import basisfile
from .basisfile import Basis
from . import naming, schema
from .schema import TENSOR_CONVENTION
from .formulas import FormulaBuilder, coordinate_table
from .graphs import (ContractionGraph, Label, canonical, cost_key, graphs_for_labels, parse_index_notation,
                     sample_graphs)
from .modular import PRIMES, Echelon, ModularPoints
from .relations import NoRelation, Relation, RelationFinder
from .generators import GeneratorError, find_generators
from .span import check_span, spanning_graphs
from . import levi_civita, molien, pseudoscalars

EXHAUSTIVE_MAX_DEGREE = 6  # beyond this, candidates are sampled (complete/flexible searches only)
MAX_DEGREE = 32  # the Basis schema's limit (symbolic/schema.py)
SAMPLES_PER_MULTISET = 48
MAX_ORDER = 12
MAX_CHANNELS = 4
MAX_LABEL_MULTISETS = 4000
MAX_GENERATOR_DEGREE = 12
SEED = 20250331


class RequestError(CartinvError, ValueError):
    """An impossible or too large request; the message says why and what to do instead."""


@dataclass(frozen=True)
class BasisRequest:
    """What to derive. `degree`: the highest degree searched (None with complete or flexible)."""

    orders: tuple[int, ...]
    degree: int | None = None
    channels: int = 1
    complete: bool = False
    max_degree: int = 10
    flexible: bool = False
    prefer: tuple[str, ...] = ()
    generators: bool = False  # the minimal polynomial generators up to `degree` (symbolic/generators.py)
    group: str = "o3"  # "so3" adds the fewest pseudoscalars that separate mirror images (symbolic/pseudoscalars.py)

    def validate(self) -> None:
        """Every limit is checked here, before any work starts (types and ranges first, then size estimates)."""
        if not self.orders:
            raise RequestError("no orders given: pass e.g. --orders 0,1,2,3 or --lmax 3")
        if any(type(l) is not int or l < 0 for l in self.orders):
            raise RequestError(f"orders must be non-negative integers, got {list(self.orders)}")
        if len(set(self.orders)) != len(self.orders):
            raise RequestError(f"orders repeat: {list(self.orders)}")
        if max(self.orders) > MAX_ORDER:
            raise RequestError(f"order {max(self.orders)} exceeds the supported maximum {MAX_ORDER}")
        if type(self.channels) is not int or not 1 <= self.channels <= MAX_CHANNELS:
            raise RequestError(f"channels must be 1..{MAX_CHANNELS}, got {self.channels}")
        for what, value in (("degree", self.degree), ("max degree", self.max_degree)):
            if value is not None and (type(value) is not int or not 1 <= value <= MAX_DEGREE):
                raise RequestError(f"{what} must be an integer in 1..{MAX_DEGREE}, got {value!r}")
        if (self.complete or self.flexible) and self.degree is not None and self.degree > self.max_degree:
            raise RequestError(f"degree {self.degree} is above the cap --max-degree {self.max_degree}: give one of "
                               f"them, or raise the cap")
        if self.group not in molien.GROUPS:
            raise RequestError(f"group must be one of {list(molien.GROUPS)}, got {self.group!r}")
        if self.generators:
            self._validate_generators()
            return
        searched = self.searched_degree
        if searched is None:
            raise RequestError("give a degree (--degree N) or ask for --complete / --flexible")
        if searched < 1:
            raise RequestError(f"degree must be at least 1, got {searched}")
        if self.max_degree < 1:
            raise RequestError(f"max degree must be at least 1, got {self.max_degree}")
        if not (self.complete or self.flexible) and searched > EXHAUSTIVE_MAX_DEGREE:
            raise RequestError(
                f"degree {searched} is beyond the exhaustive search limit {EXHAUSTIVE_MAX_DEGREE}: "
                f"about {_estimate(self.blocks, searched):,} label multisets; use --complete (which stops at the "
                f"bound and samples candidates above degree {EXHAUSTIVE_MAX_DEGREE})"
            )
        n_multisets = _estimate(self.blocks, min(searched, EXHAUSTIVE_MAX_DEGREE))
        if n_multisets > MAX_LABEL_MULTISETS:
            raise RequestError(
                f"request too large: about {n_multisets:,} label multisets of up to "
                f"{min(searched, EXHAUSTIVE_MAX_DEGREE)} factors over {len(self.blocks)} blocks "
                f"(limit {MAX_LABEL_MULTISETS:,}); lower the degree, the orders or the channels"
            )
        for text in self.prefer:
            try:
                g = parse_index_notation(text)
            except ValueError as exc:
                raise RequestError(f"preferred contraction: {exc}") from None
            if not g.blocks <= set(self.blocks):
                raise RequestError(f"preferred contraction {text!r} uses blocks outside the request")
            if not g.is_connected():
                raise RequestError(f"preferred contraction {text!r} is disconnected (a product of smaller ones)")
        if self.group == "so3":
            first = pseudoscalars.first_pseudoscalar_degree(self.blocks)
            if first is None or first > min(searched, pseudoscalars.MAX_PSEUDO_DEGREE):
                raise RequestError(
                    f"--group so3: these blocks have no pseudoscalar (Levi-Civita contraction) up to degree "
                    f"{min(searched, pseudoscalars.MAX_PSEUDO_DEGREE)}; the first is at degree "
                    + (f"{first} (Molien count)" if first else f"> {pseudoscalars.FIRST_DEGREE_CAP}")
                    + (f": raise --degree to {first}" if first and first <= pseudoscalars.MAX_PSEUDO_DEGREE
                       else f", beyond the exhaustive pseudoscalar search ({pseudoscalars.MAX_PSEUDO_DEGREE})"))
        if not any(True for d in range(1, searched + 1) for _ in _multisets(self.blocks, d)):
            raise RequestError(
                f"no invariant exists for orders {list(self.orders)} up to degree {searched}: every full "
                f"contraction needs an even total order (add an even order or raise the degree)"
            )

    def _validate_generators(self) -> None:
        if self.complete or self.flexible or self.prefer:
            raise RequestError("--generators takes a degree (--degree N), not --complete, --flexible or --prefer")
        if self.degree is None:
            raise RequestError("--generators needs a degree (--degree N)")
        if self.degree > MAX_GENERATOR_DEGREE:
            raise RequestError(f"--generators searches up to degree {MAX_GENERATOR_DEGREE}, got {self.degree}")
        n_multisets = _estimate(self.blocks, self.degree) * (2 if self.group == "so3" else 1)  # odd orders too
        if n_multisets > MAX_LABEL_MULTISETS:
            raise RequestError(
                f"request too large: about {n_multisets:,} label multisets of up to {self.degree} factors over "
                f"{len(self.blocks)} blocks (limit {MAX_LABEL_MULTISETS:,}); lower the degree, the orders or the "
                f"channels")

    @property
    def searched_degree(self) -> int | None:
        if self.complete or self.flexible:
            return self.max_degree if self.degree is None else self.degree
        return self.degree

    @property
    def blocks(self) -> tuple[Label, ...]:
        return tuple((c, l) for c in range(self.channels) for l in sorted(self.orders))

    def default_name(self) -> str:
        orders = sorted(self.orders)
        base = f"lmax{orders[-1]}" if orders == list(range(orders[-1] + 1)) else "orders" + "".join(map(str, orders))
        if self.generators:
            base += f"_gen{self.degree}"
        elif self.flexible:
            base += "_flexible"
        elif self.complete:
            base += "_complete"
        else:
            base += f"_deg{self.degree}"
        base += f"_ch{self.channels}" if self.channels > 1 else ""
        base += "_so3" if self.group == "so3" else ""
        return base + ("_prefer" if self.prefer else "")

    def to_json(self) -> dict:
        return {
            "orders": sorted(self.orders),
            "degree": self.degree,
            "channels": self.channels,
            "complete": self.complete,
            "max_degree": self.max_degree,
            "flexible": self.flexible,
            **({"prefer": list(self.prefer)} if self.prefer else {}),
            **({"generators": True} if self.generators else {}),
            **({"group": self.group} if self.group != "o3" else {}),
        }


def _multisets(blocks, degree):
    for combo in itertools.combinations_with_replacement(sorted(blocks), degree):
        if sum(l for _, l in combo) % 2 == 0:
            yield combo


def _estimate(blocks, degree) -> int:
    from math import comb

    return sum(comb(len(blocks) + d - 1, d) for d in range(1, degree + 1)) // 2 + 1


def candidates(blocks, degree: int, label_set: frozenset | None = None) -> list[ContractionGraph]:
    """Connected candidates of one degree in cost order (exhaustive up to EXHAUSTIVE_MAX_DEGREE, else sampled).

    With `label_set`, only graphs whose labels are exactly that set.
    """
    out = []
    for ms in _multisets(blocks, degree):
        if label_set is not None and frozenset(ms) != label_set:
            continue
        if degree <= EXHAUSTIVE_MAX_DEGREE:
            out.extend(graphs_for_labels(ms))
        else:
            out.extend(sample_graphs(ms, SAMPLES_PER_MULTISET, SEED))
    return sorted(out, key=cost_key)


class _Stratum:
    """Exact Jacobian ranks of a growing set at one random point per prime, with `zero` blocks held at 0."""

    def __init__(self, blocks, zero=frozenset(), seed=SEED):
        self.points = [ModularPoints(tuple(blocks), p, 1, seed, frozenset(zero)) for p in PRIMES]
        live = [b for b in sorted(blocks) if b not in zero]
        pt = self.points[0]
        self.cols = np.concatenate(
            [np.arange(pt.offsets[b], pt.offsets[b] + 2 * b[1] + 1) for b in live]
        ) if live else np.zeros(0, dtype=np.int64)
        self.echelons = [Echelon(len(self.cols), p) for p in PRIMES]
        self.zero = frozenset(zero)

    @property
    def rank(self) -> int:
        return max(e.rank for e in self.echelons)

    def rows(self, g):
        return [pt.jacobian_rows(g)[0][self.cols] for pt in self.points]

    def raises(self, g) -> bool:
        return any(e.would_raise(r) for e, r in zip(self.echelons, self.rows(g)))

    def add(self, g) -> bool:
        raised = [e.add(r) for e, r in zip(self.echelons, self.rows(g))]
        return any(raised)


class _Selection:
    """Shared bookkeeping: ids, kept list, dropped list with reasons, relation search."""

    def __init__(self, blocks, progress, eps_mod2: bool = False):
        self.blocks = tuple(blocks)
        self.kept: list[tuple[str, ContractionGraph]] = []
        self.dropped: list[tuple[str, ContractionGraph, str, object]] = []
        self.ids: dict[ContractionGraph, str] = {}
        self.finder = RelationFinder(self.blocks, eps_mod2=eps_mod2)
        self.progress = progress or (lambda *a, **k: None)
        self.seen: set = set()
        self.enumerated: set = set()  # label multisets whose every graph was listed (for the span check)

    def mark_listed(self, degree: int, label_set: frozenset | None = None) -> None:
        """Record that every candidate of this degree (with exactly `label_set`, if given) was listed."""
        if degree <= EXHAUSTIVE_MAX_DEGREE:
            self.enumerated.update(ms for ms in _multisets(self.blocks, degree)
                                   if label_set is None or frozenset(ms) == label_set)

    def keep(self, g):
        gid = f"I{len(self.kept) + 1}"
        self.kept.append((gid, g))
        self.ids[g] = gid

    def drop(self, g, reason=None, relation=None):
        gid = f"D{len(self.dropped) + 1}"
        if reason is None:
            reason, relation = self.explain(g, gid)
        self.dropped.append((gid, g, reason, relation))
        self.ids[g] = gid

    def explain(self, g, gid: str):
        """(reason, relation) of a candidate that did not raise the rank (symbolic/relations.py, steps 1-4)."""
        found = self.finder.find(g, self.kept)
        if isinstance(found, Relation):
            return found.kind, found
        skipped = found == "too-large"
        earlier = [(i, h) for h, i in self.ids.items()]
        found = self.finder.find_among(g, earlier) or self.finder.find_root(g, gid, self.kept)
        if isinstance(found, NoRelation):
            return "functional", dataclasses.replace(found, products_skipped=skipped)
        return found.kind, found

    def add_reducibles(self, degree: int) -> None:
        """Disconnected graphs of this degree: products of connected candidates already processed."""
        connected = [g for g in self.ids if g.degree < degree and g.is_connected()]
        connected.sort(key=cost_key)
        by_deg: dict[int, list] = {}
        for g in connected:
            by_deg.setdefault(g.degree, []).append(g)
        for parts in _partitions(degree):
            if len(parts) < 2:
                continue
            pools = [by_deg.get(p, []) for p in parts]
            for combo in _multiset_product(parts, pools):
                labels, edges, off = [], [], 0
                for comp in combo:
                    labels.extend(comp.labels)
                    edges.extend((u + off, v + off, k) for u, v, k in comp.edges)
                    off += comp.degree
                g = canonical(labels, edges)
                if g in self.ids:
                    continue
                self.drop(g, "reducible", [self.ids[c] for c in combo])


def _partitions(n, maximum=None):
    maximum = n if maximum is None else maximum
    if n == 0:
        yield ()
        return
    for k in range(min(n, maximum), 0, -1):
        for rest in _partitions(n - k, k):
            yield (k,) + rest


def _multiset_product(parts, pools):
    """Multisets of graphs, one from pools[i] for each part (equal parts: non-decreasing indices)."""
    def rec(i, prev_part, prev_idx):
        if i == len(parts):
            yield ()
            return
        start = prev_idx if parts[i] == prev_part else 0
        for j in range(start, len(pools[i])):
            for rest in rec(i + 1, parts[i], j):
                yield (pools[i][j],) + rest

    yield from rec(0, None, 0)


def derive_basis(request: BasisRequest, progress: Callable | None = None, name: str | None = None) -> Basis:
    """Derive the Basis for a request (see module docstring); `progress(stage, done, total)` is optional."""
    request.validate()
    if name is not None:
        try:
            schema.identifier(name, "name")
        except schema.SchemaError as exc:
            raise RequestError(f"basis {exc}") from None
    blocks = request.blocks
    full_bound = B.bound(blocks)
    if request.generators:
        # SO(3) generators: a product of two pseudoscalar generators is an O(3) term of a relation
        sel = _Selection(blocks, progress, eps_mod2=request.group == "so3")
        return _derive_generators(request, sel, full_bound, name)
    sel = _Selection(blocks, progress)
    single_degrees: dict[Label, int] = {}
    if request.flexible:
        degree_needed, single_degrees = _select_flexible(request, sel)
    else:
        degree_needed = _select_greedy(request, sel, full_bound)
    rank = _Stratum(blocks)
    for _, g in sel.kept:
        rank.add(g)
    strata = _strata_report(blocks, sel.kept)
    block_degrees = _block_degrees(request, sel, single_degrees)
    chirality, listed = None, set(sel.enumerated)
    if request.group == "so3":
        try:
            chirality = pseudoscalars.select(sel, request.searched_degree, request.channels)
        except pseudoscalars.NoPseudoscalarError as exc:
            raise RequestError(str(exc)) from None
        top = max(levi_civita.tensor_degree(g) for _, g in sel.kept if levi_civita.is_pseudo(g))
        listed |= {ms for d in range(1, top + 1) for ms in itertools.combinations_with_replacement(blocks, d)
                   if levi_civita.parity(ms)}
    sel.progress("span check", 0, None)
    span = check_span(blocks, listed, request.group)
    return _assemble(request, sel, full_bound, rank.rank, degree_needed, strata, block_degrees, span, name,
                     chirality)


def _derive_generators(request, sel: _Selection, full_bound: int, name) -> Basis:
    """A Basis whose invariants are the minimal polynomial generators up to the degree; every other connected
    graph is dropped with its relation over them (linear or algebraic)."""
    try:
        result = find_generators(sel.blocks, request.degree, sel.progress, request.group)
    except GeneratorError as exc:
        raise RequestError(str(exc)) from None
    dropped = iter(sorted(result.dropped, key=lambda g: (levi_civita.tensor_degree(g), cost_key(g))))
    pending = next(dropped, None)
    for g in result.generators:  # keep the found order; explain each dropped graph once its degree is reached
        while pending is not None and levi_civita.tensor_degree(pending) < levi_civita.tensor_degree(g):
            sel.drop(pending)
            pending = next(dropped, None)
        sel.keep(g)
    while pending is not None:
        sel.drop(pending)
        pending = next(dropped, None)
    rank = _Stratum(sel.blocks)
    for _, g in sel.kept:
        rank.add(g)
    strata = _strata_report(sel.blocks, sel.kept)
    degree_needed = max((levi_civita.tensor_degree(g) for _, g in sel.kept), default=None)
    chirality = pseudoscalars.generator_chirality(sel, request.channels) if request.group == "so3" else None
    return _assemble(request, sel, full_bound, rank.rank, degree_needed, strata, [], result.span, name, chirality)


def _select_greedy(request, sel: _Selection, full_bound: int) -> int | None:
    stratum = _Stratum(sel.blocks)
    max_deg = request.searched_degree
    # The user's preferred contractions are tried first, in the order given (e.g. an existing model's columns).
    for text in request.prefer:
        g = parse_index_notation(text)
        if g in sel.ids:
            continue
        if stratum.rank < full_bound and stratum.raises(g):
            stratum.add(g)
            sel.keep(g)
        else:
            sel.drop(g)
    for d in range(1, max_deg + 1):
        sel.add_reducibles(d)
        cands = [g for g in candidates(sel.blocks, d) if g not in sel.ids]
        for k, g in enumerate(cands):
            sel.progress(f"degree {d}", k + 1, len(cands))
            if stratum.rank < full_bound and stratum.raises(g):
                stratum.add(g)
                sel.keep(g)
            else:
                sel.drop(g)
        sel.mark_listed(d)
        if request.complete and stratum.rank == full_bound:
            return d
    if request.complete:
        raise RequestError(
            f"the bound {full_bound} was not reached by degree {max_deg} (rank {stratum.rank}); "
            f"raise --max-degree"
        )
    return max((g.degree for _, g in sel.kept), default=None) if stratum.rank == full_bound else None


def _label_sets(blocks):
    blocks = sorted(blocks)
    return [frozenset(c) for k in range(1, len(blocks) + 1) for c in itertools.combinations(blocks, k)]


def _select_flexible(request, sel: _Selection) -> tuple[int, dict[Label, int]]:
    """Complete on every stratum: label sets A by size; add graphs whose labels are exactly A until bound(A).

    Returns the highest degree kept and, for each single block, the degree at which its stratum was complete
    (the same greedy as `_block_degrees`, which then need not run again).
    """
    max_deg = request.searched_degree
    needed = 0
    single_degrees: dict[Label, int] = {}
    for label_set in _label_sets(sel.blocks):
        target = B.bound(label_set)
        stratum = _Stratum(sel.blocks, frozenset(sel.blocks) - label_set)
        for _, g in sel.kept:
            if g.blocks <= label_set:
                stratum.add(g)
        d = 0
        while stratum.rank < target:
            d += 1
            if d > max_deg:
                raise RequestError(
                    f"stratum with only blocks {sorted(label_set)} nonzero reaches rank {stratum.rank} of "
                    f"{target} by degree {max_deg}; raise --max-degree"
                )
            for k, g in enumerate(candidates(sel.blocks, d, label_set)):
                if g in sel.ids:
                    continue
                live = ", ".join(naming.block_name(b, request.channels) for b in sorted(label_set))
                sel.progress(f"stratum {{{live}}} degree {d}", k + 1, None)
                if stratum.rank < target and stratum.raises(g):
                    stratum.add(g)
                    sel.keep(g)
                    needed = max(needed, d)
                else:
                    sel.drop(g)
            sel.mark_listed(d, label_set)
        if len(label_set) == 1 and d >= 1:
            single_degrees[next(iter(label_set))] = d
    return needed, single_degrees


def _strata_report(blocks, kept) -> list[dict]:
    out = []
    for zero in B.strata_subsets(blocks):
        live = frozenset(blocks) - zero
        st = _Stratum(blocks, zero)
        for _, g in kept:
            if g.blocks <= live:
                st.add(g)
        bnd = B.bound(live)
        out.append({"zero": [list(b) for b in sorted(zero)], "bound": bnd, "rank": st.rank, "complete": st.rank == bnd})
    return out


def _block_degrees(request, sel: _Selection, known: dict[Label, int]) -> list[dict]:
    """For each block alone: the degree at which its pure invariants reach its bound (None if not by the cap).

    `known` holds blocks whose degree the selection already found with this same greedy.
    """
    out = []
    for b in sel.blocks:
        target = B.bound([b])
        degree = known[b] if b in known else block_degree(b[1], request.max_degree)
        out.append({"block": list(b), "bound": target, "degree": degree})
    return out


# pure_block_degree(l, 10) for l = 0..8: the completion degree of one block depends on l alone, so it is searched
# once (tests/test_select.py recomputes every entry; l = 7 alone takes ~30 s) rather than in every derivation.
PURE_BLOCK_DEGREES = {0: 1, 1: 2, 2: 3, 3: 10, 4: 7, 5: 8, 6: 6, 7: 8, 8: 6}


def block_degree(l: int, max_degree: int) -> int | None:
    """pure_block_degree(l, max_degree), from PURE_BLOCK_DEGREES for l <= 8: the lowest degree does not depend on
    the cap, which only decides whether it is reported."""
    if l in PURE_BLOCK_DEGREES:
        return PURE_BLOCK_DEGREES[l] if PURE_BLOCK_DEGREES[l] <= max_degree else None
    return pure_block_degree(l, max_degree)


@lru_cache(maxsize=None)
def pure_block_degree(l: int, max_degree: int) -> int | None:
    """The lowest degree at which the invariants of one block of order l alone reach its bound, or None.

    It depends on l only (not on the channel or the other blocks), so it is computed once per process. At each
    degree, graphs whose values span the whole invariant space of that degree (proven against the Molien
    dimension; span.spanning_graphs) give the same Jacobian rank as every graph, so a handful of sampled graphs
    replaces the full enumeration; where sampling cannot prove the span the full list is used (up to degree
    EXHAUSTIVE_MAX_DEGREE), as in the search itself.
    """
    block = (0, l)
    target = B.bound([block])
    stratum = _Stratum((block,))

    def add(graphs):
        for g in graphs:
            if stratum.rank < target and stratum.raises(g):
                stratum.add(g)

    for d in range(1, max_degree + 1):
        labels = (block,) * d
        dim = molien.invariant_dimension((l,), (d,))
        if dim:
            add(sample_graphs(labels, SAMPLES_PER_MULTISET, SEED, connected=False))  # reaching needs no proof
            if stratum.rank < target:  # not reaching must hold for every invariant of this degree
                add(spanning_graphs((block,), labels, dim)[0])
        if stratum.rank == target:
            return d
    return None


def _graph_entry(gid, g: ContractionGraph, channels: int) -> dict:
    return {
        "id": gid,
        "orders": list(g.orders),
        "channels": list(g.channels),
        "edges": [list(e) for e in g.edges],
        "degree": levi_civita.tensor_degree(g),  # polynomial degree: the Levi-Civita vertex is a constant
        "einsum": g.einsum,
        "index_notation": g.index_notation(channels),
        "latex": g.latex(channels),
        "cost": g.cost,
    }


def _assemble(request, sel, bound, rank, degree_needed, strata, block_degrees, span, name, chirality=None) -> Basis:
    channels = request.channels
    fb = FormulaBuilder(sel.blocks, channels)
    invariants = []
    for k, (gid, g) in enumerate(sel.kept):
        sel.progress("formulas", k, len(sel.kept))
        entry = _graph_entry(gid, g, channels)
        entry["formula"] = fb.text(g)
        invariants.append(entry)
    sel.progress("formulas", len(sel.kept), len(sel.kept))
    dropped = []
    for gid, g, reason, rel in sel.dropped:
        entry = _graph_entry(gid, g, channels)
        entry["reason"] = reason
        if reason == "reducible":
            entry["relation"] = f"{gid} = " + "*".join(rel)
            entry["relation_terms"] = [["1", list(rel)]]
        elif reason in ("linear", "algebraic", "implicit"):
            entry["relation"] = rel.text(gid)
            entry["relation_terms"] = rel.to_json(gid)
        else:
            entry["relation"] = rel.text()
            entry["relation_terms"] = None
        dropped.append(entry)
    counts = {r: sum(1 for d in dropped if d["reason"] == r)
              for r in ("reducible", "linear", "algebraic", "implicit", "functional")}
    return basisfile.build(
        kind="tensor", name=name or request.default_name(), request=request.to_json(), convention=TENSOR_CONVENTION,
        coordinates=coordinate_table(sel.blocks, channels), bound=bound, rank=rank, degree_needed=degree_needed,
        invariants=invariants, dropped=dropped, strata=strata, block_degrees=block_degrees,
        span_check=span.to_json(), chirality=None if chirality is None else chirality.to_json(),
        stats={"candidates": len(invariants) + len(dropped), "kept": len(invariants), **counts,
               "degree_searched": request.searched_degree})
