"""Project commands: init, demo, demo-api and info."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import typer
from rich.panel import Panel

from tarmac.cli import app
from tarmac.cli._output import console, emit, esc, human, print_json
from tarmac.errors import UsageError

SIZES = ("small", "medium", "large")


@app.command()
def init(
    directory: Path = typer.Argument(..., help="Folder for the new project (created if needed)."),
    name: str | None = typer.Option(None, "--name", help="Project name (default: folder name)."),
) -> None:
    """Scaffold tarmac.yaml, definitions.py and .gitignore. Refuses to overwrite."""
    from tarmac.project import scaffold

    root = scaffold(directory, name=name)  # not opened: the backends can still be re-pointed
    console.print(f"created project [bold]{name or root.name}[/bold] in {root}\n"
                  f"  next: cd {directory} && tarmac tables")


@app.command()
def demo(
    directory: Path = typer.Argument(Path("tarmac-demo"),
                                     help="Folder for the demo project (reset if it is one)."),
    size: str = typer.Option("small", "--size", help="small, medium or large (millions of "
                                                     "events)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same data."),
    data_only: bool = typer.Option(False, "--data-only", help="Only generate the messy sources."),
    as_of: str = typer.Option(None, "--as-of", help="The demo's clock: its data ends on this "
                                                    "day (YYYY-MM-DD; default: 3 days ago). The "
                                                    "same seed and as-of date give the same data."),
    loop: bool = typer.Option(True, "--loop/--no-loop",
                              help="Tell the last chapter: prices rise, the monitor flags drift "
                                   "and decay, a retrained model takes over (about 13 s)."),
) -> None:
    """Build the demo company's project and run the story so far."""
    if size not in SIZES:
        raise UsageError(f"--size {size!r}: expected one of {', '.join(SIZES)}")
    day = _day(as_of) if as_of else None
    from tarmac.demo.story import run_demo

    with console.status("starting") as status:

        def step(message: str) -> None:
            status.update(message)
            console.print(f"• {esc(message)}")

        report = run_demo(directory, size=size, seed=seed, data_only=data_only, as_of=day,
                          step=step, loop=loop)
    emit(report.sources, [("source", "source"), ("kind", "kind"), ("records", "raw records"),
                          ("location", "where it lives")], as_json=False,
         title="Kestrel Mobile's data, scattered and messy on purpose")
    if report.data_only:
        console.print(f"\ndata written to {esc(report.root / 'data')}")
        return
    console.print(f"[bold]survey:[/bold] {esc(report.survey_headline)} "
                  f"(report: {esc(report.root / 'survey.html')})")
    emit(report.loaded, [("table", "lake table"), ("source", "from"), ("read", "read"),
                         ("rows", "loaded"), ("quarantined", "quarantined"),
                         ("duplicates", "duplicates"), ("version", "version")],
         as_json=False, title="What the lake holds now")
    emit(report.quarantined, [("source", "source"), ("reason", "why records were quarantined"),
                              ("records", "records")],
         as_json=False, title="Quarantine: the messy records, kept with their reasons")
    if report.training:
        t = report.training
        emit(report.features, [("view", "feature view"), ("registered", "version"),
                               ("mode", "materialized"), ("rows", "rows read"),
                               ("entities", "customers online"), ("seconds", "seconds")],
             as_json=False, title="Features: defined once, offline and online")
        thin = sorted(t["coverage"].items(), key=lambda kv: kv[1])[:3]
        console.print(
            f"[bold]training set:[/bold] churn_training v{t['version']}: {t['rows']:,} labelled "
            f"customers ({t['positives']:,} churned) x {t['features']} features, each as of the "
            f"customer's observation date; least covered: "
            + ", ".join(f"{f} {c:.0%}" for f, c in thin))
        mark = ("[green]consistent[/green]" if report.served.get("ok")
                else "[red]NOT CONSISTENT[/red]")
        console.print(f"[bold]online vs offline:[/bold] {mark}: "
                      f"{esc(report.served.get('check'))}")
        if report.served.get("http"):
            console.print(f"[bold]served over HTTP:[/bold] {esc(report.served['http'])}")
    if report.models:
        emit(report.models, [("step", "churn model"), ("detail", "")], as_json=False,
             title="Models: trained, gated, promoted, blocked, rolled back")
    if report.serving:
        _serving(report.serving)
    if report.streams:
        mark = "[green]exactly once[/green]" if report.streams["ok"] else "[red]NOT EXACT[/red]"
        console.print(f"[bold]streams:[/bold] {mark}: {esc(report.streams['check'])}")
    if report.monitoring:
        m = report.monitoring
        emit(m["steps"], [("step", "closed loop"), ("detail", "")], as_json=False,
             title="Monitoring: prices rise, the monitor notices, a retrained model takes over")
        mark = "[green]closed[/green]" if m.get("ok") else "[red]NOT CLOSED[/red]"
        console.print(f"[bold]the loop:[/bold] {mark}: {esc(m.get('check'))}")
        if m.get("trace"):
            console.print(f"[bold]a decision traced[/bold] (tarmac trace {esc(m['trace']['id'])}):"
                          f"\n{esc(m['trace']['summary'])}")
    if report.governance:
        g = report.governance
        mark = "[green]refused[/green]" if g.get("ok") else "[red]NOT REFUSED[/red]"
        console.print(f"[bold]governance:[/bold] {g['user']} ({g['role']}) promoting churn "
                      f"v{g['version']}: {mark}: {esc(g.get('refused') or '')} "
                      f"[dim](audit record #{g.get('denial')}: access.denied)[/dim]")
    chain = "[green]intact[/green]" if report.chain_ok else "[red]BROKEN[/red]"
    console.print(Panel.fit(
        f"Kestrel Mobile keeps its customers in a CRM database, orders in another, products in "
        f"CSV files whose columns changed, clicks in JSON lines that arrive late and broken, and "
        f"tickets behind an HTTP API. Tarmac surveyed them, loaded them through its connectors "
        f"under the contracts in tarmac.yaml into Delta tables in {esc(report.root / 'lake')}, put "
        f"every record that broke a contract in quarantine with the reason, recorded "
        f"{report.runs} runs with their inputs and outputs, and {report.audit_records} audit "
        f"records (hash chain {chain}). Then it registered the customer features in "
        f"definitions.py, built a point-in-time-correct churn training set, materialized the "
        f"features online and served them. Finally it trained a churn model, gated and "
        f"promoted it, blocked a worse variant, and rolled back the one forced through. "
        f"Then it served the champion over HTTP, put a challenger on 10% of the customers as "
        f"a canary and the worse variant in shadow, and reconciled every answer with the "
        f"prediction log. Live clicks then came in on a stream and landed in the lake exactly "
        f"once. Then prices rose: the served inputs drifted, late labels showed the champion "
        f"decaying, the monitor alerted a local webhook, and a retrained version went through "
        f"its gates and a canary to become champion.\n\n"
        f"Try next:\n"
        f"  cd {esc(report.root)}\n"
        f"  tarmac sources\n"
        f"  tarmac quarantine orders\n"
        f"  tarmac survey --html survey.html\n"
        f"  tarmac demo-api &        # the tickets API again (the demo stopped its own)\n"
        f"  tarmac ingest            # again: only what is new is read\n"
        f"  tarmac tables\n"
        f"  tarmac sql \"SELECT region, count(*) AS customers FROM customers GROUP BY 1\"\n"
        f"  tarmac history customers\n"
        f"  tarmac sql --as-of customers=0 \"SELECT count(*) FROM customers\"\n"
        f"  tarmac lineage customer_activity\n"
        f"  tarmac features list\n"
        f"  tarmac features show customer_clicks\n"
        f"  tarmac features get churn --entity customer_id=10001\n"
        f"  tarmac features check churn\n"
        f"  tarmac serve             # then POST /features, /v1/predict/churn (docs at /docs)\n"
        f"  tarmac runs --model churn\n"
        f"  tarmac models show churn\n"
        f"  tarmac validate churn 2 --format markdown\n"
        f"  tarmac lineage model:churn\n"
        f"  tarmac train churn --param C=0.5\n"
        f"  tarmac predictions churn --since 1h\n"
        f"  tarmac sql \"SELECT role, version, count(*) FROM predictions GROUP BY ALL\"\n"
        f"  tarmac deploy status churn\n"
        f"  tarmac stream status\n"
        f"  tarmac stream tail clicks -n 5\n"
        f"  tarmac monitor show churn\n"
        f"  tarmac monitor report churn -o churn.html\n"
        f"  tarmac monitor loops churn\n"
        f"  tarmac trace PREDICTION_ID   # e.g. the id traced above\n"
        f"  tarmac models card churn -o card.html\n"
        f"  tarmac audit log --since 1h\n"
        f"  tarmac audit verify",
        title="what just happened", border_style="cyan"))
    if report.streams and not report.streams.get("ok"):
        console.print("[bold red]the live clicks did not land exactly once (see 'streams' "
                      "above)[/bold red]")
        raise typer.Exit(1)
    if report.monitoring and not report.monitoring.get("ok"):
        console.print("[bold red]the monitoring loop did not close (see 'the loop' above)"
                      "[/bold red]")
        raise typer.Exit(1)
    if report.serving and not report.serving.get("ok"):
        console.print("[bold red]the demo's predictions do not reconcile with the prediction "
                      "log (see 'answered == logged' above)[/bold red]")
        raise typer.Exit(1)


def _serving(s: dict[str, Any]) -> None:
    """The serving section of the demo's summary: its steps, the log by role and version, and
    the reconciliation (loud when answered and logged differ)."""
    emit(s["steps"], [("step", "churn endpoint"), ("detail", "")], as_json=False,
         title=f"Serving: the champion over HTTP, a {s.get('percent', 10)}% canary, a shadow")
    if s.get("log"):
        emit(s["log"], [("role", "role"), ("version", "version"),
                        ("predictions", "predictions"), ("requests", "requests"),
                        ("customers", "customers"), ("scored", "scored"),
                        ("avg_score", "avg score")], as_json=False,
             title="The prediction log: tarmac sql over the predictions table")
    if "ok" in s:
        mark = ("[green]reconciled[/green]" if s["ok"]
                else "[bold red]DO NOT RECONCILE[/bold red]")
        console.print(f"[bold]answered == logged:[/bold] {mark}: {esc(s.get('check'))}")


@app.command("demo-api")
def demo_api(
    directory: Path | None = typer.Argument(
        None, help="The demo project (default: the nearest folder with tarmac.yaml)."),
    port: int = typer.Option(8765, "--port", help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
) -> None:
    """Serve the demo's support-tickets API until Ctrl-C, so `tarmac ingest` can read tickets
    after `tarmac demo` (which stops its own API when it ends)."""
    import threading

    from tarmac.demo import TicketsServer
    from tarmac.project import find_root

    root = find_root(directory)
    tickets = root / "data" / "tickets.json"
    if not tickets.is_file():
        raise UsageError(f"no demo tickets in {root} (expected {tickets})",
                         hint="run `tarmac demo` first, then `tarmac demo-api` in its folder")
    try:
        api = TicketsServer(tickets, host=host, port=port).start()
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                         hint="is `tarmac demo-api` already running? Or pick another --port "
                              "and set KESTREL_TICKETS_URL for `tarmac ingest`") from None
    console.print(f"serving the demo's tickets at {api.url} (Ctrl-C to stop)", markup=False)
    if api.port != 8765:
        console.print(f"  tarmac.yaml reads http://127.0.0.1:8765/tickets unless told: "
                      f"export KESTREL_TICKETS_URL={api.url}", markup=False)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()


@app.command()
def info(ctx: typer.Context, as_json: bool = typer.Option(False, "--json",
                                                           help="Print a JSON object.")) -> None:
    """The project: backends (secrets masked), catalog revision, tables, runs, audit head."""
    from tarmac.cli import open_project

    facts = open_project(ctx).info()
    if as_json:
        print_json(facts)
        return
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        console.print(f"[bold]{key.replace('_', ' '):<{width}}[/bold]  {esc(human(value))}")


def _day(text: str) -> date:
    """``--as-of 2026-01-31``: a calendar day."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--as-of {text!r}: expected a day as YYYY-MM-DD (e.g. 2026-01-31)"
                         ) from None
