"""The Atomic Cluster Expansion (ACE) invariant basis, pruned to a functionally independent subset (background §5).

Atomic basis and blocks
    A_{z,n,l,m} = Σ_j R_n(r_ij) [species_j = z] Y_{l,m}(r̂_ij),   z = 0..species−1, n = 1..n_max, l = 0..l_max.
    In cartinv terms A_{z,n,l,·} is the block (channel, l) with channel = z·n_max + (n − 1): the runtime computes
    T_{channel,l} = Σ_j w_channel(j) Y_l(r̂_ij) with w_channel(j) = R_n(r_ij) [species_j = z]. The radial weight is
    **tied across l** (R_n(r), not R_{nl}); that is the only restriction against general ACE.
    Y_{l,m} are the standard real spherical harmonics (symbolic/cg.py) in **component normalisation**
    Σ_m Y_{l,m}² = 2l+1 (√(4π) times the orthonormal ones; the factor (4π)^{−ν/2} per B changes no count and is
    absorbed by any fit). The orthonormal STF coordinates of symbolic/stf.py are c_{l,m} = κ_l Y_{l,m} with
    κ_l² = l! / ((2l+1) (2l−1)!!), so A_{z,n,l,m} = T_{channel,l,m} / κ_l.

B functions (the "full" basis)
    For ν = 1..ν_max, every sorted tuple v_1 ≤ ... ≤ v_ν of single-particle labels v = (z, n, l) (tuple order)
    with Σ l even (O(3) invariants; ν = 1 means l = 0; with group "so3" also odd Σ l, the pseudoscalars of
    symbolic/ace/chirality.py), and every sequential coupling path
    L_1 = l_1, L_k ∈ |L_{k−1} − l_k| .. L_{k−1} + l_k (k = 2..ν−1), L_{ν−1} = l_ν (so the last step couples to 0):

        B = Σ_m  Π_{k=2..ν} ⟨L_{k−1} M_{k−1} l_k m_k | L_k M_k⟩  Π_k A^complex_{v_k, m_k},   M_k = m_1 + ... + m_k,

    with complex A^complex (Condon–Shortley) obtained from the real A by the unitary of symbolic/cg.py; B is real
    because Σ l is even. `couplings` lists L_2..L_{ν−1} (for ν = 3 this is (l_3,)). Intermediate couplings of either
    parity are included (pacemaker-style generalised Clebsch–Gordan coefficients); for two equal factors and an odd
    intermediate L the function vanishes identically and is dropped as linear ("= 0").

Exactness without square roots
    In Racah's form of each Clebsch–Gordan coefficient (symbolic/cg.py) the factor sqrt(f(L_k, M_k)) of every
    intermediate appears twice along the chain and becomes rational; the factors sqrt(f(l_k, m_k)) of the external
    legs are absorbed into rescaled complex coordinates a_{v,m} = sqrt((l+m)!(l−m)!) A^complex_{v,m}; what is left is
    a constant κ_B = Π_k Δ(L_{k−1} l_k L_k) (a square root of a rational). So B = κ_B · P_B(a) with P_B a polynomial
    with **rational** coefficients in variables a that are an invertible linear change of the real coordinates.
    Linear and functional (Jacobian) ranks are unchanged by nonzero constant factors and invertible linear changes
    of variables, so every rank is computed from P_B with integers mod p (primes of symbolic/modular.py) and
    `cartinv.symbolic.modular.Echelon`: a full rank mod p at random points proves independence (a rank mod p at a
    point is a lower bound of the rank over Q); dependence is confirmed at a second prime and independent points.
    No floating-point tolerance decides anything.

Pruning (ACE's usual order: low ν first, then low Σ (n + l), then the label tuple, then the coupling path)
    1. linear: B functions of different label multisets are homogeneous of different multidegree in the blocks,
       hence linearly independent of each other; so linear dependence is decided within each label tuple, from the
       values of its coupling paths at (paths + 8) random points mod each prime. A dropped function carries an
       explicit relation B = Σ q_k sqrt(κ_B² / κ_k²) B_k (q rational: CRT over both primes, rational
       reconstruction, then verified at fresh points), "= 0" when it vanishes, or null if no rational relation was
       reconstructed (the rank evidence stands).
    2. functional: the linearly independent survivors, in the same order, are kept iff their Jacobian row (at one
       random point per prime) raises the rank; the kept count is the Jacobian rank of the whole basis and never
       exceeds the bound D − 3 of symbolic/bounds.py.

The result is a Basis (`kind: "ace"`, symbolic/basisfile.py) whose invariants carry exact SymPy formulas in the
block coordinates, so code generation and the runtime treat it like any other Basis.

Modules, one job each: request (limits, AceFunction), enumeration, couplings (rational coupling chains),
modular_eval (values and Jacobian rows mod p), selection (linear then functional pruning), chirality (the SO(3)
pseudoscalar, its square and strata), formulas (exact polynomials), assemble (the Basis file and counts), numeric
(floating-point evaluation for fits). This package
re-exports their public names, so ``from cartinv.symbolic import ace; ace.derive_ace_basis(...)`` works as before.
"""

from .request import (
    CHECK_POINTS, CONVENTION, LINEAR_MARGIN, MAX_CHANNELS, MAX_FUNCTIONS, MAX_LMAX, MAX_NMAX, MAX_NU, MAX_SPECIES,
    SEED, AceFunction, AceRequestError, Label, check_request,
)
from .enumeration import block_layout, coupling_paths, enumerate_ace, single_particle_labels
from .couplings import kappa2, lambda2, rational_chain
from .modular_eval import ModularAce, _by_pattern
from .selection import (
    AceSelection, full_jacobian_rank, invariant_dimension, linear_dimension, rank_mod_p, select_ace,
)
from .formulas import coefficient_text, formula, real_polynomial
from .assemble import assemble, basis_name, derive_ace_basis, format_counts, functions_of
from .numeric import AceEvaluator, real_chain
from . import chirality

__all__ = [
    "CHECK_POINTS",
    "CONVENTION",
    "LINEAR_MARGIN",
    "MAX_CHANNELS",
    "MAX_FUNCTIONS",
    "MAX_LMAX",
    "MAX_NMAX",
    "MAX_NU",
    "MAX_SPECIES",
    "SEED",
    "AceFunction",
    "AceRequestError",
    "Label",
    "check_request",
    "AceSelection",
    "full_jacobian_rank",
    "invariant_dimension",
    "linear_dimension",
    "rank_mod_p",
    "select_ace",
    "block_layout",
    "coupling_paths",
    "enumerate_ace",
    "single_particle_labels",
    "kappa2",
    "lambda2",
    "rational_chain",
    "ModularAce",
    "_by_pattern",
    "coefficient_text",
    "formula",
    "real_polynomial",
    "assemble",
    "basis_name",
    "derive_ace_basis",
    "format_counts",
    "functions_of",
    "AceEvaluator",
    "real_chain",
    "chirality",
]
