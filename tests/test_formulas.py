"""Formulas: the dense integer path, the sparse ring path and the direct printer agree with SymPy exactly."""

import json
from pathlib import Path

import pytest
import sympy as sp

from cartinv.symbolic import formulas
from cartinv.symbolic.formulas import FormulaBuilder, formula_text, parse_formula
from cartinv.symbolic.graphs import graphs_for_labels, parse_index_notation

GENERATED = Path(__file__).resolve().parents[1] / "generated"
BASES = sorted(p for p in GENERATED.glob("*/*.json") if not p.name.endswith("_manifest.json"))


def _blocks(basis: dict):
    return sorted({(c["channel"], c["l"]) for c in basis["coordinates"]})


@pytest.mark.parametrize("path", BASES, ids=[p.stem for p in BASES])
def test_printed_text_is_the_stored_formula_and_sympys_print(path):
    basis = json.loads(path.read_text())
    channels = basis["request"]["channels"]
    fb = FormulaBuilder(_blocks(basis), channels)
    for inv in basis["invariants"]:
        g = parse_index_notation(inv["index_notation"])
        assert fb.text(g) == inv["formula"] == formula_text(fb.formula(g)), inv["id"]


def _some_graphs():
    """Connected graphs over several label multisets: repeated blocks, two channels, high orders."""
    multisets = [((0, 1), (0, 1)), ((0, 1), (0, 1), (0, 2)), ((0, 2), (0, 2), (0, 2), (0, 2)),
                 ((0, 1), (0, 2), (0, 3)), ((0, 3), (0, 3), (0, 3), (0, 3)), ((0, 1), (1, 1), (0, 2), (1, 2)),
                 ((0, 2), (0, 6), (0, 6)), ((0, 1), (1, 2), (1, 3)), ((0, 2), (0, 2), (0, 3), (0, 3)),
                 ((0, 1), (0, 2), (0, 2), (0, 3)), ((0, 2), (0, 2), (0, 4), (0, 4)), ((0, 3), (0, 3), (0, 4), (0, 4)),
                 ((0, 5), (0, 5), (0, 6)), ((0, 2), (0, 3), (0, 3), (0, 4)), ((0, 1), (0, 1), (0, 2), (0, 2), (0, 2))]
    yield ((0, 0),), parse_index_notation("T0")
    for labels in multisets:
        yield from ((labels, g) for g in graphs_for_labels(labels))
    yield ((0, 1), (0, 1), (0, 2), (0, 3)), parse_index_notation("eps[abc] T1[a] T1[d] T2[be] T3[cde]")


def _builder(labels):
    channels = 1 + max(c for c, _ in labels)
    orders = sorted({l for _, l in labels})
    return FormulaBuilder([(c, l) for c in range(channels) for l in orders], channels)


def test_dense_integer_terms_equal_the_sparse_ring_product(monkeypatch):
    graphs = [(labels, g) for labels, g in _some_graphs() if g.degree > 1]
    assert len(graphs) >= 30
    dense = {g: _builder(labels).integer_terms(g) for labels, g in graphs}
    monkeypatch.setattr(formulas, "DENSE_MAX_ENTRIES", 0)  # every graph through SymPy's ring
    for labels, g in graphs:
        assert _builder(labels).integer_terms(g) == dense[g], g


def test_python_integers_take_over_where_int64_could_overflow(monkeypatch):
    graphs = [(labels, g) for labels, g in _some_graphs()]
    before = {g: _builder(labels).integer_terms(g) for labels, g in graphs}
    monkeypatch.setattr(formulas, "_INT64_MAX", 1)  # every bound exceeds it: object arrays of Python ints
    for labels, g in graphs:
        assert _builder(labels).integer_terms(g) == before[g], g


def test_printer_matches_sympy_on_every_term_shape():
    """Signs, unit and integer coefficients, square roots of products of norms, powers, several blocks."""
    seen = set()
    for labels, g in _some_graphs():
        fb = _builder(labels)
        text = fb.text(g)
        assert text == formula_text(fb.formula(g)), g
        expr = parse_formula(text, fb.symbols)
        assert sp.expand(expr - fb.formula(g)) == 0
        seen.update(("sqrt" in t, "**" in t, t.startswith("-"), "/" in t) for t in text.split(" "))
    assert len(seen) >= 8  # many combinations of the term shapes were printed


def test_zero_contraction_prints_zero():
    # eps contracted with a symmetric pair of legs vanishes identically
    g = parse_index_notation("eps[abc] T1[a] T2[bc]")
    fb = FormulaBuilder([(0, 1), (0, 2)], 1)
    assert fb.integer_terms(g)[0] == {} and fb.text(g) == "0" == formula_text(fb.formula(g))
