"""``tarmac labels``: late labels, loaded into the ``labels`` lake table."""

from __future__ import annotations

from pathlib import Path

import typer

from tarmac.cli import app, open_project
from tarmac.cli._output import console, esc, print_json

labels_app = typer.Typer(help="Late labels: load outcomes that arrive after the predictions.",
                         no_args_is_help=True)
app.add_typer(labels_app, name="labels")


@labels_app.command("ingest")
def ingest(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A labels file: .csv, .tsv, .jsonl or .parquet.",
                                dir_okay=False),
    label_column: str = typer.Option(..., "--label-column", "-l",
                                     help="The column holding the true label."),
    id_column: str = typer.Option(None, "--id-column",
                                  help="The prediction id column (default: prediction_id)."),
    entity: str = typer.Option(None, "--entity",
                               help="The entity column (joined by entity and time instead)."),
    timestamp: str = typer.Option(None, "--timestamp",
                                  help="When each label was observed (for a join by entity)."),
    table: str = typer.Option("labels", "--table", help="The lake table to append to."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a line."),
) -> None:
    """Append the labels in FILE to the labels lake table (a versioned, audited write).

    The file needs the label column and either the prediction id or an entity column; a
    missing one is refused before anything is written.
    """
    from tarmac.monitoring import ingest_labels

    p = open_project(ctx)
    result = ingest_labels(p, file, label_column=label_column, id_column=id_column,
                           entity=entity, timestamp=timestamp, table=table)
    if as_json:
        print_json({"table": table, "version": result.version, "rows": result.rows_added})
        return
    console.print(f"appended {result.rows_added:,} label(s) to {esc(table)} "
                  f"(version {result.version})")
