"""Stream feature views: windowed aggregates kept up to date online as a stream lands in the lake.

``tarmac apply`` binds a ``StreamFeatureView`` to its stream source (``bind``): the lake table
the source lands in, its event-time column and primary key, the columns' types (from the
table, or from the source's ``columns:`` contract before the first event landed). The bound
view is an ordinary feature view whose source is generated SQL over that table
(``tarmac.streams.windows.batch_sql``): one row per entity and evaluation time with the window
values, so training sets, ``materialize`` and ``features check`` work on it unchanged.

``StreamingFeatures`` is the incremental side, what the stream runner calls after each commit:
``start(source)`` rebuilds each view's tile state from the lake table (restart needs no manual
step) and writes every entity it holds; ``apply(source, rows)`` merges the rows just committed
and writes the entities whose values changed to the online store, with the time the values
are valid from, so ttl and the present/missing/stale status work as for any view.

Example (what ``tarmac stream run`` does)::

    live = StreamingFeatures(p)
    live.start("clicks")
    committed = sink.commit(batch)              # the rows now in the lake table
    stats = live.apply("clicks", committed)     # stats.entities written, stats.latencies()
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from tarmac.catalog import now_us
from tarmac.errors import SchemaConflictError, UsageError
from tarmac.features.definitions import (
    SQL_TYPES,
    Feature,
    FeatureView,
    SqlSource,
    StreamFeatureView,
    suggest,
    type_of,
)
from tarmac.features.keys import key_sql
from tarmac.features.registry import _COMPATIBLE, _RegisteredView
from tarmac.humanize import parse_duration
from tarmac.lake import quote_ident as q
from tarmac.streams.windows import AS_OF, WindowSpec, WindowState, batch_sql, time_us

if TYPE_CHECKING:
    import duckdb

    from tarmac.ingest.spec import StreamSource
    from tarmac.project import Project

WRITE_BATCH = 10_000  # online records per write_batch call (as materialize)
READ_BATCH = 200_000  # rows per step when a state is rebuilt from the lake


# -- binding a declaration to its stream source (tarmac apply) --------------------------------


def stream_source(project: Project, name: str, where: str) -> StreamSource:
    """The ``type: stream`` source ``name`` of tarmac.yaml; UsageError naming ``where``."""
    from tarmac.ingest.spec import StreamSource

    sources = project.sources
    source = sources.get(name)
    if source is None:
        raise UsageError(f"{where}: no source '{name}' in tarmac.yaml"
                         + suggest(name, sources, none=" (it declares no sources)"),
                         hint="declare it under sources: with type: stream")
    if not isinstance(source, StreamSource):
        raise UsageError(f"{where}: source '{name}' is a {source.type} source, not a stream",
                         hint="windowed aggregates need a source with type: stream; use a "
                              "FeatureView over its lake table for batch data")
    return source


def lake_table(name: str, source: StreamSource) -> str:
    """The lake table a stream source lands in (its ``table:``, else its name as a table)."""
    from tarmac.ingest.base import table_name

    return source.table or table_name(name)


def _schema(project: Project, name: str, table: str, source: StreamSource,
            ) -> tuple[pa.Schema, str]:
    """The table's schema if it exists, else the one the source's contract declares."""
    dt = project.lake.latest(table)
    if dt is not None:
        return pa.schema(dt.schema().to_arrow()), f"lake table '{table}'"
    fields = [pa.field(c, spec.arrow_type) for c, spec in source.columns.items()
              if spec.arrow_type is not None]
    return pa.schema(fields), (f"the columns: of source '{name}' in tarmac.yaml (its lake "
                               f"table '{table}' does not exist yet)")


def bind(project: Project, view: StreamFeatureView) -> tuple[FeatureView, pa.Schema]:
    """The registered form of a stream view: its batch SQL, feature types and window spec,
    checked against the source (UsageError / SchemaConflictError naming the view and field)."""
    where = f"stream feature view '{view.name}'"
    source = stream_source(project, view.source, where)
    timestamp = view.timestamp or source.timestamp
    if timestamp is None:
        raise UsageError(f"{where}: source '{view.source}' declares no event-time column",
                         hint=f"add timestamp: to sources.{view.source} in tarmac.yaml (or "
                              "timestamp= to the view)")
    table = lake_table(view.source, source)
    schema, origin = _schema(project, view.source, table, source)
    cols = {f.name: f.type for f in schema}

    def need(column: str, what: str) -> pa.DataType:
        if column in cols:
            return cols[column]
        close = suggest(column, cols, none="")
        raise SchemaConflictError(
            f"{where}: {what}: {origin} has no column '{column}'{close}"
            + ("" if close else f" (it has: {', '.join(cols) or 'no typed columns'})"),
            hint="fix the name" + ("" if "columns:" not in origin else
                                   f", or declare its type under sources.{view.source}."
                                   "columns in tarmac.yaml"))

    for key in view.join_keys:
        need(key, f"join key '{key}'")
    for key in source.primary_key:
        need(key, f"primary key '{key}' of source '{view.source}'")
    if type_of(need(timestamp, "timestamp")) != "timestamp":
        raise SchemaConflictError(f"{where}: timestamp column '{timestamp}' holds "
                                  f"{cols[timestamp]}, not times")
    dtypes: dict[int, str] = {}
    for i, a in enumerate(view.aggregates):
        field_name = f"aggregates[{i}] {a}"
        if a.column is None:
            dtypes[i] = "int64"
            continue
        kind = type_of(need(a.column, field_name))
        if kind is None:
            raise SchemaConflictError(f"{where}: {field_name}: column '{a.column}' holds "
                                      f"{cols[a.column]}, which no feature type fits")
        numeric = kind in ("int64", "float64")
        if a.fn in ("sum", "mean") and not numeric:
            raise SchemaConflictError(f"{where}: {field_name}: column '{a.column}' holds "
                                      f"{cols[a.column]}, not numbers")
        default = {"distinct": "int64", "mean": "float64"}.get(a.fn, kind)
        dtype = a.dtype or default
        if a.fn in ("sum", "min", "max", "last") and kind not in _COMPATIBLE[dtype]:
            raise SchemaConflictError(f"{where}: {field_name} is declared {dtype} but column "
                                      f"'{a.column}' holds {cols[a.column]}")
        dtypes[i] = dtype
    spec: WindowSpec = view.window_spec(
        keys=view.join_keys, timestamp=timestamp, primary_key=source.primary_key,
        sql_types={i: SQL_TYPES[t] for i, t in dtypes.items()})
    types = {f"{spec.aggregates[i].name}_{w.name}": dtypes[i]
             for i in range(len(spec.aggregates)) for w in spec.windows}
    bound = _RegisteredView(
        name=view.name, entities=view.entities, source=SqlSource(batch_sql(spec, q(table))),
        timestamp=timestamp, features=[Feature(f.name, types[f.name], f.description, f.tags)
                                       for f in view.features],
        ttl=view.ttl, description=view.description, owner=view.owner, tags=view.tags,
        key_types={k: type_of(cols[k]) or "string" for k in view.join_keys},
        streaming={"source": view.source, "table": table, "spec": spec.to_dict()})
    return bound, schema


# -- the incremental side ------------------------------------------------------------------


@dataclass
class ViewApply:
    """What one micro-batch did to one stream view."""

    view: str
    applied: int = 0  # events counted
    duplicates: int = 0  # copies of counted events
    replaced: int = 0  # conflicting copies that beat the counted one (tiles rebuilt)
    skipped: int = 0  # rows without a key or an event time
    too_late: int = 0  # rows older than the state keeps (the sink quarantines these)
    entities: int = 0  # online records written
    started: bool = False  # the state was (re)built from the lake instead (new or changed view)
    cells: int = 0  # (entity, tile) partials held after the batch

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ApplyStats:
    """What ``StreamingFeatures.apply`` did: rows in, per view counts, and the event times of
    the rows applied with the time their values were written online (``latencies()`` gives
    the event-to-online latency of each, for a Prometheus histogram)."""

    source: str
    rows: int = 0
    views: list[ViewApply] = field(default_factory=list)
    event_us: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    online_at_us: int = 0
    seconds: float = 0.0

    @property
    def applied(self) -> int:
        """Events counted (the most any view counted: views differ only in what is too late)."""
        return max((v.applied for v in self.views), default=0)

    @property
    def entities(self) -> int:
        """Online records written, over all views."""
        return sum(v.entities for v in self.views)

    def latencies(self) -> np.ndarray:
        """Seconds from each applied row's event time to the online write."""
        return (self.online_at_us - self.event_us) / 1_000_000

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "rows": self.rows, "applied": self.applied,
                "entities": self.entities, "seconds": round(self.seconds, 4),
                "views": [v.to_dict() for v in self.views]}


@dataclass
class _Running:
    view: FeatureView
    key: str  # the registered streaming spec, as JSON: a change rebuilds the state
    state: WindowState
    table: str
    spec: WindowSpec


class StreamingFeatures:
    """The stream views of a project, kept up to date online from the rows a stream sink
    commits. One instance per runner process; not thread-safe (one caller at a time).

    Example::

        live = StreamingFeatures(p)           # or p.features.streaming
        live.views_for("clicks")              # the registered stream views over it
        live.start("clicks")                  # rebuild from the lake, write every entity
        stats = live.apply("clicks", rows)    # rows just committed to the lake table
        stats.entities, stats.latencies()
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        self._running: dict[str, _Running] = {}
        self._sources: dict[str, StreamSource] = {}
        self._con: duckdb.DuckDBPyConnection | None = None

    # -- public -------------------------------------------------------------------------------

    def views_for(self, source: str) -> list[FeatureView]:
        """The registered stream views over ``source`` (a stream source of tarmac.yaml)."""
        self._source(source)
        views = self.project.features.registered().views.values()
        return [v for v in views if (getattr(v, "streaming", None) or {}).get("source")
                == source]

    def start(self, source: str) -> None:
        """(Re)build every stream view of ``source`` from its lake table - the tiles of the
        largest window and the allowed lateness - and write every entity it holds online
        (values the store already has at a newer time are kept)."""
        for view in self.views_for(source):
            self._start(source, view)

    def apply(self, source: str, rows: pa.Table | pa.RecordBatch) -> ApplyStats:
        """Merge rows just committed to ``source``'s lake table (in commit order) into each
        of its views and write the entities whose values changed online. A view not started
        yet, or re-registered with another definition, is (re)built from the lake instead
        (which holds ``rows`` already)."""
        started = time.perf_counter()
        if isinstance(rows, pa.RecordBatch):
            rows = pa.Table.from_batches([rows])
        stats = ApplyStats(source, rows=rows.num_rows)
        events: list[np.ndarray] = []
        views = self.views_for(source)
        names = {v.name for v in views}
        for name in [n for n, r in self._running.items()  # views no longer registered
                     if n not in names and r.view.streaming["source"] == source]:  # type: ignore[attr-defined]
            self._running.pop(name).state.close()
        for view in views:
            run = self._running.get(view.name)
            if run is None or run.key != _key(view):
                entities = self._start(source, view)
                run = self._running[view.name]
                stats.views.append(ViewApply(view.name, entities=entities, started=True,
                                             cells=run.state.cells))
                continue
            update = run.state.apply(rows, self._fetch(run))
            written = self._write(view, update.values)
            stats.views.append(ViewApply(
                view.name, update.applied, update.duplicates, update.replaced, update.skipped,
                update.too_late, written, cells=run.state.cells))
            events.append(update.event_us)
        stats.online_at_us = now_us()
        if events:
            stats.event_us = max(events, key=len)
        elif stats.views and rows.num_rows:  # rebuilt: every row with an event time
            stats.event_us = _event_us(rows, self._running[stats.views[0].view].spec)
        stats.seconds = time.perf_counter() - started
        return stats

    def state(self, view: str) -> WindowState | None:
        """The running state of a stream view (None before ``start``/``apply``)."""
        run = self._running.get(view)
        return run.state if run else None

    def close(self) -> None:
        for run in self._running.values():
            run.state.close()
        self._running.clear()
        if self._con is not None:
            self._con.close()
            self._con = None

    # -- internals ----------------------------------------------------------------------------

    def _source(self, name: str) -> StreamSource:
        if name not in self._sources:
            self._sources[name] = stream_source(self.project, name, "streaming features")
        return self._sources[name]

    def _start(self, source: str, view: FeatureView) -> int:
        old = self._running.pop(view.name, None)
        if old is not None:
            old.state.close()
        info: dict[str, Any] = view.streaming  # type: ignore[attr-defined]
        spec = WindowSpec.from_dict(info["spec"])
        lateness = parse_duration(self._source(source).allowed_lateness).total_seconds()
        state = WindowState(spec, lateness_seconds=lateness)
        run = _Running(view, _key(view), state, info["table"], spec)
        lake = self.project.lake
        if lake.latest(run.table) is not None:
            from tarmac.lake.sql import connect

            t = q(spec.timestamp)
            top = f"SELECT max({time_us(t)}) FROM {q(run.table)} WHERE {t} IS NOT NULL"
            con = connect(lake, top)
            try:
                clock = con.execute(top).fetchall()[0][0]
                if clock is not None:
                    since = spec.horizon_start_us(int(clock), state.lateness_us)
                    cols = ", ".join(q(c) for c in spec.source_columns)
                    reader = con.sql(
                        f"SELECT {cols} FROM {q(run.table)} WHERE {t} > "
                        f"make_timestamptz({since - 1}::BIGINT) ORDER BY {t}"
                    ).to_arrow_reader(READ_BATCH)
                    for batch in reader:
                        state.apply(batch, self._fetch(run), values=False)
            finally:
                con.close()
        self._running[view.name] = run
        return self._write(view, state.snapshot())

    def _fetch(self, run: _Running) -> Any:
        """Committed rows by event time, for the rare rebuild of tiles (conflicting copies)."""
        def fetch(lo: int, hi: int) -> pa.Table:
            from tarmac.lake.sql import query

            t = q(run.spec.timestamp)
            cols = ", ".join(q(c) for c in run.spec.source_columns)
            return query(self.project.lake,
                         f"SELECT {cols} FROM {q(run.table)} WHERE {t} > make_timestamptz("
                         f"{lo - 1}::BIGINT) AND {t} <= make_timestamptz({hi - 1}::BIGINT)")
        return fetch

    def _write(self, view: FeatureView, values: pa.Table) -> int:
        """Write each entity's values, stamped with the time they are valid from."""
        if not values.num_rows:
            return 0
        if self._con is None:
            import duckdb

            self._con = duckdb.connect()
        payload = "to_json(struct_pack(" + ", ".join(
            f"{q(f.name)} := {q(f.name)}" for f in view.features) + "))"
        self._con.register("__values", values)
        try:
            out = self._con.sql(f"SELECT {key_sql(view.join_keys)} AS k, {AS_OF} AS e, "
                                f"CAST({payload} AS BLOB) AS p FROM __values").to_arrow_table()
        finally:
            self._con.unregister("__values")
        online = self.project.features.online_store
        written = 0
        for start in range(0, out.num_rows, WRITE_BATCH):
            part = out.slice(start, WRITE_BATCH)
            written += online.write_batch(view.name, part.column(0).to_pylist(),
                                          part.column(1).to_pylist(), part.column(2).to_pylist())
        return written


def _key(view: FeatureView) -> str:
    return json.dumps(getattr(view, "streaming", None), sort_keys=True)


def _event_us(rows: pa.Table, spec: WindowSpec) -> np.ndarray:
    import pyarrow.compute as pc

    col = rows.column(spec.timestamp).drop_null()
    return np.asarray(pc.cast(pc.cast(col, pa.timestamp("us", tz="UTC"), safe=False),
                              pa.int64()), dtype=np.int64)


__all__ = ["ApplyStats", "StreamingFeatures", "ViewApply", "bind", "lake_table", "stream_source"]


def runner_hook(project: Project, sources: list[str]) -> Callable[[Any], ApplyStats | None] | None:
    """The hook ``tarmac stream run`` gives its runner so the stream views of ``sources`` stay
    online: each view is rebuilt from the lake first (a restart needs no manual step), then
    every committed micro-batch is applied (None when no source has a stream view).

    Example::

        hook = runner_hook(p, ["clicks"])
        StreamRunner(p, ["clicks"], hooks=[hook] if hook else []).run()
    """
    streaming = project.features.streaming
    active = [s for s in sources if streaming.views_for(s)]
    if not active:
        return None
    for source in active:
        streaming.start(source)

    def keep_online(batch: Any) -> ApplyStats | None:
        if batch.source not in active or batch.rows is None or not batch.rows.num_rows:
            return None
        return streaming.apply(batch.source, batch.rows)

    return keep_online
