"""Feature-store commands: apply, and features list / show / materialize / get / check."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from tarmac.cli import app, open_project
from tarmac.cli._output import console, emit, err_console, esc, print_json, utc
from tarmac.errors import UsageError

JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")

features_app = typer.Typer(help="Feature views and services: inspect, materialize, read online.",
                           no_args_is_help=True)
app.add_typer(features_app, name="features")

_MARK = {"add": "[green]+[/green]", "change": "[yellow]~[/yellow]", "remove": "[red]-[/red]",
         "unchanged": "[dim]=[/dim]"}


@app.command()
def apply(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; register nothing."),
    force: bool = typer.Option(False, "--force",
                               help="Apply even changes that break a consumer (audited)."),
    reason: str = typer.Option(None, "--reason", help="Why a forced change is fine (audited)."),
    as_json: bool = JSON,
) -> None:
    """Register definitions.py (features and monitors): shows what is added, changed and
    removed, like a plan.

    A change that breaks a consumer (a removed feature or a type change that a saved training
    set or model version uses) is refused unless --force.
    """
    p = open_project(ctx)
    result = p.features.apply(force=force, dry_run=dry_run, reason=reason)
    monitors = p.monitoring.apply(dry_run=dry_run)
    if as_json:
        print_json({**result.to_dict(), "monitors": [m.to_dict() for m in monitors]})
        return
    for m in monitors:
        if m.action != "unchanged":
            mark = _MARK.get(m.action, "[yellow]?[/yellow]")
            console.print(f"{mark} monitor [bold]{esc(m.name)}[/bold] of {esc(m.model)}"
                          + (" (no longer declared; its history is kept)"
                             if m.action == "undeclared" else ""))
    for c in result.changes:
        if c.action == "unchanged":
            continue
        console.print(f"{_MARK[c.action]} {c.kind} [bold]{esc(c.name)}[/bold] v{c.version}")
        for d in c.details if c.action == "change" else []:
            console.print(f"    {esc(d)}")
        for b in c.breaking:
            console.print(f"    [red]breaks:[/red] {esc(b)}")
    unchanged = sum(c.action == "unchanged" for c in result.changes)
    counts = {a: sum(c.action == a for c in result.changes) for a in ("add", "change", "remove")}
    summary = (f"{counts['add']} to add, {counts['change']} to change, "
               f"{counts['remove']} to remove, {unchanged} unchanged")
    if dry_run:
        console.print(f"plan: {summary} [dim](dry run: nothing registered)[/dim]")
    elif result.applied:
        console.print(f"[green]applied:[/green] {summary}")
    else:
        console.print(f"nothing to apply ({unchanged} definitions unchanged)")


@features_app.command("list")
def list_features(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Registered feature views and services, with what each holds."""
    p = open_project(ctx)
    defs = p.features.registered()
    rows: list[dict[str, Any]] = []
    for name, v in sorted(defs.views.items()):
        last = p.features.last_materialization(name)
        rows.append({"kind": "view", "name": name, "entities": ",".join(e.name for e in
                                                                        v.entities),
                     "features": len(v.features), "ttl": v.ttl_text,
                     "source": _source(v), "materialized": last.ended_at and
                     _time(last.ended_at) if last else None})
    for name, o in sorted(defs.on_demand.items()):
        rows.append({"kind": "on_demand", "name": name, "entities": "", "features":
                     len(o.features), "ttl": None, "source": ", ".join(o.input_refs),
                     "materialized": None})
    for name, s in sorted(defs.services.items()):
        rows.append({"kind": "service", "name": name, "entities": "", "features":
                     sum(len(sel.names) for sel in s.selections()), "ttl": None,
                     "source": ", ".join(sel.view.name for sel in s.selections()),
                     "materialized": None})
    emit(rows, [("kind", "kind"), ("name", "name"), ("entities", "entities"),
                ("features", "features"), ("ttl", "ttl"), ("source", "source"),
                ("materialized", "materialized")], as_json=as_json, title="features")


@features_app.command()
def show(ctx: typer.Context, name: str = typer.Argument(..., help="A view or service."),
         as_json: bool = JSON) -> None:
    """A view's schema, source, freshness, statistics and lineage (or a service's features)."""
    from tarmac.features.inspect import describe

    p = open_project(ctx)
    info = describe(p.features, name)
    if as_json:
        print_json(info)
        return
    console.print(f"[bold]{info['kind']} {esc(info['name'])}[/bold] v{info['version']}"
                  + (f" - {esc(info['description'])}" if info.get("description") else ""))
    for key in ("entities", "join_keys", "source", "timestamp", "created", "ttl", "inputs",
                "freshness", "materialized", "online_records", "upstream", "consumers"):
        if info.get(key) not in (None, [], {}):
            value = info[key]
            if isinstance(value, list):
                value = ", ".join(map(str, value))
            console.print(f"  {key:<15} {esc(value)}")
    emit(info["features"], [(k, k) for k in info["features"][0]] if info["features"] else [],
         as_json=False, title="features")


@features_app.command()
def materialize(
    ctx: typer.Context,
    views: list[str] = typer.Argument(None, help="Views to materialize (default: all)."),
    since: str = typer.Option(None, "--since", help="Only rows with an event time at or after "
                                                    "this ISO time (e.g. 2026-01-01T00:00:00Z)."),
    full: bool = typer.Option(False, "--full", help="Recompute from all rows, not only new ones."),
    as_json: bool = JSON,
) -> None:
    """Copy the latest feature values from the lake to the online store (incremental by
    default: only data added since the last run). Resumes an interrupted run."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    p = open_project(ctx)
    bars: dict[str, Any] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(bar_width=None),
                  MofNCompleteColumn(), console=err_console,
                  disable=as_json or not err_console.is_terminal) as progress:

        def show_progress(event: Any) -> None:
            if event.view not in bars:
                bars[event.view] = progress.add_task(event.view, total=event.total)
            progress.update(bars[event.view], completed=event.done)

        results = p.features.materialize(views or None, since=since, full=full,
                                         progress=show_progress)
    rows = [r.to_dict() | {"time": f"{r.seconds:.2f}s", "inputs": ", ".join(
        f"{t}@{v}" for t, v in r.inputs.items())} for r in results]
    emit(rows, [("view", "view"), ("mode", "mode"), ("rows", "rows read"),
                ("entities", "written"), ("stale", "stale"), ("batches", "batches"),
                ("inputs", "inputs"), ("time", "time"), ("note", "note")], as_json=as_json,
         title="materialize")
    for r in results if not as_json else []:  # in JSON, each result carries its warning
        if r.warning:
            err_console.print(f"[yellow]warning:[/yellow] {escape(r.warning)}")


def _entities(pairs: list[str], keys: dict[str, str]) -> list[dict[str, Any]]:
    """``--entity customer_id=42 --entity customer_id=43`` (or ``a=1,b=x`` for composite keys,
    ``customer_id=42,basket=19.99`` with request values). Keys (``keys``: name -> type) are
    typed as their views declare them, so ``--json`` echoes ``42``, as the server would for a
    client that sent a number; request values are read as JSON literals where they are one
    (``19.99`` a number, ``true`` a boolean, ``null`` null), else as text."""
    from tarmac.features.keys import parse_key

    out = []
    for pair in pairs:
        entity: dict[str, Any] = {}
        for part in pair.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"--entity {pair!r}: expected KEY=VALUE (e.g. customer_id=42)")
            name, text = key.strip(), value.strip()
            if name not in keys:
                entity[name] = _literal(text)
            else:  # typed by the one key rule; a bad integer stays text for the store to refuse
                entity[name] = parse_key(keys[name], text)
        out.append(entity)
    return out


def _literal(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


@features_app.command(
    epilog="Examples:\n\n"
           "  tarmac features get churn --entity customer_id=42 --entity customer_id=43\n\n"
           "  tarmac features get customer_clicks:clicks_7d --entity customer_id=42 --json\n\n"
           "  tarmac features get basket_share --entity customer_id=42,basket=19.99")
def get(
    ctx: typer.Context,
    features: str = typer.Argument(..., help="A service, a view, or view:feature refs "
                                             "separated by commas."),
    entity: list[str] = typer.Option(
        ..., "--entity", "-e", metavar="KEY=VALUE[,KEY=VALUE...]",
        help="One entity: its key (customer_id=42), all parts of a composite key "
             "(store_id=7,sku=A1), plus the request values on-demand features need "
             "(customer_id=42,basket=19.99: numbers, true/false and null are read as such). "
             "Repeat for several entities."),
    as_json: bool = JSON,
) -> None:
    """Read features online, as the server would serve them (value, status, event time).

    Each --entity names one entity by its key values; an on-demand feature's request values
    (the inputs a live request carries, declared with request=[...]) go in the same --entity.
    """
    p = open_project(ctx)
    refs: str | list[str] = features if "," not in features else features.split(",")
    keys = {k: getattr(part.view, "key_types", {}).get(k, "string")
            for part in p.features.resolve(refs).parts
            for k in getattr(part.view, "join_keys", ())}
    result = p.features.online(refs, _entities(entity, keys))
    if as_json:
        print_json(result.to_dict())
        return
    rows = []
    for ent, values, status, times in zip(result.entities, result.rows, result.status,
                                          result.event_time, strict=True):
        label = ", ".join(f"{k}={v}" for k, v in ent.items() if k in keys or not keys)
        for name in result.features:
            rows.append({"entity": label, "feature": name, "value": values.get(name),
                         "status": status.get(name), "event_time": times.get(name)})
    emit(rows, [("entity", "entity"), ("feature", "feature"), ("value", "value"),
                ("status", "status"), ("event_time", "event time")], as_json=False,
         title="online features")


@features_app.command()
def check(
    ctx: typer.Context,
    features: str = typer.Argument(..., help="A service or view."),
    sample: int = typer.Option(100, "--sample", min=1, help="Entities to compare."),
    model: str = typer.Option(None, "--model", help="Compare coverage with this model's "
                                                    "training profile (its champion, else its "
                                                    "latest version)."),
    max_drop: float = typer.Option(0.25, "--max-drop", min=0.0, max=1.0,
                                   help="Fail when a feature's online coverage is lower than "
                                        "training's by more than this share."),
    as_json: bool = JSON,
) -> None:
    """Coverage and skew: what share of each feature is present, null, stale or missing online
    (against the training set's coverage), and whether online values equal the offline
    point-in-time values now, for sampled entities.

    Exit code 1 if coverage drops by more than --max-drop, nothing is present online, or any
    value differs (training/serving skew). Two nulls never count as agreement.
    """
    p = open_project(ctx)
    report = p.features.check(features, sample=sample, model=model, max_drop=max_drop)
    if as_json:
        print_json(report.to_dict())
        if not report.ok:
            raise typer.Exit(1)
        return
    rows = [{**c.to_dict(), **{k: _share(getattr(c, k)) for k in
                               ("present", "null", "stale", "missing")},
             "training": "-" if c.training is None else _share(c.training),
             "drop": _share(c.drop) if c.drop else "",
             "ok": "DROPPED" if c in report.dropped else "ok"}
            for c in report.coverage]
    if rows:
        emit(rows, [("feature", "feature"), ("present", "present"), ("null", "null"),
                    ("stale", "stale"), ("missing", "missing"), ("training", "training"),
                    ("drop", "drop"), ("ok", "")], as_json=False,
             title=f"online coverage of {report.entities:,} entities (training: "
                   f"{report.baseline})")
    if report.mismatches:
        emit([{**m, "entity": str(m.get("entity"))} for m in report.mismatches[:50]],
             [("entity", "entity"), ("feature", "feature"), ("offline", "offline"),
              ("online", "online"), ("status", "status")], as_json=False,
             title=f"{len(report.mismatches)} mismatch(es) in {report.compared:,} values")
    unverified = (f"; {report.both_null:,} null on both sides (not verified)"
                  if report.both_null else "")
    if report.ok:
        console.print(f"[green]consistent:[/green] {report.agreed:,} of {report.compared:,} "
                      f"values of {report.entities:,} entities match offline and online"
                      + unverified)
        return
    for line in report.problems:
        err_console.print(f"[red]failed:[/red] {escape(line)}")
    raise typer.Exit(1)


def _share(x: float) -> str:
    return f"{x:.0%}"


def _source(view: Any) -> str:
    from tarmac.features.definitions import SqlSource

    stream = getattr(view, "streaming", None)
    if stream:  # a stream feature view: its stream, not the generated SQL
        return f"stream {stream['source']}"
    if isinstance(view.source, SqlSource):
        text = view.source.query
        return "sql: " + (text if len(text) <= 40 else text[:37] + "...")
    return str(view.source)


def _time(us: int) -> str:
    when = utc(us)
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else "-"
