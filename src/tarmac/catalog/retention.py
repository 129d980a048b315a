"""Retention policies in the catalog: per lake table, how long rows are kept and by which time
column. Reads take a ``Catalog``; writes take the ``Connection`` of a ledger transaction, so a
policy change commits with its audit record (``tarmac.access.retention``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from tarmac.catalog import _tables as t
from tarmac.catalog.records import now_us, to_datetime
from tarmac.catalog.store import Catalog


@dataclass(frozen=True)
class RetentionPolicy:
    """Rows of ``table`` whose ``time_column`` is older than ``keep_seconds`` are deleted."""

    table: str
    keep_seconds: int
    time_column: str
    created_at: int
    updated_at: int
    actor: str
    applied_at: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "keep_seconds": self.keep_seconds,
                "time_column": self.time_column, "updated_at": to_datetime(self.updated_at),
                "actor": self.actor, "applied_at": to_datetime(self.applied_at)}


def _policy(r: Any) -> RetentionPolicy:
    return RetentionPolicy(r.table_name, r.keep_seconds, r.time_column, r.created_at,
                           r.updated_at, r.actor, r.applied_at)


def retention_policies(catalog: Catalog) -> list[RetentionPolicy]:
    """Every policy, by table name."""
    p = t.retention_policies
    with catalog.engine.connect() as conn:
        return [_policy(r) for r in conn.execute(select(p).order_by(p.c.table_name)).all()]


def put_policy(conn: Connection, table: str, keep_seconds: int, time_column: str,
               actor: str) -> None:
    """Insert or replace a table's policy."""
    p = t.retention_policies
    now = now_us()
    found = conn.execute(select(p.c.created_at).where(p.c.table_name == table)).first()
    conn.execute(delete(p).where(p.c.table_name == table))
    conn.execute(insert(p).values(table_name=table, keep_seconds=keep_seconds,
                                  time_column=time_column,
                                  created_at=found.created_at if found else now,
                                  updated_at=now, actor=actor, applied_at=None))


def drop_policy(conn: Connection, table: str) -> bool:
    p = t.retention_policies
    return conn.execute(delete(p).where(p.c.table_name == table)).rowcount == 1


def mark_applied(conn: Connection, table: str, at: int) -> None:
    p = t.retention_policies
    conn.execute(update(p).where(p.c.table_name == table).values(applied_at=at))


__all__ = ["RetentionPolicy", "drop_policy", "mark_applied", "put_policy",
           "retention_policies"]
