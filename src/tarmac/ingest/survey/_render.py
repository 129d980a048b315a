"""The survey as text for people: the terminal tables ``tarmac survey`` prints.

The SDK (``survey()``) returns a ``SurveyReport``; only the CLI and the HTML report render it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from tarmac.humanize import size
from tarmac.ingest.survey._gaps import format_age
from tarmac.ingest.survey._report import Freshness, StreamProfile, SurveyReport
from tarmac.profile.pii import PiiFinding

if TYPE_CHECKING:
    from rich.console import Console


def rows_text(stream: StreamProfile) -> str:
    """Total rows: exact, '~' estimated, or '>=N' when the source does not say (an API)."""
    if stream.rows is None:
        return f">={stream.sampled_rows:,}" if stream.sampled_rows else "?"
    return approx(stream.rows, stream.rows_estimated)


def approx(value: int | None, estimated: bool) -> str:
    """A count for people, with '~' when it is an estimate and '?' when unknown."""
    if value is None:
        return "?"
    return f"{'~' if estimated else ''}{value:,}"


def freshness_text(f: Freshness | None) -> str:
    """'updated_at 2025-06-30 (12d old)' or the cursor's newest value."""
    if f is None:
        return "-"
    mark = "" if f.exact else "~"
    if isinstance(f.newest, datetime) and f.age_seconds is not None:
        return f"{f.column} {f.newest:%Y-%m-%d} ({mark}{format_age(f.age_seconds)} old)"
    return f"{f.column} max {mark}{f.newest}"


def pii_text(findings: Sequence[PiiFinding]) -> str:
    """'email, phone (untagged)'."""
    if not findings:
        return "-"
    cols: dict[str, bool] = {}
    for p in findings:
        cols[p.column] = cols.get(p.column, True) and p.tagged
    return ", ".join(f"{c}{'' if tagged else ' (untagged)'}" for c, tagged in cols.items())


def render(report: SurveyReport, console: Console) -> None:
    """The terminal summary: one table per source, then the gaps sorted by severity."""
    from rich.markup import escape
    from rich.table import Table

    if not report.sources:
        console.print("[dim]no sources declared: add them under `sources:` in tarmac.yaml[/dim]")
        return
    colours = {"reachable": "green", "unreachable": "red", "failed": "red",
               "not probed": "yellow"}
    for src in report.sources:
        state = f"[{colours[src.status]}]{src.status}[/]"
        title = (f"[bold]{escape(src.name)}[/bold] ({src.type}) {escape(src.location)} - "
                 f"{state}" + (f" [dim]{src.seconds:.1f}s[/dim]" if src.reachable else ""))
        if src.status != "reachable" or not src.streams:
            console.print(title)
            why = src.error or src.note or "no streams found"
            console.print(f"  {escape(why)}", style="red" if src.error else "dim",
                          soft_wrap=True)
            console.print()
            continue
        table = Table(title=title, title_justify="left", header_style="bold")
        for header, justify in (("stream", "left"), ("rows", "right"), ("parts", "right"),
                                ("size", "right"), ("columns", "right"), ("key dups", "right"),
                                ("freshness", "left"), ("PII columns", "left")):
            table.add_column(header, justify=justify, overflow="fold")  # type: ignore[arg-type]
        for st in src.streams:
            dups = ("-" if st.key is None else "missing key" if st.key.missing
                    else approx(st.key.duplicate_values, st.key.estimated))
            table.add_row(escape(st.name), rows_text(st),
                          approx(st.parts, False) if st.parts is not None else "-",
                          size(st.bytes), str(len(st.columns)), dups,
                          escape(freshness_text(st.freshness)), escape(pii_text(st.pii)))
        console.print(table)
        console.print()
    if report.gaps:
        table = Table(title="[bold]gaps[/bold]", title_justify="left", header_style="bold")
        for header in ("severity", "source", "stream", "problem", "fix"):
            table.add_column(header, overflow="fold")
        styles = {"error": "bold red", "warning": "yellow", "info": "dim"}
        for g in report.gaps:
            table.add_row(f"[{styles[g.severity]}]{g.severity}[/]", escape(g.source),
                          escape(g.stream or "-"), escape(g.message), escape(g.fix))
        console.print(table)
    else:
        console.print("[green]no gaps found[/green]")
    console.print(f"[bold]{report.headline()}[/bold] [dim](sampled up to "
                  f"{report.sample_rows:,} rows per stream; '~' marks estimates; "
                  f"{report.seconds:.1f}s)[/dim]")
