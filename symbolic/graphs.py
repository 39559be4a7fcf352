"""Full contractions of STF tensors as vertex-labelled multigraphs (background §2).

A vertex is one factor, labelled by (channel, order l); its degree is l. An edge {u, v} of multiplicity k
contracts k indices of u with k indices of v. No self-loops (STF tensors are traceless), even total order,
and two contractions are equal iff their graphs are isomorphic as labelled multigraphs. Isomorphism is decided
by an exact canonical form: the lexicographically smallest (labels, adjacency) over all label-preserving
vertex orders, after colour refinement to keep the search small.
"""

from __future__ import annotations

import itertools
import string
from dataclasses import dataclass
from functools import cached_property, lru_cache

import networkx as nx
import numpy as np

from .naming import EPS_LABEL, EPS_NAME, block_name

Label = tuple[int, int]  # (channel, order)
LETTERS = string.ascii_lowercase + string.ascii_uppercase


@dataclass(frozen=True, order=True)
class ContractionGraph:
    """A contraction in canonical form: vertex labels sorted, edges (u, v, multiplicity) with u < v."""

    labels: tuple[Label, ...]
    edges: tuple[tuple[int, int, int], ...]

    @property
    def orders(self) -> tuple[int, ...]:
        return tuple(l for _, l in self.labels)

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(c for c, _ in self.labels)

    @property
    def degree(self) -> int:
        """Polynomial degree n = number of factors (body order n + 1)."""
        return len(self.labels)

    @cached_property
    def multidegree(self) -> tuple[tuple[Label, int], ...]:
        """How many factors of each label: invariants are homogeneous in each block separately."""
        out: dict[Label, int] = {}
        for lab in self.labels:
            out[lab] = out.get(lab, 0) + 1
        return tuple(sorted(out.items()))

    @property
    def blocks(self) -> frozenset[Label]:
        return frozenset(self.labels)

    def is_connected(self) -> bool:
        return nx.is_connected(self.to_networkx()) if self.degree > 1 else True

    def to_networkx(self) -> nx.MultiGraph:
        g = nx.MultiGraph()
        for i, lab in enumerate(self.labels):
            g.add_node(i, label=lab)
        for u, v, k in self.edges:
            for _ in range(k):
                g.add_edge(u, v)
        return g

    def components(self) -> list["ContractionGraph"]:
        """Connected components, each in canonical form, sorted (a disconnected graph is their product)."""
        g = nx.Graph()
        g.add_nodes_from(range(self.degree))
        g.add_edges_from((u, v) for u, v, _ in self.edges)
        out = []
        for comp in nx.connected_components(g):
            idx = sorted(comp)
            pos = {v: i for i, v in enumerate(idx)}
            out.append(
                canonical([self.labels[i] for i in idx], [(pos[u], pos[v], k) for u, v, k in self.edges if u in pos])
            )
        return sorted(out)

    @cached_property
    def subscripts(self) -> tuple[str, ...]:
        """Einsum subscripts per vertex: one letter per contracted index pair."""
        if sum(self.orders) // 2 > len(LETTERS):
            raise ValueError("contraction too large for einsum letters")
        subs = [""] * self.degree
        n = 0
        for u, v, k in self.edges:
            for _ in range(k):
                subs[u] += LETTERS[n]
                subs[v] += LETTERS[n]
                n += 1
        return tuple(subs)

    @property
    def einsum(self) -> str:
        """numpy einsum subscripts, operands in vertex order (T of each vertex's label)."""
        return ",".join(self.subscripts) + "->"

    def operand_names(self, channels: int = 1) -> tuple[str, ...]:
        return tuple(block_name(lab, channels) for lab in self.labels)

    def index_notation(self, channels: int = 1) -> str:
        """Human-readable Cartesian index notation, e.g. 'T2[ab] T2[bc] T2[ca]'."""
        return " ".join(
            f"{name}[{sub}]" if sub else name for name, sub in zip(self.operand_names(channels), self.subscripts)
        )

    def latex(self, channels: int = 1) -> str:
        parts = []
        for (c, l), sub in zip(self.labels, self.subscripts):
            if (c, l) == EPS_LABEL:
                parts.append(f"\\varepsilon_{{{sub}}}")
                continue
            ch = f",{c}" if channels > 1 else ""
            parts.append(f"T^{{({l}{ch})}}_{{{sub}}}" if sub else f"T^{{({l}{ch})}}")
        return " ".join(parts)

    @cached_property
    def cost(self) -> int:
        """Multiply-adds of the cheapest pairwise contraction order on full Cartesian arrays (3 per index)."""
        return contraction_cost(self.subscripts)

    def to_json(self) -> dict:
        return {
            "orders": list(self.orders),
            "channels": list(self.channels),
            "edges": [list(e) for e in self.edges],
        }


def parse_index_notation(text: str) -> ContractionGraph:
    """Parse 'T2[ab] T2[bc] T2[ca]' (or 'T1c0[a] T1c1[a]' with channels) into a canonical graph.

    Every index letter must appear exactly twice, on two different factors; a factor's order is its
    number of indices and must match its name. ``eps[abc]`` is the Levi-Civita tensor (a pseudoscalar).
    """
    import re

    tokens = text.replace("*", " ").split()
    if not tokens:
        raise ValueError("empty contraction")
    labels, subs = [], []
    for tok in tokens:
        e = re.fullmatch(EPS_NAME + r"\[([A-Za-z]{3})\]", tok)
        if e:
            labels.append(EPS_LABEL)
            subs.append(e.group(1))
            continue
        m = re.fullmatch(r"T(\d+)(?:c(\d+))?(?:\[([A-Za-z]*)\])?", tok)
        if not m:
            raise ValueError(f"cannot read factor {tok!r}: expected e.g. T2[ab] or T1c0[a]")
        l, c, idx = int(m.group(1)), int(m.group(2) or 0), m.group(3) or ""
        if len(idx) != l:
            raise ValueError(f"factor {tok!r} has {len(idx)} indices but order {l}")
        labels.append((c, l))
        subs.append(idx)
    where: dict[str, list[int]] = {}
    for v, idx in enumerate(subs):
        for ch in idx:
            where.setdefault(ch, []).append(v)
    mult: dict[tuple[int, int], int] = {}
    for ch, vs in where.items():
        if len(vs) != 2:
            raise ValueError(f"index {ch!r} appears {len(vs)} times in {text!r}; each must appear exactly twice")
        u, v = sorted(vs)
        if u == v:
            raise ValueError(f"index {ch!r} contracts a factor with itself (a trace of a traceless tensor) in {text!r}")
        mult[(u, v)] = mult.get((u, v), 0) + 1
    return canonical(labels, [(u, v, k) for (u, v), k in sorted(mult.items())])


def canonical(labels, edges) -> ContractionGraph:
    """Exact canonical form of a labelled multigraph given as labels and (u, v, multiplicity) edges.

    Individualisation-refinement: colours are refined to a fixpoint by (colour, multiset of (neighbour colour,
    multiplicity)); while a colour class has several vertices, each is individualised in turn and the search
    recurses. The canonical form is the largest adjacency key over all leaves, so it depends only on the
    isomorphism class (colours are ranks of isomorphism-invariant signatures).
    """
    n = len(labels)
    adj = [[0] * n for _ in range(n)]
    for u, v, k in edges:
        if u == v:
            raise ValueError("self-loops are traces of traceless tensors: not allowed")
        adj[u][v] += k
        adj[v][u] += k
    nbrs = [[(j, adj[i][j]) for j in range(n) if adj[i][j]] for i in range(n)]

    def refine(colours):
        ranks = _rank(colours)
        while True:
            sig = [(ranks[i], tuple(sorted((ranks[j], k) for j, k in nbrs[i]))) for i in range(n)]
            new = _rank(sig)
            if len(set(new)) == len(set(ranks)):
                return new
            ranks = new

    best: list = [None, None]

    def search(ranks):
        cells: dict[int, list[int]] = {}
        for i, r in enumerate(ranks):
            cells.setdefault(r, []).append(i)
        target = next((r for r in sorted(cells) if len(cells[r]) > 1), None)
        if target is None:
            order = sorted(range(n), key=lambda i: ranks[i])
            key = tuple(adj[order[i]][order[j]] for i in range(n) for j in range(i + 1, n))
            if best[0] is None or key > best[0]:
                best[0], best[1] = key, order
            return
        for v in cells[target]:
            search(refine([(r, 0 if i == v else 1) if r == target else (r, 0) for i, r in enumerate(ranks)]))

    search(refine([tuple(lab) for lab in labels]))
    order = best[1]
    new_labels = tuple(tuple(labels[v]) for v in order)
    new_edges = tuple(
        (i, j, adj[order[i]][order[j]]) for i in range(n) for j in range(i + 1, n) if adj[order[i]][order[j]]
    )
    return ContractionGraph(new_labels, new_edges)


def _rank(items):
    """Replace each item by the rank of its value among the sorted distinct values (deterministic colours)."""
    table = {v: i for i, v in enumerate(sorted(set(items)))}
    return [table[v] for v in items]


def _symmetric_matrices(orders: tuple[int, ...]):
    """All symmetric zero-diagonal non-negative integer matrices with row sums `orders` (upper triangle)."""
    n = len(orders)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    remaining = list(orders)
    chosen: list[int] = []

    # Suffix capacity: for pruning, the most vertex i can still receive from pairs after position p.
    def rec(p):
        if p == len(pairs):
            if all(r == 0 for r in remaining):
                yield tuple(chosen)
            return
        i, j = pairs[p]
        # If this is the last pair touching i, it must absorb all of i's remainder.
        last_i = all(not (i in pairs[q]) for q in range(p + 1, len(pairs)))
        lo = remaining[i] if last_i else 0
        hi = min(remaining[i], remaining[j])
        for k in range(lo, hi + 1):
            remaining[i] -= k
            remaining[j] -= k
            chosen.append(k)
            yield from rec(p + 1)
            chosen.pop()
            remaining[i] += k
            remaining[j] += k

    yield from rec(0)
    return pairs


@lru_cache(maxsize=None)
def graphs_for_labels(labels: tuple[Label, ...], connected: bool = True) -> tuple[ContractionGraph, ...]:
    """Every loopless multigraph (connected ones only by default) with the given sorted vertex labels."""
    labels = tuple(sorted(labels))
    orders = tuple(l for _, l in labels)
    if sum(orders) % 2:
        return ()
    n = len(labels)
    if n == 1:
        return (ContractionGraph(labels, ()),) if orders[0] == 0 else ()
    if connected and (0 in orders or sum(orders) < 2 * (n - 1) or 2 * max(orders) > sum(orders)):
        return ()
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    seen = set()
    for mat in _symmetric_matrices(orders):
        edges = [(i, j, k) for (i, j), k in zip(pairs, mat) if k]
        g = canonical(labels, edges)
        if g in seen:
            continue
        if connected and not g.is_connected():
            continue
        seen.add(g)
    return tuple(sorted(seen))


@lru_cache(maxsize=4096)
def sample_graphs(labels: tuple[Label, ...], count: int, seed: int, connected: bool = True) -> tuple[ContractionGraph, ...]:
    """Distinct loopless graphs (connected ones by default) with these labels, by seeded random pairing of
    index stubs.

    Used above the exhaustive degree, where listing every graph is infeasible; deterministic for a seed (and
    cached: the searches ask for the same samples more than once).
    """
    labels = tuple(sorted(labels))
    rng = np.random.default_rng([seed] + [c * 100 + l if c >= 0 else 10**6 + l for c, l in labels])
    stubs = [v for v, (_, l) in enumerate(labels) for _ in range(l)]
    found = set()
    for _ in range(count * 20):
        perm = rng.permutation(len(stubs))
        pairs = [(stubs[perm[2 * k]], stubs[perm[2 * k + 1]]) for k in range(len(stubs) // 2)]
        if any(u == v for u, v in pairs):
            continue
        mult: dict = {}
        for u, v in pairs:
            key = (min(u, v), max(u, v))
            mult[key] = mult.get(key, 0) + 1
        g = canonical(labels, [(u, v, k) for (u, v), k in mult.items()])
        if not connected or g.is_connected():
            found.add(g)
            if len(found) >= count:
                break
    return tuple(sorted(found, key=lambda g: (sum(g.orders), g.cost, g.labels, g.edges)))


def label_multisets(blocks: tuple[Label, ...], degree: int):
    """Sorted multisets of `degree` block labels with even total order."""
    for combo in itertools.combinations_with_replacement(sorted(blocks), degree):
        if sum(l for _, l in combo) % 2 == 0:
            yield combo


EXACT_COST_MAX_FACTORS = 7


def contraction_cost(subscripts: tuple[str, ...]) -> int:
    """Multiply-adds of the cheapest pairwise order (exact search over subsets up to 7 factors, greedy beyond;
    every index has size 3).

    Cost of contracting two partial results = 3^(number of distinct indices involved).
    """
    n = len(subscripts)
    if n == 1:
        return 0
    full = [frozenset(s) for s in subscripts]
    count: dict[str, int] = {}
    for s in subscripts:
        for ch in s:
            count[ch] = count.get(ch, 0) + 1

    @lru_cache(maxsize=None)
    def open_indices(mask: int) -> frozenset:
        inside: dict[str, int] = {}
        for i in range(n):
            if mask >> i & 1:
                for ch in full[i]:
                    inside[ch] = inside.get(ch, 0) + 1
        return frozenset(ch for ch, k in inside.items() if k < count[ch])

    @lru_cache(maxsize=None)
    def best(mask: int) -> int:
        if mask & (mask - 1) == 0:
            return 0
        result = None
        # Enumerate splits mask = a | b with a containing the lowest set bit (each split once).
        low = mask & -mask
        rest = mask ^ low
        sub = rest
        while True:
            a = low | sub
            b = mask ^ a
            if b:
                cost = best(a) + best(b) + 3 ** len(open_indices(a) | open_indices(b))
                if result is None or cost < result:
                    result = cost
            if sub == 0:
                break
            sub = (sub - 1) & rest
        return result

    if n <= EXACT_COST_MAX_FACTORS:
        return best((1 << n) - 1)
    # Larger contractions: the greedy pairwise order used by the exact evaluators (a good, not optimal, order).
    from .contract import pairwise_plan

    work, total = list(subscripts), 0
    for i, j, res in pairwise_plan(subscripts, ""):
        if j < 0:
            total += 3 ** len(set(work[0]))
            continue
        total += 3 ** len(set(work[i]) | set(work[j]))
        work = [s for k, s in enumerate(work) if k not in (i, j)] + [res]
    return total


def cost_key(g: ContractionGraph):
    """Sort key for candidates: fewer factors, lower total order, then cheaper contraction (ties: labels, edges)."""
    return (g.degree, sum(g.orders), tuple(sorted(g.orders)), g.cost, g.labels, g.edges)
