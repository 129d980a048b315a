"""Ingestion commands: ingest, sources, quarantine."""

from __future__ import annotations

from typing import Any

import typer

from tarmac.cli import app, open_project
from tarmac.cli._output import console, emit, err_console, esc, human, print_json, size

JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


@app.command()
def ingest(
    ctx: typer.Context,
    sources: list[str] = typer.Argument(None, help="Sources to load (default: all but streams)."),
    full_refresh: bool = typer.Option(False, "--full-refresh",
                                      help="Reload everything: replace the tables, reset cursors "
                                           "and the files seen."),
    as_json: bool = JSON,
) -> None:
    """Load declared sources into the lake: contracts applied, bad records quarantined.

    Each source is one run; a progress bar per source while it loads, then a summary table.
    Exit code 1 if any source failed (the others still load).
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    p = open_project(ctx)
    bars: dict[tuple[str, str], Any] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(bar_width=None, pulse_style="cyan"),
                  TextColumn("{task.fields[rows]:>12} rows {task.fields[size]:>9}"),
                  TimeElapsedColumn(), console=err_console,
                  disable=as_json or not err_console.is_terminal, transient=False) as progress:

        def show(event: Any) -> None:
            key = (event.source, event.stream)
            if key not in bars:
                bars[key] = progress.add_task(_label(event), total=None, rows="0", size="")
            done = event.phase in ("done", "failed")
            progress.update(bars[key], rows=f"{event.rows_read:,}", size=size(event.bytes_read),
                            description=_label(event), total=1 if done else None,
                            completed=1 if done else 0)

        results = p.ingest(sources or None, full_refresh=full_refresh, progress=show)
    if as_json:
        print_json([r.to_dict() for r in results])
    else:
        rows = [r.to_dict() | {"size": size(r.bytes_read), "time": f"{r.seconds:.1f}s",
                               "table": r.table if r.stream == r.source or r.table == r.stream
                               else f"{r.table} ({r.stream})"} for r in results]
        emit(rows, [("source", "source"), ("table", "table"), ("status", "status"),
                    ("rows_read", "read"), ("rows_loaded", "loaded"),
                    ("rows_quarantined", "quarantined"), ("duplicates", "duplicates"),
                    ("size", "bytes"), ("time", "time"), ("version", "version")],
             as_json=False, title="ingest")
        for r in results:
            for d in r.drift:
                console.print(f"[yellow]schema drift[/yellow] in {esc(r.source)}: {esc(d)}")
            for load_id in r.recovered:
                console.print(f"[cyan]recovered[/cyan] {esc(r.source)}: finished load {load_id} "
                              "that an earlier process staged before it stopped")
            if r.status == "failed":
                err_console.print(f"[bold red]error:[/bold red] {esc(r.error)}", soft_wrap=True)
        quarantined = sum(r.rows_quarantined for r in results)
        if quarantined:
            console.print(f"[dim]{quarantined:,} record(s) quarantined: see `tarmac quarantine`"
                          "[/dim]")
    if results.failed:
        raise typer.Exit(1)


def _label(event: Any) -> str:
    name = event.source if event.stream == event.source else f"{event.source}.{event.stream}"
    mark = {"done": "[green]✓[/green]", "failed": "[red]✗[/red]"}.get(event.phase, " ")
    phase = "" if event.phase in ("done", "failed", "reading") else f" ({event.phase})"
    return f"{mark} {esc(name)}{phase}"


@app.command()
def sources(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Declared sources: type, location, target table, mode, last load, cursor, rows, status."""
    from tarmac.ingest.status import source_status

    rows = source_status(open_project(ctx))
    if as_json:
        print_json(rows)
        return
    emit(rows, [("source", "source"), ("type", "type"), ("location", "location"),
                ("table", "table"), ("mode", "mode"), ("status", "last status"),
                ("last_load", "last load"), ("cursor", "cursor"), ("rows", "rows"),
                ("loads", "loads")],
         as_json=False, empty="no sources declared: add a `sources:` block to tarmac.yaml")
    for row in rows:
        if row["status"] == "failed" and row["error"]:
            err_console.print(f"[red]{esc(row['source'])}[/red]: {esc(human(row['error']))}",
                              soft_wrap=True)


@app.command()
def quarantine(
    ctx: typer.Context,
    source: str = typer.Argument(None, help="Only records rejected from this source."),
    limit: int = typer.Option(50, "--limit", "-n", help="Most recent records to show."),
    as_json: bool = JSON,
) -> None:
    """Rejected records: source, table, reason, column, value, and the run that rejected them."""
    from tarmac.errors import UsageError

    p = open_project(ctx)
    if source is not None and source not in p.sources:
        raise UsageError(f"unknown source '{source}' (declared: {', '.join(p.sources)})")
    if not p.lake.exists("quarantine"):
        if as_json:
            print_json([])
        else:
            console.print("[dim]nothing quarantined yet[/dim]")
        return
    # a declared source's name is letters, digits, '_', '.', '-' (checked above): safe inline
    where = f"WHERE source = '{source}'" if source else ""
    sql = (f"SELECT rejected_at, source, \"table\", reason, \"column\", value, origin, run_id, "
           f"record FROM quarantine {where} ORDER BY rejected_at DESC LIMIT {int(limit)}")
    total_sql = f"SELECT count(*) AS n FROM quarantine {where}"
    result = p.sql(sql).to_pylist()
    total = p.sql(total_sql).to_pylist()[0]["n"]
    if as_json:
        print_json(result)
        return
    emit(result, [("rejected_at", "rejected at"), ("source", "source"), ("table", "table"),
                  ("reason", "reason"), ("value", "value"), ("origin", "from"),
                  ("run_id", "run")],
         as_json=False, empty="nothing quarantined" + (f" from {source}" if source else ""))
    if total > len(result):
        console.print(f"[dim]{total:,} record(s) in all; showing the newest {len(result)} "
                      "(--limit N, --json for the raw records)[/dim]")
