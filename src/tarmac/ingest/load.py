"""Loading a source into the lake: read, check, stage, then commit in one idempotent step.

Every stream of every source is loaded the same way, whatever its connector:

1. **Claim** the stream (one load at a time per stream; a claim held by a dead process is
   released) and finish any load a killed process left staged (roll forward, below).
2. **Read** chunks from the connector (on a read-ahead thread) past the saved cursor (minus the
   lookback window), or the files not loaded before; apply the contract; write passing rows as
   *uncommitted* Parquet files in the table's folder (when they must be deduplicated against
   rows the table already holds, in a staging folder first) and rejected rows as uncommitted
   files of the ``quarantine`` table.
3. **Deduplicate** by primary key with DuckDB, out of core, only when needed (a cheap check
   first): the latest record by cursor wins (ties: the last read), and rows the table already
   holds (same key; in merge mode at the same or a newer cursor) are dropped.
4. **Stage**: the commit plan (files, schema, new cursor, counts) is saved in the catalog.
5. **Commit**: quarantine files, then the data (an atomic Delta commit of the staged files, or a
   merge), each marked with a Delta application transaction ``(tarmac.ingest/SOURCE/STREAM,
   seq)``, then the new cursor, files, counts and the audit record in one catalog transaction.

Kill the process anywhere: before step 4 nothing is visible and the rerun starts over; after it,
the next run finds the staged plan and applies what is missing (a step already applied is
recognised by its transaction marker and skipped). Either way the lake ends as if the load had
run once. Every load checks ``read == loaded + quarantined + duplicates`` before committing.
"""

from __future__ import annotations

import base64
import contextlib
import os
import queue
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tarmac.catalog import now_us
from tarmac.catalog import sources as state_store
from tarmac.catalog.sources import Load, SourceState
from tarmac.errors import ConfigError, SourceError, TarmacError, UsageError
from tarmac.ingest import quarantine
from tarmac.ingest.base import Chunk, Connector, FileMark, Stream
from tarmac.ingest.connectors import open_connector
from tarmac.ingest.contract import Contract, coerce
from tarmac.ingest.spec import FileSource, SourceSpec, StreamSource, check_columns
from tarmac.lake import quote_ident as _q
from tarmac.lake.staging import Stager, action_to_dict, rows_in

if TYPE_CHECKING:
    from tarmac.lake import Lake
    from tarmac.project import Project

DEDUP_MEMORY = "1GB"  # DuckDB's memory for deduplication; beyond it, it spills to disk
Progress = Callable[["LoadProgress"], None]


@dataclass
class LoadProgress:
    """Where a stream's load is, for progress bars."""

    source: str
    stream: str
    phase: str  # reading | deduplicating | committing | done | failed
    rows_read: int
    bytes_read: int


@dataclass
class LoadResult:
    """What one load of one stream did. ``read == loaded + quarantined + duplicates``."""

    source: str
    stream: str
    table: str
    status: str  # succeeded | unchanged (a full refresh of the same rows) | failed | skipped
    run_id: str | None = None
    load_id: str | None = None
    mode: str = ""
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    duplicates: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    files: int = 0
    version: int | None = None
    cursor_before: Any = None
    cursor_after: Any = None
    drift: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)  # staged loads this run finished
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class IngestResults(list[LoadResult]):
    """The results of one ``ingest`` call, one per stream (failed ones included)."""

    @property
    def failed(self) -> list[LoadResult]:
        return [r for r in self if r.status == "failed"]

    def raise_for_errors(self) -> None:
        """Raise ``SourceError`` naming every failed source (for scripts that must stop)."""
        if self.failed:
            raise SourceError("; ".join(f"{r.source}: {r.error}" for r in self.failed))


def ingest(project: Project, names: Iterable[str] | None = None, *, full_refresh: bool = False,
           progress: Progress | None = None) -> IngestResults:
    """Load the named sources (all but ``stream`` ones by default), one run per source.

    A source that fails is reported in its result (and its run is marked failed); the other
    sources still load. Call ``raise_for_errors()`` on the result to stop on any failure.
    """
    specs = project.sources
    wanted = list(names) if names else [n for n, s in specs.items()
                                        if not isinstance(s, StreamSource)]
    unknown = [n for n in wanted if n not in specs]
    if unknown:
        raise UsageError(f"unknown source(s): {', '.join(unknown)} (declared: "
                         f"{', '.join(specs) or 'none'})",
                         hint="declare sources under `sources:` in tarmac.yaml")
    if not specs:
        raise UsageError("no sources are declared in tarmac.yaml",
                         hint="add a `sources:` block; see docs/ingestion.md")
    results = IngestResults()
    for name in wanted:
        spec = specs[name]
        if isinstance(spec, StreamSource):
            results.append(LoadResult(name, name, "-", "skipped",
                                      error="stream sources are consumed by `tarmac stream`"))
            continue
        results.extend(_ingest_source(project, name, spec, full_refresh, progress))
    return results


def _ingest_source(project: Project, name: str, spec: SourceSpec, full_refresh: bool,
                   progress: Progress | None) -> list[LoadResult]:
    connector = open_connector(name, spec, project.root)
    assert connector is not None
    results: list[LoadResult] = []
    params = {"source": name, "type": spec.type, "location": spec.location(),
              "mode": "full_refresh" if full_refresh else spec.load_mode}
    try:
        with project.ledger.run(f"ingest.{name}", params=params) as run:
            try:
                streams = connector.streams()
            except TarmacError as exc:
                results.append(LoadResult(name, name, spec.table or "-", "failed",
                                          run_id=run.id, error=exc.message))
                raise
            for stream in streams:
                loader = _StreamLoad(project, connector, stream, run.id, full_refresh, progress)
                try:
                    results.append(loader.run())
                except TarmacError as exc:
                    results.append(loader.failed(exc.message))
                    raise
                except Exception as exc:  # a bug: recorded, re-raised below under TARMAC_DEBUG
                    results.append(loader.failed(f"{type(exc).__name__}: {exc}"))
                    raise
    except ConfigError:
        raise  # a declaration to fix (exit 2), recorded in the run like other failures
    except TarmacError:
        pass  # recorded in the result; the run is marked failed by the ledger
    except Exception:
        if os.environ.get("TARMAC_DEBUG"):
            raise
    finally:
        connector.close()
    return results


def _kill_point(phase: str) -> None:
    """Fault injection for the kill tests: ``TARMAC_FAULT_KILL_AT=phase`` SIGKILLs the process
    there, exactly as a crash or an OOM kill would."""
    if os.environ.get("TARMAC_FAULT_KILL_AT") == phase:
        os.kill(os.getpid(), signal.SIGKILL)


class _StreamLoad:
    """One load of one stream (see the module docstring for the protocol)."""

    def __init__(self, project: Project, connector: Connector[Any], stream: Stream, run_id: str,
                 full_refresh: bool, progress: Progress | None) -> None:
        self.project = project
        self.lake: Lake = project.lake
        self.catalog = project.catalog
        self.connector = connector
        self.spec: SourceSpec = connector.spec
        self.stream = stream
        self.run_id = run_id
        self.full_refresh = full_refresh
        self.progress = progress
        self.load_id = uuid.uuid4().hex
        self.app_id = f"tarmac.ingest/{stream.source}/{stream.name}"
        self.result = LoadResult(stream.source, stream.name, stream.table, "running",
                                 run_id=run_id, load_id=self.load_id,
                                 mode="full_refresh" if full_refresh else self.spec.load_mode)
        self.staging = project.root / ".tarmac" / "staging" / self.load_id
        self.started = time.perf_counter()

    # -- the protocol -------------------------------------------------------------------------

    def run(self) -> LoadResult:
        state = self._claim()
        seq = self._next_seq(state)
        r = self.result
        r.cursor_before = state.cursor["value"] if state and state.cursor else None
        contract = Contract(self.stream.source, self.spec,
                            None if state is None else state.contract,
                            self.connector.source_types(self.stream))
        since = None if self.full_refresh else _since(state, self.spec)
        # a full_refresh source is re-issued whole: every load reads all of its files, so an
        # unchanged file is never mistaken for an empty snapshot (that would wipe the table)
        whole = self.full_refresh or self.spec.load_mode == "full_refresh"
        seen = {} if (whole or not isinstance(self.spec, FileSource)) else {
            p: FileMark(p, s, m) for p, (s, m) in state_store.files_seen(
                self.catalog, self.stream.source).items()}
        self._data: Stager | None = None  # rows for the table, as uncommitted data files
        self._good: Stager | None = None  # rows to deduplicate first, in the staging folder
        self._quarantine: Stager | None = None
        try:
            staged = self._read(contract, since, seen)
            plan = self._plan(staged, contract, state, seq)
        except BaseException:
            for stager in (self._data, self._quarantine):
                if stager is not None:  # uncommitted files: nobody will ever reference them
                    stager.abort()
            shutil.rmtree(self.staging, ignore_errors=True)
            raise
        _kill_point("staged")
        with self.catalog.write() as conn:
            state_store.set_load(conn, self.load_id, status="staged", plan=plan,
                                 stats=self._stats(), seq=seq)
        _kill_point("planned")
        r.status = "succeeded"
        self._apply(plan)
        r.seconds = round(time.perf_counter() - self.started, 3)
        self._progress("done")
        return r

    def failed(self, message: str) -> LoadResult:
        r = self.result
        r.status, r.error = "failed", message
        r.rows_loaded = r.rows_quarantined = r.duplicates = 0  # nothing was committed
        r.version = None
        r.seconds = round(time.perf_counter() - self.started, 3)
        try:
            with self.catalog.write() as conn:
                state_store.set_load(conn, self.load_id, status="failed", error=message,
                                     stats=self._stats(), ended=True)
        except Exception:  # noqa: BLE001 - the original failure is what the user must see
            pass
        self._progress("failed")
        return r

    def _claim(self) -> SourceState | None:
        """Take the stream for this run; finish loads a killed process staged; return state."""
        pending: list[Load] = []
        with self.catalog.write() as conn:
            for load, run_status in state_store.open_loads(conn, self.stream.source,
                                                           self.stream.name):
                if load.status == "running" and run_status == "running":
                    raise SourceError(
                        f"source '{self.stream.source}': stream '{self.stream.name}' is being "
                        f"loaded by run {load.run_id}; one load at a time",
                        hint="wait for it, or if its process is gone, rerun: dead runs are "
                             "released automatically")
                if load.status == "running":
                    state_store.set_load(conn, load.id, status="failed", ended=True,
                                         error="the process died while reading; nothing was "
                                               "committed")
                else:
                    pending.append(load)
            state_store.start_load(conn, Load(
                self.load_id, self.stream.source, self.stream.name, self.stream.table,
                self.run_id, 0, "running", now_us(), None))
        for load in pending:
            assert load.plan is not None
            self._apply(load.plan, load_id=load.id)
            self.result.recovered.append(load.id)
        return state_store.get_state(self.catalog, self.stream.source, self.stream.name)

    def _next_seq(self, state: SourceState | None) -> int:
        """This load's number, after the catalog's last. The lake's transaction markers must
        not be ahead of it: a catalog that never recorded loads the lake holds (re-pointed at a
        new database) would number this load as one already committed, skip the commit and
        still report rows loaded. A whole reload may go on numbering after the lake's marker;
        anything else is refused."""
        seq = (state.seq if state else 0) + 1
        marks = [self.lake.transaction_version(t, self.app_id)
                 for t in (self.stream.table, quarantine.TABLE)]
        done = max((m for m in marks if m is not None), default=0)
        if done < seq:
            return seq
        if self.full_refresh or self.spec.load_mode == "full_refresh":
            return done + 1
        raise SourceError(
            f"source '{self.stream.source}': the lake already holds load {done} of stream "
            f"'{self.stream.name}' (table '{self.stream.table}') but this catalog recorded "
            f"{seq - 1}: it is not the catalog that loaded it",
            hint="copy the old catalog (tarmac catalog copy --from OLD_URL --to URL), or "
                 f"reload the stream whole: tarmac ingest --full-refresh {self.stream.source}")

    # -- reading ------------------------------------------------------------------------------

    def _read(self, contract: Contract, since: Any, seen: dict[str, FileMark]) -> _Staged:
        r = self.result
        spec = self.spec
        at = datetime.now(UTC)
        # rows go straight to uncommitted files in the table's folder, except when they must
        # be deduplicated against rows the table holds already: then to the staging folder
        fresh = self.full_refresh or not self.lake.exists(self.stream.table)
        direct = not spec.primary_key or fresh
        self._data = self.lake.stage(self.stream.table, self.load_id) if direct else None
        self._good = None if direct else Stager(str(self.staging), self.load_id)
        self._quarantine = self.lake.stage(quarantine.TABLE, self.load_id)
        files: list[FileMark] = []
        newest: Any = None
        filter_window = since is not None and not isinstance(spec, FileSource)
        checked_names = False
        for chunk in read_ahead(self.connector.read(self.stream, since=since, seen=seen)):
            r.rows_read += chunk.data.num_rows + len(chunk.rejects)
            r.bytes_read += chunk.nbytes
            if chunk.rejects:
                self._reject(quarantine.from_rejects(chunk.rejects), at)
            data = chunk.data
            if data.num_columns and not checked_names:  # a misspelled key fails, exit 2
                check_columns(self.stream.source, spec, data.column_names, contract.known,
                              stream=self.stream.name)
                checked_names = True
            if filter_window and spec.cursor in data.column_names:
                data = self._window(data, since, contract)
            if data.num_rows:
                checked = contract.check(data, chunk.origin)
                good = checked.good
                lost = data.num_rows - good.num_rows - checked.rejected.num_rows
                if lost:  # every row the contract saw is passed or rejected, never dropped
                    raise TarmacError(
                        f"source '{self.stream.source}': {lost:,} row(s) of {chunk.origin} were "
                        "neither passed nor rejected by the contract; nothing was committed")
                if checked.rejected.num_rows:
                    self._reject(checked.rejected, at)
                if spec.cursor and good.num_rows:
                    top = pc.max(good[spec.cursor]).as_py()
                    if top is not None and (newest is None or top > newest):
                        newest = top
                if good.num_rows:
                    if self._data is not None:
                        self._data.write(good)
                    else:
                        assert self._good is not None
                        self._good.write(good)
            if chunk.done_file is not None:
                files.append(chunk.done_file)
            self._progress("reading")
        r.drift = [str(d) for d in contract.drift.values()]
        r.files = len(files)
        return _Staged(files, newest)

    def _window(self, data: pa.Table, since: Any, contract: Contract) -> pa.Table:
        """Drop rows before the window that a connector could not filter itself, before the
        contract sees them: they were loaded (or quarantined) by an earlier run."""
        spec = self.spec
        assert spec.cursor is not None
        want = contract.types.get(spec.cursor)
        col, _ = coerce(data[spec.cursor], want) if want is not None and \
            not pa.types.is_null(want) else (data[spec.cursor], None)
        strict = not spec.primary_key  # without a key, rows at the mark were loaded already
        try:
            bound = _scalar(since, col.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
            return data  # not comparable: the contract and dedup decide
        keep = pc.greater(col, bound) if strict else pc.greater_equal(col, bound)
        # a NULL cursor is never "before the window": merged by key, or quarantined (once)
        kept = data.filter(pc.or_(pc.fill_null(keep, False), pc.is_null(col)))
        self.result.duplicates += data.num_rows - kept.num_rows
        return kept

    def _reject(self, rejected: pa.Table, at: datetime) -> None:
        rows = quarantine.rows(rejected, source=self.stream.source, table=self.stream.table,
                               run_id=self.run_id, load_id=self.load_id, at=at)
        assert self._quarantine is not None
        self._quarantine.write(rows)
        self.result.rows_quarantined += rows.num_rows

    # -- planning -----------------------------------------------------------------------------

    def _plan(self, staged: _Staged, contract: Contract, state: SourceState | None,
              seq: int) -> dict[str, Any]:
        r = self.result
        spec = self.spec
        mode = "overwrite" if (self.full_refresh or spec.load_mode == "full_refresh") \
            else "append"
        merge_file = None
        if self._data is not None:
            self._data.close()
            written = self._data.rows
            if spec.primary_key and written and _repeats(self._data.glob, spec.primary_key,
                                                         self.staging):
                # a first (or full) load with a key is committed as staged unless a key repeats
                self._progress("deduplicating")
                final = self._dedup(self._data.glob, written, against_table=False)
                self._data.abort()
                self._restage(final, self.load_id + "d")
            else:
                r.rows_loaded += written
        elif self._good is not None:
            self._good.close()
            if self._good.rows:
                self._progress("deduplicating")
                final = self._dedup(self._good.glob, self._good.rows, against_table=True)
                if final is not None and spec.load_mode == "merge":
                    merge_file = str(final)
                    mode = "merge"
                else:
                    self._restage(final, self.load_id)
        data_files = [action_to_dict(a) for a in (self._data.close() if self._data else [])]
        q_files = self._new_rejects()
        self._reconcile(data_files, merge_file, q_files)
        cursor = _cursor_state(staged.newest, state, self.full_refresh)
        r.cursor_after = cursor["value"] if cursor else None
        schema = contract.schema()
        return {
            "load_id": self.load_id, "source": self.stream.source, "stream": self.stream.name,
            "table": self.stream.table, "seq": seq, "mode": mode, "merge_file": merge_file,
            "keys": spec.primary_key, "data_files": data_files, "quarantine_files": q_files,
            "schema": base64.b64encode(schema.serialize().to_pybytes()).decode(),
            "cursor": cursor, "contract": contract.to_json(),
            "files": [[f.path, f.size, f.mtime_ns] for f in staged.files],
            "reset_files": self.full_refresh,
            "rows_total": (state.rows_total if state and not self.full_refresh else 0),
            "stats": self._stats(), "staging": str(self.staging),
            "description": self.spec.description, "owner": self.spec.owner,
            "tags": list(self.spec.tags),
            "column_tags": {c: list(col.tags) for c, col in self.spec.columns.items()
                            if col.tags},
        }

    def _reconcile(self, data_files: list[dict[str, Any]], merge_file: str | None,
                   q_files: list[dict[str, Any]]) -> None:
        """``read == loaded + quarantined + duplicates``, with loaded and quarantined counted
        in the files about to be committed (not in the counters kept while reading): a row
        that vanished anywhere on the way fails the load, naming how many."""
        r = self.result
        loaded = sum(rows_in(f) for f in data_files) + (
            pq.ParquetFile(merge_file).metadata.num_rows if merge_file else 0)
        quarantined = sum(rows_in(f) for f in q_files)
        where = f"source '{self.stream.source}'"
        if (loaded, quarantined) != (r.rows_loaded, r.rows_quarantined):
            raise TarmacError(
                f"{where}: row accounting does not add up: the load counted {r.rows_loaded:,} "
                f"loaded and {r.rows_quarantined:,} quarantined, but its files hold {loaded:,} "
                f"and {quarantined:,}; nothing was committed")
        missing = r.rows_read - (loaded + quarantined + r.duplicates)
        if missing:
            raise TarmacError(
                f"{where}: row accounting does not add up: {abs(missing):,} row(s) "
                f"{'unaccounted for' if missing > 0 else 'counted twice'} (read "
                f"{r.rows_read:,} != loaded {loaded:,} + quarantined {quarantined:,} + "
                f"duplicates {r.duplicates:,}); nothing was committed")

    def _restage(self, final: Path | None, tag: str) -> None:
        """The deduplicated rows as the table's uncommitted data files."""
        self._data = self.lake.stage(self.stream.table, tag)
        if final is not None:
            for batch in pq.ParquetFile(final).iter_batches(batch_size=1 << 17):
                self._data.write(pa.Table.from_batches([batch]))

    def _new_rejects(self) -> list[dict[str, Any]]:
        """The staged quarantine files, without records this source already has in quarantine
        (a source that re-serves a bad row every run, like a table without a cursor, does not
        fill the quarantine with copies: the repeats count as duplicates)."""
        r = self.result
        assert self._quarantine is not None
        actions = [action_to_dict(a) for a in self._quarantine.close()]
        if not actions or not self.lake.exists(quarantine.TABLE):
            return actions
        dt = self.lake.latest(quarantine.TABLE)
        assert dt is not None
        con = _duckdb(self.staging)
        try:
            known = self.lake.dataset(dt).scanner(
                columns=["table", "reason", "record"],
                filter=pc.field("source") == self.stream.source).to_reader()
            con.register("__known", known)
            fresh = con.sql(
                f"SELECT * FROM read_parquet('{self._quarantine.glob}') s WHERE NOT EXISTS ("
                "SELECT 1 FROM "
                "__known k WHERE k.\"table\" = s.\"table\" AND k.reason = s.reason AND "
                "k.record = s.record)").to_arrow_table()
        finally:
            con.close()
        staged = self._quarantine.rows
        if fresh.num_rows == staged:
            return actions
        self._quarantine.abort()
        r.rows_quarantined -= staged - fresh.num_rows
        r.duplicates += staged - fresh.num_rows
        self._quarantine = self.lake.stage(quarantine.TABLE, self.load_id + "q")
        self._quarantine.write(fresh.cast(quarantine.SCHEMA))
        return [action_to_dict(a) for a in self._quarantine.close()]

    def _dedup(self, glob: str, staged_rows: int, *, against_table: bool) -> Path | None:
        """The staged rows, one per key (latest by cursor, then last read), minus rows the
        table already holds; written to one Parquet file by DuckDB, out of core."""
        r = self.result
        spec = self.spec
        keys = ", ".join(_q(k) for k in spec.primary_key)
        # staged files are numbered in read order, rows in order within each file
        order = (f"{_q(spec.cursor)} DESC NULLS LAST, " if spec.cursor else "") + \
            "filename DESC, file_row_number DESC"
        out = self.staging / "deduplicated.parquet"
        self.staging.mkdir(parents=True, exist_ok=True)
        con = _duckdb(self.staging)
        try:
            query = (f"SELECT * EXCLUDE (__rn, filename, file_row_number) FROM (SELECT *, "
                     f"row_number() OVER (PARTITION BY {keys} ORDER BY {order}) AS __rn FROM "
                     f"read_parquet('{glob}', union_by_name = true, filename = true, "
                     "file_row_number = true)) d WHERE __rn = 1")
            # rows the table holds already: in append mode any row with the key; in merge mode
            # a row at the same or a newer cursor; without a cursor, a merge skips the rows the
            # table holds exactly as they are (a source re-served whole, like an API without a
            # cursor, does not make an identical new version every load)
            exact = spec.load_mode == "merge" and not spec.cursor
            if against_table and (spec.load_mode == "append" or spec.cursor or exact):
                dt = self.lake.latest(self.stream.table)
                assert dt is not None
                cols = list(spec.primary_key) + ([spec.cursor] if spec.cursor else [])
                existing = self.lake.dataset(dt)
                # rows without a cursor value are re-read every load: one the table holds
                # unchanged is a duplicate, a changed one an update
                null_cursor = bool(spec.cursor and spec.load_mode == "merge" and con.execute(
                    f"SELECT 1 FROM read_parquet('{glob}', union_by_name = true) WHERE "
                    f"{_q(spec.cursor or '')} IS NULL LIMIT 1").fetchall())
                staged = [d[0] for d in con.execute(
                    f"SELECT * FROM read_parquet('{glob}', union_by_name = true) LIMIT 0"
                ).description] if null_cursor or exact else []
                same: list[str] = []
                if null_cursor:
                    same = [c for c in staged if c in existing.schema.names and c not in cols]
                    cols += same
                if exact:
                    cols = staged
                if all(c in existing.schema.names for c in cols):
                    # only the table's rows whose first key falls in the incoming keys' range:
                    # file and row-group statistics skip the rest (new ids skip almost all)
                    first = spec.primary_key[0]
                    lo, hi = con.execute(
                        f"SELECT min({_q(first)}), max({_q(first)}) FROM read_parquet('{glob}', "
                        "union_by_name = true)").fetchall()[0]
                    where = None
                    if lo is not None:
                        t = existing.schema.field(first).type
                        where = (pc.field(first) >= pa.scalar(lo).cast(t)) & \
                            (pc.field(first) <= pa.scalar(hi).cast(t))
                    con.register("__target",
                                 existing.scanner(columns=cols, filter=where).to_reader())
                    match = " AND ".join(f"t.{_q(k)} = d.{_q(k)}" for k in spec.primary_key)
                    if spec.cursor and spec.load_mode == "merge":
                        c = _q(spec.cursor)
                        unchanged = " AND ".join(
                            [f"t.{c} IS NULL", f"d.{c} IS NULL"] +
                            [f"t.{_q(x)} IS NOT DISTINCT FROM d.{_q(x)}" for x in same])
                        match += f" AND (t.{c} >= d.{c} OR ({unchanged}))"
                    if exact:
                        match += "".join(f" AND t.{_q(c)} IS NOT DISTINCT FROM d.{_q(c)}"
                                         for c in cols if c not in spec.primary_key)
                    query = (f"SELECT * FROM ({query}) d WHERE NOT EXISTS "
                             f"(SELECT 1 FROM __target t WHERE {match})")
            con.execute(f"COPY ({query}) TO '{out}' (FORMAT parquet)")
        finally:
            con.close()
        final = pq.ParquetFile(out).metadata.num_rows
        r.duplicates += staged_rows - final
        r.rows_loaded += final
        return out if final else None

    # -- committing ---------------------------------------------------------------------------

    def _apply(self, plan: dict[str, Any], *, load_id: str | None = None) -> None:
        """Apply a staged plan; every step is skipped if it already happened (idempotent)."""
        self._progress("committing")
        lake = self.lake
        txn = (self.app_id, int(plan["seq"]))  # a recovered plan is of this same stream
        load_id = load_id or plan["load_id"]
        extra = {"source": plan["source"], "load_id": load_id}
        if plan["quarantine_files"]:
            lake.commit_files(quarantine.TABLE, plan["quarantine_files"], quarantine.SCHEMA,
                              txn=txn, operation="INGEST", extra=extra,
                              description="records loads rejected, with the reason")
        _kill_point("quarantine_committed")
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(plan["schema"])))
        version = None
        unchanged = False  # a full refresh that re-issued the same rows: no new version
        if plan["merge_file"]:
            result = lake.write(plan["table"], pq.read_table(plan["merge_file"]), mode="merge",
                                keys=plan["keys"], txn=txn, on_duplicate="last")
            version = result.version
        elif plan["data_files"] or plan["mode"] == "overwrite":
            result = lake.commit_files(plan["table"], plan["data_files"], schema,
                                       mode="overwrite" if plan["mode"] == "overwrite"
                                       else "append", txn=txn, operation="INGEST", extra=extra,
                                       description=plan.get("description"))
            version = result.version
            unchanged = result.operation == "UNCHANGED"
        elif lake.exists(plan["table"]):
            version = lake.version(plan["table"])
        self._annotate(plan)
        _kill_point("data_committed")
        stats = plan["stats"]
        state = SourceState(plan["source"], plan["stream"], plan["table"], int(plan["seq"]),
                            plan["cursor"], plan["contract"],
                            int(plan["rows_total"]) + int(stats.get("rows_loaded", 0)),
                            self.run_id, now_us())
        files = [(str(p), int(size), int(mtime)) for p, size, mtime in plan["files"]]

        def change(conn: Any) -> None:
            state_store.save_state(conn, state, files,
                                   reset_files=bool(plan["reset_files"]))
            state_store.set_load(conn, load_id, status="committed", ended=True,
                                 stats={**stats, "version": version})

        details = {"table": plan["table"], "stream": plan["stream"], "load_id": load_id,
                   "seq": plan["seq"], "version": version, "unchanged": unchanged,
                   **{k: stats.get(k) for k in ("rows_read", "rows_loaded", "rows_quarantined",
                                                "duplicates")},
                   "cursor": (plan["cursor"] or {}).get("value")}
        if unchanged:
            details["duplicates"] = int(details["duplicates"] or 0) + \
                int(details["rows_loaded"] or 0)
            details["rows_loaded"] = 0
        self.project.ledger.commit("ingest.load", plan["source"], details, change=change,
                                   run=self.project.ledger.current_run)
        if load_id == self.load_id:
            self.result.version = version
            if unchanged:  # every row read is already in the table: none loaded again
                r = self.result
                r.status, r.duplicates, r.rows_loaded = "unchanged", \
                    r.duplicates + r.rows_loaded, 0
        if unchanged:  # the staged copies were never committed: nobody will reference them
            lake.discard_staged(plan["table"], plan["data_files"])
        shutil.rmtree(plan.get("staging") or "", ignore_errors=True)
        _kill_point("committed")

    def _annotate(self, plan: dict[str, Any]) -> None:
        """Put the declaration's owner, table tags and column tags (``pii``...) on the table in
        the catalog, when they are not there yet (an audited change, like any other)."""
        tags, col_tags = set(plan.get("tags") or []), plan.get("column_tags") or {}
        owner = plan.get("owner")
        info = self.catalog.get_dataset(plan["table"])
        if info is None or not (tags or col_tags or owner):
            return
        have = {c.name: set(c.tags) for c in info.columns}
        add_cols = {c: sorted(have[c] | set(t)) for c, t in col_tags.items()
                    if c in have and not set(t) <= have[c]}
        add_tags = sorted(set(info.tags) | tags) if not tags <= set(info.tags) else None
        new_owner = owner if owner and owner != info.owner else None
        if add_cols or add_tags or new_owner:
            self.lake.annotate(plan["table"], tags=add_tags, column_tags=add_cols or None,
                               owner=new_owner)

    # -- helpers ------------------------------------------------------------------------------

    def _stats(self) -> dict[str, Any]:
        r = self.result
        return {"rows_read": r.rows_read, "rows_loaded": r.rows_loaded,
                "rows_quarantined": r.rows_quarantined, "duplicates": r.duplicates,
                "bytes_read": r.bytes_read, "files": r.files, "mode": r.mode,
                "seconds": round(time.perf_counter() - self.started, 3),
                "cursor_before": r.cursor_before, "cursor_after": r.cursor_after,
                "drift": r.drift}

    def _progress(self, phase: str) -> None:
        if self.progress is not None:
            r = self.result
            self.progress(LoadProgress(r.source, r.stream, phase, r.rows_read, r.bytes_read))


@dataclass
class _Staged:
    files: list[FileMark]
    newest: Any


def _duckdb(staging: Path) -> Any:
    """A private DuckDB for deduplication: spills to the load's staging folder, stays quiet."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{staging / 'spill'}'")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET memory_limit = '{DEDUP_MEMORY}'")
    return con


def _repeats(glob: str, keys: list[str], staging: Path) -> bool:
    """True if some key occurs more than once in the staged files (a cheap aggregate: the
    full deduplication runs only when it is needed)."""
    cols = ", ".join(_q(k) for k in keys)
    con = _duckdb(staging)
    try:
        return bool(con.execute(f"SELECT 1 FROM read_parquet('{glob}', union_by_name = true) "
                                f"GROUP BY {cols} HAVING count(*) > 1 LIMIT 1").fetchall())
    finally:
        con.close()


def read_ahead(chunks: Iterator[Chunk], depth: int = 2) -> Iterator[Chunk]:
    """Read the next chunks on a background thread while this one is checked and written, so
    parsing (or the network, or the database) and Parquet writing overlap on two cores. Errors
    reach the caller; if the caller stops, the reader stops."""
    box: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        box.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(end)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            box.put(_Failed(exc))

    reader = threading.Thread(target=produce, name="tarmac-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item = box.get()
            if item is end:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        while reader.is_alive():
            with contextlib.suppress(queue.Empty):
                box.get(timeout=0.1)
        closer = getattr(chunks, "close", None)
        if closer is not None:
            closer()  # the reader is done: release its connection or file now


@dataclass
class _Failed:
    error: BaseException


def _since(state: SourceState | None, spec: SourceSpec) -> Any:
    """The lowest cursor value to read: the high-water mark minus the lookback window."""
    if state is None or not state.cursor or not spec.cursor:
        return None
    value = _from_json(state.cursor)
    back = spec.lookback_value()
    if back is None:
        return value
    if isinstance(value, datetime) and isinstance(back, timedelta):
        return value - back
    if isinstance(value, date) and isinstance(back, timedelta):
        return value - timedelta(days=back.days)
    if isinstance(value, int | float) and isinstance(back, int | float):
        return value - back
    raise UsageError(
        f"lookback {spec.lookback!r} cannot be applied to cursor '{spec.cursor}', whose values "
        f"are {state.cursor.get('type')} ({value!r})",
        hint=f"declare its type, e.g. columns: {{{spec.cursor}: timestamp}}, or use a numeric "
             "lookback for a numeric cursor")


def _cursor_state(newest: Any, state: SourceState | None, reset: bool) -> dict[str, Any] | None:
    """The new high-water mark: the newest cursor value loaded, never moving backwards."""
    before = _from_json(state.cursor) if (state and state.cursor and not reset) else None
    value = newest if before is None or (newest is not None and newest > before) else before
    if value is None:
        return None
    if isinstance(value, datetime):
        return {"value": value.isoformat(), "type": "timestamp"}
    if isinstance(value, date):
        return {"value": value.isoformat(), "type": "date"}
    if isinstance(value, bool) or not isinstance(value, int | float):
        return {"value": str(value), "type": "string"}
    return {"value": value, "type": "int" if isinstance(value, int) else "float"}


def _from_json(cursor: dict[str, Any]) -> Any:
    value, kind = cursor["value"], cursor.get("type")
    if kind == "timestamp":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    return value


def _scalar(value: Any, t: pa.DataType) -> pa.Scalar:
    if pa.types.is_timestamp(t) and isinstance(value, datetime):
        return pa.scalar(value if value.tzinfo else value.replace(tzinfo=UTC), t)
    return pa.scalar(value).cast(t)

