"""Who may do what: ``tarmac whoami``, ``grant`` / ``ungrant`` / ``grants``, ``protect`` /
``unprotect`` / ``protections`` and ``approvals`` (``tarmac approve`` is in ``_loop``: it
approves a retraining loop or a protected alias's change)."""

from __future__ import annotations

import typer

from tarmac.cli import app, open_project
from tarmac.cli._lake import JSON
from tarmac.cli._output import console, emit, esc, print_json


@app.command()
def whoami(ctx: typer.Context, as_json: bool = typer.Option(
        False, "--json", help="Print JSON instead of a line.")) -> None:
    """Who this shell acts as (TARMAC_TOKEN's user where access is enforced) and the mode."""
    p = open_project(ctx)
    me = p.access.whoami()
    if as_json:
        print_json(me)
        return
    role = f" ({me['role']})" if me["role"] else ""
    console.print(f"{esc(me['user'])}{esc(role)}: access {esc(me['access'])} "
                  f"[dim](auth: {esc(me['auth'])})[/dim]")


@app.command()
def grant(
    ctx: typer.Context,
    subject: str = typer.Argument(..., help="A role (viewer, analyst, data-engineer, "
                                            "ml-engineer, admin) or a user name."),
    permission: str = typer.Argument(..., help="PERMISSION:KIND:NAME, e.g. read:table:orders, "
                                               "train:model:churn, "
                                               "promote:alias:churn@champion."),
) -> None:
    """Grant a permission on one table, model or alias. The first grant of a permission on a
    resource restricts it: from then on only its grantees (and admins) hold it there."""
    p = open_project(ctx)
    row = p.access.grant(subject, permission)
    console.print(f"[green]granted[/green] {esc(row.permission)} on {esc(row.resource)} to "
                  f"{esc(row.subject)}")


@app.command()
def ungrant(
    ctx: typer.Context,
    subject: str = typer.Argument(..., help="The role or user holding the grant."),
    permission: str = typer.Argument(..., help="PERMISSION:KIND:NAME as granted."),
) -> None:
    """Take a grant back (the resource stays restricted to the grants left)."""
    p = open_project(ctx)
    last = p.access.ungrant(subject, permission)
    console.print(f"[green]removed[/green] the grant of {esc(permission)} to {esc(subject)}"
                  + ("; it was the last one there: the roles' defaults hold again" if last
                     else "; the resource stays restricted to the grants left"))


@app.command()
def grants(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Every grant: subject, permission and resource."""
    p = open_project(ctx)
    emit([g.to_dict() for g in p.access.grants()],
         [("resource", "resource"), ("permission", "permission"), ("subject", "to"),
          ("actor", "by"), ("created_at", "since (UTC)")], as_json=as_json, title="grants",
         empty="no grants: each role holds its permissions on every resource")


@app.command()
def protect(
    ctx: typer.Context,
    alias: str = typer.Argument(..., help="MODEL@ALIAS, e.g. churn@champion."),
    role: str = typer.Option("admin", "--role", help="Only users with this role (or admins) "
                                                     "may move it or approve a move."),
    approvals: int = typer.Option(0, "--approvals", help="Approvals needed from other users "
                                                         "with the role (four-eyes: 1 or 2)."),
) -> None:
    """Protect an alias: only the role moves it, and only after N approvals from distinct
    other users (`tarmac approve MODEL`). Enforced where access is (see `tarmac whoami`)."""
    p = open_project(ctx)
    rule = p.access.protect(alias, role=role, approvals=approvals)
    console.print(f"[green]protected[/green] {esc(rule.model)}@{esc(rule.alias)}: role "
                  f"{esc(rule.role)}, {rule.approvals} approval(s)")
    if not p.access.enforced:
        console.print("[yellow]note[/yellow]: access is not enforced in this project "
                      "(auth: off, or the embedded catalog without TARMAC_TOKEN): nothing "
                      "checks the protection until it is")


@app.command()
def unprotect(ctx: typer.Context,
              alias: str = typer.Argument(..., help="MODEL@ALIAS")) -> None:
    """Remove an alias's protection."""
    p = open_project(ctx)
    p.access.unprotect(alias)
    console.print(f"[green]unprotected[/green] {esc(alias)}")


@app.command()
def protections(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Protected aliases: the role that moves each and the approvals it needs."""
    p = open_project(ctx)
    emit([r.to_dict() for r in p.access.protections()],
         [("alias", "alias"), ("role", "role"), ("approvals", "approvals"), ("actor", "by"),
          ("created_at", "since (UTC)")], as_json=as_json, title="protected aliases",
         empty="no protected aliases")


@app.command()
def approvals(ctx: typer.Context,
              model: str = typer.Argument(None, help="Only this model's."),
              as_json: bool = JSON) -> None:
    """Alias changes waiting for approvals."""
    from tarmac.access.approvals import pending

    p = open_project(ctx)
    emit([r.to_dict() for r in pending(p, model)],
         [("id", "request"), ("alias", "alias"), ("version", "to version"),
          ("requested_by", "by"), ("approvers", "approved by"), ("requested_at", "since (UTC)"),
          ("reason", "reason")], as_json=as_json, title="waiting for approval",
         empty="no alias change is waiting for approval")
