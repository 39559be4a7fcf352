"""A self-contained report of a Basis (HTML or Markdown), and a side-by-side comparison of two bases.

The HTML page needs no network: graph drawings are inline SVG (symbolic/draw.py), formulas and relations are
rendered offline with matplotlib's mathtext to inline SVG, and the page holds no URL at all. Every text taken
from the Basis file is escaped for HTML (the file was validated on load; this is the second wall). Relation texts
are read with the formula reader (no eval). The same Basis always gives the same bytes.
"""

from __future__ import annotations

import html
import io
import re
from functools import lru_cache

import sympy as sp

from . import draw
from .basisfile import Basis
from .formulas import FormulaSyntaxError, parse_formula
from .graphs import canonical
from .naming import block_name
from .report import chirality_lines, span_sentence

MAX_RENDERED_TERMS = 12  # longer formulas are shown by their first terms and their term count


# ------------------------------------------------------------------------------------------------- rendering
@lru_cache(maxsize=4096)
def mathtext_svg(tex: str) -> str:
    """`tex` (mathtext, without dollars) as an inline <svg> element with no URL, or '' when mathtext refuses it."""
    import matplotlib
    from matplotlib import mathtext

    buffer = io.BytesIO()
    try:  # a Figure of its own: no pyplot backend is chosen, and the caller's rcParams are restored afterwards
        with matplotlib.rc_context({"svg.hashsalt": "cartinv", "svg.fonttype": "path"}):
            mathtext.math_to_image(f"${tex}$", buffer, format="svg", dpi=100)
    except (ValueError, RuntimeError):
        return ""
    svg = buffer.getvalue().decode("utf-8")
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    return svg.strip()


def formula_tex(text: str, names: list[str]) -> str:
    """LaTeX of a formula text (read without eval), cut to its first MAX_RENDERED_TERMS terms."""
    symbols = {n: sp.Symbol(_tex_name(n)) for n in names}
    expr = parse_formula(text, symbols)
    terms = sp.Add.make_args(expr)
    if len(terms) <= MAX_RENDERED_TERMS:
        return sp.latex(expr, order="lex")
    head = sp.latex(sp.Add(*terms[:MAX_RENDERED_TERMS], evaluate=False), order="none")
    return f"{head} + \\ldots\\ ({len(terms)}\\ terms)"


def _tex_name(name: str) -> str:
    """T3_4 -> T^{(3)}_{4}; T3c1_4 -> T^{(3,1)}_{4}: coordinate c_{l,m} of a block, as a LaTeX symbol name."""
    m = re.fullmatch(r"T(\d+)(?:c(\d+))?_(\d+)", name)
    if not m:
        return name
    l, c, k = m.groups()
    return f"T^{{({l}{',' + c if c else ''})}}_{{{k}}}"


def relation_tex(relation: str, ids: list[str]) -> str | None:
    """LaTeX of 'D5 = 1/2*I3**2' or 'I2*D1 = 3*I1' (read without eval), or None for prose (the functional
    note)."""
    lhs, sep, rhs = relation.partition(" = ")
    if not sep:
        return None
    symbols = {i: sp.Symbol(i) for i in ids}
    try:
        left, right = parse_formula(lhs, symbols), parse_formula(rhs, symbols)
    except FormulaSyntaxError:
        return None
    return f"{sp.latex(left)} = {sp.latex(right)}"


def _math(tex: str) -> str:
    svg = mathtext_svg(tex)
    return f'<span class="math">{svg}</span>' if svg else f"<code>{html.escape(tex)}</code>"


# ------------------------------------------------------------------------------------------------- facts
def reproduce_command(b: Basis) -> str:
    """The command that derives this Basis again."""
    req = b.data["request"]
    if b.kind == "ace":
        return (f"cartinv ace --nu {req['nu']} --nmax {req['nmax']} --lmax {req['lmax']} --species {req['species']} "
                f"-o {b.name}.json")
    parts = ["cartinv basis", "--orders " + ",".join(map(str, req["orders"]))]
    if req.get("flexible"):
        parts.append("--flexible")
    elif req.get("generators"):
        parts.append("--generators")
    elif req.get("complete"):
        parts.append("--complete")
    if req.get("degree") is not None:
        parts.append(f"--degree {req['degree']}")
    if req.get("flexible") or req.get("complete"):
        parts.append(f"--max-degree {req['max_degree']}")
    if req["channels"] > 1:
        parts.append(f"--channels {req['channels']}")
    if req.get("group", "o3") != "o3":
        parts.append(f"--group {req['group']}")
    parts += [f"--prefer '{p}'" for p in req.get("prefer", [])]
    parts.append(f"--name {b.name} -o {b.name}.json")
    return " ".join(parts)


def _zero_label(zero, channels: int) -> str:
    return "{" + ", ".join(block_name(tuple(z), channels) for z in zero) + "}"


def graph_key(entry: dict):
    """The canonical graph of a Basis entry (for matching invariants of two bases), None without a graph."""
    if "edges" not in entry:
        return None
    return canonical(list(zip(entry["channels"], entry["orders"])), [tuple(e) for e in entry["edges"]])


# ------------------------------------------------------------------------------------------------- HTML
_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; vertical-align: middle; text-align: left; }
th { background: #f0f0f0; }
td.ok { background: #d8f0d8; } td.bad { background: #f6d5d5; }
code { font-size: 90%; } .math svg { vertical-align: middle; }
.drawing svg { max-width: 220px; max-height: 220px; width: auto; height: auto; }
.formula { max-width: 48em; overflow-x: auto; }
"""


def _page(title: str, body: list[str]) -> str:
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>", *body,
        "</body>", "</html>",
    ]) + "\n"


def _summary_rows(b: Basis) -> list[str]:
    d = b.data
    state = "complete" if d["complete"] else "incomplete"
    return [
        "<table>",
        f"<tr><th>kind</th><td>{html.escape(b.kind)}</td></tr>",
        f"<tr><th>orders</th><td>{', '.join(map(str, b.orders))}</td></tr>",
        f"<tr><th>channels</th><td>{b.channels}</td></tr>",
        f"<tr><th>rank / bound</th><td class=\"{'ok' if d['complete'] else 'bad'}\">{d['rank']} / {d['bound']} "
        f"({state})</td></tr>",
        f"<tr><th>invariants kept / dropped</th><td>{len(b.invariants)} / {len(b.dropped)}</td></tr>",
        f"<tr><th>degree needed</th><td>{d['degree_needed'] if d['degree_needed'] is not None else '-'}</td></tr>",
        *([f"<tr><th>span check</th><td>{html.escape(span_sentence(b))}</td></tr>"] if span_sentence(b) else []),
        f"<tr><th>content hash (sha256)</th><td><code>{b.content_hash()}</code></td></tr>",
        f"<tr><th>reproduce</th><td><code>{html.escape(reproduce_command(b))}</code></td></tr>",
        "</table>",
    ]


def report_html(b: Basis) -> str:
    """The full report of one Basis as a self-contained HTML page."""
    names = [c["name"] for c in b.coordinates]
    multi = b.channels > 1
    body = [f"<h1>cartinv basis {html.escape(b.name)}</h1>", *_summary_rows(b), "<h2>Invariants</h2>", "<table>",
            "<tr><th>id</th><th>graph</th><th>index notation</th><th>formula</th><th>einsum</th><th>degree</th>"
            "<th>cost</th></tr>"]
    for inv in b.invariants:
        drawing = (draw.graph_svg(inv["orders"], inv["channels"], inv["edges"], inv["id"], multi)
                   .replace(' xmlns="http://www.w3.org/2000/svg"', "") if "edges" in inv else "")
        body.append(
            f"<tr><td>{html.escape(inv['id'])}</td><td class=\"drawing\">{drawing}</td>"
            f"<td>{_math(inv['latex']) if 'latex' in inv else html.escape(inv['index_notation'])}"
            f"<br><code>{html.escape(inv['index_notation'])}</code></td>"
            f"<td><div class=\"formula\">{_math(formula_tex(inv['formula'], names))}</div></td>"
            f"<td><code>{html.escape(inv.get('einsum', ''))}</code></td><td>{inv['degree']}</td>"
            f"<td>{inv.get('cost', '')}</td></tr>")
    body.append("</table>")
    ids = [e["id"] for e in b.invariants + b.dropped]
    body += ["<h2>Dropped candidates</h2>", "<table>",
             "<tr><th>id</th><th>reason</th><th>index notation</th><th>relation</th></tr>"]
    for d in b.dropped:
        rel = d.get("relation") or ""
        tex = relation_tex(rel, ids) if rel else None
        body.append(f"<tr><td>{html.escape(d['id'])}</td><td>{html.escape(d['reason'])}</td>"
                    f"<td><code>{html.escape(d['index_notation'])}</code></td>"
                    f"<td>{_math(tex) if tex else html.escape(rel)}</td></tr>")
    body.append("</table>")
    if b.strata:
        body += ["<h2>Strata</h2>", "<p>Rank of the kept invariants with the listed blocks held at zero, against the "
                 "bound of that stratum.</p>", "<table>", "<tr><th>zero</th><th>rank</th><th>bound</th></tr>"]
        for s in b.strata:
            body.append(f"<tr><td>{html.escape(_zero_label(s['zero'], b.channels))}</td>"
                        f"<td class=\"{'ok' if s['complete'] else 'bad'}\">{s['rank']}</td><td>{s['bound']}</td></tr>")
        body.append("</table>")
    if b.data.get("chirality"):
        body += ["<h2>Chirality (SO(3))</h2>", "<ul>"]
        body += [f"<li>{html.escape(line.strip())}</li>" for line in chirality_lines(b)]
        body.append("</ul>")
    if b.data["block_degrees"]:
        body += ["<h2>Degree at which each block alone is complete</h2>", "<table>",
                 "<tr><th>block</th><th>bound</th><th>degree</th></tr>"]
        for e in b.data["block_degrees"]:
            deg = e["degree"] if e["degree"] is not None else f"&gt; {b.data['request']['max_degree']}"
            body.append(f"<tr><td>{html.escape(block_name(tuple(e['block']), b.channels))}</td><td>{e['bound']}</td>"
                        f"<td>{deg}</td></tr>")
        body.append("</table>")
    return _page(f"cartinv basis {b.name}", body)


def report_markdown(b: Basis) -> str:
    """The report of one Basis as Markdown (formulas as LaTeX between dollars)."""
    d = b.data
    names = [c["name"] for c in b.coordinates]
    ids = [e["id"] for e in b.invariants + b.dropped]
    lines = [f"# cartinv basis {b.name}", "",
             f"- kind {b.kind}; orders {', '.join(map(str, b.orders))}; channels {b.channels}",
             f"- rank {d['rank']} of bound {d['bound']} ({'complete' if d['complete'] else 'incomplete'}); "
             f"{len(b.invariants)} kept, {len(b.dropped)} dropped",
             *([f"- {span_sentence(b)}"] if span_sentence(b) else []),
             f"- content hash `{b.content_hash()}`", f"- reproduce: `{reproduce_command(b)}`", "",
             "## Invariants", "", "| id | index notation | formula | degree | cost |", "| --- | --- | --- | --- | --- |"]
    for inv in b.invariants:
        lines.append(f"| {inv['id']} | `{inv['index_notation']}` | ${formula_tex(inv['formula'], names)}$ | "
                     f"{inv['degree']} | {inv.get('cost', '')} |")
    lines += ["", "## Dropped candidates", "", "| id | reason | index notation | relation |", "| --- | --- | --- | --- |"]
    for e in b.dropped:
        rel = e.get("relation") or ""
        tex = relation_tex(rel, ids) if rel else None
        lines.append(f"| {e['id']} | {e['reason']} | `{e['index_notation']}` | {'$' + tex + '$' if tex else rel} |")
    if b.strata:
        lines += ["", "## Strata", "", "| zero | rank | bound | complete |", "| --- | --- | --- | --- |"]
        lines += [f"| {_zero_label(s['zero'], b.channels)} | {s['rank']} | {s['bound']} | "
                  f"{'yes' if s['complete'] else 'no'} |" for s in b.strata]
    if d.get("chirality"):
        lines += ["", "## Chirality (SO(3))", ""] + [f"- {line.strip()}" for line in chirality_lines(b)]
    return "\n".join(lines) + "\n"


def compare_html(a: Basis, b: Basis) -> str:
    """Two bases side by side: invariants matched as graphs, and the strata ranks of each."""
    keys_a = {graph_key(e): e for e in a.invariants}
    keys_b = {graph_key(e): e for e in b.invariants}
    both = [(keys_a[k], keys_b[k]) for k in keys_a if k is not None and k in keys_b]
    only_a = [e for k, e in keys_a.items() if k is None or k not in keys_b]
    only_b = [e for k, e in keys_b.items() if k is None or k not in keys_a]

    def listing(entries):
        rows = [f"<tr><td>{html.escape(e['id'])}</td><td><code>{html.escape(e['index_notation'])}</code></td></tr>"
                for e in entries]
        return ["<table>", "<tr><th>id</th><th>index notation</th></tr>", *rows, "</table>"] if rows else ["<p>none</p>"]

    an, bn = html.escape(a.name), html.escape(b.name)
    body = [f"<h1>cartinv: {an} against {bn}</h1>", "<table>",
            f"<tr><th></th><th>{an}</th><th>{bn}</th></tr>",
            f"<tr><th>rank / bound</th><td>{a.rank} / {a.bound}</td><td>{b.rank} / {b.bound}</td></tr>",
            f"<tr><th>invariants</th><td>{len(a.invariants)}</td><td>{len(b.invariants)}</td></tr>",
            f"<tr><th>content hash</th><td><code>{a.content_hash()[:16]}</code></td>"
            f"<td><code>{b.content_hash()[:16]}</code></td></tr>", "</table>",
            f"<h2>The same contraction in both ({len(both)})</h2>", "<table>",
            f"<tr><th>{an}</th><th>{bn}</th><th>index notation ({an})</th></tr>",
            *[f"<tr><td>{html.escape(x['id'])}</td><td>{html.escape(y['id'])}</td>"
              f"<td><code>{html.escape(x['index_notation'])}</code></td></tr>" for x, y in both], "</table>",
            f"<h2>Only in {an} ({len(only_a)})</h2>", *listing(only_a),
            f"<h2>Only in {bn} ({len(only_b)})</h2>", *listing(only_b)]
    strata_b = {tuple(map(tuple, s["zero"])): s for s in b.strata}
    if a.strata or b.strata:
        body += ["<h2>Strata</h2>", "<table>", f"<tr><th>zero</th><th>bound</th><th>rank {an}</th><th>rank {bn}</th></tr>"]
        for s in a.strata:
            other = strata_b.get(tuple(map(tuple, s["zero"])))
            rank_b = "-" if other is None else other["rank"]
            ok_b = other is not None and other["complete"]
            body.append(f"<tr><td>{html.escape(_zero_label(s['zero'], a.channels))}</td><td>{s['bound']}</td>"
                        f"<td class=\"{'ok' if s['complete'] else 'bad'}\">{s['rank']}</td>"
                        f"<td class=\"{'ok' if ok_b else 'bad'}\">{rank_b}</td></tr>")
        body.append("</table>")
    return _page(f"cartinv: {a.name} against {b.name}", body)
