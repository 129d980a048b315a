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
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
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
    partition_for,
    to_us,
)

DEFAULT_PATH = Path(".tarmac") / "streams.db"
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_MAX_PARTITIONS = 1024

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS topics(name TEXT PRIMARY KEY, partitions INTEGER NOT NULL, "
    "retention_s REAL, created_us INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS partitions(topic TEXT NOT NULL, partition INTEGER NOT NULL, "
    "start_offset INTEGER NOT NULL, next_offset INTEGER NOT NULL, "
    "PRIMARY KEY(topic, partition)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS records(topic TEXT NOT NULL, partition INTEGER NOT NULL, "
    "offset INTEGER NOT NULL, ts_us INTEGER NOT NULL, key BLOB, value BLOB NOT NULL, "
    "PRIMARY KEY(topic, partition, offset)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS records_time ON records(topic, partition, ts_us)",
    "CREATE TABLE IF NOT EXISTS group_offsets(grp TEXT NOT NULL, topic TEXT NOT NULL, "
    "partition INTEGER NOT NULL, next_offset INTEGER NOT NULL, "
    "PRIMARY KEY(grp, topic, partition)) WITHOUT ROWID",
)
_READ = ("SELECT offset, ts_us, key, value FROM records WHERE topic = ? AND partition = ? "
         "AND offset >= ? ORDER BY offset LIMIT ?")
_INSERT = ("INSERT INTO records(topic, partition, offset, ts_us, key, value) "
           "VALUES (?, ?, ?, ?, ?, ?)")

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
        self._partitions: dict[str, int] = {}  # topic -> partition count (fixed once created)
        self._round_robin: dict[str, int] = {}  # topic -> next partition for unkeyed records
        self._first_partition: dict[tuple[str, str], int] = {}  # (group, topic): consume order
        self._positions: dict[tuple[str, str, int], int] = {}  # (group, topic, partition)
        self._create()

    # --- connections ---------------------------------------------------------------------------
    def _create(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("COMMIT")
        except (OSError, sqlite3.Error) as exc:
            raise BackendUnavailableError(
                f"cannot open the embedded stream log {self.path} ({exc})",
                hint="is the folder writable and the file a Tarmac stream log?") from None

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
                conn.execute("INSERT INTO topics VALUES (?, ?, ?, ?)",
                             (name, partitions, keep.total_seconds() if keep else None,
                              to_us(datetime.now(UTC))))
                conn.executemany("INSERT INTO partitions VALUES (?, ?, 0, 0)",
                                 [(name, p) for p in range(partitions)])
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
        count = self._partitions.get(topic)
        if count is None:
            row = self._query("SELECT partitions FROM topics WHERE name = ?", (topic,))
            if not row:
                names = [r[0] for r in self._query("SELECT name FROM topics")]
                raise self._unknown_topic(topic, names)
            count = self._partitions[topic] = row[0][0]
        return count

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
        count = self._partition_count(topic)
        encoded = self._encode(records, key, timestamp)
        if not encoded:
            return []
        now = to_us(datetime.now(UTC))
        rr = self._round_robin.get(topic, 0)
        parts: list[int] = []
        for k, _, _ in encoded:
            if k is None:
                parts.append(rr % count)
                rr += 1
            else:
                parts.append(partition_for(k, count))
        with self._write() as conn:
            nxt = dict(conn.execute("SELECT partition, next_offset FROM partitions "
                                    "WHERE topic = ?", (topic,)).fetchall())
            rows = []
            delivered = []
            for (k, value, ts), p in zip(encoded, parts, strict=True):
                offset = nxt[p]
                nxt[p] = offset + 1
                rows.append((topic, p, offset, now if ts is None else to_us(ts), k, value))
                delivered.append(Delivered(topic, p, offset))
            conn.executemany(_INSERT, rows)
            conn.executemany("UPDATE partitions SET next_offset = ? WHERE topic = ? AND "
                             "partition = ?", [(o, topic, p) for p, o in nxt.items()])
        self._round_robin[topic] = rr % count
        return delivered

    # --- reads ---------------------------------------------------------------------------------
    def _messages(self, topic: str, partition: int, offset: int, limit: int) -> list[Message]:
        rows = self._query(_READ, (topic, partition, offset, limit))
        return [Message(topic, partition, o, k, v, from_us(ts)) for o, ts, k, v in rows]

    def read(self, topic: str, partition: int, *, from_offset: int | None = None,
             from_time: datetime | None = None, limit: int = 1000) -> list[Message]:
        start, end = self._read_bounds(topic, partition, from_offset, from_time, limit)
        if from_time is not None:
            row = self._query("SELECT min(offset) FROM records WHERE topic = ? AND "
                              "partition = ? AND ts_us >= ?",
                              (topic, partition, to_us(from_time)))
            if row[0][0] is None:
                return []
            offset = row[0][0]
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
                parts = conn.execute("SELECT partition, start_offset, next_offset FROM "
                                     "partitions WHERE topic = ?", (name,)).fetchall()
                for p, start, end in parts:
                    keep = conn.execute("SELECT min(offset) FROM records WHERE topic = ? AND "
                                        "partition = ? AND ts_us >= ?",
                                        (name, p, cutoff)).fetchone()[0]
                    first = end if keep is None else keep
                    if first <= start:
                        continue
                    deleted += conn.execute("DELETE FROM records WHERE topic = ? AND "
                                            "partition = ? AND offset < ?",
                                            (name, p, first)).rowcount
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

