"""Fit EMT copper with the full ACE basis and with its pruned subsets (issue 4, part 4).

Dataset
    ASE's EMT calculator (effective-medium theory, Jacobsen–Stoltze–Nørskov) on fcc Cu: 2×2×2 cubic supercells
    (32 atoms, a = 3.61 Å) under a random symmetric strain (|ε_ij| ≤ 3 %) with random Gaussian displacements
    (σ drawn from 0.02–0.15 Å per structure); a quarter of the structures have one atom removed (vacancy).
    Energies and forces come from EMT; nothing else is added (EMT is deterministic, so "noise" below means the
    spread over random train/test splits).

Descriptors
    Block coordinates T_{n,l}(i) = Σ_j R_n(r_ij) Y_l(r̂_ij) (orthonormal STF coordinates, cartinv.symbolic.stf)
    with R_n(r) = T_{n−1}(x) f_c(r): Chebyshev polynomials of x = 2 (r − r_in)/(r_c − r_in) − 1 and the cosine
    cutoff f_c(r) = (1 + cos(π r / r_c)) / 2, r_in = 2 Å, r_c = 5.8 Å (EMT's own neighbour list ends at 5.88 Å).
    The B functions are evaluated from T by cartinv.symbolic.ace.AceEvaluator; ∂B/∂T by the same code, ∂T/∂r by
    torch autograd per pair.

Models (ridge regression; E = Σ_i w·φ(B(i)) + e_0 N; energy rows per atom, weight 10 Å, plus force rows)
    full       linear in every B function of the ACE basis;
    linear     linear in the linearly independent subset (same span as full: fits identically up to the
               ridge penalty);
    functional linear in the functionally independent subset (the pruned Basis written by derive_ace_basis);
    func+poly  ridge on every product of functional-subset invariants with total correlation order Σν ≤ ν_max
               (the same body order as the full basis). The dropped members are functions of the kept ones,
               not linear combinations of them, so a linear model on the pruned set alone cannot reproduce them;
               this fixed polynomial layer restores the nonlinearity at no extra invariant evaluations.
    gen+poly   ridge on every product of the minimal polynomial generators (cartinv basis --generators: full
               contractions of the blocks T_{n,l}, symbolic/generators.py) of total degree ≤ ν_max. Every
               invariant polynomial of degree ≤ ν_max is a combination of these products, so this is the full
               ACE span (the linearly independent B functions span the same space, of the Molien dimension),
               reached from far fewer evaluated invariants.
    The ridge parameter is chosen per model and split on a validation set (grid 1e-10..1e-1 on standardised
    columns), then the model is refitted on train + validation and scored on the test set.
Same nonlinear model for each feature set (the fair comparison; first --mlp-splits splits)
    A linear model on the 45 pruned invariants cannot reproduce a linear model on all 1409 (the dropped ones are
    nonlinear functions of the kept ones), so the pruned set is compared with the full span under the SAME model:
    MLP <set>  per-atom energy = MLP(standardised invariants of <set>), K -> 64 -> 64 -> 1 (SiLU), for <set> in
               --mlp-sets (default: linear, i.e. the 1103 linearly independent functions, same span as full; and
               functional, the 45 pruned ones). Identical for every set: architecture, initialisation seed
               (--seed + split), full-batch Adam (lr --mlp-lr, cosine decay over --mlp-epochs), loss (energy per
               atom × 10 Å and force components, forces by double backward through the network, then ∂B/∂T and
               ∂T/∂r), and early stopping: the state with the best validation score 10 Å·RMSE_E + RMSE_F
               (checked every 25 epochs) is scored on the test set. Only the input width K differs, so the first
               layer has 64·K weights.

Splits: 60 % train, 20 % validation, 20 % test, by structure; mean ± standard deviation over the splits.

Timing
    Per atom, on the test structures of the first split: invariants only (energy) and invariants with ∂B/∂T
    (energy and forces), same evaluator for every model; the pair part (T and ∂T/∂r) is shared by all models
    and reported separately. For the MLPs, "net" is the network's forward pass plus ∂E/∂B per atom (add it to
    B+dB for an energy + force evaluation). Wall-clock numbers depend on the machine's load.

Run: python examples/ace_fit.py [--nu 4 --nmax 3 --lmax 3 --structures 200 --splits 5 --mlp-epochs 1500
     --mlp-splits 3 --mlp-lr 3e-3 --mlp-sets linear,functional --basis-out FILE] [--quick]
     Almost all of the default run is training the MLPs: 889 s (about 15 minutes) on the unloaded 2-core
     machine, measured; --quick (80 structures, 300 epochs) is a smoke run (115 s there, measured);
     --mlp-splits 1 cuts the default by 3×.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cartinv.symbolic import ace, stf
from cartinv.symbolic.generators import find_generators

R_IN, R_CUT = 2.0, 5.8
ENERGY_WEIGHT = 10.0  # Å: energy-per-atom rows are multiplied by this relative to force rows


# ------------------------------------------------------------------------------------------------ dataset
def make_dataset(count: int, seed: int):
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    data = []
    for s in range(count):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
        if s % 4 == 3:
            del atoms[int(rng.integers(len(atoms)))]
        eps = rng.uniform(-0.03, 0.03, size=(3, 3))
        eps = 0.5 * (eps + eps.T)
        atoms.set_cell(atoms.cell @ (np.eye(3) + eps), scale_atoms=True)
        atoms.positions += rng.normal(scale=rng.uniform(0.02, 0.15), size=atoms.positions.shape)
        atoms.calc = EMT()
        data.append({"atoms": atoms, "energy": atoms.get_potential_energy(), "forces": atoms.get_forces().copy()})
    return data


# ------------------------------------------------------------------------------------------ block coordinates
class PairFeatures:
    """φ(r_vec) = [R_n(r) Y_l(r̂)]_{n,l,m} in Basis coordinate order (channel n−1 major, then l, then m)."""

    def __init__(self, nmax: int, lmax: int):
        self.nmax, self.lmax = nmax, lmax
        self.e = [torch.tensor(stf.orthonormal_basis(l)) for l in range(lmax + 1)]

    def phi(self, v: torch.Tensor) -> torch.Tensor:
        r = torch.linalg.norm(v)
        u = v / r
        x = 2 * (r - R_IN) / (R_CUT - R_IN) - 1
        fc = 0.5 * (1 + torch.cos(torch.pi * r / R_CUT))
        cheb = [torch.ones_like(x), x]
        while len(cheb) < self.nmax:
            cheb.append(2 * x * cheb[-1] - cheb[-2])
        ys, p = [], torch.ones(1, dtype=v.dtype)
        for l in range(self.lmax + 1):
            ys.append(self.e[l] @ p)
            p = (p[:, None] * u[None, :]).reshape(-1)
        y = torch.cat(ys)
        return torch.cat([cheb[n] * fc * y for n in range(self.nmax)])

    def structure(self, atoms):
        """T (atoms, D) and S = ∂T/∂r (atoms, D, atoms, 3) for one structure."""
        from ase.neighborlist import neighbor_list

        i, j, d = neighbor_list("ijD", atoms, R_CUT)
        v = torch.tensor(d, dtype=torch.float64)
        phi = torch.vmap(self.phi)(v).numpy()
        jac = torch.vmap(torch.func.jacfwd(self.phi))(v).numpy()  # (pairs, D, 3)
        n, dim = len(atoms), phi.shape[1]
        t = np.zeros((n, dim))
        np.add.at(t, i, phi)
        s = np.zeros((n, dim, n, 3))
        np.add.at(s, (i, slice(None), j), jac)  # d = r_j - r_i (+ shift)
        np.add.at(s, (i, slice(None), i), -jac)
        return t, s


# ------------------------------------------------------------------------------------------------ models
def monomials(functions: list[ace.AceFunction], max_order: int) -> list[tuple[int, ...]]:
    """Index multisets of the given invariants whose correlation orders ν add up to at most max_order."""
    out = []

    def rec(start: int, order: int, acc: tuple[int, ...]):
        if acc:
            out.append(acc)
        for k in range(start, len(functions)):
            if order + functions[k].nu <= max_order:
                rec(k, order + functions[k].nu, acc + (k,))

    rec(0, 0, ())
    return sorted(out, key=lambda m: (len(m), m))


class Polynomial:
    """Features Π_{k∈S} B_k for the monomials S (per atom) and their gradients by the product rule."""

    def __init__(self, monos: list[tuple[int, ...]]):
        self.by_len = {}
        for pos, m in enumerate(monos):
            self.by_len.setdefault(len(m), ([], []))
            self.by_len[len(m)][0].append(pos)
            self.by_len[len(m)][1].append(m)
        self.by_len = {k: (np.array(p), np.array(m)) for k, (p, m) in self.by_len.items()}
        self.count = len(monos)

    def __call__(self, vals: np.ndarray, grads: np.ndarray | None):
        out = np.empty((vals.shape[0], self.count))
        gout = None if grads is None else np.empty((vals.shape[0], self.count, grads.shape[2]))
        for length, (pos, idx) in self.by_len.items():
            factors = vals[:, idx]  # (atoms, M, length)
            out[:, pos] = factors.prod(axis=2)
            if grads is None:
                continue
            g = np.zeros((vals.shape[0], len(pos), grads.shape[2]))
            for p in range(length):
                others = np.delete(factors, p, axis=2).prod(axis=2) if length > 1 else np.ones(factors.shape[:2])
                g += others[..., None] * grads[:, idx[:, p]]
            gout[:, pos] = g
        return out, gout


class GeneratorEvaluator:
    """Values and ∂/∂T of contraction graphs (the polynomial generators) from the block coordinates T, with the
    AceEvaluator interface: each graph is an einsum over the blocks' Cartesian STF tensors; its derivative in one
    factor is the einsum of the other factors, mapped back to that block's coordinates (the STF tensor is linear in
    them: flat = c @ E_l, so ∂/∂c = ∂/∂flat @ E_lᵀ)."""

    def __init__(self, graphs, nmax: int, lmax: int):
        self.functions = list(graphs)
        _, self.offsets, self.dim = ace.block_layout(nmax, lmax, 1)
        self.basis = {l: torch.tensor(np.array(stf.orthonormal_basis(l))) for l in range(lmax + 1)}  # (2l+1, 3^l)
        self.specs = []
        for g in self.functions:
            subs = g.einsum.split("->")[0].split(",")
            self.specs.append((tuple(g.labels), subs))

    def _cart(self, x: torch.Tensor) -> dict:
        cart = {}
        for (c, l), off in self.offsets.items():
            cart[(c, l)] = (x[:, off:off + 2 * l + 1] @ self.basis[l]).reshape((-1,) + (3,) * l)
        return cart

    @staticmethod
    def _spec(subs, out: str = "") -> str:
        return ",".join("Z" + s for s in subs) + "->Z" + out

    def values(self, t: np.ndarray) -> np.ndarray:
        cart = self._cart(torch.as_tensor(t))
        return torch.stack([torch.einsum(self._spec(subs), *[cart[b] for b in labels])
                            for labels, subs in self.specs], 1).numpy()

    def values_and_gradients(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(atoms, K) values and (atoms, K, D) gradients."""
        x = torch.as_tensor(t)
        cart = self._cart(x)
        vals = torch.empty(len(x), len(self.specs), dtype=x.dtype)
        grads = torch.zeros(len(x), len(self.specs), self.dim, dtype=x.dtype)
        for k, (labels, subs) in enumerate(self.specs):
            ops = [cart[b] for b in labels]
            vals[:, k] = torch.einsum(self._spec(subs), *ops)
            for i, (c, l) in enumerate(labels):
                off = self.offsets[(c, l)]
                if len(labels) == 1:  # T0 itself
                    grads[:, k, off] += 1.0
                    continue
                rest = subs[:i] + subs[i + 1:]
                d_flat = torch.einsum(self._spec(rest, subs[i]), *(ops[:i] + ops[i + 1:])).reshape(len(x), -1)
                grads[:, k, off:off + 2 * l + 1] += d_flat @ self.basis[l].T
        return vals.numpy(), grads.numpy()


class _Degree:
    """A generator seen by `monomials`: its correlation order ν is its number of factors."""

    def __init__(self, graph):
        self.nu = graph.degree


def design(structures, evaluator: ace.AceEvaluator, poly: Polynomial | None, chunk_atoms: int = 512):
    """Energy-per-atom rows (structures, K+1) and force rows (3N total, K+1); last column = constant e_0.

    Invariants are per atom, so structures are evaluated together in chunks of about `chunk_atoms` atoms."""
    e_rows, f_rows = [], []
    start = 0
    while start < len(structures):
        stop, atoms = start, 0
        while stop < len(structures) and (stop == start or atoms + len(structures[stop]["T"]) <= chunk_atoms):
            atoms += len(structures[stop]["T"])
            stop += 1
        group = structures[start:stop]
        vals_all, grads_all = evaluator.values_and_gradients(np.concatenate([st["T"] for st in group]))
        if poly is not None:
            vals_all, grads_all = poly(vals_all, grads_all)
        first = 0
        for st in group:
            n = len(st["T"])
            vals, grads = vals_all[first:first + n], grads_all[first:first + n]
            first += n
            e_rows.append(np.append(vals.sum(0) / n, 1.0))
            # F_a = −∂E/∂r_a = −Σ_i Σ_d ∂E/∂T_d(i) ∂T_d(i)/∂r_a
            dbdr = np.tensordot(grads, st["S"], axes=([0, 2], [0, 1]))  # (K, atoms, 3)
            f = -np.transpose(dbdr, (1, 2, 0)).reshape(3 * n, -1)
            f_rows.append(np.concatenate([f, np.zeros((3 * n, 1))], 1))
        start = stop
    return np.array(e_rows), np.concatenate(f_rows)


def targets(structures):
    e = np.array([st["energy"] / len(st["atoms"]) for st in structures])
    f = np.concatenate([st["forces"].reshape(-1) for st in structures])
    return e, f


class Normal:
    """Sufficient statistics of weighted rows (energy rows × ENERGY_WEIGHT, force rows × 1): XᵀX, Xᵀy, Σx, n."""

    def __init__(self, xe, xf, ye, yf):
        x = np.concatenate([ENERGY_WEIGHT * xe, xf])
        y = np.concatenate([ENERGY_WEIGHT * ye, yf])
        self.gram, self.rhs, self.total, self.n = x.T @ x, x.T @ y, x.sum(0), len(x)

    def __add__(self, other: "Normal") -> "Normal":
        out = object.__new__(Normal)
        out.gram, out.rhs = self.gram + other.gram, self.rhs + other.rhs
        out.total, out.n = self.total + other.total, self.n + other.n
        return out

    def solve(self, alpha: float) -> np.ndarray:
        """Ridge on standardised columns (the constant column unscaled and unpenalised)."""
        var = np.diag(self.gram) / self.n - (self.total / self.n) ** 2
        scale = np.sqrt(np.clip(var, 0.0, None))
        scale[scale == 0] = 1.0
        scale[-1] = 1.0
        g = self.gram / np.outer(scale, scale)
        reg = alpha * np.trace(g) / len(g) * np.eye(len(g))
        reg[-1, -1] = 0.0
        return np.linalg.solve(g + reg, self.rhs / scale) / scale


def rmse(xe, xf, ye, yf, w):
    return float(np.sqrt(np.mean((xe @ w - ye) ** 2))), float(np.sqrt(np.mean((xf @ w - yf) ** 2)))


def fit_split(rows, ye, yf, atoms_of, split):
    """rows = (energy design, force design); split = (train, val, test) structure index arrays."""
    xe, xf = rows

    def force_idx(structs):
        return np.concatenate([np.arange(atoms_of[s][0], atoms_of[s][1]) for s in structs])

    tr, va, te = split
    stats = {name: Normal(xe[idx], xf[force_idx(idx)], ye[idx], yf[force_idx(idx)]) for name, idx in
             (("train", tr), ("val", va))}
    best = None
    for alpha in 10.0 ** np.arange(-10, 0):
        w = stats["train"].solve(alpha)
        err_e, err_f = rmse(xe[va], xf[force_idx(va)], ye[va], yf[force_idx(va)], w)
        score = ENERGY_WEIGHT * err_e + err_f
        if best is None or score < best[0]:
            best = (score, alpha)
    w = (stats["train"] + stats["val"]).solve(best[1])
    return rmse(xe[te], xf[force_idx(te)], ye[te], yf[force_idx(te)], w), best[1]


class AtomMLP(torch.nn.Module):
    """Per-atom energy from standardised invariants: K -> 64 -> 64 -> 1 (SiLU)."""

    def __init__(self, k: int, width: int = 64):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(k, width), torch.nn.SiLU(), torch.nn.Linear(width, width),
                                       torch.nn.SiLU(), torch.nn.Linear(width, 1))

    def forward(self, x):
        return self.net(x)[:, 0]


def mlp_inputs(structures, evaluator: ace.AceEvaluator):
    """Per structure, padded to M atoms: invariants (S, M, K), ∂B/∂T (S, M, K, D), ∂T/∂r as (S, M·D, M·3),
    atom mask (S, M), reference forces (S, M, 3). Keeping the chain rule in two factors (D = block coordinates)
    instead of ∂B/∂r (K × 3M per atom) keeps the memory and the per-epoch work linear in K."""
    m = max(len(st["atoms"]) for st in structures)
    k, dim = len(evaluator.functions), evaluator.dim
    feats = np.zeros((len(structures), m, k))
    grads = np.zeros((len(structures), m, k, dim), dtype=np.float32)
    pair = np.zeros((len(structures), m, dim, m, 3), dtype=np.float32)
    atom_mask = np.zeros((len(structures), m), dtype=bool)
    forces = np.zeros((len(structures), m, 3))
    for s, st in enumerate(structures):
        v, g = evaluator.values_and_gradients(st["T"])
        n = len(v)
        feats[s, :n], grads[s, :n], pair[s, :n, :, :n] = v, g, st["S"]
        atom_mask[s, :n] = True
        forces[s, :n] = st["forces"]
    return feats, grads, pair.reshape(len(structures), m * dim, m * 3), atom_mask, forces


def fit_mlp(inputs, energies, split, epochs: int, seed: int, lr: float = 3e-3, check_every: int = 25):
    """Full-batch Adam (cosine decay) on energies (per atom, weight ENERGY_WEIGHT) and forces (double backward
    through the MLP, then ∂B/∂T and ∂T/∂r); every check_every epochs the validation score
    ENERGY_WEIGHT·RMSE_E + RMSE_F is computed and the best state is scored on the test set (early stopping)."""
    feats, grads, pair, atom_mask, forces = inputs
    torch.manual_seed(seed)
    _, m, k = feats.shape
    dim = grads.shape[-1]

    def subset(structs):
        return (torch.tensor(feats[structs]), torch.from_numpy(grads[structs]), torch.from_numpy(pair[structs]),
                torch.tensor(atom_mask[structs]), torch.tensor(energies[structs]), torch.tensor(forces[structs]))

    tr, va, te = (subset(np.asarray(x)) for x in split)
    atoms = tr[0][tr[3]]
    mu, sigma = atoms.mean(0), atoms.std(0).clamp_min(1e-12)
    e_mean = float(tr[4].mean())
    model = AtomMLP(k)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)

    def errors(data, create_graph=False):
        b, g_bt, s_tr, mask, e_ref, f_ref = data
        x = ((b - mu) / sigma).float().requires_grad_(True)
        e_atom = model(x.reshape(-1, k)).reshape(mask.shape) * mask
        e = e_atom.double().sum(1) / mask.sum(1) + e_mean
        (g,) = torch.autograd.grad(e_atom.sum(), x, create_graph=create_graph)
        g = (g / sigma.float()).reshape(-1, 1, k)
        u = torch.bmm(g, g_bt.reshape(-1, k, dim)).reshape(len(b), 1, m * dim)  # ∂E/∂T per atom
        f = -torch.bmm(u, s_tr).reshape(f_ref.shape)
        return e - e_ref, (f.double() - f_ref)[mask]

    best = (float("inf"), None, -1)
    for epoch in range(epochs):
        opt.zero_grad()
        de, df = errors(tr, create_graph=True)
        loss = ((ENERGY_WEIGHT * de) ** 2).sum() + (df ** 2).sum()
        (loss / (len(de) + df.numel())).backward()
        opt.step()
        sched.step()
        if epoch % check_every == check_every - 1 or epoch == epochs - 1:
            de, df = errors(va)
            score = ENERGY_WEIGHT * float(de.detach().pow(2).mean().sqrt()) + float(df.detach().pow(2).mean().sqrt())
            if score < best[0]:
                best = (score, {key: v.clone() for key, v in model.state_dict().items()}, epoch + 1)
    model.load_state_dict(best[1])
    de, df = errors(te)
    err = (float(de.detach().pow(2).mean().sqrt()), float(df.detach().pow(2).mean().sqrt()))
    return err, model, (mu, sigma), best[2]


def timing(structures, evaluator, poly: Polynomial | None, repeat: int = 3):
    n = sum(len(st["atoms"]) for st in structures)
    t_all = np.concatenate([st["T"] for st in structures])
    best_v = best_g = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        v = evaluator.values(t_all)
        if poly is not None:
            poly(v, None)
        best_v = min(best_v, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for st in structures:
            v, g = evaluator.values_and_gradients(st["T"])
            if poly is not None:
                poly(v, g)
        best_g = min(best_g, time.perf_counter() - t0)
    return 1e6 * best_v / n, 1e6 * best_g / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nu", type=int, default=4)
    ap.add_argument("--nmax", type=int, default=3)
    ap.add_argument("--lmax", type=int, default=3)
    ap.add_argument("--structures", type=int, default=200)
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--basis-out", default=None, help="write the pruned ACE Basis file here")
    ap.add_argument("--mlp-epochs", type=int, default=1500, help="0 skips the MLP comparison")
    ap.add_argument("--mlp-splits", type=int, default=3, help="the MLPs are trained on the first splits only")
    ap.add_argument("--mlp-lr", type=float, default=3e-3)
    ap.add_argument("--mlp-sets", default="linear,functional",
                    help="comma-separated feature sets (full, linear, functional) that each get the same MLP")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 80 structures, 3 splits, 300 MLP epochs (about 2 minutes on 2 cores)")
    args = ap.parse_args()
    if args.quick:
        args.structures, args.splits, args.mlp_epochs = 80, 3, 300
    for name in args.mlp_sets.split(","):
        if name not in ("full", "linear", "functional"):
            ap.error(f"--mlp-sets: unknown feature set {name!r}")
    t_start = time.perf_counter()

    t0 = time.perf_counter()
    basis = ace.derive_ace_basis(args.nu, args.nmax, args.lmax)
    print(f"derived {basis.name} in {time.perf_counter() - t0:.1f} s")
    print(ace.format_counts(basis))
    if args.basis_out:
        basis.save(args.basis_out)
        print(f"wrote {args.basis_out}")
    kept = ace.functions_of(basis, "invariants")
    dropped = ace.functions_of(basis, "dropped")
    reasons = [d["reason"] for d in basis.dropped]
    full = sorted(kept + dropped, key=ace.AceFunction.sort_key)
    linear = sorted(kept + [f for f, r in zip(dropped, reasons) if r == "functional"], key=ace.AceFunction.sort_key)
    t0 = time.perf_counter()
    gens = find_generators(tuple((n, l) for n in range(args.nmax) for l in range(args.lmax + 1)), args.nu)
    by_nu = [sum(g.degree == nu for g in gens.generators) for nu in range(1, args.nu + 1)]
    print(f"minimal polynomial generators of degree <= {args.nu}: {len(gens.generators)} "
          f"(by degree {by_nu}), found in {time.perf_counter() - t0:.1f} s; invariant polynomials of degree "
          f"1..{args.nu}: {gens.span.dimension} (Molien), spanned by their products")
    gen_monos = monomials([_Degree(g) for g in gens.generators], args.nu)
    evaluators = {
        "full": (ace.AceEvaluator(full, args.nmax, args.lmax), None),
        "linear": (ace.AceEvaluator(linear, args.nmax, args.lmax), None),
        "functional": (ace.AceEvaluator(kept, args.nmax, args.lmax), None),
        "func+poly": (ace.AceEvaluator(kept, args.nmax, args.lmax), Polynomial(monomials(kept, args.nu))),
        "gen+poly": (GeneratorEvaluator(gens.generators, args.nmax, args.lmax), Polynomial(gen_monos)),
    }

    t0 = time.perf_counter()
    data = make_dataset(args.structures, args.seed)
    n_atoms = sum(len(d["atoms"]) for d in data)
    e_per_atom = np.array([d["energy"] / len(d["atoms"]) for d in data])
    f_all = np.concatenate([d["forces"].reshape(-1) for d in data])
    print(f"dataset: {len(data)} EMT Cu structures, {n_atoms} atoms, {time.perf_counter() - t0:.1f} s; "
          f"energy/atom std {1e3 * e_per_atom.std():.1f} meV, force component std {1e3 * f_all.std():.0f} meV/Å")
    pf = PairFeatures(args.nmax, args.lmax)
    t0 = time.perf_counter()
    for d in data:
        d["T"], d["S"] = pf.structure(d["atoms"])
    pair_us = 1e6 * (time.perf_counter() - t0) / n_atoms
    ye, yf = targets(data)
    bounds, start = [], 0
    for d in data:
        bounds.append((start, start + 3 * len(d["atoms"])))
        start += 3 * len(d["atoms"])

    rng = np.random.default_rng(args.seed + 1)
    splits = []
    for _ in range(args.splits):
        perm = rng.permutation(len(data))
        n_tr, n_va = int(0.6 * len(data)), int(0.2 * len(data))
        splits.append((perm[:n_tr], perm[n_tr:n_tr + n_va], perm[n_tr + n_va:]))

    print(f"\npair part (T and dT/dr, shared by all models): {pair_us:.0f} us/atom")
    print(f"{'model':<11} {'invariants':>10} {'weights':>8} {'E RMSE meV/atom':>18} {'F RMSE meV/A':>15} "
          f"{'B us/atom':>10} {'B+dB us/atom':>13}")
    for name, (ev, poly) in evaluators.items():
        rows = design(data, ev, poly)
        errs = [fit_split(rows, ye, yf, bounds, sp)[0] for sp in splits]
        e = 1e3 * np.array([x[0] for x in errs])
        f = 1e3 * np.array([x[1] for x in errs])
        t_v, t_g = timing([data[i] for i in splits[0][2]], ev, poly)
        print(f"{name:<11} {len(ev.functions):>10} {rows[0].shape[1]:>8} {e.mean():>9.3f} ± {e.std():<6.3f} "
              f"{f.mean():>7.1f} ± {f.std():<5.1f} {t_v:>10.1f} {t_g:>13.1f}", flush=True)
    if args.mlp_epochs:
        print(f"\nsame nonlinear model for each feature set: per-atom MLP K -> 64 -> 64 -> 1 (SiLU) on standardised "
              f"invariants, energies + forces,\nfull-batch Adam lr {args.mlp_lr:g} with cosine decay, "
              f"{args.mlp_epochs} epochs, state with the best validation score (checked every 25 epochs) tested; "
              f"seeds {args.seed}+split; first {min(args.mlp_splits, args.splits)} splits")
        print(f"{'model':<14} {'invariants':>10} {'weights':>8} {'E RMSE meV/atom':>18} {'F RMSE meV/A':>15} "
              f"{'B us/atom':>10} {'B+dB us/atom':>13} {'net us/atom':>12} {'best epoch':>11} {'train s':>8}")
        for name in args.mlp_sets.split(","):
            ev = evaluators[name][0]
            inputs = mlp_inputs(data, ev)
            errs, stops, model = [], [], None
            t_fit = time.perf_counter()
            for k, sp in enumerate(splits[: args.mlp_splits]):
                err, model, (mu, sigma), stop = fit_mlp(inputs, ye, sp, args.mlp_epochs, args.seed + k, args.mlp_lr)
                errs.append(err)
                stops.append(stop)
            t_fit = (time.perf_counter() - t_fit) / len(errs)
            del inputs
            e = 1e3 * np.array([x[0] for x in errs])
            f = 1e3 * np.array([x[1] for x in errs])
            t_v, t_g = timing([data[i] for i in splits[0][2]], ev, None)
            # network part of an energy + force evaluation: forward and ∂E/∂B (the B and ∂B/∂T cost is t_g)
            x = ((torch.tensor(ev.values(np.concatenate([data[i]["T"] for i in splits[0][2]]))) - mu) / sigma).float()
            t_net = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                xg = x.clone().requires_grad_(True)
                torch.autograd.grad(model(xg).sum(), xg)
                t_net = min(t_net, 1e6 * (time.perf_counter() - t0) / len(x))
            n_weights = sum(p.numel() for p in model.parameters())
            print(f"{'MLP ' + name:<14} {len(ev.functions):>10} {n_weights:>8} {e.mean():>9.3f} ± {e.std():<6.3f} "
                  f"{f.mean():>7.1f} ± {f.std():<5.1f} {t_v:>10.1f} {t_g:>13.1f} {t_net:>12.1f} "
                  f"{np.mean(stops):>11.0f} {t_fit:>8.0f}", flush=True)
    print(f"\ntotal run time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
