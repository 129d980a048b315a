"""Monitors in the catalog: the declarations evaluated, one row per evaluated window, and the
retraining loops monitors start.

A window is claimed before it is evaluated (``claim_window``): the row for (monitor, window end)
is unique, so of two processes evaluating the same window one gets it, and a window that
succeeded is never evaluated again. A claim whose owner died (same host, process gone) or that
failed may be taken over; the run keeps its id and counts the attempt, so results written by a
dead attempt are replaced, not added to (``tarmac.monitoring`` merges results on their keys).

Reads take a ``Catalog``; writes that need an audit record take the ``Connection`` of a ledger
transaction.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tarmac.catalog import _tables as t
from tarmac.catalog.records import now_us, to_datetime
from tarmac.catalog.store import Catalog

RunStatus = Literal["running", "succeeded", "failed"]
LoopState = Literal["training", "awaiting_approval", "canary", "promoted", "failed", "rejected",
                    "superseded"]
#: loop states that are still going somewhere (one such loop per model at a time)
OPEN_LOOP_STATES = ("training", "awaiting_approval", "canary")
#: a claim held by a process on another host is taken over after this long
FOREIGN_CLAIM_US = 3600 * 1_000_000


@dataclass(frozen=True)
class MonitorRecord:
    """A monitor as last evaluated: the model it watches and its declaration (``spec``)."""

    name: str
    model: str
    spec: dict[str, Any]
    spec_hash: str
    every_seconds: int
    window_seconds: int
    created_at: int
    updated_at: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "every_seconds": self.every_seconds,
                "window_seconds": self.window_seconds, "spec": self.spec,
                "updated_at": to_datetime(self.updated_at)}


@dataclass(frozen=True)
class MonitorRun:
    """One evaluated window of a monitor: who evaluates it, how it ended, what failed."""

    run_id: str
    monitor: str
    window_start: int
    window_end: int
    status: RunStatus
    owner: str
    attempts: int
    started_at: int
    finished_at: int | None = None
    verdict: str | None = None
    checks: int | None = None
    failing: int | None = None
    undecided: int | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "monitor": self.monitor,
                "window_start": to_datetime(self.window_start),
                "window_end": to_datetime(self.window_end), "status": self.status,
                "owner": self.owner, "attempts": self.attempts,
                "started_at": to_datetime(self.started_at),
                "finished_at": to_datetime(self.finished_at), "verdict": self.verdict,
                "checks": self.checks, "failing": self.failing, "undecided": self.undecided,
                "summary": self.summary, "error": self.error}


@dataclass(frozen=True)
class RetrainLoop:
    """One run of a monitor's retraining policy, from the result that triggered it to a
    promoted (or failed, or rejected) version."""

    id: str
    monitor: str
    model: str
    trigger_run: str
    trigger: dict[str, Any]
    policy: dict[str, Any]
    state: LoopState
    champion: int | None
    version: int | None
    canary_since: int | None
    reason: str | None
    started_at: int
    updated_at: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "monitor": self.monitor, "model": self.model,
                "trigger_run": self.trigger_run, "trigger": self.trigger,
                "policy": self.policy, "state": self.state, "champion": self.champion,
                "version": self.version, "canary_since": to_datetime(self.canary_since),
                "reason": self.reason, "started_at": to_datetime(self.started_at),
                "updated_at": to_datetime(self.updated_at)}


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


# -- monitors --------------------------------------------------------------------------------


def put_monitor(conn: Connection, name: str, model: str, spec: dict[str, Any], spec_hash: str,
                every_seconds: int, window_seconds: int) -> bool:
    """Insert or update a monitor's row; True when it was new or its declaration changed."""
    m = t.monitors
    found = conn.execute(select(m.c.spec_hash).where(m.c.name == name)).first()
    now = now_us()
    values = {"model": model, "spec": _dumps(spec), "spec_hash": spec_hash,
              "every_seconds": every_seconds, "window_seconds": window_seconds,
              "updated_at": now}
    if found is None:
        conn.execute(insert(m).values(name=name, created_at=now, **values))
        return True
    if found.spec_hash == spec_hash:
        return False
    conn.execute(update(m).where(m.c.name == name).values(**values))
    return True


def _monitor(r: Any) -> MonitorRecord:
    return MonitorRecord(r.name, r.model, _json(r.spec) or {}, r.spec_hash, r.every_seconds,
                         r.window_seconds, r.created_at, r.updated_at)


def monitor_records(catalog: Catalog) -> dict[str, MonitorRecord]:
    """Every monitor ever evaluated, by name."""
    with catalog.engine.connect() as conn:
        rows = conn.execute(select(t.monitors).order_by(t.monitors.c.name)).all()
    return {r.name: _monitor(r) for r in rows}


# -- windows ---------------------------------------------------------------------------------


def owner_name() -> str:
    """``host:pid`` of this process: who holds a claim."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}"


def owner_alive(owner: str, started_at: int, now: int | None = None) -> bool:
    """Whether the process named ``owner`` may still be evaluating: on this host, while its
    pid lives; on another host, for ``FOREIGN_CLAIM_US`` after it started."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname()[:100]:
        return (now or now_us()) - started_at < FOREIGN_CLAIM_US
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def _run(r: Any) -> MonitorRun:
    return MonitorRun(r.run_id, r.monitor, r.window_start, r.window_end, r.status, r.owner,
                      r.attempts, r.started_at, r.finished_at, r.verdict, r.checks, r.failing,
                      r.undecided, _json(r.summary), r.error)


def claim_window(catalog: Catalog, monitor: str, window_start: int, window_end: int, *,
                 force: bool = False) -> MonitorRun | None:
    """Claim (monitor, window) for this process; ``None`` when it is done already or another
    live process holds it. A dead owner's claim and a failed run are taken over (the run id is
    kept, ``attempts`` counts up); ``force`` re-evaluates a window that succeeded."""
    r = t.monitor_runs
    owner, now = owner_name(), now_us()
    with catalog.engine.begin() as conn:
        found = conn.execute(select(r).where(and_(r.c.monitor == monitor,
                                                  r.c.window_end == window_end))).first()
        if found is None:
            run = MonitorRun(str(uuid.uuid4()), monitor, window_start, window_end, "running",
                             owner, 1, now)
            try:
                with conn.begin_nested():
                    conn.execute(insert(r).values(
                        run_id=run.run_id, monitor=monitor, window_start=window_start,
                        window_end=window_end, status="running", owner=owner, attempts=1,
                        started_at=now))
            except IntegrityError:  # another process claimed it between our read and insert
                return None
            return run
        if found.status == "succeeded" and not force:
            return None
        if found.status == "running" and owner_alive(found.owner, found.started_at, now) \
                and found.owner != owner:
            return None
        moved = conn.execute(update(r).where(and_(
            r.c.run_id == found.run_id, r.c.attempts == found.attempts)).values(
            status="running", owner=owner, attempts=found.attempts + 1, started_at=now,
            finished_at=None, error=None)).rowcount
        if moved != 1:  # another process took it over first
            return None
        return MonitorRun(found.run_id, monitor, found.window_start, window_end, "running",
                          owner, found.attempts + 1, now)


def finish_run(conn: Connection, run_id: str, *, status: RunStatus, verdict: str | None = None,
               checks: int | None = None, failing: int | None = None,
               undecided: int | None = None, summary: dict[str, Any] | None = None,
               error: str | None = None) -> None:
    """Record how a claimed window ended (in the ledger transaction of its audit record)."""
    r = t.monitor_runs
    conn.execute(update(r).where(r.c.run_id == run_id).values(
        status=status, finished_at=now_us(), verdict=verdict, checks=checks, failing=failing,
        undecided=undecided, summary=_dumps(summary) if summary is not None else None,
        error=error))


def monitor_runs(catalog: Catalog, monitor: str | None = None, *, limit: int = 50,
                 status: RunStatus | None = None) -> list[MonitorRun]:
    """Evaluated windows, newest window first (of one monitor, or of all)."""
    r = t.monitor_runs
    query = select(r)
    if monitor is not None:
        query = query.where(r.c.monitor == monitor)
    if status is not None:
        query = query.where(r.c.status == status)
    query = query.order_by(r.c.window_end.desc(), r.c.monitor).limit(limit)
    with catalog.engine.connect() as conn:
        return [_run(row) for row in conn.execute(query).all()]


def first_window_end(catalog: Catalog, monitor: str) -> int | None:
    """The end of the earliest window ever claimed for ``monitor`` (``None``: never run)."""
    r = t.monitor_runs
    with catalog.engine.connect() as conn:
        value = conn.execute(select(func.min(r.c.window_end)).where(
            r.c.monitor == monitor)).scalar()
    return int(value) if value is not None else None


def get_monitor_run(catalog: Catalog, run_id: str) -> MonitorRun | None:
    r = t.monitor_runs
    with catalog.engine.connect() as conn:
        row = conn.execute(select(r).where(r.c.run_id == run_id)).first()
    return _run(row) if row is not None else None


# -- retraining loops ------------------------------------------------------------------------


def _loop(r: Any) -> RetrainLoop:
    return RetrainLoop(r.id, r.monitor, r.model, r.trigger_run, _json(r.trigger) or {},
                       _json(r.policy) or {}, r.state, r.champion, r.version, r.canary_since,
                       r.reason, r.started_at, r.updated_at)


def add_loop(conn: Connection, loop: RetrainLoop) -> None:
    conn.execute(insert(t.retrain_loops).values(
        id=loop.id, monitor=loop.monitor, model=loop.model, trigger_run=loop.trigger_run,
        trigger=_dumps(loop.trigger), policy=_dumps(loop.policy), state=loop.state,
        champion=loop.champion, version=loop.version, canary_since=loop.canary_since,
        reason=loop.reason, started_at=loop.started_at, updated_at=loop.updated_at))


def update_loop(conn: Connection, loop_id: str, *, expect: LoopState | None = None,
                **values: Any) -> bool:
    """Change a loop's fields (``state``, ``version``, ``canary_since``, ``reason``);
    with ``expect``, only if it is in that state (False when it was not)."""
    lp = t.retrain_loops
    query = update(lp).where(lp.c.id == loop_id)
    if expect is not None:
        query = query.where(lp.c.state == expect)
    return conn.execute(query.values(updated_at=now_us(), **values)).rowcount == 1


def get_loop(catalog: Catalog, loop_id: str) -> RetrainLoop | None:
    lp = t.retrain_loops
    with catalog.engine.connect() as conn:
        row = conn.execute(select(lp).where(lp.c.id == loop_id)).first()
    return _loop(row) if row is not None else None


def retrain_loops(source: Catalog | Connection, *, model: str | None = None,
                  monitor: str | None = None, states: tuple[str, ...] | None = None,
                  limit: int = 50) -> list[RetrainLoop]:
    """Retraining loops, newest first; ``source`` is a catalog, or the connection of a ledger
    transaction (to check and add a loop under one lock: one open loop per model)."""
    lp = t.retrain_loops
    query = select(lp)
    if model is not None:
        query = query.where(lp.c.model == model)
    if monitor is not None:
        query = query.where(lp.c.monitor == monitor)
    if states is not None:
        query = query.where(lp.c.state.in_(states))
    query = query.order_by(lp.c.started_at.desc(), lp.c.id).limit(limit)
    if isinstance(source, Connection):
        return [_loop(row) for row in source.execute(query).all()]
    with source.engine.connect() as conn:
        return [_loop(row) for row in conn.execute(query).all()]


__all__ = ["FOREIGN_CLAIM_US", "OPEN_LOOP_STATES", "LoopState", "MonitorRecord", "MonitorRun",
           "RetrainLoop", "RunStatus", "add_loop", "claim_window", "finish_run", "first_window_end",
           "get_loop", "get_monitor_run", "monitor_records", "monitor_runs", "owner_alive",
           "owner_name", "put_monitor", "retrain_loops", "update_loop"]
