"""``tarmac monitor``: evaluate monitors now, list and show their verdicts, write reports."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from tarmac.cli import app, open_project
from tarmac.cli._output import console, emit, err_console, esc, print_json, size, utc
from tarmac.errors import UsageError
from tarmac.humanize import duration

monitor_app = typer.Typer(help="Monitors: drift, data quality, performance with late labels "
                               "and SLOs, per window of served predictions.",
                          no_args_is_help=True)
app.add_typer(monitor_app, name="monitor")


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at {text[:40]!r} is not a time; give ISO 8601 such as "
                         "2026-06-01T12:00Z") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@monitor_app.command("run")
def run(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="Monitors to evaluate (default: all declared)."),
    at: str = typer.Option(None, "--at", help="Evaluate the window due at this time (ISO 8601, "
                                              "UTC); default now."),
    force: bool = typer.Option(False, "--force", help="Evaluate a window again even if it was "
                                                      "evaluated already."),
    no_alerts: bool = typer.Option(False, "--no-alerts", help="Do not send alerts."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Evaluate each monitor's window due now: drift, quality, performance, SLOs.

    Results go to the monitor_results lake table, alerts to the monitor's channels, and a
    decay or drift starts its retraining policy. Exit code 1 when any check fails (cron and
    CI friendly); a window evaluated already is not evaluated again (its stored verdict
    counts) unless --force.
    """
    from tarmac.monitoring.monitor import declared_monitors, run_monitor, window_due

    p = open_project(ctx)
    declared = declared_monitors(p)
    wanted = list(names or declared)
    if not wanted:
        raise UsageError(f"{p.features.definitions_path} declares no monitors",
                         hint="declare one with monitor(...) from tarmac.monitoring.declare")
    when = _when(at)
    out: list[dict[str, Any]] = []
    failed = False
    for name in wanted:
        evaluation = run_monitor(p, declared.get(name, name), at=when, force=force,
                                 alerts=not no_alerts)
        if evaluation is None:
            definition = declared[name]
            _, end = window_due(definition, when)
            done = [r for r in p.monitoring.runs(name, limit=50)
                    if r.window_end == int(end.timestamp() * 1_000_000)]
            row = done[0].summary if done and done[0].summary else {}
            verdict = done[0].verdict if done else "running"
            failed |= verdict == "failed"
            out.append({"monitor": name, "window_end": end.isoformat(), "verdict": verdict,
                        "skipped": "evaluated already" if done and done[0].status ==
                        "succeeded" else "another process is evaluating it",
                        "failing": row.get("failing", [])})
            continue
        failed |= evaluation.verdict == "failed"
        out.append({**evaluation.summary(), "seconds": round(evaluation.seconds, 3)})
    if as_json:
        print_json(out)
    else:
        for item in out:
            _print_summary(item)
    if failed:
        raise typer.Exit(1)


def _print_summary(item: dict[str, Any]) -> None:
    colour = {"failed": "red", "passed": "green"}.get(item["verdict"], "yellow")
    head = (f"[bold]{esc(item['monitor'])}[/bold] window ending {esc(item['window_end'])}: "
            f"[{colour}]{esc(item['verdict'])}[/{colour}]")
    if "skipped" in item:
        console.print(f"{head} ({esc(item['skipped'])}; --force to evaluate again)")
    else:
        console.print(f"{head} ({item['checks']} checks on {item['predictions']:,} predictions "
                      f"of v{item['version']}, {item['undecided']} undecided)")
    for f in item.get("failing", []):
        where = f"{f['check']}:{f['metric']}" + (f" '{f['column']}'" if f.get("column") else "")
        console.print(f"  [red]{esc(f['verdict'])}[/red] {esc(where)}: {esc(f['reason'])}")
    for a in item.get("alerts", []):
        sent = "delivered" if a["delivered"] else "NOT delivered"
        console.print(f"  alert {esc(a['state'])}: {esc(a['check'])} "
                      f"{esc(a['column'] or '')} ({sent})")
    if item.get("loop"):
        lp = item["loop"]
        console.print(f"  retraining {esc(lp['model'])}: {esc(lp['state'])}"
                      + (f" (v{lp['version']})" if lp.get("version") else "")
                      + (f": {esc(lp['reason'])}" if lp.get("reason") else ""))
    for lp in item.get("advanced", []):
        console.print(f"  retraining {esc(lp['model'])} v{lp.get('version')}: {esc(lp['state'])}")


@monitor_app.command("list")
def list_monitors(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Every declared monitor with its latest window's verdict and its last alert."""
    from tarmac.monitoring.alerts import alert_history
    from tarmac.monitoring.monitor import declared_monitors

    p = open_project(ctx)
    rows = []
    for name, d in declared_monitors(p).items():
        runs = p.monitoring.runs(name, limit=1)
        last = runs[0] if runs else None
        alerts = alert_history(p, name, limit=1)
        rows.append({"monitor": name, "model": d.model,
                     "every": duration(d.every.total_seconds()),
                     "window": duration(d.window.total_seconds()),
                     "checks": ", ".join(k for k in ("drift", "quality", "performance", "slo")
                                         if getattr(d, k) is not None),
                     "last_window": utc(last.window_end) if last else None,
                     "verdict": (last.verdict or last.status) if last else "never run",
                     "failing": last.failing if last else None,
                     "last_alert": f"{alerts[0].state} {alerts[0].check} "
                                   f"({alerts[0].outcome})" if alerts else None})
    emit(rows, [("monitor", "Monitor"), ("model", "Model"), ("every", "Every"),
                ("window", "Window"), ("checks", "Checks"), ("last_window", "Last window"),
                ("verdict", "Verdict"), ("failing", "Failing"), ("last_alert", "Last alert")],
         as_json=as_json, empty="no monitors declared in definitions.py")


@monitor_app.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The monitor."),
    windows: int = typer.Option(10, "--windows", "-n", help="Windows of trend to show."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """A monitor's latest verdict per check, the trend over recent windows, the last alerts
    and retraining loops."""
    from tarmac.monitoring.alerts import alert_history
    from tarmac.monitoring.monitor import definition_of, latest

    p = open_project(ctx)
    definition = definition_of(p, name)
    run, rows = latest(p, name)
    trend = p.monitoring.runs(name, limit=windows)
    alerts = alert_history(p, name, limit=5)
    loops = p.monitoring.retraining(monitor=name, limit=5)
    checks = [{**{k: r[k] for k in ("check", "metric", "column", "slice", "verdict", "value",
                                    "threshold", "effect_size", "effect_class", "n_current",
                                    "reason")},
               # a drift row's threshold cuts its effect size (PSI, JS), not its statistic
               "shown": r["effect_size"] if r["check"] == "drift" else r["value"]}
              for r in rows.to_pylist()]
    if as_json:
        print_json({"monitor": name, "model": definition.model,
                    "latest": run.to_dict() if run else None, "checks": checks,
                    "trend": [r.to_dict() for r in trend],
                    "alerts": [a.to_dict() for a in alerts],
                    "loops": [lp.to_dict() for lp in loops]})
        return
    if run is None:
        console.print(f"monitor {esc(name)} has not been evaluated yet: "
                      f"tarmac monitor run {esc(name)}")
        return
    emit(checks, [("check", "Check"), ("metric", "Metric"), ("column", "Column"),
                  ("slice", "Slice"), ("verdict", "Verdict"), ("shown", "Value"),
                  ("threshold", "Threshold"), ("effect_class", "Effect"),
                  ("n_current", "n"), ("reason", "Why")],
         as_json=False, title=f"{name}: window ending {utc(run.window_end)} "
                              f"({run.verdict or run.status})")
    emit([{"window_end": utc(r.window_end), "verdict": r.verdict or r.status,
           "checks": r.checks, "failing": r.failing, "undecided": r.undecided,
           "attempts": r.attempts} for r in trend],
         [("window_end", "Window end"), ("verdict", "Verdict"), ("checks", "Checks"),
          ("failing", "Failing"), ("undecided", "Undecided"), ("attempts", "Attempts")],
         as_json=False, title="Trend")
    emit([{"at": utc(a.at), "state": a.state, "check": a.check, "column": a.column or None,
           "channel": a.channel, "outcome": a.outcome} for a in alerts],
         [("at", "At"), ("state", "State"), ("check", "Check"), ("column", "Column"),
          ("channel", "Channel"), ("outcome", "Outcome")],
         as_json=False, title="Last alerts", empty="no alerts sent")
    if loops:
        emit([{"started": utc(lp.started_at), "state": lp.state, "version": lp.version,
               "champion": lp.champion, "reason": lp.reason} for lp in loops],
             [("started", "Started"), ("state", "State"), ("version", "Version"),
              ("champion", "Champion before"), ("reason", "Why")],
             as_json=False, title="Retraining")


@app.command("scheduler")
def scheduler(
    ctx: typer.Context,
    monitors: list[str] = typer.Option(None, "--monitor", "-m",
                                       help="Run only these monitors (default: all declared)."),
    once: bool = typer.Option(False, "--once", help="Evaluate what is due now, then exit."),
    poll: float = typer.Option(30.0, "--poll", help="Longest sleep between passes, seconds."),
    catch_up: int = typer.Option(48, "--catch-up",
                                 help="Most windows per monitor evaluated after downtime."),
) -> None:
    """Run monitors on their schedule (long-running; one scheduler per project).

    Each monitor's windows end on multiples of its `every`; every window that has ended and
    not been evaluated is evaluated once, oldest first, including the ones missed while the
    scheduler was down (up to --catch-up). Evaluations start retraining per each monitor's
    policy and move running canaries on. SIGTERM/Ctrl-C stop it after the evaluation in hand.
    The same windows can be evaluated from cron with `tarmac monitor run` instead: both claim
    each window in the catalog, so none is evaluated twice.
    """
    import logging

    from tarmac.monitoring.monitor import Evaluation
    from tarmac.monitoring.scheduler import Scheduler

    p = open_project(ctx)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    def said(evaluation: Evaluation) -> None:
        _print_summary({**evaluation.summary(), "seconds": evaluation.seconds})

    worker = Scheduler(p, monitors=monitors or None, poll=poll, catch_up=catch_up,
                       on_evaluation=said)
    ticks = worker.run(once=once, handle_signals=True)
    errors = [e for t in ticks for e in t.errors]
    for name, error in errors:
        err_console.print(f"[red]monitor {esc(name)} failed:[/red] {esc(error)}")
    if once:
        evaluated = sum(len(t.evaluated) for t in ticks)
        console.print(f"evaluated {evaluated} window(s), skipped "
                      f"{sum(t.skipped for t in ticks)} held by another process")
    if errors:
        raise typer.Exit(1)


@monitor_app.command("loops")
def loops(
    ctx: typer.Context,
    model: str = typer.Argument(None, help="Only this model's loops."),
    open_only: bool = typer.Option(False, "--open", help="Only loops still going (training, "
                                   "awaiting approval, canary)."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Retraining loops monitors started: state, versions, the run that triggered each."""
    from tarmac.cli._loop import list_loops

    list_loops(ctx, model, open_only, limit, as_json)


@monitor_app.command("report")
def report(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The monitor's name."),
    output: Path = typer.Option(None, "--output", "-o", dir_okay=False,
                                help="The HTML file to write (default: NAME-report.html)."),
    windows: int = typer.Option(30, "--windows", "-n", min=1,
                                help="How many of the latest evaluated windows to show."),
) -> None:
    """Write one self-contained HTML page about monitor NAME: the latest window's verdict and
    what fails, drift per feature (reference vs current distribution, effect size per window
    against its threshold), data quality, performance and SLO trends, and the alerts sent.

    The page has inline CSS and SVG only (no script, nothing fetched): it opens offline and
    can be attached to a ticket. Example: tarmac monitor report churn -o churn.html
    """

    p = open_project(ctx)
    path = output if output is not None else Path(f"{name}-report.html")
    if path.is_dir():
        raise UsageError(f"--output {path} is a folder; give a file name such as "
                         f"{path / (name + '-report.html')}")
    page = p.monitoring.report(name, windows=windows)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(path)  # a reader never sees half a page
    console.print(f"[green]wrote[/green] {esc(path)} ({size(len(page.encode()))})",
                  soft_wrap=True)
