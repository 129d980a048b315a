"""Point-in-time-correct retrieval: each entity row gets each feature as it was at that row's time.

For an entity row at time ``t`` a view contributes the row with the greatest event time ``<= t``
(and ``>= t - ttl``); rows sharing an event time are ordered by their ``created`` time, the later
winning. That is *event-time* semantics, the default. *Knowledge-time* semantics additionally
hides rows recorded after ``t`` (``created > t``): what the system actually knew at ``t``, so a
backfill or a late correction cannot leak into a training row that predates it.

Both are one DuckDB ``ASOF LEFT JOIN`` per view over a prepared copy of the view's rows:

* event time: the join key is the struct (event, created, tiebreak) — compared in that order —
  so the ASOF join itself picks the latest-created of rows sharing an event time, with no
  deduplication pass over the view (a hash of the values settles rows tied on both times);
* knowledge time: each row becomes visible at ``greatest(event, created)``; one row per (key,
  visible-at), and only rows that beat every row visible before them (the running maximum of
  event time) are kept. The ASOF join on visible-at then returns exactly the latest-known row.

DuckDB is told to always use its sort-based ASOF join: it estimates a streamed entity frame at one
row and would otherwise choose a nested loop (minutes instead of seconds at a million rows).

DuckDB streams the join, so results come out as Arrow record batches without the whole frame in
Python memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa

from tarmac.errors import UsageError
from tarmac.lake import quote_ident

Semantics = Literal["event", "knowledge"]
ROW = "__tarmac_row"
T = "__tarmac_t"
BATCH_ROWS = 131_072


@dataclass(frozen=True)
class ViewQuery:
    """One view's part of a retrieval: where its rows are and what to take from them."""

    name: str
    relation: str  # SQL naming the rows: a bound table/view name or "(SELECT ...)"
    keys: list[str]
    timestamp: str
    created: str | None
    ttl_us: int | None
    features: list[tuple[str, str, str]]  # (source column, output name, DuckDB type)
    fine: bool = False  # time columns finer than microseconds (rounded up)
    tiebreak: list[tuple[str, str]] | None = None  # (column, type) of ALL the view's features


q = quote_ident  # the lake's one identifier-quoting helper, short for the SQL built here


def check_entity_schema(schema: pa.Schema, timestamp: str, keys: Sequence[str],
                        what: str = "entity frame") -> None:
    """Refuse an entity frame that lacks a join key or its timestamp, or whose timestamps are
    naive: Tarmac does not guess a time zone (localize them, e.g. to UTC, first)."""
    names = schema.names
    internal = [n for n in names if n.startswith("__tarmac")]
    if internal:
        raise UsageError(f"the {what} has column(s) {', '.join(internal)}; names starting with "
                         "'__tarmac' are reserved for Tarmac's own bookkeeping",
                         hint="rename them")
    missing = [k for k in keys if k not in names]
    if missing:
        raise UsageError(f"the {what} has no column {', '.join(repr(m) for m in missing)}, "
                         f"needed to join the features (its columns: {', '.join(names)})",
                         hint="rename the key column to the entity's join key")
    if timestamp not in names:
        raise UsageError(f"the {what} has no timestamp column {timestamp!r} (its columns: "
                         f"{', '.join(names)})", hint="pass timestamp='your_column'")
    ts_type = schema.field(timestamp).type
    if not pa.types.is_timestamp(ts_type):
        raise UsageError(f"the {what}'s column {timestamp!r} holds {ts_type}, not timestamps",
                         hint="convert it, e.g. pd.to_datetime(df[col], utc=True)")
    if ts_type.tz is None:
        raise UsageError(
            f"the {what}'s column {timestamp!r} has naive timestamps (no time zone); Tarmac "
            "will not guess which zone they are in",
            hint="localize them: df[col] = df[col].dt.tz_localize('UTC') (or your zone)")


def with_row_index(batch: pa.RecordBatch, start: int) -> pa.RecordBatch:
    """The batch with a ``__tarmac_row`` column counting from ``start`` (keeps input order)."""
    index = pa.array(np.arange(start, start + batch.num_rows, dtype=np.int64))
    return batch.append_column(ROW, index)


def indexed(frame: pa.Table | pa.RecordBatchReader) -> pa.Table | pa.RecordBatchReader:
    """The entity frame with a running row index appended: a table stays a table (DuckDB
    then knows its size), a reader is streamed batch by batch."""
    if isinstance(frame, pa.Table):
        return frame.append_column(ROW, pa.array(np.arange(frame.num_rows, dtype=np.int64)))
    reader = frame
    schema = reader.schema.append(pa.field(ROW, pa.int64()))

    def batches() -> Iterator[pa.RecordBatch]:
        start = 0
        for batch in reader:
            yield with_row_index(batch, start)
            start += batch.num_rows

    return pa.RecordBatchReader.from_batches(schema, batches())


def time_sql(column: str, fine: bool) -> str:
    """A view's time column as TIMESTAMPTZ; ``fine`` (finer than microseconds, e.g. pandas'
    nanoseconds): rounded up, so nothing 1 ns in the future becomes visible."""
    if not fine:
        return f"CAST({column} AS TIMESTAMPTZ)"
    trunc = f"date_trunc('microseconds', {column})"
    return (f"CAST(CASE WHEN {trunc} < {column} THEN {trunc} + INTERVAL 1 MICROSECOND "
            f"ELSE {trunc} END AS TIMESTAMPTZ)")


def tiebreak_columns(view: Any) -> list[tuple[str, str]]:
    """(column, DuckDB type) of every feature a view declares, in order: the tiebreak input."""
    from tarmac.features.definitions import SQL_TYPES

    return [(f.name, SQL_TYPES[f.dtype]) for f in view.features]


def tiebreak_sql(columns: Sequence[tuple[str, str]]) -> str:
    """The last word among rows tied on key, event and created time: a hash of all the view's
    feature values (cast to their declared types), the same offline and at materialization, so
    the two agree on which of two fully tied rows wins."""
    return "hash(" + ", ".join(f"CAST({q(src)} AS {typ})" for src, typ in columns) + ")"


def _prepared(i: int, view: ViewQuery, semantics: Semantics) -> str:
    """SQL for the view's rows ready for the ASOF join: keys, event, visible-at, features."""
    keys = ", ".join(q(k) for k in view.keys)
    feats = ", ".join(f"CAST({q(src)} AS {typ}) AS __f{i}_{j}"
                      for j, (src, _out, typ) in enumerate(view.features))
    created = time_sql(q(view.created), view.fine) if view.created else "NULL::TIMESTAMPTZ"
    not_null = " AND ".join(f"{q(k)} IS NOT NULL" for k in [*view.keys, view.timestamp])
    tiebreak = tiebreak_sql(view.tiebreak or [(src, typ) for src, _o, typ in view.features])
    event = time_sql(q(view.timestamp), view.fine)
    base = (f"SELECT {keys}, {event} AS __ev, {created} AS __cr, {tiebreak} AS __h, {feats} "
            f"FROM {view.relation} AS __src WHERE {not_null}")
    if semantics == "event":
        # no dedup pass: the ASOF key orders rows by (event, created, tiebreak), and the entity
        # side's (t, +infinity, max) finds the last of the rows with event <= t
        # only what the join returns is carried: created and the hash live in the key alone
        carried = ", ".join([*(q(k) for k in view.keys), "__ev",
                             *(f"__f{i}_{j}" for j in range(len(view.features)))])
        return (f"SELECT {carried}, struct_pack(t := __ev, c := coalesce(__cr, "
                f"'-infinity'::TIMESTAMPTZ), h := __h) AS __vis FROM ({base})")
    if view.created is None:
        raise UsageError(f"feature view '{view.name}' declares no created timestamp, so what was "
                         "known when cannot be told apart from when it happened",
                         hint="declare created='<column>' on the view, or use the default "
                              "event-time semantics")
    visible = (f"SELECT *, greatest(__ev, coalesce(__cr, __ev)) AS __vis FROM ({base})")
    latest = (f"SELECT * FROM ({visible}) QUALIFY row_number() OVER (PARTITION BY {keys}, __vis "
              f"ORDER BY __ev DESC, __cr DESC NULLS LAST, __h DESC) = 1")
    return (f"SELECT * FROM ({latest}) QUALIFY __ev >= coalesce(max(__ev) OVER (PARTITION BY "
            f"{keys} ORDER BY __vis ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), __ev)")


def retrieval_sql(entity: str, entity_columns: Sequence[str], timestamp: str,
                  views: Sequence[ViewQuery], semantics: Semantics = "event", *,
                  fine: bool = True) -> str:
    """The query joining every view onto the entity relation (which carries ``__tarmac_row``).

    Output: the entity columns in their order, then each view's features, in entity-row order.
    ``fine``: the entity times may be finer than microseconds (they are rounded down).
    """
    if semantics not in ("event", "knowledge"):
        raise UsageError(f"unknown semantics {semantics!r}: expected 'event' (what happened by "
                         "t) or 'knowledge' (what was recorded by t)")
    t = f"date_trunc('microseconds', {q(timestamp)})" if fine else q(timestamp)
    probe = ("CASE WHEN __tarmac_t IS NOT NULL THEN struct_pack(t := __tarmac_t, "
             "c := 'infinity'::TIMESTAMPTZ, h := 18446744073709551615::UBIGINT) END")
    ctes = [f"__e0 AS (SELECT *, CAST({t} AS TIMESTAMPTZ) AS {T} FROM {entity})",
            f"__e AS (SELECT *, {probe} AS __tarmac_k FROM __e0)"]
    joins, outputs = [], [f"__e.{q(c)}" for c in entity_columns]
    for i, view in enumerate(views):
        ctes.append(f"__v{i} AS ({_prepared(i, view, semantics)})")
        on = " AND ".join(f"__e.{q(k)} = __v{i}.{q(k)}" for k in view.keys)
        probe_col = "__tarmac_k" if semantics == "event" else T
        joins.append(f"ASOF LEFT JOIN __v{i} ON {on} AND __e.{probe_col} >= __v{i}.__vis")
        fresh = (f"__v{i}.__ev >= __e.{T} - to_microseconds({view.ttl_us}::BIGINT)"
                 if view.ttl_us is not None else None)
        for j, (_src, out, _typ) in enumerate(view.features):
            col = f"__v{i}.__f{i}_{j}"
            outputs.append(f"CASE WHEN {fresh} THEN {col} END AS {q(out)}" if fresh
                           else f"{col} AS {q(out)}")
    return (f"WITH {', '.join(ctes)} SELECT {', '.join(outputs)} FROM __e {' '.join(joins)} "
            f"ORDER BY __e.{ROW}")


def fine_times(schema: pa.Schema, *columns: str | None) -> bool:
    """Whether any of these columns holds times finer than a microsecond."""
    for name in columns:
        if name is None or name not in schema.names:
            continue
        kind = schema.field(name).type
        if pa.types.is_timestamp(kind) and kind.unit == "ns":
            return True
    return False


def prepare_connection(con: duckdb.DuckDBPyConnection) -> None:
    """Session settings the retrieval needs: UTC, and always the sort-based ASOF join (DuckDB
    estimates a streamed entity frame at one row and would otherwise pick a nested loop)."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET asof_loop_join_threshold = 0")


def point_in_time(entities: pa.Table, views: Sequence[tuple[pa.Table, ViewQuery]], *,
                  timestamp: str, semantics: Semantics = "event") -> pa.Table:
    """Join features onto an Arrow entity frame from in-memory view tables (the offline engine
    without the lake: what the property tests compare against a brute-force reference)."""
    keys = sorted({k for _, v in views for k in v.keys})
    check_entity_schema(entities.schema, timestamp, keys)
    con = duckdb.connect()
    try:
        prepare_connection(con)
        con.register("__entity", indexed(entities))
        bound = []
        for i, (table, view) in enumerate(views):
            con.register(f"__view{i}", table)
            bound.append(replace(view, relation=f"__view{i}",
                                 fine=fine_times(table.schema, view.timestamp, view.created)))
        sql = retrieval_sql("__entity", entities.schema.names, timestamp, bound, semantics,
                            fine=fine_times(entities.schema, timestamp))
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()
