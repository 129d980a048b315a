"""``tarmac erase``: a data subject's rows out of the lake, the prediction log and the online
store, old files included (GDPR art. 17)."""

from __future__ import annotations

import typer

from tarmac.cli import app, open_project
from tarmac.cli._lake import JSON
from tarmac.cli._output import console, emit, esc, print_json


@app.command()
def erase(
    ctx: typer.Context,
    subject: str = typer.Option(..., "--subject", help="The subject's key, COLUMN=VALUE "
                                                       "(e.g. customer_id=10001)."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit trail, e.g. "
                                                     "'GDPR art. 17 request #123')."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be erased; erase "
                                                          "nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Erase a data subject: every row holding the key in every lake table and in the
    prediction log (its request or features), then the old files of those tables (time travel
    to versions before the erasure ends for them), and the feature views reading them are
    materialized again. The audit trail keeps a salted hash of the subject, never the subject.
    Run with --dry-run first; an interrupted erasure completes when run again.
    """
    p = open_project(ctx)
    result = p.erase(subject, reason=reason, dry_run=dry_run)
    if as_json:
        print_json(result.to_dict())
        return
    for d in result.derived:  # never silently left
        console.print(f"[yellow]{esc(d.table)}[/yellow] (from {esc(', '.join(d.derived_from))}): "
                      f"{esc(d.why)} (lake.annotate column_tags: subject:COLUMN)")
    if result.resumed:
        console.print("completing an interrupted erasure of this subject (its erase.started "
                      "had no erase.completed)")
    if not result.tables:
        console.print(f"nothing to erase: no lake table holds {esc(subject)}"
                      + ("" if result.resumed else " (nothing changed)"))
        return
    emit([t.to_dict() for t in result.tables],
         [("table", "table"), ("rows", "rows"), ("version", "new version"),
          ("files_removed", "old files removed")], as_json=False,
         title="would erase (dry run)" if dry_run else "erased")
    if result.views:
        console.print(("would materialize again: " if dry_run else "materialized again: ")
                      + esc(", ".join(result.views)))
    if dry_run:
        console.print(f"[dim]dry run: nothing erased; {result.rows:,} rows in "
                      f"{len(result.tables)} table(s) hold the subject[/dim]")
    else:
        console.print(f"[green]erased[/green] {result.rows:,} rows from "
                      f"{len(result.tables)} table(s); time travel to their earlier versions "
                      f"ends (their files are gone); audit: subject "
                      f"{result.subject_hash[:16]}… (salted hash)")


retention_app = typer.Typer(help="Retention: how long each lake table keeps its rows.",
                            no_args_is_help=True)
app.add_typer(retention_app, name="retention")


@retention_app.command("set")
def retention_set(
    ctx: typer.Context,
    table: str = typer.Argument(..., help="The lake table."),
    keep: str = typer.Argument(..., help="How long rows are kept, e.g. 400d."),
    column: str = typer.Option(None, "--column", help="The time column (default: the table's "
                                                      "only timestamp column)."),
) -> None:
    """Keep TABLE's rows for KEEP: older rows are deleted when the policy is applied (by
    `tarmac scheduler` hourly, or `tarmac retention apply`), and vacuumed."""
    p = open_project(ctx)
    policy = p.retention.set(table, keep, column=column)
    console.print(f"retention of [bold]{esc(policy.table)}[/bold]: rows older than "
                  f"{esc(keep)} by {esc(policy.time_column)} are deleted when applied")


@retention_app.command("unset")
def retention_unset(ctx: typer.Context,
                    table: str = typer.Argument(..., help="The lake table.")) -> None:
    """Drop TABLE's retention policy (its rows are kept from now on)."""
    p = open_project(ctx)
    had = p.retention.unset(table)
    console.print(f"retention of {esc(table)} dropped" if had
                  else f"{esc(table)} had no retention policy (nothing changed)")


@retention_app.command("list")
def retention_list(
    ctx: typer.Context,
    as_json: bool = JSON,
) -> None:
    """Every retention policy: table, how long, by which column, when last applied."""
    from tarmac.humanize import duration

    p = open_project(ctx)
    emit([{**r.to_dict(), "keep": duration(r.keep_seconds)} for r in p.retention.policies()],
         [("table", "table"), ("keep", "keep"), ("time_column", "by"),
          ("applied_at", "last applied"), ("actor", "set by")], as_json=as_json,
         empty="no retention policies (tarmac retention set TABLE 400d)")


@retention_app.command("apply")
def retention_apply(
    ctx: typer.Context,
    tables: list[str] = typer.Argument(None, help="Only these tables (default: all)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count the rows; delete nothing."),
    as_json: bool = JSON,
) -> None:
    """Apply the retention policies now: delete the rows older than each allows, then vacuum
    (time travel keeps 7 days)."""
    p = open_project(ctx)
    done = p.retention.apply(tables or None, dry_run=dry_run)
    emit([a.to_dict() for a in done], [("table", "table"), ("rows", "rows older"),
                                       ("before", "before"), ("version", "new version")],
         as_json=as_json, empty="no retention policies to apply",
         title="would delete (dry run)" if dry_run else "deleted")


users_app = typer.Typer(help="Users and their roles (viewer, analyst, data-engineer, "
                             "ml-engineer, admin).", no_args_is_help=True)
app.add_typer(users_app, name="users")
tokens_app = typer.Typer(help="API tokens: created for a user, shown once, stored hashed, "
                              "expiring and revocable.", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The user's name."),
    role: str = typer.Option(..., "--role", help="viewer, analyst, data-engineer, ml-engineer "
                                                 "or admin."),
) -> None:
    """Add a user with a role (audited)."""
    p = open_project(ctx)
    user = p.identity.add_user(name, role)
    console.print(f"added user [bold]{esc(user.name)}[/bold] ({esc(user.role)}); give them a "
                  f"token: tarmac tokens create --user {esc(user.name)}")


@users_app.command("role")
def users_role(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The user's name."),
    role: str = typer.Argument(..., help="The new role."),
) -> None:
    """Change a user's role (audited)."""
    p = open_project(ctx)
    user = p.identity.set_role(name, role)
    console.print(f"{esc(user.name)} is now {esc(user.role)}")


@users_app.command("list")
def users_list(
    ctx: typer.Context,
    as_json: bool = JSON,
) -> None:
    """Every user with their role."""
    p = open_project(ctx)
    emit([u.to_dict() for u in p.identity.users()],
         [("name", "user"), ("role", "role"), ("created_at", "added"), ("actor", "by")],
         as_json=as_json, empty="no users (tarmac users add NAME --role ROLE)")


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    user: str = typer.Option(..., "--user", help="Whose token."),
    expires: str = typer.Option(None, "--expires", help="e.g. 30d (default: never)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a line."),
) -> None:
    """Create a token for a user. The token is printed ONCE: only its hash is kept."""
    from tarmac.cli._output import utc

    p = open_project(ctx)
    token = p.identity.create_token(user, expires=expires)
    if as_json:
        print_json({"id": token.id, "user": token.user, "token": token.text,
                    "expires_at": utc(token.expires_at)})
        return
    console.print(f"token {esc(token.id)} for {esc(token.user)}"
                  + (f", expires {utc(token.expires_at):%Y-%m-%d %H:%M} UTC"
                     if token.expires_at else "") + " (shown once; keep it secret):")
    print(token.text)


@tokens_app.command("list")
def tokens_list(
    ctx: typer.Context,
    user: str = typer.Option(None, "--user", help="Only this user's tokens."),
    as_json: bool = JSON,
) -> None:
    """Tokens by id (never their secrets): user, created, expires, revoked."""
    p = open_project(ctx)
    emit([t.to_dict() for t in p.identity.tokens(user)],
         [("id", "id"), ("user", "user"), ("created_at", "created"),
          ("expires_at", "expires"), ("revoked_at", "revoked")], as_json=as_json,
         empty="no tokens")


@tokens_app.command("revoke")
def tokens_revoke(ctx: typer.Context,
                  token_id: str = typer.Argument(..., help="The token's id.")) -> None:
    """Revoke a token (a running server stops accepting it within 30 seconds)."""
    p = open_project(ctx)
    done = p.identity.revoke(token_id)
    console.print(f"token {esc(token_id)} revoked" if done
                  else f"token {esc(token_id)} was revoked already (nothing changed)")
