"""The exactly-once sink of a stream source into its lake table.

A ``type: stream`` source is read in micro-batches and each batch lands in the source's lake
table with the offsets it consumed, in one atomic step, the way Spark's Delta sink and
kafka-delta-ingest do it:

1. **Decode** the message values as JSON objects (Arrow's reader for the whole batch); a value
   that is not UTF-8, not JSON or not an object is rejected with its topic, partition and offset.
2. **Check** the rows with the source's contract: the same ``Contract`` code as batch ingestion
   (coercion, declared rules, the drift policy), so a column's type never depends on the batch.
3. **Event time.** With a ``timestamp`` column: an event older than the watermark minus
   ``allowed_lateness`` is rejected as too late, one newer than now plus ``max_future`` as from
   the future. The watermark is the smallest, over the topic's partitions that have data, of
   the newest event time committed from that partition (an idle or slow partition holds it back,
   so a backlog is not mistaken for lateness).
4. **Deduplicate** by the primary key: a key already committed (within the lateness horizon,
   where a repeat can still be on time) or repeated in the batch is counted as a duplicate and
   not written; the first occurrence wins.
5. **Commit** through the lake's ``Committer``: rejected records to ``quarantine`` and the rows
   to the table, each Delta commit carrying one application-transaction marker per partition,
   ``(tarmac.stream/SOURCE/TOPIC/PARTITION, next offset)``; then, in one catalog transaction,
   the partitions' new offsets and counts and one audit record (count and hash of the batch).
   The plan is saved to a file first, so a process killed anywhere is finished by whoever next
   opens the source (``recover``).

Where a partition resumes is read from the Delta log (the newest marker of its app id in the
table or in quarantine), never from the broker's committed offsets: what the lake holds is the
truth. Every batch reconciles ``messages == loaded + quarantined + duplicates``.

Example::

    from tarmac.streams.sink import StreamSink

    with StreamSink(p, "clicks") as sink:
        start = sink.position(0)                 # next offset of partition 0 (None: never)
        msgs = p.streams.read("clicks", 0, from_offset=start or 0, limit=10_000)
        batch = sink.process(msgs)               # committed exactly once
        batch.rows_loaded, batch.rows_quarantined, batch.offsets
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tarmac.catalog import now_us
from tarmac.catalog import sources as state_store
from tarmac.errors import ConfigError, TarmacError, UsageError, WriteConflictError
from tarmac.humanize import parse_duration
from tarmac.ingest import quarantine
from tarmac.ingest.base import raw_json, table_name
from tarmac.ingest.contract import REJECT_SCHEMA, Contract
from tarmac.ingest.spec import StreamSource
from tarmac.ingest.text import json_values
from tarmac.lake import CommitOutcome, CommitPlan, Committer, TableCommit, quote_ident
from tarmac.streams.log import Message, StreamLog

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from tarmac.lake import Lake
    from tarmac.project import Project

__all__ = ["PREDICTIONS", "SinkBatch", "StreamSink", "app_id", "stream_source", "stream_sources"]

ACTION = "stream.commit"


def app_id(source: str, topic: str, partition: int) -> str:
    """The Delta application id under which a partition's offsets are committed."""
    return f"tarmac.stream/{source}/{topic}/{partition}"


PREDICTIONS = "predictions"
# the predictions table's columns (tarmac.serving.predlog.SCHEMA; a test holds them equal)
_PREDICTION_COLUMNS = {
    "id": "string", "request_id": "string", "time": "timestamp", "endpoint": "string",
    "model": "string", "version": "int", "role": "string", "shadow": "bool",
    "features": "string", "feature_times": "string", "feature_status": "string",
    "request": "string", "score": "float", "label": "string", "latency_ms": "float",
    "error": "string"}


def committed_positions(lake: Lake, source: str, topic: str, table: str,
                        partitions: Iterable[int]) -> dict[int, int | None]:
    """Per partition, the next offset the lake holds for a stream source: the newest offset
    marker of its application id in ``table`` or in quarantine (None: nothing committed).
    Reads each table's Delta log once; creates nothing (``tarmac stream status`` uses it)."""
    wanted = list(partitions)
    logs = [dt for dt in (lake.latest(table), lake.latest(quarantine.TABLE)) if dt is not None]
    out: dict[int, int | None] = {}
    for p in wanted:
        app = app_id(source, topic, p)
        have = [v for v in (dt.transaction_version(app) for dt in logs) if v is not None]
        out[p] = max(have) if have else None
    return out


def stream_sources(project: Project) -> dict[str, StreamSource]:
    """The ``type: stream`` sources: those declared in ``tarmac.yaml``, and ``predictions``
    when ``serving.prediction_log.topic`` publishes the prediction log to a topic."""
    out = {n: s for n, s in project.sources.items() if isinstance(s, StreamSource)}
    topic = project.config.serving.prediction_log.topic
    if topic is not None:
        if PREDICTIONS in project.sources:
            raise ConfigError(f"tarmac.yaml: key 'sources.{PREDICTIONS}': the name is taken by "
                              "the prediction log's stream (serving.prediction_log.topic)",
                              hint="rename the source")
        out[PREDICTIONS] = StreamSource.model_validate({
            "type": "stream", "topic": topic, "table": PREDICTIONS, "primary_key": ["id"],
            "timestamp": "time", "allowed_lateness": "7d", "max_future": "1h",
            "on_schema_change": "quarantine", "columns": {
                c: {"type": t, "required": c in ("id", "time")}
                for c, t in _PREDICTION_COLUMNS.items()},
            "description": "every prediction the model server answered"})
    return out


def stream_source(project: Project, source: str) -> StreamSource:
    """The ``type: stream`` source ``source`` (a clear error for anything else)."""
    sources = {**project.sources, **stream_sources(project)}
    spec = sources.get(source)
    if spec is None:
        streams = sorted(n for n, s in sources.items() if isinstance(s, StreamSource))
        raise UsageError(f"no stream source {source!r} in tarmac.yaml",
                         hint=("stream sources: " + ", ".join(streams)) if streams else
                         "declare one: sources: {clicks: {type: stream, topic: clicks}}")
    if not isinstance(spec, StreamSource):
        raise UsageError(f"source {source!r} is a {spec.type} source, not a stream",
                         hint=f"load it with: tarmac ingest {source}")
    if spec.format != "json":
        raise ConfigError(f"tarmac.yaml: key 'sources.{source}.format' (got {spec.format!r}): "
                          "only json streams can be read today",
                          hint="Avro and Protobuf with a schema registry are a later step")
    return spec


@dataclass
class Counts:
    """Where a stream source's messages went: ``messages == rows_loaded + rows_quarantined +
    duplicates``; ``late`` and ``future`` are part of ``rows_quarantined``."""

    source: str
    table: str
    messages: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    late: int = 0
    future: int = 0
    duplicates: int = 0


@dataclass
class SinkBatch(Counts):
    """What one micro-batch did. ``offsets``: the next offset committed per partition;
    ``rows``: the rows committed to the table (for streaming features)."""

    offsets: dict[int, int] = field(default_factory=dict)
    version: int | None = None
    seconds: float = 0.0
    rows: pa.Table | None = None
    drift: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "table": self.table, "messages": self.messages,
                "rows_loaded": self.rows_loaded, "rows_quarantined": self.rows_quarantined,
                "late": self.late, "future": self.future, "duplicates": self.duplicates,
                "offsets": {str(p): o for p, o in sorted(self.offsets.items())},
                "version": self.version, "seconds": self.seconds, "drift": self.drift}


class StreamSink:
    """Commits micro-batches of one stream source to its lake table exactly once (see the
    module docstring). One sink per process and source; several processes may sink one
    source as long as each partition is read by one of them at a time (the runner's leases)."""

    def __init__(self, project: Project, source: str, *, log: StreamLog | None = None,
                 runner_id: str | None = None) -> None:
        self.project = project
        self.spec = stream_source(project, source)
        self.source = source
        self.topic = self.spec.topic
        self.table = self.spec.table or table_name(source)
        self.log = log or project.streams
        self.runner_id = runner_id or uuid.uuid4().hex[:12]
        self.lake = project.lake
        self.committer = Committer(self.lake)
        self.lateness = parse_duration(self.spec.allowed_lateness)
        self.max_future = parse_duration(self.spec.max_future)
        self.plans = project.root / ".tarmac" / "streams" / "plans" / source
        self.plans.mkdir(parents=True, exist_ok=True)
        self.plan_path = self.plans / f"{self.runner_id}.json"
        self._lock_fd: int | None = None
        self.contract: Contract | None = None
        self._marks: dict[int, int] = {}  # partition -> newest event time committed (us)
        self._recent: dict[Any, int] = {}  # primary key -> event time (us), lateness horizon
        self._evict_at = 10_000
        self._opened = False
        self._parts = np.zeros(0, dtype=np.int64)  # the partition of each message of a batch

    # -- life cycle -------------------------------------------------------------------------

    def open(self) -> StreamSink:
        """Hold this sink's plan lock, finish plans of dead processes, and load the contract,
        the event-time marks and the keys committed within the lateness horizon."""
        if self._opened:
            return self
        fd = os.open(self.plans / f"{self.runner_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock_fd = fd
        self.recover()
        states = state_store.stream_states(self.project.catalog, self.source)
        stored = next((s.contract for s in states if s.stream == self.source), None)
        self.contract = Contract(self.source, self.spec, stored, {})
        self._marks = self._stored_marks(states)
        self._load_recent()
        self._opened = True
        return self

    def close(self) -> None:
        if self._lock_fd is not None:
            try:
                (self.plans / f"{self.runner_id}.lock").unlink(missing_ok=True)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None
        self._opened = False

    def __enter__(self) -> StreamSink:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def recover(self) -> list[str]:
        """Finish the commit plans that processes which died left for this source (a plan
        whose owner still runs is left alone); returns the ids of the plans applied."""
        done: list[str] = []
        for plan_file in sorted(self.plans.glob("*.json")):
            owner = plan_file.stem
            if owner == self.runner_id:
                continue
            lock = self.plans / f"{owner}.lock"
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive and will finish it
                outcome = self.committer.replay(plan_file, change=self._change,
                                                details=self._details)
                if outcome is not None:
                    done.append(outcome.plan.id)
                lock.unlink(missing_ok=True)
            finally:
                os.close(fd)
        return done

    # -- positions --------------------------------------------------------------------------

    def position(self, partition: int) -> int | None:
        """The next offset to read in ``partition``: the newest offset marker in the Delta log
        of the table or of quarantine (None: nothing of it was ever committed)."""
        return self.positions([partition])[partition]

    def positions(self, partitions: Iterable[int]) -> dict[int, int | None]:
        """``position`` of several partitions, each table's Delta log read once."""
        return committed_positions(self.lake, self.source, self.topic, self.table, partitions)

    # -- one micro-batch --------------------------------------------------------------------

    def process(self, messages: Sequence[Message], *,
                expected: dict[int, int | None] | None = None) -> SinkBatch:
        """Decode, check and commit ``messages`` (offsets consecutive per partition, from the
        partition's position) exactly once. ``expected``: the position this caller read each
        partition from; if the lake has moved on (another process committed them), nothing is
        written and ``WriteConflictError`` is raised, so the caller re-reads its positions."""
        if not self._opened:
            self.open()
        assert self.contract is not None
        started = time.perf_counter()
        batch = SinkBatch(self.source, self.table, messages=len(messages))
        if not messages:
            return batch
        parts = self._parts = np.fromiter((m.partition for m in messages), np.int64,
                                          len(messages))
        offs = np.fromiter((m.offset for m in messages), np.int64, len(messages))
        nxt: dict[int, int] = {}
        for p in np.unique(parts):
            nxt[int(p)] = int(offs[parts == p].max()) + 1
        if expected is not None:
            self._fence(expected, nxt)
        origins = pc.binary_join_element_wise(
            f"{self.topic}/", pa.array(parts).cast(pa.string()), "@",
            pa.array(offs).cast(pa.string()), "")
        table, index, bad = json_values([m.value for m in messages])
        rejects = [self._reject_table(
            [r for _, r in bad], origins.take(pa.array([i for i, _ in bad], pa.int64())),
            [messages[i].value.decode("utf-8", "replace") for i, _ in bad])]
        row_msg = index  # the message each row came from
        if table.num_rows:
            checked = self.contract.check(table, origins.take(pa.array(index)))
            rows = checked.good
            rejects.append(checked.rejected)
            batch.drift = [str(d) for d in checked.drift]
            if checked.rejected.num_rows:  # the contract keeps the order of the rows it passes
                out = pc.is_in(origins.take(pa.array(index)),
                               value_set=checked.rejected["origin"].combine_chunks())
                row_msg = index[~out.to_numpy(zero_copy_only=False)]
        else:
            rows = self.contract.schema().empty_table()
        rows, row_msg, more = self._event_time(rows, row_msg, origins, batch)
        rejects += more
        rows, row_msg = self._dedup(rows, row_msg, batch)
        row_parts = parts[row_msg]
        rejected = pa.concat_tables([r.cast(REJECT_SCHEMA) for r in rejects])
        batch.rows_quarantined = rejected.num_rows
        batch.rows_loaded = rows.num_rows
        if batch.messages != batch.rows_loaded + batch.rows_quarantined + batch.duplicates:
            raise TarmacError(f"stream source '{self.source}': {batch.messages:,} messages but "
                              f"{batch.rows_loaded:,} loaded + {batch.rows_quarantined:,} "
                              f"quarantined + {batch.duplicates:,} duplicates; nothing was "
                              "committed")
        marks = dict(self._marks)
        if self.spec.timestamp and rows.num_rows:
            ts = to_micros(rows[self.spec.timestamp])
            for p in np.unique(row_parts):
                top = int(ts[row_parts == p].max())
                marks[int(p)] = max(marks.get(int(p), top), top)
        loaded_by = {p: int((row_parts == p).sum()) for p in nxt}
        self._commit(batch, rows, rejected, nxt, marks, loaded_by)
        self._marks = marks
        self._remember(rows)
        batch.offsets = nxt
        batch.rows = rows
        batch.seconds = round(time.perf_counter() - started, 4)
        return batch

    # -- the steps ------------------------------------------------------------------------

    def _fence(self, expected: dict[int, int | None], nxt: dict[int, int]) -> None:
        now = self.positions(p for p in nxt if p in expected)
        for p, at in now.items():
            if at != expected[p]:
                raise WriteConflictError(
                    f"stream source '{self.source}': partition {p} of topic '{self.topic}' was "
                    f"committed by another process (the lake is at offset {at}, "
                    f"this batch started at {expected[p]}); nothing was written",
                    hint="the runner re-reads its positions from the lake and goes on")

    def _reject_table(self, reasons: list[str], origins: pa.Array,
                      records: list[str]) -> pa.Table:
        n = len(reasons)
        return pa.table({"reason": pa.array(reasons, pa.string()),
                         "column": pa.nulls(n, pa.string()), "value": pa.nulls(n, pa.string()),
                         "origin": origins.cast(pa.string()),
                         "record": pa.array(records, pa.string())}, schema=REJECT_SCHEMA)

    def _event_time(self, rows: pa.Table, row_msg: np.ndarray, origins: pa.Array,
                    batch: SinkBatch) -> tuple[pa.Table, np.ndarray, list[pa.Table]]:
        """Reject rows with no event time, too late for the watermark, or from the future."""
        column = self.spec.timestamp
        if not column or not rows.num_rows:
            return rows, row_msg, []
        if column not in rows.column_names:
            raise ConfigError(f"tarmac.yaml: key 'sources.{self.source}.timestamp' (got "
                              f"{column!r}): the stream's records have no such field "
                              f"(they have: {', '.join(rows.column_names[:12])}); nothing was "
                              "committed")
        values = rows[column]
        if not (pa.types.is_timestamp(values.type) or pa.types.is_date(values.type)):
            raise ConfigError(f"tarmac.yaml: key 'sources.{self.source}.timestamp': column "
                              f"{column!r} is {values.type}, not a time; declare it "
                              f"(columns: {{{column}: timestamp}})")
        ts = to_micros(values)
        null = pc.is_null(values).to_numpy(zero_copy_only=False)
        ceiling = now_us() + _us(self.max_future)
        future = ~null & (ts > ceiling)
        # the batch's own events move the watermark too (not those from the future), so an
        # event far in the past is late whatever the batch boundaries
        parts = self._parts[row_msg]
        batch_marks = {int(p): int(ts[(parts == p) & ~null & ~future].max())
                       for p in np.unique(parts[~null & ~future])}
        watermark = self._watermark(batch_marks)
        floor = None if watermark is None else watermark - _us(self.lateness)
        late = ~null & ~future & (ts < floor) if floor is not None else np.zeros(len(ts), bool)
        bad = null | late | future
        if not bad.any():
            return rows, row_msg, []
        batch.late, batch.future = int(late.sum()), int(future.sum())
        reasons = np.where(null, f"no event time ('{column}' is null)", np.where(
            late, f"too late: event time before the watermark minus allowed lateness "
                  f"{self.spec.allowed_lateness} ({_iso(floor)})",
            f"from the future: event time after now plus max_future {self.spec.max_future}"))
        idx = np.flatnonzero(bad)
        shown = values.take(pa.array(idx)).cast(pa.string()).to_pylist()
        rejected = pa.table({
            "reason": pa.array(reasons[idx].tolist(), pa.string()),
            "column": pa.array([column] * len(idx), pa.string()),
            "value": pa.array(shown, pa.string()),
            "origin": origins.take(pa.array(row_msg[idx])),
            "record": pa.array([raw_json(r) for r in rows.take(pa.array(idx)).to_pylist()],
                               pa.string())}, schema=REJECT_SCHEMA)
        keep = np.flatnonzero(~bad)
        return rows.take(pa.array(keep)), row_msg[keep], [rejected]

    def _dedup(self, rows: pa.Table, row_msg: np.ndarray,
               batch: SinkBatch) -> tuple[pa.Table, np.ndarray]:
        """Drop rows whose primary key was committed already or repeats in the batch (the
        first wins). A set lookup per row: Arrow has no persistent hash set to probe."""
        keys = self.spec.primary_key
        if not keys or not rows.num_rows:
            return rows, row_msg
        values = _key_values(rows, keys)
        recent = self._recent
        if recent.keys().isdisjoint(values) and len(set(values)) == len(values):
            return rows, row_msg  # the usual case, decided by set operations in C
        seen: set[Any] = set()
        keep = np.ones(len(values), dtype=bool)
        for i, k in enumerate(values):
            if k in recent or k in seen:
                keep[i] = False
            else:
                seen.add(k)
        dropped = int((~keep).sum())
        if not dropped:
            return rows, row_msg
        batch.duplicates += dropped
        idx = np.flatnonzero(keep)
        return rows.take(pa.array(idx)), row_msg[idx]

    def _commit(self, batch: SinkBatch, rows: pa.Table, rejected: pa.Table,
                nxt: dict[int, int], marks: dict[int, int], loaded_by: dict[int, int]) -> None:
        assert self.contract is not None
        plan_id = uuid.uuid4().hex
        run = self.lake.ledger.current_run
        steps = []
        q_rows = quarantine.rows(rejected, source=self.source, table=self.table,
                                 run_id=run.id if run else "", load_id=plan_id,
                                 at=datetime.now(UTC))
        steps.append(self.committer.stage(quarantine.TABLE, q_rows, schema=quarantine.SCHEMA)
                     if q_rows.num_rows else TableCommit(quarantine.TABLE, quarantine.SCHEMA))
        schema = self.contract.schema()
        data = self.committer.stage(self.table, rows, schema=schema) if rows.num_rows \
            else TableCommit(self.table, schema)
        steps.append(TableCommit(self.table, schema, data.files, operation="STREAM",
                                 description=self.spec.description,
                                 extra={"source": self.source, "batch_id": plan_id}))
        markers = tuple((app_id(self.source, self.topic, p), o) for p, o in sorted(nxt.items()))
        from tarmac.ledger.chain import batch_digest

        ids = (_key_values(rows, self.spec.primary_key) if self.spec.primary_key and rows.num_rows
               else [f"{p}@{o}" for p, o in sorted(nxt.items())])
        count, digest = batch_digest(map(str, ids))
        payload = {"offsets": {str(p): o for p, o in nxt.items()},
                   "marks": {str(p): marks.get(p) for p in nxt},
                   "loaded": {str(p): loaded_by.get(p, 0) for p in nxt},
                   "contract": self.contract.to_json(), "stats": batch.to_dict()}
        details = {"table": self.table, "topic": self.topic, "batch_id": plan_id,
                   "count": count, "ids_sha256": digest,
                   **{k: v for k, v in batch.to_dict().items()
                      if k in ("messages", "rows_loaded", "rows_quarantined", "late", "future",
                               "duplicates", "offsets")}}
        plan = CommitPlan(plan_id, markers, tuple(steps), ACTION, self.source, details=details,
                          payload=payload)
        outcome = self.committer.commit(plan, path=self.plan_path, change=self._change,
                                        details=self._details)
        batch.version = outcome.versions.get(self.table)

    def _change(self, conn: Connection, outcome: CommitOutcome) -> None:
        """The catalog step of a batch (also run by a replay, from the plan alone)."""
        p = outcome.plan.payload
        run = self.lake.ledger.current_run
        streams = {f"{self.topic}:{part}": ({"value": off, "type": "offset",
                                              "watermark_us": p["marks"].get(part)},
                                             int(p["loaded"].get(part, 0)))
                   for part, off in p["offsets"].items()}
        state_store.add_stream_progress(conn, self.source, self.table, streams,
                                        contract=p["contract"],
                                        rows=int(p["stats"]["rows_loaded"]),
                                        run_id=run.id if run else None)

    def _details(self, outcome: CommitOutcome) -> dict[str, Any]:
        return {"versions": outcome.versions}

    # -- state --------------------------------------------------------------------------------

    def _stored_marks(self, states: list[state_store.SourceState]) -> dict[int, int]:
        marks: dict[int, int] = {}
        prefix = f"{self.topic}:"
        for s in states:
            if s.stream.startswith(prefix) and s.cursor and s.cursor.get("watermark_us"):
                marks[int(s.stream[len(prefix):])] = int(s.cursor["watermark_us"])
        return marks

    def _watermark(self, batch: dict[int, int]) -> int | None:
        """The smallest newest-event-time over partitions with data (other processes' too),
        this batch's events included."""
        states = state_store.stream_states(self.project.catalog, self.source)
        marks = {**self._stored_marks(states), **self._marks}
        for p, top in batch.items():
            marks[p] = max(marks.get(p, top), top)
        return min(marks.values()) if marks else None

    def refresh(self) -> None:
        """Reload the event-time marks and the keys committed within the lateness horizon from
        the catalog and the lake: after partitions moved between runners, the keys another
        runner committed on them are not in this one's memory, and a producer's repeat on such
        a partition must still be recognised."""
        states = state_store.stream_states(self.project.catalog, self.source)
        self._marks = self._stored_marks(states)
        self._load_recent()

    def _load_recent(self) -> None:
        """The primary keys committed within the lateness horizon (where a repeat could still
        be on time), so a producer's retry after a restart is still recognised."""
        self._recent = {}
        keys, column = self.spec.primary_key, self.spec.timestamp
        if not keys or not column or not self.lake.exists(self.table) or not self._marks:
            return
        floor = min(self._marks.values()) - _us(self.lateness) - _us(self.max_future)
        cols = ", ".join(quote_ident(k) for k in keys)
        ts = quote_ident(column)
        found = self.project.sql(  # a failure here must stop the sink, not forget the keys
            f"SELECT {cols}, epoch_us({ts}) AS __t FROM {quote_ident(self.table)} "
            f"WHERE {ts} >= make_timestamp({int(floor)})")
        ts = found["__t"].to_numpy(zero_copy_only=False)
        for k, t in zip(_key_values(found, keys), ts, strict=True):
            self._recent[k] = int(t)

    def _remember(self, rows: pa.Table) -> None:
        keys, column = self.spec.primary_key, self.spec.timestamp
        if not keys or not rows.num_rows:
            return
        if column:  # without an event time there is no horizon: duplicates within a batch only
            values = _key_values(rows, keys)
            ts = to_micros(rows[column])
            self._recent.update(zip(values, ts.tolist(), strict=True))
            watermark = min(self._marks.values()) if self._marks else None
            if watermark is not None and len(self._recent) > self._evict_at:
                floor = watermark - _us(self.lateness) - _us(self.max_future)
                self._recent = {k: t for k, t in self._recent.items() if t >= floor}
                self._evict_at = max(10_000, 2 * len(self._recent))  # amortised


def _key_values(table: pa.Table, keys: Sequence[str]) -> list[Any]:
    if len(keys) == 1:
        return table[keys[0]].to_pylist()
    return list(zip(*(table[k].to_pylist() for k in keys), strict=True))


def to_micros(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Event times as int64 UTC microseconds (nulls as the smallest int64)."""
    if pa.types.is_date(values.type):
        values = values.cast(pa.timestamp("us"))
    as_us = values.cast(pa.timestamp("us", tz=getattr(values.type, "tz", None)))
    ints = pc.fill_null(as_us.cast(pa.int64()), np.iinfo(np.int64).min)
    return np.asarray(ints.to_numpy(zero_copy_only=False), dtype=np.int64)


def _us(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1_000_000)


def _iso(us: int | None) -> str:
    return "-" if us is None else datetime.fromtimestamp(us / 1e6, UTC).isoformat()

