"""The basis-independent half of the torch backend: row drivers, neighbour slots, autograd wiring, the model.

A generated ``<name>_torch.py`` holds only what depends on its Basis: the sizes, and four straight-line programs
(harmonics, invariants and their exact vector-Jacobian products). It binds them here with ``bind(...)``, which
returns a ``Kernels`` object carrying every public function of the module (``moments``, ``invariants``,
``compute``, ``InvariantModel``, ...). A fix in this file therefore reaches every basis without regenerating any.

This module imports torch and the standard library only: ``cartinv export --target torch`` copies it next to the
generated module as ``cartinv_torch_core.py``, so exported code runs without cartinv installed.

Layouts (shared with the C/CUDA targets):

    r        [P, 3]                        pair vectors r_p = x_j - x_i
    centers  [P]                           centre atom i of each pair (int64 or int32)
    w        [P, G, CHANNELS]              weight of pair p in group g and channel n ([P, G] when CHANNELS == 1)
    Y        [P, N_HARMONICS]              orthonormal STF coordinates of u = r / |r|, orders ascending, m = -l..l
    T        [n_atoms, G, N_COORDS]        T[i, g, n * N_HARMONICS + j] = sum over pairs p of atom i of w[p, g, n] Y[p, j]
    I        [n_atoms, G, N_INVARIANTS]    I[i, g, k] = formula k of T[i, g, :], in the Basis file's order

The straight-line programs run on blocks of CHUNK_ROWS rows at a time (each program variable is a contiguous
vector, so a block's temporaries stay in cache); on a CPU, blocks run on torch.get_num_threads() threads.
Moments are per-atom matrix products over zero-padded neighbour slots (SegmentPlan): no [P, G, N_COORDS] tensor.
"""

from __future__ import annotations

import os

import torch

API_VERSION = 1  # the bind() signature generated modules are written against; bump when it changes
CHUNK_ROWS_CPU = 8192  # rows per block on a CPU: a block's program temporaries stay in L2
CHUNK_ROWS_CUDA = 1 << 20  # rows per block on a GPU: one block per launch for all but huge inputs


# --- Row drivers ---------------------------------------------------------------------------------------------


_POOL = {}  # (process id, threads) -> the thread pool for CPU chunks (a forked child builds its own)


def _cpu_pool():
    """Threads that run CPU chunks side by side (torch releases the GIL inside each operation)."""
    workers = torch.get_num_threads()
    if workers < 2:
        return None
    key = (os.getpid(), workers)
    if key not in _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.clear()
        _POOL[key] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cartinv")
    return _POOL[key]


def map_rows(program, blocks, n_out):
    """Apply a row program to matrices blocks[b] of shape [M, n_b] -> [M, n_out], CHUNK_ROWS rows at a time.

    The blocks are transposed once, so every program variable of a chunk is a contiguous slice of one row. Under
    autograd the chunks run in order and are concatenated (ordinary differentiable operations, so the result can
    be differentiated again); otherwise CPU chunks run on a thread pool and write straight into the output.
    Chunks are small enough that no operation inside one starts torch's own intra-op threads.
    """
    n_rows = blocks[0].shape[0]
    step = CHUNK_ROWS_CUDA if blocks[0].is_cuda else CHUNK_ROWS_CPU
    rows = [row for block in blocks for row in block.t().contiguous().unbind(0)]
    starts = range(0, max(n_rows, 1), step)
    if torch.is_grad_enabled() and any(b.requires_grad for b in blocks):
        pieces = [torch.stack(program([row[s:s + step] for row in rows]), dim=0) for s in starts]
        out = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
        return out.t()
    out = blocks[0].new_empty((n_out, n_rows))

    def run(start):
        for k, value in enumerate(program([row[start:start + step] for row in rows])):
            out[k, start:start + step].copy_(value)

    pool = None if blocks[0].is_cuda or len(starts) < 2 else _cpu_pool()
    if pool is None:
        for start in starts:
            run(start)
    else:
        for _ in pool.map(run, starts):
            pass
    return out.t()


def _last_dim(x, size, what):
    if x.dim() < 1 or x.shape[-1] != size:
        raise ValueError(f"{what} must have last dimension {size}, got shape {tuple(x.shape)}")


# --- Neighbour slots: exact gathers, and per-atom matrix products over them -----------------------------------


class _GatherRows(torch.autograd.Function):
    """out[s] = x[index[s]], or zeros where index[s] == len(x) (an empty slot).

    Every row of x fills exactly one slot, inverse[p] (index[inverse[p]] == p), so the transpose of this map is
    out -> out[inverse]: an exact gather, with no scatter-add. _TakeSlots is that transpose, and _GatherRows is
    the transpose of _TakeSlots, so derivatives of any order stay gathers.
    """

    @staticmethod
    def forward(ctx, x, index, inverse):
        ctx.save_for_backward(index, inverse)
        n_rows = x.shape[0]
        if n_rows == 0:
            return x.new_zeros((index.shape[0],) + tuple(x.shape[1:]))
        out = x.index_select(0, index.clamp(max=n_rows - 1))
        empty = torch.nonzero(index == n_rows).reshape(-1)
        if empty.shape[0]:
            out.index_fill_(0, empty, 0)
        return out

    @staticmethod
    def backward(ctx, grad):
        index, inverse = ctx.saved_tensors
        return _TakeSlots.apply(grad, index, inverse), None, None


class _TakeSlots(torch.autograd.Function):
    """out[p] = slots[inverse[p]]: the transpose of _GatherRows (and _GatherRows is its transpose)."""

    @staticmethod
    def forward(ctx, slots, index, inverse):
        ctx.save_for_backward(index, inverse)
        return slots.index_select(0, inverse)

    @staticmethod
    def backward(ctx, grad):
        index, inverse = ctx.saved_tensors
        return _GatherRows.apply(grad, index, inverse), None, None


def _slot_product(kind, x, y, buckets):
    """The batched products of _SlotProduct, bucket by bucket, written into one preallocated output."""
    x, y = x.contiguous(), y.contiguous()
    n_atoms = sum(a for a, _ in buckets)
    if kind == "moments":
        out = x.new_empty((n_atoms, x.shape[1], y.shape[1]))
    elif kind == "left":
        out = x.new_empty((x.shape[0], y.shape[1]))
    else:
        out = x.new_empty((x.shape[0], y.shape[2]))
    slot = atom = 0
    for n_bucket, capacity in buckets:
        rows, atoms = slice(slot, slot + n_bucket * capacity), slice(atom, atom + n_bucket)
        x_b = x[rows].view(n_bucket, capacity, x.shape[1])
        if kind == "moments":
            torch.bmm(x_b.transpose(1, 2), y[rows].view(n_bucket, capacity, y.shape[1]), out=out[atoms])
        elif kind == "left":
            torch.bmm(x_b, y[atoms].transpose(1, 2), out=out[rows].view(n_bucket, capacity, out.shape[1]))
        else:
            torch.bmm(x_b, y[atoms], out=out[rows].view(n_bucket, capacity, out.shape[1]))
        slot += n_bucket * capacity
        atom += n_bucket
    return out


class _SlotProduct(torch.autograd.Function):
    """Per-atom matrix products between slot rows [slots, .] and per-atom matrices [atoms, F, H].

    With a_i [capacity, F], b_i [capacity, H] the slot rows of atom i (atoms in bucket order) and m_i [F, H]:
        "moments"  (a, b) -> m,  m_i = a_i^T b_i
        "left"     (b, m) -> a,  a_i = b_i m_i^T
        "right"    (a, m) -> b,  b_i = a_i m_i
    Each map's derivatives are the other two, so derivatives of every order are _SlotProducts again. Buckets are
    computed into one output (no per-bucket pieces to concatenate, forward or backward).
    """

    @staticmethod
    def forward(ctx, kind, x, y, buckets):
        ctx.kind, ctx.buckets = kind, buckets
        ctx.save_for_backward(x, y)
        return _slot_product(kind, x, y, buckets)

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        kind, buckets = ctx.kind, ctx.buckets
        need_x, need_y = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        gx = gy = None
        if kind == "moments":  # m = a^T b
            gx = _SlotProduct.apply("left", y, grad, buckets) if need_x else None  # b g^T
            gy = _SlotProduct.apply("right", x, grad, buckets) if need_y else None  # a g
        elif kind == "left":  # a = b m^T
            gx = _SlotProduct.apply("right", grad, y, buckets) if need_x else None  # g m
            gy = _SlotProduct.apply("moments", grad, x, buckets) if need_y else None  # g^T b
        else:  # b = a m
            gx = _SlotProduct.apply("left", grad, y, buckets) if need_x else None  # g m^T
            gy = _SlotProduct.apply("moments", x, grad, buckets) if need_y else None  # a^T g
        return None, gx, gy, None


def bucket_capacity(count):
    """Slots given to an atom with `count` pairs: count rounded up to a multiple of 2^(floor(log2 count) - 2).

    At most a quarter of the slots are empty, and atoms with 1..n pairs fall into about 4 log2(n) buckets.
    """
    count = max(int(count), 1)
    step = 1 << max(count.bit_length() - 3, 0)
    return -(-count // step) * step


class SegmentPlan:
    """Where each pair sits in a zero-padded [atoms, slots] layout; depends on centers and n_atoms only.

    Atoms are grouped in buckets; every atom of a bucket has `capacity` slots, its pairs first (in input order),
    then empty slots. One bucket holds every atom when its slots are at most `max_padding` times the pairs;
    otherwise each atom gets bucket_capacity(its pair count) slots and atoms are grouped by capacity.

    index [slots]     the pair in each slot, or P for an empty slot
    inverse [P]       the slot of each pair
    buckets           ((atoms, capacity), ...) in slot order
    atom_order        [n_atoms] atom at each row of bucket order, or None when that is the atom order
    atom_position     [n_atoms] row of each atom in bucket order (the inverse permutation), or None
    """

    def __init__(self, centers, n_atoms, max_padding=1.25):
        centers = centers.long()
        device = centers.device
        n_pairs = centers.shape[0]
        counts = torch.bincount(centers, minlength=n_atoms)
        if n_pairs > 1 and bool((centers[1:] < centers[:-1]).any()):
            order = torch.argsort(centers, stable=True)
            sorted_centers = centers[order]
        else:
            order, sorted_centers = None, centers
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(n_pairs, device=device) - starts[sorted_centers]
        if order is not None:
            rank = torch.empty_like(rank).index_copy_(0, order, rank)
        largest = int(counts.max()) if n_atoms else 0
        capacity = max(largest, 1)
        if n_atoms * capacity <= max_padding * max(n_pairs, n_atoms):
            base = torch.arange(n_atoms, device=device) * capacity
            self.buckets = ((n_atoms, capacity),)
            self.atom_order = self.atom_position = None
        else:
            table = torch.tensor([bucket_capacity(c) for c in range(largest + 1)], dtype=torch.long, device=device)
            caps = table[counts]
            atom_order = torch.argsort(caps, stable=True)
            sorted_caps = caps[atom_order]
            base = torch.empty_like(sorted_caps).index_copy_(0, atom_order, torch.cumsum(sorted_caps, 0) - sorted_caps)
            distinct, sizes = torch.unique_consecutive(sorted_caps, return_counts=True)
            self.buckets = tuple(zip(sizes.tolist(), distinct.tolist()))
            self.atom_order = atom_order
            self.atom_position = torch.empty_like(atom_order).index_copy_(
                0, atom_order, torch.arange(n_atoms, device=device)
            )
        self.inverse = base[centers] + rank
        n_slots = sum(a * c for a, c in self.buckets)
        self.index = torch.full((n_slots,), n_pairs, dtype=torch.long, device=device)
        self.index[self.inverse] = torch.arange(n_pairs, device=device)
        self.n_atoms = n_atoms

    def gather(self, x):
        """x [P, ...] -> [slots, ...]: the rows of x in their slots, zeros in the empty slots."""
        return _GatherRows.apply(x, self.index, self.inverse)

    def take(self, slots):
        """[slots, ...] -> [P, ...]: the row of each pair (the transpose of gather)."""
        return _TakeSlots.apply(slots, self.index, self.inverse)

    def to_atom_order(self, rows):
        """Per-atom rows in bucket order -> atom order."""
        if self.atom_position is None:
            return rows
        return _TakeSlots.apply(rows, self.atom_order, self.atom_position)

    def to_bucket_order(self, rows):
        """Per-atom rows in atom order -> bucket order (the inverse of to_atom_order)."""
        if self.atom_position is None:
            return rows
        return _TakeSlots.apply(rows, self.atom_position, self.atom_order)


def unit_vectors(r):
    """u = r / |r| for pair vectors r [P, 3] (differentiable)."""
    return r / torch.linalg.vector_norm(r, dim=1, keepdim=True)


# --- Forward mode: dual numbers for the row programs ------------------------------------------------------------
#
# The double backward runs the basis's straight-line programs on dual numbers (a value and its derivative along
# one direction), as the fused C++ kernels do with their Dual<V>: no autograd is recorded, so it works inside an
# op implementation, on any device and under any dispatch mode. A tangent of None is zero. The programs use only
# +, -, *, unary -, torch.add(alpha=), torch.addcmul(value=), torch.full_like and the in-place add_/addcmul_.


def _scaled(t, c):
    return None if t is None else (t * c if c != 1 else t)


def _sum(a, b, alpha=1):
    """a + alpha * b for tangents that may be None (zero); always a fresh tensor or None."""
    if b is None:
        return None if a is None else a.clone()
    if a is None:
        return b * alpha
    return torch.add(a, b, alpha=alpha)


def _product_tangent(a, b):
    """The tangent of a * b (either may be a Dual or a constant)."""
    av, ad = (a.v, a.d) if isinstance(a, Dual) else (a, None)
    bv, bd = (b.v, b.d) if isinstance(b, Dual) else (b, None)
    first = None if ad is None else ad * bv
    second = None if bd is None else av * bd
    return _sum(first, second) if first is not None else second


def _value(x):
    return x.v if isinstance(x, Dual) else x


def _tangent(x):
    return x.d if isinstance(x, Dual) else None


class Dual:
    """value + eps * tangent, with eps^2 = 0."""

    __slots__ = ("v", "d")

    def __init__(self, v, d=None):
        self.v, self.d = v, d

    def __add__(self, other):
        return Dual(self.v + _value(other), _sum(self.d, _tangent(other)))

    __radd__ = __add__

    def __sub__(self, other):
        return Dual(self.v - _value(other), _sum(self.d, _tangent(other), alpha=-1))

    def __rsub__(self, other):
        return Dual(_value(other) - self.v, _sum(_tangent(other), self.d, alpha=-1))

    def __neg__(self):
        return Dual(-self.v, None if self.d is None else -self.d)

    def __mul__(self, other):
        return Dual(self.v * _value(other), _product_tangent(self, other))

    __rmul__ = __mul__

    def add_(self, other, alpha=1):
        self.v.add_(_value(other), alpha=alpha)
        od = _tangent(other)
        if od is not None:
            if self.d is None:
                self.d = od * alpha
            else:
                self.d.add_(od, alpha=alpha)
        return self

    def addcmul_(self, a, b, value=1):
        term = _product_tangent(a, b)  # before the value changes: a or b may be self
        self.v.addcmul_(_value(a), _value(b), value=value)
        if term is not None:
            if self.d is None:
                self.d = _scaled(term, value)
            else:
                self.d.add_(term, alpha=value)
        return self

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.add:
            a, b = args
            alpha = kwargs.get("alpha", 1)
            return Dual(torch.add(_value(a), _value(b), alpha=alpha), _sum(_tangent(a), _tangent(b), alpha=alpha))
        if func is torch.addcmul:
            a, b, c = args
            value = kwargs.get("value", 1)
            tangent = _sum(_tangent(a), _product_tangent(b, c), alpha=value)
            return Dual(torch.addcmul(_value(a), _value(b), _value(c), value=value), tangent)
        if func is torch.full_like:
            x, fill = args
            return Dual(torch.full_like(_value(x), fill, **kwargs), None)
        return NotImplemented


def map_rows_dual(program, blocks, n_out: int):
    """A row program on dual inputs: blocks[b] = (value [M, n_b], tangent [M, n_b] or None), CHUNK_ROWS rows at a
    time; returns (values [M, n_out], tangents [M, n_out]) of its outputs."""
    n_rows = blocks[0][0].shape[0]
    step = CHUNK_ROWS_CUDA if blocks[0][0].is_cuda else CHUNK_ROWS_CPU
    rows = []
    for value, tangent in blocks:
        vs = value.t().contiguous().unbind(0)
        ds = [None] * len(vs) if tangent is None else tangent.t().contiguous().unbind(0)
        rows.extend(zip(vs, ds))
    like = blocks[0][0]
    out_v, out_d = like.new_empty((n_out, n_rows)), like.new_empty((n_out, n_rows))
    for start in range(0, n_rows, step):
        chunk = slice(start, start + step)
        outputs = program([Dual(v[chunk], None if d is None else d[chunk]) for v, d in rows])
        for k, y in enumerate(outputs):
            out_v[k, chunk].copy_(_value(y))
            d = _tangent(y)
            if d is None:
                out_d[k, chunk].zero_()
            else:
                out_d[k, chunk].copy_(d)
    return out_v.t(), out_d.t()


# --- The kernels of one basis ---------------------------------------------------------------------------------


class _ProgramFunction(torch.autograd.Function):
    """x -> program(x) through a basis's row program; backward is its exact VJP program, built from
    differentiable torch operations (so it can be differentiated again). `kind` is "harmonics" or "invariants"."""

    @staticmethod
    def forward(ctx, kernels, kind, x):
        ctx.kernels, ctx.kind = kernels, kind
        ctx.save_for_backward(x)
        return getattr(kernels, kind)(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return None, None, getattr(ctx.kernels, f"{ctx.kind}_vjp")(x, grad)


class _Applied:
    """``Harmonics.apply(u)`` / ``Invariants.apply(T)``: one basis's program as an autograd function."""

    def __init__(self, kernels, kind):
        self._kernels, self._kind = kernels, kind

    def apply(self, x):
        return _ProgramFunction.apply(self._kernels, self._kind, x)


class Kernels:
    """Every function of a generated torch module, for the sizes and row programs of one basis (see bind)."""

    def __init__(self, *, module, basis_name, basis_hash, orders, channels, n_harmonics, n_coords, n_invariants,
                 invariant_ids, invariant_degrees, harmonics_rows, harmonics_vjp_rows, invariants_rows,
                 invariants_vjp_rows):
        self.basis_name, self.basis_hash, self.orders = basis_name, basis_hash, tuple(orders)
        self.channels, self.n_harmonics, self.n_coords = int(channels), int(n_harmonics), int(n_coords)
        self.n_invariants = int(n_invariants)
        self.invariant_ids, self.invariant_degrees = tuple(invariant_ids), tuple(invariant_degrees)
        if len(self.invariant_ids) != self.n_invariants or len(self.invariant_degrees) != self.n_invariants:
            raise ValueError(f"{module}: {self.n_invariants} invariants but {len(self.invariant_ids)} ids and "
                             f"{len(self.invariant_degrees)} degrees")
        if self.n_coords != self.channels * self.n_harmonics:
            raise ValueError(f"{module}: N_COORDS {self.n_coords} != CHANNELS {self.channels} x N_HARMONICS "
                             f"{self.n_harmonics}")
        self._rows = {"harmonics": harmonics_rows, "harmonics_vjp": harmonics_vjp_rows,
                      "invariants": invariants_rows, "invariants_vjp": invariants_vjp_rows}
        self.Harmonics = _Applied(self, "harmonics")
        self.Invariants = _Applied(self, "invariants")
        self.InvariantModel = _model_class(self, module)

    def __deepcopy__(self, memo):  # immutable: shared by every copy of a model
        return self

    # -- the row programs on [..., width] tensors --

    def harmonics(self, u):
        """Y[p, j] = Y_j(u_p): orthonormal STF coordinates of the unit vectors u [P, 3] -> [P, N_HARMONICS]."""
        _last_dim(u, 3, "u")
        return map_rows(self._rows["harmonics"], [u.reshape(-1, 3)], self.n_harmonics).contiguous()

    def harmonics_vjp(self, u, gY):
        """gu[p] = sum_j gY[p, j] dY_j/du (u_p): the vector-Jacobian product of harmonics, [P, 3]."""
        _last_dim(u, 3, "u")
        _last_dim(gY, self.n_harmonics, "gY")
        return map_rows(self._rows["harmonics_vjp"], [u.reshape(-1, 3), gY.reshape(-1, self.n_harmonics)],
                        3).contiguous()

    def invariants(self, T):
        """I[..., k] = invariant k of the block coordinates T[..., :]: T [..., N_COORDS] -> [..., N_INVARIANTS]."""
        _last_dim(T, self.n_coords, "T")
        out = map_rows(self._rows["invariants"], [T.reshape(-1, self.n_coords)], self.n_invariants).contiguous()
        return out.reshape(T.shape[:-1] + (self.n_invariants,))

    def invariants_vjp(self, T, gI):
        """gT[..., c] = sum_k gI[..., k] dI_k/dT_c (T[..., :]): the vector-Jacobian product of invariants."""
        _last_dim(T, self.n_coords, "T")
        _last_dim(gI, self.n_invariants, "gI")
        if gI.shape[:-1] != T.shape[:-1]:
            raise ValueError(f"gI shape {tuple(gI.shape)} does not match T shape {tuple(T.shape)}")
        out = map_rows(self._rows["invariants_vjp"],
                       [T.reshape(-1, self.n_coords), gI.reshape(-1, self.n_invariants)], self.n_coords)
        return out.contiguous().reshape(T.shape)

    # -- moments and the whole map --

    def weights_matrix(self, w, n_pairs):
        """w [P, G, CHANNELS] (or [P, G] when CHANNELS == 1) -> [P, G * CHANNELS] and G (shape checked)."""
        if w.dim() == 2 and self.channels == 1:
            groups = w.shape[1]
        elif w.dim() == 3 and w.shape[2] == self.channels:
            groups = w.shape[1]
        else:
            expected = "[P, G] or [P, G, 1]" if self.channels == 1 else f"[P, G, {self.channels}]"
            raise ValueError(f"weights must have shape {expected}, got {tuple(w.shape)}")
        if w.shape[0] != n_pairs:
            raise ValueError(f"weights have {w.shape[0]} rows for {n_pairs} pairs")
        return w.reshape(n_pairs, groups * self.channels), groups

    def accumulate(self, Y, centers, w, n_atoms, plan=None):
        """T[i, g, n * N_HARMONICS + j] = sum_{p: centers[p] = i} w[p, g, n] Y[p, j] -> [n_atoms, G, N_COORDS].

        Per atom the matrix product W_i^T Y_i of its pairs' weights [pairs, G * CHANNELS] and harmonics
        [pairs, N_HARMONICS], as batched products over zero-padded slots (no [P, G, N_COORDS] tensor).
        Differentiable to any order in Y and w.
        """
        n_pairs = Y.shape[0]
        weights, groups = self.weights_matrix(w, n_pairs)
        if plan is None:
            plan = SegmentPlan(centers, n_atoms)
        per_atom = _SlotProduct.apply("moments", plan.gather(weights), plan.gather(Y), plan.buckets)
        return plan.to_atom_order(per_atom).reshape(n_atoms, groups, self.n_coords)

    def moments(self, r, centers, w, n_atoms, plan=None):
        """T[i, g, n * N_HARMONICS + j] = sum_{p: centers[p] = i} w[p, g, n] Y_j(r_p / |r_p|)."""
        return self.accumulate(self.Harmonics.apply(unit_vectors(r)), centers, w, n_atoms, plan)

    def moments_vjp(self, r, centers, w, n_atoms, gT, plan=None):
        """(gr, gw): the vector-Jacobian product of T = moments(r, centers, w, n_atoms) with cotangent gT.

        Per atom T_i = W_i^T Y_i, so gW_i = Y_i gT_i^T and gY_i = W_i gT_i (batched over the padded slots), then
        gu = harmonics_vjp(u, gY) and gr = (gu - u (u . gu)) / |r|. Differentiable again.
        """
        n_pairs = r.shape[0]
        weights, groups = self.weights_matrix(w, n_pairs)
        if plan is None:
            plan = SegmentPlan(centers, n_atoms)
        norm = torch.linalg.vector_norm(r, dim=1, keepdim=True)
        u = r / norm
        g_atoms = plan.to_bucket_order(gT.reshape(n_atoms, groups * self.channels, self.n_harmonics))
        gw_slots = _SlotProduct.apply("left", plan.gather(self.harmonics(u)), g_atoms, plan.buckets)
        gy_slots = _SlotProduct.apply("right", plan.gather(weights), g_atoms, plan.buckets)
        gu = self.harmonics_vjp(u, plan.take(gy_slots))
        gr = (gu - u * (u * gu).sum(dim=1, keepdim=True)) / norm
        return gr, plan.take(gw_slots).reshape(w.shape)

    def double_backward(self, r, centers, w, n_atoms, gI, ggr=None, ggw=None, plan=None):
        """(grad_r, grad_w, grad_gI): the VJP of the backward (r, w, gI) -> (gr, gw) with cotangents (ggr, ggw)
        (None: zero), in forward mode without autograd.

        (gr, gw) is the gradient of F = <gI, I(T(r, w))>, so the VJP in r and w is the Hessian of F times
        (ggr, ggw): the tangent of (gr, gw) when (r, w) move along (ggr, ggw); the VJP in gI is the tangent of I
        along the same direction. Each is one pass of the backward on dual numbers.
        """
        n_pairs = r.shape[0]
        weights, groups = self.weights_matrix(w, n_pairs)
        if ggr is None and ggw is None:  # a zero direction: every tangent is zero
            return (torch.zeros_like(r), torch.zeros_like(w),
                    r.new_zeros((n_atoms, groups, self.n_invariants)))
        weights_d = None if ggw is None else self.weights_matrix(ggw, n_pairs)[0]
        if plan is None:
            plan = SegmentPlan(centers, n_atoms)
        norm = torch.linalg.vector_norm(r, dim=1, keepdim=True)
        u = r / norm
        if ggr is None:  # the harmonics do not move: no dY terms
            du = norm_d = Y_d_slots = None
            Y = self.harmonics(u)
        else:  # d|r| = u . dr, du = (dr - u (u . dr)) / |r|
            norm_d = (u * ggr).sum(dim=1, keepdim=True)
            du = (ggr - u * norm_d) / norm
            Y, Y_d = map_rows_dual(self._rows["harmonics"], [(u, du)], self.n_harmonics)
            Y_d_slots = plan.gather(Y_d)
        shape = (n_atoms, groups, self.n_coords)
        Y_slots, w_slots = plan.gather(Y), plan.gather(weights)
        T = plan.to_atom_order(_slot_product("moments", w_slots, Y_slots, plan.buckets)).reshape(shape)
        # dT = w dY + dw Y (at least one term is present)
        terms = []
        if Y_d_slots is not None:
            terms.append(_slot_product("moments", w_slots, Y_d_slots, plan.buckets))
        if weights_d is not None:
            wd_slots = plan.gather(weights_d)
            terms.append(_slot_product("moments", wd_slots, Y_slots, plan.buckets))
        T_d = plan.to_atom_order(terms[0] if len(terms) == 1 else terms[0] + terms[1]).reshape(shape)
        flat_T, flat_T_d = T.reshape(-1, self.n_coords), T_d.reshape(-1, self.n_coords)
        _, I_d = map_rows_dual(self._rows["invariants"], [(flat_T, flat_T_d)], self.n_invariants)
        gT, gT_d = map_rows_dual(self._rows["invariants_vjp"],
                                 [(flat_T, flat_T_d), (gI.reshape(-1, self.n_invariants), None)], self.n_coords)
        per_atom = (n_atoms, groups * self.channels, self.n_harmonics)
        g_atoms = plan.to_bucket_order(gT.reshape(per_atom))
        g_d_atoms = plan.to_bucket_order(gT_d.reshape(per_atom))
        # gw = Y gT^T per pair, and its tangent dY gT^T + Y dgT^T
        gw_d = _slot_product("left", Y_slots, g_d_atoms, plan.buckets)
        if Y_d_slots is not None:
            gw_d = gw_d + _slot_product("left", Y_d_slots, g_atoms, plan.buckets)
        # gY = w gT per pair, and its tangent w dgT + dw gT
        gY = _slot_product("right", w_slots, g_atoms, plan.buckets)
        gY_d = _slot_product("right", w_slots, g_d_atoms, plan.buckets)
        if weights_d is not None:
            gY_d = gY_d + _slot_product("right", wd_slots, g_atoms, plan.buckets)
        gu, gu_d = map_rows_dual(self._rows["harmonics_vjp"], [(u, du), (plan.take(gY), plan.take(gY_d))], 3)
        # gr = (gu - u s) / |r| with s = u . gu, and its tangent
        s = (u * gu).sum(dim=1, keepdim=True)
        s_d = (u * gu_d).sum(dim=1, keepdim=True)
        gr_d = gu_d - u * s_d
        if du is not None:
            gr = (gu - u * s) / norm
            gr_d = gr_d - du * s - u * (du * gu).sum(dim=1, keepdim=True) - gr * norm_d
        gr_d = gr_d / norm
        return gr_d, plan.take(gw_d).reshape(w.shape), I_d.reshape(n_atoms, groups, self.n_invariants)

    def compute(self, r, centers, w, n_atoms, plan=None):
        """I[i, g, k] = invariant k of the moments T[i, g, :] of atom i: [n_atoms, G, N_INVARIANTS]."""
        return self.Invariants.apply(self.moments(r, centers, w, n_atoms, plan))

    def check_inputs(self, r, centers, w, n_atoms):
        """ValueError naming the first problem with the inputs: shapes, dtypes, devices, centre indices out of
        range, NaN or infinity in r or w, zero-length pair vectors (whose direction is undefined)."""
        channels = self.channels
        if not (isinstance(r, torch.Tensor) and r.dim() == 2 and r.shape[1] == 3
                and r.dtype in (torch.float32, torch.float64)):
            raise ValueError("r must be a float32 or float64 tensor of shape [P, 3]")
        n_pairs = r.shape[0]
        if not (isinstance(centers, torch.Tensor) and centers.shape == (n_pairs,)
                and centers.dtype in (torch.int32, torch.int64)):
            raise ValueError(f"centers must be an int32 or int64 tensor of shape [{n_pairs}]")
        groups = w.shape[1] if isinstance(w, torch.Tensor) and w.dim() > 1 else -1
        want = (n_pairs, groups) + ((channels,) if channels > 1 else ())
        if not (isinstance(w, torch.Tensor) and tuple(w.shape) == want and w.dtype == r.dtype):
            raise ValueError(f"w must be a {r.dtype} tensor of shape [P, G{', CHANNELS' if channels > 1 else ''}] "
                             f"with P = {n_pairs}{f' and CHANNELS = {channels}' if channels > 1 else ''}")
        if centers.device != r.device or w.device != r.device:
            raise ValueError("r, centers and w must be on one device")
        n = int(n_atoms)
        if n < 0 or n != n_atoms:
            raise ValueError(f"n_atoms must be a non-negative integer, got {n_atoms!r}")
        if n_pairs and (int(centers.min()) < 0 or int(centers.max()) >= n):
            raise ValueError(f"centers must lie in 0..{n - 1}")
        if not bool(torch.isfinite(r).all()) or not bool(torch.isfinite(w).all()):
            raise ValueError("r and w must be finite (no NaN or infinity)")
        if n_pairs and not bool((r.detach().square().sum(1) > 0).all()):
            raise ValueError("a pair vector has zero length (an atom paired with itself, or two atoms at one place)")


class _InvariantModelBase(torch.nn.Module):
    """forward(r, centers, w, n_atoms) -> I [n_atoms, G, N_INVARIANTS]; differentiable twice in r and w.

    No parameters: weights are computed by the caller (radial functions times channel features). With
    check_inputs=True every call first runs `check_inputs` (one pass over the data); without it, bad inputs give
    undefined results (a zero-length pair vector gives NaN).
    """

    kernels: Kernels

    def __init__(self, max_padding=1.25, check_inputs=False):
        super().__init__()
        self.max_padding = float(max_padding)
        self.check_inputs = bool(check_inputs)

    def extra_repr(self):
        k = self.kernels
        return f"basis={k.basis_name!r}, invariants={k.n_invariants}, channels={k.channels}"

    def forward(self, r, centers, w, n_atoms):
        if self.check_inputs:
            self.kernels.check_inputs(r, centers, w, n_atoms)
        plan = SegmentPlan(centers, n_atoms, self.max_padding)
        return self.kernels.compute(r, centers, w, n_atoms, plan)


def _model_class(kernels: Kernels, module: str):
    """The basis's InvariantModel class, named as an attribute of its generated module (so instances pickle)."""
    attrs = {"kernels": kernels, "basis_name": kernels.basis_name, "basis_hash": kernels.basis_hash,
             "n_invariants": kernels.n_invariants, "invariant_ids": kernels.invariant_ids,
             "__module__": module, "__qualname__": "InvariantModel", "__doc__": _InvariantModelBase.__doc__}
    return type("InvariantModel", (_InvariantModelBase,), attrs)


def bind(*, api, **basis):
    """The Kernels of one generated module; `api` is the API_VERSION it was generated for (checked)."""
    if api != API_VERSION:
        raise ImportError(f"{basis.get('module', 'a generated module')} was generated for torch core API {api}, "
                          f"this core is API {API_VERSION}: regenerate it with `cartinv generate`")
    return Kernels(**basis)
