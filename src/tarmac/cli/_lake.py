"""Lake commands: tables, tag, sql, history, compact, vacuum."""

from __future__ import annotations

from typing import Any

import typer

from tarmac.cli import app, open_project
from tarmac.cli._output import age, console, emit, esc, human, print_json, size
from tarmac.errors import UsageError

JSON = typer.Option(False, "--json", help="Print a JSON array of objects instead of a table.")


@app.command()
def tables(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Lake tables: name, version, rows, size, last write, owner, tags, health (every data
    file of the current version present; `tarmac doctor` checks more)."""
    from tarmac.cli._doctor import health_label, table_health

    p = open_project(ctx)
    datasets = p.datasets()
    rows = [(d.to_dict() if as_json else
             d.to_dict() | {"size": size(d.bytes), "last_write": age(d.updated_at)})
            | {"health": health_label(table_health(p, d.name, d.version))} for d in datasets]
    emit(rows, [("name", "table"), ("version", "version"), ("rows", "rows"), ("size", "size"),
                ("last_write", "last write"), ("last_actor", "by"), ("owner", "owner"),
                ("tags", "tags"), ("health", "health")],
         as_json=as_json, empty="no tables yet: write one with p.lake.write(...) or run "
                                "`tarmac demo`")


@app.command()
def tag(
    ctx: typer.Context,
    table: str = typer.Argument(..., help="A lake table."),
    assignments: list[str] = typer.Argument(
        ..., help="COLUMN=TAG[,TAG...]: the column's tags, replacing its old ones "
                  "(COLUMN= clears them). E.g. email=pii customer_id=subject:customer_id"),
    as_json: bool = JSON,
) -> None:
    """Tag columns of a table: `pii`, `email`, `phone`... are masked for readers without
    read:pii where access is enforced, and `subject:KEY` marks a column that holds a data
    subject's KEY for `tarmac erase`. A governed change (write on the table), audited.

    Example: tarmac tag customers email=email phone=pii
    """
    column_tags: dict[str, list[str]] = {}
    for item in assignments:
        column, sep, value = item.partition("=")
        if not sep or not column.strip():
            raise UsageError(f"{item!r}: expected COLUMN=TAG[,TAG...] (COLUMN= clears the "
                             "column's tags)", hint="e.g. tarmac tag customers email=pii")
        tags = [x.strip() for x in value.split(",") if x.strip()]
        bad = [x for x in tags if not all(ch.isalnum() or ch in "_-:." for ch in x)]
        if bad:
            raise UsageError(f"{item!r}: tag {bad[0]!r} may hold letters, digits and _ - : . "
                             "only")
        if column.strip() in column_tags:
            raise UsageError(f"column {column.strip()!r} is given twice")
        column_tags[column.strip()] = tags
    p = open_project(ctx)
    p.lake.annotate(table, column_tags=column_tags)
    info = p.dataset(table)
    shown = {c.name: list(c.tags) for c in (info.columns if info else []) if c.tags}
    if as_json:
        print_json({"table": table, "column_tags": shown})
        return
    for column in column_tags:
        now = ", ".join(shown.get(column, [])) or "(no tags)"
        console.print(f"{esc(table)}.{esc(column)}: {esc(now)}")


@app.command()
def sql(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="DuckDB SQL; lake tables are referenced by name."),
    as_of: list[str] = typer.Option(
        [], "--as-of", help="Pin a table: TABLE=VERSION or TABLE=2026-01-31T12:00:00Z "
                            "(repeatable)."),
    as_json: bool = JSON,
    max_rows: int = typer.Option(50, "--max-rows", help="Rows to show in the terminal table."),
) -> None:
    """Query lake tables with SQL (DuckDB, in process), optionally time-travelling per table.

    Read-only: statements other than queries (CREATE, INSERT, COPY, ATTACH, INSTALL, SET...)
    are refused; write tables through p.lake, which the ledger records.
    """
    pins = _parse_pins(as_of)
    p = open_project(ctx)
    result = p.sql(query, as_of=pins)
    rows = result.slice(0, None if as_json else max_rows).to_pylist()
    if as_json:
        print_json(rows)
        return
    emit(rows, [(c, c) for c in result.column_names], as_json=False, empty="(no rows)")
    shown = min(len(result), max_rows)
    note = f" (showing {shown})" if shown < len(result) else ""
    console.print(f"[dim]{len(result):,} row(s){note}[/dim]")


def _parse_pins(values: list[str]) -> dict[str, Any]:
    pins: dict[str, Any] = {}
    for value in values:
        table, sep, at = value.partition("=")
        if not sep or not table or not at:
            raise UsageError(f"--as-of {value!r}: expected TABLE=VERSION or TABLE=TIMESTAMP")
        pins[table.strip()] = int(at) if at.strip().isdigit() else at.strip().replace("Z",
                                                                                      "+00:00")
    return pins


@app.command()
def history(
    ctx: typer.Context,
    table: str = typer.Argument(..., help="Lake table."),
    limit: int = typer.Option(20, "--limit", "-n", help="Newest versions to show."),
    as_json: bool = JSON,
) -> None:
    """A table's Delta versions: time, operation, rows added/removed, run id, actor."""
    p = open_project(ctx)
    rows = p.lake.history(table, limit=limit)
    for r in rows:
        if as_json:
            r["time"] = r["time"].isoformat()
        else:
            r["run_id"] = (r["run_id"] or "-")[:8]
    emit(rows, [("version", "version"), ("time", "time"), ("operation", "operation"),
                ("rows_added", "+rows"), ("rows_removed", "-rows"), ("run_id", "run"),
                ("actor", "actor")], as_json=as_json, title=None if as_json else f"{table}")


@app.command()
def compact(
    ctx: typer.Context,
    table: str = typer.Argument(..., help="Lake table."),
    z_order: list[str] = typer.Option([], "--z-order", help="Cluster by these columns."),
) -> None:
    """Rewrite a table's small files into large ones (the data does not change)."""
    p = open_project(ctx)
    m = p.lake.compact(table, z_order=z_order or None)
    console.print(f"{esc(table)}: {human(m.get('numFilesRemoved', 0))} file(s) rewritten into "
                  f"{human(m.get('numFilesAdded', 0))}")


@app.command()
def vacuum(
    ctx: typer.Context,
    table: str = typer.Argument(..., help="Lake table."),
    retain: str = typer.Option("7d", "--retain", help="Keep files needed by versions this recent."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be deleted."),
) -> None:
    """Delete data files no version within the retention window needs."""
    p = open_project(ctx)
    removed = p.lake.vacuum(table, retain=retain, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{esc(table)}: {verb} {len(removed):,} file(s) older than the {esc(retain)} "
                  "window")
