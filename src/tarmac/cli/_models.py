"""Model commands: train, models list / show / card, validate, promote, rollback."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from tarmac.cli import app, open_project
from tarmac.cli._output import (
    age,
    console,
    emit,
    err_console,
    error_line,
    esc,
    human,
    print_json,
    utc,
)
from tarmac.errors import UsageError

JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")

models_app = typer.Typer(help="Registered models: versions, aliases, gate status, metrics.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")

_STATUS = {"passed": "[green]passed[/green]", "failed": "[red]failed[/red]",
           "error": "[red]error[/red]", "skipped": "[dim]skipped[/dim]",
           "succeeded": "[green]succeeded[/green]", "running": "[yellow]running[/yellow]"}
KEY_METRICS = ("roc_auc", "pr_auc", "accuracy", "f1", "log_loss", "rmse", "mae", "r2")


@app.command()
def train(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model name (declared with @model in definitions.py)."),
    param: list[str] = typer.Option([], "--param", help="Override a parameter: NAME=VALUE "
                                    "(repeatable)."),
    reproduce: str = typer.Option(None, "--reproduce", metavar="RUN_ID",
                                  help="Re-run a recorded run: same table versions, feature "
                                       "definitions and parameters."),
    as_json: bool = JSON,
) -> None:
    """Build the training set, fit, evaluate on the holdout and register a new version."""
    from tarmac.models.definitions import parse_param

    params = dict(parse_param(p) for p in param)
    p = open_project(ctx)
    step = ((lambda _m: None) if as_json
            else (lambda m: err_console.print(f"[dim]·[/dim] {esc(m)}")))
    result = p.models.train(model, params=params or None, reproduce=reproduce, step=step)
    if as_json:
        print_json(result.to_dict())
        return
    console.print(f"[green]registered[/green] [bold]{esc(model)} v{result.version}[/bold] "
                  f"(run {result.run} [dim]{result.run_id[:8]}[/dim], {result.flavor} "
                  f"{result.task}) on {result.rows_train:,} rows, {result.rows_test:,} held out")
    console.print("  holdout: " + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()))
    for column, slices in result.slices.items():
        name = next((m for m in KEY_METRICS if any(m in s for s in slices.values())), None)
        if name:
            parts = [f"{s} {v[name]:.3f}" for s, v in slices.items() if name in v]
            console.print(f"  {name} by {esc(column)}: " + esc(", ".join(parts)))
    console.print(f"  {result.seconds:.1f} s ({result.fit_seconds:.1f} s fitting); inputs "
                  + ", ".join(f"{t}@{v}" for t, v in sorted(result.inputs.items())))
    for w in result.warnings:
        console.print(f"  [yellow]note:[/yellow] {esc(w)}")
    if result.reproduced is not None:
        source = (result.reproduces or "")[:8]
        if result.reproduced_ok:
            console.print(f"  [green]reproduced[/green] run {source}: every metric is the same")
        else:
            console.print(f"  [red]differs[/red] from run {source}:")
            for k, (a, b) in result.reproduced.items():
                if a != b:
                    console.print(esc(f"    {k}: recorded {a}, now {b}"))
    console.print(f"  next: [bold]tarmac validate {esc(model)} {result.version}[/bold]")


@models_app.command("list")
def models_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Every registered model: versions, aliases, the champion's metrics."""
    p = open_project(ctx)
    aliases = p.models.aliases()
    rows = []
    for name, (count, latest) in p.models.names().items():
        champ = aliases.get(name, {}).get("champion")
        record = p.models.version(name, champ or latest)
        rows.append({"model": name, "versions": count, "latest": latest,
                     "aliases": ", ".join(f"{a} v{v}" for a, v in aliases.get(name, {}).items()),
                     "flavor": record.flavor, "task": record.task,
                     "metrics": _metric_text(record.metrics, 3),
                     "updated": age(utc(record.created_at))})  # type: ignore[arg-type]
    emit(rows, [("model", "model"), ("versions", "versions"), ("latest", "latest"),
                ("aliases", "aliases"), ("flavor", "flavor"), ("task", "task"),
                ("metrics", "metrics (champion, else latest)"), ("updated", "latest trained")],
         as_json=as_json, empty="no models yet: declare one with @model and run `tarmac train`")


@models_app.command("show")
def models_show(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model name."),
    limit: int = typer.Option(10, "--limit", "-n", help="Newest versions to show."),
    as_json: bool = JSON,
) -> None:
    """A model's versions side by side: metrics, gate status, aliases; and the alias history."""
    p = open_project(ctx)
    versions = p.models.versions(model, limit=limit)
    aliases = p.models.aliases(model).get(model, {})
    by_version: dict[int, list[str]] = {}
    for a, v in aliases.items():
        by_version.setdefault(v, []).append(a)
    gate = {v.version: p.models.validations(model, v.version, limit=1) for v in versions}
    history = p.models.history(model)
    if as_json:
        print_json({"model": model, "aliases": aliases,
                    "profile": p.models.version(model, versions[0].version).profile,
                    "versions": [{**v.to_dict(), "aliases": by_version.get(v.version, []),
                                  "validation": (gate[v.version][0].report
                                                 if gate[v.version] else None)}
                                 for v in versions],
                    "history": [h.to_dict() for h in history]})
        return
    metric_names = [k for k in KEY_METRICS if any(k in v.metrics for v in versions)]
    table = Table(title=f"{esc(model)}: {len(versions)} newest versions", title_justify="left",
                  header_style="bold")
    for col in ("version", "aliases", "gates", *metric_names, "flavor", "run", "trained"):
        table.add_column(col, overflow="fold")
    for v in versions:
        checks = gate[v.version]
        status = "[dim]not validated[/dim]"
        if checks:
            c = checks[0]
            status = _STATUS.get(c.status, c.status) + (
                f" [dim]vs v{c.champion}[/dim]" if c.champion else " [dim]no champion[/dim]")
        table.add_row(f"v{v.version}", esc(", ".join(by_version.get(v.version, [])) or "-"),
                      status, *(human(v.metrics.get(m)) for m in metric_names), esc(v.flavor),
                      v.run_id[:8], age(utc(v.created_at)))  # type: ignore[arg-type]
    console.print(table)
    latest = versions[0]
    console.print(f"[bold]v{latest.version}[/bold] signature: inputs " + esc(
        ", ".join(f"{i['name']} {i['type']}" for i in latest.signature["inputs"]) + " -> "
        + ", ".join(f"{o['name']} {o['type']}" for o in latest.signature["outputs"])))
    if history:
        console.print("[bold]alias history[/bold] (newest first)")
        for h in history[:10]:
            forced = " [red]forced[/red]" if h.forced else ""
            why = f" — {esc(h.reason)}" if h.reason else ""
            console.print(f"  {h.action} {esc(h.alias)}: "
                          f"{'v' + str(h.from_version) if h.from_version else '(none)'} -> "
                          f"v{h.to_version}{forced} by {esc(h.actor)}, "
                          f"{age(utc(h.at))}{why}")  # type: ignore[arg-type]


@models_app.command("card")
def models_card(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model name."),
    version: int = typer.Option(None, "--version", "-v",
                                help="Version (default: the champion, else the latest)."),
    alias: str = typer.Option(None, "--alias", help="The version an alias points at."),
    output: str = typer.Option(None, "--output", "-o",
                               help="Write the card to this file (.html: an HTML page, else "
                                    "Markdown) instead of printing Markdown."),
    fmt: str = typer.Option(None, "--format", help="markdown or html (default: from the "
                            "--output suffix, else markdown)."),
) -> None:
    """A version's model card: intended use, owner and limitations (declared on @model),
    training data with lineage, metrics overall and per slice, gate results, the champion
    history, the deployment and the monitoring status. Markdown for a pull request, HTML for
    people: tarmac models card churn -o card.html
    """
    import sys
    from pathlib import Path

    if fmt is None:
        fmt = ("html" if output and Path(output).suffix.lower() in (".html", ".htm")
               else "markdown")
    if fmt not in ("markdown", "html"):
        raise UsageError(f"--format {fmt!r}: expected markdown or html")
    p = open_project(ctx)
    card = p.models.card(model, version, alias=alias)
    text = card.to_html() if fmt == "html" else card.to_markdown()
    if not output:
        sys.stdout.write(text)  # not through Rich: it would wrap and restyle the Markdown
        return
    target = Path(output)
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the card to {output}: {exc.strerror or exc}") from None
    console.print(f"wrote {esc(str(target))}: the {fmt} model card of "
                  f"[bold]{esc(model)} v{card.version}[/bold] ({len(text):,} bytes)")


@models_app.command("annotate")
def models_annotate(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version."),
    description: str = typer.Option(None, "--description", "-d", help="What this version is."),
    tag: list[str] = typer.Option([], "--tag", help="KEY=VALUE to set, KEY= to remove "
                                  "(repeatable)."),
) -> None:
    """Describe a version and tag it (e.g. --tag ticket=CHURN-42); audited."""
    tags: dict[str, str | None] = {}
    for item in tag:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {item!r}: expected KEY=VALUE (or KEY= to remove it)")
        tags[key] = value or None
    p = open_project(ctx)
    record = p.models.annotate(model, version, description=description, tags=tags)
    tags_text = ", ".join(f"{k}={v}" for k, v in sorted(record.tags.items())) or "none"
    console.print(esc(f"{model} v{record.version}: {record.description or '(no description)'}; "
                      f"tags {tags_text}"))


@app.command()
def validate(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(None, help="Version (default: the latest)."),
    fmt: str = typer.Option("table", "--format", help="table, markdown or json."),
    output: str = typer.Option(None, "--output", "-o",
                               help="Also write the report to this file: JSON with --format "
                                    "json, else Markdown."),
) -> None:
    """Run the model's gates on a version's holdout set, against the current champion.

    Exit code 0 when every gate passes, 1 when one fails, 2 when one could not run. The
    report is stored (catalog and audit trail): `tarmac promote` reads it.
    """
    import json
    import sys
    from pathlib import Path

    if fmt not in ("table", "markdown", "json"):
        raise UsageError(f"--format {fmt!r}: expected table, markdown or json")
    p = open_project(ctx)
    report = p.models.validate(model, version)
    if fmt == "markdown":
        text = report.to_markdown()
        sys.stdout.write(text.rstrip("\n") + "\n")  # not through Rich: it would wrap rows
    elif fmt == "json":
        text = json.dumps(report.to_dict(), indent=2, default=str)
        print_json(report.to_dict())
    else:
        text = report.to_markdown()
        _print_report(report)
    if output:
        Path(output).write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    raise typer.Exit(report.exit_code)


def _print_report(report: Any) -> None:
    vs = (f"against champion v{report.champion}" if report.champion
          else "no champion yet: regression gates skipped")
    table = Table(title=esc(f"{report.model} v{report.version}: gates ({vs})"),
                  title_justify="left",
                  header_style="bold")
    for col in ("gate", "result", "value", "threshold", "why"):
        table.add_column(col, overflow="fold")
    for r in report.results:
        value = r.value if not isinstance(r.value, float) else f"{r.value:.4g}"
        table.add_row(esc(r.name), _STATUS.get(r.status, r.status), esc(human(value)),
                      esc(r.threshold or "-"), esc(r.why))
    console.print(table)
    colour = {"passed": "green", "failed": "red", "error": "red"}[report.status]
    counts = {s: sum(r.status == s for r in report.results)
              for s in ("passed", "failed", "error", "skipped")}
    console.print(f"[{colour}]{report.status}[/{colour}]: " + ", ".join(
        f"{n} {s}" for s, n in counts.items() if n) + f" ({report.seconds:.1f} s)")


@app.command()
def promote(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="The version to promote."),
    alias: str = typer.Option("champion", "--alias", help="Which alias to move."),
    force: bool = typer.Option(False, "--force", help="Promote even though its gates did not "
                               "pass (needs --reason; audited)."),
    reason: str = typer.Option(None, "--reason", help="Why (recorded in the audit trail)."),
    as_json: bool = JSON,
) -> None:
    """Point an alias (champion by default) at a version whose gates passed.

    Refused (exit 1) unless the version's latest validation passed against the current champion
    with the gates declared now; --force --reason overrides, and the audit trail records it.
    """
    p = open_project(ctx)
    change = p.models.promote(model, version, alias=alias, force=force, reason=reason)
    if as_json:
        print_json(change.to_dict())
        return
    if not change.changed:
        console.print(esc(f"{model} v{version} already is {alias}: nothing to do"))
        return
    before = f"v{change.from_version}" if change.from_version else "(none)"
    forced = " [red](forced)[/red]" if change.forced else ""
    console.print(f"[green]promoted[/green] {esc(model)} v{version} to {esc(alias)}{forced} "
                  f"[dim](was {before})[/dim]")


@app.command()
def rollback(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model name."),
    alias: str = typer.Option("champion", "--alias", help="Which alias to move back."),
    to: int = typer.Option(None, "--to", help="A specific earlier holder of the alias."),
    reason: str = typer.Option(None, "--reason", help="Why (recorded in the audit trail)."),
    force: bool = typer.Option(False, "--force", help="Return even to a version whose gates "
                               "never passed (needs --reason; audited)."),
    as_json: bool = JSON,
) -> None:
    """Move an alias back to the version it pointed at before (the previous champion)."""
    p = open_project(ctx)
    change = p.models.rollback(model, alias=alias, to=to, reason=reason, force=force)
    if as_json:
        print_json(change.to_dict())
        return
    console.print(f"[green]rolled back[/green] {esc(model)} {esc(alias)}: "
                  f"v{change.from_version} -> v{change.to_version}")


def _metric_text(found: dict[str, float], n: int) -> str:
    keys = [k for k in KEY_METRICS if k in found][:n] or sorted(found)[:n]
    return ", ".join(f"{k} {found[k]:.3f}" for k in keys)


def show_train_runs(p: Any, model: str, status: str | None, limit: int, as_json: bool) -> None:
    """`tarmac runs --model NAME`: the model's training runs."""
    found = p.models.runs(model, status=status, limit=limit)
    if as_json:
        print_json([r.to_dict() for r in found])
        return
    rows = []
    for r in found:
        git = r.environment.get("git") or {}
        commit = (git.get("commit") or "")[:8] + (" (dirty)" if git.get("dirty") else "")
        rows.append({
            "run": r.seq, "id": r.run_id[:8], "status": r.status,
            "version": f"v{r.version}" if r.version else None,
            "params": ", ".join(f"{k}={v}" for k, v in r.params.items()),
            "metrics": _metric_text(r.metrics, 3),
            "inputs": ", ".join(f"{t}@{v}" for t, v in sorted(r.inputs.items())),
            "git": commit or None,
            "seconds": r.seconds, "started": age(r.started_at_dt),
            "error": error_line(r.error)})
    emit(rows, [("run", "run"), ("id", "id"), ("status", "status"), ("version", "version"),
                ("params", "params"), ("metrics", "holdout metrics"), ("inputs", "data versions"),
                ("git", "git commit"), ("seconds", "seconds"), ("started", "started"),
                ("error", "error")], as_json=False,
         empty=f"no training runs of '{model}' yet: tarmac train {model}")
