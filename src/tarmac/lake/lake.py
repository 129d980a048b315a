"""The lake: Delta tables under one root, every change committed through the ledger.

Each write is a Delta commit that carries the ledger's run id and actor in its commit metadata,
followed by one catalog transaction that records the new version, the lineage edge and the audit
record. A crash between the two leaves a valid table and a run the ledger marks failed.

Example::

    p.lake.write("customers", df, mode="merge", keys=["customer_id"])
    p.lake.read("customers", version=0, columns=["customer_id", "region"])
    p.lake.history("customers")[0]["operation"]        # 'MERGE'
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from tarmac.catalog import all_items
from tarmac.config import backend
from tarmac.errors import (
    DataFileMissingError,
    PermissionDenied,
    UsageError,
    VersionNotFoundError,
    WriteConflictError,
)
from tarmac.errors import (
    TableNotFoundError as NoSuchTable,
)
from tarmac.lake import _annotate, _maintenance, _markers, _record, _write
from tarmac.lake._arrow import OnDuplicate, to_arrow
from tarmac.lake._commit_files import commit_staged
from tarmac.lake._delta import (
    ACTOR_KEY,
    METRICS_KEY,
    OPERATION_KEY,
    RUN_KEY,
    TOKEN_KEY,
    Snapshot,
    first_commit_time,
    history,
    parse_time,
)
from tarmac.lake._markers import Txn, Txns
from tarmac.lake.staging import Stager
from tarmac.ledger import ActiveRun, Ledger

WriteMode = Literal["append", "overwrite", "merge"]
NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class WriteResult:
    """What a write did: the new version and row counts from the Delta commit's metrics."""

    table: str
    version: int
    operation: str
    rows_added: int
    rows_updated: int
    rows_deleted: int
    run_id: str
    new_columns: tuple[str, ...] = ()


class Lake:
    """Delta tables in a folder or bucket, named ``[a-z_][a-z0-9_]*``."""

    def __init__(self, root: str, ledger: Ledger, *, storage_options: dict[str, str] | None = None,
                 owner: str | None = None) -> None:
        self.root = root.rstrip("/")
        self.ledger = ledger
        self.storage_options = storage_options
        self.default_owner = owner
        # latest snapshot per table, brought forward with update_incremental() (reads only the
        # commits since) instead of replaying the whole log on every operation
        self._latest: dict[str, DeltaTable] = {}
        self.duckdb: Any = None  # the in-process DuckDB that lake.sql opens on first query

    def close(self) -> None:
        """Release the SQL engine (the Delta tables hold no open handles)."""
        if self.duckdb is not None:
            self.duckdb.close()
            self.duckdb = None

    @property
    def is_local(self) -> bool:
        """Files in a folder on this machine (the registry's in-process lake backends), which
        DuckDB and the small-merge path read directly instead of through delta-rs."""
        return backend("lake", self.root).in_process

    def uri(self, name: str) -> str:
        return f"{self.root}/{_check_name(name)}"

    # -- reading -----------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(self.uri(name), storage_options=self.storage_options)

    def tables(self) -> list[str]:
        """Names of the tables the catalog knows, sorted."""
        catalog = self.ledger.catalog
        return [d.name for d in all_items(lambda c: catalog.list_datasets(limit=1000, cursor=c))]

    def missing(self, name: str) -> NoSuchTable:
        """The error for a table that does not exist, listing the ones that do."""
        return NoSuchTable(f"no lake table named '{name}' (tables: "
                           f"{', '.join(self.tables()) or 'none yet'})")

    def table(self, name: str, *, version: int | None = None,
              as_of: datetime | str | None = None) -> DeltaTable:
        """The Delta table, optionally at a version or as it was at a time."""
        self.ledger.guard.check("read", f"table:{name}")
        dt = self.latest(name)
        if dt is None:
            raise self.missing(name)
        if version is not None and as_of is not None:
            raise UsageError("give either version or as_of, not both")
        if version is not None:
            latest = dt.version()
            if not 0 <= version <= latest:
                raise VersionNotFoundError(
                    f"table '{name}' has versions 0 to {latest}; version {version} does not exist")
            if version != latest:
                dt = DeltaTable(self.uri(name), version=version,
                                storage_options=self.storage_options)
        elif as_of is not None:
            when = parse_time(as_of)
            first = first_commit_time(dt)
            if first is not None and when < first:
                raise VersionNotFoundError(
                    f"table '{name}' did not exist at {when.isoformat()}: its first version was "
                    f"written at {first.isoformat()}")
            dt = DeltaTable(self.uri(name), storage_options=self.storage_options)
            dt.load_as_version(when)
        return dt

    def scan(self, name: str, *, version: int | None = None,
             as_of: datetime | str | None = None) -> pads.Dataset:
        """A lazy Arrow dataset over one version: filters and projections push down to files.
        Raw by nature, so it is refused (``PermissionDenied``) to a user who sees some of the
        table's columns masked (``tarmac.lake.masking``): ``read`` and SQL mask them."""
        dt = self.table(name, version=version, as_of=as_of)
        guard = self.ledger.guard
        if guard.enforced and not guard.inside:
            from tarmac.lake.masking import masked_columns

            masked = masked_columns(self, name)
            if masked:
                raise PermissionDenied(
                    f"table '{name}' has personal columns ({', '.join(sorted(masked))}) this "
                    "user may only see masked, and a raw Arrow scan would show them",
                    hint=f"read it with lake.read or p.sql (masked), or ask an admin for "
                         f"read:pii:table:{name}")
        self._note_input(name, dt.version())
        return self.dataset(dt)

    def dataset(self, dt: DeltaTable) -> pads.Dataset:
        """An Arrow dataset over ``dt``'s files. A local table is read through Arrow's own
        file system: delta-rs's default routes every read through a Python file handler
        whose scanner threads can outlive the interpreter and abort it at exit (SIGABRT,
        apache/arrow#34314, delta-io/delta-rs#2184)."""
        if not self.is_local:
            return _without_null_bounds(dt.to_pyarrow_dataset())
        root = dt.table_uri.removeprefix("file://").rstrip("/")
        return _without_null_bounds(dt.to_pyarrow_dataset(
            filesystem=pafs.SubTreeFileSystem(root, pafs.LocalFileSystem())))

    def read(self, name: str, *, version: int | None = None, as_of: datetime | str | None = None,
             columns: list[str] | None = None, filter: str | pc.Expression | None = None,
             ) -> pa.Table:
        """Read a table (at a version or time) into Arrow; ``filter`` is SQL text or an Arrow
        expression, applied at the files.

        Example, on a project whose ``signals`` table holds 600 customers:

        >>> p.lake.read("signals").num_rows
        600
        >>> north = p.lake.read("signals", columns=["customer_id", "region"],
        ...                     filter="region = 'north'")
        >>> north.column_names, north.num_rows
        (['customer_id', 'region'], 195)
        >>> p.lake.read("signals", version=0).num_rows  # time travel: the first version
        600
        """
        from tarmac.lake.masking import masked_columns

        masked = bool(masked_columns(self, name)) if self.ledger.guard.enforced else False
        if isinstance(filter, str) or (masked and filter is None):
            from tarmac.lake._quote import quote_ident
            from tarmac.lake.sql import query

            cols = ", ".join(quote_ident(c) for c in columns) if columns else "*"
            when = version if version is not None else as_of
            pin: dict[str, int | datetime | str] | None = {name: when} if when is not None \
                else None
            where = f" WHERE {filter}" if filter is not None else ""
            return query(self, f"SELECT {cols} FROM {quote_ident(name)}{where}", as_of=pin)
        if masked:  # an Arrow filter over what this user may see: the masked rows
            return self.read(name, version=version, as_of=as_of, columns=columns).filter(filter)
        dt = self.table(name, version=version, as_of=as_of)
        self._note_input(name, dt.version())
        dataset = self.dataset(dt)
        if columns:
            unknown = [c for c in columns if c not in dataset.schema.names]
            if unknown:
                raise UsageError(f"table '{name}' has no column(s) {', '.join(unknown)}; "
                                 f"columns: {', '.join(dataset.schema.names)}")
        try:
            return dataset.to_table(columns=columns, filter=filter)
        except FileNotFoundError:
            raise self.files_gone(name, dt) from None

    def missing_files(self, name: str, *, version: int | None = None) -> list[str]:
        """Data files of a version (the current one by default) that are not in storage, as
        paths inside the table's folder; ``[]`` when every file is there. Checks local lakes
        (an object store's files are not listed yet: ``[]``)."""
        return self._missing(self.table(name, version=version))

    def _missing(self, dt: DeltaTable) -> list[str]:
        if not self.is_local:
            return []
        root = dt.table_uri.removeprefix("file://").rstrip("/")
        return [u.removeprefix("file://").removeprefix(root + "/") for u in dt.file_uris()
                if not os.path.exists(u.removeprefix("file://"))]

    def files_gone(self, name: str, dt: DeltaTable) -> Exception:
        """The error for a version whose data files cannot be read: a current version whose
        file was deleted by hand names the file; an old one points at vacuum's retention."""
        missing = self._missing(dt)
        latest = self.latest(name)
        if missing and latest is not None and dt.version() == latest.version():
            return DataFileMissingError(name, dt.version(), missing, self._local_path(name))
        which = f" (data file {missing[0]} is missing)" if missing else ""
        return VersionNotFoundError(
            f"the data files of version {dt.version()} of '{name}' are gone{which}: vacuum "
            "removes the files of versions older than its retention window, and only versions "
            "inside it can be read")

    def history(self, name: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Versions newest first: time, operation, rows added/removed, run id, actor."""
        return history(self.table(name), limit)

    def version(self, name: str) -> int:
        return self.table(name).version()

    # -- writing -----------------------------------------------------------------------------

    def write(self, name: str, data: Any, *, mode: WriteMode = "append",
              keys: list[str] | None = None, on_duplicate: OnDuplicate = "error",
              replace_schema: bool = False, description: str | None = None,
              txn: Txns = None, extra: dict[str, Any] | None = None) -> WriteResult:
        """Append, overwrite, or merge (upsert by ``keys``) data into a table.

        New nullable columns merge into the schema; an incompatible type change is refused
        and the table is left as it was. A merge refuses duplicate keys in the incoming data
        unless ``on_duplicate`` says which occurrence wins (``"last"`` or ``"first"``).
        With ``txn=(app_id, version)`` the write is idempotent: if the table already holds a
        commit of that application at that version or later, nothing is written and the
        result says so (``operation == "SKIPPED"``): a rerun after a crash cannot apply the
        same load twice. ``txn`` may also be a list of markers, one per partition, all carried
        by the one commit: skipped if every marker is applied, refused with
        ``WriteConflictError`` if only some are (see ``applied``). ``extra`` goes into the
        write's audit record (a flush's count and id hash, say).

        Example (``p`` is an open project): create a table, then upsert into it by key.

        >>> p.lake.write("scores", [{"id": 1, "score": 0.5}, {"id": 2, "score": 0.7}]).rows_added
        2
        >>> r = p.lake.write("scores", [{"id": 2, "score": 0.9}, {"id": 3, "score": 0.1}],
        ...                  mode="merge", keys=["id"])
        >>> r.operation, r.version, r.rows_added, r.rows_updated
        ('MERGE', 1, 1, 1)
        >>> p.lake.read("scores").sort_by("id").column("score").to_pylist()
        [0.5, 0.9, 0.1]
        """
        self.ledger.guard.check("write", f"table:{name}")
        if mode not in ("append", "overwrite", "merge"):
            raise UsageError(f"unknown write mode {mode!r}: expected append, overwrite or merge")
        if on_duplicate not in ("error", "last", "first"):
            raise UsageError(f"unknown on_duplicate {on_duplicate!r}: expected 'error', 'last' "
                             "or 'first'")
        if mode != "merge" and keys:
            raise UsageError(f"keys are only used by mode='merge', not mode={mode!r}")
        txns = _markers.markers(txn)
        source = to_arrow(data)
        uri = self.uri(name)
        if _markers.check(name, self.latest(name), txns):
            return self._skipped(name)
        with self.ledger.ensure_run(f"lake.{mode}", params={"table": name}) as run:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                try:
                    return _write.write_once(self, name, uri, source, mode, keys,
                                             on_duplicate, replace_schema, description, run,
                                             txns, extra)
                except CommitFailedError as exc:
                    if isinstance(source, pa.RecordBatchReader) or attempt == MAX_ATTEMPTS:
                        raise WriteConflictError(
                            f"another writer committed to '{name}' at the same time and the "
                            f"{mode} could not be retried ({exc}); the table was not changed by "
                            "this write", hint="retry the write") from None
                    time.sleep(random.uniform(0.05, 0.2) * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def delete(self, name: str, predicate: str) -> WriteResult:
        """Delete the rows matching a SQL predicate, e.g. ``"region = 'North'"``."""
        self.ledger.guard.check("write", f"table:{name}")
        return _maintenance.delete(self, name, predicate)

    def compact(self, name: str, *, z_order: list[str] | None = None) -> dict[str, Any]:
        """Rewrite small files into large ones (optionally Z-ordered); data is unchanged."""
        self.ledger.guard.check("write", f"table:{name}")
        return _maintenance.compact(self, name, z_order)

    def vacuum(self, name: str, *, retain: str | timedelta = "7d",
               dry_run: bool = False) -> list[str]:
        """Delete files no version newer than ``retain`` needs; time travel past it ends."""
        self.ledger.guard.check("write", f"table:{name}")
        return _maintenance.vacuum(self, name, retain, dry_run)

    def applied(self, name: str, txn: Txns) -> bool:
        """True if ``name`` already holds the commit ``txn`` marks (or a later one).

        ``txn`` is one ``(app_id, version)`` marker or a list of them (one per partition of a
        stream, all in one commit): True only if EVERY marker is at or past its version. If
        only some are, this is False, and ``write`` / ``commit_files`` refuse such a commit
        with ``WriteConflictError`` instead of writing it: part of its work is in the table
        already (writing would duplicate it) and part is not (skipping would lose it).

        Example::

            lake.applied("clicks", [("sink/clicks/0", 41), ("sink/clicks/1", 17)])
        """
        txns = _markers.markers(txn)
        return bool(txns) and all(_markers.done(self.latest(name), txns))

    def transaction_version(self, name: str, app_id: str) -> int | None:
        """The newest application-transaction version ``app_id`` committed to ``name`` (None if
        the table or the marker does not exist)."""
        dt = self.latest(name)
        return None if dt is None else dt.transaction_version(app_id)

    def _skipped(self, name: str) -> WriteResult:
        """The result of an idempotent write whose commit was already in the table."""
        run = self.ledger.current_run
        return WriteResult(name, self.version(name), "SKIPPED", 0, 0, 0, run.id if run else "")

    def stage(self, name: str, tag: str) -> Stager:
        """A writer of uncommitted data files in the table's folder; commit them with
        ``commit_files`` (nobody sees them before), or ``abort()`` to delete them."""
        if not self.is_local:
            raise UsageError("staged loads need a local lake for now; object stores are the "
                             "scale-out step")
        return Stager(self._local_path(name), tag)

    def commit_files(self, name: str, files: list[dict[str, Any]], schema: pa.Schema, *,
                     mode: Literal["append", "overwrite"] = "append", txn: Txns = None,
                     operation: str = "WRITE", description: str | None = None,
                     extra: dict[str, Any] | None = None,
                     compare: bool = True) -> WriteResult:
        """Make staged files visible in one atomic commit (creating the table if needed).

        ``schema`` is the schema the rows meet; new columns are added to the table first. With
        ``txn`` (one marker or a list) the commit is idempotent (see ``write`` and
        ``applied``). An overwrite whose rows and schema
        equal the current version's commits nothing: no new version, so whoever reads the
        table next (a training run) sees the same data version; the result's operation is
        ``"UNCHANGED"``, an audit record ``lake.unchanged`` says so, and the staged files stay
        uncommitted for the caller to delete. ``compare=False`` skips that comparison (a scan
        of both versions) for writers whose rows always differ (batch scores carry their time).
        """
        self.ledger.guard.check("write", f"table:{name}")
        txns = _markers.markers(txn)
        if _markers.check(name, self.latest(name), txns):
            return self._skipped(name)
        return commit_staged(self, name, files, schema, mode=mode, txns=txns,
                             operation=operation, description=description, extra=extra,
                             compare=compare)

    def annotate(self, name: str, *, owner: str | None = None, description: str | None = None,
                 tags: list[str] | None = None,
                 column_tags: dict[str, list[str]] | None = None) -> None:
        """Set a table's owner, description, tags or per-column tags (e.g. ``{"email": ["pii"]}``);
        a governed change, audited like a write. Tags given replace the old ones."""
        self.ledger.guard.check("write", f"table:{name}")
        _annotate.annotate(self, name, owner=owner, description=description, tags=tags,
                           column_tags=column_tags)

    # -- internals ---------------------------------------------------------------------------

    def _metadata(self, run: ActiveRun, *, operation: str | None = None,
                  token: str | None = None,
                  metrics: dict[str, int] | None = None) -> dict[str, Any]:
        """What every commit carries: run id and actor (and, for commits made from file
        actions, which delta-rs logs as WRITE, the real operation and a token to find it;
        and the rows added and removed where Delta's metrics would not say, for history)."""
        meta: dict[str, Any] = {RUN_KEY: run.id, ACTOR_KEY: run.actor}
        if operation:
            meta[OPERATION_KEY] = operation
        if token:
            meta[TOKEN_KEY] = token
        if metrics is not None:
            meta[METRICS_KEY] = metrics
        return meta

    def _props(self, run: ActiveRun, txns: tuple[Txn, ...] = (), *,
               operation: str | None = None, token: str | None = None,
               metrics: dict[str, int] | None = None) -> CommitProperties:
        return CommitProperties(custom_metadata=self._metadata(run, operation=operation,
                                                               token=token, metrics=metrics),
                                app_transactions=_markers.transactions(txns))

    def _committed(self, name: str, dt: DeltaTable, before: int, token: str) -> DeltaTable:
        """The table at the version our token-marked commit made (the object that committed
        file actions is not moved forward by delta-rs)."""
        dt.update_incremental()
        if dt.version() == before + 1:
            return dt
        for entry in dt.history(dt.version() - before):
            if entry.get(TOKEN_KEY) == token:
                return DeltaTable(self.uri(name), version=entry["version"],
                                  storage_options=self.storage_options)
        raise WriteConflictError(f"could not find this write's commit in '{name}'")

    def _local_path(self, name: str) -> str:
        return self.uri(name).removeprefix("file://")

    def discard_staged(self, name: str, files: list[dict[str, Any]]) -> None:
        """Delete staged data files of table ``name`` that no commit references (a load that
        turned out unchanged). Object stores keep them until ``vacuum`` removes untracked files."""
        if not self.is_local:
            return
        root = self._local_path(name)
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(root, f["path"]))

    def latest(self, name: str) -> DeltaTable | None:
        """The table at its newest version (None if there is no such table)."""
        dt = self._latest.get(name)
        if dt is not None:
            try:
                dt.update_incremental()
                return dt
            except (DeltaError, OSError):
                self._latest.pop(name, None)  # dropped or replaced underneath us: reload
        try:
            dt = DeltaTable(self.uri(name), storage_options=self.storage_options)
        except TableNotFoundError:
            return None
        self._latest[name] = dt
        return dt

    def _note_input(self, name: str, version: int) -> None:
        run = self.ledger.current_run
        if run is not None:
            run.add_input(name, version)

    def _record(self, name: str, snap: Snapshot, operation: str, metrics: dict[str, Any],
                run: ActiveRun, new_cols: list[str], *,
                extra: dict[str, Any] | None = None) -> WriteResult:
        """After the Delta commit: catalog entry, lineage edge and audit, in one transaction.

        ``snap`` is read off the table object that made the commit, right after it (delta-rs
        moves it to the version it committed) and ``metrics`` come from the operation itself:
        Delta's history numbers entries from the loaded snapshot, so under concurrent writers
        it can name the wrong commit.
        """
        return _record.record(self, name, snap, operation, metrics, run, new_cols, extra=extra)


def is_table_name(name: str) -> bool:
    """True if ``name`` can name a lake table: ``[a-z_][a-z0-9_]*``, at most 63 characters."""
    return isinstance(name, str) and NAME.match(name) is not None


def _check_name(name: str) -> str:
    if not is_table_name(name):
        raise UsageError(f"invalid table name {name!r}: use lowercase letters, digits and "
                         "underscores, starting with a letter (at most 63 characters)")
    return name


def _without_null_bounds(dataset: pads.Dataset) -> pads.Dataset:
    """``dataset`` with no fragment pruned on a bound its file does not have.

    delta-rs turns a file's column statistics into each fragment's partition expression; a
    file whose log entry has no min/max for a column (timestamps and floats of some merge
    writes) gets ``col >= null``, which is never true, so a filter on that column silently
    skipped the whole file. Such fragments are rebuilt with no expression (read, then
    filtered row by row); the others keep their bounds for pruning.
    """
    if not isinstance(dataset, pads.FileSystemDataset):
        return dataset
    fragments = list(dataset.get_fragments())
    bad = [i for i, f in enumerate(fragments) if "null[" in str(f.partition_expression)]
    if not bad:
        return dataset
    fmt, fs = dataset.format, dataset.filesystem
    for i in bad:
        fragments[i] = fmt.make_fragment(fragments[i].path, fs)
    return pads.FileSystemDataset(fragments, dataset.schema, fmt, fs)
