"""One prediction as the log keeps it: the record, its id, its bytes in a segment, its row in
the ``predictions`` table.

A record is encoded once, at append time, as a compact orjson array (positional fields, the
time as integer microseconds): the hot path does one ``orjson.dumps`` per record and no
dictionary building. The flusher decodes a segment's payloads back into Arrow columns, the
nested values (features, request...) as JSON text so that the table's schema never changes
with a model's inputs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa

ROLES = ("champion", "canary", "shadow")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC

SCHEMA = pa.schema([
    pa.field("id", pa.string()),
    pa.field("request_id", pa.string()),
    pa.field("time", pa.timestamp("us", tz="UTC")),
    pa.field("endpoint", pa.string()),
    pa.field("model", pa.string()),
    pa.field("version", pa.int64()),
    pa.field("role", pa.string()),
    pa.field("shadow", pa.bool_()),
    pa.field("features", pa.string()),        # JSON text: {"plan": "basic", ...}
    pa.field("feature_times", pa.string()),   # JSON text: {"plan": "2026-...Z" | null}
    pa.field("feature_status", pa.string()),  # JSON text: {"plan": "present" | "stale" | ...}
    pa.field("request", pa.string()),         # JSON text: the raw request values
    pa.field("score", pa.float64()),
    pa.field("label", pa.string()),           # JSON text: a label of any type
    pa.field("latency_ms", pa.float64()),
    pa.field("error", pa.string()),
])
"""The ``predictions`` table."""

JSON_COLUMNS = ("features", "feature_times", "feature_status", "request", "label")


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One answered (or failed) prediction, as the server hands it to ``PredictionLog.append``.

    Example::

        PredictionRecord(id=new_prediction_id(), request_id="r1", time=datetime.now(UTC),
                         endpoint="churn", model="churn", version=3, role="champion",
                         features={"plan": "basic"}, feature_times={"plan": None},
                         feature_status={"plan": "request"}, request={"plan": "basic"},
                         score=0.31, label=False, latency_ms=1.2)
    """

    id: str
    request_id: str
    time: datetime
    endpoint: str
    model: str
    version: int
    role: str
    features: dict[str, Any]
    feature_times: dict[str, datetime | None]
    feature_status: dict[str, str]
    request: dict[str, Any]
    score: float | None
    label: Any
    latency_ms: float
    error: str | None = None


def new_prediction_id() -> str:
    """A prediction id unique across processes and servers, ordered by creation time: a UUIDv7
    (48 bits of Unix milliseconds, 74 random bits) as 32 hex digits.

    Example::

        new_prediction_id()      # '019ae8b1c4d27a3f9c0e5b11d2f4a6e8'
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 68) & 0xFFF) << 64 \
        | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return f"{value:032x}"


def _micros(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // _ONE_US


def _fallback(value: Any) -> Any:
    """What orjson cannot encode by itself (Decimal, sets, numpy scalars of odd kinds...)."""
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    item = getattr(value, "item", None)  # a numpy scalar
    if callable(item):
        return item()
    return str(value)


def encode(record: PredictionRecord) -> bytes:
    """The record as the payload of one segment frame."""
    if record.role not in ROLES:
        raise ValueError(f"prediction {record.id}: role {record.role!r} is not one of "
                         f"{', '.join(ROLES)}")
    return orjson.dumps(
        [record.id, record.request_id, _micros(record.time), record.endpoint, record.model,
         int(record.version), record.role, record.features, record.feature_times,
         record.feature_status, record.request, record.score, record.label,
         float(record.latency_ms), record.error],
        default=_fallback, option=_OPTS)


def payload_id(payload: bytes) -> str:
    """The prediction id of an encoded record (its first field), without decoding the rest."""
    return str(orjson.loads(payload)[0])


def to_table(payloads: Sequence[bytes]) -> pa.Table:
    """Decode payloads into rows of ``SCHEMA`` (nested values as JSON text)."""
    rows = [orjson.loads(p) for p in payloads]
    dumps = orjson.dumps

    def json_col(i: int) -> list[str | None]:
        return [None if r[i] is None else dumps(r[i]).decode() for r in rows]

    cols: list[Any] = [
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
        [r[3] for r in rows], [r[4] for r in rows], [r[5] for r in rows],
        [r[6] for r in rows], [r[6] == "shadow" for r in rows],
        json_col(7), json_col(8), json_col(9), json_col(10),
        [r[11] for r in rows], json_col(12), [r[13] for r in rows], [r[14] for r in rows],
    ]
    arrays = [pa.array(c, type=f.type) for c, f in zip(cols, SCHEMA, strict=True)]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)
