"""Drawings stay readable at every degree: no two vertices overlap, the title fits, everything is on the canvas."""

import itertools
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cartinv.symbolic import draw
from cartinv.symbolic.basisfile import load

ROOT = Path(__file__).resolve().parent.parent / "generated"
NS = "{http://www.w3.org/2000/svg}"


def _entries():
    for folder in sorted(ROOT.iterdir()):
        path = folder / f"{folder.name}.json"
        if path.is_file():
            basis = load(path)
            for inv in basis.invariants + basis.dropped:
                yield pytest.param(basis, inv, id=f"{folder.name}-{inv['id']}")


def check_readable(svg: str, title: str, orders, edges) -> None:
    root = ET.fromstring(svg)
    width, height = float(root.get("width")), float(root.get("height"))
    circles = [(float(c.get("cx")), float(c.get("cy")), float(c.get("r"))) for c in root.iter(f"{NS}circle")]
    assert len(circles) == len(orders)
    for (x1, y1, r1), (x2, y2, r2) in itertools.combinations(circles, 2):
        assert math.hypot(x1 - x2, y1 - y2) >= r1 + r2 + draw.NODE_GAP - 1e-6, "two vertices overlap"
    for x, y, r in circles:
        assert r <= x <= width - r and r <= y <= height - r, "a vertex leaves the canvas"
    titles = [t for t in root.iter(f"{NS}text") if t.get("class") == "title"]
    assert " ".join(t.text or "" for t in titles) == title
    for t in titles:
        x, w = float(t.get("x")), draw.title_width(t.text or "")
        assert x - w / 2 >= 0 and x + w / 2 <= width, "the title is clipped"
        assert float(t.get("y")) <= min(y - r for _, y, r in circles), "the title overlaps the graph"
    arcs = list(root.iter(f"{NS}path"))
    assert len(arcs) == sum(k for _, _, k in edges)  # one arc per contracted index
    labels = [t.text for t in root.iter(f"{NS}text") if t.get("class") == "multiplicity"]
    assert sorted(labels) == sorted(f"\u00d7{k}" for _, _, k in edges if k > 1)


@pytest.mark.parametrize("basis, inv", list(_entries()))
def test_every_checked_in_graph_is_drawn_readably(basis, inv):
    title = f"{inv['id']}: {inv['index_notation']}"
    svg = draw.graph_svg(inv["orders"], inv["channels"], inv["edges"], title, basis.channels > 1)
    check_readable(svg, title, inv["orders"], inv["edges"])


def test_large_and_multichannel_graphs():
    # degree 12 ring of T4 with double edges, channels labelled; a long title wraps
    n = 12
    edges = [[i, (i + 1) % n, 2] for i in range(n)]
    edges = [[min(u, v), max(u, v), k] for u, v, k in edges]
    title = "X: " + " ".join(f"T4c{i % 2}[abcd]" for i in range(n))
    svg = draw.graph_svg([4] * n, [i % 2 for i in range(n)], edges, title, True)
    check_readable(svg, title, [4] * n, edges)
    assert "T4c1" in svg and len(draw.wrap_title(title)) > 1
    assert draw.graph_svg([4] * n, [0] * n, edges, title) == draw.graph_svg([4] * n, [0] * n, edges, title)


def test_wrap_title_keeps_every_word():
    assert draw.wrap_title("a b c", 3) == ["a b", "c"]
    assert draw.wrap_title("x" * 80, 10) == ["x" * 80]
