"""Freshness: the newest cursor (or timestamp) value of a stream and how old it is."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tarmac.ingest.base import Sample
from tarmac.ingest.contract import parse_times
from tarmac.ingest.contract import to_datetime as _to_datetime
from tarmac.ingest.survey._report import Freshness
from tarmac.profile.arrays import is_text as _is_text
from tarmac.profile.arrays import non_null as _non_null
from tarmac.profile.arrays import share as _share
from tarmac.profile.pii import VALUE_CHECK_LIMIT

DEFAULT_STALE_AFTER = timedelta(days=7)


_TIME_NAMES = re.compile(r"(^|_)(updated|modified|changed|loaded|ingested|synced)(_|$)|"
                         r"(^|_)(ts|at|time|timestamp|date|datetime|day|created|event)(_|$)|"
                         r"_at$|time|date")
_PREFERRED = re.compile(r"updated|modified|changed|synced|ingested|loaded")


def _temporal_columns(table: pa.Table) -> dict[str, pa.Array]:
    """Columns holding points in time: timestamp/date typed, or text that parses as ISO."""
    out: dict[str, pa.Array] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        t = col.type
        if pa.types.is_timestamp(t):
            arr = col.combine_chunks()
            out[name] = arr if t.tz else pc.assume_timezone(arr, "UTC")
        elif pa.types.is_date(t):
            out[name] = pc.cast(col.combine_chunks(), pa.timestamp("us")).cast(
                pa.timestamp("us", tz="UTC"))
        elif _is_text(t) and col.null_count < len(col):
            head = _non_null(col, VALUE_CHECK_LIMIT)
            if _share(pc.is_valid(parse_times(head))) >= 0.9:
                out[name] = parse_times(col)
    return out


def freshness(sample: Sample, cursor: str | None, now: datetime | None = None, *,
              stale_after: timedelta = DEFAULT_STALE_AFTER,
              complete: bool = False) -> Freshness | None:
    """The newest value of ``cursor`` (else of the best timestamp/date column) and its age.

    The connector's ``Sample.newest`` is exact over the whole source and wins over the
    sample's maximum (which is exact too when the sample is ``complete``). Among several
    timestamp columns, an ``updated_at``-like one is preferred, then the latest.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    table = sample.rows
    temporal: dict[str, pa.Array] | None = None
    if cursor and (cursor in sample.newest or cursor in table.column_names):
        column = cursor
    else:
        temporal = _temporal_columns(table)
        candidates = [c for c in table.column_names if c in temporal]
        candidates += [c for c in sample.newest if c not in temporal
                       and _to_datetime(sample.newest[c]) is not None]
        if not candidates:
            return None

        def rank(c: str) -> tuple[int, bool, float]:
            assert temporal is not None
            arr = temporal.get(c)
            value = _to_datetime(sample.newest.get(c)) or _max_time(arr)
            ts = value.timestamp() if value else -math.inf
            if value and value > now + timedelta(days=1):
                ts = -ts  # a future date (expiry, due date) says little about freshness
            tier = (0 if _PREFERRED.search(c.lower()) else 1 if _TIME_NAMES.search(c.lower())
                    else 2)
            gaps = arr is not None and arr.null_count > 0  # closed_at: not every row has one
            return (tier, gaps, -ts)

        column = min(candidates, key=rank)
    from_connector = column in sample.newest
    exact = from_connector or complete
    newest: datetime | int | float | str | None
    if from_connector:
        raw = sample.newest[column]
        when = _to_datetime(raw)
    else:  # text timestamps compare as times, not as strings (offsets, mixed precision)
        raw = _column_max(table, column)
        if temporal is None:
            temporal = _temporal_columns(table.select([column]))
        when = _max_time(temporal.get(column))
    if when is not None:
        newest = when.astimezone(UTC)
        age = (now - newest).total_seconds()
        return Freshness(column, newest, True, exact, round(age, 3),
                         age > stale_after.total_seconds())
    newest = raw if isinstance(raw, int | float | str) or raw is None else str(raw)
    return Freshness(column, newest, False, exact, None, False)


def _max_time(arr: pa.Array | None) -> datetime | None:
    if arr is None or arr.null_count == len(arr):
        return None
    value = pc.max(arr).as_py()
    return _to_datetime(value)


def _column_max(table: pa.Table, column: str) -> Any:
    col = table.column(column)
    if col.null_count == len(col):
        return None
    try:
        return pc.max(col).as_py()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return None
