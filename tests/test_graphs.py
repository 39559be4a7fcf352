import random

import networkx as nx
import pytest

from cartinv.symbolic import graphs as G
from cartinv.symbolic.graphs import canonical, graphs_for_labels


def lab(*orders):
    return tuple((0, l) for l in orders)


@pytest.mark.parametrize("orders,count", [
    ((2, 2), 1), ((3, 3), 1), ((2, 2, 2), 1), ((2, 2, 2, 2), 1), ((3, 3, 3, 3), 2),
    ((1, 1, 2), 1), ((1, 2, 3), 1), ((0,), 1), ((1,), 0), ((0, 2, 2), 0), ((1, 3), 0), ((1, 1, 1), 0),
])
def test_small_counts(orders, count):
    assert len(graphs_for_labels(lab(*orders))) == count


def _brute_force_classes(labels):
    """Isomorphism classes by networkx over every labelled matrix (independent of our canonical form)."""
    reps = []
    for mat in G._symmetric_matrices(tuple(l for _, l in labels)):
        n = len(labels)
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        g = nx.MultiGraph()
        g.add_nodes_from((i, {"label": labels[i]}) for i in range(n))
        for (i, j), k in zip(pairs, mat):
            g.add_edges_from([(i, j)] * k)
        if not nx.is_connected(g):
            continue
        if not any(nx.is_isomorphic(g, h, node_match=lambda a, b: a["label"] == b["label"]) for h in reps):
            reps.append(g)
    return len(reps)


@pytest.mark.parametrize("labels", [lab(2, 2, 3, 3), lab(1, 2, 2, 3), lab(3, 3, 3, 3), lab(1, 1, 2, 2, 2),
                                    ((0, 2), (1, 2), (1, 2), (0, 2)), lab(2, 2, 2, 4), lab(2, 3, 3, 4)])
def test_counts_match_networkx_isomorphism_classes(labels):
    assert len(graphs_for_labels(tuple(sorted(labels)))) == _brute_force_classes(tuple(sorted(labels)))


def test_canonical_form_is_invariant_under_relabelling():
    rng = random.Random(1)
    for labels in (lab(3, 3, 3, 3), lab(1, 2, 2, 3), lab(2, 2, 2, 2, 2, 2), lab(3, 3, 3, 3, 3, 3)):
        for g in graphs_for_labels(labels):
            for _ in range(10):
                perm = list(range(g.degree))
                rng.shuffle(perm)
                labs = [None] * g.degree
                for i, p in enumerate(perm):
                    labs[p] = g.labels[i]
                assert canonical(labs, [(perm[u], perm[v], k) for u, v, k in g.edges]) == g


def test_non_isomorphic_graphs_stay_distinct():
    gs = graphs_for_labels(lab(3, 3, 3, 3, 3, 3))
    assert len(gs) == len(set(gs)) > 5
    for a in gs[:6]:
        for b in gs[:6]:
            same = nx.is_isomorphic(a.to_networkx(), b.to_networkx())
            assert same == (a == b)


def test_self_loops_rejected():
    with pytest.raises(ValueError, match="self-loops"):
        canonical(lab(2, 2), [(0, 0, 1), (0, 1, 1)])


def test_einsum_notation_and_cost():
    g = graphs_for_labels(lab(2, 2, 2))[0]
    assert g.einsum.count(",") == 2 and g.einsum.endswith("->")
    assert g.index_notation() == "T2[ab] T2[ac] T2[bc]"
    assert graphs_for_labels(lab(2, 2))[0].cost == 9  # 9 multiply-adds for a Frobenius product
    # Triangle of matrices: (A B) costs 27, then the trace of a product costs 9.
    assert g.cost == 36


def test_components_of_disconnected_graph():
    g = canonical(lab(2, 2, 1, 1), [(0, 1, 2), (2, 3, 1)])
    assert not g.is_connected()
    assert [c.orders for c in g.components()] == [(1, 1), (2, 2)]
