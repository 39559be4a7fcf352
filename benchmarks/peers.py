"""Numerical peers and benchmark baselines for cartinv.

Currently one peer: the HIP-HOP-NN invariant layer of hippynn
(``hippynn.layers.hiplayers.tensors`` and ``hippynn.custom_kernels``).
Every function here calls hippynn's own code for the part it claims to
reproduce; only glue (reshapes, dtype handling) is ours.  hippynn is imported
lazily, so this module imports without it.

How hippynn represents the moment tensors
-----------------------------------------
hippynn stores each symmetric traceless (STF) tensor of order l by its 2l+1
"free" Cartesian components, i.e. the sorted index tuples that do not end in
``(2, 2)`` (the ``(.., 2, 2)`` entries follow from tracelessness):

* l = 0: ``(T,)``
* l = 1: ``(T0, T1, T2)``
* l = 2: ``(T00, T01, T02, T11, T12)``
* l = 3: ``(T000, T001, T002, T011, T012, T111, T112)``

concatenated into 16 coordinates ``[s | v | q | t]`` per (atom, channel).
These coordinates are NOT orthonormal.  The map coordinates -> full Cartesian
tensor is ``C[l]`` (``cartesian_irreducible_mapping(l)``, integer entries
0/+1/-1, shape (3,)*l + (2l+1,)); the map full tensor -> coordinates is
``P[l] = pinv_project(C[l])`` (Moore-Penrose pseudo-inverse, so
``C[l] P[l]^T`` is the orthogonal (Frobenius) projector onto STF tensors).

Per pair, ``TensorExtractor`` computes ``P[l] . (u x ... x u)``, whose
Cartesian expansion is exactly the STF part Y_l(u) (u ⊗ u − I/3, ...):
hippynn uses the irreducible parts, with no extra per-l normalisation.
The moment of channel c at atom i is ``T_{c,l} = sum_j w_c(j) Y_l(u_ij)``,
tied weights (one weight per channel shared by all l).

Note: hippynn builds C and P at import time in the torch default dtype
(normally float32; P then carries float32 round-off).  We rebuild both with
hippynn's own functions in the dtype of the inputs (P via float64), so
float64 comparisons are exact to round-off.
"""

from __future__ import annotations

import warnings

import torch

__all__ = [
    "HIPPYNN_COLUMNS",
    "hippynn_maps",
    "cartesian_to_hippynn_coords",
    "hippynn_coords_to_cartesian",
    "hippynn_invariants",
    "hippynn_invariants_from_coords",
    "hippynn_pair_harmonics",
    "hippynn_moments",
    "hippynn_forward",
    "make_hippynn_hop_layer",
    "hippynn_hop_layer_forward",
]

_MISSING = "hippynn is required for the hippynn peer (benchmarks/peers.py): pip install hippynn"

L_MAX = 3
N_COMP = 16  # 1 + 3 + 5 + 7

# Column layout of hippynn's calc_invariants(l_max=3, n_max=4, ...).
# Tensors are the full Cartesian STF tensors T0 (scalar), T1[a], T2[ab], T3[abc];
# repeated letters are summed.  "factor" is hippynn's column divided by the plain
# full contraction written in index_notation (verified in tests/test_hippynn_peer.py).
HIPPYNN_COLUMNS = [
    {"column": 0, "index_notation": "T0", "factor": 1.0, "degree": 1, "hippynn_key": 0},
    {"column": 1, "index_notation": "T1[a] T1[a]", "factor": 1.0, "degree": 2, "hippynn_key": 1},
    {"column": 2, "index_notation": "T2[ab] T2[ab]", "factor": 1.0, "degree": 2, "hippynn_key": 2},
    {"column": 3, "index_notation": "T2[ab] T2[bc] T2[ca]", "factor": 1.0, "degree": 3, "hippynn_key": 3},
    {"column": 4, "index_notation": "T3[abc] T3[abc]", "factor": 1.0, "degree": 2, "hippynn_key": 4},
    {"column": 5, "index_notation": "T3[abc] T3[abd] T3[efc] T3[efd]", "factor": 1.0, "degree": 4, "hippynn_key": 5},
    {"column": 6, "index_notation": "T1[a] T2[ab] T1[b]", "factor": 1.0, "degree": 3, "hippynn_key": 6},
    {"column": 7, "index_notation": "T1[a] T2[ab] T2[bc] T1[c]", "factor": 1.0, "degree": 4, "hippynn_key": 7},
    {"column": 8, "index_notation": "T3[abc] T1[a] T1[b] T1[c]", "factor": 1.0, "degree": 4, "hippynn_key": 8},
    {"column": 9, "index_notation": "T1[a] T3[acd] T3[bcd] T1[b]", "factor": 1.0, "degree": 4, "hippynn_key": 9},
    {"column": 10, "index_notation": "T3[acd] T3[bcd] T2[ab]", "factor": 1.0, "degree": 3, "hippynn_key": 10},
    {"column": 11, "index_notation": "T3[acd] T3[bcd] T2[ae] T2[be]", "factor": 1.0, "degree": 4, "hippynn_key": 11},
    {"column": 12, "index_notation": "T3[abc] T2[ab] T3[dec] T2[de]", "factor": 1.0, "degree": 4, "hippynn_key": 12},
]

# Same contractions as torch.einsum strings over (T0, T1, T2, T3) with leading batch dims "...".
HIPPYNN_EINSUM = [
    None,  # column 0 is T0 itself
    "...a,...a->...",
    "...ab,...ab->...",
    "...ab,...bc,...ca->...",
    "...abc,...abc->...",
    "...abc,...abd,...efc,...efd->...",
    "...a,...ab,...b->...",
    "...a,...ab,...bc,...c->...",
    "...abc,...a,...b,...c->...",
    "...a,...acd,...bcd,...b->...",
    "...acd,...bcd,...ab->...",
    "...acd,...bcd,...ae,...be->...",
    "...abc,...ab,...dec,...de->...",
]
# Which tensors (by order l) enter each einsum, in operand order.
HIPPYNN_OPERANDS = [
    (0,), (1, 1), (2, 2), (2, 2, 2), (3, 3), (3, 3, 3, 3), (1, 2, 1), (1, 2, 2, 1),
    (3, 1, 1, 1), (1, 3, 3, 1), (3, 3, 2), (3, 3, 2, 2), (3, 2, 3, 2),
]


def _import_hippynn():
    """Return (hippynn.layers.hiplayers.tensors, hippynn.custom_kernels); silence import-time warnings."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from hippynn.layers.hiplayers import tensors as hip_tensors
            from hippynn import custom_kernels
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise ImportError(_MISSING) from exc
    return hip_tensors, custom_kernels


def hippynn_missing() -> str | None:
    """None where hippynn imports, else the reason in one line (the peer's functions import it lazily)."""
    try:
        _import_hippynn()
    except ImportError as exc:
        return str(exc)
    return None


_MAP_CACHE: dict = {}


def hippynn_maps(dtype=torch.float64, device="cpu"):
    """hippynn's coordinate maps for l = 0..3, rebuilt in ``dtype`` on ``device``.

    Returns ``(cmaps, pmaps)``: lists of 4 tensors; ``cmaps[l]`` has shape (3,)*l + (2l+1,)
    (``cmaps[0]`` = ones((1, 1)) as in hippynn) and maps coordinates to the full tensor;
    ``pmaps[l]`` has the same shape and maps a full tensor to coordinates.
    Built with hippynn's ``cartesian_irreducible_mapping`` and ``pinv_project``.
    """
    key = (dtype, str(device))
    if key not in _MAP_CACHE:
        hip_tensors, _ = _import_hippynn()
        cm = [torch.ones((1, 1), dtype=torch.float64)]
        pm = [torch.ones((1, 1), dtype=torch.float64)]
        for l in range(1, L_MAX + 1):
            c = hip_tensors.cartesian_irreducible_mapping(l).to(torch.float64)
            cm.append(c)
            pm.append(hip_tensors.pinv_project(c))
        _MAP_CACHE[key] = (
            [c.to(dtype=dtype, device=device) for c in cm],
            [p.to(dtype=dtype, device=device) for p in pm],
        )
    return _MAP_CACHE[key]


def cartesian_to_hippynn_coords(T0, T1, T2, T3):
    """Full Cartesian STF tensors -> hippynn's 16 coordinates, shape [..., 16].

    Uses hippynn's pseudo-inverse maps, i.e. the same projection as ``TensorExtractor``:
    a tensor that is not symmetric traceless is silently replaced by its STF part.
    """
    _, pm = hippynn_maps(T1.dtype, T1.device)
    s = T0.unsqueeze(-1)
    q = torch.einsum("...ab,abk->...k", T2, pm[2])
    t = torch.einsum("...abc,abck->...k", T3, pm[3])
    return torch.cat([s, T1, q, t], dim=-1)


def hippynn_coords_to_cartesian(coords):
    """hippynn's 16 coordinates [..., 16] -> (T0, T1, T2, T3) full Cartesian STF tensors."""
    cm, _ = hippynn_maps(coords.dtype, coords.device)
    s, v, q, t = coords.split([1, 3, 5, 7], dim=-1)
    T2 = torch.einsum("...k,abk->...ab", q, cm[2])
    T3 = torch.einsum("...k,abck->...abc", t, cm[3])
    return s.squeeze(-1), v, T2, T3


def hippynn_invariants_from_coords(coords, n_max=4):
    """hippynn's invariants from hippynn coordinates ``coords`` [atoms, channels, 16].

    Calls ``hippynn.layers.hiplayers.tensors.calc_invariants(3, n_max, feats, C)`` on
    ``feats = coords.reshape(-1, 16)`` exactly as ``HOPInteractionLayer`` does; returns
    [atoms, channels, n_inv] (n_inv = 13 for n_max = 4; 7 for n_max = 3; 4 for n_max = 2).
    """
    hip_tensors, _ = _import_hippynn()
    cm, _ = hippynn_maps(coords.dtype, coords.device)
    lead = coords.shape[:-1]
    feats = coords.reshape(-1, N_COMP)
    n_rows = feats.shape[0]
    if n_rows == 1:
        # calc_invariants does s.squeeze(), which collapses a single row to a 0-d tensor
        # and breaks torch.stack; pad with a zero row and drop it again.
        feats = torch.cat([feats, torch.zeros_like(feats)], dim=0)
    inv = hip_tensors.calc_invariants(L_MAX, n_max, feats, cm)
    inv = inv[:n_rows]
    return inv.reshape(*lead, inv.shape[-1])


def hippynn_invariants(T0, T1, T2, T3, n_max=4):
    """hippynn's 13 invariants of full Cartesian STF moment tensors.

    :param T0: [atoms, channels]
    :param T1: [atoms, channels, 3]
    :param T2: [atoms, channels, 3, 3]   symmetric traceless
    :param T3: [atoms, channels, 3, 3, 3] symmetric traceless
    :return: [atoms, channels, 13], column k as documented in ``HIPPYNN_COLUMNS``.

    The inputs must be STF (e.g. sums of w * Y_l(u) with Y_2 = u⊗u − I/3, ...); they are
    converted to hippynn's coordinates with hippynn's projector, so any non-STF part is
    discarded rather than contracted.
    """
    coords = cartesian_to_hippynn_coords(T0, T1, T2, T3)
    return hippynn_invariants_from_coords(coords, n_max=n_max)


_EXTRACTOR_CACHE: dict = {}


def _extractor(dtype, device):
    key = (dtype, str(device))
    if key not in _EXTRACTOR_CACHE:
        hip_tensors, _ = _import_hippynn()
        _, pm = hippynn_maps(dtype, device)
        _EXTRACTOR_CACHE[key] = hip_tensors.TensorExtractor(L_MAX, pmaps=dict(enumerate(pm)))
    return _EXTRACTOR_CACHE[key]


def hippynn_pair_harmonics(pair_vectors):
    """Per-pair STF harmonics in hippynn coordinates, [pairs, 16] (``tensor_rhats`` in hippynn).

    Normalises the vectors and calls ``TensorExtractor(l_max=3).forward(rhats)``, then concatenates
    (s, v, q, t) as ``HipHopNNModule.forward`` does.
    """
    rhats = pair_vectors / pair_vectors.norm(dim=1, keepdim=True)
    s, v, q, t = _extractor(pair_vectors.dtype, pair_vectors.device)(rhats)
    return torch.cat([s, v, q, t], dim=-1)


def _envsum_fn(impl):
    _, ck = _import_hippynn()
    if impl is None:
        return ck.envsum  # the currently active hippynn implementation
    from hippynn.custom_kernels.registry import MessagePassingKernels

    return MessagePassingKernels.get_implementation(impl).envsum


def hippynn_moments(pair_vectors, pair_first, weights, n_atoms, cartesian=False, impl=None):
    """hippynn's moment tensors from pair data, with tied per-pair channel weights.

    T[i, c, :] = sum_{p: pair_first[p] = i} weights[p, c] * Y(pair_vectors[p] / |.|)  (16 coords).

    Follows ``HOPInteractionLayer.forward``: the sensitivity ``weights[:, None, :] *
    tensor_rhats[:, :, None]`` ([pairs, 16 * channels], the same layout as hippynn's
    ``sense_scalar.unsqueeze(1) * tensor_rhats.unsqueeze(2)``) is accumulated per centre atom with
    ``hippynn.custom_kernels.envsum(sense, features, pair_first, pair_second)`` using a single
    all-ones atom feature (so the channels play the role of hippynn's sensitivities n_dist).
    In the real layer the weights factor as w_c(j) = sum_{nu,f} V[nu,c,f] s_nu(r) z[j,f] and the
    contraction with V happens after envsum; see ``hippynn_hop_layer_forward``.

    :param pair_vectors: [pairs, 3] r_j - r_i
    :param pair_first: [pairs] int64 index of the centre atom i
    :param weights: [pairs, channels]
    :param n_atoms: number of atoms
    :param cartesian: if True return (T0, T1, T2, T3) full Cartesian tensors, else coords
    :param impl: hippynn custom-kernel implementation name (None = hippynn's active one)
    :return: [atoms, channels, 16] hippynn coordinates, or the Cartesian tuple
    """
    envsum = _envsum_fn(impl)
    n_pairs, n_ch = weights.shape
    y = hippynn_pair_harmonics(pair_vectors)  # [P, 16]
    sense = (y.unsqueeze(2) * weights.unsqueeze(1)).reshape(n_pairs, N_COMP * n_ch)
    ones = torch.ones((n_atoms, 1), dtype=weights.dtype, device=weights.device)
    env = envsum(sense, ones, pair_first, pair_first)  # [atoms, 16 * C, 1]
    coords = env.reshape(n_atoms, N_COMP, n_ch).permute(0, 2, 1)
    if cartesian:
        return hippynn_coords_to_cartesian(coords)
    return coords


def hippynn_forward(pair_vectors, pair_first, weights, n_atoms, n_max=4, impl=None):
    """hippynn's moments + invariants: [atoms, channels, 13]. Differentiable (forces, double backward)."""
    coords = hippynn_moments(pair_vectors, pair_first, weights, n_atoms, impl=impl)
    return hippynn_invariants_from_coords(coords, n_max=n_max)


def make_hippynn_hop_layer(nf_in, nf_out, n_dist=8, mind_soft=0.85, maxd_soft=5.0, hard_cutoff=5.5,
                           n_max=4, l_max=3, group_norm=False, dtype=torch.float64):
    """A standalone ``hippynn.layers.hiplayers.HOPInteractionLayer`` with Gaussian sensitivities.

    Equivalent to ``HOPInteractionLayer(nf_in, nf_out, n_dist, mind_soft, maxd_soft, hard_cutoff,
    GaussianSensitivityModule, n_max=n_max, l_max=l_max, group_norm=group_norm, group_norm_eps=1e-5)``
    cast to ``dtype``.  Its ``cmaps`` buffers hold integers, so the cast is exact.
    """
    _import_hippynn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from hippynn.layers.hiplayers import HOPInteractionLayer, GaussianSensitivityModule

        layer = HOPInteractionLayer(nf_in, nf_out, n_dist, mind_soft, maxd_soft, hard_cutoff,
                                    GaussianSensitivityModule, n_max=n_max, l_max=l_max,
                                    group_norm=group_norm, group_norm_eps=1e-5)
    return layer.to(dtype)


def hippynn_hop_layer_forward(layer, in_features, pair_first, pair_second, pair_vectors):
    """Run a ``HOPInteractionLayer`` on raw pair data; returns [atoms, nf_out].

    ``layer(in_features, pair_first, pair_second, dist_pairs, tensor_rhats)`` with
    ``dist_pairs = |pair_vectors|`` ([pairs]) and ``tensor_rhats`` = ``hippynn_pair_harmonics``
    truncated to the layer's l_max.  Low-distance warnings from the sensitivity are silenced.
    """
    n_comp = (layer.invars.l_max + 1) ** 2
    dist = pair_vectors.norm(dim=1)
    rh = hippynn_pair_harmonics(pair_vectors)[:, :n_comp]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return layer(in_features, pair_first, pair_second, dist, rh)
