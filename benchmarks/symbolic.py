"""Time the symbolic pipeline on the issue's three reference requests and print candidates, kept, seconds.

Aims on a 2-core machine: (lmax 3, degree 4) < 2 s, (lmax 4, complete) < 30 s, (lmax 5, complete) < 5 min.
Also exercises the flexible search for lmax 3 (which needs a degree-10 pure-T3 invariant).
Run: python benchmarks/symbolic.py [--skip-large]
"""

from __future__ import annotations

import argparse
import time

from cartinv.symbolic.select import BasisRequest, derive_basis

CASES = [
    ("lmax 3, degree 4", BasisRequest(orders=(0, 1, 2, 3), degree=4), 2.0),
    ("lmax 4, complete", BasisRequest(orders=(0, 1, 2, 3, 4), complete=True), 30.0),
    ("lmax 5, complete", BasisRequest(orders=(0, 1, 2, 3, 4, 5), complete=True), 300.0),
    ("lmax 3, flexible", BasisRequest(orders=(0, 1, 2, 3), flexible=True), None),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-large", action="store_true", help="skip lmax 5")
    args = ap.parse_args()
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
