"""The lake type of every column a SQL database declares, and how to read it in that type.

A column's type comes from the source's declared schema (SQLAlchemy inspection), never from
the values of one batch: a MariaDB zero date or a batch size cannot turn a ``DATETIME`` into
text. Values that do not fit the declared type reach the contract as text and are quarantined
there with their raw value.

| source type                                   | lake type                         |
|-----------------------------------------------|-----------------------------------|
| boolean, MariaDB ``TINYINT(1)``, ``BIT(1)``   | ``bool``                          |
| smallint, integer, bigint, ``YEAR``, ``BIT(n)``| ``int64``                        |
| real, double, float                           | ``float64``                       |
| numeric(p, s) with p <= 38                    | ``decimal(p, s)``                 |
| PostgreSQL ``money``                          | ``decimal(19, 2)``                |
| date                                          | ``date``                          |
| timestamp, datetime (with or without zone)    | ``timestamp`` (UTC, microseconds) |
| time                                          | ``string`` (``HH:MM:SS[.ffffff]``)|
| interval                                      | ``string``, ISO-8601 (``P1Y2M3DT4H5M6.5S``) |
| uuid                                          | ``string``, canonical lower-case  |
| json, jsonb                                   | ``string`` (the JSON text)        |
| char, varchar, text, enum                     | ``string``                        |
| bytea, blob, binary                           | ``binary``                        |
| PostgreSQL ``T[]``                            | ``list<T>`` (of the above)        |
| any other PostgreSQL type (inet, xml, ...)    | ``string`` (its text form)        |

SQLite columns declared without a type (or with one SQLAlchemy does not know) get their type
from the values, as SQLite itself does. A MariaDB/MySQL column of a type not above (e.g.
``GEOMETRY``) is a configuration error naming the table and the column: select it through a
``query:`` with a ``CAST``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

TS = pa.timestamp("us", tz="UTC")
MONEY = pa.decimal128(19, 2)


@dataclass(frozen=True)
class SqlColumn:
    """One column of a source table: its lake type and how it is selected."""

    name: str
    declared: str  # the source's type, as the database names it (for messages)
    arrow: pa.DataType | None  # None: no declared type; the values decide (SQLite only)
    read_as: str = "plain"  # plain | text | numeric | interval | text_array


class UnmappableType(Exception):
    """A column whose declared type has no lake type (the caller names the source)."""


def map_columns(dialect: str, table: str, columns: list[dict[str, Any]]) -> list[SqlColumn]:
    """The lake type of each inspected column (``sa.inspect(...).get_columns`` rows).

    Raises ``UnmappableType`` naming the table and the column when there is none."""
    return [_map(dialect, table, col["name"], col["type"]) for col in columns]


def _map(dialect: str, table: str, name: str, t: Any) -> SqlColumn:
    declared = _declared(t)
    pg = dialect == "postgresql"

    def col(arrow: pa.DataType | None, read_as: str = "plain") -> SqlColumn:
        return SqlColumn(name, declared, arrow, read_as)

    if pg and isinstance(t, postgresql.ARRAY):
        item = _map(dialect, table, name, t.item_type)
        if getattr(t, "dimensions", None) not in (None, 1) or item.arrow is None:
            return col(pa.string(), "text")
        if item.read_as != "plain":  # uuid[], interval[], json[] ...: arrays of their text
            return col(pa.list_(pa.string()), "text_array")
        return col(pa.list_(item.arrow))
    if pg and isinstance(t, postgresql.MONEY):
        return col(MONEY, "numeric")
    if pg and isinstance(t, postgresql.INTERVAL) or isinstance(t, sa.Interval):
        return col(pa.string(), "interval" if pg else "plain")
    if isinstance(t, sa.Uuid):
        return col(pa.string(), "text" if pg else "plain")
    if isinstance(t, sa.JSON):
        return col(pa.string(), "text" if pg else "plain")
    if isinstance(t, mysql.TINYINT) and getattr(t, "display_width", None) == 1:
        return col(pa.bool_())
    if isinstance(t, mysql.BIT):
        return col(pa.bool_() if (t.length or 1) == 1 else pa.int64())
    if isinstance(t, mysql.YEAR):
        return col(pa.int64())
    if isinstance(t, sa.Boolean):
        return col(pa.bool_())
    if isinstance(t, sa.Integer):
        return col(pa.int64())
    if isinstance(t, sa.Float):
        return col(pa.float64())
    if isinstance(t, sa.Numeric):
        if t.precision and t.precision <= 38:
            return col(pa.decimal128(t.precision, t.scale or 0))
        return col(None)  # unbounded numeric: decimal inferred from the values, as before
    if isinstance(t, sa.DateTime):
        return col(TS)
    if isinstance(t, sa.Date):
        return col(pa.date32())
    if isinstance(t, sa.Time):
        return col(pa.string(), "text" if pg else "plain")
    if isinstance(t, sa.String | sa.Enum):
        return col(pa.string())
    if isinstance(t, sa.LargeBinary | sa.BINARY | sa.VARBINARY):
        return col(pa.binary())
    if pg:
        return col(pa.string(), "text")  # inet, xml, tsvector, ...: PostgreSQL's text form
    if dialect == "sqlite":
        return col(None)  # a type SQLite does not enforce: the values decide
    raise UnmappableType(f"column '{name}' of table '{table}' has type {declared}, which has "
                         "no lake type")


def _declared(t: Any) -> str:
    try:
        return str(t)
    except Exception:  # noqa: BLE001 - NullType and friends cannot compile on their own
        return type(t).__name__


def select_expr(column: SqlColumn) -> Any:
    """The select-list expression reading ``column`` in its lake type (PostgreSQL)."""
    c: Any = sa.column(column.name)
    if column.read_as in ("text", "interval"):  # interval: ISO text (session intervalstyle)
        return sa.cast(c, sa.Text).label(column.name)
    if column.read_as == "numeric":
        return sa.cast(c, sa.Numeric).label(column.name)
    if column.read_as == "text_array":
        return sa.cast(c, postgresql.ARRAY(sa.Text)).label(column.name)
    return c


def python_value(value: Any) -> Any:
    """A DB-API value of a type Arrow would not store as the lake does: UUID objects as their
    canonical text, MySQL TIME (a timedelta) and ``time`` as ``HH:MM:SS`` text, BIT as int."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, timedelta):
        return _time_text(value)
    if isinstance(value, time):
        return value.isoformat()
    return value


def needs_python(values: Any) -> bool:
    """True if some value must go through ``python_value`` first."""
    return any(isinstance(v, uuid.UUID | timedelta | time) for v in values)


def _time_text(value: timedelta) -> str:
    sign = "-" if value < timedelta(0) else ""
    total = abs(value)
    secs = total.days * 86400 + total.seconds
    text = f"{sign}{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"
    return text + (f".{total.microseconds:06d}" if total.microseconds else "")


def fit_bits(values: list[Any], want: pa.DataType) -> list[Any]:
    """MySQL BIT values (bytes) as the bool or int the column is kept as."""
    out: list[Any] = []
    for v in values:
        if isinstance(v, bytes):
            n = int.from_bytes(v, "big")
            out.append(bool(n) if pa.types.is_boolean(want) else n)
        else:
            out.append(v)
    return out


# -- Arrow types a driver hands out that the lake cannot store ---------------------------------


def interval_text(array: pa.Array) -> pa.Array:
    """``month_day_nano_interval`` values as ISO-8601 durations (``P1Y2M3DT4H5M6.5S``)."""
    return pa.array([None if v is None else iso_interval(v.months, v.days, v.nanoseconds)
                     for v in array.to_pylist()], pa.string())


def iso_interval(months: int, days: int, nanos: int) -> str:
    """An interval as ISO 8601, the way PostgreSQL's ``intervalstyle = iso_8601`` writes it."""
    years, months = divmod(months, 12) if months >= 0 else (-(-months // 12), -(-months % 12))
    out = "P" + "".join(f"{n}{u}" for n, u in ((years, "Y"), (months, "M"), (days, "D")) if n)
    if nanos:
        sign = "-" if nanos < 0 else ""
        secs, frac = divmod(abs(nanos), 1_000_000_000)
        h, rest = divmod(secs, 3600)
        m, s = divmod(rest, 60)
        sec = f"{s}.{frac:09d}".rstrip("0").rstrip(".") if frac else str(s)
        out += "T" + "".join(f"{sign}{n}{u}" for n, u in ((h, "H"), (m, "M")) if n)
        if s or frac:
            out += f"{sign}{sec}S"
    return out if out != "P" else "PT0S"


def plain_array(name: str, array: pa.Array, want: pa.DataType | None) -> pa.Array:
    """A column as a driver returned it, in a type the lake stores: extension types (uuid,
    json, PostgreSQL numeric and others) by their storage or text; intervals as ISO text.
    Raises ``UnmappableType`` naming the column when there is no such type."""
    t = array.type
    if isinstance(t, pa.BaseExtensionType):
        storage = array.storage
        if t.extension_name == "arrow.uuid":
            return pa.array([None if b is None else str(uuid.UUID(bytes=b))
                             for b in storage.to_pylist()], pa.string())
        if pa.types.is_binary(storage.type) and t.extension_name != "arrow.json":
            raise UnmappableType(f"column '{name}' has type {t}, which has no lake type")
        array = storage
        if want is not None and not pa.types.is_string(want):
            try:
                return array.cast(want)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return array  # text, for the contract to coerce or quarantine
        return array
    if pa.types.is_interval(t):
        return interval_text(array)
    if pa.types.is_duration(t):
        return pa.array([None if v is None else _time_text(v) for v in array.to_pylist()],
                        pa.string())
    if pa.types.is_time(t):
        return array.cast(pa.string())
    return array

