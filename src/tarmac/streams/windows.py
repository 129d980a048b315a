"""Windowed aggregates over an event stream: computed incrementally in tiles, and the very same
definition as one batch SQL query, so the two can be compared value for value.

A ``WindowSpec`` says what to compute: per entity (the ``keys`` columns), aggregates (count,
sum, mean, min, max, last, exact distinct count) over windows of event time (the ``timestamp``
column), sliding or tumbling, all multiples of one **tile**. Time is counted in UTC
microseconds from the epoch (finer times are rounded up to the next microsecond, as the
point-in-time join does); tiles are aligned to the epoch: tile ``s`` holds the events with
``s * tile <= t < (s + 1) * tile``.

**The value at time T** of a window of one entity aggregates the entity's events whose event
time ``t`` satisfies ``start(T) <= t <= T``:

* sliding window of ``n`` tiles: ``start(T) = (floor(T / tile) - n + 1) * tile`` - the tile
  holding ``T`` up to ``T`` itself, and the ``n - 1`` whole tiles before it (it hops by one
  tile; its length is between ``(n - 1)`` tiles and ``n`` tiles);
* tumbling window of length ``w``: ``start(T) = floor(T / w) * w`` - the epoch-aligned period
  holding ``T``, up to ``T``.

count and distinct count are 0, sum is 0, and mean, min, max and last are null over a window
with no event (or no non-null value). Nulls in a column are skipped (SQL semantics). ``last`` is
the value of the event with the greatest event time; among events sharing it, the greatest
value.

**Evaluation times.** An entity's values change only at its own event times and at the
*boundaries* where a tile leaves a window (``(s + n) * tile`` for a sliding window,
``(floor(s * tile / w) + 1) * w`` for a tumbling one, for each tile ``s`` holding an event).
The batch query (``batch_sql``) returns one row per entity and evaluation time, boundaries
included up to the *clock*: the newest event time in the table. Time moves with the events,
never with the wall clock: past the clock nothing is evaluated.

**Duplicates.** With a primary key, rows sharing (primary key, entity, event time) are one
event: among them the row with the smallest content hash (DuckDB ``hash`` of the aggregated
columns) counts and the others do not. Identical copies - a producer sending an event twice -
therefore count once whatever their order; conflicting copies resolve the same way in batch and
in streaming. Rows with a null key or a null event time are not counted; rows with a null
primary-key part are each their own event; without a primary key every row counts.

``WindowState`` computes the same thing incrementally: one partial aggregate per (entity, tile)
(event count, newest event time, per column sum, non-null count, min, max, last as a
(time, value) pair, and the set of distinct values), merged into the state with one DuckDB
group-by per micro-batch - never a Python loop per event, never a rescan of a window. After each
batch it answers the current values (at its clock, the newest event time it has seen) of the
entities whose values changed: those with new events and those a tile boundary passed. The
state forgets tiles older than the largest window plus the allowed lateness plus one tile, and
the duplicate index forgets events older than the lateness plus one tile:
memory is bounded by (entities x tiles of the largest window) and by the events of the
lateness horizon. A row older than that (which the stream sink quarantines as too late) is
counted and skipped.

When a new copy of an event beats the counted one (a conflicting duplicate, which identical
copies never are), a partial cannot be "un-merged": the affected (entity, tile) partials are
rebuilt from the committed rows of their tiles, read back through the caller's ``fetch``.

Example::

    spec = WindowSpec(keys=("user",), timestamp="ts", primary_key=("id",),
                      aggregates=(Aggregate("count", None, "count", "BIGINT"),
                                  Aggregate("sum", "amount", "amount_sum", "DOUBLE")),
                      windows=(Window(300), Window(3600)), tile_seconds=300)
    state = WindowState(spec, lateness_seconds=600)
    update = state.apply(arrow_rows)     # update.values: user, __as_of, count_5m, ... per entity
    duckdb.sql(batch_sql(spec, "events"))  # the same values at every evaluation time
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from tarmac.lake import quote_ident as q

if TYPE_CHECKING:
    import duckdb

FUNCTIONS = ("count", "sum", "mean", "min", "max", "last", "distinct")
AS_OF = "__as_of"  # the values' time (UTC microseconds) in what WindowState answers
MAX_TILES = 10_000  # tiles in the largest window: more is refused (memory and query size)
_SECOND = 1_000_000

#: rows with event time in [lo_us, hi_us) as committed (the lake table's schema)
Fetch = Callable[[int, int], pa.Table]


@dataclass(frozen=True)
class Aggregate:
    """One aggregate: ``fn`` (one of ``FUNCTIONS``) of ``column`` (None for count), output as
    features named ``{name}_{window}`` of the DuckDB type ``sql_type``."""

    fn: str
    column: str | None
    name: str
    sql_type: str

    def __post_init__(self) -> None:
        if self.fn not in FUNCTIONS:
            raise ValueError(f"unknown aggregate {self.fn!r}; expected one of {FUNCTIONS}")
        if (self.column is None) != (self.fn == "count"):
            raise ValueError(f"aggregate {self.fn} takes "
                             + ("no column" if self.fn == "count" else "a column"))


@dataclass(frozen=True)
class Window:
    """A window of ``seconds``: sliding (hopping by the tile) or tumbling (epoch-aligned)."""

    seconds: int
    tumbling: bool = False

    @property
    def name(self) -> str:
        """How feature names spell it: ``5m``, ``1h``, ``1d``, ``1d_tumbling``."""
        return window_text(self.seconds) + ("_tumbling" if self.tumbling else "")

    @property
    def us(self) -> int:
        return self.seconds * _SECOND


def window_text(seconds: int) -> str:
    """``seconds`` in the largest unit that divides it: ``300`` -> ``5m``, ``5400`` -> ``90m``."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def default_tile(windows: Iterable[int]) -> int:
    """The greatest common divisor of the window lengths (seconds): the largest tile they all
    are whole multiples of."""
    return math.gcd(*windows)


@dataclass(frozen=True)
class WindowSpec:
    """What to compute (see the module's docstring for the exact semantics)."""

    keys: tuple[str, ...]
    timestamp: str
    aggregates: tuple[Aggregate, ...]
    windows: tuple[Window, ...]
    tile_seconds: int
    primary_key: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("keys", "aggregates", "windows", "primary_key"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.keys or not self.aggregates or not self.windows:
            raise ValueError("a window spec needs keys, aggregates and windows")
        if self.tile_seconds <= 0:
            raise ValueError(f"tile must be positive, got {self.tile_seconds} s")
        for w in self.windows:
            if w.seconds <= 0 or w.seconds % self.tile_seconds:
                raise ValueError(f"window {w.seconds} s is not a positive multiple of the tile "
                                 f"({self.tile_seconds} s)")
        if self.max_tiles > MAX_TILES:
            raise ValueError(f"the largest window spans {self.max_tiles:,} tiles (at most "
                             f"{MAX_TILES:,})")
        names = [f for f, _a, _w in self.features]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"feature names repeat: {', '.join(dup)}")

    @property
    def tile_us(self) -> int:
        return self.tile_seconds * _SECOND

    @property
    def max_tiles(self) -> int:
        return max(w.seconds for w in self.windows) // self.tile_seconds

    @property
    def features(self) -> list[tuple[str, Aggregate, Window]]:
        """(feature name, aggregate, window), aggregates outer, windows inner."""
        return [(f"{a.name}_{w.name}", a, w) for a in self.aggregates for w in self.windows]

    @property
    def columns(self) -> list[str]:
        """The value columns the aggregates read, in order of first use."""
        return list(dict.fromkeys(a.column for a in self.aggregates if a.column is not None))

    @property
    def source_columns(self) -> list[str]:
        """Every column read from the rows: keys, primary key, values, event time."""
        return list(dict.fromkeys([*self.keys, *self.primary_key, *self.columns,
                                   self.timestamp]))

    def to_dict(self) -> dict[str, Any]:
        return {"keys": list(self.keys), "timestamp": self.timestamp,
                "primary_key": list(self.primary_key), "tile_seconds": self.tile_seconds,
                "windows": [{"seconds": w.seconds, "tumbling": w.tumbling}
                            for w in self.windows],
                "aggregates": [{"fn": a.fn, "column": a.column, "name": a.name,
                                "sql_type": a.sql_type} for a in self.aggregates]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowSpec:
        return cls(keys=tuple(d["keys"]), timestamp=d["timestamp"],
                   primary_key=tuple(d.get("primary_key") or ()),
                   tile_seconds=int(d["tile_seconds"]),
                   windows=tuple(Window(int(w["seconds"]), bool(w["tumbling"]))
                                 for w in d["windows"]),
                   aggregates=tuple(Aggregate(a["fn"], a["column"], a["name"], a["sql_type"])
                                    for a in d["aggregates"]))

    def horizon_start_us(self, clock_us: int, lateness_us: int) -> int:
        """The first event time a state at ``clock_us`` keeps: rows from here on rebuild it."""
        return _cutoff_tile(self, clock_us, lateness_us) * self.tile_us


# -- SQL pieces shared by the batch query and the incremental state ---------------------------


def _fdiv(x: str, d: int) -> str:
    """floor(x / d) for integers of any sign (DuckDB's ``//`` truncates towards zero)."""
    return f"((({x}) - (((({x}) % {d}) + {d}) % {d})) // {d})"


def _mod(x: str, d: int) -> str:
    """x mod d in [0, d)."""
    return f"(((({x}) % {d}) + {d}) % {d})"


def time_us(column: str) -> str:
    """A time column as UTC microseconds, finer times rounded up (like the point-in-time join,
    so nothing becomes visible before it happened)."""
    return f"(-{_fdiv(f'-epoch_ns({column})', 1000)})"


def _pyfdiv(x: int, d: int) -> int:
    return x // d  # Python's // is floor division


def _boundary_tiles(w: Window, tile_us: int, s: str) -> str:
    """SQL: the boundary (in tiles) where tile ``s`` leaves window ``w``."""
    n = w.us // tile_us
    if not w.tumbling:
        return f"({s} + {n})"
    return f"(({_fdiv(s, n)} + 1) * {n})"


def _cutoff_tile(spec: WindowSpec, clock_us: int, lateness_us: int) -> int:
    """The oldest tile a state at ``clock_us`` keeps: every boundary of an older tile lies more
    than the lateness (plus one tile) before the clock, so no acceptable row can change it."""
    lat_tiles = -(-lateness_us // spec.tile_us)
    return _pyfdiv(clock_us, spec.tile_us) - spec.max_tiles - lat_tiles - 1


def _content_hash(spec: WindowSpec) -> str:
    """Which of the copies of one event counts: the smallest hash of the values the aggregates
    read, the same expression in batch and streaming (``hash(NULL)`` when they read none)."""
    cols = spec.columns
    return "hash(" + (", ".join(q(c) for c in cols) if cols else "NULL") + ")"


def _identity(spec: WindowSpec) -> list[str]:
    """The columns naming one event: primary key, entity keys, event time."""
    return [*(q(c) for c in dict.fromkeys([*spec.primary_key, *spec.keys])), "__t"]


def _dedup_qualify(spec: WindowSpec) -> str:
    pk = [q(p) for p in spec.primary_key]
    if not pk:
        return ""
    nulls = " OR ".join(f"{p} IS NULL" for p in pk)
    return (f" QUALIFY {nulls} OR row_number() OVER (PARTITION BY {', '.join(_identity(spec))} "
            "ORDER BY __h) = 1")


def _normalized(spec: WindowSpec, relation: str) -> str:
    """Rows with a key and an event time: source columns, ``__t`` (us), ``__s`` (tile),
    ``__h`` (content hash)."""
    cols = ", ".join(q(c) for c in spec.source_columns if c != spec.timestamp)
    keys_ok = " AND ".join(f"{q(k)} IS NOT NULL" for k in spec.keys)
    inner = (f"SELECT {cols}, {time_us(q(spec.timestamp))} AS __t FROM {relation} "
             f"WHERE {q(spec.timestamp)} IS NOT NULL AND {keys_ok}")
    return (f"SELECT *, {_fdiv('__t', spec.tile_us)} AS __s, {_content_hash(spec)} AS __h "
            f"FROM ({inner})")


# -- batch ------------------------------------------------------------------------------------


def batch_sql(spec: WindowSpec, relation: str) -> str:
    """DuckDB SQL computing the windows over all the rows of ``relation`` (a table name or a
    parenthesised query): one row per (entity, evaluation time) with the keys, the evaluation
    time as TIMESTAMPTZ in the ``timestamp`` column, and one column per feature."""
    keys = ", ".join(q(k) for k in spec.keys)
    cols = spec.columns
    tile = spec.tile_us
    vals = "".join(f", {q(c)}" for c in cols)
    nulls = "".join(f", NULL AS {q(c)}" for c in cols)
    bounds = ", ".join(f"{_boundary_tiles(w, tile, '__s')} * {tile}" for w in spec.windows)
    ctes = [
        f"__src AS (SELECT {time_us(q(spec.timestamp))} AS __t FROM {relation} "
        f"WHERE {q(spec.timestamp)} IS NOT NULL)",
        "__clock AS (SELECT max(__t) AS __c FROM __src)",
        f"__ev AS (SELECT * FROM ({_normalized(spec, relation)}){_dedup_qualify(spec)})",
        f"__tiles AS (SELECT DISTINCT {keys}, __s FROM __ev)",
        f"__pts AS (SELECT {keys}, __t FROM __ev UNION SELECT {keys}, __b FROM "
        f"(SELECT {keys}, unnest([{bounds}]) AS __b FROM __tiles), __clock WHERE __b <= __c)",
        f"__all AS (SELECT {keys}, __t, 1 AS __e{vals} FROM __ev UNION ALL "
        f"SELECT {keys}, __t, 0 AS __e{nulls} FROM __pts)",
    ]
    windows = []
    for j, w in enumerate(spec.windows):
        if w.tumbling:
            offset = _mod("__t", w.us)
        else:
            offset = f"({_mod('__t', tile)} + {(w.us // tile - 1) * tile})"
        windows.append(f"__w{j} AS (PARTITION BY {keys} ORDER BY __t RANGE BETWEEN {offset} "
                       "PRECEDING AND CURRENT ROW)")
    index = {w: j for j, w in enumerate(spec.windows)}
    feats = []
    for name, a, w in spec.features:
        over = f"OVER __w{index[w]}"
        c = q(a.column) if a.column else ""
        expr = {
            "count": f"count(*) FILTER (WHERE __e = 1) {over}",
            "sum": f"coalesce(sum({c}) {over}, 0)",
            "mean": f"sum({c}) {over} / nullif(count({c}) {over}, 0)",
            "min": f"min({c}) {over}",
            "max": f"max({c}) {over}",
            "last": f"struct_extract(max(CASE WHEN {c} IS NOT NULL THEN "
                    f"struct_pack(t := __t, v := {c}) END) {over}, 'v')",
            "distinct": f"count(DISTINCT {c}) {over}",
        }[a.fn]
        feats.append(f"CAST({expr} AS {a.sql_type}) AS {q(name)}")
    return (f"WITH {', '.join(ctes)} SELECT {keys}, make_timestamptz(__t) AS "
            f"{q(spec.timestamp)}, {', '.join(feats)} FROM __all WINDOW {', '.join(windows)} "
            "QUALIFY __e = 0")


# -- streaming --------------------------------------------------------------------------------


@dataclass
class WindowUpdate:
    """What one ``WindowState.apply`` did, and the values it changed.

    ``values``: one row per entity whose values changed - the key columns, ``__as_of`` (UTC
    microseconds: the latest evaluation time at or before the clock, i.e. the entity's newest
    event time or a later tile boundary) and one column per feature, valid at ``clock_us``.
    """

    values: pa.Table
    rows: int = 0  # rows received
    applied: int = 0  # events counted (new, or replacing a conflicting copy)
    duplicates: int = 0  # copies of an event already counted
    replaced: int = 0  # of applied: conflicting copies that beat the counted one
    skipped: int = 0  # rows without a key or an event time
    too_late: int = 0  # rows older than what the state keeps (not applied)
    clock_us: int | None = None
    event_us: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # applied rows


class WindowState:
    """The incremental side of a ``WindowSpec``: partial aggregates per (entity, tile) in a
    private in-memory DuckDB. Not thread-safe: one caller at a time."""

    def __init__(self, spec: WindowSpec, *, lateness_seconds: float = 0.0) -> None:
        self.spec = spec
        self.lateness_us = int(round(lateness_seconds * _SECOND))
        self.clock_us: int | None = None
        import duckdb  # here: declaring windows (definitions.py) does not load DuckDB

        self._con: duckdb.DuckDBPyConnection = duckdb.connect()
        self._con.execute("SET TimeZone = 'UTC'")
        self._ready = False
        self._empty: pa.Table | None = None
        self._live = 0  # cells after the last compaction
        self._churn = 0  # rows rewritten since the tables were last compacted
        keys = spec.keys
        cols = spec.columns
        fns: dict[str, set[str]] = {c: set() for c in cols}
        for a in spec.aggregates:
            if a.column is not None:
                fns[a.column].add(a.fn)
        self._fns = fns
        self._idx = {c: i for i, c in enumerate(cols)}
        self._distinct = [c for c in cols if "distinct" in fns[c]]
        self._k = ", ".join(q(k) for k in keys)
        self._on = lambda a, b: " AND ".join(f"{a}.{q(k)} = {b}.{q(k)}" for k in keys)

    # -- public -------------------------------------------------------------------------------

    @property
    def cells(self) -> int:
        """(entity, tile) partials held."""
        return self._count("__cells")

    @property
    def entities(self) -> int:
        """Entities with at least one tile held."""
        if not self._ready:
            return 0
        return int(self._one(f"SELECT count(*) FROM (SELECT DISTINCT {self._k} FROM __cells)"))

    def horizon_start_us(self) -> int | None:
        """The first event time the state needs to be rebuilt (None before any row)."""
        if self.clock_us is None:
            return None
        return self.spec.horizon_start_us(self.clock_us, self.lateness_us)

    def apply(self, rows: pa.Table | pa.RecordBatch, fetch: Fetch | None = None, *,
              values: bool = True) -> WindowUpdate:
        """Merge a micro-batch of committed rows (in commit order after the previous ones).
        ``fetch`` reads committed rows back by event time; it is only called when a conflicting
        duplicate forces a rebuild of some tiles (without it, that case raises ValueError).
        ``values=False`` skips computing the changed values (a rebuild)."""
        if isinstance(rows, pa.RecordBatch):
            rows = pa.Table.from_batches([rows])
        missing = [c for c in self.spec.source_columns if c not in rows.column_names]
        if missing:
            raise ValueError(f"the rows lack column(s) {', '.join(missing)} (they have: "
                             f"{', '.join(rows.column_names)})")
        con, spec = self._con, self.spec
        con.register("__in", rows.select(spec.source_columns))
        try:
            top = self._one(f"SELECT max({time_us(q(spec.timestamp))}) FROM __in "
                            f"WHERE {q(spec.timestamp)} IS NOT NULL")
            valid = self._rows(f"CREATE OR REPLACE TEMP TABLE __b AS "
                               f"{_normalized(spec, '__in')}")
        finally:
            con.unregister("__in")
        update = WindowUpdate(self._empty_values(), rows=rows.num_rows,
                              skipped=rows.num_rows - valid)
        if not self._ready:
            self._create_tables()
        old = self.clock_us
        if old is not None and valid:
            update.too_late = self._drop_too_late(old)
            valid -= update.too_late
        affected = False
        if spec.primary_key:
            affected = self._dedup(update, valid)
        else:
            con.execute("CREATE OR REPLACE TEMP VIEW __new AS SELECT * FROM __b")
            update.applied = valid
        update.event_us = np.asarray(con.execute("SELECT __t FROM __new").fetchnumpy()["__t"],
                                     dtype=np.int64)
        if affected:
            if fetch is None:
                raise ValueError("a conflicting copy of an already counted event arrived; "
                                 "rebuilding its tiles needs fetch")
            self._rebuild(fetch)
        if update.applied:
            self._merge()
        if top is not None and (old is None or top > old):
            self.clock_us = int(top)
        update.clock_us = self.clock_us
        if values and self.clock_us is not None:
            self._touched(old)
            update.values = self._values(touched=True)
        self._evict(old)
        return update

    def snapshot(self) -> pa.Table:
        """The current values of every entity the state holds (as ``WindowUpdate.values``)."""
        if not self._ready or self.clock_us is None:
            return self._empty_values()
        return self._values(touched=False)

    def close(self) -> None:
        self._con.close()

    # -- internals ----------------------------------------------------------------------------

    def _one(self, sql: str) -> Any:
        rows = self._con.execute(sql).fetchall()
        return rows[0][0] if rows else None

    def _rows(self, sql: str) -> int:
        """Run a statement that creates, inserts or deletes rows; how many it did."""
        return int(self._con.execute(sql).fetchall()[0][0])

    def _count(self, table: str) -> int:
        if table != "__b" and not self._ready:
            return 0
        return int(self._one(f"SELECT count(*) FROM {table}"))

    def _partials(self, relation: str) -> str:
        """SQL: the (entity, tile) partials of the rows of ``relation`` (normalized rows)."""
        parts = ["count(*) AS __n", "max(__t) AS __tmax"]
        for c, fns in self._fns.items():
            i, col = self._idx[c], q(c)
            if fns & {"sum", "mean"}:
                parts.append(f"sum({col}) AS __sum{i}")
            if "mean" in fns:
                parts.append(f"count({col}) AS __cnt{i}")
            if "min" in fns:
                parts.append(f"min({col}) AS __min{i}")
            if "max" in fns:
                parts.append(f"max({col}) AS __max{i}")
            if "last" in fns:
                parts.append(f"max(CASE WHEN {col} IS NOT NULL THEN struct_pack(t := __t, "
                             f"v := {col}) END) AS __last{i}")
        return f"SELECT {self._k}, __s, {', '.join(parts)} FROM {relation} GROUP BY ALL"

    def _create_tables(self) -> None:
        con, k = self._con, self._k
        con.execute(f"CREATE TABLE __cells AS {self._partials('__b')} LIMIT 0")
        pk = "".join(f", {q(p)}" for p in self.spec.primary_key if p not in self.spec.keys)
        con.execute(f"CREATE TABLE __seen AS SELECT {k}{pk}, __t, __s, __h FROM __b LIMIT 0")
        for c in self._distinct:
            con.execute(f"CREATE TABLE __dv{self._idx[c]} AS SELECT {k}, __s, {q(c)} AS __v "
                        "FROM __b LIMIT 0")
        con.execute(f"CREATE TEMP TABLE __aff AS SELECT {k}, __s FROM __b LIMIT 0")
        self._ready = True

    def _drop_too_late(self, clock: int) -> int:
        """Remove rows the state can no longer place exactly: older than the duplicate index
        (with a primary key) or than the tiles held."""
        spec = self.spec
        if spec.primary_key:
            floor = clock - self.lateness_us - spec.tile_us
            cond = f"__t < {floor}"
        else:
            cond = f"__s < {_cutoff_tile(spec, clock, self.lateness_us)}"
        return self._rows(f"DELETE FROM __b WHERE {cond}")

    def _dedup(self, update: WindowUpdate, valid: int) -> bool:
        """Keep in ``__new`` the rows that count: the batch's winner per event (primary key,
        entity, time), if the index has no copy of it or a copy with a larger hash (then that
        (entity, tile) is rebuilt: ``__aff``). Returns whether any tile must be rebuilt."""
        con, spec, k = self._con, self.spec, self._k
        ident = _identity(spec)
        pk_extra = [q(p) for p in spec.primary_key if p not in spec.keys]
        con.execute(f"CREATE OR REPLACE TEMP TABLE __w AS SELECT * FROM __b"
                    f"{_dedup_qualify(spec)}")
        on = " AND ".join(f"w.{c} = s.{c}" for c in ident)
        con.execute(f"CREATE OR REPLACE TEMP TABLE __j AS SELECT w.*, s.__h AS __oh FROM __w w "
                    f"LEFT JOIN (SELECT * FROM __seen WHERE __t BETWEEN (SELECT min(__t) FROM "
                    f"__w) AND (SELECT max(__t) FROM __w)) s ON {on}")
        replace = "__oh IS NOT NULL AND __h < __oh"
        update.applied = self._rows("CREATE OR REPLACE TEMP TABLE __new AS SELECT * EXCLUDE "
                                    f"(__oh) FROM __j WHERE __oh IS NULL OR {replace}")
        update.duplicates = valid - update.applied
        not_null = " AND ".join(f"{q(p)} IS NOT NULL" for p in spec.primary_key)
        cols = ", ".join([k, *pk_extra, "__t", "__s", "__h"])
        con.execute(f"INSERT INTO __seen SELECT {cols} FROM __j WHERE __oh IS NULL AND "
                    f"{not_null}")
        update.replaced = self._rows(f"CREATE OR REPLACE TEMP TABLE __r AS SELECT * FROM __j "
                                     f"WHERE {replace}")
        if not update.replaced:
            con.execute("DELETE FROM __aff")
            return False
        con.execute(f"CREATE OR REPLACE TEMP TABLE __aff AS SELECT DISTINCT {k}, __s FROM __r")
        on_seen = " AND ".join(f"__seen.{c} = j.{c}" for c in ident)
        con.execute(f"UPDATE __seen SET __h = j.__h FROM __r j WHERE {on_seen}")
        return True

    def _rebuild(self, fetch: Fetch) -> None:
        """Recompute the partials of the (entity, tile)s in ``__aff`` from the committed rows
        of their tiles (deduplicated by the batch rule), replacing what the state held."""
        con, spec, k = self._con, self.spec, self._k
        s_lo, s_hi = con.execute("SELECT min(__s), max(__s) FROM __aff").fetchall()[0]
        rows = fetch(int(s_lo) * spec.tile_us, (int(s_hi) + 1) * spec.tile_us)
        con.register("__fetched", rows.select(spec.source_columns))
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE __fw AS SELECT * FROM "
                        f"({_normalized(spec, '__fetched')}) WHERE __s IN (SELECT __s FROM "
                        f"__aff){_dedup_qualify(spec)}")
        finally:
            con.unregister("__fetched")
        on = self._on("f", "a")
        con.execute(f"CREATE OR REPLACE TEMP TABLE __fa AS SELECT f.* FROM __fw f SEMI JOIN "
                    f"__aff a ON {on} AND f.__s = a.__s")
        for table in ["__cells", *(f"__dv{self._idx[c]}" for c in self._distinct)]:
            con.execute(f"DELETE FROM {table} t USING __aff a WHERE {self._on('t', 'a')} AND "
                        "t.__s = a.__s")
        con.execute(f"INSERT INTO __cells BY NAME {self._partials('__fa')}")
        for c in self._distinct:
            con.execute(f"INSERT INTO __dv{self._idx[c]} SELECT DISTINCT {k}, __s, {q(c)} "
                        f"FROM __fa WHERE {q(c)} IS NOT NULL")
        # rows of this batch in rebuilt tiles are already in the rebuild
        con.execute(f"DELETE FROM __new n USING __aff a WHERE {self._on('n', 'a')} AND "
                    "n.__s = a.__s")

    def _merge(self) -> None:
        """Merge the partials of ``__new`` into the state (cells and distinct sets)."""
        con, k = self._con, self._k
        parts = self._rows(f"CREATE OR REPLACE TEMP TABLE __p AS {self._partials('__new')}")
        if not parts:
            return
        tiles = "BETWEEN (SELECT min(__s) FROM __p) AND (SELECT max(__s) FROM __p)"
        merged = ["coalesce(o.__n, 0) + p.__n AS __n", "greatest(o.__tmax, p.__tmax) AS __tmax"]
        for c, fns in self._fns.items():
            i = self._idx[c]
            if fns & {"sum", "mean"}:
                merged.append(f"coalesce(o.__sum{i} + p.__sum{i}, o.__sum{i}, p.__sum{i}) "
                              f"AS __sum{i}")
            if "mean" in fns:
                merged.append(f"coalesce(o.__cnt{i}, 0) + p.__cnt{i} AS __cnt{i}")
            for fn, agg in (("min", "least"), ("max", "greatest"), ("last", "greatest")):
                if fn in fns:
                    merged.append(f"{agg}(o.__{fn}{i}, p.__{fn}{i}) AS __{fn}{i}")
        keys = ", ".join(f"p.{q(key)}" for key in self.spec.keys)
        con.execute(f"CREATE OR REPLACE TEMP TABLE __m AS SELECT {keys}, p.__s, "
                    f"{', '.join(merged)} FROM __p p LEFT JOIN (SELECT * FROM __cells WHERE "
                    f"__s {tiles}) o ON {self._on('p', 'o')} AND p.__s = o.__s")
        con.execute(f"DELETE FROM __cells c USING __p p WHERE {self._on('c', 'p')} AND "
                    "c.__s = p.__s")
        con.execute("INSERT INTO __cells BY NAME SELECT * FROM __m")
        self._churn += parts
        for c in self._distinct:
            table = f"__dv{self._idx[c]}"
            con.execute(f"INSERT INTO {table} SELECT DISTINCT {k}, __s, {q(c)} FROM __new "
                        f"WHERE {q(c)} IS NOT NULL EXCEPT SELECT {k}, __s, __v FROM {table} "
                        f"WHERE __s {tiles}")

    def _touched(self, old: int | None) -> None:
        """``__touch``: entities with new or rebuilt partials, and those holding a tile that
        left a window between the previous clock and this one."""
        con, spec, k = self._con, self.spec, self._k
        parts = [f"SELECT DISTINCT {k} FROM __new", f"SELECT {k} FROM __aff"]
        assert self.clock_us is not None
        if old is not None:
            tile = spec.tile_us
            a, b = _pyfdiv(old, tile) + 1, _pyfdiv(self.clock_us, tile)
            if a <= b:
                crossed = " OR ".join(f"{_boundary_tiles(w, tile, '__s')} BETWEEN {a} AND {b}"
                                      for w in spec.windows)
                parts.append(f"SELECT DISTINCT {k} FROM __cells WHERE {crossed}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE __touch AS {' UNION '.join(parts)}")

    def _window_start_tile(self, w: Window) -> int:
        assert self.clock_us is not None
        tile = self.spec.tile_us
        if w.tumbling:
            return _pyfdiv(self.clock_us, w.us) * (w.us // tile)
        return _pyfdiv(self.clock_us, tile) - w.us // tile + 1

    def _values(self, *, touched: bool) -> pa.Table:
        """Each (touched) entity's values at the clock, and its latest evaluation time."""
        spec, k, clock = self.spec, self._k, self.clock_us
        assert clock is not None
        tile = spec.tile_us
        cands = ", ".join(f"CASE WHEN {_boundary_tiles(w, tile, '__s')} * {tile} <= {clock} "
                          f"THEN {_boundary_tiles(w, tile, '__s')} * {tile} END"
                          for w in spec.windows)
        cond = {w: f"__s >= {self._window_start_tile(w)}" for w in spec.windows}
        join = f" SEMI JOIN __touch t ON {self._on('c', 't')}" if touched else ""
        main = [f"max(greatest(__tmax, {cands})) AS {AS_OF}"]
        dv: dict[str, list[str]] = {}
        outs = []
        for name, a, w in spec.features:
            f = f"FILTER (WHERE {cond[w]})"
            i = self._idx.get(a.column or "", -1)
            expr = {
                "count": f"coalesce(sum(__n) {f}, 0)",
                "sum": f"coalesce(sum(__sum{i}) {f}, 0)",
                "mean": f"sum(__sum{i}) {f} / nullif(sum(__cnt{i}) {f}, 0)",
                "min": f"min(__min{i}) {f}",
                "max": f"max(__max{i}) {f}",
                "last": f"struct_extract(max(__last{i}) {f}, 'v')",
                "distinct": "",
            }[a.fn]
            if a.fn == "distinct":
                dv.setdefault(a.column or "", []).append(
                    f"count(DISTINCT __v) {f} AS {q(name)}")
                outs.append(f"CAST(coalesce({q(name)}, 0) AS {a.sql_type}) AS {q(name)}")
            else:
                main.append(f"{expr} AS {q(name)}")
                outs.append(f"CAST({q(name)} AS {a.sql_type}) AS {q(name)}")
        sql = f"SELECT {k}, {', '.join(main)} FROM __cells c{join} GROUP BY ALL"
        for c, exprs in dv.items():
            table = f"__dv{self._idx[c]}"
            sub = f"SELECT {k}, {', '.join(exprs)} FROM {table} c{join} GROUP BY ALL"
            sql = f"SELECT * FROM ({sql}) LEFT JOIN ({sub}) USING ({k})"
        return self._con.sql(f"SELECT {k}, {AS_OF}, {', '.join(outs)} FROM ({sql}) "
                             f"ORDER BY {k}").to_arrow_table()

    def _empty_values(self) -> pa.Table:
        """No values, in the shape of ``_values`` (computed once)."""
        if self._empty is None:
            if not self._ready:
                return pa.table({})
            saved = self.clock_us
            self.clock_us = saved if saved is not None else 0
            try:
                self._empty = self._values(touched=False).slice(0, 0)
            finally:
                self.clock_us = saved
        return self._empty

    def _evict(self, old: int | None) -> None:
        """Forget tiles and duplicate-index entries no acceptable row can change, when the
        clock entered a new tile (or many rows were rewritten): tables are rewritten, so the
        memory of what is forgotten is given back."""
        if self.clock_us is None:
            return
        spec = self.spec
        tile = spec.tile_us
        moved = old is None or _pyfdiv(old, tile) < _pyfdiv(self.clock_us, tile)
        if not moved and self._churn <= max(self._live, 50_000):
            return
        cutoff = _cutoff_tile(spec, self.clock_us, self.lateness_us)
        keep = {"__cells": f"__s >= {cutoff}",
                "__seen": f"__t >= {self.clock_us - self.lateness_us - tile}"}
        keep.update({f"__dv{self._idx[c]}": f"__s >= {cutoff}" for c in self._distinct})
        for table, cond in keep.items():
            n = self._rows(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {table} "
                           f"WHERE {cond}")
            if table == "__cells":
                self._live = n
        self._churn = 0


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    """Tables of one schema as one (an empty list: an empty table)."""
    tables = [t for t in tables if t.num_columns]
    return pa.concat_tables(tables) if tables else pa.table({})


__all__ = ["AS_OF", "FUNCTIONS", "Aggregate", "Fetch", "Window", "WindowSpec", "WindowState",
           "WindowUpdate", "batch_sql", "default_tile", "time_us", "window_text"]
