"""With the same weights, cartinv's generated invariants equal hippynn's calc_invariants column by column.

Columns are matched by contraction graph (hippynn's documented index notation parsed into our canonical graphs);
the hiphop_lmax3_deg4 basis has all 13 in hippynn's own column order, lmax3_deg4 shares 10 of them.
"""

import pytest
import torch

pytest.importorskip("hippynn")

import cartinv  # noqa: E402
from benchmarks.peers import HIPPYNN_COLUMNS, hippynn_invariants_from_coords  # noqa: E402
from cartinv.runtime.kernels.load import resolve_basis  # noqa: E402
from cartinv.symbolic.graphs import ContractionGraph, parse_index_notation  # noqa: E402


def _graph(entry):
    return ContractionGraph(tuple(zip(entry["channels"], entry["orders"])), tuple(tuple(e) for e in entry["edges"]))


@pytest.fixture(scope="module")
def environment():
    g = torch.Generator().manual_seed(7)
    n_atoms, n_pairs, channels = 12, 150, 5
    r = torch.randn(n_pairs, 3, dtype=torch.float64, generator=g) * 1.5
    centers = torch.randint(0, n_atoms - 2, (n_pairs,), generator=g)  # the last two atoms have no neighbours
    w = torch.randn(n_pairs, channels, dtype=torch.float64, generator=g)
    return r, centers, w, n_atoms


def _hippynn_reference(r, centers, w, n_atoms):
    """hippynn's calc_invariants on the same moments, converted to hippynn's own coordinates by its wrapper."""
    from benchmarks.peers import hippynn_moments

    coords = hippynn_moments(r, centers, w, n_atoms)
    return hippynn_invariants_from_coords(coords)


@pytest.mark.parametrize("name,shared", [("hiphop_lmax3_deg4", 13), ("lmax3_deg4", 10)])
def test_generated_invariants_equal_hippynn(environment, name, shared):
    r, centers, w, n_atoms = environment
    ours = cartinv.load(name, backend="torch")(r, centers, w, n_atoms)
    theirs = _hippynn_reference(r, centers, w, n_atoms)
    assert theirs.shape == ours.shape
    hippynn_graphs = [parse_index_notation(c["index_notation"]) for c in HIPPYNN_COLUMNS]
    basis = resolve_basis(name)
    matched = 0
    for k, inv in enumerate(basis.invariants):
        g = _graph(inv)
        if g not in hippynn_graphs:
            continue
        col = hippynn_graphs.index(g)
        if name == "hiphop_lmax3_deg4":
            assert col == k  # same column order
        factor = HIPPYNN_COLUMNS[col]["factor"]
        torch.testing.assert_close(ours[..., k], factor * theirs[..., col], rtol=1e-10, atol=1e-12)
        matched += 1
    assert matched == shared
    assert ours[n_atoms - 2:].abs().max() == 0  # atoms without neighbours
