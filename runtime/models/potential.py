"""A small interatomic potential on cartinv invariants: species embedding, TensorInvariantLayers, MLP head.

Contract (relied on by the ASE calculator and the LAMMPS interface):

* attributes ``elements: list[str]``, ``cutoff: float``, ``basis_name: str``, ``dtype: torch.dtype``;
* ``forward(species [N] int64, pair_i [P] int64, pair_j [P] int64, rij [P, 3] float) -> per-atom energies [N]``,
  ``species`` indexing ``elements``, ``pair_i`` the centre atom of each pair and ``rij = r_j − r_i``. The pair
  list is directed: atom i sees j through pair (i, j) only, so a full (both-direction) neighbour list is expected.
  Pairs at or beyond ``cutoff`` contribute exactly zero (a neighbour list with a skin is fine). Atoms without
  neighbours get the energy of their self term. ``rij`` is cast to the model dtype (differentiably);
* ``save(path)`` / ``CartinvPotential.load(path)``: config, weights, cartinv version and basis hash; a file from
  another cartinv version or with a different basis refuses to load (ValueError).

Forces and stress follow from the gradient g = ∂E/∂rij: ``pair_forces`` and ``pair_virial`` below.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from cartinv.errors import ArgumentError, FileFormatError

from . import saved
from .nn import TensorInvariantLayer, resolve_basis

__all__ = ["CartinvPotential", "pair_forces", "pair_virial", "FORMAT", "FORMAT_VERSION"]

FORMAT = "cartinv-potential"
FORMAT_VERSION = 1

_ACTIVATIONS = {"silu": torch.nn.SiLU, "softplus": torch.nn.Softplus, "tanh": torch.nn.Tanh}


def pair_forces(grad_rij: torch.Tensor, pair_i: torch.Tensor, pair_j: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """Forces [N, 3] from g = ∂E/∂rij [P, 3] with rij = r_j − r_i: F_k = sum_{i_p = k} g_p − sum_{j_p = k} g_p."""
    f = grad_rij.new_zeros((n_atoms, 3))
    return f.index_add(0, pair_i, grad_rij).index_add(0, pair_j, grad_rij, alpha=-1.0)


def pair_virial(grad_rij: torch.Tensor, rij: torch.Tensor) -> torch.Tensor:
    """Strain derivative ∂E/∂ε [3, 3] (symmetrised) for rij -> rij (1 + ε): sum_p rij_p ⊗ g_p.

    The stress (ASE sign convention) is this divided by the cell volume.
    """
    w = rij.transpose(0, 1) @ grad_rij
    return 0.5 * (w + w.transpose(0, 1))


MAX_PARAMETERS = 100_000_000  # far above the interatomic potentials in use (thousands to millions of parameters)


def parameter_count(n_elements: int, basis, n_features: int = 16, n_layers: int = 1, n_radial: int = 8,
                    channels: int | None = None, hidden=(32,), normalization: str = "root") -> int:
    """Parameters of a ``CartinvPotential`` with these settings, counted before any is allocated (so that an
    oversized request is refused with this number instead of exhausting memory)."""
    from .nn import invariant_degrees

    channels = n_features if channels is None else int(channels)
    n_inv = len(invariant_degrees(basis))
    per_layer = (channels * int(basis.channels) * n_radial * n_features  # interaction weights
                 + channels * n_inv * n_features  # mixing
                 + n_features * n_features + n_features)  # self-interaction
    per_layer += {"root": n_inv, "group": 2 * n_inv * channels}.get(normalization, 0)
    widths = [n_features, *[int(h) for h in hidden], 1]
    head = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    return n_elements * n_features + n_layers * per_layer + head


class CartinvPotential(torch.nn.Module):
    """Species embedding -> ``n_layers`` TensorInvariantLayers (residual, activation) -> MLP per-atom energy.

    :param elements: chemical symbols, in the order of the species indices
    :param basis: a ``Basis``, a checked-in basis name or a Basis file path
    :param cutoff: radial cutoff (Å when used with ASE)
    :param n_features: width of the atom features (and of every interaction layer)
    :param n_layers: number of interaction layers
    :param n_radial: radial functions per layer
    :param radial: ``"bessel"`` or ``"gaussian"``
    :param channels: tied channels per layer (default ``n_features``)
    :param hidden: hidden widths of the energy MLP
    :param normalization: invariant normalisation (``"root"``, ``"group"``, ``"none"``)
    :param norm_eps: ε of the ``"root"`` normalisation
    :param activation: ``"silu"``, ``"softplus"`` or ``"tanh"``
    :param backend: cartinv backend for the invariants
    :param dtype: ``torch.float32`` or ``torch.float64``
    :param seed: seeds the parameter initialisation (None: torch's global generator)

    Per-atom energy: ``E_i = e0[species_i] + energy_scale * MLP(z_i)``; ``e0`` and ``energy_scale`` are buffers
    (set them from data with ``set_energy_reference``).
    """

    def __init__(self, elements, basis="lmax3_deg4", cutoff: float = 5.0, n_features: int = 16,
                 n_layers: int = 1, n_radial: int = 8, radial: str = "bessel", channels: int | None = None,
                 hidden=(32,), normalization: str = "root", norm_eps: float = 1.0, activation: str = "silu",
                 backend: str = "auto", dtype: torch.dtype = torch.float64, seed: int | None = None):
        super().__init__()
        elements = list(elements)
        if not elements or not all(isinstance(e, str) and e for e in elements):
            raise ArgumentError(f"elements must be a non-empty list of chemical symbols, got {elements!r}")
        if len(set(elements)) != len(elements):
            raise ArgumentError(f"elements repeat: {elements}")
        if not (isinstance(cutoff, (int, float)) and math.isfinite(cutoff) and cutoff > 0):
            raise ArgumentError(f"cutoff must be a positive number, got {cutoff!r}")
        if not (isinstance(n_layers, int) and n_layers >= 1):
            raise ArgumentError(f"n_layers must be a positive integer, got {n_layers!r}")
        if activation not in _ACTIVATIONS:
            raise ArgumentError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        saved.dtype_name(dtype)  # validates
        basis = resolve_basis(basis)
        n_params = parameter_count(len(elements), basis, n_features=n_features, n_layers=n_layers,
                                   n_radial=n_radial, channels=channels, hidden=hidden,
                                   normalization=normalization)
        if n_params > MAX_PARAMETERS:
            size = torch.empty((), dtype=dtype).element_size()
            raise ArgumentError(
                f"this model would have {n_params:,} parameters (about {4 * n_params * size / 2**30:,.1f} GiB to "
                f"train with Adam in {saved.dtype_name(dtype)}), more than the {MAX_PARAMETERS:,} cartinv builds; "
                f"use fewer features, channels, radial functions, layers or hidden units")
        self.elements = elements
        self.cutoff = float(cutoff)
        self.basis = basis
        self.basis_name = basis.name
        self.backend = backend
        self._config = {
            "elements": elements, "cutoff": self.cutoff, "n_features": n_features, "n_layers": n_layers,
            "n_radial": n_radial, "radial": radial, "channels": channels, "hidden": [int(h) for h in hidden],
            "normalization": normalization, "norm_eps": float(norm_eps), "activation": activation,
        }
        generator_state = None
        if seed is not None:
            generator_state = torch.random.get_rng_state()
            torch.manual_seed(seed)
        try:
            self.embedding = torch.nn.Embedding(len(elements), n_features, dtype=dtype)
            torch.nn.init.normal_(self.embedding.weight, std=1.0)
            self.layers = torch.nn.ModuleList(
                TensorInvariantLayer(basis, n_features, n_features, radial=radial, n_radial=n_radial,
                                     cutoff=self.cutoff, channels=channels, normalization=normalization,
                                     eps=norm_eps, backend=backend, dtype=dtype)
                for _ in range(n_layers))
            self.activation = _ACTIVATIONS[activation]()
            widths = [n_features, *self._config["hidden"], 1]
            mlp = []
            for k, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
                mlp.append(torch.nn.Linear(a, b, dtype=dtype))
                if k < len(widths) - 2:
                    mlp.append(_ACTIVATIONS[activation]())
            self.head = torch.nn.Sequential(*mlp)
        finally:
            if generator_state is not None:
                torch.random.set_rng_state(generator_state)
        self.register_buffer("e0", torch.zeros(len(elements), dtype=dtype))
        self.register_buffer("energy_scale", torch.ones((), dtype=dtype))
        self.to(dtype)  # the cartinv modules (no parameters) follow

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the parameters (follows ``.double()`` / ``.float()`` / ``.to(dtype)``)."""
        return self.embedding.weight.dtype

    @property
    def config(self) -> dict:
        """The constructor arguments (besides basis, backend and seed) that rebuild this model: a fresh dict."""
        return {**self._config, "hidden": list(self._config["hidden"]), "elements": list(self.elements),
                "dtype": saved.dtype_name(self.dtype)}

    # ------------------------------------------------------------------ energy
    def set_energy_reference(self, e0, scale: float = 1.0) -> None:
        """Per-element reference energies ``e0`` (one per element) and the scale of the MLP output."""
        e0 = torch.as_tensor(e0, dtype=self.dtype)
        if e0.shape != (len(self.elements),):
            raise ArgumentError(f"e0 needs one value per element ({len(self.elements)}), got shape {tuple(e0.shape)}")
        if not scale > 0:
            raise ArgumentError(f"scale must be positive, got {scale!r}")
        with torch.no_grad():
            self.e0.copy_(e0)
            self.energy_scale.fill_(float(scale))

    def species_index(self, symbols) -> torch.Tensor:
        """Species indices for chemical symbols; ValueError naming every symbol the model does not know."""
        lookup = {e: k for k, e in enumerate(self.elements)}
        unknown = sorted({s for s in symbols if s not in lookup})
        if unknown:
            raise ArgumentError(f"species {unknown} are not in this model (it knows {self.elements})")
        return torch.tensor([lookup[s] for s in symbols], dtype=torch.int64)

    def _check(self, species, pair_i, pair_j, rij) -> None:
        n = species.shape[0] if species.ndim == 1 else -1
        if species.ndim != 1 or species.dtype != torch.int64:
            raise ArgumentError(f"species must be a 1-d int64 tensor, got {species.dtype} of shape {tuple(species.shape)}")
        if n and (int(species.min()) < 0 or int(species.max()) >= len(self.elements)):
            bad = sorted({int(s) for s in species if not 0 <= int(s) < len(self.elements)})
            raise ArgumentError(f"species indices {bad} are outside this model's elements {self.elements} "
                             f"(valid: 0..{len(self.elements) - 1})")
        if rij.ndim != 2 or rij.shape[1] != 3 or not rij.is_floating_point():
            raise ArgumentError(f"rij must be a float tensor of shape [P, 3], got {rij.dtype} {tuple(rij.shape)}")
        p = rij.shape[0]
        for name, idx in (("pair_i", pair_i), ("pair_j", pair_j)):
            if idx.ndim != 1 or idx.dtype != torch.int64 or idx.shape[0] != p:
                raise ArgumentError(f"{name} must be a 1-d int64 tensor with one entry per pair ({p}), got "
                                 f"{idx.dtype} of shape {tuple(idx.shape)}")
            if p and (int(idx.min()) < 0 or int(idx.max()) >= n):
                raise ArgumentError(f"{name} holds atom indices outside 0..{n - 1}")
        if p and bool((rij.detach().abs().sum(dim=1) == 0).any()):
            raise ArgumentError("a pair has rij = 0 (an atom paired with itself or two atoms on the same site)")

    def forward(self, species: torch.Tensor, pair_i: torch.Tensor, pair_j: torch.Tensor,
                rij: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            self._check(species, pair_i, pair_j, rij)
        rij = rij.to(self.dtype)
        z = self.embedding(species)
        for layer in self.layers:
            z = z + self.activation(layer(z, pair_i, pair_j, rij))
        return self.e0[species] + self.energy_scale * self.head(z).squeeze(1)

    # ------------------------------------------------------------------ persistence
    def _invariant_prefixes(self) -> list[str]:
        return [f"layers.{k}.invariants." for k in range(len(self.layers))]

    def _weights(self) -> dict:
        prefixes = self._invariant_prefixes()
        return {k: v.detach().cpu() for k, v in self.state_dict().items() if not k.startswith(tuple(prefixes))}

    def save(self, path) -> None:
        """Write config, weights, cartinv version, basis (JSON) and basis hash to ``path`` (torch.save)."""
        payload = {
            **saved.header(FORMAT, FORMAT_VERSION),
            "basis_name": self.basis_name,
            "basis_hash": self.basis.content_hash(),
            "basis_json": self.basis.to_json(),
            "config": self.config,
            "weights": self._weights(),
        }
        torch.save(payload, str(path))

    @classmethod
    def load(cls, path, backend: str = "auto", map_location="cpu") -> "CartinvPotential":
        """Rebuild a saved potential; ValueError for another cartinv version, another basis, or a foreign file."""
        from cartinv.symbolic.basisfile import BasisFileError, loads

        path = Path(path)
        try:
            payload = torch.load(str(path), map_location=map_location, weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:  # torch raises various types for non-torch files
            raise FileFormatError(f"{path}: not a saved CartinvPotential ({type(exc).__name__}: {exc})") from None
        saved.check_header(payload, str(path), FORMAT, FORMAT_VERSION, "not a saved CartinvPotential", "saved",
                           "retrain or load it with the matching cartinv version")
        _check_payload(payload, str(path))
        try:
            basis = loads(payload["basis_json"], source=f"{path} (basis)")
        except BasisFileError as exc:
            raise FileFormatError(str(exc)) from None
        if basis.content_hash() != payload["basis_hash"]:
            raise FileFormatError(f"{path}: the stored basis does not match its recorded hash (file altered?)")
        current = _checked_in(payload["basis_name"])
        if current is not None and current.content_hash() != payload["basis_hash"]:
            if current.columns_hash() != basis.columns_hash():
                raise FileFormatError(
                    f"{path}: basis {payload['basis_name']!r} in the file has other invariant columns than the "
                    f"one in this cartinv (column hash {basis.columns_hash()[:12]} against "
                    f"{current.columns_hash()[:12]}), so the weights do not apply")
            basis = current  # same columns, regenerated (relations or checks changed): use the shipped kernels
        cfg = dict(payload["config"])
        dtype = saved.DTYPES[cfg.pop("dtype")]
        model = cls(cfg.pop("elements"), basis=basis, backend=backend, dtype=dtype, **cfg)
        try:
            missing, unexpected = model.load_state_dict(payload["weights"], strict=False)
        except RuntimeError as exc:
            raise FileFormatError(f"{path}: weights do not fit the stored config "
                             f"({' '.join(str(exc).split())[:200]})") from None
        prefixes = tuple(model._invariant_prefixes())
        missing = [k for k in missing if not k.startswith(prefixes)]
        if missing or unexpected:
            raise FileFormatError(f"{path}: weights do not fit the stored config (missing {missing}, "
                             f"unexpected {unexpected})")
        return model


_CONFIG_CHECKS = {
    "elements": lambda v: type(v) is list and 1 <= len(v) <= 128 and len(set(v)) == len(v)
    and all(type(e) is str and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,15}", e) for e in v),
    "cutoff": lambda v: type(v) is float and math.isfinite(v) and 0 < v <= 1e3,
    "n_features": lambda v: type(v) is int and 1 <= v <= 4096,
    "n_layers": lambda v: type(v) is int and 1 <= v <= 16,
    "n_radial": lambda v: type(v) is int and 1 <= v <= 256,
    "radial": lambda v: type(v) is str and v in ("bessel", "gaussian"),
    "channels": lambda v: v is None or (type(v) is int and 1 <= v <= 4096),
    "hidden": lambda v: type(v) is list and len(v) <= 16 and all(type(h) is int and 1 <= h <= 65536 for h in v),
    "normalization": lambda v: type(v) is str and v in ("root", "group", "none"),
    "norm_eps": lambda v: type(v) is float and math.isfinite(v) and v > 0,
    "activation": lambda v: type(v) is str and v in _ACTIVATIONS,
    "dtype": lambda v: type(v) is str and v in saved.DTYPES,
}


def _check_payload(payload: dict, source: str) -> None:
    """Every field of a saved potential against its type and bounds (ValueError naming the field)."""
    expected = {"format", "format_version", "cartinv_version", "basis_name", "basis_hash", "basis_json", "config",
                "weights"}
    extra, missing = sorted(set(payload) - expected, key=str), sorted(expected - set(payload))
    if missing or extra:
        raise FileFormatError(f"{source}: saved potential {'lacks ' + repr(missing[0]) if missing else 'has an unknown key'}"
                         f"{'' if missing else ' ' + ascii(extra[0])[:40]}")
    if not (type(payload["basis_name"]) is str and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", payload["basis_name"])):
        raise FileFormatError(f"{source}: basis_name: not an identifier")
    if not (type(payload["basis_hash"]) is str and re.fullmatch(r"[0-9a-f]{64}", payload["basis_hash"])):
        raise FileFormatError(f"{source}: basis_hash: not a sha256 hex digest")
    if type(payload["basis_json"]) is not str:
        raise FileFormatError(f"{source}: basis_json: must be a string")
    cfg = payload["config"]
    if type(cfg) is not dict or set(cfg) != set(_CONFIG_CHECKS):
        keys = sorted(set(cfg) ^ set(_CONFIG_CHECKS), key=str) if type(cfg) is dict else []
        raise FileFormatError(f"{source}: config: " + (f"unexpected or missing key {ascii(keys[0])[:40]}" if keys
                                                  else "must be an object"))
    for key, ok in _CONFIG_CHECKS.items():
        if not ok(cfg[key]):
            raise FileFormatError(f"{source}: config.{key}: invalid value {ascii(cfg[key])[:40]}")
    weights = payload["weights"]
    if type(weights) is not dict or not all(type(k) is str and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise FileFormatError(f"{source}: weights: must map parameter names to tensors")
    for k, v in weights.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise FileFormatError(f"{source}: weights.{k}: holds NaN or infinity")


def _checked_in(name: str):
    """The Basis that this cartinv ships under ``name``, or None when no checked-in basis has that name."""
    from cartinv.runtime.kernels import load as runtime_load

    return runtime_load.checked_in_basis(name)
