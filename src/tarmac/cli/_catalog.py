"""Catalog commands: copy a project's catalog to another database, adopt unknown lake tables."""

from __future__ import annotations

import typer

from tarmac.cli import app, open_project
from tarmac.cli._lake import JSON
from tarmac.cli._output import console, emit, err_console, print_json

catalog_app = typer.Typer(help="The metadata catalog: move it to another database, adopt "
                               "lake tables it does not know.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")

_COLUMNS = [("table", "table"), ("source_rows", "rows at source"), ("copied", "copied"),
            ("identical", "already there")]


@catalog_app.command("copy")
def copy(
    ctx: typer.Context,
    to: str = typer.Option(..., "--to", help="Destination catalog URL, e.g. "
                                             "postgresql://user:${PGPASSWORD}@host/db."),
    source: str | None = typer.Option(None, "--from", help="Source catalog URL (default: the "
                                                           "project's 'catalog:')."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be copied; write "
                                                          "nothing."),
    batch_size: int = typer.Option(5000, "--batch-size", min=1, help="Rows per batch."),
    as_json: bool = JSON,
) -> None:
    """Copy every catalog table (runs, lineage, audit chain, sources, features, models) to
    another database, verify its audit chain there, then point 'catalog:' at it.

    Safe to rerun: rows already there and identical are skipped; a destination that holds
    something else is refused and nothing is written."""
    from pathlib import Path

    from tarmac.admin import copy_catalog
    from tarmac.config import interpolate

    given = Path("the command line")
    result = copy_catalog(interpolate(to, path="--to", file=given),
                          source=None if source is None else
                          interpolate(source, path="--from", file=given),
                          project=(ctx.find_root().obj or {}).get("project"),
                          dry_run=dry_run, batch_size=batch_size)
    if as_json:
        print_json(result.to_dict())
        return
    title = ("dry run: would copy" if dry_run else "copied") + \
        f" {result.source} -> {result.destination}"
    emit([tc.to_dict() for tc in result.tables if tc.source_rows], _COLUMNS, as_json=False,
         title=title, empty="the source catalog is empty")
    if dry_run:
        console.print(f"{result.copied:,} of {result.source_rows:,} row(s) would be copied; "
                      "nothing was written")
        return
    console.print(f"[green]ok[/green]: {result.copied:,} row(s) copied in {result.seconds:.1f}s; "
                  f"audit chain verified at the destination ({result.audit_records:,} records, "
                  f"head {result.head_seq}:{result.head_hash})", soft_wrap=True)
    err_console.print("  [dim]next: set 'catalog:' in tarmac.yaml to the destination URL "
                      "(with ${VAR} for the password)[/dim]", soft_wrap=True)


@catalog_app.command("adopt")
def adopt(
    ctx: typer.Context,
    tables: list[str] | None = typer.Argument(None, help="Tables to adopt (default: every "
                                                         "Tarmac table the catalog lacks)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List them; register nothing."),
    as_json: bool = JSON,
) -> None:
    """Register lake tables Tarmac wrote that this catalog does not know, at their current
    version (one audited record each). Their earlier history stays in the old catalog."""
    from tarmac.lake.adopt import adopt as do_adopt

    p = open_project(ctx, check_lake=False)
    done = do_adopt(p, tables or None, dry_run=dry_run)
    rows = [{"table": a.table, "version": a.version, "rows": a.rows} for a in done]
    verb = "would adopt" if dry_run else "adopted"
    emit(rows, [("table", "table"), ("version", "version"), ("rows", "rows")],
         as_json=as_json, title=f"{verb} {len(rows)} table(s)",
         empty="nothing to adopt: the catalog knows every Tarmac table in the lake")


@catalog_app.command("claim")
def claim(ctx: typer.Context) -> None:
    """Hand the catalog to this project's current name (after renaming the project in
    tarmac.yaml); recorded in the audit trail with the old name."""
    from tarmac.admin import claim_catalog

    old, new = claim_catalog((ctx.find_root().obj or {}).get("project"))
    if old == new:
        console.print(f"the catalog already belongs to '{new}'")
        return
    console.print(f"[green]ok[/green]: the catalog now belongs to '{new}'"
                  + (f" (was '{old}')" if old else ""))
