"""Time the symbolic pipeline on the issue's three reference requests and print candidates, kept, seconds.

Aims on a 2-core machine: (lmax 3, degree 4) < 2 s, (lmax 4, complete) < 30 s, (lmax 5, complete) < 5 min.
Also exercises the flexible search for lmax 3 (which needs a degree-10 pure-T3 invariant).
Run: python benchmarks/symbolic.py [--skip-large]

``--against REV --lmax 5 6 7`` times ``cartinv basis --lmax L --complete`` of this checkout against the commit REV
(checked out in a temporary git worktree), alternating the two in fresh processes and counting CPU seconds, so a
busy machine slows both alike; it prints the best of ``--repeats`` runs, the ratio, and whether the Basis files are
byte-identical. The speed-up of issue 14 item 5 is measured against 4c99d97^ (the tree before its first change):
    python benchmarks/symbolic.py --against 4c99d97^ --lmax 5 6 7
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from cartinv.symbolic.select import BasisRequest, derive_basis

ROOT = Path(__file__).resolve().parents[1]

CASES = [
    ("lmax 3, degree 4", BasisRequest(orders=(0, 1, 2, 3), degree=4), 2.0),
    ("lmax 4, complete", BasisRequest(orders=(0, 1, 2, 3, 4), complete=True), 30.0),
    ("lmax 5, complete", BasisRequest(orders=(0, 1, 2, 3, 4, 5), complete=True), 300.0),
    ("lmax 3, flexible", BasisRequest(orders=(0, 1, 2, 3), flexible=True), None),
]


def _importable_tree(source: Path, into: Path) -> Path:
    """A folder that imports as ``cartinv`` from the checkout ``source`` (its pyproject's package-dir mapping, as
    links), to put first on PYTHONPATH."""
    mapping = tomllib.loads((source / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(mapping.items()):
        target = into.joinpath(*package.split("."))
        if "." not in package:  # a real folder of links, so that the subpackages' links land here, not in source
            target.mkdir(parents=True)
            for entry in (source / folder).iterdir():
                if not (target / entry.name).exists():
                    (target / entry.name).symlink_to(entry)
        elif not target.exists():
            target.symlink_to(source / folder, target_is_directory=True)
    return into


def _cpu_seconds(pythonpath: str, lmax: int, out: Path) -> float:
    """CPU seconds of one ``cartinv basis --lmax L --complete`` in a fresh process (imports included)."""
    env = dict(os.environ, PYTHONPATH=pythonpath, OMP_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "cartinv.cli", "basis", "--lmax", str(lmax), "--complete", "-q",
                    "-o", str(out)], env=env, cwd=out.parent, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def compare_with(rev: str, lmaxes: list[int], repeats: int) -> None:
    """Best-of-``repeats`` CPU seconds of this checkout and of commit ``rev``, alternating, per lmax."""
    with tempfile.TemporaryDirectory(prefix="cartinv-ab-") as tmp:
        tmp = Path(tmp)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tmp / "old"), rev], check=True,
                       capture_output=True)
        try:
            trees = {rev: str(_importable_tree(tmp / "old", tmp / "old_pkg")),
                     "this checkout": str(_importable_tree(ROOT, tmp / "new_pkg"))}
            print(f"{'lmax':>4} {rev + ' s':>14} {'this checkout s':>16} {'speed-up':>9}  Basis files")
            for lmax in lmaxes:
                best = {k: float("inf") for k in trees}
                for _ in range(repeats):
                    for k, path in trees.items():
                        best[k] = min(best[k], _cpu_seconds(path, lmax, tmp / f"{k.split()[0]}_{lmax}.json"))
                same = (tmp / f"{rev.split()[0]}_{lmax}.json").read_bytes() == (tmp / f"this_{lmax}.json").read_bytes()
                print(f"{lmax:>4} {best[rev]:>14.2f} {best['this checkout']:>16.2f} "
                      f"{best[rev] / best['this checkout']:>8.2f}x  {'identical' if same else 'DIFFER'}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "old")],
                           capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-large", action="store_true", help="skip lmax 5")
    ap.add_argument("--against", metavar="REV", help="compare CPU time with this git commit instead")
    ap.add_argument("--lmax", type=int, nargs="+", default=[5, 6], help="orders for --against (complete bases)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per tree and lmax for --against (best is kept)")
    args = ap.parse_args()
    if args.against:
        compare_with(args.against, args.lmax, args.repeats)
        return
    print(f"{'request':<20} {'candidates':>10} {'kept':>5} {'bound':>5} {'deg':>4} {'seconds':>8} {'aim':>7}  ratio")
    for label, req, aim in CASES:
        if args.skip_large and "lmax 5" in label:
            continue
        t0 = time.perf_counter()
        b = derive_basis(req)
        dt = time.perf_counter() - t0
        s = b.data["stats"]
        aim_txt = f"{aim:.0f}s" if aim else "-"
        ratio = f"{dt / aim:.3f} of aim" if aim else ""
        print(f"{label:<20} {s['candidates']:>10} {s['kept']:>5} {b.bound:>5} {str(b.data['degree_needed']):>4} "
              f"{dt:>8.2f} {aim_txt:>7}  {ratio}")


if __name__ == "__main__":
    main()
