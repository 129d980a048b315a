"""Loading one stream of a source into the lake: read, check, stage, then commit exactly once.

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
4. **Stage**: the commit plan (a ``CommitPlan``: files, schema, new cursor, counts) is saved in
   the catalog.
5. **Commit** through the lake's ``Committer`` (``tarmac.lake.commit``): quarantine files, then
   the data (an atomic Delta commit of the staged files, or a merge), each marked with a Delta
   application transaction ``(tarmac.ingest/SOURCE/STREAM, seq)``, then the new cursor, files,
   counts and the audit record in one catalog transaction.

Kill the process anywhere: before step 4 nothing is visible and the rerun starts over; after it,
the next run finds the staged plan and applies what is missing (a step already applied is
recognised by its transaction marker and skipped). Either way the lake ends as if the load had
run once. Every load checks ``read == loaded + quarantined + duplicates`` before committing.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tarmac.catalog import now_us
from tarmac.catalog import sources as state_store
from tarmac.catalog.sources import Load, SourceState
from tarmac.errors import SourceError, TarmacError
from tarmac.ingest import quarantine
from tarmac.ingest._cursor import cursor_state as _cursor_state
from tarmac.ingest._cursor import scalar as _scalar
from tarmac.ingest._cursor import since as _since
from tarmac.ingest._dedup import dedup, fresh_rejects, reconcile, repeats
from tarmac.ingest._read_ahead import read_ahead
from tarmac.ingest._saved_plan import read_plan
from tarmac.ingest.base import Connector, FileMark, Stream
from tarmac.ingest.contract import Contract, coerce
from tarmac.ingest.results import LoadProgress, LoadResult
from tarmac.ingest.spec import FileSource, SourceSpec, check_columns
from tarmac.lake import CommitOutcome, CommitPlan, Committer, TableCommit
from tarmac.lake.commit import CommitMode
from tarmac.lake.staging import Stager, action_to_dict

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from tarmac.lake import Lake, WriteResult
    from tarmac.project import Project

Progress = Callable[["LoadProgress"], None]


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
            state_store.set_load(conn, self.load_id, status="staged", plan=plan.to_dict(),
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
            where = (f"the staged plan of load {load.id} (source '{load.source}', stream "
                     f"'{load.stream}') in the catalog")
            self._apply(read_plan(load.plan, where=where))
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
              seq: int) -> CommitPlan:
        r = self.result
        spec = self.spec
        mode: CommitMode = "overwrite" if (self.full_refresh or
                                           spec.load_mode == "full_refresh") else "append"
        merge_file = None
        if self._data is not None:
            self._data.close()
            written = self._data.rows
            if spec.primary_key and written and repeats(self._data.glob, spec.primary_key,
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
        reconcile(r, self.stream.source, data_files, merge_file, q_files)
        cursor = _cursor_state(staged.newest, state, self.full_refresh)
        r.cursor_after = cursor["value"] if cursor else None
        schema = contract.schema()
        source, table = self.stream.source, self.stream.table
        extra = {"source": source, "load_id": self.load_id}
        rejects = TableCommit(quarantine.TABLE, quarantine.SCHEMA, tuple(q_files),
                              operation="INGEST", extra=extra,
                              description="records loads rejected, with the reason")
        data = TableCommit(table, schema, mode="merge", merge_file=merge_file,
                           keys=tuple(spec.primary_key)) if merge_file else \
            TableCommit(table, schema, tuple(data_files), mode=mode, operation="INGEST",
                        description=spec.description, extra=extra)
        payload = {
            "source": source, "stream": self.stream.name, "table": table, "seq": seq,
            "cursor": cursor, "contract": contract.to_json(),
            "files": [[f.path, f.size, f.mtime_ns] for f in staged.files],
            "reset_files": self.full_refresh,
            "rows_total": (state.rows_total if state and not self.full_refresh else 0),
            "stats": self._stats(), "owner": spec.owner, "tags": list(spec.tags),
            "column_tags": {c: list(col.tags) for c, col in spec.columns.items() if col.tags},
        }
        return CommitPlan(self.load_id, ((self.app_id, seq),), (rejects, data), "ingest.load",
                          source, payload=payload, cleanup=(str(self.staging),))

    def _restage(self, final: Path | None, tag: str) -> None:
        """The deduplicated rows as the table's uncommitted data files."""
        self._data = self.lake.stage(self.stream.table, tag)
        if final is not None:
            for batch in pq.ParquetFile(final).iter_batches(batch_size=1 << 17):
                self._data.write(pa.Table.from_batches([batch]))

    def _new_rejects(self) -> list[dict[str, Any]]:
        """The staged quarantine files, without records this source already has in quarantine
        (the repeats count as duplicates)."""
        r = self.result
        assert self._quarantine is not None
        actions = [action_to_dict(a) for a in self._quarantine.close()]
        if not actions or not self.lake.exists(quarantine.TABLE):
            return actions
        fresh = fresh_rejects(self.lake, self.stream.source, self.staging, self._quarantine.glob)
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
        """Deduplicate the staged rows (see ``_dedup.dedup``), counting what was dropped."""
        out, final = dedup(self.lake, self.spec, self.stream.table, self.staging, glob,
                           against_table=against_table)
        self.result.duplicates += staged_rows - final
        self.result.rows_loaded += final
        return out

    # -- committing ---------------------------------------------------------------------------

    def _apply(self, plan: CommitPlan) -> None:
        """Apply a staged plan through the lake's committer: every step already made (a
        recovered plan of a killed process) is recognised by its marker and skipped."""
        self._progress("committing")
        p = plan.payload
        table, stats = p["table"], p["stats"]
        state = SourceState(p["source"], p["stream"], table, int(p["seq"]), p["cursor"],
                            p["contract"], int(p["rows_total"]) + int(stats.get("rows_loaded", 0)),
                            self.run_id, now_us())
        files = [(str(path), int(size), int(mtime)) for path, size, mtime in p["files"]]

        def after_step(step: TableCommit, _result: WriteResult | None) -> None:
            if step is plan.commits[0]:
                _kill_point("quarantine_committed")
            else:
                self._annotate(p)
                _kill_point("data_committed")

        def change(conn: Connection, outcome: CommitOutcome) -> None:
            state_store.save_state(conn, state, files, reset_files=bool(p["reset_files"]))
            state_store.set_load(conn, plan.id, status="committed", ended=True,
                                 stats={**stats, "version": outcome.versions[table]})

        def details(outcome: CommitOutcome) -> dict[str, Any]:
            out = {"table": table, "stream": p["stream"], "load_id": plan.id, "seq": p["seq"],
                   "version": outcome.versions[table], "unchanged": outcome.unchanged(table),
                   **{k: stats.get(k) for k in ("rows_read", "rows_loaded", "rows_quarantined",
                                                "duplicates")},
                   "cursor": (p["cursor"] or {}).get("value")}
            if out["unchanged"]:
                out["duplicates"] = int(out["duplicates"] or 0) + int(out["rows_loaded"] or 0)
                out["rows_loaded"] = 0
            return out

        outcome = Committer(self.lake).apply(plan, change=change, details=details,
                                             after_step=after_step)
        if plan.id == self.load_id:
            self.result.version = outcome.versions[table]
            if outcome.unchanged(table):  # every row read is already in the table
                r = self.result
                r.status, r.duplicates, r.rows_loaded = "unchanged", \
                    r.duplicates + r.rows_loaded, 0
        _kill_point("committed")

    def _annotate(self, plan: dict[str, Any]) -> None:  # the plan's payload
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
