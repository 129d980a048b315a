"""``tarmac survey``: where the project's data lives and what blocks it, before loading any."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tarmac.cli import app, open_project
from tarmac.cli._output import console
from tarmac.errors import UsageError


@app.command()
def survey(
    ctx: typer.Context,
    sources: list[str] = typer.Argument(
        None, help="Sources to survey (default: every source declared in tarmac.yaml).",
        show_default=False),
    json_file: Path | None = typer.Option(
        None, "--json", help="Also write the full report as JSON to this file.",
        dir_okay=False, writable=True),
    html_file: Path | None = typer.Option(
        None, "--html", help="Also write a self-contained HTML report to this file.",
        dir_okay=False, writable=True),
    sample_rows: int = typer.Option(
        100_000, "--sample-rows", min=1, help="Rows sampled per stream (figures beyond the "
                                              "sample are estimates)."),
    stale_after: str = typer.Option(
        "7d", "--stale-after", help="Data whose newest record is older than this is stale "
                                    "(e.g. 12h, 7d, 2w)."),
) -> None:
    """Map the declared sources without loading them: rows, columns, keys, freshness, personal
    data, and the gaps that will block production ML. Exits 0 even when gaps are found."""
    from tarmac.ingest.report import to_html
    from tarmac.ingest.survey import parse_duration, render
    from tarmac.ingest.survey import survey as run_survey

    try:
        stale = parse_duration(stale_after)
    except UsageError as exc:
        raise UsageError(f"--stale-after: {exc.message}") from None
    p = open_project(ctx)
    report = run_survey(p, sources or None, sample_rows=sample_rows, stale_after=stale)
    render(report, console)
    for path, text in ((json_file, lambda: json.dumps(report.to_dict(), indent=2) + "\n"),
                       (html_file, lambda: to_html(report))):
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text(), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
        console.print(f"wrote {path}")
