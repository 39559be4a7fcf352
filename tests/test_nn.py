"""TensorInvariantLayer and CartinvPotential: against an independent numpy reference, symmetries, derivatives,
isolated atoms, persistence and error messages."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cartinv.runtime.models.nn import InvariantNorm, RadialBasis, TensorInvariantLayer, invariant_degrees  # noqa: E402
from cartinv.runtime.models.potential import CartinvPotential, pair_forces  # noqa: E402
from cartinv.symbolic import stf  # noqa: E402

from helpers import einsum_value, random_rotation  # noqa: E402

DT = torch.float64


@pytest.fixture(autouse=True)
def _fp64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cartinv_cache")


def cluster(n=6, seed=0, spread=1.6, cutoff=None):
    """Random atoms and the full directed pair list (optionally only pairs within cutoff)."""
    rng = np.random.default_rng(seed)
    pos = torch.tensor(rng.normal(size=(n, 3)) * spread)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = i != j
    i, j = i[keep], j[keep]
    rij = pos[j] - pos[i]
    if cutoff is not None:
        inside = rij.norm(dim=1) < cutoff
        i, j, rij = i[inside], j[inside], rij[inside]
    return pos, i, j, rij


# ---------------------------------------------------------------------------------------------- pieces
@pytest.mark.parametrize("kind", ["bessel", "gaussian"])
def test_radial_basis_vanishes_smoothly_at_cutoff(kind):
    rb = RadialBasis(5, 3.0, kind=kind)
    d = torch.tensor([0.4, 1.0, 2.9, 3.0 - 1e-7, 3.0, 3.5], requires_grad=True)
    s = rb(d)
    assert s.shape == (6, 5)
    assert torch.all(s[-2:] == 0)
    assert s[:3].abs().max() > 0.05
    (g,) = torch.autograd.grad(s.sum(), d)
    assert abs(float(g[3])) < 1e-5 and float(g[4]) == 0.0 and float(g[5]) == 0.0
    assert float(g[:3].abs().max()) > 1e-2
    with pytest.raises(ValueError, match="radial kind"):
        RadialBasis(4, 3.0, kind="chebyshev")
    with pytest.raises(ValueError, match="cutoff"):
        RadialBasis(4, -1.0)


@pytest.mark.parametrize("eps", [1e-3, 1.0])
def test_invariant_norm_root_scales_like_the_moments(eps):
    degrees = [1, 2, 3, 4]
    norm = InvariantNorm(degrees, channels=2, mode="root", eps=eps, dtype=torch.float64)
    with torch.no_grad():
        norm.scale.copy_(torch.tensor([1.0, 0.5, 2.0, 3.0]))
    x = torch.tensor([[0.9, 2.0, -3.0, 5.0], [-0.4, 0.7, 1.5, -0.2]], dtype=torch.float64).reshape(1, 2, 4)
    d = torch.tensor(degrees, dtype=x.dtype)
    expected = x * (x.abs() + eps) ** (1 / d - 1) * norm.scale
    np.testing.assert_allclose(norm(x).detach().numpy(), expected.detach().numpy(), rtol=1e-14)
    # degree-d invariants of moments scaled by lam scale by lam^d; after the root, by lam (|I| >> eps)
    lam = 7.0
    base = x * 1e8
    ratio = norm(base * lam**d) / norm(base)
    np.testing.assert_allclose(ratio.detach().numpy(), lam, rtol=3e-3)
    assert torch.equal(torch.sign(norm(x)), torch.sign(x))
    # smooth at zero: slope scale * eps^(1/d - 1) at 0 and on both sides of it (finite forces on symmetric sites)
    slope = torch.tensor([eps ** (1.0 / k - 1.0) for k in degrees]) * norm.scale.detach()
    for at in (0.0, 1e-12, -1e-12):
        point = torch.full((1, 1, 4), at, requires_grad=True)
        (g,) = torch.autograd.grad(norm(point).sum(), point)
        np.testing.assert_allclose(g.reshape(-1).numpy(), slope.numpy(), rtol=1e-6)


def test_invariant_norm_group_normalises_each_invariant_over_channels():
    norm = InvariantNorm([1, 2, 3], channels=4, mode="group")
    with torch.no_grad():
        norm.group.weight.copy_(torch.linspace(0.5, 2.0, 12))
        norm.group.bias.copy_(torch.linspace(-1.0, 1.0, 12))
    x = torch.randn(5, 4, 3)
    out = norm(x)
    mean = x.mean(dim=1, keepdim=True)
    var = x.var(dim=1, unbiased=False, keepdim=True)
    ref = (x - mean) / torch.sqrt(var + 1e-5)
    weight = norm.group.weight.reshape(3, 4).t()  # [channel, invariant]
    bias = norm.group.bias.reshape(3, 4).t()
    np.testing.assert_allclose(out.detach().numpy(), (ref * weight + bias).detach().numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="normalization"):
        InvariantNorm([1], 1, mode="batch")


# ---------------------------------------------------------------------------------------------- the layer
def reference_invariants(layer, feats, i, j, rij):
    """Numpy: w = V s z_j, T = sum_j w Y(r̂), then each invariant as the Cartesian einsum of its graph."""
    basis = layer.basis
    d = rij.norm(dim=1)
    s = layer.radial(d).detach().numpy()  # RadialBasis is tested on its own above
    V = layer.int_weights.detach().numpy()  # [C * B, n_radial, n_in]
    z = feats.detach().numpy()
    w = np.einsum("cnb,pn,pb->pc", V, s, z[j.numpy()])
    n_atoms, groups, nb = feats.shape[0], layer.channels, basis.channels
    w = w.reshape(-1, groups, nb)
    orders = sorted(basis.orders)
    y = {l: stf.y_coordinates(l, rij.detach().numpy()) for l in orders}
    out = np.zeros((n_atoms, groups, len(basis.invariants)))
    for a in range(n_atoms):
        sel = (i.numpy() == a)
        for g in range(groups):
            cart = {}
            for c in range(nb):
                for l in orders:
                    coords = (w[sel, g, c, None] * y[l][sel]).sum(axis=0)
                    cart[(c, l)] = stf.to_cartesian(l, coords)
            for k, entry in enumerate(basis.invariants):
                out[a, g, k] = einsum_value(entry, cart)
    return out


def make_layer(basis, n_in=3, n_out=4, channels=2, normalization="none", **kw):
    torch.manual_seed(1)
    layer = TensorInvariantLayer(basis, n_in, n_out, n_radial=4, cutoff=3.5, channels=channels,
                                 normalization=normalization, backend="torch", **kw)
    return layer


@pytest.mark.parametrize("name", ["lmax3_deg4", "lmax2_deg4"])
def test_layer_invariants_match_numpy_reference(name):
    layer = make_layer(name)
    _, i, j, rij = cluster(6, seed=2, cutoff=3.5)
    feats = torch.randn(6, 3)
    got = layer.invariant_features(feats, i, j, rij).detach().numpy()
    ref = reference_invariants(layer, feats, i, j, rij)
    assert np.abs(ref).max() > 1e-3
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())
    # output = mixing of the (normalised) invariants + self-interaction
    out = layer(feats, i, j, rij).detach().numpy()
    mix = np.einsum("nck,cko->no", ref, layer.mixing.detach().numpy())
    selfpart = layer.selfint(feats).detach().numpy()
    np.testing.assert_allclose(out, mix + selfpart, rtol=1e-10, atol=1e-10)


def test_layer_with_a_basis_that_couples_channels(monkeypatch, cache):
    from cartinv.symbolic.select import BasisRequest, derive_basis

    monkeypatch.setenv("CARTINV_CACHE", str(cache))
    basis = derive_basis(BasisRequest(orders=(0, 1, 2), degree=3, channels=2), name="test_orders012_ch2")
    assert basis.channels == 2 and any(len(set(inv["channels"])) == 2 for inv in basis.invariants)
    layer = make_layer(basis, channels=3)
    assert layer.int_weights.shape[0] == 6  # 3 groups x 2 coupled channels
    _, i, j, rij = cluster(5, seed=3, cutoff=3.5)
    feats = torch.randn(5, 3)
    got = layer.invariant_features(feats, i, j, rij).detach().numpy()
    ref = reference_invariants(layer, feats, i, j, rij)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("normalization", ["root", "group"])
def test_layer_is_invariant_and_equivariant(normalization):
    layer = make_layer("lmax3_deg4", normalization=normalization)
    _, i, j, rij = cluster(7, seed=4)
    feats = torch.randn(7, 3)
    out = layer(feats, i, j, rij)
    rot = torch.tensor(random_rotation(np.random.default_rng(0), reflect=True))
    np.testing.assert_allclose(layer(feats, i, j, rij @ rot.T).detach().numpy(), out.detach().numpy(), atol=1e-11)
    perm = torch.randperm(7)
    inv = torch.argsort(perm)  # new index of old atom k is inv[k]
    out_p = layer(feats[perm], inv[i], inv[j], rij)
    np.testing.assert_allclose(out_p.detach().numpy(), out[perm].detach().numpy(), atol=1e-11)


def test_isolated_atoms_cutoff_and_empty_pair_list():
    layer = make_layer("lmax3_deg4", normalization="root")
    _, i, j, rij = cluster(5, seed=5, cutoff=3.5)
    feats = torch.randn(6, 3)  # atom 5 has no pairs
    out = layer(feats, i, j, rij)
    np.testing.assert_allclose(out[5].detach().numpy(), layer.selfint(feats[5]).detach().numpy(), atol=1e-14)
    # pairs at or beyond the cutoff change nothing (a neighbour list with a skin is fine)
    far = torch.tensor([[3.5, 0.0, 0.0], [0.0, 3.6, 0.1]])
    out_far = layer(feats, torch.cat([i, torch.tensor([0, 5])]), torch.cat([j, torch.tensor([1, 2])]),
                    torch.cat([rij, far]))
    np.testing.assert_allclose(out_far.detach().numpy(), out.detach().numpy(), atol=1e-14)
    empty = layer(feats, i[:0], j[:0], rij[:0])
    np.testing.assert_allclose(empty.detach().numpy(), layer.selfint(feats).detach().numpy(), atol=1e-14)


def test_layer_second_derivatives():
    layer = make_layer("lmax3_deg4", n_in=2, n_out=2, channels=2, normalization="root")
    _, i, j, rij = cluster(3, seed=6)
    feats = torch.randn(3, 2)
    r = rij.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: layer(feats, i, j, x), (r,))  # full Jacobian
    assert torch.autograd.gradgradcheck(lambda x: layer(feats, i, j, x).pow(2).sum(), (r,), fast_mode=True)


def test_invariant_degrees():
    from cartinv.runtime.kernels.load import resolve_basis

    basis = resolve_basis("lmax3_deg4")
    degrees = invariant_degrees(basis)
    assert len(degrees) == 13 and degrees[0] == 1 and max(degrees) == 4
    assert degrees == sorted(degrees)  # greedy order: fewer factors first


# ---------------------------------------------------------------------------------------------- the potential
@pytest.fixture(scope="module")
def potential():
    return CartinvPotential(["Cu", "Al", "Ni"], basis="lmax3_deg4", cutoff=3.5, n_features=4, n_radial=4,
                            hidden=(8,), n_layers=2, dtype=DT, seed=7)


def test_potential_contract_and_energy(potential):
    m = potential
    assert m.elements == ["Cu", "Al", "Ni"] and m.cutoff == 3.5 and m.basis_name == "lmax3_deg4"
    assert m.dtype == torch.float64
    _, i, j, rij = cluster(6, seed=8, cutoff=3.5)
    species = torch.tensor([0, 1, 2, 0, 1, 2])
    e = m(species, i, j, rij)
    assert e.shape == (6,) and e.dtype == torch.float64
    # float32 pair vectors are cast to the model dtype
    np.testing.assert_allclose(m(species, i, j, rij.float()).detach().numpy(), e.detach().numpy(), atol=1e-5)
    # the same seed gives the same model
    twin = CartinvPotential(["Cu", "Al", "Ni"], basis="lmax3_deg4", cutoff=3.5, n_features=4, n_radial=4,
                            hidden=(8,), n_layers=2, dtype=DT, seed=7)
    assert torch.equal(twin(species, i, j, rij), e)
    # dtype follows the parameters; the config rebuilds the model
    m32 = CartinvPotential(["Cu", "Al", "Ni"], basis="lmax3_deg4", cutoff=3.5, n_features=4, n_radial=4,
                           hidden=(8,), n_layers=2, dtype=torch.float32, seed=7)
    assert m32.dtype == torch.float32 and m32.config["dtype"] == "float32"
    e32 = m32(species, i, j, rij)
    assert e32.dtype == torch.float32
    m32.double()
    assert m32.dtype == torch.float64 and m32.config["dtype"] == "float64"
    np.testing.assert_allclose(m32(species, i, j, rij).detach().numpy(), e32.detach().numpy(), rtol=1e-5)
    cfg = m32.config
    rebuilt = CartinvPotential(cfg.pop("elements"), basis=m32.basis, dtype=torch.float64, **{
        k: v for k, v in cfg.items() if k != "dtype"})
    rebuilt.load_state_dict(m32.state_dict())
    assert torch.equal(rebuilt(species, i, j, rij), m32(species, i, j, rij))
    # reference energies shift per element
    m2 = CartinvPotential(["Cu", "Al", "Ni"], basis="lmax3_deg4", cutoff=3.5, n_features=4, n_radial=4,
                          hidden=(8,), n_layers=2, dtype=DT, seed=7)
    m2.set_energy_reference([1.0, 2.0, 3.0])
    np.testing.assert_allclose((m2(species, i, j, rij) - e).detach().numpy(), [1, 2, 3, 1, 2, 3], atol=1e-12)


def test_potential_atoms_without_neighbours(potential):
    species = torch.tensor([1, 2])
    none = torch.zeros(0, dtype=torch.int64)
    e = potential(species, none, none, torch.zeros(0, 3, dtype=DT)).detach()
    # self terms only: each atom's energy is that of the same species alone, whatever else is in the batch
    lone = potential(torch.tensor([2]), none, none, torch.zeros(0, 3, dtype=DT)).detach()
    np.testing.assert_allclose(float(e[1]), float(lone[0]), rtol=1e-14)
    # an atom without pairs next to a bonded pair keeps the same self energy
    e3 = potential(torch.tensor([0, 0, 2]), torch.tensor([0, 1]), torch.tensor([1, 0]),
                   torch.tensor([[2.0, 0.3, 0.1], [-2.0, -0.3, -0.1]], dtype=DT)).detach()
    np.testing.assert_allclose(float(e3[2]), float(lone[0]), rtol=1e-14)
    lone_cu = potential(torch.tensor([0]), none, none, torch.zeros(0, 3, dtype=DT)).detach()
    assert abs(float(e3[0]) - float(lone_cu[0])) > 1e-6  # the bonded atoms do feel each other


def test_potential_input_errors(potential):
    _, i, j, rij = cluster(4, seed=9, cutoff=3.5)
    with pytest.raises(ValueError, match=r"species indices \[3\] are outside"):
        potential(torch.tensor([0, 1, 3, 0]), i, j, rij)
    with pytest.raises(ValueError, match="int64"):
        potential(torch.tensor([0, 1, 2, 0], dtype=torch.int32), i, j, rij)
    with pytest.raises(ValueError, match="outside 0..3"):
        potential(torch.tensor([0, 1, 2, 0]), i, j + 4, rij)
    with pytest.raises(ValueError, match="rij = 0"):
        potential(torch.tensor([0, 1, 2, 0]), i, j, torch.cat([rij[:-1], torch.zeros(1, 3)]))
    with pytest.raises(ValueError, match=r"species \['Xe'\] are not in this model"):
        potential.species_index(["Cu", "Xe"])
    with pytest.raises(ValueError, match="elements repeat"):
        CartinvPotential(["Cu", "Cu"], basis="lmax3_deg4")
    with pytest.raises(ValueError, match="cutoff"):
        CartinvPotential(["Cu"], basis="lmax3_deg4", cutoff=0.0)


@pytest.mark.parametrize("basis, settings", [
    ("lmax3_deg4", dict()),
    ("lmax3_deg2", dict(n_features=6, n_layers=2, channels=5, hidden=(7, 3), normalization="group")),
    ("hiphop_lmax3_deg4", dict(n_features=3, n_layers=3, n_radial=4, hidden=(), normalization="none")),
    ("coupled", dict(n_features=4, channels=3, hidden=(5,))),
])
def test_parameter_count_is_exact_before_building(basis, settings):
    """The count the constructor refuses oversized models by is the built model's, for every layer option."""
    from conftest import derived
    from cartinv.runtime.models.nn import resolve_basis
    from cartinv.runtime.models.potential import parameter_count

    basis = derived((1, 2), degree=3, channels=2) if basis == "coupled" else resolve_basis(basis)
    model = CartinvPotential(["H", "C", "O"], basis=basis, **settings)
    assert parameter_count(3, basis, **settings) == sum(p.numel() for p in model.parameters())


def test_oversized_model_is_refused_before_allocating():
    """4096 features and channels with 256 radial functions would be 4.5 billion parameters (135 GiB to train in
    float64): refused at once with the estimate, nothing allocated."""
    import resource
    import time

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"would have 4,5\d\d,\d{3},\d{3} parameters \(about [\d,.]+ GiB to train"):
        CartinvPotential(["H"], basis="lmax3_deg4", n_features=4096, n_radial=256)
    assert time.perf_counter() - start < 5 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000


def test_force_training_double_backward():
    """The parameter gradient of a force loss (double backward) equals finite differences of that loss."""
    m = CartinvPotential(["Cu"], basis="lmax3_deg4", cutoff=3.5, n_features=3, n_radial=3, hidden=(4,),
                         dtype=DT, seed=11)
    pos, i, j, rij = cluster(5, seed=10, cutoff=3.5)
    species = torch.zeros(5, dtype=torch.int64)
    target = torch.randn(5, 3)

    def force_loss(create_graph):
        r = rij.clone().requires_grad_(True)
        energy = m(species, i, j, r).sum()
        (g,) = torch.autograd.grad(energy, r, create_graph=create_graph)
        return (pair_forces(g, i, j, 5) - target).pow(2).sum()

    m.zero_grad()
    force_loss(True).backward()
    checked = 0
    for name, param in [("layers.0.int_weights", (0, 1, 2)), ("layers.0.mixing", (1, 4, 0)),
                        ("layers.0.norm.scale", (7,)), ("embedding.weight", (0, 1)), ("head.0.weight", (2, 1))]:
        p = dict(m.named_parameters())[name]
        analytic = float(p.grad[param])
        h = 1e-6
        with torch.no_grad():
            p[param] += h
        up = float(force_loss(False))
        with torch.no_grad():
            p[param] -= 2 * h
        down = float(force_loss(False))
        with torch.no_grad():
            p[param] += h
        fd = (up - down) / (2 * h)
        assert abs(analytic - fd) < 1e-6 * max(1.0, abs(fd)), (name, analytic, fd)
        checked += abs(fd) > 1e-4
    assert checked >= 4  # the force loss depends on these parameters
    # pair_forces is -dE/dx for x the positions
    x = pos.clone().requires_grad_(True)
    e = m(species, i, j, x[j] - x[i]).sum()
    (gx,) = torch.autograd.grad(e, x)
    r = rij.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(m(species, i, j, r).sum(), r)
    np.testing.assert_allclose(pair_forces(g, i, j, 5).numpy(), -gx.numpy(), atol=1e-12)


@pytest.mark.parametrize("seed", [12, 13])
def test_force_training_gradients_agree_between_the_pair_contraction_forms(monkeypatch, seed):
    """The grouped (padded bmm) and per-pair forms of w = V s z_j give the same energies, forces and force-loss
    parameter gradients: the layer's maths does not depend on which one the CPU picks."""
    from cartinv.runtime.models import pair_contraction

    m = CartinvPotential(["Cu", "Al"], basis="lmax3_deg4", cutoff=3.5, n_features=4, n_radial=3, hidden=(4,),
                         n_layers=2, dtype=DT, seed=seed)
    _, i, j, rij = cluster(7, seed=seed, cutoff=3.5)
    species = torch.tensor([0, 1, 0, 1, 1, 0, 0])
    target = torch.randn(7, 3)
    results, used = [], []
    real = pair_contraction.grouped
    monkeypatch.setattr(pair_contraction, "grouped", lambda *a: used.append(len(results)) or real(*a))
    for padding in (0.0, 1e9):  # 0: nothing fits, per pair; 1e9: always grouped
        monkeypatch.setattr(pair_contraction, "MAX_PADDING", padding)
        m.zero_grad()
        r = rij.clone().requires_grad_(True)
        energy = m(species, i, j, r)
        (g,) = torch.autograd.grad(energy.sum(), r, create_graph=True)
        forces = pair_forces(g, i, j, 7)
        (forces - target).pow(2).sum().backward()
        grads = {name: p.grad.clone() for name, p in m.named_parameters() if p.grad is not None}
        assert "layers.0.int_weights" in grads and "layers.1.int_weights" in grads
        results.append([energy.detach(), forces.detach(), *grads.values()])
    assert len(results[0]) == len(results[1]) and used and set(used) == {1}  # the second pass only, once per layer and call
    for got, ref in zip(results[1], results[0]):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------------------------------------- persistence
def test_save_load_roundtrip_and_refusals(potential, tmp_path):
    import cartinv

    _, i, j, rij = cluster(5, seed=12, cutoff=3.5)
    species = torch.tensor([0, 1, 2, 1, 0])
    potential.set_energy_reference([0.5, -0.25, 1.0], scale=2.0)
    path = tmp_path / "model.pt"
    potential.save(path)
    loaded = CartinvPotential.load(path)
    assert loaded.elements == potential.elements and loaded.cutoff == potential.cutoff
    assert loaded.basis_name == "lmax3_deg4" and loaded.dtype == potential.dtype
    assert torch.equal(loaded(species, i, j, rij), potential(species, i, j, rij))

    payload = torch.load(path, weights_only=True)

    def altered(**changes):
        p = tmp_path / "altered.pt"
        torch.save({**payload, **changes}, p)
        return p

    with pytest.raises(ValueError, match=f"saved with cartinv 0.0.1, this is cartinv {cartinv.__version__}"):
        CartinvPotential.load(altered(cartinv_version="0.0.1"))
    with pytest.raises(ValueError, match="does not match its recorded hash"):
        CartinvPotential.load(altered(basis_hash="0" * 64))
    # a basis that differs from the checked-in basis of the same name (other columns): refused
    from cartinv.symbolic.select import BasisRequest, derive_basis

    other = derive_basis(BasisRequest(orders=(0, 1, 2, 3), degree=3), name="lmax3_deg4")
    with pytest.raises(ValueError, match="basis 'lmax3_deg4' in the file has other invariant columns"):
        CartinvPotential.load(altered(basis_json=other.to_json(), basis_hash=other.content_hash()))
    # the same columns with other relations or checks (a model saved before a regeneration): loads, on the
    # checked-in basis and its kernels, with the same numbers
    older = json.loads(payload["basis_json"])
    older["dropped"][-1]["relation"] = "rank unchanged; an older cartinv's wording"
    older.pop("span_check")
    older_text = json.dumps(older, indent=1) + "\n"
    import hashlib

    again = CartinvPotential.load(altered(basis_json=older_text, basis_hash=hashlib.sha256(older_text.encode())
                                          .hexdigest()))
    assert again.basis.content_hash() == potential.basis.content_hash()
    assert torch.equal(again(species, i, j, rij), potential(species, i, j, rij))
    with pytest.raises(ValueError, match="not a saved CartinvPotential"):
        CartinvPotential.load(altered(format="something-else"))
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    with pytest.raises(ValueError, match="not a saved CartinvPotential"):
        CartinvPotential.load(junk)


def test_save_load_custom_basis(tmp_path, monkeypatch, cache):
    from cartinv.symbolic.select import BasisRequest, derive_basis

    monkeypatch.setenv("CARTINV_CACHE", str(cache))
    basis = derive_basis(BasisRequest(orders=(0, 1, 2, 3), degree=2), name="test_lmax3_deg2")
    m = CartinvPotential(["Cu"], basis=basis, cutoff=3.0, n_features=4, n_radial=3, hidden=(4,), dtype=DT, seed=1)
    assert m.basis_name == "test_lmax3_deg2" and m.layers[0].n_invariants == 4
    path = tmp_path / "custom.pt"
    m.save(path)
    loaded = CartinvPotential.load(path)
    _, i, j, rij = cluster(4, seed=13, cutoff=3.0)
    s = torch.zeros(4, dtype=torch.int64)
    assert torch.equal(loaded(s, i, j, rij), m(s, i, j, rij))
    assert math.isclose(loaded.cutoff, 3.0)
