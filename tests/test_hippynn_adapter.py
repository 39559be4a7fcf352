"""hippynn adapter: a HIP-HOP-NN layer / model on cartinv invariants equals hippynn's own in fp64."""

import copy
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hippynn")
torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import peers  # noqa: E402

from cartinv.runtime.integrations.hippynn_adapter import (  # noqa: E402
    CartinvHOPInteractionLayer,
    cartinv_hop_layer,
    use_cartinv_invariants,
)

RTOL = 1e-10


def pairs(n, seed, spread=1.4, cutoff=4.0):
    rng = np.random.default_rng(seed)
    pos = torch.tensor(rng.normal(size=(n, 3)) * spread)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = i != j
    i, j = i[keep], j[keep]
    d = (pos[j] - pos[i]).norm(dim=1)
    inside = d < cutoff
    return pos, i[inside], j[inside]


def close(got, ref, what):
    got, ref = got.detach().numpy(), ref.detach().numpy()
    scale = np.abs(ref).max()
    assert scale > 1e-6, what
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=RTOL * scale, err_msg=what)
    return float(np.abs(got - ref).max() / scale)


@pytest.mark.parametrize("group_norm", [False, True])
def test_layer_matches_hippynn(group_norm):
    torch.manual_seed(0)
    layer = peers.make_hippynn_hop_layer(5, 6, n_dist=6, hard_cutoff=4.0, group_norm=group_norm)
    ours = cartinv_hop_layer(layer)
    assert isinstance(ours, CartinvHOPInteractionLayer) and not isinstance(layer, CartinvHOPInteractionLayer)
    assert list(ours.state_dict()) == list(layer.state_dict())
    pos, i, j = pairs(9, seed=1)
    feats = torch.randn(9, 5, dtype=torch.float64)
    results = []
    for net in (layer, ours):
        x = pos.clone().requires_grad_(True)
        f = feats.clone().requires_grad_(True)
        out = peers.hippynn_hop_layer_forward(net, f, i, j, x[j] - x[i])
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum()
        net.zero_grad()
        gx, gf = torch.autograd.grad(loss, (x, f), retain_graph=True)
        loss.backward()
        grads = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
        results.append((out, gx, gf, grads))
    (out_h, gx_h, gf_h, grads_h), (out_c, gx_c, gf_c, grads_c) = results
    close(out_c, out_h, "layer outputs")
    close(gx_c, gx_h, "gradient w.r.t. positions")
    close(gf_c, gf_h, "gradient w.r.t. input features")
    assert set(grads_c) == set(grads_h) and "int_weights" in grads_h and "mixing_weights" in grads_h
    for name in grads_h:
        close(grads_c[name], grads_h[name], f"parameter gradient {name}")


def hiphop_model():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from hippynn.layers.targets import HEnergy
        from hippynn.networks.hiphop import HipHopNNModule

        torch.manual_seed(3)
        net = HipHopNNModule(n_features=6, n_sensitivities=5, dist_soft_min=0.8, dist_soft_max=3.5,
                             dist_hard_max=4.0, n_atom_layers=1, n_interaction_layers=2,
                             possible_species=[0, 1, 29], sensitivity_type="linear", group_norm=True)
        head = HEnergy(net.feature_sizes)
    return net.double(), head.double()


def energies_and_forces(net, head, species_onehot, pos, i, j, mol_index, n_mol):
    x = pos.clone().requires_grad_(True)
    coord = x[j] - x[i]
    dist = coord.norm(dim=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        features = net(species_onehot, i, j, dist, coord)
        energy = head(features, mol_index, n_mol)[0].reshape(-1)
    (grad,) = torch.autograd.grad(energy.sum(), x)
    return energy.detach(), -grad


def exact_projection_maps(net):
    """Give ``net`` hippynn's own harmonics projector rebuilt in float64.

    hippynn builds its STF projection maps once at import, in float32 (pinv), so its harmonics carry float32
    round-off (~1e-8 relative) even in a float64 model. The cartinv layers only read the unit vectors from those
    harmonics, so they are unaffected; for a 1e-10 comparison hippynn gets the same maps computed in float64
    (with its own functions, see benchmarks/peers.py).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from hippynn.layers.hiplayers import TensorExtractor

        _, pm = peers.hippynn_maps(torch.float64)
        net.tensor_extractor = TensorExtractor(net.l_max, pmaps=dict(enumerate(pm)))
    return net


def test_model_energies_and_forces_match_hippynn():
    net, head = hiphop_model()
    float32_maps = copy.deepcopy(net)
    exact_projection_maps(net)
    ours = copy.deepcopy(net)
    assert use_cartinv_invariants(ours) == 2
    assert list(ours.state_dict()) == list(net.state_dict())
    # two molecules in one batch: 7 and 5 atoms
    pos_a, i_a, j_a = pairs(7, seed=4)
    pos_b, i_b, j_b = pairs(5, seed=5)
    pos = torch.cat([pos_a, pos_b + 30.0])
    i, j = torch.cat([i_a, i_b + 7]), torch.cat([j_a, j_b + 7])
    kinds = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 0, 1])
    onehot = torch.nn.functional.one_hot(kinds, 2).double()
    mol_index = torch.tensor([0] * 7 + [1] * 5)
    e_h, f_h = energies_and_forces(net, head, onehot, pos, i, j, mol_index, 2)
    e_c, f_c = energies_and_forces(ours, head, onehot, pos, i, j, mol_index, 2)
    close(e_c, e_h, "energies")
    close(f_c, f_h, "forces")
    # hippynn with its default float32-built maps differs from both by its own round-off only
    e_32, f_32 = energies_and_forces(float32_maps, head, onehot, pos, i, j, mol_index, 2)
    np.testing.assert_allclose(e_32.numpy(), e_h.numpy(), rtol=1e-6)
    np.testing.assert_allclose(f_32.numpy(), f_h.numpy(), rtol=1e-5, atol=1e-6 * np.abs(f_h.numpy()).max())


def test_adapter_errors():
    torch.manual_seed(0)
    layer = peers.make_hippynn_hop_layer(3, 4)
    with pytest.raises(ValueError, match="has 6 invariants but the hippynn layer"):
        cartinv_hop_layer(layer, basis="lmax2_deg4")
    converted = cartinv_hop_layer(layer)
    with pytest.raises(ValueError, match="already uses cartinv"):
        cartinv_hop_layer(converted)
    with pytest.raises(TypeError, match="HOPInteractionLayer"):
        cartinv_hop_layer(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="holds no hippynn HOPInteractionLayer"):
        use_cartinv_invariants(torch.nn.Sequential(torch.nn.Linear(2, 2)))
