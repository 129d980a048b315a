"""One prediction as the log keeps it: the record, its id, its bytes in a segment, its row in
the ``predictions`` table.

A record is encoded once, at append time, by orjson: its scalar fields as one compact array
(the time as integer microseconds) and each nested value (features, request...) as its own JSON
document. The table keeps the nested values as JSON text, so its schema never changes with a
model's inputs, and the flusher copies that text out of the payload without parsing it.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

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


_FORMAT = 1
_LENGTHS = struct.Struct("<B6I")  # format, then the byte length of each of the six parts
_HEADER = _LENGTHS.size


def encode(record: PredictionRecord) -> bytes:
    """The record as the payload of one segment frame: a format byte, six lengths, then six
    JSON documents: the scalar fields as one array, and the features, their times, their
    status, the request and the label each as its own document, so a flush takes those
    columns' JSON text as byte slices instead of parsing and re-serializing them."""
    if record.role not in ROLES:
        raise ValueError(f"prediction {record.id}: role {record.role!r} is not one of "
                         f"{', '.join(ROLES)}")
    dumps = orjson.dumps
    parts = (
        dumps([record.id, record.request_id, _micros(record.time), record.endpoint,
               record.model, int(record.version), record.role, record.score,
               float(record.latency_ms), record.error], default=_fallback, option=_OPTS),
        dumps(record.features, default=_fallback, option=_OPTS),
        dumps(record.feature_times, default=_fallback, option=_OPTS),
        dumps(record.feature_status, default=_fallback, option=_OPTS),
        dumps(record.request, default=_fallback, option=_OPTS),
        dumps(record.label, default=_fallback, option=_OPTS),
    )
    return _LENGTHS.pack(_FORMAT, *map(len, parts)) + b"".join(parts)


def split(payload: bytes) -> list[bytes]:
    """A payload's six parts (see ``encode``)."""
    fmt, a, b, c, d, e, f = _LENGTHS.unpack_from(payload)
    if fmt != _FORMAT:
        raise ValueError(f"prediction log record format {fmt} is not known to this version "
                         f"of Tarmac (it writes format {_FORMAT})")
    o1 = _HEADER + a
    o2 = o1 + b
    o3 = o2 + c
    o4 = o3 + d
    o5 = o4 + e
    return [payload[_HEADER:o1], payload[o1:o2], payload[o2:o3], payload[o3:o4],
            payload[o4:o5], payload[o5:o5 + f]]


def scalars(payload: bytes) -> list[Any]:
    """The scalar fields of a payload: id, request_id, time (us), endpoint, model, version,
    role, score, latency_ms, error."""
    fmt, n = payload[0], _LENGTHS.unpack_from(payload)[1]
    if fmt != _FORMAT:
        split(payload)  # raises the format error
    return list(orjson.loads(payload[_LENGTHS.size:_LENGTHS.size + n]))


def to_table(payloads: Sequence[bytes]) -> pa.Table:
    """Decode payloads into rows of ``SCHEMA``: the scalar parts in one ``orjson.loads`` of
    them all, the nested parts as the JSON text they already are."""
    parts = [split(p) for p in payloads]
    meta = orjson.loads(b"[" + b",".join([p[0] for p in parts]) + b"]")
    cols = list(zip(*meta, strict=True)) if meta else [()] * 10

    def json_col(i: int) -> pa.Array:  # the JSON text as it is (UTF-8: Arrow checks it)
        return pa.array([None if p[i] == b"null" else p[i] for p in parts], type=pa.string())

    role = pa.array(cols[6], type=pa.string())
    arrays = {
        "id": pa.array(cols[0], pa.string()), "request_id": pa.array(cols[1], pa.string()),
        "time": pa.array(cols[2], pa.timestamp("us", tz="UTC")),
        "endpoint": pa.array(cols[3], pa.string()), "model": pa.array(cols[4], pa.string()),
        "version": pa.array(cols[5], pa.int64()), "role": role,
        "shadow": pc.equal(role, "shadow"),
        "features": json_col(1), "feature_times": json_col(2), "feature_status": json_col(3),
        "request": json_col(4), "score": pa.array(cols[7], pa.float64()), "label": json_col(5),
        "latency_ms": pa.array(cols[8], pa.float64()), "error": pa.array(cols[9], pa.string()),
    }
    return pa.Table.from_arrays([arrays[f.name] for f in SCHEMA], schema=SCHEMA)
