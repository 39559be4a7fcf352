"""Relations for dropped candidates: every one is explained, verified exactly at fresh points, or labelled
functional with the cap that stopped the search (and then provably not a combination of earlier graphs)."""

import numpy as np
import pytest

from cartinv.symbolic.graphs import canonical
from cartinv.symbolic.modular import PRIMES, rank_mod_p
from cartinv.symbolic.relations import MAX_ROOT_DEGREE, NoRelation, Relation, RelationFinder
from cartinv.symbolic.select import BasisRequest, derive_basis
from helpers import check_relations_exactly as _check_relations_exactly, modular_values as _values

P = PRIMES[1]  # the prime of helpers.modular_values


@pytest.fixture(scope="module")
def basis_l4():
    return derive_basis(BasisRequest(orders=(0, 1, 2, 3, 4), complete=True))


@pytest.mark.parametrize("which", ["l3d4", "l4"])
def test_every_dropped_candidate_has_a_verified_relation_or_a_stated_cap(which, basis_l3d4, basis_l4):
    basis = basis_l3d4 if which == "l3d4" else basis_l4
    reasons = _check_relations_exactly(basis)
    assert reasons["linear"] >= (2 if which == "l3d4" else 9)  # 2233 and 3333 (and more at l = 4) are linear now
    for d in basis.dropped:
        if d["reason"] == "functional":
            assert f"degree <= {MAX_ROOT_DEGREE} in it" in d["relation"] or "not searched" in d["relation"]
            assert "no relation I*c = P(kept)" in d["relation"]


@pytest.mark.parametrize("which", ["l3d4", "l4"])
def test_functional_ones_are_not_combinations_of_earlier_graphs(which, basis_l3d4, basis_l4):
    """Independent of the search: at fresh points, each functional candidate raises the rank of the graphs of its
    multidegree listed before it (so no linear relation with them exists)."""
    basis = basis_l3d4 if which == "l3d4" else basis_l4
    vals = _values(basis, seed=123, batch=40)
    entries = basis.invariants + basis.dropped
    for d in basis.dropped:
        if d["reason"] != "functional":
            continue
        md = sorted(zip(d["channels"], d["orders"]))
        earlier = [e for e in entries if sorted(zip(e["channels"], e["orders"])) == md and e["id"] != d["id"]
                   and (e["id"].startswith("I") or int(e["id"][1:]) < int(d["id"][1:]))]
        rows = [vals[e["id"]] for e in earlier]
        before = rank_mod_p(np.array(rows, dtype=np.int64), P) if rows else 0
        after = rank_mod_p(np.array(rows + [vals[d["id"]]], dtype=np.int64), P)
        assert after == before + 1, d["id"]


def test_an_implicit_relation_when_a_generator_is_dropped():
    """Preferring a'Q^3 a keeps it before tr Q^3, which is then a ratio: (a.a) tr Q^3 = 3 a'Q^3 a - 3/2 tr Q^2 a'Q a
    (Cayley-Hamilton), not a polynomial in the kept invariants."""
    b = derive_basis(BasisRequest(orders=(1, 2), degree=5, prefer=("T1[a] T2[ab] T2[bc] T2[cd] T1[d]",)))
    trq3 = next(d for d in b.dropped if d["index_notation"] == "T2[ab] T2[ac] T2[bc]")
    assert trq3["reason"] == "implicit"
    assert trq3["relation"] == "I2*D1 = 3*I1 - 3/2*I3*I4" and trq3["id"] == "D1"
    assert trq3["relation_terms"][0] == ["-1", ["I2", "D1"]]
    assert _check_relations_exactly(b)["implicit"] == 1


def test_monic_roots_and_caps_of_the_finder():
    # two vectors: a.b is algebraically independent of a.a and b.b, so the search runs to its cap and says so
    a, b = (0, 1), (1, 1)
    aa, bb, ab = canonical((a, a), [(0, 1, 1)]), canonical((b, b), [(0, 1, 1)]), canonical((a, b), [(0, 1, 1)])
    finder = RelationFinder((a, b))
    none = finder.find_root(ab, "D1", [("I1", aa), ("I2", bb)])
    assert isinstance(none, NoRelation) and none.too_large_at is None
    assert f"degree <= {MAX_ROOT_DEGREE} in it" in none.text()
    capped = NoRelation(4, 3, products_skipped=True).text()
    assert "degree <= 2 in it" in capped and "degree 3 not searched" in capped and "polynomial search skipped" in capped
    # a monic root: over kept [tr Q^4] (= |Q|^4 / 2), |Q|^2 is a root of c**2 = 2 tr Q^4
    q = (0, 2)
    qq = canonical((q, q), [(0, 1, 2)])
    q4 = canonical((q, q, q, q), [(0, 1, 1), (0, 2, 1), (1, 3, 1), (2, 3, 1)])
    root = RelationFinder((q,)).find_root(qq, "D1", [("I1", q4)])
    assert isinstance(root, Relation) and root.power == 2 and root.text("D1") == "D1**2 = 2*I1"
    assert root.to_json("D1") == [["-1", ["D1", "D1"]], ["2", ["I1"]]]


def test_rational_solution_lifts_and_verifies():
    """One solver for every relation (tensor and ACE): exact rationals from two primes, refused when the system is
    inconsistent, and a wrong coefficient fails the fresh-point check."""
    from fractions import Fraction

    from cartinv.symbolic.modular import PRIMES
    from cartinv.symbolic.relations import holds_mod, rational_solution

    rng = np.random.default_rng(5)
    a = rng.integers(0, 1000, size=(12, 3))
    x = [Fraction(-3, 7), Fraction(5, 2), Fraction(0)]

    def rhs(p):
        return np.array([sum(int(v) * (q.numerator * pow(q.denominator, -1, p)) for v, q in zip(row, x)) % p
                         for row in a], dtype=np.int64)

    systems = [(a % p, rhs(p), p) for p in PRIMES]
    assert rational_solution(systems) == x
    assert holds_mod(list(a.T), x, rhs(PRIMES[0]), PRIMES[0])
    assert not holds_mod(list(a.T), [Fraction(-3, 7), Fraction(5, 2), Fraction(1)], rhs(PRIMES[0]), PRIMES[0])
    bad = rhs(PRIMES[0]).copy()
    bad[0] = (bad[0] + 1) % PRIMES[0]
    assert rational_solution([(a % PRIMES[0], bad, PRIMES[0]), systems[1]]) is None


def test_levi_civita_counts_mod_2_in_generator_relations():
    """With eps_mod2 (SO(3) generators), p*p of a pseudoscalar p = det[a, b, c] is a monomial of the O(3)
    multidegree aabbcc (eps eps is a sum of Kronecker contractions); without it, only exact Levi-Civita counts."""
    from collections import Counter

    from cartinv.symbolic.levi_civita import EPS

    a, b, c = (0, 1), (1, 1), (2, 1)
    dots = [canonical([u, v], [(0, 1, 1)]) for u, v in ((a, a), (b, b), (c, c), (a, b), (b, c), (a, c))]
    p = canonical([EPS, a, b, c], [(0, 1, 1), (0, 2, 1), (0, 3, 1)])
    kept = [(f"I{k + 1}", g) for k, g in enumerate(dots + [p])]
    even = Counter({a: 2, b: 2, c: 2})
    with_p = RelationFinder.monomials(even, kept, False, eps_mod2=True)
    without = RelationFinder.monomials(even, kept, False)
    assert (6, 6) in with_p and (6, 6) not in without
    assert sorted(set(with_p) - set(without)) == [(6, 6)]
    assert RelationFinder.monomials(Counter(p.labels), kept, True, eps_mod2=True) == [(6,)]
    # an odd Levi-Civita count needs p times an invariant of multidegree abc, and no kept one has it
    assert RelationFinder.monomials(even + Counter({EPS: 1}), kept, False, eps_mod2=True) == []
