"""``tarmac score``: batch-score SQL or a lake table with a model version into a lake table."""

from __future__ import annotations

from typing import Any

import typer

from tarmac.cli import app, open_project
from tarmac.cli._output import console, err_console, esc, print_json


@app.command()
def score(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model name."),
    input: str = typer.Option(..., "--input", "-i", metavar="SQL|TABLE",
                              help="The rows to score: SQL over the lake, or a table's name."),
    output: str = typer.Option(..., "--output", "-o", metavar="TABLE",
                               help="The lake table the scores go to (one atomic commit)."),
    version: int = typer.Option(None, "--version", "-v", help="Score with this version."),
    alias: str = typer.Option(None, "--alias", "-a",
                              help="Score with the version this alias points at "
                                   "(default: the champion)."),
    mode: str = typer.Option("overwrite", "--mode", help="overwrite or append the output."),
    timestamp: str = typer.Option(None, "--timestamp", metavar="COLUMN",
                                  help="The input column features are taken as of (when the "
                                       "input has several timestamp columns)."),
    allow_empty: bool = typer.Option(False, "--allow-empty",
                                     help="Write an empty output when the input has no rows "
                                          "(otherwise an error)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Score every input row and write the scores to a lake table, as one governed run.

    The output holds the input's other columns (keys, timestamps), score (+ label for
    classifiers), model, version, scored_at and reject_reason (rows with no value for any
    model input are kept, unscored, with the reason). Features are fetched point in time
    when the input has the entity keys but not the model's input columns.

    Example: tarmac score churn --input "SELECT customer_id, observed FROM labels" --output
    churn_scores
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if mode not in ("overwrite", "append"):
        raise typer.BadParameter(f"{mode!r}: expected overwrite or append", param_hint="--mode")
    p = open_project(ctx)
    with Progress(TextColumn("{task.description}"), BarColumn(bar_width=None),
                  MofNCompleteColumn(), TextColumn("rows"), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console,
                  disable=as_json or not err_console.is_terminal) as progress:
        bar: dict[str, Any] = {}

        def show(done: int, total: int) -> None:
            if "task" not in bar:
                bar["task"] = progress.add_task(f"scoring with {esc(model)}", total=total)
            progress.update(bar["task"], completed=done)

        result = p.models.score(model, input, output, version=version, alias=alias,
                                mode=mode, timestamp=timestamp, allow_empty=allow_empty,
                                progress=show)
    if as_json:
        print_json(result.to_dict())
        return
    console.print(f"[green]scored[/green] {result.rows_scored:,} of {result.rows_in:,} rows "
                  f"with [bold]{esc(model)} v{result.version}[/bold] into "
                  f"[bold]{esc(output)}[/bold]@{result.output_version} ({result.mode}, "
                  f"{result.seconds:.1f} s, {result.rows_per_second:,.0f} rows/s)")
    console.print(f"  features: {esc(result.features)}; run [dim]{result.run_id[:8]}[/dim]")
    for reason, rows in result.rejected.items():
        console.print(f"  [yellow]rejected[/yellow] {rows:,} rows (kept unscored, "
                      f"reject_reason set): {esc(reason)}")
    for w in result.warnings:
        console.print(f"  [yellow]warning:[/yellow] {esc(w)}")
