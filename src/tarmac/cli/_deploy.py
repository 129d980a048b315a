"""``tarmac deploy``: what serves each model endpoint beside its champion, and how it is doing.

    tarmac deploy NAME --canary V --percent P    # P% of entities (sticky by key) get V
    tarmac deploy NAME --shadow V                # V scores every request, logged only
    tarmac deploy NAME --promote-canary | --abort | --stop-shadow
    tarmac deploy status [NAME]                  # versions, split, traffic, log counts

``deploy`` is a group whose subcommands (``status``, and ``export`` added later) sit beside the
``deploy NAME ...`` form: a first word that is not a subcommand is a model name. A model named
like a subcommand cannot be changed from here (its name would be read as the subcommand); the
SDK ``p.serving.deploy(NAME, ...)`` can.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from tarmac.cli import app, open_project
from tarmac.cli._output import console, emit, esc, print_json
from tarmac.errors import UsageError

CHANGE = "change"  # the hidden command behind `tarmac deploy NAME ...`
SUBCOMMANDS = ("status", "export")  # words that are never read as a model name here
_CHANGE_FLAGS = ("--canary", "--percent", "--shadow", "--stop-shadow", "--promote-canary",
                 "--abort")


class _DeployGroup(TyperGroup):
    """Routes ``deploy NAME ...`` to the hidden ``change`` command, subcommands as usual."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-"):
            first = args[0]
            flags = [a.split("=")[0] for a in args[1:]]
            if first in SUBCOMMANDS and any(f in _CHANGE_FLAGS for f in flags):
                raise UsageError(
                    f"'{first}' is a subcommand of `tarmac deploy`, so a model named "
                    f"'{first}' cannot be deployed from the command line",
                    hint=f'use the SDK: p.serving.deploy("{first}", ...)')
            if first not in self.commands or first == CHANGE:
                args = [CHANGE, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        formatter.write_usage(ctx.command_path, "NAME --canary V --percent P | --shadow V | "
                                                "--promote-canary | --abort | --stop-shadow; "
                                                "or: status [NAME]")


deploy_app = typer.Typer(
    cls=_DeployGroup, no_args_is_help=True,
    help="Deployments of model endpoints: canary (sticky share of entities), shadow (scores "
         "every request, logged only), promote-canary (gated, as `tarmac promote`), abort; "
         "`tarmac deploy status` shows versions, traffic and the prediction log's counts.")
app.add_typer(deploy_app, name="deploy")


@deploy_app.command(CHANGE, hidden=True)
def change(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The endpoint: a model name."),
    canary: int = typer.Option(None, "--canary", metavar="V",
                               help="Give this version a share of the traffic."),
    percent: float = typer.Option(None, "--percent", metavar="P",
                                  help="The canary's share of entities, 0 to 100 (sticky: "
                                       "the same entity always gets the same version)."),
    shadow: int = typer.Option(None, "--shadow", metavar="V",
                               help="Score every request with this version too, off the hot "
                                    "path; its predictions are logged, never returned."),
    stop_shadow: bool = typer.Option(False, "--stop-shadow", help="Remove the shadow."),
    promote_canary: bool = typer.Option(False, "--promote-canary",
                                        help="The canary becomes champion (its gates must "
                                             "have passed, as for `tarmac promote`)."),
    abort: bool = typer.Option(False, "--abort", help="Remove the canary."),
    reason: str = typer.Option(None, "--reason", help="Why (goes into the audit trail)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Change what serves NAME beside its champion (one governed, audited change)."""
    p = open_project(ctx)
    result = p.serving.deploy(name, canary=canary, percent=percent, shadow=shadow,
                              promote_canary=promote_canary, abort=abort,
                              stop_shadow=stop_shadow, reason=reason)
    if as_json:
        print_json(result.to_dict())
        return
    after = result.after
    split = _split(result.champion, after.canary_version, after.canary_percent,
                   after.shadow_version)
    console.print(f"[green]deployed[/green] [bold]{esc(name)}[/bold] ({esc(result.action)}): "
                  f"{esc(split)}")
    console.print("  servers pick the change up within a few seconds; "
                  f"[bold]tarmac deploy status {esc(name)}[/bold] shows the traffic")


def _split(champion: int | None, canary: int | None, percent: float | None,
           shadow: int | None) -> str:
    """``v3 90% / v4 10% canary, v5 shadow`` ."""
    if champion is None:
        return "no champion (requests get 503)"
    share = percent or 0.0
    text = f"v{champion} {100 - share:g}%" if canary is not None else f"v{champion} 100%"
    if canary is not None:
        text += f" / v{canary} {share:g}% canary"
    if shadow is not None:
        text += f", v{shadow} shadow"
    return text


@deploy_app.command("status")
def status(
    ctx: typer.Context,
    name: str = typer.Argument(None, help="One endpoint (default: all)."),
    since: str = typer.Option("1h", "--since", help="Traffic over this window (e.g. 15m, "
                                                     "1h, 1d)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Versions, traffic split, requests, errors and p99 per version (prediction log)."""
    p = open_project(ctx)
    found = p.serving.status(name, since=since)
    if as_json:
        print_json([s.to_dict() for s in found])
        return
    if not found:
        console.print("[dim]no model is registered yet[/dim]")
        return
    rows: list[dict[str, Any]] = []
    for s in found:
        rows.append({"endpoint": s.endpoint,
                     "serving": _split(s.champion, s.canary, s.percent, s.shadow),
                     "answered": s.answered, "logged": s.logged, "pending": s.pending})
    emit(rows, [("endpoint", "endpoint"), ("serving", "versions"), ("answered", "answered"),
                ("logged", "logged"), ("pending", "pending")], as_json=False)
    traffic = [{"endpoint": s.endpoint, **t} for s in found for t in s.traffic.values()]
    if traffic:
        emit(traffic, [("endpoint", "endpoint"), ("version", "version"), ("role", "role"),
                       ("requests", "requests"), ("predictions", "predictions"),
                       ("errors", "errors"), ("p99_ms", "p99 ms")], as_json=False,
             title=f"traffic, last {since} (flushed predictions)")
    else:
        console.print(f"[dim]no logged traffic in the last {esc(since)}[/dim]")
    for s in found:
        if s.traffic_note:
            console.print(f"[yellow]note:[/yellow] {esc(s.traffic_note)}")
