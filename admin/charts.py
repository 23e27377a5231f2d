"""Bar charts drawn on the server as SVG: no script, nothing to load, escaped labels."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

WIDTH, HEIGHT, PAD = 640, 140, 18


def bars(
    points: list[dict[str, Any]],
    value: str,
    label: str = "day",
    title: str = "",
    show: Callable[[int], str] = str,
) -> str:
    """An inline SVG with one bar per point (`points[i][value]`), labelled by `label`;
    `show` writes a value (money, for spend)."""
    if not points:
        return '<p class="muted">no data in this range</p>'
    top = max(int(p[value] or 0) for p in points) or 1
    step = (WIDTH - 2 * PAD) / len(points)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, point in enumerate(points):
        amount = int(point[value] or 0)
        height = (HEIGHT - 2 * PAD) * amount / top
        x, y = PAD + i * step, HEIGHT - PAD - height
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" height="{height:.1f}">'
            f"<title>{escape(str(point[label]))}: {escape(show(amount))}</title></rect>"
        )
    first, last = escape(str(points[0][label])), escape(str(points[-1][label]))
    parts.append(f'<text x="{PAD}" y="{HEIGHT - 4}">{first}</text>')
    parts.append(f'<text x="{WIDTH - PAD}" y="{HEIGHT - 4}" text-anchor="end">{last}</text>')
    parts.append(f'<text x="{PAD}" y="12">max {escape(show(top))}</text></svg>')
    return "".join(parts)
