"""Ingestion state in the catalog: where each source stream stands, the files it has loaded,
and every load with its counts.

Reads take a ``Catalog``; writes take the ``Connection`` of a ledger transaction, so a load's new
cursor commits together with its audit record.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update

from tarmac.catalog import _tables as t
from tarmac.catalog._paging import paginate
from tarmac.catalog.records import Page, now_us, to_datetime
from tarmac.catalog.store import Catalog


@dataclass(frozen=True)
class SourceState:
    """Where one stream of a source stands after its last committed load."""

    source: str
    stream: str
    table: str
    seq: int  # loads committed so far
    cursor: dict[str, Any] | None  # {"value": ..., "type": ...}
    contract: list[dict[str, str]] | None
    rows_total: int
    last_run_id: str | None
    updated_at: int


@dataclass(frozen=True)
class Load:
    """One load of one stream: its status, counts and (while staged) its commit plan."""

    id: str
    source: str
    stream: str
    table: str
    run_id: str
    seq: int
    status: str  # running | staged | committed | failed
    started_at: int
    ended_at: int | None
    stats: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "stream": self.stream,
                "table": self.table, "run_id": self.run_id, "seq": self.seq,
                "status": self.status, "started_at": to_datetime(self.started_at),
                "ended_at": to_datetime(self.ended_at) if self.ended_at else None,
                **self.stats, "error": self.error}


def get_state(catalog: Catalog, source: str, stream: str) -> SourceState | None:
    with catalog.engine.connect() as conn:
        row = conn.execute(select(t.source_state).where(and_(
            t.source_state.c.source == source, t.source_state.c.stream == stream))).first()
    return _state(row) if row else None


def list_states(catalog: Catalog, *, limit: int = 100,
                cursor: str | None = None) -> Page[SourceState]:
    """A page of the sources' stream states (cursor, offsets), by source and stream."""
    s = t.source_state.c
    with catalog.engine.connect() as conn:
        rows, nxt = paginate(conn, select(t.source_state), [(s.source, False), (s.stream, False)],
                             limit=limit, cursor=cursor)
    return Page([_state(r) for r in rows], nxt)


def files_seen(catalog: Catalog, source: str) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of the files this source has loaded."""
    with catalog.engine.connect() as conn:
        rows = conn.execute(select(t.source_files.c.path, t.source_files.c.size,
                                   t.source_files.c.mtime_ns)
                            .where(t.source_files.c.source == source)).all()
    return {r.path: (r.size, r.mtime_ns) for r in rows}


def loads(catalog: Catalog, *, source: str | None = None, statuses: tuple[str, ...] = (),
          limit: int = 100) -> list[Load]:
    """Loads newest first, optionally of one source and in some statuses."""
    q = select(t.source_loads)
    if source is not None:
        q = q.where(t.source_loads.c.source == source)
    if statuses:
        q = q.where(t.source_loads.c.status.in_(statuses))
    q = q.order_by(t.source_loads.c.started_at.desc(), t.source_loads.c.id.desc()).limit(limit)
    with catalog.engine.connect() as conn:
        return [_load(r) for r in conn.execute(q).all()]


def open_loads(conn: Connection, source: str, stream: str) -> list[tuple[Load, str | None]]:
    """Loads of a stream not yet finished, with the status of the run that started each."""
    q = (select(t.source_loads, t.runs.c.status.label("run_status"))
         .join(t.runs, t.runs.c.id == t.source_loads.c.run_id, isouter=True)
         .where(and_(t.source_loads.c.source == source, t.source_loads.c.stream == stream,
                     t.source_loads.c.status.in_(("running", "staged"))))
         .order_by(t.source_loads.c.seq))
    return [(_load(r), r.run_status) for r in conn.execute(q).all()]


def start_load(conn: Connection, load: Load) -> None:
    conn.execute(insert(t.source_loads).values(
        id=load.id, source=load.source, stream=load.stream, table_name=load.table,
        run_id=load.run_id, seq=load.seq, status=load.status, started_at=load.started_at,
        stats=json.dumps(load.stats)))


def set_load(conn: Connection, load_id: str, *, status: str, stats: dict[str, Any] | None = None,
             plan: dict[str, Any] | None = None, error: str | None = None,
             seq: int | None = None, ended: bool = False) -> None:
    values: dict[str, Any] = {"status": status}
    if stats is not None:
        values["stats"] = json.dumps(stats, default=str)
    if plan is not None:
        values["plan"] = json.dumps(plan, default=str)
    if error is not None:
        values["error"] = error[:4000]
    if seq is not None:
        values["seq"] = seq
    if ended:
        values["ended_at"] = now_us()
        if status == "committed":
            values["plan"] = None  # applied: nothing left to roll forward
    conn.execute(update(t.source_loads).where(t.source_loads.c.id == load_id).values(**values))


def save_state(conn: Connection, state: SourceState,
               files: Sequence[tuple[str, int, int]] = (), *, reset_files: bool = False) -> None:
    """Store a stream's new state and the files its load read, in the caller's transaction."""
    values = {"table_name": state.table, "seq": state.seq,
              "cursor": json.dumps(state.cursor, default=str) if state.cursor else None,
              "contract": json.dumps(state.contract) if state.contract is not None else None,
              "rows_total": state.rows_total, "last_run_id": state.last_run_id,
              "updated_at": now_us()}
    key = and_(t.source_state.c.source == state.source, t.source_state.c.stream == state.stream)
    if conn.execute(select(t.source_state.c.seq).where(key)).first():
        conn.execute(update(t.source_state).where(key).values(**values))
    else:
        conn.execute(insert(t.source_state).values(source=state.source, stream=state.stream,
                                                   **values))
    if reset_files:
        conn.execute(delete(t.source_files).where(t.source_files.c.source == state.source))
    if not files:
        return
    now = now_us()
    paths = [path for path, _, _ in files]
    for start in range(0, len(paths), 500):  # a changed file replaces its earlier entry
        conn.execute(delete(t.source_files).where(and_(
            t.source_files.c.source == state.source,
            t.source_files.c.path.in_(paths[start:start + 500]))))
    conn.execute(insert(t.source_files), [
        {"source": state.source, "path": path, "size": size, "mtime_ns": mtime_ns,
         "seq": state.seq, "loaded_at": now} for path, size, mtime_ns in files])


def _state(row: Any) -> SourceState:
    return SourceState(row.source, row.stream, row.table_name, row.seq,
                       json.loads(row.cursor) if row.cursor else None,
                       json.loads(row.contract) if row.contract else None,
                       row.rows_total, row.last_run_id, row.updated_at)


def _load(row: Any) -> Load:
    return Load(row.id, row.source, row.stream, row.table_name, row.run_id, row.seq,
                row.status, row.started_at, row.ended_at, json.loads(row.stats or "{}"),
                json.loads(row.plan) if row.plan else None, row.error)


def stream_states(catalog: Catalog, source: str) -> list[SourceState]:
    """Every state row of one source: for a stream source, the source's own row (contract,
    totals) and one row per partition (``TOPIC:PARTITION``: the next offset committed)."""
    with catalog.engine.connect() as conn:
        rows = conn.execute(select(t.source_state).where(t.source_state.c.source == source)
                            .order_by(t.source_state.c.stream)).all()
    return [_state(r) for r in rows]


def add_stream_progress(conn: Connection, source: str, table: str,
                        streams: dict[str, tuple[dict[str, Any], int]], *,
                        contract: list[dict[str, str]] | None, rows: int,
                        run_id: str | None) -> None:
    """Record one committed micro-batch of a stream source in the caller's transaction: each
    partition row gets its new cursor (next offset, newest event time) and its loaded rows
    added; the source's row gets the contract and the rows added (an increment in SQL, so
    runners committing other partitions at the same time add up)."""
    now = now_us()
    c = t.source_state.c
    for stream, (cursor, added) in {**streams, source: ({}, rows)}.items():
        key = and_(c.source == source, c.stream == stream)
        values: dict[str, Any] = {"table_name": table, "seq": c.seq + 1,
                                  "rows_total": c.rows_total + added, "last_run_id": run_id,
                                  "updated_at": now}
        if stream != source:
            values["cursor"] = json.dumps(cursor, default=str)
        elif contract is not None:
            values["contract"] = json.dumps(contract)
        if conn.execute(update(t.source_state).where(key).values(**values)).rowcount == 0:
            conn.execute(insert(t.source_state).values(
                source=source, stream=stream, table_name=table, seq=1, rows_total=added,
                cursor=json.dumps(cursor, default=str) if stream != source else None,
                contract=json.dumps(contract) if stream == source and contract else None,
                last_run_id=run_id, updated_at=now))
