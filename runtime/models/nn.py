"""Neural-network layers built on cartinv's generated invariants.

``TensorInvariantLayer`` is a HIP-HOP-style interaction layer (background §1, tied channels):

1. radial basis per pair: s_ν(r_ij), ν = 1..n_radial, smooth, exactly zero at and beyond the cutoff;
2. tied channel weights: w_c(j) = sum_{ν,b} V[c,ν,b] s_ν(r_ij) z_{j,b}  (z: input features of neighbour j);
3. moments and invariants through ``cartinv.load(basis)``: I[i, c, k] (the generated module accumulates
   T_{c,l} = sum_j w_c(j) Y_l(r̂_ij) and evaluates the basis's invariants per atom and channel);
4. per-invariant normalisation (invariants of degree d scale like the d-th power of the moments);
5. mixing: out_i = sum_{c,k} M[c,k,:] Ĩ[i,c,k] + W z_i + b  (the second part is the self-interaction).

Everything is differentiable to second order (forces, and force training by double backward) as long as the
cartinv module is.
"""

from __future__ import annotations

import math

import torch
from cartinv.errors import ArgumentError

from . import pair_contraction
from .root_norm import root_norm

__all__ = ["RadialBasis", "InvariantNorm", "TensorInvariantLayer", "resolve_basis", "invariant_degrees"]

RADIAL_KINDS = ("bessel", "gaussian")
NORMALIZATIONS = ("root", "group", "none")


def resolve_basis(basis_or_name):
    """A ``Basis`` from a Basis object, a checked-in basis name or a Basis file path (``cartinv.runtime.kernels.load``)."""
    from cartinv.runtime.kernels.load import resolve_basis as _resolve

    return _resolve(basis_or_name)


def invariant_degrees(basis) -> list[int]:
    """Polynomial degree of every invariant of ``basis`` (its number of factors; the Basis file records it)."""
    return [int(inv["degree"]) for inv in basis.invariants]


def cosine_cutoff(d: torch.Tensor, cutoff: float) -> torch.Tensor:
    """cos²(π d / 2 r_c) inside the cutoff, 0 outside: value and first derivative vanish at r_c."""
    inside = d < cutoff
    c = torch.cos(d * (math.pi / (2.0 * cutoff)))
    return torch.where(inside, c * c, torch.zeros_like(d))


class RadialBasis(torch.nn.Module):
    """Smooth radial functions s_ν(r) times a cosine cutoff; [P] distances -> [P, n_radial].

    ``kind="bessel"``: s_ν(r) = sqrt(2/r_c) sin(ν π r / r_c) / r, ν = 1..n (the cutoff envelope makes the
    derivative vanish at r_c as well).
    ``kind="gaussian"``: exp(-(r - μ_ν)² / 2σ²) with μ_ν evenly spaced on [r_min, r_c] and σ their spacing.
    With ``trainable=True`` the frequencies (Bessel) or centres and widths (Gaussian) are learned.
    """

    def __init__(self, n_radial: int, cutoff: float, kind: str = "bessel", r_min: float = 0.5,
                 trainable: bool = False, dtype: torch.dtype | None = None):
        super().__init__()
        dtype = dtype or torch.get_default_dtype()
        if kind not in RADIAL_KINDS:
            raise ArgumentError(f"radial kind must be one of {RADIAL_KINDS}, got {kind!r}")
        if not (isinstance(n_radial, int) and n_radial >= 1):
            raise ArgumentError(f"n_radial must be a positive integer, got {n_radial!r}")
        if not cutoff > 0:
            raise ArgumentError(f"cutoff must be positive, got {cutoff!r}")
        self.kind = kind
        self.n_radial = n_radial
        self.cutoff = float(cutoff)
        if kind == "bessel":
            freq = torch.arange(1, n_radial + 1, dtype=dtype) * (math.pi / self.cutoff)
            self._register("freq", freq, trainable)
        else:
            if not 0 <= r_min < cutoff:
                raise ArgumentError(f"r_min must lie in [0, cutoff), got {r_min!r}")
            mu = torch.linspace(r_min, self.cutoff, n_radial, dtype=dtype)
            width = (self.cutoff - r_min) / max(n_radial - 1, 1)
            self._register("mu", mu, trainable)
            self._register("sigma", torch.full((n_radial,), width, dtype=mu.dtype), trainable)

    def _register(self, name, value, trainable):
        if trainable:
            setattr(self, name, torch.nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, n_radial={self.n_radial}, cutoff={self.cutoff}"

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        env = cosine_cutoff(d, self.cutoff).unsqueeze(1)
        x = d.unsqueeze(1)
        if self.kind == "bessel":
            # d > 0 is required (a pair of coincident atoms has no direction either)
            base = math.sqrt(2.0 / self.cutoff) * torch.sin(x * self.freq) / x
        else:
            base = torch.exp(-0.5 * ((x - self.mu) / self.sigma) ** 2)
        return base * env


class InvariantNorm(torch.nn.Module):
    """Per-atom normalisation of invariants I [N, C, K] whose column k has polynomial degree d_k.

    ``"root"``: a smooth signed degree root, g_k(I) = I (|I| + ε)^{1/d_k − 1}, times a learned scale per
    invariant (initialised to 1). For |I| >> ε it is sign(I) |I|^{1/d_k}, so large invariants scale linearly with
    the moments whatever their degree; for |I| << ε it is linear, I ε^{1/d_k − 1}. It is odd, increasing,
    exactly I for d = 1, and continuously differentiable (also in autograd at I = 0), so forces stay finite on
    symmetric sites where moments vanish. The default ε = 1 keeps the slope at 0 equal to 1: a small ε makes
    the features of nearly symmetric sites very steep, which trains noticeably worse.
    ``"group"``: GroupNorm with one group per invariant over the channels of each atom (hippynn's choice), with
    a learned affine map.
    ``"none"``: identity.
    """

    def __init__(self, degrees, channels: int, mode: str = "root", eps: float = 1.0,
                 dtype: torch.dtype | None = None):
        super().__init__()
        dtype = dtype or torch.get_default_dtype()
        if mode not in NORMALIZATIONS:
            raise ArgumentError(f"normalization must be one of {NORMALIZATIONS}, got {mode!r}")
        if not eps > 0:
            raise ArgumentError(f"eps must be positive, got {eps!r}")
        self.mode = mode
        self.eps = float(eps)
        degrees = [int(d) for d in degrees]
        if any(d < 1 for d in degrees):
            raise ArgumentError(f"invariant degrees must be >= 1, got {degrees}")
        self.n_invariants = len(degrees)
        self.channels = channels
        self.register_buffer("exponent", torch.tensor([1.0 / d - 1.0 for d in degrees], dtype=dtype))
        if mode == "root":
            self.scale = torch.nn.Parameter(torch.ones(len(degrees), dtype=dtype))
        elif mode == "group":
            self.group = torch.nn.GroupNorm(len(degrees), len(degrees) * channels, eps=1e-5, affine=True,
                                            dtype=dtype)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, eps={self.eps}"

    def forward(self, inv: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return inv
        if self.mode == "root":
            # (|I| + ε)^e = ε^e (1 + |I|/ε)^e, as one autograd node with its derivatives written out (root_norm.py)
            return root_norm(inv, self.scale * self.eps ** self.exponent, self.exponent, self.eps)
        n, c, k = inv.shape
        flat = inv.permute(0, 2, 1).reshape(n, k * c)
        return self.group(flat).reshape(n, k, c).permute(0, 2, 1)


class TensorInvariantLayer(torch.nn.Module):
    """Tied-channel tensor-moment interaction layer on cartinv invariants.

    :param basis: a ``Basis``, a checked-in basis name (``"lmax3_deg4"``, ...) or a Basis file path
    :param n_in: input features per atom
    :param n_out: output features per atom
    :param radial: ``"bessel"`` or ``"gaussian"`` (see ``RadialBasis``)
    :param n_radial: number of radial functions
    :param cutoff: radial cutoff (same length unit as the pair vectors); pairs at or beyond it contribute 0
    :param channels: number of tied channels (default ``n_out``); for a basis that couples B > 1 channels, the
        number of groups of B channels, each with its own invariants
    :param normalization: ``"root"``, ``"group"`` or ``"none"`` (see ``InvariantNorm``)
    :param backend: cartinv backend (``"auto"``, ``"torch"``, ``"cpu"``, ``"cuda"``)
    :param self_interaction: add W z_i + b
    :param eps: smoothing of the ``"root"`` normalisation
    :param dtype: parameter dtype (default: torch's default dtype)

    ``forward(features [N, n_in], pair_i [P], pair_j [P], rij [P, 3]) -> [N, n_out]`` with ``rij = r_j − r_i``
    and ``pair_i`` the centre atom of each pair. Atoms without neighbours get the self-interaction only.
    """

    def __init__(self, basis, n_in: int, n_out: int, radial: str = "bessel", n_radial: int = 8,
                 cutoff: float = 5.0, channels: int | None = None, normalization: str = "root",
                 backend: str = "auto", self_interaction: bool = True, eps: float = 1.0,
                 dtype: torch.dtype | None = None):
        super().__init__()
        import cartinv

        self.basis = resolve_basis(basis)
        for name, v in (("n_in", n_in), ("n_out", n_out)):
            if not (isinstance(v, int) and v >= 1):
                raise ArgumentError(f"{name} must be a positive integer, got {v!r}")
        self.n_in = n_in
        self.n_out = n_out
        self.channels = n_out if channels is None else int(channels)
        if self.channels < 1:
            raise ArgumentError(f"channels must be positive, got {channels!r}")
        # a basis with B > 1 channels couples B moment channels inside each group: B weights per group
        self.basis_channels = int(self.basis.channels)
        self.cutoff = float(cutoff)
        self.backend = backend
        dtype = dtype or torch.get_default_dtype()
        self.radial = RadialBasis(n_radial, cutoff, kind=radial, dtype=dtype)
        self.invariants = cartinv.load(self.basis, backend=backend)
        degrees = invariant_degrees(self.basis)
        self.n_invariants = len(degrees)
        self.norm = InvariantNorm(degrees, self.channels, mode=normalization, eps=eps, dtype=dtype)
        # V[c, ν, b]: channel weights from (radial function, input feature)
        n_w = self.channels * self.basis_channels
        self.int_weights = torch.nn.Parameter(
            torch.randn(n_w, n_radial, n_in, dtype=dtype) / math.sqrt(n_radial * n_in))
        # M[c, k, o]: invariants of every channel to output features
        self.mixing = torch.nn.Parameter(
            torch.randn(self.channels, self.n_invariants, n_out, dtype=dtype)
            / math.sqrt(self.channels * self.n_invariants))
        self.selfint = torch.nn.Linear(n_in, n_out, dtype=dtype) if self_interaction else None

    def extra_repr(self) -> str:
        return (f"basis={self.basis.name!r}, n_in={self.n_in}, n_out={self.n_out}, channels={self.channels}, "
                f"invariants={self.n_invariants}")

    def pair_weights(self, features: torch.Tensor, pair_j: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        """w[p, c] = sum_{ν,b} V[c,ν,b] s_ν(|r_p|) z[j_p, b]: [P, channels], or [P, channels, B] for a basis
        that couples B > 1 channels."""
        s = self.radial(dist)  # [P, n_radial]
        n_rad = s.shape[1]
        n_w = self.int_weights.shape[0]
        # project at atom level first (N * n_in * n_w * n_radial), then contract with the pairs' radial functions
        zv = features @ self.int_weights.permute(2, 1, 0).reshape(self.n_in, n_rad * n_w)
        w = pair_contraction.contract(s, zv.reshape(-1, n_rad, n_w), pair_j)
        return w if self.basis_channels == 1 else w.reshape(-1, self.channels, self.basis_channels)

    def invariant_features(self, features, pair_i, pair_j, rij) -> torch.Tensor:
        """Normalised invariants [N, channels, K] before mixing."""
        n_atoms = features.shape[0]
        if rij.shape[0] == 0:
            inv = features.new_zeros((n_atoms, self.channels, self.n_invariants))
        else:
            dist = torch.linalg.vector_norm(rij, dim=1)
            w = self.pair_weights(features, pair_j, dist)
            inv = self.invariants(rij, pair_i, w, n_atoms)
        return self.norm(inv)

    def forward(self, features: torch.Tensor, pair_i: torch.Tensor, pair_j: torch.Tensor,
                rij: torch.Tensor) -> torch.Tensor:
        inv = self.invariant_features(features, pair_i, pair_j, rij)
        out = inv.reshape(inv.shape[0], -1) @ self.mixing.reshape(-1, self.n_out)
        if self.selfint is not None:
            out = out + self.selfint(features)
        return out
