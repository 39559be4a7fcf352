"""benchmarks/kernels.py and its MACE peer: every method runs side by side and the table is complete."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch

from benchmarks import kernels


def test_table_has_every_method_and_agreement(capsys, monkeypatch):
    monkeypatch.setattr(kernels, "copy_bandwidth", lambda device: 1e10)  # the 1 GiB copy is not the point here
    monkeypatch.setattr(kernels, "matmul_peak", lambda dtype, device: 1e10)
    methods = ["cartinv-cpu", "cartinv", "naive"]
    assert kernels.main(["--atoms", "40", "--channels", "4", "--repeats", "1", "--min-time", "0", "--dtypes", "float64",
                         "--no-memory", "--methods", *methods]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if re.match(r"\s*40\s", line)]
    labels = [row[3] for row in rows]
    assert set(labels) >= {"cartinv", "naive"}
    for row in rows:
        assert float(row[-1]) < 1e-12, row  # every method agrees with the first column by column
    assert re.search(r"# roofline 40 atoms float64: .*forward \+ backward moves at least [0-9.]+ MiB", out)


def test_step_bytes_counts_every_pass_over_inputs_outputs_and_moments():
    """5 pairs, 2 groups, 3 atoms, float64: r, w and dr, dw (3 passes each), the centres read twice, the moments
    [3, 2, 16] and the invariants [3, 2, 13] written once and read once."""
    r, w = torch.zeros(5, 3, dtype=torch.float64), torch.zeros(5, 2, dtype=torch.float64)
    centers = torch.zeros(5, dtype=torch.int64)
    expected = 3 * 120 + 3 * 80 + 2 * 40 + 2 * (3 * 2 * 16 * 8) + 2 * (3 * 2 * 13 * 8)
    assert kernels.step_bytes((r, centers, w, 3), 13, 16) == expected == 3464


def test_time_call_repeats_fast_calls_until_min_time_and_no_further_than_max_repeats():
    calls = []

    def fn(r, centers, w, n_atoms):
        calls.append(n_atoms)
        return r.sum()

    inputs = (torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64), torch.zeros(2, 1), 1)
    cpu = torch.device("cpu")
    best = kernels.time_call(fn, inputs, None, False, 2, cpu, min_time=0.0)
    assert len(calls) == 1 + 2 and best >= 0  # warm-up and the required calls only
    calls.clear()
    kernels.time_call(fn, inputs, None, False, 2, cpu, min_time=3600.0, max_repeats=7)
    assert len(calls) == 1 + 7  # under min_time throughout: stops at max_repeats
    calls.clear()
    kernels.time_call(fn, inputs, None, False, 4, cpu, min_time=3600.0, max_repeats=2)
    assert len(calls) == 1 + 4  # repeats is a floor, whatever max_repeats says


@pytest.mark.parametrize("collect, collections", [("once", 1), ("each", 1 + 3)])
def test_time_call_collects_garbage_once_or_before_each_call_and_restores_the_collector(monkeypatch, collect,
                                                                                         collections):
    seen = []
    monkeypatch.setattr(kernels.gc, "collect", lambda: seen.append("collect"))

    def fn(r, centers, w, n_atoms):
        seen.append("on" if kernels.gc.isenabled() else "off")
        return r.sum()

    inputs = (torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64), torch.zeros(2, 1), 1)
    assert kernels.gc.isenabled()
    kernels.time_call(fn, inputs, None, False, 3, torch.device("cpu"), collect=collect)
    assert kernels.gc.isenabled()
    assert seen.count("collect") == collections
    timed = seen[seen.index("collect"):]  # after the warm-up
    assert [s for s in timed if s != "collect"] == (["off"] * 3 if collect == "once" else ["on"] * 3)
    with pytest.raises(ValueError, match="collect"):
        kernels.time_call(fn, inputs, None, False, 1, torch.device("cpu"), collect="never")


def test_thread_efficiency_alternates_one_and_n_threads_and_restores_the_count():
    seen = []

    def fn(r, centers, w, n_atoms):
        seen.append(torch.get_num_threads())
        return (r * w).sum(dim=1, keepdim=True)

    r, w = torch.ones(2, 3, requires_grad=True), torch.ones(2, 3, requires_grad=True)
    inputs = (r, torch.zeros(2, dtype=torch.int64), w, 1)
    before = torch.get_num_threads()
    pairs, eff = kernels.thread_efficiency(fn, inputs, torch.ones(2, 1), 2, 3, 1, torch.device("cpu"), min_time=0.0)
    assert torch.get_num_threads() == before
    assert len(pairs) == 3 and eff > 0
    assert seen == [1, 1, 2, 2] * 3  # per round: warm-up and one timed call on one thread, then on two


def test_efficiency_mode_prints_a_row_per_size_and_dtype(capsys):
    before = torch.get_num_threads()
    try:
        assert kernels.main(["--atoms", "30", "40", "--channels", "4", "--dtypes", "float64", "--threads", "2",
                             "--efficiency", "2", "--repeats", "1", "--min-time", "0"]) == 0
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if re.match(r"\s*(30|40)\s+float64", line)]
    assert [row[0] for row in rows] == ["30", "40"]
    for row in rows:
        assert float(row[2]) > 0 and float(row[3]) > 0 and row[4].endswith("%") and len(row) == 5 + 2
    with pytest.raises(SystemExit, match="--threads 2"):
        kernels.main(["--atoms", "30", "--threads", "1", "--efficiency", "1"])
    torch.set_num_threads(before)


@pytest.mark.skipif(importlib.util.find_spec("mace") is None, reason="mace-torch not installed")
def test_mace_peer_is_invariant_and_differentiable():
    from benchmarks.mace_peer import MaceInvariants

    torch.manual_seed(0)
    n_atoms, n_pairs, channels = 5, 40, 4
    centers = torch.randint(0, n_atoms, (n_pairs,))
    r = torch.randn(n_pairs, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(n_pairs, channels, dtype=torch.float64)
    peer = MaceInvariants(channels, torch.float64)
    out = peer(r, centers, w, n_atoms)
    assert out.shape == (n_atoms, channels, 1)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    q = q * torch.sign(torch.det(q))  # a proper rotation (MACE's odd-l parity makes 0e outputs O(3) invariant too)
    assert torch.allclose(peer(r.detach() @ q.T, centers, w, n_atoms), out.detach(), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(out, torch.zeros_like(out))
    (grad,) = torch.autograd.grad(out.sum(), r)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0


def test_missing_hippynn_leaves_its_rows_out(capsys, monkeypatch):
    """Where hippynn does not import (a GPU machine without the wheel, say) the benchmark still runs the others:
    it printed a traceback there before."""
    from benchmarks import peers

    def missing():
        raise ImportError("hippynn is required for the hippynn peer (benchmarks/peers.py): pip install hippynn")

    monkeypatch.setattr(peers, "_import_hippynn", missing)
    monkeypatch.setattr(kernels, "copy_bandwidth", lambda device: 1e10)
    monkeypatch.setattr(kernels, "matmul_peak", lambda dtype, device: 1e10)
    assert kernels.main(["--atoms", "40", "--channels", "4", "--repeats", "1", "--min-time", "0", "--dtypes", "float64",
                         "--no-memory", "--methods", "cartinv", "hippynn"]) == 0
    out = capsys.readouterr().out
    assert "# hippynn peer unavailable (hippynn is required" in out
    labels = [line.split()[3] for line in out.splitlines() if re.match(r"\s*40\s", line)]
    assert "cartinv" in labels and "hippynn" not in labels


def test_profile_step_prints_the_host_table(capsys):
    from benchmarks import profile_step

    assert profile_step.main(["--atoms", "30", "--channels", "4", "--steps", "1", "--rows", "5",
                              "--dtype", "float64", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "# by host self time" in out and "Self CPU time total" in out
    assert re.search(r"backend (cpu|torch) on cpu", out)
