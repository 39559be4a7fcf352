"""ACE refinement (issue 4): exact couplings, conventions, linear and functional pruning, Basis output, errors."""

import functools
import itertools
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from cartinv.symbolic import ace, cg, stf
from cartinv.symbolic.basisfile import loads, validate
from cartinv.symbolic.modular import PRIMES
from cartinv.symbolic.select import RequestError

from helpers import random_rotation


@functools.lru_cache(maxsize=None)
def selection(nu, nmax, lmax, species=1):
    return ace.select_ace(nu, nmax, lmax, species)


@functools.lru_cache(maxsize=None)
def basis(nu, nmax, lmax, species=1):
    return ace.derive_ace_basis(nu, nmax, lmax, species)


# ----------------------------------------------------------------------------------------------- couplings
def test_clebsch_gordan_exact_against_sympy():
    from sympy.physics.wigner import clebsch_gordan

    for j1, j2 in itertools.product(range(4), repeat=2):
        for J in range(abs(j1 - j2), j1 + j2 + 1):
            for m1, m2 in itertools.product(range(-j1, j1 + 1), range(-j2, j2 + 1)):
                if abs(m1 + m2) > J:
                    continue
                c, s = cg.cg(j1, m1, j2, m2, J, m1 + m2)
                ours = sp.Rational(c.numerator, c.denominator) * sp.sqrt(s)
                assert sp.nsimplify(ours - clebsch_gordan(j1, j2, J, m1, m2, m1 + m2)) == 0, (j1, m1, j2, m2, J)
    assert cg.cg(1, 0, 1, 0, 1, 0) == (Fraction(0), 1)  # parity-odd zero
    assert cg.cg(2, 1, 2, -1, 0, 0) == (Fraction(-1, 5), 5)  # (−1)^{l−m}/sqrt(2l+1)


def test_squarefree_sqrt():
    assert cg.squarefree_sqrt(Fraction(8, 3)) == (Fraction(2, 3), 6)
    assert cg.squarefree_sqrt(Fraction(49, 4)) == (Fraction(7, 2), 1)
    with pytest.raises(ValueError):
        cg.squarefree_sqrt(Fraction(-2))


def test_real_harmonics_are_positive_multiples_of_stf_coordinates():
    """c_{l,m} = κ_l Y_{l,m} (component normalisation) with the same κ_l for every m (standard real SH signs)."""
    special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(3)
    u = rng.normal(size=(6, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    theta, phi = np.arccos(u[:, 2]), np.arctan2(u[:, 1], u[:, 0])
    for l in range(5):
        c = stf.y_coordinates(l, u)
        ycomplex = np.stack([special.sph_harm_y(l, m, theta, phi) for m in range(-l, l + 1)], 1) * np.sqrt(4 * np.pi)
        # real from complex with the inverse of cg.complex_from_real_matrix (unitary)
        yreal = (ycomplex @ cg.complex_from_real_matrix(l).conj())
        assert np.abs(yreal.imag).max() < 1e-12
        kappa = float(1 / ace.lambda2(l)) ** 0.5
        np.testing.assert_allclose(c, kappa * yreal.real, atol=1e-12)


# --------------------------------------------------------------------------------------------- enumeration
def test_enumeration_small_case_by_hand():
    fns = ace.enumerate_ace(3, 1, 2)
    got = {(f.ls, f.couplings) for f in fns}
    want = {((0,), ()), ((0, 0), ()), ((1, 1), ()), ((2, 2), ()), ((0, 0, 0), (0,)), ((0, 1, 1), (1,)),
            ((0, 2, 2), (2,)), ((1, 1, 2), (2,)), ((2, 2, 2), (2,))}
    assert got == want and len(fns) == 9
    assert [f.nu for f in fns] == sorted(f.nu for f in fns)
    assert ace.coupling_paths((1, 1, 1, 1)) == [(0, 1), (1, 1), (2, 1)]  # L_2, then L_3 = l_4
    assert ace.coupling_paths((1, 2)) == []
    assert ace.coupling_paths((0, 0, 2)) == []


def test_every_function_is_even_and_ordered():
    fns = ace.enumerate_ace(4, 2, 2, species=2)
    assert all(sum(f.ls) % 2 == 0 for f in fns)
    assert fns == sorted(fns, key=ace.AceFunction.sort_key)
    assert len(set(fns)) == len(fns)


# ------------------------------------------------------------------------------------------------- values
def environment_t(nb, species_of, nmax, lmax, species):
    """Block coordinates T (D,) of one environment: weights R_n(r) = r^(n-1) exp(-r), one channel per (z, n)."""
    r = np.linalg.norm(nb, axis=1)
    parts = []
    for z in range(species):
        for n in range(1, nmax + 1):
            w = r ** (n - 1) * np.exp(-r) * (species_of == z)
            for l in range(lmax + 1):
                parts.append((w[:, None] * stf.y_coordinates(l, nb)).sum(0))
    return np.concatenate(parts)


def reference_value(fn, nb, species_of):
    """B from complex spherical harmonics (scipy) and SymPy's Clebsch–Gordan coefficients, independently."""
    special = pytest.importorskip("scipy.special")
    from sympy.physics.wigner import clebsch_gordan

    r = np.linalg.norm(nb, axis=1)
    u = nb / r[:, None]
    theta, phi = np.arccos(u[:, 2]), np.arctan2(u[:, 1], u[:, 0])

    def a(z, n, l):
        w = r ** (n - 1) * np.exp(-r) * (species_of == z)
        ys = [np.sqrt(4 * np.pi) * special.sph_harm_y(l, m, theta, phi) for m in range(-l, l + 1)]
        return np.array([(w * y).sum() for y in ys])

    ls, chain = fn.ls, fn.chain
    amps = [a(*v) for v in fn.nl]
    total = 0j
    for ms in itertools.product(*[range(-l, l + 1) for l in ls]):
        if sum(ms):
            continue
        coeff, big_m = 1.0, ms[0]
        for k in range(1, len(ls)):
            nxt = big_m + ms[k]
            if abs(nxt) > chain[k]:
                coeff = 0.0
                break
            coeff *= float(clebsch_gordan(chain[k - 1], ls[k], chain[k], big_m, ms[k], nxt))
            big_m = nxt
        if coeff:
            total += coeff * np.prod([x[m + l] for x, m, l in zip(amps, ms, ls)])
    return total


def test_evaluator_matches_independent_reference_two_species():
    rng = np.random.default_rng(11)
    nb = rng.normal(size=(9, 3)) * 1.5
    species_of = rng.integers(0, 2, size=9)
    fns = ace.enumerate_ace(4, 1, 2, species=2)
    ev = ace.AceEvaluator(fns, 1, 2, species=2)
    vals = ev.values(environment_t(nb, species_of, 1, 2, 2)[None])[0]
    for i in rng.choice(len(fns), 30, replace=False):
        ref = reference_value(fns[i], nb, species_of)
        assert abs(ref.imag) < 1e-10 * max(1.0, abs(ref))
        assert abs(ref.real - vals[i]) < 1e-10 * max(1.0, abs(ref)), fns[i]


def test_evaluator_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    fns = ace.enumerate_ace(4, 1, 2)
    ev = ace.AceEvaluator(fns, 1, 2)
    t = rng.normal(size=ev.dim)
    vals, grads = ev.values_and_gradients(t[None])
    np.testing.assert_allclose(vals[0], ev.values(t[None])[0], rtol=1e-13, atol=1e-13)
    eps = 1e-6
    for d in range(ev.dim):
        tp, tm = t.copy(), t.copy()
        tp[d] += eps
        tm[d] -= eps
        num = (ev.values(tp[None])[0] - ev.values(tm[None])[0]) / (2 * eps)
        np.testing.assert_allclose(grads[0, :, d], num, rtol=1e-6, atol=1e-6)


def lambdified(b):
    names = [c["name"] for c in b.coordinates]
    syms = sp.symbols(names)
    local = dict(zip(names, syms))
    return [sp.lambdify(syms, sp.parse_expr(inv["formula"], local_dict=local)) for inv in b.invariants]


def test_formulas_are_invariant_and_match_the_evaluator():
    b = basis(4, 1, 3, 2)
    funcs = lambdified(b)
    kept = ace.functions_of(b)
    ev = ace.AceEvaluator(kept, 1, 3, species=2)
    rng = np.random.default_rng(2)
    for trial in range(3):
        nb = rng.normal(size=(8, 3)) * 1.3
        species_of = rng.integers(0, 2, size=8)
        rot = random_rotation(rng, reflect=bool(trial % 2))
        t0 = environment_t(nb, species_of, 1, 3, 2)
        t1 = environment_t(nb @ rot.T, species_of, 1, 3, 2)
        v0 = np.array([f(*t0) for f in funcs])
        v1 = np.array([f(*t1) for f in funcs])
        np.testing.assert_allclose(v1, v0, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(ev.values(t0[None])[0], v0, rtol=1e-10, atol=1e-10)
    # not trivially invariant: the formulas do depend on every order
    assert {l for f in kept for l in f.ls} == {0, 1, 2, 3}


def test_linear_relations_hold_numerically():
    b = basis(4, 2, 2)
    linear = [d for d in b.dropped if d["reason"] == "linear"]
    assert linear and all(d["relation"] is not None for d in linear)
    everything = {e["id"]: ace.AceFunction.from_json(e) for e in b.invariants + b.dropped}
    ids = list(everything)
    ev = ace.AceEvaluator([everything[i] for i in ids], 2, 2)
    rng = np.random.default_rng(9)
    vals = ev.values(rng.normal(size=(4, ev.dim)))
    col = {i: vals[:, k] for k, i in enumerate(ids)}
    zero = 0
    for d in linear:
        rhs = np.zeros(4)
        for coef, (rid,) in d["relation_terms"]:
            rhs += float(sp.sympify(coef)) * col[rid]
            assert everything[rid].nl == everything[d["id"]].nl  # relations stay within one label tuple
        np.testing.assert_allclose(col[d["id"]], rhs, rtol=1e-9, atol=1e-9 * np.abs(col[d["id"]]).max() + 1e-12)
        zero += d["relation_terms"] == []
    assert zero == b.data["stats"]["zero"] > 0


# ---------------------------------------------------------------------------------------------- pruning
SMALL = [(2, 1, 2), (3, 1, 2), (4, 1, 2), (3, 2, 2), (4, 1, 3), (3, 2, 1), (4, 2, 2)]


@pytest.mark.parametrize("args", SMALL)
def test_functional_count_is_full_jacobian_rank_and_within_bound(args):
    sel = selection(*args)
    c = sel.counts()
    assert c["functional"] == sel.rank == ace.full_jacobian_rank(sel, seed=101) <= sel.bound
    assert c["functional"] <= c["linear"] <= c["full"]


def test_known_counts():
    """Hand-checkable cells: n=1, l≤2: A0, |A1|², |A2|² at ν=2; then A1·A2·A1 and A2³ at ν=3; bound 6 at ν=4."""
    assert selection(2, 1, 2).counts() == {"full": 4, "linear": 4, "functional": 3}
    assert selection(3, 1, 2).counts() == {"full": 9, "linear": 9, "functional": 5}
    assert selection(4, 1, 2).counts() == {"full": 25, "linear": 18, "functional": 6}
    assert selection(4, 1, 2).bound == 6
    assert selection(4, 1, 3).counts()["functional"] == 13  # background §4: (L+1)² − 3 for L = 3


def test_linear_count_is_global_value_rank():
    """Linear independence decided per label tuple equals the rank of all values together (cross-tuple check)."""
    sel = selection(4, 2, 2)
    fns = sel.functions
    for p in PRIMES:
        m = ace.ModularAce(2, 2, 1, p)
        pts = m.points(len(fns) + 8, 77)
        vals = np.zeros((len(fns), len(pts)), dtype=np.int64)
        for idx in ace._by_pattern(range(len(fns)), fns).values():
            vals[idx] = m.values([fns[i] for i in idx], pts)
        assert ace.rank_mod_p(vals, p) == sel.counts()["linear"]
        kept = [i for i, s in enumerate(sel.status) if s != "linear"]
        assert ace.rank_mod_p(vals[kept], p) == len(kept)


@pytest.mark.parametrize("args", [(4, 2, 2), (5, 1, 2), (4, 1, 4)])
def test_linear_counts_equal_invariant_theory(args):
    """Per label tuple, the linearly independent B functions span all invariants of that multidegree
    (ACE completeness), whose dimension follows from SO(3) characters: an independent check of the linear stage."""
    sel = selection(*args)
    groups = {}
    for f, s in zip(sel.functions, sel.status):
        groups.setdefault(f.nl, 0)
        groups[f.nl] += s != "linear"
    singles = ace.single_particle_labels(sel.nmax, sel.lmax, sel.species)
    checked = 0
    for order in range(1, sel.nu + 1):
        for tup in itertools.combinations_with_replacement(singles, order):
            assert groups.get(tup, 0) == ace.invariant_dimension(tup), tup
            checked += 1
    assert checked > 20
    assert ace.linear_dimension(*args) == sel.counts()["linear"]


def test_invariant_dimension_small_cases():
    assert ace.invariant_dimension(((0, 1, 1), (0, 1, 1))) == 1  # |A1|²
    assert ace.invariant_dimension(((0, 1, 1), (0, 2, 1))) == 1  # A1·A1'
    assert ace.invariant_dimension(((0, 1, 1),) * 3) == 0  # odd
    assert ace.invariant_dimension(((0, 1, 1),) * 4) == 1  # |A1|⁴ only
    assert ace.invariant_dimension(((0, 1, 2),) * 3) == 1  # tr Q³


def test_dropped_members_do_not_raise_the_rank():
    """The pruned basis spans the same functions: adding any dropped member back leaves the rank unchanged."""
    sel = selection(4, 2, 2)
    kept = [i for i, s in enumerate(sel.status) if s == "kept"]
    dropped = [i for i, s in enumerate(sel.status) if s != "kept"]
    fns = sel.functions
    for p in PRIMES:
        m = ace.ModularAce(2, 2, 1, p)
        pt = m.points(1, 55)[0]
        rows = np.zeros((len(fns), m.dim), dtype=np.int64)
        for idx in ace._by_pattern(range(len(fns)), fns).values():
            rows[idx] = m.jacobian_rows([fns[i] for i in idx], pt)
        base = ace.rank_mod_p(rows[kept], p)
        assert base == len(kept)
        for i in dropped:
            assert ace.rank_mod_p(rows[kept + [i]], p) == base, fns[i]


def test_greedy_keeps_low_order_first():
    sel = selection(4, 1, 2)
    kept = sel.kept
    assert kept[0].nl == ((0, 1, 0),)
    assert [f.nu for f in kept] == sorted(f.nu for f in kept)
    # A0² is the first functional drop (a function of A0)
    first_drop = next(f for f, s in zip(sel.functions, sel.status) if s == "functional")
    assert first_drop.nl == ((0, 1, 0), (0, 1, 0))


# ------------------------------------------------------------------------------------------------ Basis file
def test_basis_file_validates_and_is_deterministic():
    b = basis(4, 2, 2)
    validate(b.data)
    again = ace.derive_ace_basis(4, 2, 2)
    assert again.to_json() == b.to_json()
    assert loads(b.to_json()).content_hash() == b.content_hash()
    d = b.data
    assert d["kind"] == "ace" and d["request"]["channels"] == 2 and d["request"]["orders"] == [0, 1, 2]
    assert [c["name"] for c in d["coordinates"]][:2] == ["T0c0_0", "T1c0_0"]
    assert d["rank"] == len(d["invariants"]) == d["stats"]["functional"]
    assert d["complete"] == (d["rank"] == d["bound"])
    assert d["stats"]["full"] == len(d["invariants"]) + len(d["dropped"])
    for inv in d["invariants"]:
        assert {"id", "nu", "nl", "couplings", "degree", "formula"} <= set(inv)
    for dr in d["dropped"]:
        assert dr["reason"] in ("linear", "functional") and "relation" in dr


def test_format_counts_table():
    text = ace.format_counts(basis(4, 1, 2))
    lines = text.splitlines()
    assert lines[-2].split() == ["all", "25", "18", "6"]
    assert "bound 6" in lines[-1] and "complete" in lines[-1]
    from conftest import derived

    tensor_basis = derived((0, 1, 2), degree=2)
    with pytest.raises(ValueError, match="needs an ACE Basis"):
        ace.format_counts(tensor_basis)


def test_codegen_parses_the_ace_formulas():
    plan = pytest.importorskip("cartinv.codegen.plan")
    b = basis(3, 1, 2)
    exprs = plan.invariant_exprs(b)
    assert len(exprs) == len(b.invariants)
    t = np.random.default_rng(1).normal(size=len(b.coordinates))
    subs = {sp.Symbol(c["name"]): v for c, v in zip(b.coordinates, t)}
    ev = ace.AceEvaluator(ace.functions_of(b), 1, 2)
    np.testing.assert_allclose([float(e.subs(subs)) for e in exprs], ev.values(t[None])[0], rtol=1e-10)


def test_runtime_evaluates_the_ace_basis_unchanged(tmp_path, monkeypatch):
    """Generated torch kernels of an ACE Basis (weights [pairs, 1, channels]) equal the B functions."""
    load_mod = pytest.importorskip("cartinv.runtime.kernels.load")
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("CARTINV_CACHE", str(tmp_path))
    b = basis(3, 2, 1)
    module = load_mod.load(b, backend="torch")
    rng = np.random.default_rng(4)
    r = rng.normal(size=(10, 3))
    centers = np.repeat([0, 1], 5)
    w = rng.random(size=(10, 1, 2))
    got = module(torch.tensor(r), torch.tensor(centers), torch.tensor(w), 2).detach().numpy()[:, 0, :]
    t = np.zeros((2, 8))
    for p in range(10):
        t[centers[p]] += np.concatenate([w[p, 0, c] * stf.y_coordinates(l, r[p]) for c in range(2) for l in range(2)])
    want = ace.AceEvaluator(ace.functions_of(b), 2, 1).values(t)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("args, fragment", [
    ((0, 3, 3), "nu (correlation order) must be at least 1"),
    ((2, 3, -1), "lmax must be non-negative"),
    ((2, 0, 2), "nmax"),
    ((2, 2, 2, 0), "species must be at least 1"),
    ((True, 2, 2), "nu must be an integer"),
    ((2.0, 2, 2), "nu must be an integer"),
    ((7, 1, 1), "exceeds the supported maximum"),
    ((6, 8, 8), "request too large"),
    ((2, 8, 2, 4), "channels exceeds"),
])
def test_bad_requests(args, fragment):
    with pytest.raises(ace.AceRequestError) as info:
        ace.derive_ace_basis(*args)
    assert isinstance(info.value, ValueError) and isinstance(info.value, RequestError)
    msg = str(info.value)
    assert fragment in msg and "\n" not in msg


# ------------------------------------------------------------------------------------------------ largest cell
def test_largest_table_cell():
    """ν 4, n 4, l 4 (also run by benchmarks/ace_counts.py)."""
    sel = selection(4, 4, 4)
    assert sel.counts() == {"full": 9597, "linear": 7913, "functional": 97}
    assert sel.bound == 97 and ace.full_jacobian_rank(sel) == 97
