"""The HTML of a monitor report: inline CSS and SVG, every user string escaped (see
``tarmac.monitoring.report``)."""

from __future__ import annotations

import html as _html
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tarmac.monitoring import _charts, _render
from tarmac.monitoring._charts import Point, finite
from tarmac.monitoring._report_data import (
    ALL_ROWS,
    Data,
    grouped,
    key,
    num,
    stamp,
    state,
    what,
    when,
)
from tarmac.profile import ColumnStats

#: drift cards shown open; with more features, the ones not failing past this are folded
OPEN_CARDS = 12
#: the effect size that goes with each drift test (``tarmac.monitoring.drift``)
EFFECT_OF = {"ks": "PSI", "chi2": "Jensen-Shannon"}

esc = _html.escape

_CSS = _render._CSS + """
body{max-width:1080px} h2.section{font-size:17px;margin:28px 0 8px;padding-bottom:4px;
border-bottom:1px solid #e4e7eb} svg{max-width:100%;height:auto}
.verdict{font-size:15px;padding:3px 12px} .fail{background:#fde2e1;color:#a61b1b}
.pass{background:#e3f8e8;color:#1d6b35} .undecided{background:#eef0f3;color:#3e4c59}
.facts{display:flex;flex-wrap:wrap;gap:6px 24px;margin:8px 0 12px;color:#3e4c59}
.facts b{color:#1f2933} .muted{color:#7b8794} .empty{color:#7b8794;font-style:italic}
table.failing td:nth-child(-n+4),table.trends td:nth-child(-n+3){white-space:nowrap}
td.spark{padding:2px 8px} details{margin:8px 0 16px} summary{cursor:pointer;color:#3e4c59}
.key span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px;border-radius:5px}
.key .ring{background:#fff;border:1.5px dashed #9aa5b1;width:8px;height:8px}
.key .dash{border-top:2px dashed #d97706;height:0;width:14px;border-radius:0}
.card h3{font-size:13px;margin:10px 0 2px;color:#3e4c59;font-weight:600}
"""


def page(d: Data) -> str:
    title = f"Monitor {d.monitor}"
    body = [_header(d), _failing(d), _drift(d), _quality(d), _performance(d), _slo(d),
            _alerts(d), _footer(d)]
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
            f"{''.join(body)}</body></html>")


def _badge(verdict: str, cls: str = "badge") -> str:
    return f'<span class="{cls} {state(verdict)}">{esc(verdict)}</span>'


def _header(d: Data) -> str:
    w = d.latest
    model = esc(d.model or "?") + (f" v{d.version}" if d.version is not None else "")
    facts = [f"model <b>{model}</b>",
             f"latest window <b>{esc(when(w))}</b>",
             f"<b>{w.failing}</b> of {w.checks} figures failing",
             f"{len(d.windows)} window{'s' if len(d.windows) != 1 else ''} shown"]
    if d.evaluated_at is not None:
        facts.append(f"evaluated {esc(stamp(d.evaluated_at))}")
    cells = [Point(d.label(x.end), None, None, x.state,
                   f"{when(x)}: {x.verdict} ({x.failing} of {x.checks} failing)")
             for x in d.windows]
    return (f'<h1>Monitor {esc(d.monitor)} {_badge(w.verdict, "badge verdict")}</h1>'
            f'<div class="facts">{"".join(f"<span>{f}</span>" for f in facts)}</div>'
            f'<div class="sub">Windows, oldest to newest: {_charts.strip(cells)}</div>')


def _failing(d: Data) -> str:
    latest = [r for r in d.rows if r["window_end"] == d.latest.end]
    bad = sorted((r for r in latest if state(r["verdict"]) == "fail"),
                 key=lambda r: (r["check"], -(finite(r["effect_size"]) or 0.0), key(r)))
    open_ = [r for r in latest if state(r["verdict"]) == "undecided"]
    out = ['<h2 class="section">Failing in the latest window</h2>']
    if bad:
        head = ("check", "what", "value", "threshold", "verdict", "why")
        rows = [(r["check"], what(r), _figure(r), num(r["threshold"]), r["verdict"],
                 r["reason"] or "") for r in bad]
        out.append(_table(head, rows, numeric={2, 3}, verdict=4, cls="failing"))
    else:
        out.append('<p class="empty">Nothing fails in the latest window.</p>')
    if open_:
        undecided = [(r["check"], what(r), _figure(r), r["verdict"], r["reason"] or "")
                     for r in open_]
        out.append(f"<details><summary>{len(open_)} figure{'s' if len(open_) != 1 else ''} "
                   "not decided in the latest window (and why)</summary>"
                   + _table(("check", "what", "value", "verdict", "why"), undecided, numeric={2},
                            verdict=3) + "</details>")
    return "".join(out)


def _figure(r: dict[str, Any]) -> str:
    """The figure a row's threshold applies to: a drift row's effect size (named), else its
    value."""
    if r["check"] != "drift":
        return num(r["value"])
    return f"{EFFECT_OF.get(r['metric'], 'effect')} {_effect(r)}".strip()


def _effect(r: dict[str, Any]) -> str:
    size = finite(r["effect_size"])
    if size is None:
        return r["effect_class"] or ""
    return f"{_render._fmt(size)}" + (f" ({r['effect_class']})" if r["effect_class"] else "")


def _key_html(*, undecided: str | None = None) -> str:
    parts = ['<div class="key muted"><span style="background:#2563eb"></span>passing',
             '<span style="background:#c81e1e"></span>failing',
             '<span class="dash"></span>threshold']
    if undecided:
        parts.append(f'<span class="ring"></span>{esc(undecided)}')
    return "".join(parts) + "</div>"


def _drift(d: Data) -> str:
    rows = d.of("drift")
    out = ['<h2 class="section">Drift per feature</h2>']
    if not rows:
        return out[0] + '<p class="empty">This monitor has no drift rows in these windows.</p>'
    series = grouped(rows)
    latest = {k: v[-1] for k, v in series.items()}

    def order(k: tuple[str, str, str]) -> tuple[int, int, float, str]:
        r = latest[k]
        return (state(r["verdict"]) != "fail", r["window_end"] != d.latest.end,
                -(finite(r["effect_size"]) or 0.0), k[1])

    out.append(f"<p class=\"sub\">{_drift_summary(d, rows)} Per feature: the reference and "
               "the latest window's distribution, then the effect size per window against the "
               "threshold it must reach to count as drift.</p>")
    keys = sorted(series, key=order)
    failing = sum(state(latest[k]["verdict"]) == "fail" for k in keys)
    shown = len(keys) if len(keys) <= OPEN_CARDS else max(failing, OPEN_CARDS)
    out += [_drift_card(d, i, series[k]) for i, k in enumerate(keys[:shown])]
    if shown < len(keys):  # a wide model: the quiet features folded, still one click away
        rest = "".join(_drift_card(d, i, series[k]) for i, k in enumerate(keys[shown:], shown))
        out.append(f'<details class="more"><summary>{len(keys) - shown} more features, none '
                   f"failing (smallest effect last)</summary>{rest}</details>")
    return "".join(out)


def _drift_summary(d: Data, rows: list[dict[str, Any]]) -> str:
    now = [r for r in rows if r["window_end"] == d.latest.end]
    drifted = [r["column"] or r["metric"] for r in now if state(r["verdict"]) == "fail"]
    text = f"{len(drifted)} of {len(now)} tested column{'s' if len(now) != 1 else ''} drifted " \
           "in the latest window"
    if drifted:
        shown = ", ".join(drifted[:8]) + (" …" if len(drifted) > 8 else "")
        text += f" ({shown})"
    return esc(text + ".")


def _drift_card(d: Data, i: int, rows: list[dict[str, Any]]) -> str:
    r = rows[-1]
    name = r["column"] or r["metric"]
    facts = [f"{_figure(r)}" + (f" against threshold {num(r['threshold'])}"
                                if finite(r["threshold"]) is not None else "")
             if _effect(r) else "",
             f"{r['metric']} statistic {num(r['value'])}"
             if finite(r["value"]) is not None else "",
             f"adjusted p {_render._p(finite(r['p_value']))}"
             if finite(r["p_value"]) is not None else "",
             f"n {r['n_reference']:,} reference / {r['n_current']:,} current"
             if r["n_reference"] is not None and r["n_current"] is not None else ""]
    tested = "" if r["window_end"] == d.latest.end else \
        f" (last tested in the window ending {stamp(r['window_end'])})"
    plot = _distribution(r)
    dist = (f"<h3>Reference vs latest window{esc(tested)}</h3>{_render.legend()}{plot}" if plot
            else '<p class="empty">No distributions stored with this row.</p>')
    trend = _charts.line_chart(d.series(rows, "effect_size"), y_label="effect size")
    return (f'<div class="card drift" id="drift-{i}"><h2>{esc(name)} {_badge(r["verdict"])}'
            f'</h2><p class="why">{esc(" · ".join(f for f in facts if f))}</p>'
            f'<p class="why">{esc(r["reason"] or "")}</p>{dist}'
            f"<h3>Effect size per window</h3>{_key_html(undecided='not enough data')}"
            f"{trend}</div>")


def _distribution(r: dict[str, Any]) -> str:
    """The two sketches stored in a drift row's ``detail``, drawn; ``""`` when absent or
    unreadable (a report never fails on one odd row)."""
    if not r["detail"]:
        return ""
    try:
        detail = json.loads(r["detail"])
        ref = ColumnStats.from_dict(detail["reference"], r["column"])
        cur = ColumnStats.from_dict(detail["current"], r["column"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""
    kind = "numeric" if ref.kind == "numeric" else "categorical"
    return _render.distribution(kind, ref, cur)


def _trend_table(d: Data, rows: list[dict[str, Any]], *, first: str = "check") -> str:
    """One row per series (metric, column, slice): the latest figure, its threshold and
    verdict, and a sparkline of every window."""
    series = grouped(rows)
    latest = {k: v[-1] for k, v in series.items()}
    keys = sorted(series, key=lambda k: (state(latest[k]["verdict"]) != "fail", k))
    head = (first, "value", "threshold", "verdict", "trend", "why")
    out = ['<table class="trends"><thead><tr>',
           "".join(f"<th>{esc(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for k in keys:
        r = latest[k]
        stale = "" if r["window_end"] == d.latest.end else \
            f" (window ending {stamp(r['window_end'])})"
        out.append(f"<tr><td>{esc(what(r))}</td><td class=\"n\">{esc(num(r['value']))}</td>"
                   f"<td class=\"n\">{esc(num(r['threshold']))}</td>"
                   f"<td>{_badge(r['verdict'])}</td>"
                   f"<td class=\"spark\">{_charts.sparkline(d.series(series[k]))}</td>"
                   f"<td>{esc((r['reason'] or '') + stale)}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _quality(d: Data) -> str:
    rows = d.of("quality")
    head = '<h2 class="section">Data quality</h2>'
    if not rows:
        return head + '<p class="empty">This monitor has no quality rows in these windows.</p>'
    return head + _key_html(undecided="not decided") + _trend_table(d, rows)


def _performance(d: Data) -> str:
    rows = d.of("performance")
    head = '<h2 class="section">Performance</h2>'
    if not rows:
        return head + ('<p class="empty">This monitor has no performance rows in these windows '
                       "(declare performance(labels=...) to measure it on late labels).</p>")
    overall = [r for r in rows if r["slice"] in (None, ALL_ROWS)]
    sliced = [r for r in rows if r["slice"] not in (None, ALL_ROWS)]
    out = [head, '<p class="sub">A window whose labels are still arriving is drawn as a hollow '
                 "ring, off the line: its figure is not judged yet, and a drop there is "
                 "missing labels, not decay.</p>",
           _key_html(undecided="labels incomplete, not judged")]
    out += _charts_per_series(d, overall)
    if sliced:
        out.append("<h3>Per slice</h3>" + _trend_table(d, sliced, first="metric · slice"))
    return "".join(out)


def _charts_per_series(d: Data, rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for _k, series in sorted(grouped(rows).items()):
        r = series[-1]
        undecided = [x for x in series if state(x["verdict"]) == "undecided"]
        note = ""
        if undecided and undecided[-1]["reason"] and undecided[-1] is not r:
            last = undecided[-1]
            note = (f'<p class="why">Not judged in the window ending '
                    f'{esc(stamp(last["window_end"]))}: {esc(last["reason"])}</p>')
        judged = [x for x in series if state(x["verdict"]) != "undecided"
                  and finite(x["value"]) is not None]
        if state(r["verdict"]) == "undecided" and judged:
            last = judged[-1]
            note += (f'<p class="why">Last judged: {esc(num(last["value"]))} '
                     f'({esc(last["verdict"])}) in the window ending '
                     f'{esc(stamp(last["window_end"]))}.</p>')
        out.append(f'<div class="card trend"><h2>{esc(what(r))} {_badge(r["verdict"])} '
                   f'<span class="muted">{esc(num(r["value"]))}</span></h2>'
                   f'<p class="why">{esc(r["reason"] or "")}</p>{note}'
                   f"{_charts.line_chart(d.series(series), y_label=r['metric'])}</div>")
    return out


def _slo(d: Data) -> str:
    rows = d.of("slo")
    head = '<h2 class="section">Service levels</h2>'
    if not rows:
        return head + '<p class="empty">This monitor has no SLO rows in these windows.</p>'
    return head + _key_html(undecided="not decided") + "".join(_charts_per_series(d, rows))


def _alerts(d: Data) -> str:
    head = '<h2 class="section">Alerts</h2>'
    if not d.alerts:
        return head + '<p class="empty">No alert has been sent for this monitor.</p>'
    rows = [(_stamp_us(a.at), a.state, a.check, a.column or "", a.channel, a.outcome,
             str(a.attempts), "" if a.status_code is None else str(a.status_code),
             a.error or "") for a in d.alerts]
    return head + _table(("at", "state", "check", "column", "channel", "outcome", "attempts",
                          "status", "error"), rows, numeric={6, 7}, cls="alerts",
                         states={1: {"firing": "fail", "resolved": "pass"},
                                 5: {"delivered": "pass", "failed": "fail"}})


def _stamp_us(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _footer(d: Data) -> str:
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<p class="muted">Made by Tarmac at {esc(made)} from {len(d.rows):,} rows of the '
            f"monitor_results table (monitor {esc(d.monitor)}).</p>")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: set[int],
           verdict: int | None = None, cls: str = "",
           states: dict[int, dict[str, str]] | None = None) -> str:
    attr = f' class="{cls}"' if cls else ""
    out = [f"<table{attr}><thead><tr>",
           "".join(f"<th>{esc(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        cells = []
        for j, v in enumerate(row):
            if j == verdict:
                cells.append(f"<td>{_badge(v)}</td>")
            elif states and j in states:
                cells.append(f'<td><span class="badge {states[j].get(v, "undecided")}">'
                             f"{esc(v)}</span></td>")
            else:
                cls_n = ' class="n"' if j in numeric else ""
                cells.append(f"<td{cls_n}>{esc(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)
