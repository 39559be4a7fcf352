"""hippynn HIP-HOP-NN peer: column-by-column check of the documented contractions."""

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hippynn")
torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import peers  # noqa: E402

RTOL = 1e-10


# ---------------------------------------------------------------- numpy references
def stf(x):
    """Symmetric traceless part of a Cartesian tensor of order 0..3 (trailing axes)."""
    l = x.ndim - 1  # leading axis = batch
    if l <= 1:
        return x
    if l == 2:
        s = 0.5 * (x + np.swapaxes(x, 1, 2))
        tr = np.einsum("naa->n", s)
        return s - tr[:, None, None] * np.eye(3) / 3.0
    if l == 3:
        perms = [(0, 1, 2, 3), (0, 1, 3, 2), (0, 2, 1, 3), (0, 2, 3, 1), (0, 3, 1, 2), (0, 3, 2, 1)]
        s = sum(np.transpose(x, p) for p in perms) / 6.0
        t = np.einsum("naac->nc", s)
        d = np.eye(3)
        corr = (np.einsum("ab,nc->nabc", d, t) + np.einsum("ac,nb->nabc", d, t)
                + np.einsum("bc,na->nabc", d, t))
        return s - corr / 5.0
    raise ValueError(l)


def random_stf(rng, n):
    T0 = rng.standard_normal(n)
    T1 = rng.standard_normal((n, 3))
    T2 = stf(rng.standard_normal((n, 3, 3)))
    T3 = stf(rng.standard_normal((n, 3, 3, 3)))
    return T0, T1, T2, T3


def parse_notation(text):
    """'T2[ab] T3[abc]' -> ([2, 3], 'ab,abc->')."""
    ops = re.findall(r"T(\d)(?:\[([a-z]*)\])?", text)
    assert " ".join(f"T{o}" + (f"[{i}]" if i else "") for o, i in ops) == text.strip(), text
    orders = [int(o) for o, _ in ops]
    subs = [i for _, i in ops]
    for o, s in zip(orders, subs):
        assert len(s) == o, text
    letters = "".join(subs)
    assert all(letters.count(c) == 2 for c in letters), f"not a full contraction: {text}"
    return orders, ",".join(subs) + "->"


def reference_column(entry, tensors):
    orders, spec = parse_notation(entry["index_notation"])
    if orders == [0]:
        return tensors[0].copy()
    spec = ",".join("n" + s for s in spec[:-2].split(",")) + "->n"
    return np.einsum(spec, *[tensors[o] for o in orders])


def to_torch(*arrays, shape):
    return [torch.from_numpy(a).reshape(*shape, *a.shape[1:]) for a in arrays]


def assert_columns(got, ref, name):
    scale = np.max(np.abs(ref))
    assert scale > 0, name
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=RTOL * scale, err_msg=name)


# ---------------------------------------------------------------- tests
def test_column_table_is_consistent():
    cols = peers.HIPPYNN_COLUMNS
    assert [c["column"] for c in cols] == list(range(13))
    notations = [c["index_notation"] for c in cols]
    assert len(set(notations)) == 13
    for c in cols:
        orders, _ = parse_notation(c["index_notation"])
        assert len(orders) == c["degree"]
        assert sum(orders) % 2 == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_column_matches_documented_contraction(seed):
    rng = np.random.default_rng(seed)
    n_atoms, n_ch = 5, 4
    tensors = random_stf(rng, n_atoms * n_ch)
    T = to_torch(*tensors, shape=(n_atoms, n_ch))
    out = peers.hippynn_invariants(*T)
    assert out.shape == (n_atoms, n_ch, 13)
    assert out.dtype == torch.float64
    got = out.reshape(-1, 13).numpy()
    for entry in peers.HIPPYNN_COLUMNS:
        k = entry["column"]
        ref = entry["factor"] * reference_column(entry, tensors)
        assert_columns(got[:, k], ref, f"column {k}: {entry['index_notation']}")


def test_columns_distinguish_wrong_contractions():
    """A swapped pairing must be detected (guards against a vacuous comparison)."""
    rng = np.random.default_rng(7)
    tensors = random_stf(rng, 6)
    got = peers.hippynn_invariants(*to_torch(*tensors, shape=(6, 1))).reshape(-1, 13).numpy()
    # col 12 (T3 T2 | T3 T2 chain) differs from col 11 (T3 T3 | T2 T2 pairing) ...
    ref11 = reference_column(peers.HIPPYNN_COLUMNS[11], tensors)
    with pytest.raises(AssertionError):
        assert_columns(got[:, 12], ref11, "col 12 vs col 11 contraction")
    # ... and a factor of 2 is detected.
    ref2 = reference_column(peers.HIPPYNN_COLUMNS[2], tensors)
    with pytest.raises(AssertionError):
        assert_columns(got[:, 2], 2 * ref2, "factor")


def test_coordinates_are_free_components():
    rng = np.random.default_rng(3)
    T0, T1, T2, T3 = random_stf(rng, 4)
    coords = peers.cartesian_to_hippynn_coords(*[torch.from_numpy(a) for a in (T0, T1, T2, T3)]).numpy()
    free2 = [T2[:, 0, 0], T2[:, 0, 1], T2[:, 0, 2], T2[:, 1, 1], T2[:, 1, 2]]
    free3 = [T3[:, 0, 0, 0], T3[:, 0, 0, 1], T3[:, 0, 0, 2], T3[:, 0, 1, 1], T3[:, 0, 1, 2],
             T3[:, 1, 1, 1], T3[:, 1, 1, 2]]
    expected = np.stack([T0, *T1.T, *free2, *free3], axis=1)
    np.testing.assert_allclose(coords, expected, rtol=1e-12, atol=1e-12)
    back = peers.hippynn_coords_to_cartesian(torch.from_numpy(coords))
    for a, b in zip(back, (T0, T1, T2, T3)):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-12, atol=1e-12)


def _pairs(rng, n_atoms, n_pairs):
    first = np.sort(rng.integers(0, n_atoms, n_pairs))
    vec = rng.standard_normal((n_pairs, 3)) * 1.5
    return first, vec


def test_moments_are_unnormalised_stf_parts():
    rng = np.random.default_rng(4)
    n_atoms, n_pairs, n_ch = 4, 30, 3
    first, vec = _pairs(rng, n_atoms, n_pairs)
    w = rng.standard_normal((n_pairs, n_ch))
    u = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    Y = [np.ones(n_pairs), u, stf(np.einsum("pa,pb->pab", u, u)),
         stf(np.einsum("pa,pb,pc->pabc", u, u, u))]
    # explicit closed forms of the STF parts (no normalisation)
    I3 = np.eye(3)
    np.testing.assert_allclose(Y[2], np.einsum("pa,pb->pab", u, u) - I3 / 3, atol=1e-14)
    refs = []
    for l, y in enumerate(Y):
        acc = np.zeros((n_atoms, n_ch) + (3,) * l)
        np.add.at(acc, first, np.einsum("pc,p...->pc...", w, y))
        refs.append(acc)
    got = peers.hippynn_moments(torch.from_numpy(vec), torch.from_numpy(first), torch.from_numpy(w),
                                n_atoms, cartesian=True)
    for l in range(4):
        np.testing.assert_allclose(got[l].numpy(), refs[l], rtol=1e-12, atol=1e-12, err_msg=f"l={l}")
    # invariants of those moments agree with the column table
    inv = peers.hippynn_forward(torch.from_numpy(vec), torch.from_numpy(first), torch.from_numpy(w), n_atoms)
    flat = [r.reshape(n_atoms * n_ch, *r.shape[2:]) for r in refs]
    for entry in peers.HIPPYNN_COLUMNS:
        assert_columns(inv.reshape(-1, 13)[:, entry["column"]].numpy(),
                       reference_column(entry, flat), entry["index_notation"])


def test_full_hop_layer_matches_tied_weight_moments():
    """HOPInteractionLayer's internal invariants == hippynn_forward with w_c(p) = sum V s z."""
    rng = np.random.default_rng(5)
    n_atoms, n_pairs, nf_in, nf_out, n_dist = 5, 40, 3, 4, 6
    first, vec = _pairs(rng, n_atoms, n_pairs)
    second = rng.integers(0, n_atoms, n_pairs)
    vec = vec / np.linalg.norm(vec, axis=1, keepdims=True) * rng.uniform(1.0, 5.0, (n_pairs, 1))
    torch.manual_seed(0)
    layer = peers.make_hippynn_hop_layer(nf_in, nf_out, n_dist=n_dist)
    captured = {}
    layer.invars.register_forward_hook(lambda m, i, o: captured.setdefault("inv", o))
    z = torch.from_numpy(rng.standard_normal((n_atoms, nf_in)))
    pv, pf, ps = torch.from_numpy(vec), torch.from_numpy(first), torch.from_numpy(second)
    out = peers.hippynn_hop_layer_forward(layer, z, pf, ps, pv)
    assert out.shape == (n_atoms, nf_out)
    layer_inv = captured["inv"].reshape(n_atoms, nf_out, 13)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = layer.sensitivity(pv.norm(dim=1))  # [P, n_dist]
        w = torch.einsum("pn,ncf,pf->pc", s, layer.int_weights, z[ps])
    ours = peers.hippynn_forward(pv, pf, w, n_atoms)
    np.testing.assert_allclose(layer_inv.detach().numpy(), ours.numpy(), rtol=1e-10,
                               atol=1e-10 * ours.abs().max().item())


def test_forward_backward_and_double_backward():
    rng = np.random.default_rng(6)
    n_atoms, n_pairs, n_ch = 3, 10, 2
    first, vec = _pairs(rng, n_atoms, n_pairs)
    pv = torch.from_numpy(vec).requires_grad_(True)
    w = torch.from_numpy(rng.standard_normal((n_pairs, n_ch))).requires_grad_(True)
    pf = torch.from_numpy(first)
    assert torch.autograd.gradcheck(lambda a, b: peers.hippynn_forward(a, pf, b, n_atoms), (pv, w))
    assert torch.autograd.gradgradcheck(lambda a, b: peers.hippynn_forward(a, pf, b, n_atoms).sum(), (pv, w))


def test_single_row_input():
    rng = np.random.default_rng(8)
    tensors = random_stf(rng, 1)
    got = peers.hippynn_invariants(*to_torch(*tensors, shape=(1, 1)))
    assert got.shape == (1, 1, 13)
    for entry in peers.HIPPYNN_COLUMNS:
        assert_columns(got[0, 0, entry["column"]].numpy()[None], reference_column(entry, tensors),
                       entry["index_notation"])
