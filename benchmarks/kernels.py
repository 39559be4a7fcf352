"""Kernel benchmark: cartinv's fused CPU and generated torch backends vs a naive einsum reference vs hippynn.

One process, side by side, on the same inputs: pairs with ~`--neighbors` neighbours per atom (Poisson counts,
pairs sorted by centre as a neighbour list gives them), unit-free random pair vectors, tied weights w [P, C].

    cartinv   the generated module of a checked-in basis (default hiphop_lmax3_deg4: HIP-HOP-NN's 13
              contractions in hippynn's column order), called directly (no input validation), and through
              cartinv.load (with validation) as "cartinv+checks";
    cartinv-cpu   (CPU runs) the fused C++ kernels through cartinv.load(backend="cpu"), what users get by default
              for CPU inputs, input checks included (runtime/kernels/cpu_backend.py; compiled on first use);
    cartinv-cuda  (GPU runs) the fused CUDA kernels through cartinv.load(backend="cuda", check_values=False);
    naive     Y per pair, T = index_add of the [P, C, 16] outer products, full Cartesian STF tensors, one torch.einsum
              per invariant (autograd for the backward);
    hippynn   benchmarks/peers.hippynn_forward: hippynn's TensorExtractor, envsum and calc_invariants;
    mace      benchmarks/mace_peer.MaceInvariants: e3nn harmonics, the same moments, mace-torch's
              SymmetricContraction (correlation 3, L = 3 inputs, one invariant per channel): a different function
              (learned contraction weights), so its rows report time and memory only (no GF/s, no agreement).

Timings: "fwd" = forward under torch.no_grad() (inference); "fwd+bwd" = forward with autograd, then the gradient of
sum(I * a) w.r.t. r and w (a fixed random [C, K]), started from d/dI of that sum, made once per method outside the
timed calls (so the product and sum over the output are not timed). Best of --repeats calls after one warm-up, and
of more (up to --max-repeats) while the timed calls add up to less than --min-time seconds: on a shared virtual
machine a fast call's best of three is itself noisy. Garbage is collected once before each series and the collector
is off during it, as timeit does (--collect each: before every timed call, as until 2026-12-08; that also evicts the
call's data from the caches, a serial refetch that threads cannot share). Peak memory: on a GPU
torch.cuda.max_memory_allocated; on the CPU the peak of live tensor bytes allocated during one call (torch profiler
memory events; inputs excluded), i.e. the largest tensor footprint, not RSS.

Arithmetic: GFLOP/s counts the operations of the generated programs (harmonics, invariants and their VJPs, per
pair and per (atom, group) row) plus the moment products (2 per pair, group, channel and harmonic forward; 4
backward), the same count for every method; "peak%" is that rate as a fraction of a torch matmul measured in the
same run on the same threads (2048 x 2048, the dtype's best of 5).

Roofline line (every run): the bytes of pair data a forward must read once (r, w, the CSR order and offsets),
the device's copy bandwidth measured here (a large tensor copy: read + write), the time that reading takes at
that bandwidth, and the fused forward (cartinv-cuda on a GPU, else cartinv) as a multiple of it; then the same for
forward + backward with the bytes it must move at least (step_bytes: every input read and every output written
once per pass, the moments written once and read once), which bounds it where memory is slow against arithmetic.

    python benchmarks/kernels.py            # 2,000 and 20,000 atoms, 32 channels, float32 and float64
    python benchmarks/kernels.py --quick    # a small run (seconds)
    python benchmarks/kernels.py --threads 1 --methods cartinv-cpu cartinv hippynn mace   # the issue-14 table
    python benchmarks/kernels.py --threads 2 --efficiency 5   # fused 1- against 2-thread, interleaved
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cartinv  # noqa: E402
from cartinv.runtime.kernels import load as runtime_load  # noqa: E402


def make_inputs(n_atoms, neighbors, channels, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    counts = torch.poisson(torch.full((n_atoms,), float(neighbors)), generator=gen).long()
    centers = torch.repeat_interleave(torch.arange(n_atoms), counts)
    n_pairs = int(counts.sum())
    direction = torch.randn(n_pairs, 3, generator=gen, dtype=torch.float64)
    length = 0.8 + 4.2 * torch.rand(n_pairs, 1, generator=gen, dtype=torch.float64)
    r = direction / direction.norm(dim=1, keepdim=True) * length
    w = torch.randn(n_pairs, channels, generator=gen, dtype=torch.float64) / math.sqrt(neighbors)
    cast = dict(dtype=dtype, device=device)
    return r.to(**cast), centers.to(device), w.to(**cast), n_atoms


# --- the naive reference ----------------------------------------------------------------------------------


class NaiveEinsum:
    """Moments by materialising the [P, C, N_COORDS] outer products; invariants by one einsum each."""

    def __init__(self, basis, module, dtype, device):
        import numpy as np

        from cartinv.symbolic import stf

        self.module = module
        self.invariants = basis.invariants
        self.slices, start = {}, 0
        for c in basis.coordinates:
            key = (c["channel"], c["l"])
            self.slices.setdefault(key, slice(start, start + 2 * c["l"] + 1))
            start += 1
        self.to_cart = {l: torch.tensor(np.asarray(stf.orthonormal_basis(l)), dtype=dtype, device=device)
                        for l in basis.orders}

    def __call__(self, r, centers, w, n_atoms):
        u = r / torch.linalg.vector_norm(r, dim=1, keepdim=True)
        y = self.module.harmonics(u)  # plain torch ops: autograd differentiates them
        outer = w[:, :, None] * y[:, None, :]  # [P, C, N_COORDS]
        T = torch.zeros((n_atoms,) + outer.shape[1:], dtype=r.dtype, device=r.device).index_add(0, centers, outer)
        cart = {}
        for (ch, l), sl in self.slices.items():
            cart[(ch, l)] = (T[..., sl] @ self.to_cart[l]).reshape(T.shape[:-1] + (3,) * l)
        cols = []
        for inv in self.invariants:
            ops = [cart[(c, l)] for c, l in zip(inv["channels"], inv["orders"])]
            if inv["orders"] == [0]:
                cols.append(ops[0])
                continue
            lhs, rhs = inv["einsum"].split("->")
            cols.append(torch.einsum(",".join("..." + s for s in lhs.split(",")) + "->..." + rhs, *ops))
        return torch.stack(cols, dim=-1)


# --- measurement ------------------------------------------------------------------------------------------


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cotangent_of(out, coeff):
    """d sum(out * coeff) / d out as one contiguous tensor of out's shape, made once outside the timed calls: the
    timed backward then starts from it, so the elementwise product and sum over the output (and their backward,
    28 of 96 ms at 20,000 atoms fp32 in the fused path) are not counted as the method's work."""
    o = out.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad((o * coeff).sum(), o)
    return grad.contiguous()


def _step(fn, args, cotangent, backward):
    """One call: forward under no_grad, or forward with autograd and the gradient of sum(I * a) w.r.t. r and w
    (cotangent = cotangent_of(I, a))."""
    r, centers, w, n_atoms = args
    if not backward:
        with torch.no_grad():
            return fn(r, centers, w, n_atoms)
    r_, w_ = r.detach().requires_grad_(True), w.detach().requires_grad_(True)
    out = fn(r_, centers, w_, n_atoms)
    return torch.autograd.grad(out, (r_, w_), cotangent)


def time_call(fn, args, cotangent, backward, repeats, device, min_time=0.0, max_repeats=30, collect="once"):
    """Best time of one call after a warm-up: `repeats` timed calls, and more (up to `max_repeats`) while the timed
    calls add up to less than `min_time` seconds, so that a fast call's best is not one of three noisy draws.
    collect: "once" collects garbage before the series and keeps the collector off during it (timeit's rule), "each"
    collects before every timed call (which also evicts the caches: a serial cost that threads cannot share)."""
    if collect not in ("once", "each"):
        raise ValueError(f"collect must be 'once' or 'each', got {collect!r}")
    _step(fn, args, cotangent, backward)  # warm-up
    best = math.inf
    spent = 0.0
    calls = 0
    enabled = gc.isenabled()
    gc.collect()
    if collect == "once":
        gc.disable()
    try:
        while calls < repeats or (spent < min_time and calls < max_repeats):
            if collect == "each":
                gc.collect()
            _sync(device)
            start = time.perf_counter()
            _step(fn, args, cotangent, backward)
            _sync(device)
            took = time.perf_counter() - start
            best = min(best, took)
            spent += took
            calls += 1
    finally:
        if enabled:
            gc.enable()
    return best


def timing_options(args) -> dict:
    """time_call's keyword options from the command line."""
    return dict(min_time=args.min_time, max_repeats=args.max_repeats, collect=args.collect)


def case_inputs(args, n_atoms, dname, n_invariants, device):
    """The inputs of one table case and the fixed coefficients a of its cotangent d(sum I * a)/dI."""
    dtype = getattr(torch, dname)
    inputs = make_inputs(n_atoms, args.neighbors, args.channels, dtype, device)
    coeff = torch.randn(args.channels, n_invariants, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64).to(dtype=dtype, device=device)
    return inputs, coeff


def thread_efficiency(fn, args, cotangent, threads, rounds, repeats, device, **timing):
    """Parallel efficiency of one forward + backward, measured in this process: each round times the call on one
    thread and then on `threads` (time_call each), so both see the same state of a shared machine. Returns the
    per-round (one-thread, many-thread) best times and the efficiency of the best of each, t1 / (threads * tn).
    Restores torch's thread count."""
    before = torch.get_num_threads()
    pairs = []
    try:
        for _ in range(rounds):
            times = []
            for t in (1, threads):
                torch.set_num_threads(t)
                times.append(time_call(fn, args, cotangent, True, repeats, device, **timing))
            pairs.append(tuple(times))
    finally:
        torch.set_num_threads(before)
    best_1 = min(p[0] for p in pairs)
    best_n = min(p[1] for p in pairs)
    return pairs, best_1 / (threads * best_n)


def efficiency_report(args, basis, fused, device) -> None:
    """--efficiency: the fused CPU backend's parallel efficiency at each size and dtype, 1 against --threads
    threads interleaved in this process (runs in separate processes see a shared machine in different states)."""
    threads = args.threads or torch.get_num_threads()
    if threads < 2:
        raise SystemExit("--efficiency needs --threads 2 or more (the thread count compared with one)")
    print(f"# parallel efficiency of cartinv-cpu forward + backward, basis {basis.name}: 1 against {threads} threads, "
          f"interleaved in one process, {args.efficiency} rounds; each time the best of {args.repeats} calls or more "
          f"(up to {args.max_repeats} while under {args.min_time:g} s), garbage collected {args.collect}")
    print(f"{'atoms':>6} {'dtype':>7} {'1 thread s':>10} {f'{threads} threads s':>11} {'efficiency':>10}  per round")
    timing = timing_options(args)
    for n_atoms in args.atoms:
        for dname in args.dtypes:
            inputs, coeff = case_inputs(args, n_atoms, dname, fused.n_invariants, device)
            cotangent = cotangent_of(_step(fused, inputs, None, backward=False), coeff)
            pairs, eff = thread_efficiency(fused, inputs, cotangent, threads, args.efficiency, args.repeats, device,
                                           **timing)
            rounds = " ".join(f"{t1 / (threads * tn):.0%}" for t1, tn in pairs)
            print(f"{n_atoms:>6} {dname:>7} {min(p[0] for p in pairs):10.5f} {min(p[1] for p in pairs):11.5f} "
                  f"{eff:10.1%}  {rounds}")


def peak_bytes(fn, args, cotangent, backward, device):
    """Peak live tensor bytes allocated during one call (GPU: allocator peak; CPU: profiler memory events). The
    fused CPU kernels' kept output memory is released first, so their call allocates (and is counted) in full."""
    from cartinv.runtime.kernels import cpu_backend

    cpu_backend.release_buffers()
    gc.collect()
    if device.type == "cuda":
        _sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        _step(fn, args, cotangent, backward)
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _step(fn, args, cotangent, backward)
    events = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def copy_bandwidth(device, nbytes=1 << 30, repeats=5) -> float:
    """Bytes per second moved by the best of `repeats` copies of an nbytes buffer (counting read and write)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    del src, dst
    return 2 * nbytes / best


def pair_bytes(inputs) -> int:
    """Bytes a forward has to read once: r [P, 3], w [P, C], the CSR order [P] and offsets [n_atoms + 1] (int64)."""
    r, centers, w, n_atoms = inputs
    return r.numel() * r.element_size() + w.numel() * w.element_size() + 8 * (centers.numel() + n_atoms + 1)


def step_bytes(inputs, n_invariants: int, n_coords: int) -> int:
    """Bytes a forward + backward has to move at least: the forward reads r, w and the centres and writes I and
    the moments T [n_atoms, groups, n_coords]; the backward reads them again with T and dI and writes dr and dw."""
    r, centers, w, n_atoms = inputs
    item = r.element_size()
    invariants = n_atoms * w.shape[1] * n_invariants * item
    moments = n_atoms * w.shape[1] * n_coords * item
    return (3 * r.numel() * item + 3 * w.numel() * item + 2 * 8 * centers.numel()
            + 2 * moments + 2 * invariants)


def matmul_peak(dtype, device, n=2048, repeats=5) -> float:
    """FLOP/s of the best of `repeats` n x n matrix products (2 n^3 operations each)."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def operation_counts(basis) -> dict[str, int]:
    """Operations of the generated straight-line programs of `basis` (codegen: needs SymPy; benchmark only)."""
    from cartinv.codegen.generate import torch_context

    return torch_context(basis, basis.name, "")["op_counts"]


def flops(ops: dict[str, int], n_pairs: int, n_atoms: int, groups: int, channels: int, n_harmonics: int,
          backward: bool) -> int:
    """Arithmetic of one call (see the module docstring); the backward includes the forward it differentiates."""
    moments = 2 * n_pairs * groups * channels * n_harmonics
    forward = n_pairs * ops["harmonics"] + moments + n_atoms * groups * ops["invariants"]
    if not backward:
        return forward
    return (forward + n_pairs * (ops["harmonics_vjp"] + 12) + 2 * moments
            + n_atoms * groups * ops["invariants_vjp"])


def agreement(a, b):
    """max |a - b| / max |b| over each column, worst column."""
    a, b = a.double(), b.double()
    scale = b.abs().amax(dim=tuple(range(b.dim() - 1))).clamp_min(1e-300)
    return float(((a - b).abs().amax(dim=tuple(range(b.dim() - 1))) / scale).max())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atoms", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--neighbors", type=int, default=30)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    ap.add_argument("--basis", default="hiphop_lmax3_deg4", help="checked-in basis name")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per method and size, at least")
    ap.add_argument("--min-time", type=float, default=0.25,
                    help="more timed calls (up to --max-repeats) while they add up to less than this (seconds)")
    ap.add_argument("--max-repeats", type=int, default=30)
    ap.add_argument("--collect", choices=["once", "each"], default="once",
                    help="garbage collection: once before each series, the collector off during it (timeit's rule; "
                         "default), or before every timed call")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--methods", nargs="+", default=["cartinv-cpu", "cartinv", "cartinv+checks", "naive", "hippynn"])
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    ap.add_argument("--efficiency", type=int, default=0, metavar="ROUNDS",
                    help="instead of the table: the fused CPU backend's parallel efficiency, 1 against --threads "
                         "threads, ROUNDS interleaved rounds in this process")
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat: 500 and 2,000 atoms, 8 channels")
    args = ap.parse_args(argv)
    if args.quick:
        args.atoms, args.channels, args.repeats, args.min_time = [500, 2000], 8, 1, 0.0
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    basis = runtime_load.resolve_basis(args.basis)
    if args.efficiency:
        fused_cpu = cartinv.load(basis, backend="cpu")
        if device.type != "cpu" or fused_cpu.active_backend(device) != "cpu":
            raise SystemExit("--efficiency measures the fused CPU backend, which is unavailable here")
        efficiency_report(args, basis, fused_cpu, device)
        return 0
    folder, name = runtime_load.generated_dir(basis)
    module = runtime_load.import_torch_module(folder, name, basis.content_hash())
    model = module.InvariantModel()
    checked = cartinv.load(basis, backend="torch")
    methods = {"cartinv": model, "cartinv+checks": checked}
    if device.type == "cpu" and "cartinv-cpu" in args.methods:
        fused_cpu = cartinv.load(basis, backend="cpu")  # the kernels check the values as they read them
        if fused_cpu.active_backend(device) == "cpu":
            methods = {"cartinv-cpu": fused_cpu, **methods}
        else:
            print("# cartinv-cpu unavailable (see the warning above); its rows left out")
    if "naive" in args.methods:
        methods["naive"] = None  # built per dtype
    if "mace" in args.methods:
        methods["mace"] = None  # built per dtype
    hip_forward = None
    if "hippynn" in args.methods:
        from benchmarks import peers  # noqa: PLC0415

        missing = peers.hippynn_missing()
        if missing is None:
            hip_forward = peers.hippynn_forward
        else:  # e.g. a GPU machine without the wheel: the other methods still run
            print(f"# hippynn peer unavailable ({missing}); its rows left out")
    methods = {k: v for k, v in methods.items() if k in args.methods}
    if hip_forward is not None:
        methods["hippynn"] = hip_forward
    if device.type == "cuda":  # the fused kernels run whenever there is a GPU, whatever --methods says
        fused = cartinv.load(basis, backend="cuda", check_values=False)
        if fused.active_backend(device) == "cuda":
            methods["cartinv-cuda"] = fused
        else:
            print("# cartinv-cuda unavailable (see the warning above); CUDA rows left out")

    print(f"# basis {basis.name} ({module.N_INVARIANTS} invariants, orders {module.ORDERS}); device {device}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; neighbours ~{args.neighbors}, "
          f"channels {args.channels}; best of {args.repeats} calls or more (up to {args.max_repeats} while under "
          f"{args.min_time:g} s in all), garbage collected "
          f"{'before each call' if args.collect == 'each' else 'once before them, the collector off during them'}")
    print("# memory: " + ("torch.cuda.max_memory_allocated" if device.type == "cuda"
                          else "peak live tensor bytes during one call (profiler memory events), not RSS"))
    header = (f"{'atoms':>6} {'pairs':>7} {'dtype':>7} {'method':>15} {'fwd s':>8} {'fwd+bwd s':>10} "
              f"{'GF/s f+b':>8} {'peak%':>6} {'torch/x f+b':>11} {'hip/x fwd':>9} {'hip/x f+b':>9} "
              f"{'naive/x f+b':>11} {'peak MB fwd':>11} {'peak MB f+b':>11} {'max dev':>8}")
    ops = operation_counts(basis)
    peaks = {d: matmul_peak(getattr(torch, d), device) for d in args.dtypes}
    print("# matmul peak on these threads: " + ", ".join(f"{d} {v / 1e9:.1f} GFLOP/s" for d, v in peaks.items()))
    bandwidth = copy_bandwidth(device)
    print(f"# copy bandwidth on {device}: {bandwidth / 1e9:.1f} GB/s (read + write of a 1 GiB tensor copy)")
    print(header)
    rooflines = []
    timing = timing_options(args)
    for n_atoms in args.atoms:
        for dname in args.dtypes:
            dtype = getattr(torch, dname)
            inputs, coeff = case_inputs(args, n_atoms, dname, module.N_INVARIANTS, device)
            rows = {}
            reference = None
            for label, fn in methods.items():
                if label == "naive":
                    fn = NaiveEinsum(basis, module, dtype, device)
                if label == "mace":
                    try:
                        from benchmarks.mace_peer import MaceInvariants  # noqa: PLC0415
                    except ImportError as exc:
                        print(f"# mace peer unavailable: {exc}")
                        continue
                    fn = MaceInvariants(args.channels, dtype).to(device)
                out = _step(fn, inputs, None, backward=False)
                if reference is None and label != "mace":
                    reference = out
                cotangent = cotangent_of(out, coeff)
                fwd = time_call(fn, inputs, cotangent, False, args.repeats, device, **timing)
                both = time_call(fn, inputs, cotangent, True, args.repeats, device, **timing)
                mem = (None, None) if args.no_memory else (
                    peak_bytes(fn, inputs, cotangent, False, device), peak_bytes(fn, inputs, cotangent, True, device))
                del cotangent
                rows[label] = (fwd, both, mem, agreement(out, reference) if label != "mace" else None)
                del out
            hip = rows.get("hippynn")
            naive = rows.get("naive")
            torch_row = rows.get("cartinv")
            work = flops(ops, inputs[0].shape[0], n_atoms, args.channels, module.CHANNELS, module.N_HARMONICS, True)
            for label, (fwd, both, mem, dev) in rows.items():
                rate = work / both if dev is not None else None  # mace: a different function, no shared count
                ratio_t = f"{torch_row[1] / both:11.2f}" if torch_row else f"{'-':>11}"
                ratio_f = f"{hip[0] / fwd:9.2f}" if hip else f"{'-':>9}"
                ratio_b = f"{hip[1] / both:9.2f}" if hip else f"{'-':>9}"
                ratio_n = f"{naive[1] / both:11.2f}" if naive else f"{'-':>11}"
                mf = f"{mem[0] / 2**20:11.1f}" if mem[0] is not None else f"{'-':>11}"
                mb = f"{mem[1] / 2**20:11.1f}" if mem[1] is not None else f"{'-':>11}"
                print(f"{n_atoms:>6} {inputs[0].shape[0]:>7} {dname:>7} {label:>15} {fwd:8.5f} {both:10.5f} "
                      + (f"{rate / 1e9:8.2f} {100 * rate / peaks[dname]:5.1f}% " if rate else f"{'-':>8} {'-':>6} ")
                      + f"{ratio_t} {ratio_f} {ratio_b} {ratio_n} {mf} {mb} "
                      + (f"{dev:8.1e}" if dev is not None else f"{'-':>8}"), flush=True)
            fused_label = next((k for k in ("cartinv-cuda", "cartinv-cpu", "cartinv") if k in rows), None)
            if fused_label in rows:
                nbytes = pair_bytes(inputs)
                floor = nbytes / bandwidth
                rooflines.append(f"# roofline {n_atoms} atoms {dname}: pair data {nbytes / 2**20:.1f} MiB, read once "
                                 f"in {floor * 1e6:.0f} us; {fused_label} forward {rows[fused_label][0] * 1e6:.0f} us "
                                 f"= {rows[fused_label][0] / floor:.1f}x that")
                step = step_bytes(inputs, module.N_INVARIANTS, module.N_COORDS)
                both = rows[fused_label][1]
                rooflines[-1] += (f"; forward + backward moves at least {step / 2**20:.1f} MiB, "
                                  f"{step / bandwidth * 1e3:.1f} ms at that bandwidth; {fused_label} forward + "
                                  f"backward {both * 1e3:.1f} ms = {both * bandwidth / step:.1f}x that")
                print(rooflines[-1], flush=True)
            del inputs, reference
            gc.collect()
    print("\n".join(rooflines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
