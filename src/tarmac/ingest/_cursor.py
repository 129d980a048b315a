"""A stream's cursor (high-water mark): where the next load starts reading (minus the lookback
window), how the new mark is stored as JSON, and how a mark compares with Arrow values."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa

from tarmac.catalog.sources import SourceState
from tarmac.errors import UsageError
from tarmac.ingest.spec import SourceSpec


def since(state: SourceState | None, spec: SourceSpec) -> Any:
    """The lowest cursor value to read: the high-water mark minus the lookback window."""
    if state is None or not state.cursor or not spec.cursor:
        return None
    value = from_json(state.cursor)
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


def cursor_state(newest: Any, state: SourceState | None, reset: bool) -> dict[str, Any] | None:
    """The new high-water mark: the newest cursor value loaded, never moving backwards."""
    before = from_json(state.cursor) if (state and state.cursor and not reset) else None
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


def from_json(cursor: dict[str, Any]) -> Any:
    value, kind = cursor["value"], cursor.get("type")
    if kind == "timestamp":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    return value


def scalar(value: Any, t: pa.DataType) -> pa.Scalar:
    if pa.types.is_timestamp(t) and isinstance(value, datetime):
        return pa.scalar(value if value.tzinfo else value.replace(tzinfo=UTC), t)
    return pa.scalar(value).cast(t)
