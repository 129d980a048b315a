"""Feature-store state in the catalog: versioned definitions, their consumers, materializations.

Reads take a ``Catalog``; writes take the ``Connection`` of a ledger transaction, so a definition
change or a materialization commits together with its audit record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, insert, select

from tarmac.catalog import _tables as t
from tarmac.catalog.records import now_us, to_datetime
from tarmac.catalog.store import Catalog


@dataclass(frozen=True)
class Definition:
    """One registered version of an entity, view, on-demand view or service."""

    kind: str
    name: str
    version: int
    spec: dict[str, Any]
    hash: str
    removed: bool
    created_at: int
    actor: str


@dataclass(frozen=True)
class Materialization:
    """One materialization of one view into the online store."""

    id: str
    view: str
    run_id: str
    mode: str
    status: str
    started_at: int
    ended_at: int | None
    inputs: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    entities: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"view": self.view, "run_id": self.run_id, "mode": self.mode,
                "status": self.status, "started_at": to_datetime(self.started_at),
                "ended_at": to_datetime(self.ended_at) if self.ended_at else None,
                "inputs": self.inputs, "rows": self.rows, "entities": self.entities,
                "error": self.error}


def _definition(row: Any) -> Definition:
    return Definition(row.kind, row.name, row.version, json.loads(row.spec), row.hash,
                      bool(row.removed), row.created_at, row.actor)


def current_definitions(catalog: Catalog) -> dict[tuple[str, str], Definition]:
    """(kind, name) -> the latest version of everything registered and not removed."""
    d = t.feature_defs
    latest = (select(d.c.kind, d.c.name, func.max(d.c.version).label("version"))
              .group_by(d.c.kind, d.c.name).subquery())
    query = select(d).join(latest, (d.c.kind == latest.c.kind) & (d.c.name == latest.c.name)
                           & (d.c.version == latest.c.version))
    with catalog.engine.connect() as conn:
        rows = conn.execute(query).all()
    return {(r.kind, r.name): _definition(r) for r in rows if not r.removed}


def definition_history(catalog: Catalog, kind: str, name: str) -> list[Definition]:
    """Every version of one definition, newest first."""
    d = t.feature_defs
    with catalog.engine.connect() as conn:
        rows = conn.execute(select(d).where((d.c.kind == kind) & (d.c.name == name))
                            .order_by(d.c.version.desc())).all()
    return [_definition(r) for r in rows]


def registry_stamp(catalog: Catalog) -> tuple[int, int]:
    """A cheap marker that changes whenever a definition is registered (cache invalidation)."""
    d = t.feature_defs
    with catalog.engine.connect() as conn:
        count, newest = conn.execute(select(func.count(), func.max(d.c.created_at))).one()
    return int(count or 0), int(newest or 0)


def insert_definition(conn: Connection, *, kind: str, name: str, version: int,
                      spec: Mapping[str, Any], hash: str, removed: bool, actor: str) -> None:
    conn.execute(insert(t.feature_defs).values(
        kind=kind, name=name, version=version, spec=json.dumps(spec, sort_keys=True, default=str),
        hash=hash, removed=int(removed), created_at=now_us(), actor=actor))


def consumers_of(catalog: Catalog, refs: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """ref (``view:feature``) -> [(consumer, dtype it was consumed as)] for the given refs."""
    wanted = sorted(set(refs))
    out: dict[str, list[tuple[str, str]]] = {}
    if not wanted:
        return out
    c = t.feature_consumers
    with catalog.engine.connect() as conn:
        for start in range(0, len(wanted), 500):
            rows = conn.execute(select(c.c.ref, c.c.consumer, c.c.dtype)
                                .where(c.c.ref.in_(wanted[start:start + 500]))
                                .order_by(c.c.consumer)).all()
            for r in rows:
                out.setdefault(r.ref, []).append((r.consumer, r.dtype))
    return out


def set_consumer(conn: Connection, consumer: str, refs: Mapping[str, str]) -> None:
    """Record that ``consumer`` uses each ref (with the dtype it saw), replacing its old refs."""
    c = t.feature_consumers
    conn.execute(c.delete().where(c.c.consumer == consumer))
    if refs:
        at = now_us()
        conn.execute(insert(c), [{"consumer": consumer, "ref": r, "dtype": d, "created_at": at}
                                 for r, d in sorted(refs.items())])


def insert_materialization(conn: Connection, m: Materialization) -> None:
    conn.execute(insert(t.feature_materializations).values(
        id=m.id, view=m.view, run_id=m.run_id, mode=m.mode, status=m.status,
        started_at=m.started_at, ended_at=m.ended_at, inputs=json.dumps(m.inputs),
        rows=m.rows, entities=m.entities, stats=json.dumps(m.stats, default=str),
        error=m.error))


def _materialization(r: Any) -> Materialization:
    return Materialization(r.id, r.view, r.run_id, r.mode, r.status, r.started_at, r.ended_at,
                           json.loads(r.inputs), r.rows, r.entities, json.loads(r.stats), r.error)


def materializations(catalog: Catalog, view: str | None = None, *, status: str | None = None,
                     limit: int = 20) -> list[Materialization]:
    """Materializations, newest first, optionally of one view and/or with one status."""
    m = t.feature_materializations
    query = select(m).order_by(m.c.started_at.desc()).limit(limit)
    if view is not None:
        query = query.where(m.c.view == view)
    if status is not None:
        query = query.where(m.c.status == status)
    with catalog.engine.connect() as conn:
        return [_materialization(r) for r in conn.execute(query).all()]


def count_materializations(catalog: Catalog, view: str, status: str) -> int:
    """How many materializations of a view ended with ``status`` (the online state's version)."""
    m = t.feature_materializations
    with catalog.engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(
            (m.c.view == view) & (m.c.status == status))).scalar_one())


def last_materialization(catalog: Catalog, view: str) -> Materialization | None:
    """The latest successful materialization of a view (its inputs say what is online)."""
    found = materializations(catalog, view, status="succeeded", limit=1)
    return found[0] if found else None
