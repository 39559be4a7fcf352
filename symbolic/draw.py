"""Render a contraction multigraph as a standalone SVG (no plotting dependency).

Vertices sit on a circle, labelled by their block (T{l}, with the channel when there are several); an edge of
multiplicity k is drawn as k arcs bent symmetrically about the chord, so each arc is one contracted index.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]


def graph_svg(orders, channels, edges, title: str = "", size: int = 240) -> str:
    """SVG text for a multigraph given by vertex orders, channels and [u, v, multiplicity] edges."""
    n = len(orders)
    cx = cy = size / 2
    radius = 0 if n == 1 else size * 0.32
    pos = [
        (cx + radius * math.cos(2 * math.pi * i / n - math.pi / 2), cy + 12 + radius * math.sin(2 * math.pi * i / n - math.pi / 2))
        for i in range(n)
    ]
    multi_channel = len(set(channels)) > 1 or any(c for c in channels)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size + 24}" '
        f'viewBox="0 0 {size} {size + 24}">',
        f'<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{cx:.1f}" y="16" font-family="sans-serif" font-size="13" text-anchor="middle">{escape(title)}</text>',
    ]
    for u, v, k in edges:
        (x1, y1), (x2, y2) = pos[u], pos[v]
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        dx, dy = x2 - x1, y2 - y1
        length = math.hypot(dx, dy) or 1.0
        nx_, ny_ = -dy / length, dx / length
        for j in range(k):
            bend = (j - (k - 1) / 2) * 18
            qx, qy = mx + nx_ * bend * 2, my + ny_ * bend * 2
            parts.append(
                f'<path d="M{x1:.1f},{y1:.1f} Q{qx:.1f},{qy:.1f} {x2:.1f},{y2:.1f}" fill="none" '
                f'stroke="#333" stroke-width="1.6"/>'
            )
    for i, ((x, y), l, c) in enumerate(zip(pos, orders, channels)):
        colour = _COLOURS[l % len(_COLOURS)]
        label = f"T{l}" + (f"c{c}" if multi_channel else "")
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="17" fill="{colour}" stroke="#222"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{y + 4:.1f}" font-family="sans-serif" font-size="11" fill="white" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
