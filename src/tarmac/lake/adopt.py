"""Adopt lake tables into a catalog that does not know them, explicitly and audited.

When a project is pointed at a new catalog without copying the old one (``tarmac catalog
copy``), the Delta tables Tarmac wrote are still in the lake but the catalog has no entry, no
lineage and no audit record for them, and opening the project refuses (see
``tarmac.catalog.lake_check``). ``adopt`` registers each such table at its current version, one
audited ``dataset.adopt`` commit per table naming the version and the runs that wrote it, so
the new catalog's history starts there. What happened before stays in the old catalog. A
table whose first write crashed between its Delta commit and its catalog record (a run of this
catalog) is registered the same way.

Example::

    p = tarmac.open(".", check_lake=False)
    [a.table for a in adopt(p)]            # ['customers', 'orders']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tarmac.catalog import Column, now_us
from tarmac.catalog import store as cat
from tarmac.catalog.lake_check import commit_runs, unknown_tables
from tarmac.errors import UsageError
from tarmac.lake._delta import snapshot

if TYPE_CHECKING:
    from tarmac.project import Project


@dataclass(frozen=True)
class Adopted:
    """One table registered by ``adopt``: its name, version and rows at adoption."""

    table: str
    version: int
    rows: int


def adopt(project: Project, names: list[str] | None = None, *,
          dry_run: bool = False) -> list[Adopted]:
    """Register the lake's Tarmac tables this catalog does not know (or only ``names``)."""
    lake, root = project.lake, project.config.lake
    unknown = unknown_tables(project.catalog, root, foreign_only=False)
    if names:
        wrong = [n for n in names if n not in unknown]
        if wrong:
            raise UsageError(
                f"cannot adopt {', '.join(wrong)}: not a Tarmac table this catalog lacks "
                f"(tables to adopt: {', '.join(unknown) or 'none'})")
        unknown = [n for n in unknown if n in names]
    out = []
    for name in unknown:
        dt = lake.latest(name)
        if dt is None:  # pragma: no cover - listed a moment ago
            continue
        snap = snapshot(dt)
        out.append(Adopted(name, snap.version, snap.rows))
        if dry_run:
            continue
        now = now_us()
        values = {
            "uri": lake.uri(name), "owner": project.config.owner or project.ledger.actor,
            "version": snap.version, "rows": snap.rows, "bytes": snap.bytes,
            "files": snap.files, "created_at": now, "updated_at": now,
            "last_run_id": None, "last_actor": project.ledger.actor,
            "columns": [Column(f.name, str(f.type), f.nullable) for f in snap.schema],
        }
        details = {"version": snap.version, "rows": snap.rows,
                   "written_by_runs": commit_runs(root, name)}
        project.ledger.commit("dataset.adopt", name, details,
                              change=lambda conn, v=values, n=name:  # type: ignore[misc]
                              cat.upsert_dataset(conn, name=n, values=v))
    return out
