"""The catalog: one SQLAlchemy implementation over SQLite and PostgreSQL.

Reads are methods of ``Catalog``. Writes are functions of a ``Connection`` inside a transaction
the ledger opens (``Catalog.write()``), so a metadata change and its audit record always commit
together. Every list call is keyset-paginated over an index: a page costs the same at ten
objects and at ten million.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update

from tarmac.catalog import _tables as t
from tarmac.catalog._engine import make_engine, upgrade, write_transaction
from tarmac.catalog._paging import MAX_PAGE, paginate
from tarmac.catalog.records import (
    AuditRecord,
    Column,
    Dataset,
    DatasetVersion,
    Page,
    Run,
    now_us,
    to_datetime,
)
from tarmac.config import redact
from tarmac.errors import ConfigError

__all__ = ["MAX_PAGE", "Catalog"]


class Catalog:
    """Metadata store behind a URL (``sqlite:///...`` or ``postgresql://...``).

    Example::

        cat = Catalog("sqlite:///.tarmac/catalog.db")
        page = cat.list_runs(limit=100)
        more = cat.list_runs(limit=100, cursor=page.next_cursor)
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)
        if migrate:
            upgrade(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A serialized write transaction (used by the ledger, the catalog's only writer)."""
        with write_transaction(self.engine) as conn:
            yield conn

    # -- identity --------------------------------------------------------------------------

    def project_name(self) -> str | None:
        """The project this catalog belongs to (``None`` until a project has opened it)."""
        i = t.catalog_info.c
        with self.engine.connect() as conn:
            return conn.execute(select(i.value).where(i.key == "project")).scalar()

    def claim(self, project: str) -> None:
        """Make this catalog ``project``'s, or refuse if it already holds another project.

        Two projects sharing one catalog would mix their tables, runs and audit chains (and a
        project re-pointed at the wrong database would look empty), so the first project to
        open a catalog owns it and any other is refused by name."""
        owner = self.project_name()
        if owner is None:
            with self.write() as conn:
                owner = conn.execute(select(t.catalog_info.c.value).where(
                    t.catalog_info.c.key == "project")).scalar()
                if owner is None:
                    conn.execute(insert(t.catalog_info).values(
                        key="project", value=project, updated_at=now_us()))
                    owner = project
        if owner != project:
            raise ConfigError(
                f"the catalog at {redact(self.url)} belongs to project '{owner}', not "
                f"'{project}'",
                hint=f"point 'catalog:' in tarmac.yaml at this project's own database; if it "
                     f"is the same project renamed from '{owner}': tarmac catalog claim")

    # -- datasets --------------------------------------------------------------------------

    def get_dataset(self, name: str) -> Dataset | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.datasets).where(t.datasets.c.name == name)).first()
        return _dataset(row) if row else None

    def list_datasets(self, *, limit: int = 100, cursor: str | None = None) -> Page[Dataset]:
        with self.engine.connect() as conn:
            rows, nxt = paginate(conn, select(t.datasets), [(t.datasets.c.name, False)],
                                 limit=limit, cursor=cursor)
        return Page([_dataset(r) for r in rows], nxt)

    # -- runs ------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.runs).where(t.runs.c.id == run_id)).first()
            if row is None:
                return None
            edges = _edges_for(conn, [run_id])
        return _run(row, edges.get(run_id, []))

    def list_runs(
        self,
        *,
        job: str | None = None,
        status: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Run]:
        """Runs, newest first."""
        r = t.runs.c
        q = select(t.runs)
        if job:
            q = q.where(r.job == job)
        if status:
            q = q.where(r.status == status)
        with self.engine.connect() as conn:
            rows, nxt = paginate(conn, q, [(r.started_at, True), (r.id, True)], limit=limit,
                                 cursor=cursor)
            edges = _edges_for(conn, [row.id for row in rows])
        return Page([_run(row, edges.get(row.id, [])) for row in rows], nxt)

    def runs_touching(self, dataset: str, role: str, *, limit: int | None = None,
                      version: int | None = None, exact: bool = False) -> list[str]:
        """Ids of the runs that read (``role='input'``) or wrote (``'output'``) a dataset,
        newest first; ``limit`` keeps a table written every hour for years cheap to draw.
        With ``version``, only runs that touched that version or an earlier one (``exact``:
        that version alone, for immutable versions such as a model's)."""
        e, r = t.lineage_edges.c, t.runs.c
        q = (select(r.id, r.started_at).join_from(t.lineage_edges, t.runs, e.run_id == r.id)
             .where(e.dataset == dataset, e.role == role).distinct()
             .order_by(r.started_at.desc(), r.id.desc()))
        if version is not None:
            q = q.where(e.version == version if exact else e.version <= version)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [row.id for row in conn.execute(q)]

    def written_from(self, dataset: str) -> list[str]:
        """The datasets written by any run that read ``dataset`` (its direct downstream, in
        one query however many runs read it), by name; ``dataset`` itself excluded."""
        i, o = t.lineage_edges.alias("i"), t.lineage_edges.alias("o")
        q = (select(o.c.dataset).join_from(i, o, i.c.run_id == o.c.run_id)
             .where(i.c.dataset == dataset, i.c.role == "input", o.c.role == "output",
                    o.c.dataset != dataset).distinct().order_by(o.c.dataset))
        with self.engine.connect() as conn:
            return [row.dataset for row in conn.execute(q)]

    def get_runs(self, run_ids: list[str]) -> list[Run]:
        """Several runs with their edges, in two queries."""
        if not run_ids:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.runs).where(t.runs.c.id.in_(run_ids))).all()
            edges = _edges_for(conn, run_ids)
        return [_run(row, edges.get(row.id, [])) for row in rows]

    # -- audit -----------------------------------------------------------------------------

    def list_audit(
        self,
        *,
        since_us: int | None = None,
        actor: str | None = None,
        target: str | None = None,
        action: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> Page[AuditRecord]:
        a = t.audit_log.c
        q = select(t.audit_log)
        if since_us is not None:
            q = q.where(a.time >= since_us)
        if actor:
            q = q.where(a.actor == actor)
        if target:
            q = q.where(a.target == target)
        if action:
            q = q.where(a.action == action)
        with self.engine.connect() as conn:
            rows, nxt = paginate(conn, q, [(a.seq, newest_first)], limit=limit, cursor=cursor)
        return Page([AuditRecord(*row) for row in rows], nxt)

    def iter_audit(self, *, batch: int = 5000, since_us: int | None = None,
                   until_us: int | None = None, actor: str | None = None,
                   action_prefix: str | None = None, through_seq: int | None = None
                   ) -> Iterator[AuditRecord]:
        """Audit records in sequence order, streamed ``batch`` at a time by a keyset query on
        ``seq`` (never the whole log in memory): all of them (for verification), or those in
        ``[since_us, until_us)``, by ``actor``, whose action starts with ``action_prefix``,
        up to ``through_seq`` (for an export)."""
        a = t.audit_log.c
        base = select(t.audit_log)
        if since_us is not None:
            base = base.where(a.time >= since_us)
        if until_us is not None:
            base = base.where(a.time < until_us)
        if actor:
            base = base.where(a.actor == actor)
        if action_prefix:
            base = base.where(a.action.startswith(action_prefix, autoescape=True))
        if through_seq is not None:
            base = base.where(a.seq <= through_seq)
        after = -1
        with self.engine.connect() as conn:
            while True:
                rows = conn.execute(base.where(a.seq > after).order_by(a.seq).limit(batch)).all()
                if not rows:
                    return
                for row in rows:
                    yield AuditRecord(*row)
                after = rows[-1].seq

    def revision(self) -> str | None:
        """The Alembic revision the catalog's schema is at (``None`` before any migration)."""
        from tarmac.catalog._engine import current_revision

        return current_revision(self.engine)

    def count(self, table: str) -> int:
        """Rows in one catalog table (for reports and tests)."""
        tbl = t.metadata.tables[table]
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(tbl)).scalar_one())


# -- write functions (called by the ledger inside Catalog.write()) ------------------------------
# The statements on the path of every write are built once and run with parameters: building a
# SQLAlchemy statement per call cost more than the SQLite round trips themselves.

_FINISH_RUN = update(t.runs).where(t.runs.c.id == bindparam("run_id")).values(
    status=bindparam("status"), ended_at=bindparam("ended_at"), error=bindparam("error"))
_INSERT_EDGE = insert(t.lineage_edges)
_DATASET_STATE = select(t.datasets.c.version, t.datasets.c.columns).where(
    t.datasets.c.name == bindparam("name"))
_AUDIT_HEAD = select(t.audit_log.c.seq, t.audit_log.c.hash, t.audit_log.c.mac,
                     t.audit_log.c.key_id).order_by(
    t.audit_log.c.seq.desc()).limit(1)
_INSERT_AUDIT = insert(t.audit_log)


def set_project(conn: Connection, project: str) -> None:
    """Hand the catalog to ``project`` (a renamed project; audited by ``tarmac catalog claim``)."""
    i = t.catalog_info.c
    if conn.execute(update(t.catalog_info).where(i.key == "project").values(
            value=project, updated_at=now_us())).rowcount == 0:
        conn.execute(insert(t.catalog_info).values(key="project", value=project,
                                                   updated_at=now_us()))


def insert_run(conn: Connection, **values: Any) -> None:
    values["params"] = json.dumps(values.get("params") or {}, sort_keys=True, default=str)
    conn.execute(insert(t.runs).values(**values))


def finish_run(conn: Connection, run_id: str, *, status: str, ended_at: int,
               error: str | None = None) -> None:
    conn.execute(_FINISH_RUN, {"run_id": run_id, "status": status, "ended_at": ended_at,
                               "error": error})


def running_runs(conn: Connection, host: str) -> list[tuple[str, int]]:
    """(run id, pid) of runs on this host still marked running."""
    r = t.runs.c
    q = select(r.id, r.pid).where(r.status == "running", r.host == host)
    return [(row.id, row.pid) for row in conn.execute(q)]


def add_edge(conn: Connection, run_id: str, role: str, dataset: str, version: int | None,
             *, new: bool = False) -> None:
    """Record one lineage edge; ``new=True`` skips the duplicate check (a fresh output)."""
    e = t.lineage_edges.c
    row = {"run_id": run_id, "role": role, "dataset": dataset, "version": version}
    if new:
        conn.execute(_INSERT_EDGE, row)
        return
    exists = conn.execute(
        select(e.id).where(e.run_id == run_id, e.role == role, e.dataset == dataset,
                           e.version == version if version is not None else e.version.is_(None))
    ).first()
    if exists is None:
        conn.execute(_INSERT_EDGE, row)


def upsert_dataset(conn: Connection, *, name: str, values: dict[str, Any],
                   keep_owner: bool = False, keep_column_tags: bool = False) -> None:
    """Create or update a dataset's entry; ``columns`` and ``tags`` are stored as JSON.

    A write passes ``keep_owner`` (the owner is set once, at creation) and ``keep_column_tags``
    (its columns carry no tags; those set by ``annotate`` stay)."""
    values = dict(values)
    found = conn.execute(_DATASET_STATE, {"name": name}).first()
    if found and "version" in values and found.version > values["version"]:
        return  # a slower concurrent writer: the entry already describes a newer version
    if "columns" in values:
        old = {c["name"]: c.get("tags", []) for c in json.loads(found.columns)} \
            if (found and keep_column_tags) else {}
        values["columns"] = json.dumps([c if isinstance(c, dict) else {
            "name": c.name, "type": c.type, "nullable": c.nullable,
            "tags": list(c.tags) or old.get(c.name, [])} for c in values["columns"]])
    if "tags" in values:
        values["tags"] = json.dumps(sorted(set(values["tags"])))
    if found:
        values.pop("created_at", None)  # a write never changes who created or owns a table
        if keep_owner:
            values.pop("owner", None)
        conn.execute(update(t.datasets).where(t.datasets.c.name == name).values(**values))
    else:
        values.setdefault("tags", "[]")
        values.setdefault("columns", "[]")
        conn.execute(insert(t.datasets).values(name=name, **values))


def delete_dataset(conn: Connection, name: str) -> None:
    conn.execute(t.datasets.delete().where(t.datasets.c.name == name))


def audit_head(conn: Connection) -> tuple[int, str, str | None, str | None] | None:
    """The last (seq, hash, mac, key_id) of the chain (``mac`` None: unkeyed); call inside a
    write transaction."""
    row = conn.execute(_AUDIT_HEAD).first()
    return (row.seq, row.hash, row.mac, row.key_id) if row else None


def insert_audit(conn: Connection, record: AuditRecord) -> None:
    conn.execute(_INSERT_AUDIT, _audit_row(record))


def insert_audit_many(conn: Connection, records: list[AuditRecord]) -> None:
    """Insert many chained records in one executemany (a multi-row INSERT on PostgreSQL)."""
    if records:
        conn.execute(_INSERT_AUDIT, [_audit_row(r) for r in records])


def _audit_row(record: AuditRecord) -> dict[str, Any]:
    return {"seq": record.seq, "time": record.time_us, "actor": record.actor,
            "action": record.action, "target": record.target, "details": record.details,
            "prev_hash": record.prev_hash, "hash": record.hash, "mac": record.mac,
            "key_id": record.key_id}


# -- row mapping --------------------------------------------------------------------------------


def _edges_for(conn: Connection, run_ids: list[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    if not run_ids:
        return out
    e = t.lineage_edges.c
    q = select(e.run_id, e.role, e.dataset, e.version).where(e.run_id.in_(run_ids)).order_by(e.id)
    for row in conn.execute(q):
        out.setdefault(row.run_id, []).append(row)
    return out


def _run(row: Any, edges: list[Any]) -> Run:
    return Run(
        id=row.id, job=row.job, status=row.status, actor=row.actor,
        started_at=to_datetime(row.started_at),  # type: ignore[arg-type]
        ended_at=to_datetime(row.ended_at), error=row.error, params=json.loads(row.params),
        host=row.host, pid=row.pid,
        inputs=tuple(DatasetVersion(e.dataset, e.version) for e in edges if e.role == "input"),
        outputs=tuple(DatasetVersion(e.dataset, e.version) for e in edges if e.role == "output"),
    )


def _dataset(row: Any) -> Dataset:
    cols = tuple(Column(c["name"], c["type"], c.get("nullable", True), tuple(c.get("tags", ())))
                 for c in json.loads(row.columns))
    return Dataset(
        name=row.name, uri=row.uri, owner=row.owner, version=row.version, rows=row.rows,
        bytes=row.bytes, files=row.files,
        created_at=to_datetime(row.created_at),  # type: ignore[arg-type]
        updated_at=to_datetime(row.updated_at),  # type: ignore[arg-type]
        description=row.description, tags=tuple(json.loads(row.tags)), columns=cols,
        last_run_id=row.last_run_id, last_actor=row.last_actor,
    )
