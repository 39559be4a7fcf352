"""Cost of one force-training step (energy + force loss, backward through the forces) for the chemistry models, side
by side in one process on the same batch: cartinv with each form of the interaction layer's pair contraction
(``runtime/models/pair_contraction.py``), HIP-NN-TS and MACE.

The convergence runs of ``benchmarks/chemistry.py`` spend nearly all their CPU time in this step, so it sets how many
epochs a model gets per CPU second. Median of ``--repeats`` steps after warm-up; the optimiser update is left out
(it is the same ``torch.optim.Adam`` for every model). Freed memory is kept for reuse as in the chemistry
benchmark, and the two cartinv forms are timed in alternating rounds, so neither gains from running second.

    python benchmarks/training_step.py --molecule toluene --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import chem_models  # noqa: E402
from benchmarks.chemistry import MODELS, available  # noqa: E402
from cartinv.allocator import keep_freed_memory  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"


def batch_of(molecule: str, n_structures: int, cutoff: float, dtype):
    """(batch, elements, e0s, scale, neighbours per atom) from the first frames of the committed xTB data."""
    from cartinv.runtime.training import read_frames
    from cartinv.runtime.training.data import collate, featurize, fit_e0s
    from cartinv.runtime.training.fit import force_scale

    frames = read_frames(DATA / f"{molecule}.extxyz.xz", index=f":{n_structures}")
    elements = sorted({s for f in frames for s in f.symbols})
    structs = featurize(frames, elements, cutoff, dtype)
    neighbours = sum(s.rij.shape[0] for s in structs) / sum(s.n_atoms for s in structs)
    return collate(structs), elements, fit_e0s(frames, elements), force_scale(frames), neighbours


def time_step(model, predict_fn, batch, repeats: int, warm_up: int = 2) -> list[float]:
    """Seconds of ``repeats`` forward + force + loss + backward steps, after ``warm_up`` untimed ones."""
    from cartinv.runtime.training import TrainConfig
    from cartinv.runtime.training.fit import _losses

    config = TrainConfig()
    model.train()
    times = []
    for k in range(repeats + warm_up):
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        _losses(model, batch, config, predict_fn, training=True).backward()
        if k >= warm_up:
            times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--molecule", default="toluene")
    p.add_argument("--structures", type=int, default=8, help="structures per batch (the benchmark's batch size)")
    p.add_argument("--models", nargs="+", default=["cartinv_lmax3_deg4", "hipnn_ts", "mace"],
                   choices=list(MODELS))
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    p.add_argument("--cutoff", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds of the cartinv forms")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from cartinv.runtime.models import pair_contraction

    dtype = getattr(torch, args.dtype)
    batch, elements, e0s, scale, neighbours = batch_of(args.molecule, args.structures, args.cutoff, dtype)
    rows = []
    for name in args.models:
        kind, options = MODELS[name]
        missing = available(kind)
        if missing:
            print(f"{name}: skipped ({missing})")
            continue
        model, predict_fn = chem_models.build(kind, elements, e0s, scale, args.cutoff, dtype=dtype, seed=0,
                                              avg_neighbours=neighbours, **options)
        # cartinv twice: the padded-bmm contraction (the default on CPUs) and the per-pair one (forced by a zero
        # padding bound), so the table shows what the grouped form gains
        forms = [("grouped", None), ("per_pair", 0.0)] if kind == "cartinv" else [("", None)]
        rounds = max(1, args.rounds) if len(forms) > 1 else 1
        per_round = max(1, -(-args.repeats // rounds))
        times = {form: [] for form, _ in forms}
        for _ in range(rounds):
            for form, bound in forms:
                saved = pair_contraction.MAX_PADDING
                if bound is not None:
                    pair_contraction.MAX_PADDING = bound
                try:
                    times[form] += time_step(model, predict_fn, batch, per_round)
                finally:
                    pair_contraction.MAX_PADDING = saved
        for form, _ in forms:
            rows.append({"model": name + (f" ({form})" if form else ""), "params": chem_models.n_parameters(model),
                         "steps": len(times[form]), "ms": 1e3 * statistics.median(times[form]),
                         "ms_min": 1e3 * min(times[form])})
    n_atoms = int(batch.n_atoms.sum())
    print(f"# {args.molecule}: {args.structures} structures, {n_atoms} atoms, {batch.rij.shape[0]} pairs, "
          f"{args.dtype}, {args.threads} thread(s); median (min) of the timed steps")
    base = rows[0]["ms"] if rows else float("nan")
    print(f"{'model':34s} {'params':>8s} {'steps':>6s} {'ms/step':>9s} {'min':>8s} {'x first':>8s} {'µs/atom':>8s}")
    for r in rows:
        print(f"{r['model']:34s} {r['params']:8d} {r['steps']:6d} {r['ms']:9.2f} {r['ms_min']:8.2f} "
              f"{r['ms'] / base:8.2f} {1e3 * r['ms'] / n_atoms:8.1f}")
    return rows


if __name__ == "__main__":
    keep_freed_memory()  # as benchmarks/chemistry.py does for its training runs
    main()
