"""The fused CPU backend (runtime/kernels/cpu_backend.py + runtime/kernels/csrc/fused_cpu.cpp): agreement with the torch backend
for every checked-in basis and a channel-coupled one, first and second derivatives, the torch.library ops,
determinism across thread counts, bad inputs and the fallback when no compiler is found."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import cartinv
from cartinv.runtime.kernels import cpu_backend
from cartinv.runtime.kernels import load as runtime_load
from cartinv.runtime.kernels import torch_glue
from conftest import derived

pytestmark = pytest.mark.skipif(not cpu_backend.available()[0], reason="no C++ compiler for the fused CPU backend")


def environment(seed=0, n_atoms=7, n_pairs=60, groups=11, channels=1, dtype=torch.float64, sort=False):
    """Random pairs; atom n_atoms - 1 has none; centres unsorted unless `sort`; groups not a multiple of the lanes."""
    rng = np.random.default_rng(seed)
    centers = rng.integers(0, n_atoms - 1, size=n_pairs)
    if sort:
        centers = np.sort(centers)
    r = torch.tensor(rng.normal(size=(n_pairs, 3)), dtype=dtype)
    shape = (n_pairs, groups) if channels == 1 else (n_pairs, groups, channels)
    w = torch.tensor(rng.normal(size=shape), dtype=dtype)
    return r, torch.tensor(centers), w, n_atoms


def pair(name_or_basis):
    return (cartinv.load(name_or_basis, backend="torch"), cartinv.load(name_or_basis, backend="cpu"))


@pytest.mark.parametrize("name", runtime_load.checked_in_names())
def test_every_checked_in_basis_matches_torch(name):
    reference, fused = pair(name)
    assert fused.active_backend("cpu") == "cpu"
    for sort in (False, True):
        r, c, w, n = environment(sort=sort)
        expected = reference(r, c, w, n)
        got = fused(r, c, w, n)
        scale = expected.abs().max().item()
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, rtol=0, atol=1e-12 * scale), (got - expected).abs().max()
        assert torch.all(got[n - 1] == 0)  # an atom without pairs: zero moments, zero invariants
    r32, w32 = r.float(), w.float()
    assert torch.allclose(fused(r32, c, w32, n).double(), expected, rtol=0, atol=2e-6 * scale)


def test_channel_coupled_basis_with_derivatives():
    basis = derived((1, 2), degree=3, channels=2)
    reference, fused = pair(basis)
    r, c, w, n = environment(n_atoms=5, n_pairs=25, groups=3, channels=2)
    assert torch.allclose(fused(r, c, w, n), reference(r, c, w, n), rtol=1e-12, atol=1e-12)
    r.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda r, w: fused(r, c, w, n), (r, w))
    assert torch.autograd.gradgradcheck(lambda r, w: fused(r, c, w, n), (r, w))


@pytest.mark.parametrize("name", ["lmax3_deg4", "lmax2_deg4"])
def test_gradcheck_and_gradgradcheck(name):
    fused = cartinv.load(name, backend="cpu")
    r, c, w, n = environment(n_atoms=4, n_pairs=14, groups=5)
    r.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda r, w: fused(r, c, w, n), (r, w))
    assert torch.autograd.gradgradcheck(lambda r, w: fused(r, c, w, n), (r, w))


def test_first_and_second_derivatives_match_torch():
    """Forces and a force loss's parameter gradient (the double backward training needs) agree with torch."""
    reference, fused = pair("lmax3_deg4")
    r, c, w, n = environment(groups=10)
    weights = torch.randn(10, reference.n_invariants, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def force_loss(module):
        rr = r.clone().requires_grad_(True)
        ww = w.clone().requires_grad_(True)
        energy = (module(rr, c, ww, n) * weights).sum()
        forces, = torch.autograd.grad(energy, rr, create_graph=True)
        loss = (forces ** 2).sum()
        return (forces, *torch.autograd.grad(loss, (rr, ww)))

    for a, b in zip(force_loss(reference), force_loss(fused)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10 * a.abs().max().item())


def assert_outputs_and_gradients_agree(reference, fused, r, c, w, n, seed):
    """Forward, forces, w gradient and a force loss's gradients of the fused backend equal the torch backend's."""
    dtype = r.dtype
    weights = torch.randn(w.shape[1], reference.n_invariants, dtype=dtype,
                          generator=torch.Generator().manual_seed(seed))
    tol = 1e-10 if dtype == torch.float64 else 2e-4

    def run(module):
        rr = r.clone().requires_grad_(True)
        ww = w.clone().requires_grad_(True)
        out = module(rr, c, ww, n)
        forces, gw = torch.autograd.grad((out * weights).sum(), (rr, ww), create_graph=True)
        return (out, forces, gw, *torch.autograd.grad((forces ** 2).sum() + gw.square().sum(), (rr, ww)))

    for a, b in zip(run(reference), run(fused)):
        assert torch.allclose(b, a, rtol=tol, atol=tol * a.abs().max().item()), (b - a).abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("groups", [3, 16, 32])
@pytest.mark.parametrize("sort", [False, True], ids=["unsorted", "sorted"])
def test_streamed_outputs_match_torch(dtype, groups, sort):
    """Outputs written with streaming stores (whole blocks of lanes: 16 and 32 groups) or partly (3 groups: invariant
    rows that start and end inside a cache line), with the pair data prefetched ahead over many atoms: forward,
    forces and a force loss's gradients equal the torch backend's."""
    reference, fused = pair("hiphop_lmax3_deg4")
    r, c, w, n = environment(n_atoms=61, n_pairs=1900, groups=groups, dtype=dtype, sort=sort)
    assert_outputs_and_gradients_agree(reference, fused, r, c, w, n, seed=5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["lmax3_deg2", "lmax4_deg4"])
def test_invariant_rows_of_every_width_match_torch(dtype, name):
    """The invariant rows (I, the incoming gI, the double backward's gI gradient) move between [group][invariant]
    rows and lanes over groups in W x W register transposes: 4 invariants fit one chunk of lanes, 22 take two
    (fp32, 16 lanes) or three (fp64, 8 lanes), whose whole-vector stores run into the next row; the last atoms' rows
    end within a vector of the end of gI. Forward, forces and a force loss's gradients equal the torch backend's."""
    reference, fused = pair(name)
    for groups in (3, 19):
        r, c, w, n = environment(n_atoms=23, n_pairs=400, groups=groups, dtype=dtype, sort=True)
        n -= 1  # atom 22 (no pairs) left out: the last atom has pairs, so its gI rows count
        assert (c == n - 1).any()
        assert_outputs_and_gradients_agree(reference, fused, r, c, w, n, seed=4)


def test_invariant_under_rotation_reflection_and_pair_order():
    fused = cartinv.load("lmax3_deg4", backend="cpu")
    r, c, w, n = environment()
    base = fused(r, c, w, n)
    scale = base.abs().max().item()
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    for rot in (q, -q):  # one of them is a reflection
        assert torch.allclose(fused(r @ rot.T, c, w, n), base, rtol=1e-11, atol=1e-11 * scale)
    perm = torch.randperm(r.shape[0], generator=torch.Generator().manual_seed(3))
    assert torch.allclose(fused(r[perm], c[perm], w[perm], n), base, rtol=1e-12, atol=1e-12 * scale)


def test_results_do_not_depend_on_the_thread_count():
    """Forward, backward and double backward are bit-identical on 1, 2 and 3 threads (each atom is one thread's
    work, whatever ranges of atoms the threads take)."""
    fused = cartinv.load("lmax3_deg4", backend="cpu")
    r, c, w, n = environment(n_atoms=300, n_pairs=6000, groups=19)
    r.requires_grad_(True)
    w.requires_grad_(True)
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            out = fused(r, c, w, n)
            gr, gw = torch.autograd.grad(out.square().sum(), (r, w), create_graph=True)
            outs.append((out, gr, gw, *torch.autograd.grad(gr.square().sum() + gw.square().sum(), (r, w))))
    finally:
        torch.set_num_threads(before)
    for results in outs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results, outs[0]))


@pytest.mark.parametrize("threads", [2, 3])
def test_every_atom_is_computed_on_several_threads(threads):
    """Threads take shrinking ranges of atoms (at least 8) until none is left: at atom counts around and far above
    the range sizes, every atom's invariants and gradients equal the torch backend's. Each case has new random
    inputs, so a range left out could not pass on what an earlier call left in a reused buffer."""
    reference, fused = pair("lmax3_deg4")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        for seed, n_atoms in enumerate((9, 17, 40, 257, 1500)):
            r, c, w, n = environment(seed=10 + seed, n_atoms=n_atoms, n_pairs=12 * n_atoms, groups=5, sort=True)
            assert_outputs_and_gradients_agree(reference, fused, r, c, w, n, seed=seed)
    finally:
        torch.set_num_threads(before)


def test_worker_pool_handoffs():
    """The kept workers take a job while spinning (calls back to back) or after sleeping (a pause longer than the
    spin); jobs that want different numbers of workers alternate (8, 3 and 2 chunks of atoms on 4 threads: 3, 2
    and 1 helpers, so a worker is left out of one job and wanted in the next); a second Python thread that finds
    the pool busy runs on threads of its own. Every call gives the one-thread result, and none hangs (a lost
    wake-up would)."""
    import threading
    import time

    fused = cartinv.load("lmax3_deg4", backend="cpu")
    cases = [environment(seed=k, n_atoms=atoms, n_pairs=20 * atoms, groups=3)
             for k, atoms in enumerate((64, 24, 16))]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = [fused(r, c, w, n) for r, c, w, n in cases]
        torch.set_num_threads(4)
        failures, done = [], []

        def calls(k):
            for i in range(300):
                if i % 4 == k:
                    time.sleep(0.002)  # longer than the workers' 200 us spin: they go to sleep
                j = (i + k) % len(cases)
                if not torch.equal(fused(*cases[j]), expected[j]):
                    failures.append((k, i))
            done.append(k)

        threads = [threading.Thread(target=calls, args=(k,), daemon=True) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        torch.set_num_threads(before)
    assert sorted(done) == [0, 1], "a kernel call hung"
    assert not failures


@pytest.mark.parametrize("case", ["sorted", "atoms without pairs", "step back at a chunk edge",
                                  "bad centre in a later chunk"])
def test_pair_index_over_many_chunks(case):
    """The pair index is built in chunks of 2^15 pairs on several threads: sorted centres, sorted centres that skip
    atoms (two of every three, and the first and last ones: offsets that repeat), an order broken exactly at a
    chunk edge (then the serial counting sort), a bad centre far from the first chunk."""
    fused = cartinv.load("lmax2_deg4", backend="cpu")
    reference = cartinv.load("lmax2_deg4", backend="torch")
    chunk = 1 << 15
    r, c, w, n = environment(n_atoms=4001, n_pairs=3 * chunk + 123, groups=2, sort=True)
    c = c.clone()
    if case == "atoms without pairs":
        c = (c // 3) * 3 + 1
        c[c >= n - 2] = n - 5
        c = c.sort().values
    if case == "step back at a chunk edge":
        c[chunk] = c[chunk - 1] - 1
    if case == "bad centre in a later chunk":
        c[2 * chunk + 7] = n
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            if case == "bad centre in a later chunk":
                with pytest.raises(cpu_backend.BadValues, match="centre index is outside"):
                    fused._cpu_impl(r, c, w, n)
                continue
            rr = r.clone().requires_grad_()
            out = fused(rr, c, w, n)
            results.append((out, torch.autograd.grad(out.square().sum(), rr)[0]))
    finally:
        torch.set_num_threads(before)
    if results:
        expected = reference(r, c, w, n)
        assert torch.allclose(results[0][0], expected, rtol=0, atol=1e-12 * expected.abs().max().item())
        for out, grad in results[1:]:
            assert torch.equal(out, results[0][0]) and torch.equal(grad, results[0][1])


def _forward_in_child(queue):
    # torch's own OpenMP threads do not survive fork either, so torch stays on one thread here and only the
    # kernels are asked for two
    torch.get_num_threads = lambda: 2
    fused = cartinv.load("lmax3_deg4", backend="cpu")
    r, c, w, n = environment(n_atoms=300, n_pairs=6000, groups=19)
    queue.put(fused(r, c, w, n).numpy())


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
def test_worker_threads_survive_fork():
    """The kernels keep worker threads between calls; a child made by fork() (a DataLoader worker) has none of
    them, and must make its own rather than wait for the parent's forever."""
    import multiprocessing

    fused = cartinv.load("lmax3_deg4", backend="cpu")
    r, c, w, n = environment(n_atoms=300, n_pairs=6000, groups=19)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        expected = fused(r, c, w, n).numpy()  # the parent's pool now has a worker
    finally:
        torch.set_num_threads(before)
    torch.set_num_threads(1)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_forward_in_child, args=(queue,))
    try:
        child.start()
    finally:
        torch.set_num_threads(before)
    import queue as queues

    try:
        got = queue.get(timeout=120)  # before join: the child flushes its queue before it exits
    except queues.Empty:
        got = None
    child.join(timeout=30)
    if got is None or child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in the kernels")
    assert child.exitcode == 0
    assert np.array_equal(got, expected)


def test_ops_pass_opcheck_and_torch_compile():
    fused = cartinv.load("lmax2_deg4", backend="cpu")
    ops = fused._cpu_impl.ops
    r, c, w, n = environment(n_atoms=4, n_pairs=14, groups=5)
    w3 = w.unsqueeze(-1)
    torch.library.opcheck(ops.forward, (r.requires_grad_(True), w3.requires_grad_(True), c, n))
    I, moments = ops.forward(r.detach(), w3.detach(), c, n)
    torch.library.opcheck(ops.backward, (r.detach(), w3.detach(), c, n, moments, torch.randn_like(I)))
    compiled = torch.compile(lambda r, w: fused._cpu_impl(r, c, w, n), fullgraph=True, backend="eager")
    assert torch.allclose(compiled(r.detach(), w.detach()), fused(r.detach(), c, w.detach(), n), rtol=0, atol=0)


def test_torch_export_goes_through_the_fused_op():
    """torch.export keeps the fused forward as one node (its fake implementation gives the shapes), and the exported
    program gives the same numbers: inputs without requires_grad export the infer op (no moments written), inputs
    that require grad the differentiable forward, whose exported program gives the same forces."""
    fused = cartinv.load("lmax2_deg4", backend="cpu")

    class Wrapped(torch.nn.Module):
        def __init__(self, n_atoms):
            super().__init__()
            self.inner, self.n_atoms = fused._cpu_impl, n_atoms

        def forward(self, r, c, w):
            return self.inner(r, c, w, self.n_atoms)

    r, c, w, n = environment(n_atoms=4, n_pairs=14, groups=5)
    program = torch.export.export(Wrapped(n), (r, c, w))
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    assert any("cartinv.lmax2_deg4_" in t and t.endswith("infer.default") for t in targets), targets
    assert torch.equal(program.module()(r, c, w), fused(r, c, w, n))

    program = torch.export.export(Wrapped(n), (r.clone().requires_grad_(), c, w))
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    assert any("cartinv.lmax2_deg4_" in t and t.endswith("forward.default") for t in targets), targets
    forces = []
    for fn in (program.module(), lambda *args: fused(*args, n)):
        rr = r.clone().requires_grad_()
        forces.append(torch.autograd.grad(fn(rr, c, w).square().sum(), rr)[0])
    assert torch.equal(*forces)


@pytest.mark.parametrize("check_values", [True, False])
def test_bad_centre_is_an_error_not_a_crash(check_values):
    fused = cartinv.load("lmax3_deg4", backend="cpu", check_values=check_values)
    r, c, w, n = environment()
    c = c.clone()
    c[3] = n + 5
    with pytest.raises(cartinv.InputError, match=r"centers\[3\] = 12 is out of range"):
        fused(r, c, w, n)
    with pytest.raises(cpu_backend.BadValues, match="centre index is outside"):  # the bare kernels
        fused._cpu_impl(r, c, w, n)


BAD_VALUES = [  # (tensor, index, value, message)
    ("r", (17, 1), float("nan"), r"r\[17\] = .* contains NaN or inf"),
    ("r", (0, 2), float("-inf"), r"r\[0\] = .* contains NaN or inf"),
    ("r", (59,), 0.0, r"pair vector r\[59\] has zero length"),
    ("w", (33, 10), float("nan"), r"w\[33\] contains NaN or inf"),
    ("w", (5, 0), float("inf"), r"w\[5\] contains NaN or inf"),
]


@pytest.mark.parametrize("grad", [False, True], ids=["infer", "forward"])
@pytest.mark.parametrize("check_values", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("which, index, value, message", BAD_VALUES)
def test_kernels_find_bad_values_and_the_module_names_them(which, index, value, message, dtype, check_values, grad):
    """The forward checks the values it reads (the module's separate pass over the data is skipped on the
    fused path): every bad element is found, in any lane and block, and the error names it; so does the infer
    op (inputs without requires_grad), which keeps no moments."""
    fused = cartinv.load("lmax3_deg4", backend="cpu", check_values=check_values)
    r, c, w, n = environment(dtype=dtype)
    data = {"r": r.clone(), "w": w.clone()}
    data[which][index] = value
    data[which].requires_grad_(grad)
    with pytest.raises(cartinv.InputError, match=message):
        fused(data["r"], c, data["w"], n)
    with pytest.raises(cpu_backend.BadValues):
        fused._cpu_impl(data["r"], c, data["w"], n)


def test_overflow_is_an_error_not_inf():
    """Finite inputs whose squared length or moments overflow float32 are refused, not returned as inf."""
    fused = cartinv.load("lmax3_deg4", backend="cpu")
    r, c, w, n = environment(dtype=torch.float32)
    big_r = r.clone()
    big_r[4] = 1e20  # |r|^2 = 3e40 > float32 max
    with pytest.raises(cartinv.InputError, match="squared length .* overflows .* too large for torch.float32"):
        fused(big_r, c, w, n)
    big_w = w.clone()
    big_w[c == c[0]] = 3e38  # the atom's moments sum past float32 max
    with pytest.raises(cartinv.InputError, match="moment is NaN or inf .* too large for torch.float32"):
        fused(r, c, big_w, n)
    assert torch.isfinite(fused(r, c, w, n)).all()  # the same module on good data


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_infer_op_writes_no_moments_and_equals_the_forward(dtype):
    """Calls that need no gradient (inputs without requires_grad, no_grad, inference mode) run the infer op: the
    same invariants bit for bit, without the moments buffer (the library's forward is never asked for it)."""
    fused = cartinv.load("lmax3_deg4", backend="cpu")
    ops = cpu_backend.fused_ops(*runtime_load.generated_dir(runtime_load.resolve_basis("lmax3_deg4")),
                                runtime_load.resolve_basis("lmax3_deg4").content_hash())
    r, c, w, n = environment(n_atoms=40, n_pairs=700, groups=21, dtype=dtype)
    w3 = w.unsqueeze(-1)
    expected = ops.forward(r, w3, c, n)[0]
    assert torch.equal(ops.infer(r, w3, c, n), expected)
    torch.library.opcheck(ops.infer, (r, w3, c, n))
    with_grad = fused(r.clone().requires_grad_(), c, w, n)

    def ops_run(call):
        """(result, names of the family's ops that ran) of call(), from torch's profiler."""
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            out = call()
        return out, {e.key.rsplit("_", 1)[-1] for e in prof.key_averages() if e.key.startswith(ops.prefix)}

    out, ran = ops_run(lambda: fused(r, c, w, n))
    assert torch.equal(out, with_grad.detach()) and ran == {"infer"}
    with torch.no_grad():
        out, ran = ops_run(lambda: fused(r.clone().requires_grad_(), c, w, n))
        assert torch.equal(out, expected) and ran == {"infer"}
    with torch.inference_mode():
        out, ran = ops_run(lambda: fused(r, c, w, n))
        assert torch.equal(out, expected) and ran == {"infer"}
    assert ops_run(lambda: fused(r.clone().requires_grad_(), c, w, n))[1] == {"forward"}


def test_moments_buffer_is_reused_only_once_nothing_holds_it():
    """The kernels' outputs come from pools: memory is written again only after the backward freed it, never
    while a graph, the caller, a view or a shallow copy still holds it (so the gradients stay right), and a reused
    buffer is a new tensor without the autograd history of the last one."""
    fused = cartinv.load("lmax3_deg4", backend="cpu")
    ops = cpu_backend.fused_ops(*runtime_load.generated_dir(runtime_load.resolve_basis("lmax3_deg4")),
                                runtime_load.resolve_basis("lmax3_deg4").content_hash())
    r, c, w, n = environment(n_atoms=30, n_pairs=500, groups=9)

    def grads(rr, ww):
        return torch.autograd.grad(fused(rr, c, ww, n).square().sum(), (rr, ww))

    def fresh_inputs(scale=1.0):
        return (r * scale).requires_grad_(), (w * scale).requires_grad_()

    expected = [grads(*fresh_inputs(s)) for s in (1.0, 1.5)]
    w3 = w.unsqueeze(-1)
    first = ops.forward(r, w3, c, n)[1]
    address = first.data_ptr()
    assert ops.forward(r, w3, c, n)[1].data_ptr() != address  # the caller holds `first`
    view = first[1:]
    del first
    assert ops.forward(r, w3, c, n)[1].data_ptr() != address  # a view holds its memory
    del view
    first = ops.forward(r, w3, c, n)[1]
    assert first.data_ptr() == address  # free again: reused
    copy = first.detach()
    del first
    assert ops.forward(r, w3, c, n)[1].data_ptr() != address  # a shallow copy holds its memory
    del copy
    assert ops.forward(r, w3, c, n)[1].data_ptr() == address

    rr = r.clone().requires_grad_()
    out = fused(rr, c, w, n)
    address = out.data_ptr()
    torch.autograd.grad(out.sum(), rr)
    del out
    again = fused(r, c, w, n)  # no gradient wanted: the infer op, on the invariants' memory of the last call
    assert again.data_ptr() == address and not again.requires_grad and again.grad_fn is None
    saved = ops.forward(r, w3, c, n)[1]
    grads = ops.backward(r, w3, c, n, saved, torch.ones_like(again))
    held = [g.data_ptr() for g in grads]
    del grads
    assert [g.data_ptr() for g in ops.backward(r, w3, c, n, saved, torch.ones_like(again))] == held

    held = torch_glue.held_buffers() if ops.native else sum(len(p._held) for p in ops.library.pools.values())
    assert held > 0
    cpu_backend.release_buffers()  # what the memory benchmark runs first
    assert not any(pool._held for pool in ops.library.pools.values()) and torch_glue.held_buffers() == 0

    # two graphs alive at once, each backward after the other forward: neither sees the other's moments
    a, b = fresh_inputs(1.0), fresh_inputs(1.5)
    out_a = fused(a[0], c, a[1], n)
    out_b = fused(b[0], c, b[1], n)
    got_b = torch.autograd.grad(out_b.square().sum(), b)
    got_a = torch.autograd.grad(out_a.square().sum(), a, retain_graph=True)
    fused((2 * r).requires_grad_(), c, w, n)  # another forward in between
    again_a = torch.autograd.grad(out_a.square().sum(), a)  # the retained graph's moments are intact
    for got, want in ((got_a, expected[0]), (got_b, expected[1]), (again_a, expected[0])):
        for x, y in zip(got, want):
            assert torch.equal(x, y)


def test_library_of_another_basis_is_refused():
    fused = cartinv.load("lmax3_deg4", backend="cpu")
    path = fused._cpu_impl.ops.library.path
    with pytest.raises(cpu_backend.CpuBackendError, match="was built for Basis"):
        cpu_backend.FusedLibrary(path, "0" * 64)


def test_no_compiler_warns_once_and_uses_torch(monkeypatch):
    monkeypatch.setattr(cpu_backend, "_LIBRARIES", {})
    monkeypatch.setattr(cpu_backend, "compiler", lambda: None)
    r, c, w, n = environment()
    with pytest.warns(runtime_load.BackendWarning, match="fused CPU backend was expected for CPU inputs but is "
                                                         "unavailable: no C\\+\\+ compiler found"):
        m = cartinv.load("lmax3_deg4")
        out = m(r, c, w, n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert torch.equal(m(r, c, w, n), out)
    assert m.active_backend("cpu") == "torch"
    assert torch.equal(out, cartinv.load("lmax3_deg4", backend="torch")(r, c, w, n))



def test_modules_deep_copy_and_pickle():
    """Training keeps deep copies of the best model; saved modules pickle: the fused path holds no ctypes state."""
    import copy
    import pickle

    m = cartinv.load("lmax3_deg4", backend="cpu")
    r, c, w, n = environment()
    out = m(r, c, w, n)
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert clone.active_backend("cpu") == "cpu"
        assert torch.equal(clone(r, c, w, n), out)


@pytest.mark.parametrize("lane_bytes", [16, 64])
def test_other_simd_widths_give_the_same_numbers(lane_bytes):
    """The library built for SSE-wide (16 B) and AVX-512-wide (64 B) lanes, as other CPUs get it, run here
    (the compiler splits or merges the vectors): forward, backward and double backward equal the native build's."""
    folder = runtime_load.checked_in_root() / "lmax2_deg4"
    fused = cartinv.load("lmax2_deg4", backend="cpu")
    native = fused._cpu_impl.ops.library
    other = cpu_backend.FusedLibrary(cpu_backend.build_library(folder, "lmax2_deg4", quiet=True,
                                                               lane_bytes=lane_bytes), fused.basis_hash)
    assert other.lanes[torch.float64] == lane_bytes // 8
    r, c, w, n = environment(groups=13)
    w = w.unsqueeze(-1)
    results = []
    for lib in (native, other):
        out, moments = lib.forward(r, w, c, n)
        g = torch.randn_like(out, generator=torch.Generator().manual_seed(4))
        gr, gw = lib.backward(r, w, c, n, moments, g)
        second = lib.double_backward(r, w, c, n, g, torch.ones_like(r), torch.ones_like(w))
        results.append((out, gr, gw, *second))
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12 * a.abs().max().item())
