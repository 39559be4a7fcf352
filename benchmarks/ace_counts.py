"""ACE counts for the README: full / linearly independent / functionally independent / generators / bound, single
species.

For every ν ≤ 4, n_max ≤ 4, l_max ≤ 4 it runs the pruning of symbolic/ace.py and checks, independently of the
greedy selection, that the functional count equals the Jacobian rank of the *whole* full basis (all B functions,
linear drops included, at a fresh random point mod both primes) and never exceeds the bound, and that the linear
count equals the dimension of the invariant polynomials predicted by SO(3) characters (ace.linear_dimension).
It also derives and validates the largest Basis (ν 4, n 4, l 4), twice, and checks that both serialise
byte-identically (the slow counterpart of tests/test_ace.py::test_largest_table_cell, which is marked slow).
The generators are the minimal polynomial generators of the same invariant algebra (symbolic/generators.py, the
blocks T_{n,l} of ACE's A_{nlm}) up to degree ν: their products span every invariant polynomial, so a linear model
on those products has the full ACE span; the script checks that their span equals the linear count.

Run: python benchmarks/ace_counts.py [--numax 4 --nmax 4 --lmax 4] [--markdown]
"""

from __future__ import annotations

import argparse
import time

from cartinv.symbolic import ace
from cartinv.symbolic.basisfile import loads
from cartinv.symbolic.generators import find_generators


def cell(nu: int, nmax: int, lmax: int) -> dict:
    t0 = time.perf_counter()
    sel = ace.select_ace(nu, nmax, lmax)
    counts = sel.counts()
    full_rank = ace.full_jacobian_rank(sel)
    if full_rank != counts["functional"]:
        raise SystemExit(f"nu {nu} n {nmax} l {lmax}: full-basis Jacobian rank {full_rank} != kept "
                         f"{counts['functional']}")
    predicted = ace.linear_dimension(nu, nmax, lmax)
    if predicted != counts["linear"]:
        raise SystemExit(f"nu {nu} n {nmax} l {lmax}: linear count {counts['linear']} != {predicted} from SO(3) "
                         f"characters")
    if counts["functional"] > sel.bound:
        raise SystemExit(f"nu {nu} n {nmax} l {lmax}: {counts['functional']} above the bound {sel.bound}")
    return {**counts, "bound": sel.bound, "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--numax", type=int, default=4)
    ap.add_argument("--nmax", type=int, default=4)
    ap.add_argument("--lmax", type=int, default=4)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    args = ap.parse_args()
    t_all = time.perf_counter()
    rows = []
    for nmax in range(1, args.nmax + 1):
        for lmax in range(0, args.lmax + 1):
            cells = [cell(nu, nmax, lmax) for nu in range(1, args.numax + 1)]
            t0 = time.perf_counter()
            gens = find_generators(tuple((n, l) for n in range(nmax) for l in range(lmax + 1)), args.numax)
            if gens.span.dimension != cells[-1]["linear"]:
                raise SystemExit(f"n {nmax} l {lmax}: the generators span {gens.span.dimension}, the linearly "
                                 f"independent ACE functions {cells[-1]['linear']}")
            for nu, c in zip(range(1, args.numax + 1), cells):
                c["generators"] = sum(g.degree <= nu for g in gens.generators)
            cells[-1]["seconds"] += time.perf_counter() - t0
            rows.append((nmax, lmax, cells))
    nus = range(1, args.numax + 1)
    if args.markdown:
        print("| n_max | l_max | bound | " + " | ".join(f"ν ≤ {nu}: full / lin / fun / gen" for nu in nus) + " |")
        print("|---:|---:|---:|" + "---:|" * len(nus))
        for nmax, lmax, cells in rows:
            body = " | ".join(f"{c['full']}/{c['linear']}/{c['functional']}/{c['generators']}" for c in cells)
            print(f"| {nmax} | {lmax} | {cells[0]['bound']} | {body} |")
    else:
        print(f"{'n':>2} {'l':>2} {'bound':>5} "
              + " ".join(f"{'nu<=' + str(nu) + ' full/lin/fun/gen':>30}" for nu in nus) + f" {'seconds':>8}")
        for nmax, lmax, cells in rows:
            body = " ".join(f"{c['full']:>9}/{c['linear']:>6}/{c['functional']:>6}/{c['generators']:>5}  "
                            for c in cells)
            print(f"{nmax:>2} {lmax:>2} {cells[0]['bound']:>5} {body} {sum(c['seconds'] for c in cells):>8.2f}")
    print(f"table: {time.perf_counter() - t_all:.1f} s; every linear count equals the dimension from SO(3) characters "
          f"and the span of the generators' products; every functional count equals the Jacobian rank of the full "
          f"basis and is at most the bound")

    t0 = time.perf_counter()
    first = ace.derive_ace_basis(args.numax, args.nmax, args.lmax)
    dt = time.perf_counter() - t0
    second = ace.derive_ace_basis(args.numax, args.nmax, args.lmax)
    loads(first.to_json())
    if first.to_json() != second.to_json():
        raise SystemExit("two derivations of the same ACE Basis serialise differently")
    print(f"derive_ace_basis({args.numax}, {args.nmax}, {args.lmax}): {dt:.1f} s, {len(first.to_json()):,} bytes, "
          f"validated, byte-identical on a second run")
    print(ace.format_counts(first))


if __name__ == "__main__":
    main()
