"""Where one forward + backward through ``cartinv.load(...)`` spends its time: torch.profiler's table of the top
operations by self time on the host, and on the GPU where there is one.

Written for the CUDA path: on an H200 (2026-12-04) its forward took about 1.8 ms at 2,000 and at 20,000 atoms
alike, while the host side costs about 0.1 ms (measured on a CPU with the kernels replaced by no-ops), so most of
it is neither the kernels nor Python; this table names it. Runs on a CPU too (the fused or torch backend).

    python benchmarks/profile_step.py --atoms 20000 --dtype float32          # GPU when present, else CPU
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cartinv  # noqa: E402
from benchmarks.kernels import _step, _sync, cotangent_of, make_inputs  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--basis", default="hiphop_lmax3_deg4")
    ap.add_argument("--atoms", type=int, default=20000)
    ap.add_argument("--neighbors", type=int, default=30)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=5, help="profiled forward + backward steps (after two warm-ups)")
    ap.add_argument("--rows", type=int, default=15)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    module = cartinv.load(args.basis, backend=args.backend, check_values=False)
    inputs = make_inputs(args.atoms, args.neighbors, args.channels, getattr(torch, args.dtype), device)
    coeff = torch.randn(module.n_invariants, dtype=inputs[0].dtype, device=device)
    cotangent = cotangent_of(_step(module, inputs, None, backward=False), coeff)
    for _ in range(2):
        _step(module, inputs, cotangent, backward=True)
    _sync(device)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(args.steps):
            _step(module, inputs, cotangent, backward=True)
        _sync(device)
    print(f"# {args.basis}, {args.atoms} atoms, {inputs[0].shape[0]} pairs, {args.channels} channels, {args.dtype}, "
          f"backend {module.active_backend(device)} on {device}; {args.steps} forward + backward steps")
    table = prof.key_averages()
    print("# by host self time")
    print(table.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    if device.type == "cuda":
        print("# by device self time")
        print(table.table(sort_by="self_device_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
