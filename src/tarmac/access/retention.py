"""Retention: how long a lake table keeps its rows, enforced by deleting and vacuuming.

``Retention(p).set("clicks", "400d")`` records a policy (audited); ``apply()`` deletes, per
policy, the rows whose time column is older than the policy allows (a Delta DELETE, audited)
and vacuums the table with the lake's usual retention (7 days), so deleted rows leave the files
of versions older than that. ``tarmac scheduler`` applies the policies at most once an hour;
``tarmac retention apply`` does it now (cron).

The time column defaults to the table's only timestamp column; a table with none or several
needs ``column=``. A policy on a table that does not exist, a column that is not a timestamp,
or a duration that is not positive is refused with the reason.

Example::

    from tarmac.access.retention import Retention
    Retention(p).set("clicks", "400d")
    Retention(p).apply()          # [Applied(table='clicks', rows=1234, ...)]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tarmac.catalog import now_us
from tarmac.catalog.retention import (
    RetentionPolicy,
    drop_policy,
    mark_applied,
    put_policy,
    retention_policies,
)
from tarmac.errors import UsageError, echo
from tarmac.humanize import duration, positive_duration

if TYPE_CHECKING:
    from tarmac.project import Project

_log = logging.getLogger("tarmac.retention")

#: how often the scheduler applies the policies
EVERY = timedelta(hours=1)
#: the vacuum after a retention delete keeps this much time travel
VACUUM_RETAIN = "7d"


@dataclass(frozen=True)
class Applied:
    """One policy applied: the rows deleted (older than ``before``) and the new version."""

    table: str
    rows: int
    before: datetime
    version: int | None
    files_removed: int

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "rows": self.rows, "before": self.before,
                "version": self.version, "files_removed": self.files_removed}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Retention:
    """A project's retention policies (``p.retention``)."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def policies(self) -> list[RetentionPolicy]:
        """Every policy, by table."""
        return retention_policies(self.project.catalog)

    def set(self, table: str, keep: str | timedelta, *, column: str | None = None,
            ) -> RetentionPolicy:
        """Keep ``table``'s rows for ``keep`` (``"400d"``) by ``column`` (default: its only
        timestamp column); audited as ``retention.set``."""
        self.project.ledger.guard.check("erase", f"table:{table}")
        lake = self.project.lake
        if not lake.exists(table):
            raise lake.missing(table)
        span = positive_duration(keep, f"retention for {table!r}", "400d")
        schema = lake.scan(table).schema
        times = [f.name for f in schema if pa.types.is_timestamp(f.type)
                 or pa.types.is_date(f.type)]
        if column is None:
            if len(times) != 1:
                raise UsageError(f"table {table!r} has {len(times)} time columns "
                                 f"({', '.join(times) or 'none'}): say which one with "
                                 "--column")
            column = times[0]
        elif column not in times:
            raise UsageError(f"column {echo(column)!r} of {table!r} is not a timestamp or date "
                             f"(time columns: {', '.join(times) or 'none'})")
        seconds = int(span.total_seconds())
        actor = self.project.ledger.actor
        self.project.ledger.commit(
            "retention.set", table, {"keep": duration(seconds), "column": column},
            change=lambda conn: put_policy(conn, table, seconds, column, actor))
        return next(p for p in self.policies() if p.table == table)

    def unset(self, table: str) -> bool:
        """Drop ``table``'s policy (audited); False if it had none."""
        self.project.ledger.guard.check("erase", f"table:{table}")
        if not any(p.table == table for p in self.policies()):
            return False
        def change(conn: Any) -> None:
            drop_policy(conn, table)

        self.project.ledger.commit("retention.unset", table, {}, change=change)
        return True

    def due(self, now: datetime | None = None) -> list[RetentionPolicy]:
        """Policies not applied in the last hour (what the scheduler applies)."""
        at = int((now or datetime.now(UTC)).timestamp() * 1_000_000)
        every = int(EVERY.total_seconds() * 1_000_000)
        return [p for p in self.policies() if p.applied_at is None or at - p.applied_at >= every]

    def apply(self, tables: list[str] | None = None, *, now: datetime | None = None,
              dry_run: bool = False) -> list[Applied]:
        """Delete, per policy, the rows older than it allows, then vacuum; ``dry_run`` counts
        them only."""
        with self.project.ledger.guard.acting("erase"):
            return self._apply(tables, now=now, dry_run=dry_run)

    def _apply(self, tables: list[str] | None, *, now: datetime | None,
               dry_run: bool) -> list[Applied]:
        now = now or datetime.now(UTC)
        out = []
        for policy in self.policies():
            if tables is not None and policy.table not in tables:
                continue
            if not self.project.lake.exists(policy.table):  # dropped since: say so, once a run
                _log.warning("retention policy of %r: the table no longer exists (tarmac "
                             "retention unset %s)", policy.table, policy.table)
                continue
            before = now - timedelta(seconds=policy.keep_seconds)
            field = self.project.lake.scan(policy.table).schema.field(policy.time_column)
            bound = before.date().isoformat() if pa.types.is_date(field.type) \
                else before.isoformat()
            where = f"{_quote(policy.time_column)} < '{bound}'"
            found = self.project.sql(f"SELECT count(*) AS n FROM {_quote(policy.table)} "
                                     f"WHERE {where}")
            rows = int(found.column("n")[0].as_py())
            version, removed = None, 0
            if rows and not dry_run:
                version = self.project.lake.delete(policy.table, where).version
                removed = len(self.project.lake.vacuum(policy.table, retain=VACUUM_RETAIN))
            if not dry_run:
                self.project.ledger.commit(
                    "retention.applied", policy.table,
                    {"rows": rows, "before": before.isoformat(), "version": version},
                    change=_marker(policy.table, now_us()))
            out.append(Applied(policy.table, rows, before, version, removed))
        return out


def _marker(table: str, at: int) -> Any:
    def change(conn: Any) -> None:
        mark_applied(conn, table, at)

    return change


__all__ = ["EVERY", "Applied", "Retention"]
