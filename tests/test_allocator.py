"""cartinv/allocator.py: freed training temporaries are reused instead of faulted in again."""

import subprocess
import sys
import textwrap

import pytest

from cartinv import allocator, cli

# a toy force-training step: temporaries of a few MB ([pairs, radial, channels], float64), made and freed
STEP = textwrap.dedent("""
    import resource, sys
    import torch
    if sys.argv[1] == "keep":
        from cartinv.allocator import keep_freed_memory
        assert keep_freed_memory()
    def step():
        a = torch.randn(1552, 8, 32, dtype=torch.float64)
        b = a * a
        c = b * a
        return float((c * b).sum(1).sum()) + float(torch.randn(400000, dtype=torch.float64)[0])
    for _ in range(5):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", STEP, mode], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_stops_the_page_faults_of_repeated_temporaries():
    default, kept = _faults("default"), _faults("keep")
    assert default > 5000  # glibc's defaults hand the memory back and fault it in again (57,000 here)
    assert kept * 10 < default


def test_cli_train_keeps_freed_memory_before_training(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    code = cli.main(["train", str(tmp_path / "missing.extxyz"), "-o", str(tmp_path / "out"), "--quiet"])
    assert code == 2  # the missing file is reported as usual
    assert calls == [1]
