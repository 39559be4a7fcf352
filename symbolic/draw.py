"""Render a contraction multigraph as a standalone SVG (no plotting dependency), readable at any degree.

Vertices sit on a circle whose radius grows with their number, so neighbouring vertices never overlap; the
canvas is sized to the graph and to the title, which is wrapped at factor boundaries and never clipped. Each
vertex is labelled by its block (T{l}, with the channel when there are several). An edge of multiplicity k is
drawn as k arcs bent symmetrically about the chord, one per contracted index, with "×k" at its middle. The
layout is a pure function of the graph: the same graph always gives the same bytes.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

from .naming import block_name

_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
NODE_RADIUS = 17.0
NODE_GAP = 14.0  # least free space between two vertex circles
TITLE_SIZE = 13
TITLE_CHAR_WIDTH = 0.62 * TITLE_SIZE  # a generous average advance of sans-serif glyphs at that size
TITLE_LINE = 17
TITLE_MAX_CHARS = 64
MARGIN = 24.0


def wrap_title(title: str, width: int = TITLE_MAX_CHARS) -> list[str]:
    """The title split at spaces into lines of at most `width` characters (a longer word keeps its own line)."""
    lines: list[str] = []
    for word in title.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def title_width(line: str) -> float:
    """Width in px that a title line may take at TITLE_SIZE (an upper estimate)."""
    return len(line) * TITLE_CHAR_WIDTH


def layout(n: int) -> tuple[float, list[tuple[float, float]]]:
    """(radius, unit-free positions relative to the centre) of n vertices on a circle, first at the top."""
    if n == 1:
        return 0.0, [(0.0, 0.0)]
    radius = max(60.0, (2 * NODE_RADIUS + NODE_GAP + 1.0) / (2 * math.sin(math.pi / n)))  # +1: rounding
    return radius, [(radius * math.cos(2 * math.pi * i / n - math.pi / 2),
                     radius * math.sin(2 * math.pi * i / n - math.pi / 2)) for i in range(n)]


def graph_svg(orders, channels, edges, title: str = "", multi_channel: bool | None = None) -> str:
    """SVG text for a multigraph given by vertex orders, channels and [u, v, multiplicity] edges."""
    n = len(orders)
    radius, rel = layout(n)
    max_k = max((k for _, _, k in edges), default=1)
    bend_room = 12.0 * max_k  # arcs bend out of the circle by at most about this much
    half = radius + NODE_RADIUS + bend_room + MARGIN
    lines = wrap_title(title)
    head = TITLE_LINE * len(lines) + 10
    width = max(2 * half, max(title_width(line) for line in lines) + 2 * MARGIN)
    height = 2 * half + head
    cx, cy = width / 2, head + half
    pos = [(cx + x, cy + y) for x, y in rel]
    if multi_channel is None:
        multi_channel = any(c for c in channels)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}">',
        '<rect width="100%" height="100%" fill="white"/>',
    ]
    for k, line in enumerate(lines):
        parts.append(f'<text class="title" x="{cx:.1f}" y="{TITLE_LINE * (k + 1):.1f}" font-family="sans-serif" '
                     f'font-size="{TITLE_SIZE}" text-anchor="middle">{escape(line)}</text>')
    for u, v, k in edges:
        (x1, y1), (x2, y2) = pos[u], pos[v]
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        dx, dy = x2 - x1, y2 - y1
        length = math.hypot(dx, dy) or 1.0
        nx_, ny_ = -dy / length, dx / length
        for j in range(k):
            bend = (j - (k - 1) / 2) * 24.0
            qx, qy = mx + nx_ * bend, my + ny_ * bend
            parts.append(f'<path d="M{x1:.1f},{y1:.1f} Q{qx:.1f},{qy:.1f} {x2:.1f},{y2:.1f}" fill="none" '
                         f'stroke="#333" stroke-width="1.6"/>')
        if k > 1:  # the label goes on the side of the arcs away from the centre of the drawing
            side = 1.0 if (mx - cx) * nx_ + (my - cy) * ny_ >= 0 else -1.0
            offset = side * (k * 6.0 + 8.0)
            lx, ly = mx + nx_ * offset, my + ny_ * offset
            parts.append(f'<text class="multiplicity" x="{lx:.1f}" y="{ly + 4:.1f}" font-family="sans-serif" '
                         f'font-size="11" fill="#a00" text-anchor="middle">\u00d7{k}</text>')
    for (x, y), l, c in zip(pos, orders, channels):
        colour = _COLOURS[l % len(_COLOURS)]
        label = block_name((c, l), 2 if multi_channel else 1)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{NODE_RADIUS:.0f}" fill="{colour}" stroke="#222"/>')
        parts.append(f'<text x="{x:.1f}" y="{y + 4:.1f}" font-family="sans-serif" font-size="11" fill="white" '
                     f'text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
