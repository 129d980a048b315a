"""The ``quarantine`` lake table: every record a load rejected, with why and where from.

Nothing a source sends is dropped silently: a row that breaks its contract, a CSV line with the
wrong number of fields or a JSON line that is not JSON lands here with the source, the lake
table it was meant for, the run and load that rejected it, the reason, the column and value at
fault, where it was read from, and the record as read (JSON).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa

from tarmac.ingest.base import Reject
from tarmac.ingest.contract import REJECT_SCHEMA
from tarmac.ingest.spec import TS

TABLE = "quarantine"
SCHEMA = pa.schema([
    ("source", pa.string()), ("table", pa.string()), ("run_id", pa.string()),
    ("load_id", pa.string()), ("rejected_at", TS), ("reason", pa.string()),
    ("column", pa.string()), ("value", pa.string()), ("origin", pa.string()),
    ("record", pa.string()),
])


def from_rejects(rejects: list[Reject]) -> pa.Table:
    """Reader-level rejects (records that never became rows) in the checked-rows layout."""
    return pa.table({
        "reason": [r.reason for r in rejects], "column": pa.nulls(len(rejects), pa.string()),
        "value": pa.nulls(len(rejects), pa.string()), "origin": [r.origin for r in rejects],
        "record": [r.raw for r in rejects],
    }, schema=REJECT_SCHEMA)


def rows(rejected: pa.Table, *, source: str, table: str, run_id: str, load_id: str,
         at: datetime) -> pa.Table:
    """Rejected rows (``REJECT_SCHEMA``) as quarantine rows."""
    n = rejected.num_rows

    def const(value: Any, t: pa.DataType) -> pa.Array:
        return pa.repeat(pa.scalar(value, t), n)

    return pa.table({
        "source": const(source, pa.string()), "table": const(table, pa.string()),
        "run_id": const(run_id, pa.string()), "load_id": const(load_id, pa.string()),
        "rejected_at": const(at, TS), **{c: rejected[c] for c in REJECT_SCHEMA.names},
    }, schema=SCHEMA)
