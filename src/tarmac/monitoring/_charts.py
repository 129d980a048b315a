"""Inline SVG charts of a figure over a monitor's windows: a line chart with its threshold, a
sparkline for table cells, and a strip of one square per window coloured by verdict.

Pure text out (no script, no font file, nothing fetched), every label escaped, so a page built
from them opens offline and a column named ``<script>`` stays text. Points are evenly spaced:
a monitor's windows are.
"""

from __future__ import annotations

import html as _html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

State = Literal["pass", "fail", "undecided"]

#: colours per state: a passing point, a failing one, one the check could not judge yet
COLORS: dict[str, str] = {"pass": "#2563eb", "fail": "#c81e1e", "undecided": "#9aa5b1"}
_AXIS, _TEXT, _THRESHOLD = "#cbd2d9", "#52606d", "#d97706"


@dataclass(frozen=True)
class Point:
    """One window's figure: ``label`` names the window on the x axis, ``value`` is None when
    there was none (drawn as a mark on the axis, never as a zero), ``threshold`` the line it
    is held to in that window (None: no line), ``state`` how the check judged it, ``title``
    the tooltip."""

    label: str
    value: float | None
    threshold: float | None = None
    state: State = "pass"
    title: str = ""


def finite(v: float | None) -> float | None:
    """``v`` when it is a finite number, else None (NaN and infinities draw nothing)."""
    return v if v is not None and isinstance(v, int | float) and math.isfinite(v) else None


def line_chart(points: Sequence[Point], *, y_label: str = "", width: int = 720,
               height: int = 190) -> str:
    """The figure per window as a line with a dot per window and the threshold as a dashed
    orange line. Failing windows are red dots; undecided windows (labels still arriving, too
    few rows) are hollow grey rings on a grey column, off the line and left out of the y
    range (a figure beyond it sits at the edge), so a window judged on half its labels never
    reads as a drop."""
    left, right, top, bottom = 66, 40, 12, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    lo, hi = _range(points)
    n = len(points)
    step = plot_w / max(n - 1, 1)

    def x(i: int) -> float:
        return left + (plot_w / 2 if n == 1 else i * step)

    def y(v: float) -> float:
        return top + plot_h - (min(max(v, lo), hi) - lo) / (hi - lo) * plot_h

    esc = _html.escape
    parts = [_open(width, height, y_label)]
    band = min(step, plot_w) * 0.8 if n > 1 else 40.0
    for i, p in enumerate(points):  # a window not judged yet: a grey column behind it
        if p.state == "undecided":
            parts.append(f'<rect class="band" x="{x(i) - band / 2:.1f}" y="{top}" '
                         f'width="{band:.1f}" height="{plot_h}" fill="#f3f4f6">'
                         f'<title>{esc(p.title or p.label)}</title></rect>'
                         f'<text x="{x(i):.1f}" y="{top + 10}" font-size="9" fill="{_TEXT}" '
                         f'text-anchor="middle">not judged</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" '
                 f'y2="{top + plot_h}" stroke="{_AXIS}"/>')
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text x="{left - 6}" y="{y(v) + 3:.1f}" font-size="10" '
                     f'text-anchor="end" fill="{_TEXT}">{esc(short(v))}</text>'
                     f'<line x1="{left}" y1="{y(v):.1f}" x2="{width - right}" y2="{y(v):.1f}" '
                     f'stroke="#f0f2f4"/>')
    if y_label:
        parts.append(f'<text x="10" y="{top + plot_h / 2:.1f}" font-size="10" fill="{_TEXT}" '
                     f'text-anchor="middle" transform="rotate(-90 10 {top + plot_h / 2:.1f})">'
                     f'{esc(y_label)}</text>')
    for i in _ticks(n):
        parts.append(f'<text x="{x(i):.1f}" y="{height - 8}" font-size="10" fill="{_TEXT}" '
                     f'text-anchor="middle">{esc(points[i].label)}</text>')
    for run in _runs([(x(i), finite(p.threshold)) for i, p in enumerate(points)]):
        coords = " ".join(f"{a:.1f},{y(b):.1f}" for a, b in run)
        if len(run) == 1:  # one window: its threshold across the plot (a lone one: a dash)
            a, b = run[0]
            ends = (left, width - right) if n == 1 else (a - 12, a + 12)
            coords = f"{ends[0]:.1f},{y(b):.1f} {ends[1]:.1f},{y(b):.1f}"
        parts.append(f'<polyline class="threshold" points="{coords}" fill="none" '
                     f'stroke="{_THRESHOLD}" stroke-width="1.5" stroke-dasharray="5 4"/>')
    parts += _value_lines(points, x, y, "1.5")
    for i, p in enumerate(points):
        parts.append(_dot(x(i), p, y, top + plot_h))
    parts.append("</svg>")
    return "".join(parts)


def sparkline(points: Sequence[Point], *, width: int = 150, height: int = 30) -> str:
    """A small ``line_chart`` for a table cell: no axes, the threshold dashed, the last value's
    dot coloured by its state."""
    pad = 4
    lo, hi = _range(points)
    n = len(points)

    def x(i: int) -> float:
        return pad + ((width - 2 * pad) / 2 if n == 1 else i * (width - 2 * pad) / (n - 1))

    inner = height - 2 * pad

    def y(v: float) -> float:
        return pad + inner - (min(max(v, lo), hi) - lo) / (hi - lo) * inner

    parts = [_open(width, height, "trend", cls="spark")]
    for run in _runs([(x(i), finite(p.threshold)) for i, p in enumerate(points)]):
        if len(run) > 1:
            coords = " ".join(f"{a:.1f},{y(b):.1f}" for a, b in run)
            parts.append(f'<polyline class="threshold" points="{coords}" fill="none" '
                         f'stroke="{_THRESHOLD}" stroke-dasharray="3 2"/>')
    parts += _value_lines(points, x, y, "1.2")
    for i, p in enumerate(points):
        parts.append(_dot(x(i), p, y, height - pad, radius=2.2))
    parts.append("</svg>")
    return "".join(parts)


def strip(cells: Sequence[Point], *, size: int = 16) -> str:
    """One square per window, coloured by its state (``value`` unused), tooltips naming the
    window and its verdict."""
    esc = _html.escape
    gap = 3
    width = max(len(cells) * (size + gap), size)
    parts = [_open(width, size, "verdict per window", cls="strip")]
    for i, c in enumerate(cells):
        parts.append(f'<rect class="window {c.state}" x="{i * (size + gap)}" y="0" '
                     f'width="{size}" height="{size}" rx="3" fill="{COLORS[c.state]}">'
                     f'<title>{esc(c.title or c.label)}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def short(v: float) -> str:
    """A number in at most about five characters: 0.231, 1.2e-05, 12,345."""
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) < 0.001:
        return f"{v:.2g}"
    return f"{v:.3g}"


# -- helpers ---------------------------------------------------------------------------------


def _open(width: int, height: int, label: str, cls: str = "chart") -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="{cls}" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{_html.escape(label)}">')


def _range(points: Sequence[Point]) -> tuple[float, float]:
    """The y range holding every judged value and threshold, padded (undecided values only
    when nothing was judged); (0, 1) when there is none."""
    judged = [p for p in points if p.state != "undecided"] or list(points)
    seen = [v for v in (finite(p.value) for p in judged) if v is not None]
    seen += [v for v in (finite(p.threshold) for p in points) if v is not None]
    if not seen:
        return 0.0, 1.0
    lo, hi = min(seen), max(seen)
    if hi == lo:
        pad = abs(hi) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    floor = lo - pad
    if lo >= 0 > floor:  # rates and effect sizes are never negative: keep the axis at 0
        floor = 0.0
    return floor, hi + pad


def _ticks(n: int, most: int = 6) -> list[int]:
    """The indices labelled on the x axis: the first, the last, evenly between."""
    if n <= most:
        return list(range(n))
    step = (n - 1) / (most - 1)
    return sorted({round(i * step) for i in range(most)})


def _value_lines(points: Sequence[Point], x: Callable[[int], float],
                 y: Callable[[float], float], stroke_width: str) -> list[str]:
    """The judged values as lines: one polyline per run of finite values (a gap breaks it)."""
    judged = [(x(i), finite(p.value)) for i, p in enumerate(points) if p.state != "undecided"]
    return [f'<polyline points="{" ".join(f"{a:.1f},{y(b):.1f}" for a, b in run)}" '
            f'fill="none" stroke="{COLORS["pass"]}" stroke-width="{stroke_width}"/>'
            for run in _runs(judged) if len(run) > 1]


def _runs(points: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """Consecutive points with a value, split where one has none (a gap, not a zero)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for a, b in points:
        if b is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((a, b))
    return [r for r in runs if r]


def _dot(cx: float, p: Point, y: Callable[[float], float], axis: float,
         radius: float = 3.5) -> str:
    esc = _html.escape
    title = f"<title>{esc(p.title or p.label)}</title>"
    v = finite(p.value)
    if v is None:  # no figure this window: a cross on the axis
        r = radius
        return (f'<g class="point missing"><path d="M{cx - r:.1f},{axis - r:.1f} '
                f'L{cx + r:.1f},{axis + r:.1f} M{cx - r:.1f},{axis + r:.1f} '
                f'L{cx + r:.1f},{axis - r:.1f}" stroke="{COLORS["undecided"]}" '
                f'stroke-width="1.5"/>{title}</g>')
    cy = y(v)
    if p.state == "undecided":
        return (f'<circle class="point undecided" cx="{cx:.1f}" cy="{cy:.1f}" '
                f'r="{radius + 0.5:.1f}" fill="#fff" stroke="{COLORS["undecided"]}" '
                f'stroke-width="1.5" stroke-dasharray="2 1.5">{title}</circle>')
    return (f'<circle class="point {p.state}" cx="{cx:.1f}" cy="{cy:.1f}" r="{radius:.1f}" '
            f'fill="{COLORS[p.state]}">{title}</circle>')
