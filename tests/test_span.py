"""The span check: in every listed multidegree the contraction graphs reach the exact Molien dimension."""

import json

import pytest

from cartinv.symbolic import basisfile, molien, report, span
from cartinv.symbolic.basisfile import BasisFileError
from cartinv.symbolic.select import BasisRequest, derive_basis


def _molien_total(orders, degree):
    counts = molien.count(list(orders), degree)["by_degree"]
    return sum(counts[str(d)] for d in range(1, degree + 1))


@pytest.mark.parametrize("orders", [(0, 1, 2, 3), (0, 1, 2, 3, 4)])
def test_search_records_a_span_equal_to_the_molien_dimension(orders, basis_l3d4):
    b = basis_l3d4 if len(orders) == 4 else derive_basis(BasisRequest(orders=orders, complete=True))
    s = b.data["span_check"]
    # every multidegree of degree 1..4 with an even total order was listed, and their dimensions add up to the
    # Molien series, computed here independently of the search
    assert s["max_degree"] == 4 and s["group"] == "o3"
    assert s["multidegrees"] == sum(1 for d in range(1, 5) for md in molien.multidegrees(len(orders), d)
                                    if sum(n * l for n, l in zip(md, orders)) % 2 == 0)
    assert s["rank"] == s["dimension"] == _molien_total(orders, 4)
    assert s["graphs"] == b.data["stats"]["candidates"]  # the candidates (with products) are all the graphs
    assert f"rank {s['rank']} = Molien dimension {s['dimension']}" in report.explain(b)


def test_flexible_search_checks_the_multidegrees_it_listed(basis_l3_flexible):
    s = basis_l3_flexible.data["span_check"]
    assert s["rank"] == s["dimension"] > 0 and 1 <= s["max_degree"] <= 6


def test_binary_sextic_to_degree_10_and_channels():
    t3 = ((0, 3),)
    s = span.check_span(t3, [t3 * d for d in range(1, 11)])
    # l = 3 alone, O(3): 1, 2, 3, 4, 6 invariants in degrees 2, 4, 6, 8, 10 (sampled graphs above degree 6)
    assert (s.max_degree, s.dimension, s.rank) == (10, 16, 16)
    two = ((0, 2), (1, 2))
    s = span.check_span(two, [((0, 2),) * a + ((1, 2),) * (d - a) for d in range(1, 7) for a in range(d + 1)])
    assert s.rank == s.dimension == sum(
        molien.invariant_dimension((2, 2), (a, d - a)) for d in range(1, 7) for a in range(d + 1))


def test_a_shortfall_stops_the_search_naming_the_multidegree(monkeypatch):
    real = molien.invariant_dimension

    def one_too_many(orders, md, group="o3"):
        return real(orders, md, group) + (1 if md == (0, 2, 1) else 0)

    monkeypatch.setattr(span.molien, "invariant_dimension", one_too_many)
    with pytest.raises(span.SpanError, match=r"multidegree \{'0:1': 2, '0:2': 1\} span 1 of the 2 invariants"):
        derive_basis(BasisRequest(orders=(0, 1, 2), degree=3))


@pytest.mark.parametrize("edit,match", [
    (lambda s: s.update(rank=s["rank"] - 1), r"span_check\.rank: must equal span_check\.dimension"),
    (lambda s: s.update(group="so3"), r"span_check\.group: must be 'o3'"),
    (lambda s: s.update(max_degree=99), r"span_check\.max_degree: 99 is outside"),
    (lambda s: s.update(note="x"), r"span_check: has an unknown key 'note'"),
    (lambda s: s.pop("graphs"), r"span_check: lacks 'graphs'"),
    (lambda s: s.update(multidegrees="37"), r"span_check\.multidegrees"),
])
def test_tampered_span_records_are_refused(basis_l3d4, edit, match):
    data = json.loads(basis_l3d4.to_json())
    edit(data["span_check"])
    with pytest.raises(BasisFileError, match=match):
        basisfile.loads(json.dumps(data))


def test_files_without_a_span_record_still_load(basis_l3d4):
    data = json.loads(basis_l3d4.to_json())
    del data["span_check"]
    b = basisfile.loads(json.dumps(data))
    assert report.span_sentence(b) is None and "span check" not in report.explain(b)
