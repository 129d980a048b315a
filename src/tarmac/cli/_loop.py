"""``tarmac approve`` / ``tarmac reject``: a person's say in a monitor's retraining loop.

    tarmac approve MODEL [VERSION] --reason TEXT   # promote it (gated), or start its canary
    tarmac reject MODEL [VERSION] --reason TEXT    # end the loop; its canary is aborted
    tarmac monitor loops [MODEL]                   # the loops, newest first (in _monitor)
"""

from __future__ import annotations

from typing import Any

import typer

from tarmac.cli import app, open_project
from tarmac.cli._output import console, emit, esc, print_json, utc

JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
REASON = typer.Option(..., "--reason", help="Why (recorded in the audit trail).")


def _said(loop: Any, as_json: bool) -> None:
    if as_json:
        print_json(loop.to_dict())
        return
    colour = {"promoted": "green", "canary": "cyan", "rejected": "yellow"}.get(loop.state, "red")
    what = {"promoted": f"promoted: v{loop.version} is the champion of {loop.model}",
            "canary": f"canary started: v{loop.version} of {loop.model} serves "
                      f"{loop.policy.get('canary_percent', '?')}% for "
                      f"{loop.policy.get('canary_for', '?')}",
            "rejected": f"rejected: v{loop.version} of {loop.model}; the champion "
                        f"{f'v{loop.champion}' if loop.champion else '(none)'} stays"}
    text = what.get(loop.state, f"{loop.state}: {loop.reason or ''}")
    console.print(f"[{colour}]{esc(text)}[/{colour}] [dim](loop {esc(loop.id[:8])}, "
                  f"triggered by monitor run {esc(loop.trigger_run[:8])})[/dim]")


@app.command()
def approve(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="The model whose retraining loop awaits approval."),
    version: int = typer.Argument(None, help="The retrained version (a check: it must be the "
                                             "loop's)."),
    reason: str = REASON,
    as_json: bool = JSON,
) -> None:
    """Approve a change waiting for you: a protected alias's move (`tarmac approvals`), or
    a retrained version a monitor's loop is holding for approval.

    A protected alias moves once enough distinct users other than the requester approved
    (its gates are checked again then). A loop's version is promoted through the gated
    promotion (refused, and the loop failed, if its gates no longer pass against the
    champion); a canary-first policy whose canary has not run yet starts its canary instead.
    See `tarmac monitor loops`.
    """
    from tarmac.access.approvals import approve_request, pending
    from tarmac.monitoring.loop import approve as approve_loop

    p = open_project(ctx)
    if any(version is None or r.version == version for r in pending(p, model)):
        _request_said(approve_request(p, model, version, reason=reason), as_json)
        return
    _said(approve_loop(p, model, version, reason=reason), as_json)


def _request_said(req: Any, as_json: bool) -> None:
    if as_json:
        print_json(req.to_dict())
        return
    what = f"{req.model}@{req.alias} -> v{req.version}"
    if req.status == "applied":
        console.print(f"[green]applied[/green] {esc(what)}: approved by "
                      f"{esc(', '.join(req.approvers))} (requested by {esc(req.requested_by)})")
    elif req.status == "rejected":
        console.print(f"[yellow]rejected[/yellow] {esc(what)} (request {esc(req.id)})")
    else:
        console.print(f"[yellow]approved[/yellow] {esc(what)}: {len(req.approvers)} "
                      f"approval(s) so far ({esc(', '.join(req.approvers))}); the alias moves "
                      "when enough distinct users have approved")


@app.command()
def reject(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="The model whose retraining loop to end."),
    version: int = typer.Argument(None, help="The retrained version (a check: it must be the "
                                             "loop's)."),
    reason: str = REASON,
    as_json: bool = JSON,
) -> None:
    """Reject a protected alias's change waiting for approvals, or the retrained version of a
    loop awaiting approval or in canary (the canary is aborted and the champion stays)."""
    from tarmac.access.approvals import pending, reject_request
    from tarmac.monitoring.loop import reject as reject_loop

    p = open_project(ctx)
    if any(version is None or r.version == version for r in pending(p, model)):
        _request_said(reject_request(p, model, version, reason=reason), as_json)
        return
    _said(reject_loop(p, model, version, reason=reason), as_json)


def list_loops(ctx: typer.Context, model: str | None, open_only: bool, limit: int,
               as_json: bool) -> None:
    """What ``tarmac monitor loops`` prints: one row per loop, newest first."""
    from tarmac.monitoring.loop import loops

    p = open_project(ctx)
    found = loops(p, model, open_only=open_only, limit=limit)
    if as_json:
        print_json([lp.to_dict() for lp in found])
        return
    rows = [{"loop": lp.id[:8], "model": lp.model, "monitor": lp.monitor, "state": lp.state,
             "version": f"v{lp.version}" if lp.version else None,
             "champion": f"v{lp.champion}" if lp.champion else None,
             "policy": lp.policy.get("promote"), "trigger": lp.trigger_run[:8],
             "started": utc(lp.started_at), "reason": lp.reason} for lp in found]
    emit(rows, [("loop", "loop"), ("model", "model"), ("monitor", "monitor"),
                ("state", "state"), ("version", "version"), ("champion", "champion then"),
                ("policy", "policy"), ("trigger", "trigger run"), ("started", "started (UTC)"),
                ("reason", "reason")], as_json=False, title="retraining loops",
         empty="no retraining loops" + (f" of '{model}'" if model else "")
               + (" open" if open_only else ""))
