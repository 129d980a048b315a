"""The log interface every stream backend implements (``StreamLog``), the types it hands back,
and the serialization seam (``Serializer``; JSON by default).

A topic has a fixed number of partitions; each partition is an append-only sequence of records
with offsets 0, 1, 2 ... that are never reused, not even after retention deleted the oldest
records. A consumer group remembers, per (topic, partition), the next offset to read.
"""

from __future__ import annotations

import difflib
import json
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from tarmac.config import open_backend
from tarmac.errors import TopicNotFoundError, UsageError
from tarmac.humanize import parse_duration

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- serialization -----------------------------------------------------------------------------

@runtime_checkable
class Serializer(Protocol):
    """How record values become bytes and back (JSON today; Avro/Protobuf later)."""

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


# one encoder for every call (json.dumps builds a new one per call when given options)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_json(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON (unicode kept as is; NaN/infinity refused)."""
    try:
        return _ENCODER.encode(value).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise UsageError(f"record cannot be encoded as JSON ({exc})",
                         hint="values are dicts, lists, str, int, float, bool or None") from None


def decode_json(data: bytes) -> Any:
    """The value of UTF-8 JSON ``data`` (``UsageError`` if it is not JSON)."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"record value is not JSON ({exc})") from None


class JsonSerializer:
    """The default serializer: ``encode_json`` / ``decode_json``."""

    def encode(self, value: Any) -> bytes:
        return encode_json(value)

    def decode(self, data: bytes) -> Any:
        return decode_json(data)


JSON = JsonSerializer()


# --- types -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)  # slots: consumers build these by the hundred thousand
class Message:
    """One record as read from the log. ``timestamp`` is UTC; ``value`` is bytes (decode it with
    ``message.json()`` or a ``Serializer``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: datetime

    def json(self) -> Any:
        return decode_json(self.value)


@dataclass(frozen=True)
class Record:
    """One record to produce: raw ``value`` bytes, an optional key (str is UTF-8 encoded) and
    an optional event timestamp (default: the time of the append)."""

    value: bytes
    key: bytes | str | None = None
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True)
class Delivered:
    """The delivery confirmation of one produced record: where it is, durably."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class TopicInfo:
    """A topic: its partitions, retention (None: kept forever), and per partition the first
    offset still held (``start_offsets``) and the next offset to be written (``end_offsets``)."""

    name: str
    partitions: int
    retention: timedelta | None
    end_offsets: list[int] = field(default_factory=list)
    start_offsets: list[int] = field(default_factory=list)

    @property
    def records(self) -> int:
        """How many records the topic holds now."""
        return sum(e - s for s, e in zip(self.start_offsets, self.end_offsets, strict=True))


Produced = Message | Record | Mapping[str, Any] | bytes
KeyOf = str | Callable[[Any], Any] | None


# --- the interface -----------------------------------------------------------------------------

class StreamLog(ABC):
    """Topics with partitions and keys; batched produce with delivery confirmation; consumer
    groups with committed offsets; reads by offset and by time; retention.

    Partitioning: a record with a key goes to ``crc32(key) % partitions`` (stable across
    processes, runs and backends' clients written by Tarmac); records without a key are spread
    round-robin over the partitions, continuing where the previous batch of this log object
    left off.

    Consumer groups: ``consume`` reads from the group's position, which starts at its committed
    offset (or, for a group that never committed, at the earliest record still held) and
    advances as records are returned; ``commit`` makes a position durable. A group's position
    is per log object: another process resumes from the committed offsets.
    """

    url: str
    serializer: Serializer = JSON

    # topics
    @abstractmethod
    def create_topic(self, name: str, partitions: int = 1,
                     retention: timedelta | float | str | None = None, *,
                     exist_ok: bool = False) -> TopicInfo:
        """Create ``name`` with ``partitions`` partitions and a retention (a timedelta, seconds,
        or a duration such as ``'7d'``; None keeps records forever). ``exist_ok``: an existing
        topic with the same partition count is returned as it is."""

    @abstractmethod
    def topics(self) -> list[TopicInfo]:
        """Every topic, sorted by name."""

    def topic(self, name: str) -> TopicInfo:
        """One topic (``TopicNotFoundError`` naming close names if there is none)."""
        found = {t.name: t for t in self.topics()}
        if name not in found:
            raise self._unknown_topic(name, list(found))
        return found[name]

    # produce
    @abstractmethod
    def produce(self, topic: str, records: Sequence[Produced], *, key: KeyOf = None,
                timestamp: datetime | None = None) -> list[Delivered]:
        """Append ``records`` in one atomic, durable batch and return where each one landed,
        in order. A record is a ``Record``/``Message`` (its key and timestamp are kept),
        ``bytes`` (a raw value) or a dict (encoded by the log's serializer). ``key``: a field
        name of dict records, or a function of the record, giving the key of records that do
        not carry one. ``timestamp`` defaults to the time of the append."""

    # consume
    @abstractmethod
    def consume(self, topic: str, group: str, *, max_records: int = 500,
                timeout: float = 0.0) -> list[Message]:
        """Up to ``max_records`` messages from the group's position, waiting up to
        ``timeout`` seconds for some to arrive. Does not commit."""

    @abstractmethod
    def commit(self, group: str,
               offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        """Store ``{(topic, partition): next_offset}`` for ``group`` (None: the positions its
        ``consume`` calls reached on this log object)."""

    @abstractmethod
    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The committed next offset per partition of ``topic`` (partitions never committed
        are absent)."""

    @abstractmethod
    def seek(self, group: str, topic: str, partition: int, offset: int) -> None:
        """Move the group's position in one partition (commit to make it durable)."""

    # reads
    @abstractmethod
    def read(self, topic: str, partition: int, *, from_offset: int | None = None,
             from_time: datetime | None = None, limit: int = 1000) -> list[Message]:
        """Up to ``limit`` messages of one partition from ``from_offset`` or from the first
        record whose timestamp is at or after ``from_time`` (neither: from the start)."""

    @abstractmethod
    def end_offsets(self, topic: str) -> list[int]:
        """The next offset to be written, per partition."""

    def start_offsets(self, topic: str) -> list[int]:
        """The first offset still held, per partition (retention deletes a prefix)."""
        return [self._bounds(topic, p)[0] for p in range(self._partition_count(topic))]

    def tail(self, topic: str, n: int = 10, *, from_beginning: bool = False) -> list[Message]:
        """Read without committing: the last ``n`` messages of ``topic`` (or, with
        ``from_beginning``, the first ``n`` from the earliest held), across partitions in
        timestamp order."""
        info = self.topic(topic)
        if not isinstance(n, int) or n < 0:
            raise UsageError(f"tail: bad count {n!r}", hint="a count >= 0")
        out: list[Message] = []
        for p in range(info.partitions):
            start, end = info.start_offsets[p], info.end_offsets[p]
            first = start if from_beginning else max(start, end - n)
            out.extend(self.read(topic, p, from_offset=first, limit=n))
        out.sort(key=lambda m: (m.timestamp, m.partition, m.offset))
        return out[:n] if from_beginning else out[max(0, len(out) - n):]

    def reader(self, topic: str, positions: Mapping[int, int]) -> PartitionReader:
        """A reader of some partitions of ``topic``, each from a given next offset, outside any
        consumer group (the stream sink keeps its positions in the lake, not in the log)."""
        return PartitionReader(self, topic, positions)

    # maintenance
    @abstractmethod
    def apply_retention(self, now: datetime | None = None) -> int:
        """Delete, per partition, the oldest records whose timestamps are older than the topic's
        retention (a prefix of the partition: offsets are never reused). Returns how many."""

    @abstractmethod
    def close(self) -> None:
        """Release the log's connections."""

    def __enter__(self) -> StreamLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # helpers for backends
    # -- what every backend checks the same way ---------------------------------------------

    _positions: dict[tuple[str, str, int], int]  # (group, topic, partition) -> next offset

    @abstractmethod
    def _partition_count(self, topic: str) -> int:
        """The partitions of ``topic`` (``TopicNotFoundError`` for an unknown one)."""

    @abstractmethod
    def _bounds(self, topic: str, partition: int) -> tuple[int, int]:
        """(first offset still held, next offset) of one partition."""

    def _check_partition(self, topic: str, partition: int) -> None:
        count = self._partition_count(topic)
        if not isinstance(partition, int) or not 0 <= partition < count:
            raise UsageError(f"topic {topic!r} has no partition {partition!r}",
                             hint=f"its partitions are 0..{count - 1}")

    def _read_bounds(self, topic: str, partition: int, from_offset: int | None,
                     from_time: datetime | None, limit: int) -> tuple[int, int]:
        """``read``'s arguments checked; the partition's (first offset held, next offset)."""
        self._check_partition(topic, partition)
        if from_offset is not None and from_time is not None:
            raise UsageError("read: give from_offset or from_time, not both")
        if not isinstance(limit, int) or limit < 0:
            raise UsageError(f"read: bad limit {limit!r}", hint="a count >= 0")
        return self._bounds(topic, partition)

    def _commits(self, group: str, offsets: Mapping[tuple[str, int], int] | None
                 ) -> list[tuple[str, int, int]]:
        """What ``commit(group, offsets)`` stores, as (topic, partition, next offset): the
        given offsets, or every position the group consumed to; each checked (a partition of
        the topic, 0 <= offset <= its end) before anything is committed."""
        check_group(group)
        if offsets is None:
            offsets = {(t, p): o for (g, t, p), o in self._positions.items() if g == group}
        rows = []
        for (topic, partition), offset in offsets.items():
            self._check_partition(topic, partition)
            end = self._bounds(topic, partition)[1]
            if not isinstance(offset, int) or not 0 <= offset <= end:
                raise UsageError(f"commit: topic {topic!r} partition {partition}: bad offset "
                                 f"{offset!r}; nothing was committed",
                                 hint=f"a next offset between 0 and {end}")
            rows.append((topic, partition, offset))
        return rows

    def _unknown_topic(self, name: str, known: Iterable[str]) -> TopicNotFoundError:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        if close:
            hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
        elif known:
            hint = "known topics: " + ", ".join(known[:10])
        else:
            hint = "no topics yet: create one with create_topic or `tarmac stream produce " \
                   "--create`"
        return TopicNotFoundError(f"stream {self.url}: no topic {name!r}", hint=hint)

    def _encode(self, records: Sequence[Produced], key: KeyOf,
                timestamp: datetime | None) -> list[tuple[bytes | None, bytes, datetime | None]]:
        """(key bytes, value bytes, timestamp) per record; refuses the batch before writing."""
        out: list[tuple[bytes | None, bytes, datetime | None]] = []
        encode = self.serializer.encode
        for i, r in enumerate(records):
            if isinstance(r, Record | Message):
                k: Any = r.key
                value, ts = r.value, r.timestamp
                if k is None and callable(key):
                    k = key(r)
            elif isinstance(r, bytes | bytearray | memoryview):
                value, ts, k = bytes(r), None, key(r) if callable(key) else None
            elif isinstance(r, Mapping):
                value, ts = encode(r if type(r) is dict else dict(r)), None
                k = r.get(key) if isinstance(key, str) else key(r) if callable(key) else None
            else:
                raise UsageError(f"record {i} is a {type(r).__name__}; nothing was produced",
                                 hint="produce dicts, bytes, Record or Message objects")
            if not isinstance(value, bytes):
                raise UsageError(f"record {i}: value is a {type(value).__name__}, not bytes; "
                                 "nothing was produced")
            out.append((k if k is None or type(k) is bytes else _key_bytes(k), value,
                        ts or timestamp))
        return out


class PartitionReader:
    """Reads assigned partitions of one topic from given offsets, in offset order per
    partition, sharing ``max_records`` among them. This default reads through ``StreamLog.read``
    (one indexed range read per partition and poll); a backend with its own fetch session (a
    Kafka consumer) overrides it."""

    def __init__(self, log: StreamLog, topic: str, positions: Mapping[int, int]) -> None:
        self.log = log
        self.topic = topic
        self.positions = dict(positions)
        self._first = 0

    def seek(self, partition: int, offset: int) -> None:
        """Read ``partition`` from ``offset`` next (or start reading it)."""
        self.positions[partition] = offset

    def release(self, partition: int) -> None:
        """Stop reading ``partition``."""
        self.positions.pop(partition, None)

    def poll(self, max_records: int, timeout: float = 0.0) -> list[Message]:
        """Up to ``max_records`` messages past the positions (which advance), waiting up to
        ``timeout`` seconds for the first."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            out = self._once(max_records)
            if out or time.monotonic() >= deadline or not self.positions:
                return out
            time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))

    def _once(self, max_records: int) -> list[Message]:
        parts = sorted(self.positions)
        if not parts:
            return []
        order = parts[self._first % len(parts):] + parts[:self._first % len(parts)]
        self._first += 1
        share = max(1, -(-max_records // len(parts)))
        out: list[Message] = []
        for p in order:
            room = min(share, max_records - len(out))
            if room <= 0:
                break
            got = self.log.read(self.topic, p, from_offset=self.positions[p], limit=room)
            if got:
                self.positions[p] = got[-1].offset + 1
                out.extend(got)
        return out

    def close(self) -> None:
        self.positions.clear()


def _key_bytes(key: Any) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    return (key if type(key) is str else str(key)).encode("utf-8")


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of a keyed record: ``crc32(key) % partitions`` (stable everywhere)."""
    return zlib.crc32(key) % partitions


def to_us(when: datetime) -> int:
    """UTC microseconds since the epoch (a naive datetime is taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def as_retention(value: timedelta | float | str | None) -> timedelta | None:
    """A retention as a timedelta (None: forever); refuses zero, negative and bad text."""
    if value is None:
        return None
    try:
        out = (value if isinstance(value, timedelta) else
               parse_duration(value) if isinstance(value, str) else timedelta(seconds=value))
    except (ValueError, TypeError, OverflowError) as exc:
        raise UsageError(f"bad retention {value!r} ({exc})",
                         hint="a duration such as 7d, a timedelta, or seconds") from None
    if out <= timedelta(0):
        raise UsageError(f"bad retention {value!r}: it must be positive")
    return out


def open_stream_log(url: str, *, root: Path, namespace: str | None = None) -> StreamLog:
    """The log behind ``url`` (``embedded``, ``redis://``, ``kafka://``) for the project named
    ``namespace`` whose folder is ``root``: the embedded log's file is under ``root``; Redis
    keys are prefixed by the namespace (required there: ``ConfigError`` without it); Kafka
    uses neither. ``Project.streams`` passes the project's folder and name."""
    log: StreamLog = open_backend("streams", url, root=root, namespace=namespace)
    return log


def check_group(group: str) -> None:
    """A consumer group name: a non-empty string."""
    if not isinstance(group, str) or not group:
        raise UsageError(f"bad consumer group {group!r}", hint="a non-empty name")
