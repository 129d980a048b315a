"""Small helpers over delta-rs objects: committed snapshots, row counting, times, retention."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from tarmac.errors import UsageError
from tarmac.humanize import parse_duration

# the commit metadata every Tarmac write carries (read back by history and the lake check)
RUN_KEY, ACTOR_KEY = "tarmac.run_id", "tarmac.actor"
OPERATION_KEY, TOKEN_KEY = "tarmac.operation", "tarmac.write_id"
METRICS_KEY = "tarmac.metrics"  # our row counts, on commits whose Delta metrics lack them


class RowCounter:
    """Counts rows as they stream into a write (a reader is consumed once)."""

    def __init__(self) -> None:
        self.rows = 0

    def wrap(self, data: pa.Table | pa.RecordBatchReader) -> pa.Table | pa.RecordBatchReader:
        if isinstance(data, pa.Table):
            self.rows = len(data)
            return data

        def batches() -> Any:
            for batch in data:
                self.rows += batch.num_rows
                yield batch

        return pa.RecordBatchReader.from_batches(data.schema, batches())


@dataclass(frozen=True)
class Snapshot:
    """A committed version's size and schema, read from its log (no data is scanned)."""

    version: int
    rows: int
    bytes: int
    files: int
    schema: pa.Schema


def snapshot(dt: DeltaTable) -> Snapshot:
    actions = pa.table(dt.get_add_actions(flatten=True))

    def total(col: str) -> int:
        return int(pc.sum(actions[col]).as_py() or 0) if len(actions) else 0

    return Snapshot(dt.version(), total("num_records"), total("size_bytes"), len(actions),
                     pa.schema(dt.schema().to_arrow()))


def plain(dt: DeltaTable) -> bool:
    """True if the table's Parquet files alone are its rows: no deletion vectors, no column
    mapping, no partition values kept in paths. Such a table can be read or rewritten file by
    file without delta-rs."""
    if set(dt.protocol().reader_features or []) & {"deletionVectors", "columnMapping"}:
        return False
    return not dt.metadata().partition_columns


def row_count(dt: DeltaTable) -> int:
    return snapshot(dt).rows


def rows_added(m: dict[str, Any]) -> int:
    return int(m.get("num_added_rows", 0) or m.get("num_target_rows_inserted", 0) or 0)


def rows_removed(m: dict[str, Any]) -> int:
    return int(m.get("num_deleted_rows", 0) or m.get("num_target_rows_deleted", 0) or 0)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for prefix in ("Generic DeltaTable error: ", "External error: "):
        text = text.replace(prefix, "")
    return text.splitlines()[0] if text else type(exc).__name__


def parse_time(value: datetime | str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise UsageError(f"invalid time {value!r}: expected ISO 8601, "
                             "e.g. 2026-01-31T12:00:00+00:00") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def first_commit_time(dt: DeltaTable) -> datetime | None:
    history = dt.history()
    return datetime.fromtimestamp(history[-1]["timestamp"] / 1000, UTC) if history else None


def hours(retain: str | timedelta) -> int:
    """A retention (``'7d'``, ``'24h'``, a timedelta) in whole hours."""
    if not isinstance(retain, timedelta):
        try:
            retain = parse_duration(retain, units=("d", "h", "m"))
        except ValueError:
            raise UsageError(f"invalid retention {retain!r}: expected e.g. '7d', '24h' or "
                             "'0h'") from None
    return int(retain.total_seconds() // 3600)


def history(dt: DeltaTable, limit: int | None = None) -> list[dict[str, Any]]:
    """The table's versions newest first: time, operation, rows added/removed, run id, actor."""
    out = []
    for h in dt.history(limit):
        # Delta's own metrics, overlaid with ours: staged-file commits have none, and
        # delta-rs does not count the rows an overwrite removes
        metrics = {**(h.get("operationMetrics") or {}), **_metrics(h.get(METRICS_KEY))}
        out.append({
            "version": h["version"],
            "time": datetime.fromtimestamp(h["timestamp"] / 1000, UTC),
            "operation": h.get(OPERATION_KEY) or h.get("operation"),
            "rows_added": rows_added(metrics),
            "rows_removed": rows_removed(metrics),
            "run_id": h.get(RUN_KEY),
            "actor": h.get(ACTOR_KEY),
            "parameters": h.get("operationParameters") or {},
        })
    return out


def _metrics(value: Any) -> dict[str, Any]:
    """``tarmac.metrics`` as read back from a commit (a dict, or JSON text if a writer
    stored it as a string)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = json.loads(value)
            if isinstance(parsed, dict):
                return parsed
    return {}
