"""A decision trace for people: a Rich terminal view and a self-contained HTML page.

The page has inline CSS and one inline SVG (the contribution bars), no script and nothing
fetched; every string that came from data (feature names and values, request fields, actors,
gate messages) is escaped, so a feature named ``<script>`` stays text.
"""

from __future__ import annotations

import html
import json
import math
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.markup import escape as rich_escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from tarmac.trace.decision import DecisionTrace
    from tarmac.trace.explain import Explanation

esc = html.escape
_POS, _NEG = "#c2410c", "#2563eb"  # pushes the output up / down


def _show(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _fmt(x: float | None, digits: int = 4) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


# -- terminal -----------------------------------------------------------------------------------


def rich_view(t: DecisionTrace) -> Group:
    """The trace as Rich renderables: the decision, the inputs, the explanation, the model's
    history, and what is missing."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("prediction", rich_escape(t.id))
    head.add_row("time", f"{t.time:%Y-%m-%d %H:%M:%S.%f} UTC"[:-7] if t.time else "—")
    head.add_row("endpoint", rich_escape(t.endpoint))
    head.add_row("model", rich_escape(f"{t.model}@v{t.version} ({t.role})")
                 + (f"  [dim]now: {', '.join(t.aliases_now)}[/dim]" if t.aliases_now else ""))
    head.add_row("output", f"score {_fmt(t.score)}  label {rich_escape(_show(t.label))}")
    if t.error:
        head.add_row("error", f"[red]{rich_escape(t.error)}[/red]")
    head.add_row("request", rich_escape(_show(t.request, 120)))
    parts: list[Any] = [Panel(head, title="decision", title_align="left")]

    e = t.explanation
    contrib = {c.feature: c for c in e.contributions} if e else {}
    feats = Table(title="inputs", title_justify="left", show_lines=False)
    for col in ("feature", "value", "status", "event time", "from", "contribution"):
        feats.add_column(col, justify="right" if col == "contribution" else "left")
    for f in t.features:
        origin = f.source if f.view is None else f"{f.view}@v{f.view_version}"
        if f.tables:
            origin += " <- " + ", ".join(f"{k}@{v}" for k, v in sorted(f.tables.items()))
        c = contrib.get(f.name)
        st = f.status or "—"
        style = "" if st in ("present", "request") else "yellow"
        feats.add_row(rich_escape(f.name), rich_escape(_show(f.value, 40)),
                      f"[{style}]{rich_escape(st)}[/{style}]" if style else rich_escape(st),
                      rich_escape(str(f.event_time or "—")), rich_escape(origin),
                      f"{c.contribution:+.4f}" if c else "—")
    parts.append(feats)

    if e is not None:
        bars = Table.grid(padding=(0, 1))
        bars.add_column(justify="right")
        bars.add_column()
        bars.add_column(justify="right")
        top = max((abs(c.contribution) for c in e.contributions), default=0) or 1.0
        for c in e.ranked():
            n = round(abs(c.contribution) / top * 30)
            bar = Text("█" * n, style="dark_orange" if c.contribution > 0 else "blue")
            bars.add_row(Text(c.feature), bar, f"{c.contribution:+.4f}")
        exact = "exact" if e.exact else f"estimate, {e.samples} permutations, seed {e.seed}"
        note = (f"base {e.base:.4f} + contributions = {e.output:.4f} ({e.scale})"
                + (f"; sigmoid = {_fmt(e.score)}" if e.scale == "log-odds" else ""))
        parts.append(Panel(Group(bars, Text(note, style="dim")),
                           title=f"why: {e.method} ({exact})", title_align="left"))
    else:
        parts.append(Panel(Text(f"no explanation: {t.explanation_missing}", style="yellow"),
                           title="why", title_align="left"))

    hist = Table.grid(padding=(0, 2))
    hist.add_column(style="bold")
    hist.add_column()
    run = t.training
    if run:
        commit = ((run.get("environment") or {}).get("git") or {}).get("commit")
        hist.add_row("training run", rich_escape(
            f"#{run.get('run')} {run.get('run_id')} by {run.get('actor')} at "
            f"{run.get('started_at')}"))
        hist.add_row("  data", rich_escape(
            f"{run.get('training_set')} ({_rows(run)}) from " + (", ".join(
                f"{k}@{v}" for k, v in sorted((run.get("inputs") or {}).items())) or "—")))
        hist.add_row("  definitions", rich_escape(", ".join(
            f"{k}@{v}" for k, v in sorted((run.get("definitions") or {}).items())) or "—"))
        hist.add_row("  code", rich_escape(f"commit {commit}" if commit else "not in git"))
        hist.add_row("  params", rich_escape(_show(run.get("params"), 120)))
        hist.add_row("  metrics", rich_escape(", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in sorted((run.get("metrics") or {}).items()))))
    for g in t.gates[:1]:
        failed = [r["name"] for r in g["results"] if r.get("status") in ("failed", "error")]
        skipped = sum(r.get("status") == "skipped" for r in g["results"])
        hist.add_row("gates", rich_escape(
            f"{g['status']} ({len(g['results'])} gates"
            + (f"; failed: {', '.join(failed)}" if failed else "")
            + (f"; {skipped} skipped" if skipped else "")
            + f") at {g['at']} by {g['actor']}"))
    for m in t.promotions:
        hist.add_row("alias", rich_escape(
            f"{m['action']} {m['alias']}: v{m['from']} -> v{m['to']} by {m['actor']} at "
            f"{m['at']}" + (" FORCED: " + str(m.get("reason")) if m.get("forced") else "")
            + (f" (audit #{m['audit_seq']})" if m.get("audit_seq") else "")
            + (" [after this prediction]" if m.get("after_prediction") else "")))
    for d in t.deployments:
        hist.add_row("deployment", rich_escape(
            f"{d['action']}: canary {_v(d['canary'])} ({_pct(d)}), shadow "
            f"{_v(d['shadow'])} by {d['actor']} at {d['at']}"
            + (f" ({d['reason']})" if d.get("reason") else "")
            + (" [after this prediction]" if d.get("after_prediction") else "")))
    parts.append(Panel(hist, title="how this version got there", title_align="left"))
    if t.missing:
        parts.append(Panel(Text("\n".join(t.missing), style="red"), title="missing",
                           title_align="left"))
    return Group(*parts)


# -- HTML ---------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;color:#1f2933;margin:2em auto;
max-width:980px;padding:0 1em}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.6em 0 .5em;
border-bottom:1px solid #e4e7eb;padding-bottom:.2em}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.25em .6em;
border-bottom:1px solid #f0f2f4;vertical-align:top}th{color:#52606d;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums}.dim{color:#7b8794}
.warn{color:#b45309;font-weight:600}.bad{color:#c81e1e;font-weight:600}
.kv td:first-child{color:#52606d;width:12em}code{font-size:.92em}
.missing{background:#fdecea;border:1px solid #f5c2c0;padding:.6em 1em;border-radius:4px}
"""


def html_page(t: DecisionTrace) -> str:
    """The trace as one HTML document (see the module's doc)."""
    e = t.explanation
    rows = [("prediction", f"<code>{esc(t.id)}</code>"),
            ("request id", esc(str(t.request_id or "—"))),
            ("time", esc(t.time.isoformat() if t.time else "—")),
            ("endpoint", esc(t.endpoint)),
            ("model", esc(f"{t.model}@v{t.version}") + f" <b>{esc(t.role)}</b>"
             + (f" <span class=dim>(now: {esc(', '.join(t.aliases_now))})</span>"
                if t.aliases_now else "")),
            ("score", esc(_fmt(t.score))), ("label", esc(_show(t.label))),
            ("latency", esc(f"{_fmt(t.latency_ms, 2)} ms")),
            ("request", f"<code>{esc(_show(t.request, 400))}</code>")]
    if t.error:
        rows.append(("error", f"<span class=bad>{esc(t.error)}</span>"))
    body = [f"<h1>Decision trace: {esc(t.endpoint)} → {esc(_fmt(t.score))}</h1>",
            f"<p class=dim>{esc(t.summary().splitlines()[1].strip())}</p>",
            _kv(rows)]
    if t.missing:
        body.append("<h2>Missing</h2><div class=missing>" + "<br>".join(
            esc(m) for m in t.missing) + "</div>")
    body.append("<h2>Why</h2>")
    if e is not None:
        how = "exact" if e.exact else (f"estimate: {e.samples} permutations against "
                                       f"{e.background} background rows, seed {e.seed}")
        body.append(f"<p>Method <b>{esc(e.method)}</b> ({esc(how)}), on the {esc(e.scale)} "
                    f"scale: base {esc(_fmt(e.base))} + contributions = "
                    f"{esc(_fmt(e.output))}"
                    + (f"; sigmoid = {esc(_fmt(e.score))}" if e.scale == "log-odds" else "")
                    + ". Orange pushes the output up, blue down.</p>")
        body.append(bar_chart(e))
    else:
        body.append(f"<p class=warn>No explanation: {esc(str(t.explanation_missing))}</p>")
    contrib = {c.feature: c for c in e.contributions} if e else {}
    frows = []
    for f in t.features:
        c = contrib.get(f.name)
        origin = esc(f.source) if f.view is None else esc(f"{f.view}@v{f.view_version}")
        if f.tables:
            origin += " ← " + esc(", ".join(f"{k}@{v}" for k, v in sorted(f.tables.items())))
        st = f.status or "—"
        cls = "" if st in ("present", "request") else " class=warn"
        frows.append(f"<tr><td>{esc(f.name)}</td><td><code>{esc(_show(f.value))}</code></td>"
                     f"<td{cls}>{esc(st)}</td><td>{esc(str(f.event_time or '—'))}</td>"
                     f"<td>{origin}</td><td class=num>"
                     f"{esc(f'{c.contribution:+.4f}') if c else '—'}</td></tr>")
    body.append("<h2>Inputs</h2><table><tr><th>feature</th><th>value</th><th>status</th>"
                "<th>event time</th><th>from</th><th class=num>contribution</th></tr>"
                + "".join(frows) + "</table>")
    body.append("<h2>How this version got there</h2>")
    run = t.training
    if run:
        commit = ((run.get("environment") or {}).get("git") or {}).get("commit")
        body.append(_kv([
            ("training run", esc(f"#{run.get('run')} {run.get('run_id')} by "
                                 f"{run.get('actor')} at {run.get('started_at')}")),
            ("training data", esc(f"{run.get('training_set')} ({_rows(run)}) from " + ", ".join(
                f"{k}@{v}" for k, v in sorted((run.get("inputs") or {}).items())))),
            ("definitions", esc(", ".join(f"{k}@{v}" for k, v in
                                          sorted((run.get("definitions") or {}).items())))),
            ("code", esc(f"git commit {commit}" if commit else "not in a git repository")),
            ("parameters", f"<code>{esc(_show(run.get('params'), 400))}</code>"),
            ("metrics", esc(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in sorted((run.get("metrics") or {}).items())))),
        ]))
    for g in t.gates[:1]:
        grow = "".join(f"<tr><td>{esc(str(r.get('name')))}</td><td>{esc(str(r.get('status')))}"
                       f"</td><td>{esc(_show(r.get('value'), 30))}</td>"
                       f"<td>{esc(_show(r.get('message') or '', 120))}</td></tr>"
                       for r in g["results"])
        body.append(f"<p>Gates <b>{esc(g['status'])}</b> at {esc(str(g['at']))} by "
                    f"{esc(str(g['actor']))}</p><table><tr><th>gate</th><th>status</th>"
                    f"<th>value</th><th>message</th></tr>{grow}</table>")
    if t.promotions:
        prow = "".join(
            f"<tr><td>{esc(str(m['at']))}</td><td>{esc(str(m['action']))}</td>"
            f"<td>{esc(str(m['alias']))}</td><td>v{esc(str(m['from']))} → "
            f"v{esc(str(m['to']))}</td><td>{esc(str(m['actor']))}</td>"
            f"<td>{esc('forced: ' + str(m.get('reason')) if m.get('forced') else '')}</td>"
            f"<td>{esc(str(m.get('audit_seq') or '—'))}</td>"
            f"<td>{'later' if m.get('after_prediction') else ''}</td></tr>"
            for m in t.promotions)
        body.append("<table><tr><th>when</th><th>action</th><th>alias</th><th>move</th>"
                    f"<th>who</th><th>note</th><th>audit #</th><th>after the "
                    f"prediction?</th></tr>{prow}</table>")
    if t.deployments:
        drow = "".join(
            f"<tr><td>{esc(str(d['at']))}</td><td>{esc(str(d['action']))}</td>"
            f"<td>{esc(_v(d['canary']))} ({esc(_pct(d))})</td>"
            f"<td>{esc(_v(d['shadow']))}</td><td>{esc(str(d['actor']))}</td>"
            f"<td>{esc(str(d.get('reason') or ''))}</td></tr>" for d in t.deployments)
        body.append("<p>Deployment changes of the endpoint that involve this version:</p>"
                    "<table><tr><th>when</th><th>action</th><th>canary</th><th>shadow</th>"
                    f"<th>who</th><th>reason</th></tr>{drow}</table>")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>Trace {esc(t.id)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def _pct(change: dict[str, Any]) -> str:
    return f"{change.get('percent') or 0:g}%"


def _v(version: int | None) -> str:
    return "—" if version is None else f"v{version}"


def _rows(run: dict[str, Any]) -> str:
    train, test = run.get("rows_train"), run.get("rows_test")
    if train is None or test is None:
        return "rows not recorded"
    return f"{train:,} training rows, {test:,} holdout rows"


def _kv(rows: list[tuple[str, str]]) -> str:
    """Rows of (label, HTML already escaped)."""
    return "<table class=kv>" + "".join(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>"
                                        for k, v in rows) + "</table>"


def bar_chart(e: Explanation, *, width: int = 720) -> str:
    """Contributions as horizontal bars around a zero line, largest first, as inline SVG."""
    items = e.ranked()
    row_h, label_w, value_w = 24, 180, 80
    plot_w = width - label_w - value_w
    top = max((abs(c.contribution) for c in items), default=0.0) or 1.0
    mid = label_w + plot_w / 2
    height = row_h * len(items) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'role="img" aria-label="feature contributions">',
           f'<line x1="{mid:.1f}" y1="0" x2="{mid:.1f}" y2="{height}" stroke="#cbd2d9"/>']
    for i, c in enumerate(items):
        y = 5 + i * row_h
        w = abs(c.contribution) / top * (plot_w / 2 - 4)
        x = mid if c.contribution >= 0 else mid - w
        color = _POS if c.contribution >= 0 else _NEG
        label = c.feature if len(c.feature) <= 26 else c.feature[:25] + "…"
        out.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" font-size="12" '
                   f'fill="#1f2933">{esc(label)}<title>{esc(c.feature)} = '
                   f'{esc(_show(c.value))}</title></text>')
        out.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{max(w, 0.5):.1f}" height="16" '
                   f'fill="{color}"/>')
        out.append(f'<text x="{width - 4}" y="{y + 16}" text-anchor="end" font-size="12" '
                   f'fill="#52606d">{esc(f"{c.contribution:+.4f}")}</text>')
    out.append("</svg>")
    return "".join(out)
