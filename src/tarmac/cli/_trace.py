"""``tarmac trace ID``: why one logged prediction came out as it did (``p.trace``)."""

from __future__ import annotations

from pathlib import Path

import typer

from tarmac.cli import app, open_project
from tarmac.cli._output import console, esc, print_json
from tarmac.errors import UsageError


@app.command()
def trace(
    ctx: typer.Context,
    prediction_id: str = typer.Argument(..., metavar="ID",
                                        help="The prediction's id (an answer's predictions[].id)."),
    as_json: bool = typer.Option(False, "--json", help="Print the trace as JSON."),
    as_html: bool = typer.Option(False, "--html",
                                 help="Write a self-contained HTML page (with -o)."),
    output: Path | None = typer.Option(None, "--output", "-o", dir_okay=False,
                                       help="File for --html (default: trace-ID.html)."),
) -> None:
    """The decision trace of one prediction: time, endpoint, model@version and its role, every
    feature value with its event time, status and origin (view version, source table
    versions), the request and the output; the version's training run, gate report and
    promotion; and each feature's contribution to the output (exact for linear and
    LightGBM/XGBoost models, a seeded permutation-sampling estimate otherwise).
    """
    if as_json and as_html:
        raise UsageError("give --json or --html, not both")
    if output is not None and not as_html:
        raise UsageError("-o/--output is the file of --html",
                         hint="tarmac trace ID --html -o trace.html")
    p = open_project(ctx)
    t = p.trace(prediction_id)
    if as_json:
        print_json(t.to_dict())
        return
    if as_html:
        target = output or Path(f"trace-{t.id}.html")
        target.write_text(t.to_html(), encoding="utf-8")
        console.print(f"wrote {esc(target)} ({target.stat().st_size:,} bytes)")
        return
    console.print(t)
