"""Governance commands: lineage, audit log / verify, runs."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.tree import Tree

from tarmac.cli import app, open_project
from tarmac.cli._lake import JSON
from tarmac.cli._output import age, console, emit, err_console, error_line, esc, print_json
from tarmac.errors import UsageError, echo
from tarmac.humanize import point_in_time

if TYPE_CHECKING:
    from tarmac.ledger import LineageNode

audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@app.command()
def lineage(
    ctx: typer.Context,
    table: str = typer.Argument(..., help=esc("Lake table, or model:NAME[@VERSION] or "
                                              "training_set:NAME[@RUN].")),
    upstream: bool = typer.Option(True, "--upstream/--downstream",
                                  help="What fed the table (default), or what it feeds."),
    depth: int = typer.Option(5, "--depth", help="How many hops of runs to follow."),
    as_json: bool = JSON,
    openlineage: bool = typer.Option(False, "--openlineage",
                                     help="Print the runs as OpenLineage run events (JSON)."),
) -> None:
    """Where a table (or a model) came from, or where it goes: runs and versions as a tree."""
    p = open_project(ctx)
    if ":" in table:  # model:NAME[@V] or training_set:NAME[@V], not a lake table
        name, _, pinned = table.rpartition("@") if "@" in table else (table, "", "")
        version = int(pinned) if pinned.isdigit() else None
        if "@" in table and version is None:
            raise UsageError(f"'{table}': expected NAME@VERSION with a whole number")
        if not p.ledger.has_lineage(name, version=version):
            raise UsageError(f"no recorded lineage for '{table}'",
                             hint="models are named model:NAME[@VERSION], training sets "
                                  "training_set:NAME[@RUN]")
        if openlineage:
            print_json(p.ledger.openlineage(name))
            return
    elif openlineage:
        print_json(p.ledger.openlineage(table))
        return
    elif not p.lake.exists(table):
        raise p.lake.missing(table)
    node = p.ledger.lineage(table, direction="upstream" if upstream else "downstream", depth=depth)
    if as_json:
        print_json(node.to_dict())
        return
    arrow = "⟵ fed by" if upstream else "⟶ feeds"
    at = f"@{node.version}" if node.version is not None else ""
    tree = Tree(f"[bold]{esc(node.name)}[/bold]{at}  [dim]{arrow}[/dim]")
    _draw(tree, node)
    if not node.children:
        tree.add("[dim](no recorded runs)[/dim]")
    console.print(tree)


def _draw(tree: Tree, node: LineageNode) -> None:
    for child in node.children:
        if child.kind == "run":
            run = child.run
            assert run is not None
            colour = {"succeeded": "green", "failed": "red"}.get(run.status, "yellow")
            label = (f"[cyan]run[/cyan] {esc(child.name)} [{colour}]{run.status}[/{colour}] "
                     f"[dim]{run.id[:8]} by {esc(run.actor)}, {age(run.started_at)}[/dim]")
            if child.repeated:
                label += " [dim](shown above)[/dim]"
        else:
            at = f"@{child.version}" if child.version is not None else ""
            label = f"[bold]{esc(child.name)}[/bold]{at}"
        _draw(tree.add(label), child)


@app.command()
def runs(
    ctx: typer.Context,
    job: str | None = typer.Option(None, "--job", help="Only runs of this job."),
    model: str | None = typer.Option(None, "--model", help="Training runs of this model: "
                                     "params, metrics, data versions, git commit."),
    status: str | None = typer.Option(None, "--status", help="running, succeeded or failed."),
    limit: int = typer.Option(20, "--limit", "-n", help="Newest runs to show."),
    as_json: bool = JSON,
) -> None:
    """Recorded runs: job, status, actor, inputs and outputs, duration.

    With --model, the model's training runs: parameters, holdout metrics, the table versions
    read, the git commit (and whether it had uncommitted changes), duration and error.
    """
    p = open_project(ctx)
    if model is not None:
        from tarmac.cli._models import show_train_runs

        show_train_runs(p, model, status, limit, as_json)
        return
    page = p.ledger.runs(job=job, status=status, limit=limit)
    rows = [r.to_dict() for r in page.items]
    if not as_json:
        for row, run in zip(rows, page.items, strict=True):
            row.update(id=run.id[:8], started_at=age(run.started_at),
                       error=error_line(run.error))
    emit(rows, [("id", "run"), ("job", "job"), ("status", "status"), ("actor", "actor"),
                ("started_at", "started"), ("duration_s", "seconds"), ("inputs", "inputs"),
                ("outputs", "outputs"), ("error", "error")], as_json=as_json, empty="no runs yet")


@audit_app.command("log")
def audit_log(
    ctx: typer.Context,
    since: str | None = typer.Option(None, "--since",
                                     help="Only records this recent: 30m, 1h, 7d or a time."),
    actor: str | None = typer.Option(None, "--actor", help="Only this actor's records."),
    target: str | None = typer.Option(None, "--target", help="Only records about this target."),
    action: str | None = typer.Option(None, "--action", help="Only this action, e.g. lake.merge."),
    limit: int = typer.Option(50, "--limit", "-n", help="Newest records to show."),
    as_json: bool = JSON,
) -> None:
    """Who changed what, newest first (needs read:audit where access is enforced)."""
    since_us = _since(since) if since else None
    p = open_project(ctx)
    page = p.ledger.audit(since_us=since_us, actor=actor, target=target, action=action,
                          limit=limit)
    rows = [r.to_dict() for r in page.items]
    if not as_json:
        for r, rec in zip(rows, page.items, strict=True):
            r["time"] = rec.time
            r["details"] = ", ".join(f"{k}={v}" for k, v in r["details"].items()
                                     if k != "run_id" and v not in (0, None, [], ""))
            r["hash"] = rec.hash[:12]
    emit(rows, [("seq", "#"), ("time", "time"), ("actor", "actor"), ("action", "action"),
                ("target", "target"), ("details", "details"), ("hash", "hash")],
         as_json=as_json, empty="no audit records match")


@audit_app.command("export")
def audit_export(
    ctx: typer.Context,
    since: str | None = typer.Option(
        None, "--since", help="Only records this recent: 30m, 1h, 30d or a time such as "
                              "2026-01-31T12:00:00Z (default: from the first record)."),
    until: str | None = typer.Option(
        None, "--until", help="Only records before this: 1h (ago) or a time (default: up to "
                              "the head when the export starts)."),
    fmt: str = typer.Option("jsonl", "--format", "-f",
                            help="jsonl (one JSON object per line, details nested) or csv "
                                 "(a header row; details as a JSON string)."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to this file: it appears whole, mode 0600, or not "
                                     "at all (default: standard output)."),
    actor: str | None = typer.Option(None, "--actor", help="Only this actor's records."),
    action: str | None = typer.Option(None, "--action",
                                      help="Only actions starting with this, e.g. model. or "
                                           "access.denied."),
) -> None:
    """Every audit record of a time range, oldest first, as JSON lines or CSV for a SIEM.

    Columns: seq, time (ISO-8601 UTC), actor, action, target, details, hash, prev_hash, mac,
    key_id. Read page by page from the catalog. Needs read:audit where access is enforced
    (admins). The export is itself recorded as audit.export (count and range, not contents).
    With no -o, standard output carries only the records; the summary goes to standard error.
    """
    from tarmac.ledger.export import check_format

    check_format(fmt)
    since_us = _since(since) if since else None
    until_us = _since(until, "--until") if until else None
    p = open_project(ctx)
    done = p.ledger.export(output if output is not None else sys.stdout, format=fmt,
                           since_us=since_us, until_us=until_us, actor=actor, action=action)
    span = f" (#{done.first_seq}..#{done.last_seq})" if done.count else ""
    where = esc(str(output)) if output is not None else "standard output"
    (console if output is not None else err_console).print(
        f"exported {done.count:,} audit record(s){span} as {fmt} to {where}", soft_wrap=True)


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    anchor: str | None = typer.Option(
        None, "--anchor", help="SEQ:HASH published earlier (default: the latest anchor the "
                               "project published automatically); proves no record after it "
                               "was cut from the end."),
    as_json: bool = JSON,
) -> None:
    """Check the audit hash chain: exit 0 if intact, 1 naming the first bad record."""
    p = open_project(ctx)
    pin = None
    if anchor:
        seq, _, digest = anchor.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise UsageError(f"--anchor {anchor!r}: expected SEQ:HASH (a 64-hex-digit hash)")
        pin = (int(seq), digest.lower())
    result = p.ledger.verify(anchor=pin)
    if as_json:
        print_json(result.to_dict())
    elif result.ok:
        head = f"{result.head_seq}:{result.head_hash}" if result.head_seq else "(empty)"
        console.print(f"[green]ok[/green]: {result.records:,} audit record(s), chain intact; "
                      "aliases, deployments and validations match the trail. "
                      f"Head {head}", soft_wrap=True)
        if result.keyed:
            console.print(f"{result.keyed:,} keyed record(s) checked with the audit key"
                          + (f"; {result.unkeyed:,} earlier record(s) were written before "
                             "keying was turned on (hash-chained only)" if result.unkeyed
                             else ""))
        elif result.records:
            console.print("[yellow]note[/yellow]: no record is keyed: anyone who can write the "
                          "catalog could re-hash the chain; `tarmac audit key init` turns "
                          "keying on", soft_wrap=True)
        if result.anchor:
            console.print(f"checked against the anchor {result.anchor[0]}:"
                          f"{result.anchor[1][:12]}…")
    else:
        verdict = {"incomplete": "INCOMPLETE", "no-key": "NO AUDIT KEY",
                   "wrong-key": "WRONG AUDIT KEY", "bad-key": "AUDIT KEY UNUSABLE",
                   "state": "CATALOG DISAGREES WITH THE TRAIL"}.get(result.kind or "",
                                                                    "TAMPERED")
        console.print(f"[bold red]{verdict}[/bold red]: {esc(result.problem)}", soft_wrap=True)
        for extra in result.state[1:]:
            console.print(f"  also: {esc(extra)}", soft_wrap=True)
    raise typer.Exit(0 if result.ok else 1)


@audit_app.command("anchor")
def audit_anchor(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Publish the chain head now to every anchor target (file or S3 prefix, and webhook).

    It is also published automatically every `audit_anchor.every_records` records or
    `every_minutes` minutes. Exit 1 naming any target that failed (the others still get it).
    """
    p = open_project(ctx)
    targets = p.ledger.anchor_targets
    if not targets and not as_json:
        raise UsageError("audit anchors are off (`audit_anchor: {enabled: false}` in "
                         "tarmac.yaml)")
    anchor = p.ledger.publish_anchor()
    if as_json:
        location = p.ledger.anchors.location if p.ledger.anchors else None
        print_json({"anchor": anchor.to_dict() if anchor else None, "path": location,
                    "targets": targets})
        return
    if anchor is None:
        console.print("the audit chain is empty: nothing to anchor")
        return
    console.print(f"[green]published[/green] anchor {anchor.seq}:{anchor.hash} to "
                  f"{esc(', '.join(targets))}", soft_wrap=True)


key_app = typer.Typer(help="The audit key that keys every new audit record (kept outside the "
                           "catalog).", no_args_is_help=True)
audit_app.add_typer(key_app, name="key")


@key_app.command("init")
def audit_key_init(
    ctx: typer.Context,
    path: str | None = typer.Option(
        None, "--path", help="Where to write the key (default: `audit_key:` of tarmac.yaml, "
                             "else ~/.config/tarmac/<project>.key)."),
) -> None:
    """Create the audit key file (32 random bytes, mode 0600); new records are keyed with it.

    Keep the file off the catalog's host and back it up: without it the trail cannot be
    verified. Records written before stay valid and are reported as unkeyed.
    """

    from tarmac.config import CONFIG_FILE, load_config
    from tarmac.ledger.keys import ENV_VAR, create_key_file, key_file_path
    from tarmac.project import find_root

    root = find_root((ctx.find_root().obj or {}).get("project"))
    config = load_config(root / CONFIG_FILE)
    target = (Path(path).expanduser().resolve() if path
              else key_file_path(config.audit_key, project=config.name, root=root))
    key = create_key_file(target)
    console.print(f"[green]created[/green] audit key {key.key_id} at {esc(str(target))} "
                  "(mode 0600)", soft_wrap=True)
    if path and config.audit_key is None:
        console.print(f"add `audit_key: {esc(str(target))}` to tarmac.yaml so the project "
                      "uses it", soft_wrap=True)
    if os.environ.get(ENV_VAR, "").strip():
        console.print(f"[yellow]note[/yellow]: {ENV_VAR} is set and takes precedence over "
                      "this file")
    console.print("back it up and keep it off the catalog's database host: without it the "
                  "trail cannot be verified", soft_wrap=True)


def _since(value: str, option: str = "--since") -> int:
    """A relative age (30m, 1h, 7d: that long ago) or an ISO time, as catalog microseconds;
    a ``UsageError`` naming ``option`` and the value otherwise."""
    try:
        when = point_in_time(value)
    except ValueError:
        raise UsageError(f"{option} {echo(value)!r}: expected e.g. 30m, 1h, 7d or "
                         "2026-01-31T12:00:00Z") from None
    return int((when - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
