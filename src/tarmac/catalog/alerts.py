"""Alerts in the catalog: per (monitor, check, column) whether it is firing, and the history of
every delivery attempted (channel, outcome, attempts, status code, error).

Reads take a ``Catalog``; writes take the ``Connection`` of a ledger transaction, so a state
change or a delivery record commits together with its audit record. The state is what makes
one ongoing drift one alert across evaluations and process restarts
(``tarmac.monitoring.alerts.Alerter``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, delete, insert, select

from tarmac.catalog import _tables as t
from tarmac.catalog._paging import paginate
from tarmac.catalog.records import Page, to_datetime
from tarmac.catalog.store import Catalog

AlertState = Literal["firing", "resolved"]
Outcome = Literal["delivered", "failed"]


@dataclass(frozen=True)
class AlertStatus:
    """Where one (monitor, check, column) stands: ``firing`` since ``since`` (an episode,
    ``incident``) or ``resolved``; the last notice sent (its number in the episode, its
    idempotency key, when) and whether a channel has not delivered it yet (``pending``)."""

    monitor: str
    check: str
    column: str
    state: AlertState
    incident: str
    since: int
    notice: int
    notice_key: str
    notified_at: int
    pending: bool
    verdict: str
    updated_at: int

    def to_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "check": self.check, "column": self.column or None,
                "state": self.state, "since": to_datetime(self.since), "notice": self.notice,
                "notice_key": self.notice_key, "notified_at": to_datetime(self.notified_at),
                "pending": self.pending, "verdict": self.verdict}


@dataclass(frozen=True)
class DeliveryRecord:
    """One notice's delivery on one channel: ``delivered`` or ``failed`` after ``attempts``
    tries, the last HTTP status and error (truncated; secrets and URLs never appear)."""

    id: int
    monitor: str
    check: str
    column: str
    state: AlertState
    notice_key: str
    channel: str
    outcome: Outcome
    attempts: int
    status_code: int | None
    error: str | None
    seconds: float
    at: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "monitor": self.monitor, "check": self.check,
                "column": self.column or None, "state": self.state,
                "notice_key": self.notice_key, "channel": self.channel,
                "outcome": self.outcome, "attempts": self.attempts,
                "status_code": self.status_code, "error": self.error,
                "seconds": round(self.seconds, 3), "at": to_datetime(self.at)}


def _status(r: Any) -> AlertStatus:
    return AlertStatus(r.monitor, r.check_name, r.column_name, r.state, r.incident, r.since,
                       r.notice, r.notice_key, r.notified_at, bool(r.pending), r.verdict,
                       r.updated_at)


def _delivery(r: Any) -> DeliveryRecord:
    return DeliveryRecord(r.id, r.monitor, r.check_name, r.column_name, r.state, r.notice_key,
                          r.channel, r.outcome, r.attempts, r.status_code, r.error, r.seconds,
                          r.at)


def alert_states(catalog: Catalog, monitor: str) -> dict[tuple[str, str], AlertStatus]:
    """Every (check, column) of ``monitor`` that ever alerted, with where it stands."""
    s = t.alert_state
    with catalog.engine.connect() as conn:
        rows = conn.execute(select(s).where(s.c.monitor == monitor)).all()
    return {(r.check_name, r.column_name): _status(r) for r in rows}


def put_alert_state(conn: Connection, status: AlertStatus) -> None:
    """Insert or replace one (monitor, check, column)'s state."""
    s = t.alert_state
    conn.execute(delete(s).where((s.c.monitor == status.monitor)
                                 & (s.c.check_name == status.check)
                                 & (s.c.column_name == status.column)))
    conn.execute(insert(s).values(
        monitor=status.monitor, check_name=status.check, column_name=status.column,
        state=status.state, incident=status.incident, since=status.since, notice=status.notice,
        notice_key=status.notice_key, notified_at=status.notified_at,
        pending=int(status.pending), verdict=status.verdict, updated_at=status.updated_at))


def add_deliveries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Record deliveries: dicts with the ``alert_deliveries`` columns (``id`` assigned)."""
    if rows:
        conn.execute(insert(t.alert_deliveries), rows)


def delivered_channels(catalog: Catalog, notice_key: str) -> set[str]:
    """The channels that delivered the notice with this idempotency key."""
    d = t.alert_deliveries
    with catalog.engine.connect() as conn:
        rows = conn.execute(select(d.c.channel).where(
            (d.c.notice_key == notice_key) & (d.c.outcome == "delivered"))).all()
    return {r.channel for r in rows}


def alert_deliveries(catalog: Catalog, *, monitor: str | None = None, limit: int = 100,
                     cursor: str | None = None) -> Page[DeliveryRecord]:
    """A page of deliveries, newest first (of one monitor, or of all)."""
    d = t.alert_deliveries
    query = select(d) if monitor is None else select(d).where(d.c.monitor == monitor)
    with catalog.engine.connect() as conn:
        rows, nxt = paginate(conn, query, [(d.c.id, True)], limit=limit, cursor=cursor)
    return Page([_delivery(r) for r in rows], nxt)


__all__ = ["AlertState", "AlertStatus", "DeliveryRecord", "Outcome", "add_deliveries",
           "alert_deliveries", "alert_states", "delivered_channels", "put_alert_state"]
