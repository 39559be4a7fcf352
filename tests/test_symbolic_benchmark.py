"""benchmarks/symbolic.py --against: the A/B timing runs both trees and compares their Basis files byte for byte."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_against_a_commit_times_both_trees_and_compares_the_files():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "symbolic.py"), "--against", "HEAD", "--lmax", "2",
                        "--repeats", "1"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    row = r.stdout.splitlines()[-1].split()
    assert row[0] == "2" and float(row[1]) > 0 and float(row[2]) > 0 and row[-1] == "identical", r.stdout
    worktrees = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True).stdout
    assert "cartinv-ab-" not in worktrees  # the temporary worktree is gone
