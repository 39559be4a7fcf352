"""Readable views of a Basis: a text table, LaTeX, and the list of dropped candidates with reasons."""

from __future__ import annotations

from .basisfile import Basis
from .naming import block_name

GROUP_NAMES = {"o3": "O(3)", "so3": "SO(3)"}


def _summary(b: Basis) -> list[str]:
    d = b.data
    req = d["request"]
    status = "complete" if d["complete"] else "INCOMPLETE"
    lines = [
        f"basis {d['name']}: orders {req['orders']}, channels {req['channels']}, "
        + ("flexible, " if req.get("flexible") else "")
        + ("minimal polynomial generators, " if req.get("generators") else "")
        + (f"complete search (cap {req['max_degree']})" if req.get("complete") or req.get("flexible") else f"degree <= {req['degree']}"),
        f"  {len(d['invariants'])} invariants, rank {d['rank']} of bound {d['bound']} ({status})"
        + (f", degree needed {d['degree_needed']}" if d.get("degree_needed") else ""),
    ]
    stats = d.get("stats", {})
    if stats:
        lines.append(
            f"  candidates {stats.get('candidates')}: dropped {stats.get('reducible', 0)} reducible, "
            f"{stats.get('linear', 0)} linear, {stats.get('algebraic', 0)} algebraic, "
            f"{stats.get('implicit', 0)} implicit, {stats.get('functional', 0)} functional"
        )
    span = span_sentence(b)
    if span:
        lines.append("  " + span)
    lines += ["  " + line for line in chirality_lines(b)]
    return lines


def chirality_lines(b: Basis) -> list[str]:
    """The SO(3) record (symbolic/pseudoscalars.py) in words: the kept pseudoscalars, their squares as O(3)
    contractions, and the strata where no kept pseudoscalar survives (with the candidate that would)."""
    ch = b.data.get("chirality")
    if not ch:
        return []
    notation = {inv["id"]: inv["index_notation"] for inv in b.invariants}
    lines = [f"pseudoscalar {p['id']} = {notation[p['id']]} (changes sign under reflections); {p['square']}"
             for p in ch["pseudoscalars"]]
    strata = ch["strata"]
    lines.append(f"mirror images told apart on {sum(s['separated'] for s in strata)} of {len(strata)} strata")
    for s in strata:
        if not s["separated"]:
            zero = "{" + ", ".join(block_name(tuple(z), b.channels) for z in s["zero"]) + "}"
            lines.append(f"  zero {zero}: " + (f"needs another pseudoscalar, e.g. {s['candidate']}" if s["candidate"]
                                                else f"no pseudoscalar up to degree {b.data['stats'].get('degree_searched')}"))
    return lines


def span_sentence(b: Basis) -> str | None:
    """One line on the recorded span check (symbolic/span.py), or None for files that do not hold one."""
    s = b.data.get("span_check")
    if not s:
        return None
    return (f"span check ({GROUP_NAMES.get(s['group'], s['group'])}): in all {s['multidegrees']} multidegrees up to degree "
            f"{s['max_degree']} that the search listed, the {s['graphs']} contraction graphs span the full "
            f"invariant space (rank {s['rank']} = Molien dimension {s['dimension']})")


def table(b: Basis) -> str:
    lines = _summary(b)
    rows = [("id", "deg", "orders", "contraction", "cost")]
    for inv in b.invariants:
        rows.append((inv["id"], str(inv["degree"]), ",".join(map(str, inv.get("orders", []))),
                     inv.get("index_notation", inv.get("formula", "")[:60]), str(inv.get("cost", ""))))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines.append("")
    for k, r in enumerate(rows):
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if k == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    if b.strata:
        bad = [s for s in b.strata if not s["complete"]]
        lines.append("")
        lines.append(f"  strata: complete on {len(b.strata) - len(bad)} of {len(b.strata)}")
        for s in bad:
            zero = ", ".join(block_name((c, l), b.channels) for c, l in s["zero"])
            lines.append(f"    zero {{{zero}}}: rank {s['rank']} < bound {s['bound']}")
    bd = b.data.get("block_degrees") or []
    if bd:
        lines.append("  degree at which each block alone reaches its bound: " + ", ".join(
            f"{block_name(tuple(e['block']), b.channels)}="
            + (str(e["degree"]) if e["degree"] is not None else f">{b.data['request']['max_degree']}")
            for e in bd))
    return "\n".join(lines) + "\n"


def latex(b: Basis) -> str:
    lines = [
        "% " + line.strip() for line in _summary(b)
    ] + [
        "\\begin{tabular}{llll}",
        "id & degree & contraction & cost \\\\",
        "\\hline",
    ]
    for inv in b.invariants:
        lines.append(f"{inv['id']} & {inv['degree']} & ${inv.get('latex', '')}$ & {inv.get('cost', '')} \\\\")
    lines.append("\\end{tabular}")
    return "\n".join(lines) + "\n"


def explain(b: Basis) -> str:
    lines = _summary(b) + [""]
    for d in b.dropped:
        what = d.get("index_notation") or d.get("formula", "")
        lines.append(f"  {d['id']:>5}  {d['reason']:<10}  {what}")
        if d.get("relation"):
            lines.append(f"         {'':<10}  {d['relation']}")
    if not b.dropped:
        lines.append("  no candidate was dropped")
    return "\n".join(lines) + "\n"
