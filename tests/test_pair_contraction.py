"""The interaction layer's pair contraction: the grouped (padded bmm) form against the per-pair form, its layout,
its first and second derivatives, and which form runs where."""

import pytest

torch = pytest.importorskip("torch")

from cartinv.runtime.models import pair_contraction as pc  # noqa: E402

DT = torch.float64


def pairs(n_atoms, n_pairs, seed, lonely=()):
    """Random neighbour indices (atoms in ``lonely`` are never a neighbour), radial values and atom weights."""
    g = torch.Generator().manual_seed(seed)
    allowed = torch.tensor([a for a in range(n_atoms) if a not in lonely])
    j = allowed[torch.randint(len(allowed), (n_pairs,), generator=g)]
    s = torch.randn(n_pairs, 5, generator=g, dtype=DT)
    z = torch.randn(n_atoms, 5, 7, generator=g, dtype=DT)
    return s, z, j


def test_layout_gives_every_pair_its_own_slot_in_its_neighbours_row():
    _, _, j = pairs(9, 60, seed=0, lonely=(4,))
    groups = pc.pair_groups(j, 9, max_padding=10)
    counts = torch.bincount(j, minlength=9)
    assert groups.width == int(counts.max()) and groups.n_atoms == 9
    assert torch.equal(groups.flat // groups.width, j)
    assert len(set(groups.flat.tolist())) == 60
    slots = groups.flat % groups.width
    for a in range(9):  # the pairs of neighbour a fill slots 0..count-1, in pair order
        assert slots[j == a].tolist() == list(range(int(counts[a])))


def test_layout_is_refused_when_padding_would_exceed_the_bound():
    j = torch.tensor([0] * 10 + [1, 2, 3])  # 4 rows x 10 slots = 40 slots for 13 pairs
    assert pc.pair_groups(j, 4, max_padding=3.0) is None
    assert pc.pair_groups(j, 4, max_padding=40 / 13).width == 10
    assert pc.pair_groups(j[:0], 4) is None


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_grouped_equals_per_pair(dtype):
    s, z, j = pairs(11, 90, seed=1, lonely=(0, 7))
    j = j.to(dtype)
    ref = pc.per_pair(s, z, j.long())
    got = pc.grouped(s, z, pc.pair_groups(j, 11))
    assert ref.abs().max() > 1
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-13)
    # against the sum written out
    torch.testing.assert_close(ref, torch.einsum("pr,prc->pc", s, z[j.long()]), rtol=0, atol=1e-13)


def test_grouped_first_and_second_derivatives():
    s, z, j = pairs(5, 14, seed=2)
    groups = pc.pair_groups(j, 5)
    s.requires_grad_(True)
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: pc.grouped(a, b, groups), (s, z))
    assert torch.autograd.gradgradcheck(lambda a, b: pc.grouped(a, b, groups), (s, z))
    # and the same first and second derivatives as the per-pair form
    cot = torch.randn(14, 7, dtype=DT)
    results = []
    for form in (lambda a, b: pc.grouped(a, b, groups), lambda a, b: pc.per_pair(a, b, j)):
        gs, gz = torch.autograd.grad((form(s, z) * cot).sum(), (s, z), create_graph=True)
        results.append((gs, gz, *torch.autograd.grad(gs.pow(2).sum() + gz.pow(3).sum(), (s, z))))
    for got, ref in zip(*results):
        assert ref.abs().max() > 0.1
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


def test_contract_runs_grouped_on_cpu_and_per_pair_when_padding_is_wasteful(monkeypatch):
    calls = []
    real_grouped, real_per_pair = pc.grouped, pc.per_pair
    monkeypatch.setattr(pc, "grouped", lambda *a: calls.append("grouped") or real_grouped(*a))
    monkeypatch.setattr(pc, "per_pair", lambda *a: calls.append("per_pair") or real_per_pair(*a))
    s, z, j = pairs(6, 40, seed=3)
    w = pc.contract(s, z, j)
    j_skewed = torch.tensor([0] * 30 + [1, 2, 3, 4, 5])
    w_skewed = pc.contract(s[:35], z, j_skewed)
    assert calls == ["grouped", "per_pair"]
    torch.testing.assert_close(w, real_per_pair(s, z, j), rtol=0, atol=1e-13)
    torch.testing.assert_close(w_skewed, real_per_pair(s[:35], z, j_skewed), rtol=0, atol=1e-13)
    monkeypatch.setattr(pc, "MAX_PADDING", 100.0)  # the bound is read at call time
    pc.contract(s[:35], z, j_skewed)
    assert calls[-1] == "grouped"
