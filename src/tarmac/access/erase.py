"""Erasure of a data subject (GDPR art. 17): every row that holds the subject's key, in every
lake table, the ingest quarantine, the prediction log and the online store, and the old files
that still hold them.

``erase(p, {"customer_id": 10001}, reason="request #123")`` finds, through the catalog:

- every lake table with a column of that name, or a column tagged ``subject:customer_id``
  (``lake.annotate(t, column_tags={"buyer": ["subject:customer_id"]})``: the column holds the
  key under another name);
- the prediction log's rows whose request or features name the subject (JSON fields);
- the quarantine's rejected records that name it: a JSON field ``"customer_id": 10001`` (or
  ``customer_id=10001``) in the raw record, even a broken line, or the rejected column and value
  themselves; matched as a whole value, so ``100010`` is not ``10001``.

``dry_run`` lists them with their row counts and deletes nothing. Tables that lineage says were
written from an erased table (directly or through one another) but have no column naming the
subject are listed as *not erased* (``Erasure.derived``, and in the audit records), so nothing is
silently left: tag the column that holds the key and erase again. Then, table by table:

1. a Delta DELETE of the subject's rows (a new version, like any write, audited);
2. a VACUUM with no retention of that table: the files of earlier versions, which still hold the
   subject, are removed. **Time travel to versions before the erasure ends for that table**
   (reading one says its files are gone), which is the point: no version still readable returns
   the subject; an ``erase.table`` audit record then says that table is done;
3. the feature views reading an erased table are emptied online and materialized again in
   full, so the online store no longer serves the subject (while they are rewritten, reads of
   those views answer ``missing``).

The audit trail keeps a salted SHA-256 of the subject (``erase.started``, one ``erase.table``
per table, ``erase.completed``), never the subject: the salt lives in ``.tarmac/erase.salt``,
outside the catalog, so the hash cannot be reversed by guessing keys without it. Each step is
idempotent, and an erasure killed halfway (even by SIGKILL between a DELETE and its VACUUM,
when the current version no longer shows the subject but older files do) is completed by running
it again: the ``erase.started`` without its ``erase.completed`` names the tables, and the rerun
vacuums those without their ``erase.table`` record (``Erasure.resumed``).

Limits: stream feature views keep their windows' state until their events age out; a CSV
line quarantined before it was parsed (the wrong number of fields) has no field names, so it is
not matched; files outside the lake (exports, the source systems) are not Tarmac's to erase.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tarmac import faults
from tarmac.errors import PermissionDenied, UsageError, echo
from tarmac.lake.masking import masked_columns
from tarmac.ledger.guard import internal

if TYPE_CHECKING:
    from tarmac.catalog import Dataset
    from tarmac.project import Project

PREDICTIONS = "predictions"
QUARANTINE = "quarantine"
SUBJECT_TAG = "subject:"  # a column tagged subject:customer_id holds the customer_id key
SALT_FILE = "erase.salt"
NOT_ERASED = ("derived from an erased table, not erased: it has no column naming the subject; "
              "tag one")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_REGEX_SPECIAL = frozenset("\\.^$|?*+()[]{}")


@dataclass(frozen=True)
class ErasedTable:
    """One table's part of an erasure: the rows that hold the subject (found, or deleted).

    ``where`` selects them in DuckDB; ``delete`` is the same predicate for Delta's DELETE when
    it has to be spelled differently (DataFusion has no JSON functions and another regex
    operator). ``columns`` are the columns matched (the key's name, or columns tagged with it).
    ``resumed`` marks a table an interrupted erasure had deleted from but not vacuumed."""

    table: str
    rows: int
    where: str
    version: int | None = None  # the version the DELETE made (None: dry run or no rows)
    files_removed: int = 0
    columns: tuple[str, ...] = ()
    delete: str | None = None
    resumed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "rows": self.rows, "where": self.where,
                "columns": list(self.columns), "version": self.version,
                "files_removed": self.files_removed, "resumed": self.resumed}


@dataclass(frozen=True)
class DerivedTable:
    """A table lineage says was written from an erased table (``derived_from``) that has no
    column naming the subject, so it was not searched: listed, never silently left."""

    table: str
    derived_from: tuple[str, ...]

    @property
    def why(self) -> str:
        return NOT_ERASED

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "derived_from": list(self.derived_from), "why": self.why}


@dataclass
class Erasure:
    """What ``erase`` found (``dry_run``) or did: per table the rows, the views rematerialized,
    the derived tables it could not search, and the salted hash the audit trail keeps instead
    of the subject. ``resumed`` is true when it completed an interrupted erasure."""

    subject_hash: str
    reason: str
    dry_run: bool
    tables: list[ErasedTable] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    derived: list[DerivedTable] = field(default_factory=list)
    resumed: bool = False

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return {"subject_hash": self.subject_hash, "reason": self.reason,
                "dry_run": self.dry_run, "rows": self.rows, "resumed": self.resumed,
                "tables": [t.to_dict() for t in self.tables], "views": self.views,
                "derived": [d.to_dict() for d in self.derived]}
def _subject(subject: Mapping[str, Any] | str) -> tuple[str, str]:
    if isinstance(subject, str):
        column, sep, value = subject.partition("=")
        if not sep:
            raise UsageError(f"--subject {echo(subject)!r} must be COLUMN=VALUE, e.g. "
                             "customer_id=10001")
        subject = {column.strip(): value.strip()}
    if len(subject) != 1:
        raise UsageError(f"a subject is one key, COLUMN=VALUE (got {len(subject)} keys)")
    [(column, value)] = subject.items()
    if not isinstance(column, str) or not _NAME.match(column):
        raise UsageError(f"the subject's column {echo(column)!r} is not a column name")
    text = str(value)
    if value is None or not text.strip() or len(text) > 256:
        raise UsageError(f"the subject's value for {column!r} must be 1 to 256 characters")
    return column, text


def _salt(project: Project) -> bytes:
    path = project.root / ".tarmac" / SALT_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def subject_hash(project: Project, column: str, value: str) -> str:
    """The salted SHA-256 of ``column=value`` the audit trail keeps for an erasure."""
    return hashlib.sha256(_salt(project) + f"{column}={value}".encode()).hexdigest()


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _regex(text: str) -> str:
    """``text`` as a literal in an RE2 pattern (DuckDB and DataFusion both use RE2 syntax)."""
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)


def _subject_columns(dataset: Dataset, names: list[str], column: str) -> tuple[str, ...]:
    """The columns of a table holding the subject's key: the one of its name, and those tagged
    ``subject:COLUMN`` in the catalog."""
    tag = f"{SUBJECT_TAG}{column}".lower()
    tagged = [c.name for c in dataset.columns if tag in {t.lower() for t in c.tags}]
    return tuple(dict.fromkeys([c for c in [column, *tagged] if c in names]))


def _match(project: Project, dataset: Dataset, column: str, value: str) -> ErasedTable | None:
    """How to find the subject's rows in a table (rows not counted yet), or None when the table
    has no column that can hold them."""
    table = dataset.name
    names = project.lake.scan(table).schema.names
    columns = _subject_columns(dataset, names, column)
    if columns:
        where = " OR ".join(f"CAST({_quote(c)} AS VARCHAR) = {_literal(value)}"
                            for c in columns)
        return ErasedTable(table, 0, where, columns=columns)
    if table == PREDICTIONS:
        path = _literal(f'$."{column}"')
        where = (f"coalesce(json_extract_string(request, {path}) = {_literal(value)}, false) OR "
                 f"coalesce(json_extract_string(features, {path}) = {_literal(value)}, false)")
        return ErasedTable(table, 0, where, columns=("request", "features"))
    if table == QUARANTINE and {"record", "column", "value"} <= set(names):
        # the key as a field of the raw record: "customer_id": 10001 in JSON (valid or a broken
        # line), customer_id=10001 in text; the value whole, so 100010 is not 10001
        pattern = _literal(rf'(^|[^A-Za-z0-9_])"?{_regex(column)}"?\s*[:=]\s*"?'
                           rf'{_regex(value)}"?([^A-Za-z0-9_.@-]|$)')
        rejected = f"(\"column\" = {_literal(column)} AND \"value\" = {_literal(value)})"
        return ErasedTable(
            table, 0, f"coalesce(regexp_matches(record, {pattern}), false) OR "
                      f"coalesce({rejected}, false)",
            columns=("record", "column", "value"),
            delete=f"record ~ {pattern} OR {rejected}")
    return None


def _delete(project: Project, t: ErasedTable) -> int | None:
    """Delete the subject's rows of one table; the prediction log's are found by DuckDB (its
    JSON) and deleted by id, since Delta's DELETE speaks DataFusion, which has no JSON."""
    if t.table != PREDICTIONS or t.columns != ("request", "features"):
        return project.lake.delete(t.table, t.delete or t.where).version
    ids = project.sql(f"SELECT id FROM {_quote(t.table)} WHERE {t.where}").column(
        "id").to_pylist()
    version = None
    for start in range(0, len(ids), 1000):
        chunk = ", ".join(_literal(str(i)) for i in ids[start:start + 1000])
        version = project.lake.delete(t.table, f"id IN ({chunk})").version
    return version


def erase(project: Project, subject: Mapping[str, Any] | str, *, reason: str,
          dry_run: bool = False) -> Erasure:
    """Erase a data subject (see the module's docstring); ``dry_run`` only lists.

    Example::

        plan = erase(p, "customer_id=10001", reason="GDPR art. 17, request #123", dry_run=True)
        [(t.table, t.rows) for t in plan.tables]     # [('customers', 2), ('orders', 14), ...]
        erase(p, "customer_id=10001", reason="GDPR art. 17, request #123")
    """
    with project.ledger.guard.acting("erase"):
        return _erase(project, subject, reason=reason, dry_run=dry_run)


def _interrupted(project: Project, target: str) -> tuple[set[str], list[str]] | None:
    """What an interrupted erasure of this subject left to do: the tables it had yet to finish
    and the views it was to materialize again, from the newest ``erase.started`` with no
    ``erase.completed`` after it, less the tables its ``erase.table`` records say are done;
    None when the last erasure of this subject completed (or there was none)."""
    done: set[str] = set()
    cursor: str | None = None
    while True:
        with internal("an erasure's progress"):
            page = project.ledger.audit(target=target, limit=500, cursor=cursor)
        for record in page:  # newest first
            if record.action == "erase.completed":
                return None
            if record.action == "erase.table":
                done.add(json.loads(record.details).get("table", ""))
            elif record.action == "erase.started":
                started = json.loads(record.details)
                return (set(started.get("tables") or {}) - done,
                        list(started.get("views") or []))
        if page.next_cursor is None:
            return None
        cursor = page.next_cursor


def _derived(project: Project, erased: set[str], searched: set[str]) -> list[DerivedTable]:
    """Tables written from an erased table (through any chain of tables that could not be
    searched) that have no column naming the subject: lineage's downstream, lake tables only."""
    from tarmac.lake.lake import is_table_name

    sources: dict[str, set[str]] = {}
    todo = sorted(erased)
    seen = set(todo)
    while todo:
        table = todo.pop(0)
        for out in project.ledger.catalog.written_from(table):
            if out in searched or not is_table_name(out) or not project.lake.exists(out):
                continue  # searched (erased or clean), or not a lake table (a model version,
                #           an online store): those are handled apart
            sources.setdefault(out, set()).add(table)
            if out not in seen:  # what was built from it may hold the subject too
                seen.add(out)
                todo.append(out)
    return [DerivedTable(t, tuple(sorted(f))) for t, f in sorted(sources.items())]


def _erase(project: Project, subject: Mapping[str, Any] | str, *, reason: str,
           dry_run: bool) -> Erasure:
    column, value = _subject(subject)
    if not isinstance(reason, str) or not reason.strip():
        raise UsageError("an erasure needs a reason (it is kept in the audit trail), e.g. "
                         "--reason 'GDPR art. 17 request #123'")
    digest = subject_hash(project, column, value)
    target = f"subject:{digest[:16]}"
    interrupted = _interrupted(project, target)
    pending, left_views = interrupted or (set(), [])
    found: list[ErasedTable] = []
    searched: set[str] = set()
    for dataset in project.datasets():
        if not project.lake.exists(dataset.name):
            continue
        match = _match(project, dataset, column, value)
        if match is None:
            continue
        hidden = sorted(set(masked_columns(project.lake, dataset.name)) & set(match.columns))
        if hidden:  # masked, they would never match: the subject would be silently left
            raise PermissionDenied(
                f"erasing needs read:pii on table:{dataset.name}: its column(s) "
                f"{', '.join(hidden)} hold the subject but read masked for "
                f"{project.ledger.guard.user}, so the subject's rows could not be found",
                hint="run the erasure as an admin, or grant read:pii on that table")
        searched.add(dataset.name)
        rows = project.sql(f"SELECT count(*) AS n FROM {_quote(dataset.name)} "
                           f"WHERE {match.where}")
        n = int(rows.column("n")[0].as_py())
        if n or dataset.name in pending:  # pending: deleted, maybe not vacuumed yet
            found.append(ErasedTable(match.table, n, match.where, columns=match.columns,
                                     delete=match.delete, resumed=dataset.name in pending))
    erased = {t.table for t in found}
    out = Erasure(digest, reason.strip(), dry_run, found, resumed=interrupted is not None)
    out.derived = _derived(project, erased, searched)
    defs = project.features.registered()
    out.views = sorted(name for name, view in defs.views.items()
                       if (isinstance(view.source, str) and view.source in erased
                           and getattr(view, "streaming", None) is None)
                       or name in left_views)
    if dry_run or not (found or out.resumed):
        return out
    about = {"subject_hash": digest, "column": column, "reason": out.reason,
             "tables": {t.table: t.rows for t in found}, "views": out.views,
             "derived_not_erased": {d.table: list(d.derived_from) for d in out.derived},
             "resumes_interrupted": sorted(pending)}
    project.ledger.commit("erase.started", target, about)
    done: list[ErasedTable] = []
    for t in found:
        version = _delete(project, t) if t.rows else None
        faults.point("erase.after_delete", table=t.table, version=version)
        removed = project.lake.vacuum(t.table, retain="0h")
        project.ledger.commit("erase.table", target, {
            "subject_hash": digest, "table": t.table, "rows": t.rows, "version": version,
            "files_removed": len(removed)})
        done.append(ErasedTable(t.table, t.rows, t.where, version, len(removed), t.columns,
                                t.delete, t.resumed))
    if out.views:  # emptied, then rewritten from the erased tables: the subject is gone
        for view in out.views:
            project.features.online_store.clear(view)
        project.features.materialize(out.views, full=True)
    out.tables = done
    project.ledger.commit("erase.completed", target,
                          {**about, "files_removed": {t.table: t.files_removed for t in done}})
    return out


__all__ = ["NOT_ERASED", "SUBJECT_TAG", "DerivedTable", "ErasedTable", "Erasure", "erase",
           "subject_hash"]
