"""Bulk reader for the messy JSON-lines clickstream.

Per file, broken lines are found with numpy over the raw bytes (a valid event
line starts with ``{`` and ends with ``}``), string customer ids are un-quoted
with one regex pass, and the surviving bytes are parsed in a single
``pyarrow.json`` call.  Only if Arrow still rejects a file (damage the cheap
checks cannot see) does that one file fall back to line-by-line ``json.loads``.
"""

from __future__ import annotations

import io
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

TS = pa.timestamp("us", tz="UTC")
CLICKS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("customer_id", pa.int64()),
        ("event_type", pa.string()),
        ("page", pa.string()),
        ("event_time", TS),
        ("session_id", pa.string()),
    ]
)
_STRING_ID = re.compile(rb'("customer_id"\s*:\s*)"(-?\d+)"')
_NL = ord("\n")


def read_clicks(clicks_dir: Path) -> tuple[pa.Table, dict[str, int], dict[str, int]]:
    """All valid click events, de-duplicated by ``event_id``, sorted by time."""
    tables: list[pa.Table] = []
    invalid = coerced = late = 0
    for path in sorted(clicks_dir.glob("*.jsonl")):
        table, bad, fixed = _read_file(path.read_bytes())
        invalid += bad
        coerced += fixed
        if table.num_rows:
            late += _late_events(table, path.stem)
            tables.append(table)
    t = pa.concat_tables(tables) if tables else CLICKS_SCHEMA.empty_table()
    n = t.num_rows
    # keep the first arrival of every event_id (re-sent copies are identical)
    t = t.append_column("_i", pa.array(np.arange(n, dtype=np.int64)))
    firsts = t.group_by("event_id", use_threads=False).aggregate([("_i", "min")]).column("_i_min")
    t = t.take(pc.take(firsts, pc.sort_indices(firsts))).drop_columns(["_i"])
    t = t.sort_by([("event_time", "ascending"), ("event_id", "ascending")])
    dropped = {"invalid_json": invalid, "duplicate_event_id": n - t.num_rows}
    repaired = {"customer_id_from_string": coerced, "late_arrival_reordered": late}
    return t, dropped, repaired


def _late_events(table: pa.Table, stem: str) -> int:
    """Events whose date is before the day their file is named after."""
    try:
        file_day = pa.scalar(date.fromisoformat(stem), pa.date32())
    except ValueError:  # not a per-day file name: lateness unknown
        return 0
    day = pc.cast(table.column("event_time"), pa.date32())
    return int(pc.sum(pc.less(day, file_day)).as_py() or 0)


def _read_file(buf: bytes) -> tuple[pa.Table, int, int]:
    """Parse one file; return (table, invalid line count, coerced id count)."""
    if not buf.strip():
        return CLICKS_SCHEMA.empty_table(), 0, 0
    b = np.frombuffer(buf, dtype=np.uint8)
    ends = np.flatnonzero(b == _NL)
    if ends.size == 0 or ends[-1] != b.size - 1:
        ends = np.append(ends, b.size)  # last line without a newline
    starts = np.r_[0, ends[:-1] + 1]
    # trim trailing \r and spaces cheaply: only the last byte before \n matters here
    lengths = ends - starts
    nonblank = lengths > 0
    last = np.where(nonblank, b[np.maximum(ends - 1, 0)], 0)
    last = np.where(last == ord("\r"), b[np.maximum(ends - 2, 0)], last)
    valid = nonblank & (b[np.minimum(starts, b.size - 1)] == ord("{")) & (last == ord("}"))
    invalid = int((nonblank & ~valid).sum())
    if invalid:
        spans = np.minimum(ends + 1, b.size) - starts  # include each line's newline
        keep = np.repeat(valid, spans)
        buf = b[: keep.size][keep].tobytes()
        if buf and not buf.endswith(b"\n"):
            buf += b"\n"
    buf, coerced = _STRING_ID.subn(rb"\1\2", buf)
    try:
        table = _parse(buf)
    except pa.ArrowInvalid:
        return _read_lines(buf, invalid, coerced)
    return table, invalid, coerced


def _parse(buf: bytes) -> pa.Table:
    opts = pajson.ParseOptions(explicit_schema=CLICKS_SCHEMA, unexpected_field_behavior="ignore")
    table = pajson.read_json(io.BytesIO(buf), parse_options=opts)
    return table.select(CLICKS_SCHEMA.names).cast(CLICKS_SCHEMA)


def _read_lines(buf: bytes, invalid: int, coerced: int) -> tuple[pa.Table, int, int]:
    """Slow path for a file Arrow rejected: validate each line with ``json.loads``."""
    rows: list[dict[str, Any]] = []
    for line in buf.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            row["customer_id"] = (
                int(row["customer_id"]) if row.get("customer_id") is not None else None
            )
            row["event_time"] = pc.cast(pa.scalar(str(row["event_time"])), TS).as_py()
            rows.append({k: row.get(k) for k in CLICKS_SCHEMA.names})
        except (ValueError, TypeError, KeyError, AttributeError, pa.ArrowInvalid):
            invalid += 1
    return pa.Table.from_pylist(rows, schema=CLICKS_SCHEMA), invalid, coerced
