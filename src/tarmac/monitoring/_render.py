"""A drift report for people: a text table, a Rich table, and a self-contained HTML page.

The HTML has inline CSS and inline SVG only (no script, no font, nothing fetched), so it opens
offline and can be mailed or attached to a ticket as one file.
"""

from __future__ import annotations

import html as _html
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from tarmac.profile import ColumnStats, Histogram, TopK

if TYPE_CHECKING:
    from tarmac.monitoring._drift import ColumnDrift, DriftReport

_HEAD = ("column", "kind", "test", "statistic", "p adj.", "effect", "size", "class", "verdict",
         "n ref", "n cur", "null ref → cur")
_BAR_GROUPS = 12  # categories drawn per categorical plot (the rest as "other")


def summary(report: DriftReport) -> str:
    tested = len(report) - len(report.untested)
    correction = {"holm": "Holm-corrected", "bh": "Benjamini-Hochberg-corrected",
                  "none": "uncorrected"}[report.correction]
    return (f"{len(report.drifted)} of {tested} tested columns drifted "
            f"({len(report.untested)} with not enough data); reference "
            f"{report.reference_rows:,} rows, current {report.current_rows:,} rows; "
            f"{correction} p < {report.alpha:g} and effect at least {report.min_effect}")


def cells(c: ColumnDrift) -> tuple[str, ...]:
    return (c.column, c.kind, c.test or "", _fmt(c.statistic), _p(c.p_adjusted),
            c.effect or "", _fmt(c.effect_size), c.effect_class or "", c.verdict,
            f"{c.reference_count:,}", f"{c.current_count:,}",
            f"{_rate(c.reference_null_rate)} → {_rate(c.current_null_rate)}")


def text(report: DriftReport) -> str:
    rows = [cells(c) for c in report]
    widths = [max(len(r[i]) for r in [_HEAD, *rows]) for i in range(len(_HEAD))]
    numeric = {3, 4, 6, 9, 10}

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(v.rjust(w) if i in numeric else v.ljust(w)
                         for i, (v, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    out = [f"Drift: {summary(report)}", line(_HEAD), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    details = [f"  {c.column}: {c.reason}" + (f"; {c.note}" if c.note else "")
               for c in report if c.verdict != "not drifted" or c.note]
    if details:
        out += ["", *details]
    return "\n".join(out)


def rich_table(report: DriftReport) -> Any:
    from rich.table import Table

    table = Table(title="Drift", caption=summary(report), caption_justify="left")
    for i, h in enumerate(_HEAD):
        table.add_column(h, justify="right" if i in (3, 4, 6, 9, 10) else "left",
                         no_wrap=i == 0)
    from rich.text import Text

    style = {"drifted": "bold red", "not drifted": "green", "not enough data": "yellow"}
    for c in report:
        row: list[Any] = list(cells(c))
        row[8] = Text(c.verdict, style=style[c.verdict])
        table.add_row(*row)
    return table


# -- HTML ----------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1f2933}
h1{font-size:20px;margin:0 0 4px} .sub{color:#52606d;margin-bottom:16px}
table{border-collapse:collapse;margin-bottom:24px} th,td{padding:4px 8px;text-align:left}
th{border-bottom:2px solid #cbd2d9;font-weight:600} td{border-bottom:1px solid #e4e7eb}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{border-radius:10px;padding:1px 8px;font-size:12px;white-space:nowrap}
.drifted{background:#fde2e1;color:#a61b1b} .not-drifted{background:#e3f8e8;color:#1d6b35}
.not-enough-data{background:#fff4d6;color:#8a5a00}
.card{border:1px solid #e4e7eb;border-radius:8px;padding:12px 16px;margin:0 0 16px;
max-width:760px} .card h2{font-size:16px;margin:0 0 4px} .why{color:#52606d;margin:2px 0}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
"""
_REF, _CUR = "#9aa5b1", "#2563eb"


def html(report: DriftReport, title: str) -> str:
    esc = _html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in _HEAD)
    body = []
    for i, c in enumerate(report.columns):
        values = cells(c)
        tds = [f'<td><a href="#col-{i}">{esc(values[0])}</a></td>']
        for j, v in enumerate(values[1:], start=1):
            if j == 8:
                tds.append(f'<td><span class="badge {_css(c.verdict)}">{esc(v)}</span></td>')
            else:
                tds.append(f'<td class="{"n" if j in (3, 4, 6, 9, 10) else ""}">{esc(v)}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    cards = [_card(i, c) for i, c in enumerate(report.columns)]
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1><div class=\"sub\">{esc(summary(report))}</div>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"{''.join(cards)}</body></html>")


def _card(i: int, c: ColumnDrift) -> str:
    esc = _html.escape
    plot = distribution(c.kind, c.reference, c.current)
    note = f'<p class="why">{esc(c.note)}</p>' if c.note else ""
    return (f'<div class="card" id="col-{i}"><h2>{esc(c.column)} '
            f'<span class="badge {_css(c.verdict)}">{esc(c.verdict)}</span></h2>'
            f'<p class="why">{esc(c.reason)}</p>{note}{legend() if plot else ""}{plot}</div>')


def _css(verdict: str) -> str:
    return verdict.replace(" ", "-")


def legend() -> str:
    """The colour key of ``distribution``'s bars (HTML)."""
    return ('<div class="legend"><span style="background:' + _REF + '"></span>reference'
            '<span style="background:' + _CUR + '"></span>current</div>')


def distribution(kind: str, reference: ColumnStats | None, current: ColumnStats | None) -> str:
    """Reference and current shares side by side as inline SVG (``""`` when the two carry no
    comparable counts): per reference decile for numbers (plus the values below and above
    the reference's range), per category for text and booleans. Takes the drift sketches,
    else a reference profile's histogram or top values."""
    ref = reference.sketch if reference is not None else None
    cur = current.sketch if current is not None else None
    if ref is None and reference is not None:
        ref = reference.histogram if kind == "numeric" else reference.top
    if isinstance(ref, Histogram) and isinstance(cur, Histogram):
        if len(ref.counts) != len(cur.counts):  # not counted on the reference's grid
            return ""
        labels, r, k = _numeric_groups(ref, cur)
    elif isinstance(ref, TopK) and isinstance(cur, TopK):
        labels, r, k = _category_groups(ref, cur)
    else:
        return ""
    if r.sum() <= 0 or k.sum() <= 0:
        return ""
    return _bars(labels, r / r.sum(), k / k.sum())


def _numeric_groups(ref: Histogram, cur: Histogram) -> tuple[list[str], np.ndarray, np.ndarray]:
    from tarmac.monitoring._statistics import decile_groups

    r = np.array(ref.counts, dtype=np.float64)
    k = np.array(cur.counts, dtype=np.float64)
    starts = decile_groups(r)
    ends = [*starts[1:], len(r)]
    labels = [f"{_short(ref.edges[a])}–{_short(ref.edges[b])}" for a, b in
              zip(starts, ends, strict=True)]
    rg, kg = np.add.reduceat(r, starts), np.add.reduceat(k, starts)
    if cur.below:
        labels, rg, kg = ["below"] + labels, np.append(0.0, rg), np.append(cur.below, kg)
    if cur.above:
        labels, rg, kg = labels + ["above"], np.append(rg, 0.0), np.append(kg, cur.above)
    return labels, rg, kg


def _category_groups(ref: TopK, cur: TopK) -> tuple[list[str], np.ndarray, np.ndarray]:
    shown = ref.values[:_BAR_GROUPS]
    rest_ref = sum(n for _v, n in ref.values[_BAR_GROUPS:]) + ref.other
    rest_cur = sum(n for _v, n in cur.values[_BAR_GROUPS:]) + cur.other
    labels = [str(v) for v, _n in shown]
    r = [float(n) for _v, n in shown]
    k = [float(n) for _v, n in cur.values[:_BAR_GROUPS]]
    if rest_ref or rest_cur:
        labels.append("other")
        r.append(rest_ref)
        k.append(rest_cur)
    if cur.unseen:
        named = ", ".join(str(v) for v, _n in cur.new[:3]) + (" …" if len(cur.new) > 3 else "")
        labels.append(f"new: {named}" if named else "new")
        r.append(0.0)
        k.append(cur.unseen)
    return labels, np.array(r), np.array(k)


def _bars(labels: list[str], r: np.ndarray, k: np.ndarray) -> str:
    esc = _html.escape
    width, height, left, bottom = 720, 170, 40, 36
    slot = (width - left) / len(labels)
    bar = max(min(slot * 0.38, 28.0), 1.0)
    top = float(max(r.max(), k.max())) or 1.0
    scale = (height - bottom - 10) / top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" viewBox="0 0 {width} {height}">',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width}" y2="{height - bottom}" '
             'stroke="#cbd2d9"/>',
             f'<text x="{left - 4}" y="14" font-size="10" text-anchor="end" '
             f'fill="#52606d">{top:.0%}</text>']
    for i, (label, a, b) in enumerate(zip(labels, r, k, strict=True)):
        x = left + i * slot + slot / 2
        for dx, share, color in ((-bar, a, _REF), (0.0, b, _CUR)):
            h = share * scale
            parts.append(f'<rect x="{x + dx:.1f}" y="{height - bottom - h:.1f}" '
                         f'width="{bar:.1f}" height="{h:.1f}" fill="{color}">'
                         f'<title>{esc(label)}: {share:.2%}</title></rect>')
        text = label if len(label) <= 14 else label[:13] + "…"
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 14}" font-size="9" '
                     f'text-anchor="middle" fill="#52606d">{esc(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# -- numbers ---------------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    if v is None:
        return ""
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 0.001 else f"{v:.4f}".rstrip("0").rstrip(".")


def _p(p: float | None) -> str:
    if p is None:
        return ""
    return "<1e-300" if p < 1e-300 else f"{p:.2g}"


def _rate(r: float | None) -> str:
    return "–" if r is None else f"{r:.1%}"


def _short(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.3g}"
