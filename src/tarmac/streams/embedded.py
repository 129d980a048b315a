"""The embedded log: one SQLite file in WAL mode in the project folder (``.tarmac/streams.db``),
no server.

Durability: a produce batch is one SQLite transaction (all records of the batch or none), and
its offsets are returned only after ``COMMIT``. With the default ``durability="full"``
(``PRAGMA synchronous=FULL``) the WAL is fsynced at every commit, so a confirmed record survives
a process kill *and* a power loss. ``durability="normal"`` (``synchronous=NORMAL``) fsyncs only
at checkpoints: faster, survives any process crash, and on power loss may lose the last
confirmed batches but never corrupts the file. A process killed mid-batch leaves nothing of that
batch (the transaction never committed).

Several processes may produce and consume at once: SQLite's locks serialize writers
(``BEGIN IMMEDIATE``, 30 s busy timeout) while readers read the last committed state. Offsets
come from a per-partition counter stored in the same transaction as the records, so they rise
monotonically, survive restarts, and are never reused after retention deleted records.

Layout (schema version 2, ``PRAGMA user_version``; 16 KiB pages for new files, which suit
records of a kilobyte): each partition has a number (``partitions.pid``) and a record is one
row of ``log`` whose integer primary key is ``pid << 40 | offset``, so a partition is one
contiguous range of SQLite's row-id B-tree (an append is an insert at its end, a read by offset
a range scan, retention a range delete). Reads by time use ``time_index``: per partition, only
the records that raise the partition's running maximum timestamp (one per batch when records
are stamped at append time), because the first offset whose timestamp is at or after ``t`` is
also the first whose running maximum reaches ``t`` (exact for out-of-order event times; the
same scheme as the Redis log). A file of schema version 1 (a ``records`` table keyed by topic,
partition and offset) is migrated in one transaction when it is first opened.
"""

from __future__ import annotations

import itertools
import os
import re
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tarmac.errors import BackendUnavailableError, ConfigError, UsageError
from tarmac.streams.log import (
    Delivered,
    KeyOf,
    Message,
    Produced,
    StreamLog,
    TopicInfo,
    as_retention,
    check_group,
    from_us,
    to_us,
)

DEFAULT_PATH = Path(".tarmac") / "streams.db"
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_MAX_PARTITIONS = 1024

SCHEMA_VERSION = 2
PAGE_SIZE = 16384  # for new files: rows of a kilobyte pack four to a page, not three to four
_OFFSET_BITS = 40  # a log row id is pid << 40 | offset: 10^12 offsets per partition
_MAX_OFFSET = (1 << _OFFSET_BITS) - 1
_MAX_PID = (1 << (63 - _OFFSET_BITS)) - 1  # row ids are signed 64-bit

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS topics(name TEXT PRIMARY KEY, partitions INTEGER NOT NULL, "
    "retention_s REAL, created_us INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS partitions(topic TEXT NOT NULL, partition INTEGER NOT NULL, "
    "start_offset INTEGER NOT NULL, next_offset INTEGER NOT NULL, pid INTEGER NOT NULL, "
    "PRIMARY KEY(topic, partition)) WITHOUT ROWID",
    "CREATE UNIQUE INDEX IF NOT EXISTS partitions_pid ON partitions(pid)",
    "CREATE TABLE IF NOT EXISTS log(id INTEGER PRIMARY KEY, ts_us INTEGER NOT NULL, key BLOB, "
    "value BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS time_index(pid INTEGER NOT NULL, ts_us INTEGER NOT NULL, "
    "offset INTEGER NOT NULL, PRIMARY KEY(pid, ts_us)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS group_offsets(grp TEXT NOT NULL, topic TEXT NOT NULL, "
    "partition INTEGER NOT NULL, next_offset INTEGER NOT NULL, "
    "PRIMARY KEY(grp, topic, partition)) WITHOUT ROWID",
)
# schema version 1 -> 2: number the partitions, move the records into `log`, build the index
_MIGRATE_1 = (
    "ALTER TABLE partitions ADD COLUMN pid INTEGER NOT NULL DEFAULT 0",
    "UPDATE partitions SET pid = (SELECT n FROM (SELECT topic AS t, partition AS p, "
    "row_number() OVER (ORDER BY topic, partition) AS n FROM partitions) "
    "WHERE t = partitions.topic AND p = partitions.partition)",
    *_SCHEMA,
    "INSERT INTO log(id, ts_us, key, value) SELECT (p.pid << 40) | r.offset, r.ts_us, r.key, "
    "r.value FROM records r JOIN partitions p ON p.topic = r.topic AND p.partition = "
    "r.partition",
    "INSERT INTO time_index(pid, ts_us, offset) SELECT pid, ts_us, offset FROM (SELECT p.pid, "
    "r.ts_us, r.offset, max(r.ts_us) OVER (PARTITION BY p.pid ORDER BY r.offset ROWS BETWEEN "
    "UNBOUNDED PRECEDING AND 1 PRECEDING) AS before FROM records r JOIN partitions p ON "
    "p.topic = r.topic AND p.partition = r.partition) WHERE before IS NULL OR ts_us > before",
    "DROP TABLE records",
)
_READ = "SELECT id, ts_us, key, value FROM log WHERE id >= ? AND id <= ? ORDER BY id LIMIT ?"
_INSERT = "INSERT INTO log(id, ts_us, key, value) VALUES (?, ?, ?, ?)"
_FIRST_AT = ("SELECT offset FROM time_index WHERE pid = ? AND ts_us >= ? ORDER BY ts_us "
             "LIMIT 1")

# Connections opened by a parent before a fork: the child must neither use nor close them.
_INHERITED: list[sqlite3.Connection] = []


class EmbeddedLog(StreamLog):
    """The stream log in one SQLite file (WAL); one connection per process, shared by its
    threads under a lock."""

    @classmethod
    def from_url(cls, url: str, *, root: Path, namespace: str | None = None,
                 path: Path | None = None, durability: str = "full") -> EmbeddedLog:
        """``embedded``: the file ``.tarmac/streams.db`` under the project folder ``root`` (the
        file belongs to one project, so the ``namespace`` is not stored)."""
        if url != "embedded":
            raise ConfigError(f"streams URL {url!r}: expected 'embedded'",
                              hint="fix streams in tarmac.yaml")
        target = Path(path) if path is not None else DEFAULT_PATH
        return cls(target if target.is_absolute() else Path(root) / target,
                   durability=durability)

    def __init__(self, path: Path, *, durability: str = "full") -> None:
        if durability not in ("full", "normal"):
            raise UsageError(f"durability {durability!r}: expected 'full' or 'normal'")
        self.path = Path(path)
        self.url = "embedded"
        self.durability = durability
        self._lock = threading.RLock()
        self._conn_: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._closed = False
        self._partitions: dict[str, list[int]] = {}  # topic -> pid per partition (fixed)
        self._round_robin: dict[str, int] = {}  # topic -> next partition for unkeyed records
        self._first_partition: dict[tuple[str, str], int] = {}  # (group, topic): consume order
        self._positions: dict[tuple[str, str, int], int] = {}  # (group, topic, partition)
        self._create()

    # --- connections ---------------------------------------------------------------------------
    def _create(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as conn:
                if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                    return
                conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # only a new file takes it
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    self._set_up(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except (OSError, sqlite3.Error) as exc:
            raise BackendUnavailableError(
                f"cannot open the embedded stream log {self.path} ({exc})",
                hint="is the folder writable and the file a Tarmac stream log?") from None

    def _set_up(self, conn: sqlite3.Connection) -> None:
        """Create the schema, or migrate an older one (in the caller's transaction)."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return  # another process set it up first
        if version > SCHEMA_VERSION:
            raise UsageError(f"the embedded stream log {self.path} has schema version "
                             f"{version}, newer than this Tarmac knows ({SCHEMA_VERSION})",
                             hint="upgrade Tarmac")
        old = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = "
                           "'records'").fetchone()
        for statement in _MIGRATE_1 if old else _SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise UsageError(f"stream log {self.path} is closed",
                             hint="open it again (tarmac.open(...).streams)")
        pid = os.getpid()
        if pid != self._pid:  # forked: the parent's connection is not ours
            if self._conn_ is not None:
                _INHERITED.append(self._conn_)
            self._conn_, self._pid, self._lock = None, pid, threading.RLock()
            self._positions = {}
        if self._conn_ is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA synchronous={self.durability.upper()}")
            conn.execute("PRAGMA busy_timeout=30000")
            self._conn_ = conn
        return self._conn_

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: writers queue on SQLite's lock)."""
        with self._lock:
            conn = self._conn()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:  # disk full, locked past the timeout, I/O
                raise self._unavailable(exc, "; nothing of this write was kept") from None

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._conn().execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise self._unavailable(exc) from None

    def _unavailable(self, exc: sqlite3.Error, note: str = "") -> BackendUnavailableError:
        return BackendUnavailableError(
            f"embedded stream log {self.path}: {exc}{note}",
            hint="is the disk full or the folder read-only? another process holding the log "
                 "for more than 30 s?")

    # --- topics --------------------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 1,
                     retention: timedelta | float | str | None = None, *,
                     exist_ok: bool = False) -> TopicInfo:
        if not isinstance(name, str) or not _TOPIC_NAME.match(name):
            raise UsageError(f"bad topic name {name!r}",
                             hint="letters, digits, '.', '_' and '-', up to 200 characters, "
                                  "starting with a letter or digit")
        if not isinstance(partitions, int) or not 1 <= partitions <= _MAX_PARTITIONS:
            raise UsageError(f"topic {name!r}: bad partition count {partitions!r}",
                             hint=f"between 1 and {_MAX_PARTITIONS}")
        keep = as_retention(retention)
        with self._write() as conn:
            row = conn.execute("SELECT partitions FROM topics WHERE name = ?", (name,)).fetchone()
            if row is not None:
                if not exist_ok:
                    raise UsageError(f"topic {name!r} exists already ({row[0]} partitions)")
                if row[0] != partitions:
                    raise UsageError(f"topic {name!r} exists with {row[0]} partitions, not "
                                     f"{partitions}", hint="partition counts are fixed")
            else:
                first = conn.execute("SELECT coalesce(max(pid), 0) + 1 FROM partitions"
                                     ).fetchone()[0]
                if first + partitions - 1 > _MAX_PID:
                    raise UsageError(f"the embedded stream log {self.path} holds the most "
                                     f"partitions it can ({_MAX_PID:,})")
                conn.execute("INSERT INTO topics VALUES (?, ?, ?, ?)",
                             (name, partitions, keep.total_seconds() if keep else None,
                              to_us(datetime.now(UTC))))
                conn.executemany("INSERT INTO partitions(topic, partition, start_offset, "
                                 "next_offset, pid) VALUES (?, ?, 0, 0, ?)",
                                 [(name, p, first + p) for p in range(partitions)])
        return self.topic(name)

    def topics(self) -> list[TopicInfo]:
        rows = self._query(
            "SELECT t.name, t.partitions, t.retention_s, p.start_offset, p.next_offset "
            "FROM topics t JOIN partitions p ON p.topic = t.name ORDER BY t.name, p.partition")
        out: dict[str, TopicInfo] = {}
        for name, count, retention_s, start, end in rows:
            if name not in out:
                out[name] = TopicInfo(name, count, None if retention_s is None
                                      else timedelta(seconds=retention_s))
            out[name].start_offsets.append(start)
            out[name].end_offsets.append(end)
        return list(out.values())

    def _partition_count(self, topic: str) -> int:
        return len(self._pids(topic))

    def _pids(self, topic: str) -> list[int]:
        """The number (``pid``) of each partition of ``topic`` (``TopicNotFoundError``)."""
        pids = self._partitions.get(topic)
        if pids is None:
            rows = self._query("SELECT pid FROM partitions WHERE topic = ? ORDER BY partition",
                               (topic,))
            if not rows:
                names = [r[0] for r in self._query("SELECT name FROM topics")]
                raise self._unknown_topic(topic, names)
            pids = self._partitions[topic] = [r[0] for r in rows]
        return pids

    def _bounds(self, topic: str, partition: int) -> tuple[int, int]:
        row = self._query("SELECT start_offset, next_offset FROM partitions WHERE topic = ? "
                          "AND partition = ?", (topic, partition))
        return row[0][0], row[0][1]

    def end_offsets(self, topic: str) -> list[int]:
        self._partition_count(topic)
        return [r[0] for r in self._query(
            "SELECT next_offset FROM partitions WHERE topic = ? ORDER BY partition", (topic,))]

    # --- produce -------------------------------------------------------------------------------
    def produce(self, topic: str, records: Sequence[Produced], *, key: KeyOf = None,
                timestamp: datetime | None = None) -> list[Delivered]:
        pids = self._pids(topic)
        count = len(pids)
        encoded = self._encode(records, key, timestamp)
        if not encoded:
            return []
        now = to_us(datetime.now(UTC))
        keys, values, stamps = zip(*encoded, strict=True)
        stamped = any(ts is not None for ts in stamps)
        times = [now if ts is None else to_us(ts) for ts in stamps] if stamped else None
        rr = self._round_robin.get(topic, 0)
        if None in keys:
            parts = []
            for k in keys:
                if k is None:
                    parts.append(rr % count)
                    rr += 1
                else:
                    parts.append(zlib.crc32(k) % count)
        else:  # partition_for(k, count), inlined: the same crc32 % partitions
            parts = [zlib.crc32(k) % count for k in keys]
        with self._write() as conn:
            nxt = dict(conn.execute("SELECT partition, next_offset FROM partitions "
                                    "WHERE topic = ?", (topic,)).fetchall())
            first = {p: nxt[p] for p in set(parts)}
            offsets = _number(parts, nxt)
            if any(n > _MAX_OFFSET for n in nxt.values()):
                raise UsageError(f"topic {topic!r}: a partition would pass offset "
                                 f"{_MAX_OFFSET:,}, the most the embedded log holds")
            ids = [(pids[p] << _OFFSET_BITS) | o for p, o in zip(parts, offsets, strict=True)]
            conn.executemany(_INSERT, zip(ids, times or [now] * len(ids), keys, values,
                                          strict=True))
            conn.executemany("UPDATE partitions SET next_offset = ? WHERE topic = ? AND "
                             "partition = ?", [(nxt[p], topic, p) for p in first])
            top = {p: conn.execute("SELECT max(ts_us) FROM time_index WHERE pid = ?",
                                   (pids[p],)).fetchone()[0] for p in first}
            if times is None:  # stamped at append time: the first record of each partition
                raises = [(pids[p], now, o) for p, o in first.items()
                          if top[p] is None or now > top[p]]
            else:
                raises = _raises(pids, parts, times, offsets, top)
            conn.executemany("INSERT INTO time_index(pid, ts_us, offset) VALUES (?, ?, ?)",
                             raises)
        self._round_robin[topic] = rr % count
        return [Delivered(topic, p, o) for p, o in zip(parts, offsets, strict=True)]

    # --- reads ---------------------------------------------------------------------------------
    def _messages(self, topic: str, partition: int, offset: int, limit: int) -> list[Message]:
        if limit <= 0:
            return []
        base = self._pids(topic)[partition] << _OFFSET_BITS
        rows = self._query(_READ, (base | offset, base | _MAX_OFFSET, limit))
        times = {ts: from_us(ts) for ts in {r[1] for r in rows}}
        return [Message(topic, partition, i - base, k, v, times[ts]) for i, ts, k, v in rows]

    def read(self, topic: str, partition: int, *, from_offset: int | None = None,
             from_time: datetime | None = None, limit: int = 1000) -> list[Message]:
        start, end = self._read_bounds(topic, partition, from_offset, from_time, limit)
        if from_time is not None:
            row = self._query(_FIRST_AT, (self._pids(topic)[partition], to_us(from_time)))
            if not row:
                return []
            offset = max(row[0][0], start)
        elif from_offset is None:
            offset = start
        else:
            self._check_offset(topic, partition, from_offset, start, end)
            offset = from_offset
        return self._messages(topic, partition, offset, limit)

    def _check_offset(self, topic: str, partition: int, offset: int, start: int,
                      end: int) -> None:
        if not isinstance(offset, int) or offset < 0 or offset > end:
            raise UsageError(f"topic {topic!r} partition {partition}: bad offset {offset!r}",
                             hint=f"offsets held now are {start}..{end - 1}; {end} is the "
                                  "next one to be written")
        if offset < start:
            raise UsageError(f"topic {topic!r} partition {partition}: offset {offset} was "
                             f"deleted by retention", hint=f"the earliest offset held is {start}")

    # --- consumer groups -----------------------------------------------------------------------
    def _position(self, group: str, topic: str, partition: int) -> int:
        pos = self._positions.get((group, topic, partition))
        if pos is None:
            row = self._query("SELECT next_offset FROM group_offsets WHERE grp = ? AND "
                              "topic = ? AND partition = ?", (group, topic, partition))
            pos = row[0][0] if row else 0
        return pos

    def consume(self, topic: str, group: str, *, max_records: int = 500,
                timeout: float = 0.0) -> list[Message]:
        count = self._partition_count(topic)
        check_group(group)
        if not isinstance(max_records, int) or max_records < 1:
            raise UsageError(f"consume: bad max_records {max_records!r}", hint="a count >= 1")
        deadline = time.monotonic() + max(0.0, timeout)
        first = self._first_partition.get((group, topic), 0)
        while True:
            out: list[Message] = []
            with self._lock:
                starts = dict(self._query("SELECT partition, start_offset FROM partitions "
                                          "WHERE topic = ?", (topic,)))
                for i in range(count):
                    p = (first + i) % count
                    pos = max(self._position(group, topic, p), starts[p])
                    got = self._messages(topic, p, pos, max_records - len(out))
                    self._positions[(group, topic, p)] = got[-1].offset + 1 if got else pos
                    out.extend(got)
                    if len(out) >= max_records:
                        break
            self._first_partition[(group, topic)] = (first + 1) % count
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))

    def commit(self, group: str,
               offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        rows = [(group, t, p, o) for t, p, o in self._commits(group, offsets)]
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO group_offsets VALUES (?, ?, ?, ?) ON CONFLICT(grp, topic, "
                "partition) DO UPDATE SET next_offset = excluded.next_offset", rows)
        for group_, topic, partition, offset in rows:
            self._positions[(group_, topic, partition)] = offset

    def committed(self, group: str, topic: str) -> dict[int, int]:
        self._partition_count(topic)
        return dict(self._query("SELECT partition, next_offset FROM group_offsets WHERE "
                                "grp = ? AND topic = ? ORDER BY partition", (group, topic)))

    def seek(self, group: str, topic: str, partition: int, offset: int) -> None:
        check_group(group)
        self._check_partition(topic, partition)
        start, end = self._bounds(topic, partition)
        self._check_offset(topic, partition, offset, start, end)
        self._positions[(group, topic, partition)] = offset

    # --- maintenance ---------------------------------------------------------------------------
    def apply_retention(self, now: datetime | None = None) -> int:
        now_us = to_us(now or datetime.now(UTC))
        deleted = 0
        with self._write() as conn:
            topics = conn.execute("SELECT name, retention_s FROM topics WHERE retention_s IS "
                                  "NOT NULL").fetchall()
            for name, retention_s in topics:
                cutoff = now_us - int(retention_s * 1_000_000)
                parts = conn.execute("SELECT partition, start_offset, next_offset, pid FROM "
                                     "partitions WHERE topic = ?", (name,)).fetchall()
                for p, start, end, pid in parts:
                    keep = conn.execute(_FIRST_AT, (pid, cutoff)).fetchone()
                    first = end if keep is None else keep[0]
                    if first <= start:
                        continue
                    base = pid << _OFFSET_BITS
                    deleted += conn.execute("DELETE FROM log WHERE id >= ? AND id < ?",
                                            (base | start, base | first)).rowcount
                    conn.execute("DELETE FROM time_index WHERE pid = ? AND offset < ?",
                                 (pid, first))
                    conn.execute("UPDATE partitions SET start_offset = ? WHERE topic = ? AND "
                                 "partition = ?", (first, name, p))
        return deleted

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn, self._conn_ = self._conn_, None
            if conn is not None:
                if os.getpid() == self._pid:
                    conn.close()
                else:
                    _INHERITED.append(conn)



def _raises(pids: list[int], parts: list[int], times: list[int], offsets: list[int],
            top: dict[int, int | None]) -> list[tuple[int, int, int]]:
    """The time-index rows of a batch: (pid, timestamp, offset) of each record that raises its
    partition's running maximum timestamp (``top``: the maximum so far, per partition)."""
    high = {p: -1 if t is None else t for p, t in top.items()}
    out = []
    for p, ts, o in zip(parts, times, offsets, strict=True):
        if ts > high[p]:
            high[p] = ts
            out.append((pids[p], ts, o))
    return out


def _number(parts: list[int], nxt: dict[int, int]) -> list[int]:
    """The offset of each record of a batch (records in ``parts`` order), advancing ``nxt``
    (partition -> next offset) past them."""
    counters = {p: itertools.count(nxt[p]) for p in set(parts)}
    offsets = [next(counters[p]) for p in parts]
    for p, counter in counters.items():
        nxt[p] = next(counter)
    return offsets
