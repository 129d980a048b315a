"""``tarmac predictions``: the prediction log of an endpoint, newest first."""

from __future__ import annotations

import difflib
import json
from enum import StrEnum
from typing import Any

import typer

from tarmac.cli import app, open_project
from tarmac.cli._output import console, emit, print_json
from tarmac.errors import UsageError

JSON_FIELDS = ("features", "feature_times", "feature_status", "request", "label")


class Format(StrEnum):
    table = "table"
    json = "json"


@app.command()
def predictions(
    ctx: typer.Context,
    endpoint: str = typer.Argument(..., help="The endpoint (model name) served."),
    since: str = typer.Option("1h", "--since",
                              help="How far back: a duration (30m, 1h, 2d) or an ISO time."),
    limit: int = typer.Option(50, "--limit", "-n", min=0, help="Newest predictions to show."),
    fmt: Format = typer.Option(Format.table, "--format", "-f",
                               help="table for people, json (an array of objects) for scripts."),
) -> None:
    """Logged predictions of ENDPOINT, newest first: model@version, role, score, label,
    latency and the features used (json shows every field).

    Predictions are in the table within about a second of being answered (the log's flush
    interval); the count of those still on their way is shown under the table.
    """
    from tarmac.serving.predlog import log_totals, parse_since, read_predictions

    start = parse_since(since)  # a bad --since is refused before the project opens
    p = open_project(ctx)
    rows = read_predictions(p, endpoint, since=start, limit=limit)
    if rows.num_rows == 0:
        _explain_empty(p, endpoint, since)
    out = [_row(r) for r in rows.to_pylist()]
    if fmt is Format.json:
        print_json(out)
        return
    for r in out:
        r["model"] = f"{r['model']}@{r['version']}"
        r["status"] = _status_summary(r["feature_status"])
    emit(out, [("time", "time"), ("id", "id"), ("model", "model"), ("role", "role"),
               ("score", "score"), ("label", "label"), ("latency_ms", "ms"),
               ("status", "features"), ("error", "error")], as_json=False)
    pending = log_totals(p).endpoints.get(endpoint)
    note = f"; {pending.pending:,} more not flushed yet" if pending and pending.pending else ""
    console.print(f"[dim]{len(out):,} prediction(s) since {start:%Y-%m-%d %H:%M:%S} UTC"
                  f"{note}[/dim]")


def _row(row: dict[str, Any]) -> dict[str, Any]:
    for key in JSON_FIELDS:
        if row.get(key) is not None:
            row[key] = json.loads(row[key])
    return row


def _status_summary(status: dict[str, str] | None) -> str:
    """``{"plan": "present", "tenure": "stale"}`` -> ``1 present, 1 stale``."""
    counts: dict[str, int] = {}
    for value in (status or {}).values():
        counts[value] = counts.get(value, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


def _explain_empty(p: Any, endpoint: str, since: str) -> None:
    """No rows: an endpoint that never logged anything is an error naming the ones that did;
    a quiet one is just empty."""
    from tarmac.serving.predlog import log_totals

    known = sorted(log_totals(p).endpoints)
    if endpoint in known:
        return
    close = difflib.get_close_matches(endpoint, known, n=3)
    hint = (f"did you mean {', '.join(close)}?" if close else
            f"endpoints with predictions: {', '.join(known)}" if known else
            "nothing has been logged yet: serve a model with `tarmac serve`")
    raise UsageError(f"no predictions logged for endpoint '{endpoint}' (since {since} or "
                     "ever)", hint=hint)
