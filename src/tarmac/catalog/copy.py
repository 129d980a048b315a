"""Copy a whole catalog to another database: how a project moves from SQLite to PostgreSQL.

Every catalog table is copied row for row, parents before children (foreign-key order), in
batches, from one consistent read of the source into one destination transaction: the copy
lands whole or not at all. The audit records are copied verbatim (their hashes cover their
contents, so the chain verifies at the destination exactly as at the source), one
``catalog.copy`` record is appended saying who moved it from where, and the destination chain
is verified against the source's head before the copy is reported done.

Rerunning is safe: rows already at the destination and identical are skipped, so a rerun after
a finished copy copies nothing. A destination that differs (a row with the same key and other
contents, rows the source does not have, another project's catalog) is refused before anything
is written, naming the table and the row.

Example::

    result = copy_catalog("sqlite:////proj/.tarmac/catalog.db", "postgresql://db/tarmac")
    result.copied, result.verified            # 151234, True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Table,
    any_,
    bindparam,
    func,
    insert,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement

from tarmac.catalog import _tables as t
from tarmac.catalog import store as cat
from tarmac.catalog._engine import HEAD_REVISION, current_revision, upgrade
from tarmac.catalog.records import now_us
from tarmac.catalog.store import Catalog
from tarmac.config import redact
from tarmac.errors import ConfigError, TarmacError, UsageError

if TYPE_CHECKING:
    from tarmac.ledger.keys import AuditKey

COPY_ACTION = "catalog.copy"
DEFAULT_BATCH = 5000


class CatalogCopyError(TarmacError):
    """The destination holds something else than this catalog: nothing was copied."""

    exit_code = 2


@dataclass
class TableCopy:
    """One table's outcome: rows at the source, copied, already there (identical)."""

    table: str
    source_rows: int
    copied: int = 0
    identical: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "source_rows": self.source_rows, "copied": self.copied,
                "identical": self.identical}


@dataclass
class CopyResult:
    """What a copy (or a dry run) did, table by table, and the destination chain's check."""

    source: str
    destination: str
    dry_run: bool
    tables: list[TableCopy] = field(default_factory=list)
    seconds: float = 0.0
    verified: bool | None = None  # the destination chain after the copy (None: dry run)
    audit_records: int = 0
    head_seq: int | None = None
    head_hash: str | None = None

    @property
    def copied(self) -> int:
        return sum(tc.copied for tc in self.tables)

    @property
    def source_rows(self) -> int:
        return sum(tc.source_rows for tc in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "destination": self.destination,
                "dry_run": self.dry_run, "rows": self.source_rows, "copied": self.copied,
                "seconds": round(self.seconds, 3), "verified": self.verified,
                "audit_records": self.audit_records, "head_seq": self.head_seq,
                "head_hash": self.head_hash, "tables": [tc.to_dict() for tc in self.tables]}


def copy_catalog(source_url: str, dest_url: str, *, dry_run: bool = False,
                 batch_size: int = DEFAULT_BATCH, actor: str | None = None,
                 progress: Callable[[str, int], None] | None = None,
                 audit_key: AuditKey | None = None) -> CopyResult:
    """Copy every table of the catalog at ``source_url`` into the one at ``dest_url``.

    ``audit_key`` (``tarmac.ledger.keys``): the project's audit key, which keys the copy's own
    record and checks the MACs of the copied chain (a keyed chain needs it).

    ``dry_run`` writes nothing (the destination is not even migrated) and reports, per table,
    how many rows would be copied; ``progress(table, rows_done)`` is called after each batch.
    """
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if _same(source_url, dest_url):
        raise UsageError(f"the source and the destination are the same catalog "
                         f"({redact(source_url)})")
    started = time.perf_counter()
    src = Catalog(source_url)
    try:
        dst = Catalog(dest_url, migrate=False)  # a dry run does not even create the tables
    except BaseException:
        src.close()
        raise
    dst_engine = dst.engine
    result = CopyResult(redact(source_url), redact(dest_url), dry_run)
    try:
        dst_ready = current_revision(dst_engine) == HEAD_REVISION
        if not dry_run and not dst_ready:
            upgrade(dst_engine)
            dst_ready = True
        project = src.project_name()
        if dst_ready:
            other = dst.project_name()
            if other is not None and project is not None and other != project:
                raise CatalogCopyError(
                    f"the destination {redact(dest_url)} holds project '{other}', not "
                    f"'{project}': nothing copied", hint="copy into an empty database")
        with src.engine.connect() as sconn:
            if src.dialect == "postgresql":
                sconn = sconn.execution_options(isolation_level="REPEATABLE READ")
            with sconn.begin():  # one consistent read of the whole source
                if dry_run:
                    _dry_run(sconn, dst_engine if dst_ready else None, result, batch_size)
                else:
                    with dst.write() as dconn:
                        _copy(sconn, dconn, result, batch_size, project, source_url,
                              actor, progress, audit_key)
        if not dry_run:
            _verify(src, dst, result, audit_key)
    finally:
        src.close()
        dst.close()
    result.seconds = time.perf_counter() - started
    return result


def _same(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _tables() -> list[Table]:
    """Every catalog table in foreign-key order (catalog_info is handled on its own)."""
    return [tbl for tbl in t.metadata.sorted_tables if tbl.name != t.catalog_info.name]


def _batches(conn: Connection, table: Table, size: int) -> Iterator[list[dict[str, Any]]]:
    """The table's rows as dicts, in primary-key order, a keyset page at a time."""
    pk = list(table.primary_key.columns)
    after: tuple[Any, ...] | None = None
    while True:
        q = select(table).order_by(*pk).limit(size)
        if after is not None:
            q = q.where(tuple_(*pk) > tuple_(*after)) if len(pk) > 1 else q.where(pk[0] > after[0])
        rows = [dict(r._mapping) for r in conn.execute(q)]
        if not rows:
            return
        yield rows
        after = tuple(rows[-1][c.name] for c in pk)


def _existing(conn: Connection, table: Table, rows: list[dict[str, Any]]
              ) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The destination's rows with the same keys as ``rows``, by key."""
    pk = list(table.primary_key.columns)
    keys = [tuple(r[c.name] for c in pk) for r in rows]
    cond: ColumnElement[bool]
    if len(pk) > 1:
        cond = tuple_(*pk).in_(keys)
    elif conn.dialect.name == "postgresql":  # one array parameter, not thousands
        cond = pk[0] == any_(bindparam("keys", [k[0] for k in keys], type_=ARRAY(pk[0].type)))
    else:
        cond = pk[0].in_([k[0] for k in keys])
    found = conn.execute(select(table).where(cond))
    return {tuple(r._mapping[c.name] for c in pk): dict(r._mapping) for r in found}


def _insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows in the destination's transaction: PostgreSQL's COPY (an executemany is a
    round trip per row there, ten times slower), a plain executemany on SQLite."""
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), rows)
        return
    cols = [c.name for c in table.columns]
    names = ", ".join(f'"{c}"' for c in cols)
    raw: Any = conn.connection.driver_connection  # the psycopg connection, same transaction
    with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as out:
        for row in rows:
            out.write_row([row[c] for c in cols])


def _count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _compare(conn: Connection, table: Table, rows: list[dict[str, Any]], tc: TableCopy,
             dest_url: str) -> list[dict[str, Any]]:
    """The rows the destination lacks; refuses if it holds one of them with other contents."""
    pk = [c.name for c in table.primary_key.columns]
    have = _existing(conn, table, rows)
    missing = []
    for row in rows:
        key = tuple(row[c] for c in pk)
        there = have.get(key)
        if there is None:
            missing.append(row)
        elif there == row:
            tc.identical += 1
        else:
            cols = [c for c in row if row[c] != there.get(c)]
            shown = ", ".join(f"{c}={v!r}" for c, v in zip(pk, key, strict=True))[:200]
            raise CatalogCopyError(
                f"the destination {redact(dest_url)} already holds {table.name} row "
                f"({shown}) with other contents (columns: {', '.join(cols)}): it is not a copy "
                "of this catalog; nothing copied",
                hint="copy into an empty database (or drop the destination's tables first)")
    return missing


def _copy(sconn: Connection, dconn: Connection, result: CopyResult, size: int,
          project: str | None, source_url: str, actor: str | None,
          progress: Callable[[str, int], None] | None, audit_key: AuditKey | None) -> None:
    dest_url = result.destination
    dest_audit_before = _count(dconn, t.audit_log)
    for table in _tables():
        tc = TableCopy(table.name, _count(sconn, table))
        result.tables.append(tc)
        empty = _count(dconn, table) == 0  # the first copy: nothing to compare against
        done = 0
        for rows in _batches(sconn, table, size):
            missing = rows if empty else _compare(dconn, table, rows, tc, dest_url)
            if missing:
                _insert(dconn, table, missing)
                tc.copied += len(missing)
            done += len(rows)
            if progress is not None:
                progress(table.name, done)
        extra = _count(dconn, table) - tc.source_rows
        if table.name == t.audit_log.name:
            extra -= _copy_records_after(dconn, _head(sconn))
        if extra > 0:
            raise CatalogCopyError(
                f"the destination {redact(dest_url)} holds {extra} {table.name} row(s) the "
                "source does not: it has been written to since (or belongs elsewhere); "
                "nothing copied",
                hint="copy into an empty database; a catalog that moved on is not overwritten")
    if project is not None and dconn.execute(select(t.catalog_info.c.value).where(
            t.catalog_info.c.key == "project")).scalar() is None:
        dconn.execute(insert(t.catalog_info).values(key="project", value=project,
                                                    updated_at=now_us()))
    if dconn.dialect.name == "postgresql":
        _reset_sequences(dconn)
    if result.copied:
        from tarmac.ledger.chain import GENESIS, canonical, make_record
        from tarmac.ledger.ledger import current_actor

        head = cat.audit_head(dconn)
        seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
        details = {"from": redact(source_url), "rows": result.copied,
                   "audit_records_before": dest_audit_before,
                   "tables": {tc.table: tc.copied for tc in result.tables if tc.copied}}
        if audit_key is None and head is not None and head[2] is not None:
            raise CatalogCopyError(
                "the audit trail is keyed but no audit key was given: the copy's own record "
                "could not be keyed; nothing copied",
                hint="set TARMAC_AUDIT_KEY or the project's `audit_key:` and copy again")
        cat.insert_audit(dconn, make_record(seq, now_us(), actor or current_actor(),
                                            COPY_ACTION, project or "catalog",
                                            canonical(details), prev, audit_key))


def _head(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(t.audit_log.c.seq), 0))).scalar_one())


def _copy_records_after(conn: Connection, seq: int) -> int:
    """How many of the destination's records after ``seq`` are earlier copies' own records."""
    a = t.audit_log.c
    return int(conn.execute(select(func.count()).where(a.seq > seq,
                                                       a.action == COPY_ACTION)).scalar_one())


def _reset_sequences(conn: Connection) -> None:
    """Rows were inserted with their ids: move PostgreSQL's id sequences past them."""
    for table in _tables():
        col = table.autoincrement_column  # a serial id (lineage_edges.id, alias_history.id)
        if col is not None:
            conn.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{col.name}'), "
                f"COALESCE(MAX({col.name}), 1), MAX({col.name}) IS NOT NULL) "
                f"FROM {table.name}"))


def _dry_run(sconn: Connection, dst_engine: Any, result: CopyResult, size: int) -> None:
    """Per table: rows at the source and how many the destination already has, identical."""
    dconn = dst_engine.connect() if dst_engine is not None else None
    try:
        for table in _tables():
            tc = TableCopy(table.name, _count(sconn, table))
            result.tables.append(tc)
            if dconn is not None and _count(dconn, table):
                for rows in _batches(sconn, table, size):
                    tc.copied += len(_compare(dconn, table, rows, tc, result.destination))
            else:
                tc.copied = tc.source_rows
    finally:
        if dconn is not None:
            dconn.close()


def _verify(src: Catalog, dst: Catalog, result: CopyResult,
            audit_key: AuditKey | None = None) -> None:
    """The destination's chain must verify and hold the source's head record unchanged."""
    from tarmac.ledger.chain import verify

    with src.engine.connect() as conn:
        row = conn.execute(select(t.audit_log.c.seq, t.audit_log.c.hash)
                           .order_by(t.audit_log.c.seq.desc()).limit(1)).first()
    anchor = (row.seq, row.hash) if row else None
    check = verify(dst.iter_audit(), anchor=anchor, key=audit_key)
    result.verified, result.audit_records = check.ok, check.records
    result.head_seq, result.head_hash = check.head_seq, check.head_hash
    if not check.ok:
        raise CatalogCopyError(
            f"the copy landed but the audit chain at {redact(dst.url)} does not verify: "
            f"{check.problem}", hint="do not switch to the destination; report this")


def destination_url(value: str) -> str:
    """A destination as given on the command line: a catalog URL (``sqlite:///`` or
    ``postgresql://``), checked before anything is opened."""
    if not value.startswith(("sqlite:///", "postgresql://", "postgres://",
                             "postgresql+psycopg://")):
        raise ConfigError(f"catalog URL {redact(value)!r}: expected sqlite:///PATH or "
                          "postgresql://USER@HOST/DB")
    return value


__all__ = ["CatalogCopyError", "CopyResult", "TableCopy", "copy_catalog",
           "destination_url"]
