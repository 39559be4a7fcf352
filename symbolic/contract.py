"""Pairwise execution of a full contraction, shared by the exact (modular, rational) evaluators.

A contraction is a list of operands with einsum subscripts; it is executed as a sequence of pairwise
contractions (greedy: always the pair whose result has the fewest open indices), so each step can be
reduced (mod p) before the next, and no intermediate grows beyond what the pair needs.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence


def pairwise_plan(subscripts: Sequence[str], output: str = "") -> list[tuple[int, int, str]]:
    """Greedy pairwise order: steps (i, j, result_subscript) on a working list (i < j; results appended)."""
    work = list(subscripts)
    steps = []
    while len(work) > 1:
        best = None
        for i in range(len(work)):
            for j in range(i + 1, len(work)):
                res = _result(work, i, j, output)
                shared = len(set(work[i]) & set(work[j]))
                key = (len(res), -shared, i, j)
                if best is None or key < best[0]:
                    best = (key, i, j, res)
        _, i, j, res = best
        steps.append((i, j, res))
        work = [s for k, s in enumerate(work) if k not in (i, j)] + [res]
    if work and set(work[0]) != set(output):
        steps.append((0, -1, output))  # final reduction of a lone operand to the output indices
    return steps


def _result(work: list[str], i: int, j: int, output: str) -> str:
    """Indices of the product of operands i and j that are still needed (by the output or another operand)."""
    others = Counter(ch for k, s in enumerate(work) if k not in (i, j) for ch in s)
    keep = set(output) | set(others)
    seen = []
    for ch in work[i] + work[j]:
        if ch in keep and ch not in seen:
            seen.append(ch)
    return "".join(seen)


def execute(operands: list, subscripts: Sequence[str], output: str, pair: Callable, single: Callable):
    """Run the plan: pair(A, sa, B, sb, out) contracts two operands, single(A, sa, out) reduces one."""
    work = list(zip(operands, subscripts))
    for i, j, res in pairwise_plan(subscripts, output):
        if j < 0:
            a, sa = work[0]
            work = [(single(a, sa, res), res)]
            continue
        (a, sa), (b, sb) = work[i], work[j]
        work = [w for k, w in enumerate(work) if k not in (i, j)] + [(pair(a, sa, b, sb, res), res)]
    a, sa = work[0]
    if sa != output:
        a = single(a, sa, output)
    return a
