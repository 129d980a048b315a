"""``tarmac doctor``: is everything the catalog says there really there?

Checks every lake table the catalog knows (its Delta log exists, the catalog's version is the
lake's, every data file of the current version is in storage) and the audit trail's hash
chain. Exit 0 when all is well, 1 naming each problem.
"""

from __future__ import annotations

from typing import Any

import typer

from tarmac.cli import app, open_project
from tarmac.cli._output import console, emit, print_json


def table_health(p: Any, name: str, catalog_version: int | None) -> list[str]:
    """What is wrong with one lake table (``[]`` if nothing)."""
    lake = p.lake
    dt = lake.latest(name)
    if dt is None:
        return [f"no Delta table at {lake.uri(name)} (the catalog records version "
                f"{catalog_version})"]
    problems = []
    if catalog_version is not None and dt.version() != catalog_version:
        problems.append(f"the catalog records version {catalog_version}, the lake holds "
                        f"version {dt.version()}")
    missing = lake.missing_files(name)
    if missing:
        problems.append(f"version {dt.version()} is missing {len(missing)} data file(s): "
                        + ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else ""))
    return problems


def health_label(problems: list[str]) -> str:
    return "ok" if not problems else "; ".join(problems)


@app.command()
def doctor(ctx: typer.Context, as_json: bool = typer.Option(
        False, "--json", help="Print a JSON array of checks.")) -> None:
    """Check the lake and the catalog: every file of every current version is there, the
    catalog's versions are the lake's, the audit chain is intact. Exit 1 naming problems."""
    p = open_project(ctx)
    checks: list[dict[str, Any]] = []
    for d in p.datasets():
        problems = table_health(p, d.name, d.version)
        checks.append({"check": f"table {d.name}", "ok": not problems,
                       "detail": health_label(problems) if problems else
                       f"version {d.version}: {d.files:,} file(s) present"})
    chain = p.ledger.verify()
    checks.append({"check": "audit chain", "ok": chain.ok,
                   "detail": f"{chain.records:,} records, chain intact" if chain.ok
                   else f"broken at record {chain.bad_seq}: {chain.problem}"
                   if chain.kind == "tampered" and chain.bad_seq else str(chain.problem)})
    if as_json:
        print_json(checks)
    else:
        rows = [c | {"status": "ok" if c["ok"] else "PROBLEM"} for c in checks]
        emit(rows, [("check", "check"), ("status", "status"), ("detail", "detail")],
             as_json=False, title="doctor")
        bad = sum(not c["ok"] for c in checks)
        console.print(f"{bad} problem(s) found" if bad else "all checks passed", markup=False)
    if not all(c["ok"] for c in checks):
        raise typer.Exit(1)
