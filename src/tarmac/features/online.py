"""The online store: the latest feature values of every entity, read on the serving hot path.

One record per (view, entity key): the event time of the value (int, UTC microseconds) and a
payload (bytes, orjson of the feature dict, made by the caller). Entity keys arrive already
encoded to strings (``tarmac.features.keys.encode_key``); the store never looks inside them.

Two rules hold on every backend:

* a write never regresses a value: a record is replaced only when the incoming event time is
  ``>=`` the stored one, so replaying a batch or a late, older row is harmless;
* a batch and the caller's checkpoint for the view land in ONE atomic step: after a crash either
  both are there or neither, so a materializer resumes from the checkpoint without gaps.

Backends, chosen by URL (``open_online_store``):

* ``sqlite:///path.db`` (relative to the project folder) - embedded, one file, WAL. A connection
  per thread (readers run in parallel) and per process (reconnects after ``fork``);
* ``redis://host:port/db`` - values ``b"<event_us>|" + payload`` under
  ``tarmac:{namespace}:{view}:{key}``; a batch is one Lua script (atomic), a read one ``MGET``.

Example::

    store = open_online_store("sqlite:///.tarmac/online.db", namespace="shop", root=root)
    store.write_batch("users", ["1", "2"], [t1, t2], [b'{"age":3}', b'{"age":5}'],
                      checkpoint='{"version": 7}')
    store.read([("users", ["1", "3"])])   # [[(t1, b'{"age":3}'), None]]
"""

from __future__ import annotations

import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from contextlib import closing
from itertools import repeat
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

from tarmac.config import open_backend, redact
from tarmac.errors import BackendUnavailableError, ConfigError, UsageError

ReadResult = list[list[tuple[int, bytes] | None]]

__all__ = ["OnlineStore", "ReadResult", "RedisOnlineStore", "SqliteOnlineStore",
           "open_online_store"]


class OnlineStore(ABC):
    """Latest feature values per (view, entity key), with a checkpoint per view."""

    url: str  # redacted URL, for messages

    @abstractmethod
    def write_batch(self, view: str, keys: list[str], event_us: list[int],
                    payloads: list[bytes], *, checkpoint: str | None = None) -> int:
        """Upsert in one atomic step: a record is replaced only if the incoming event time is >=
        the stored one (so replaying a batch, or a late older row, never regresses a value).
        `checkpoint` (an opaque JSON string of the caller) is stored for `view` in the SAME atomic
        step: after a crash, either the batch and its checkpoint are both there or neither.
        Returns the number of records written (replaced or new)."""

    @abstractmethod
    def read(self, requests: list[tuple[str, list[str]]]) -> ReadResult:
        """For each (view, keys): per key (event_us, payload) or None if absent, in the order
        asked. One round trip for Redis, one query per view for SQLite (the serving hot path)."""

    @abstractmethod
    def checkpoint(self, view: str) -> str | None:
        """The checkpoint stored with the last batch of `view`, or None."""

    @abstractmethod
    def clear(self, view: str) -> None:
        """Drop all records and the checkpoint of a view."""

    @abstractmethod
    def count(self, view: str) -> int:
        """How many records `view` holds."""

    @abstractmethod
    def views(self) -> list[str]:
        """Views that have records or a checkpoint, sorted."""

    def present(self) -> bool:
        """Whether the store's data is there (a SQLite file that exists and is the one this
        store opened); a server's store is always present when it answers."""
        return True

    @abstractmethod
    def ping(self) -> None:
        """Raise BackendUnavailableError if the store cannot be reached."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store cannot be used afterwards."""

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def _check_batch(self, view: str, keys: list[str], event_us: list[int],
                     payloads: list[bytes]) -> None:
        """Refuse a malformed batch before anything is written."""
        _check_view(view, self.url)
        if not len(keys) == len(event_us) == len(payloads):
            raise UsageError(
                f"online store {self.url}: batch for view {view!r} has {len(keys)} keys, "
                f"{len(event_us)} event times and {len(payloads)} payloads; nothing was written",
                hint="pass one event time and one payload per key",
            )


def _check_view(view: str, url: str) -> None:
    """View names become part of Redis keys: no ':' (it separates the parts) and no leading '_'
    (reserved for the store's own keys), on every backend so a project can switch backends."""
    if not isinstance(view, str) or not view or ":" in view or view[0] == "_":
        raise UsageError(
            f"online store {url}: bad view name {view!r}",
            hint="a view name is non-empty, has no ':' and does not start with '_'",
        )


def open_online_store(url: str, *, namespace: str, root: Path,
                      create: bool = True) -> OnlineStore:
    """The online store behind `url`: ``sqlite:///relative/or/absolute.db`` (relative to `root`;
    the parent folder is created) or ``redis://host:port/db``. ``create=False`` (readers): a
    SQLite file that does not exist is created by the first write, never by a read.
    `namespace` (the project name) prefixes Redis keys so two projects can share one Redis:
    ``tarmac:{namespace}:{view}:{key}``. A SQLite file belongs to one project, so the
    namespace is not stored there."""
    store: OnlineStore = open_backend("online_store", url, namespace=namespace, root=root,
                                      create=create)
    return store


# --------------------------------------------------------------------------------------------
# SQLite

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS feature_values(view TEXT NOT NULL, key TEXT NOT NULL, "
    "event_us INTEGER NOT NULL, payload BLOB NOT NULL, PRIMARY KEY(view, key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS feature_checkpoints(view TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_UPSERT = (
    "INSERT INTO feature_values(view, key, event_us, payload) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(view, key) DO UPDATE SET event_us = excluded.event_us, "
    "payload = excluded.payload WHERE excluded.event_us >= feature_values.event_us"
)
_SET_CHECKPOINT = (
    "INSERT INTO feature_checkpoints(view, value) VALUES (?, ?) "
    "ON CONFLICT(view) DO UPDATE SET value = excluded.value"
)
_READ_ONE = "SELECT event_us, payload FROM feature_values WHERE view = ? AND key = ?"
# Reads of n keys use `key IN (...)` with n rounded up to a power of two (padded with a repeated
# key), so a handful of statements covers every size and stays in sqlite3's statement cache.
_MAX_IN = 512
_READ_IN = {
    1 << i: "SELECT key, event_us, payload FROM feature_values WHERE view = ? AND key IN ("
    + ",".join("?" * (1 << i)) + ")"
    for i in range(_MAX_IN.bit_length())
}
# Distinct views by skip-scan over the primary key (one index seek per view, not a table scan).
_VIEWS = (
    "WITH RECURSIVE v(view) AS (SELECT min(view) FROM feature_values UNION ALL "
    "SELECT (SELECT min(view) FROM feature_values WHERE view > v.view) FROM v "
    "WHERE v.view IS NOT NULL) "
    "SELECT view FROM v WHERE view IS NOT NULL UNION SELECT view FROM feature_checkpoints "
    "ORDER BY 1"
)

# Connections opened by a parent process before a fork: the child must neither use nor close
# them (SQLite forbids carrying a connection across fork), so they are parked here for good.
_INHERITED: list[sqlite3.Connection] = []


class SqliteOnlineStore(OnlineStore):
    """The online store in one SQLite file (WAL): a connection per thread and per process."""

    @classmethod
    def from_url(cls, url: str, *, namespace: str, root: Path,
                 create: bool = True) -> SqliteOnlineStore:
        """``sqlite:///relative.db`` (relative to ``root``) or ``sqlite:////absolute.db``; the
        namespace is not stored (a SQLite file belongs to one project)."""
        rest = url.split("://", 1)[1].split("?", 1)[0]
        if not rest.startswith("/") or rest in ("/", "/:memory:"):
            raise ConfigError(
                f"online store URL {redact(url)!r}: expected sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db",
                hint="the online store is shared by processes, so it must be a file",
            )
        path = Path(rest[1:])
        return cls(path if path.is_absolute() else Path(root) / path, create=create)

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: dict[int, sqlite3.Connection] = {}  # thread ident -> its connection
        self._pid = os.getpid()
        self._closed = False
        self._good_views: set[str] = set()  # view names read before, known to be valid
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file opened
        if create:
            self._create()

    def _create(self) -> None:
        """Create the file and its tables (a writer's first step; idempotent). Connections
        never create the file: a deleted store is reported as absent, not silently
        recreated empty."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("COMMIT")
            identity = self._stat()
            if identity != self._identity:  # created anew: connections to a former file go
                self._drop_connections()
            self._identity = identity
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise BackendUnavailableError(
                f"cannot open the online store {self.url} ({exc})",
                hint="is the folder writable and the file a Tarmac online store?",
            ) from None

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def present(self) -> bool:
        identity = self._stat()
        return identity is not None and (self._identity is None or identity == self._identity)

    def _drop_connections(self) -> None:
        self._local = threading.local()
        with self._lock:
            conns, self._conns = self._conns, {}
        if os.getpid() != self._pid:
            _INHERITED.extend(conns.values())
            return
        for conn in conns.values():
            conn.close()

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection in this process (the hot path: two attribute reads)."""
        local = self._local
        if getattr(local, "pid", None) == os.getpid():
            conn: sqlite3.Connection = local.conn
            return conn
        return self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise UsageError(f"online store {self.url} is closed",
                             hint="open it again with open_online_store")
        pid = os.getpid()
        if pid != self._pid:  # forked: the parent's connections are not ours
            _INHERITED.extend(self._conns.values())
            self._conns = {}
            self._lock = threading.Lock()
            self._pid = pid
        identity = self._stat()
        if identity is None:
            raise BackendUnavailableError(
                f"online store {self.url} does not exist: nothing has been materialized "
                "(or the file was deleted)", hint="run `tarmac features materialize`")
        try:  # mode=rw: a connection never creates the file (only a writer's _create does)
            conn = sqlite3.connect(f"file:{quote(str(self.path))}?mode=rw", uri=True,
                                   timeout=30, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._unavailable(exc, " while opening") from None
        if self._identity is None:
            self._identity = identity
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA mmap_size=268435456")  # reads from the OS page cache, no syscalls
        threading.current_thread()  # registers a thread not started by `threading` as alive
        ident = threading.get_ident()
        with self._lock:
            alive = {t.ident for t in threading.enumerate()}
            for gone in [t for t in self._conns if t not in alive or t == ident]:
                self._conns.pop(gone).close()  # its thread ended: nobody else uses it
            self._conns[ident] = conn
        self._local.conn, self._local.pid = conn, pid
        return conn

    def write_batch(self, view: str, keys: list[str], event_us: list[int],
                    payloads: list[bytes], *, checkpoint: str | None = None) -> int:
        self._check_batch(view, keys, event_us, payloads)
        if not keys and checkpoint is None:
            return 0
        if not self.present():  # a writer creates the store (again, if it was deleted)
            self._create()
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.total_changes
                conn.executemany(_UPSERT, zip(repeat(view), keys, event_us, payloads,
                                              strict=False))
                written = conn.total_changes - before
                if checkpoint is not None:
                    conn.execute(_SET_CHECKPOINT, (view, checkpoint))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except (sqlite3.ProgrammingError, sqlite3.InterfaceError, sqlite3.IntegrityError,
                ValueError, OverflowError) as exc:
            raise UsageError(
                f"online store {self.url}: batch for view {view!r} refused ({exc}); "
                "nothing of it was written",
                hint="keys are str, event times int (UTC microseconds), payloads bytes",
            ) from None
        except sqlite3.Error as exc:
            raise self._unavailable(exc, f" while writing view {view!r}; nothing of the "
                                    "batch was applied") from None
        return written

    def read(self, requests: list[tuple[str, list[str]]]) -> ReadResult:
        conn = self._conn()
        out: ReadResult = []
        try:
            for view, keys in requests:
                if view not in self._good_views:
                    self._check_read_view(view)
                n = len(keys)
                if n == 1:
                    out.append([conn.execute(_READ_ONE, (view, keys[0])).fetchone()])
                elif n == 0:
                    out.append([])
                else:
                    found: dict[str, tuple[int, bytes]] = {}
                    for start in range(0, n, _MAX_IN):
                        chunk = keys[start:start + _MAX_IN]
                        m = len(chunk)
                        size = 1 << (m - 1).bit_length()
                        params = [view, *chunk]
                        if size > m:
                            params += [chunk[-1]] * (size - m)
                        for row in conn.execute(_READ_IN[size], params):
                            found[row[0]] = row[1:]
                    out.append(list(map(found.get, keys)))
        except sqlite3.Error as exc:
            raise self._unavailable(exc, " while reading") from None
        return out

    def checkpoint(self, view: str) -> str | None:
        _check_view(view, self.url)
        if not self.present():
            return None
        row = self._query("SELECT value FROM feature_checkpoints WHERE view = ?", (view,))
        return None if row is None else str(row[0])

    def clear(self, view: str) -> None:
        _check_view(view, self.url)
        if not self.present():
            return  # nothing stored: nothing to clear
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM feature_values WHERE view = ?", (view,))
                conn.execute("DELETE FROM feature_checkpoints WHERE view = ?", (view,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._unavailable(exc, f" while clearing view {view!r}") from None

    def count(self, view: str) -> int:
        _check_view(view, self.url)
        if not self.present():
            return 0
        row = self._query("SELECT count(*) FROM feature_values WHERE view = ?", (view,))
        return int(row[0]) if row else 0

    def views(self) -> list[str]:
        if not self.present():
            return []
        try:
            return [row[0] for row in self._conn().execute(_VIEWS)]
        except sqlite3.Error as exc:
            raise self._unavailable(exc, " while listing views") from None

    def ping(self) -> None:
        if not self.present():  # nothing to reach yet: whether data is there is present()'s
            return
        self._query("SELECT 1", ())

    def close(self) -> None:
        self._closed = True
        self._drop_connections()

    def _check_read_view(self, view: str) -> None:
        _check_view(view, self.url)
        if len(self._good_views) < 10_000:  # bounded: view names may come from requests
            self._good_views.add(view)

    def _query(self, sql: str, params: tuple[Any, ...]) -> Any:
        try:
            return self._conn().execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise self._unavailable(exc, "") from None

    def _unavailable(self, exc: sqlite3.Error, where: str) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"online store {self.url} failed{where} ({exc})",
            hint="is the disk full, the file locked by a stuck process, or not an online store?",
        )


# --------------------------------------------------------------------------------------------
# Redis

# KEYS: [1] the set of view names, [2] the checkpoint key of the view, [3..] the record keys.
# ARGV: [1] the view, [2] '1' if a checkpoint is given, [3] the checkpoint, then per record
# its event time and payload. All reads come first: a script that errors half-way (a value that
# is not a record under one of our keys) has written nothing, because Redis does not roll
# scripts back. The shebang makes Redis refuse the whole script up front when it is out of
# memory. Keys go by MGET/MSET in chunks (one redis.call per key is ~2x slower).
_BATCH_LUA = """#!lua
local n = #KEYS - 2
local chunk = 1000  -- keys per MGET / MSET: unpack() is limited to a few thousand values
local latest = {}
local take = {}
local written = 0
for first = 1, n, chunk do
  local last = math.min(first + chunk - 1, n)
  local olds = redis.call('MGET', unpack(KEYS, first + 2, last + 2))
  for i = first, last do
    local key = KEYS[i + 2]
    local stored = latest[key]
    if stored == nil then
      local old = olds[i - first + 1]
      stored = false
      if old then
        local bar = string.find(old, '|', 1, true)
        stored = bar and tonumber(string.sub(old, 1, bar - 1))
        if not stored then
          return redis.error_reply('ERR ' .. key .. ' does not hold a Tarmac feature record')
        end
      end
    end
    local ts = tonumber(ARGV[2 * i + 2])
    if stored == false or ts >= stored then
      take[i] = true
      latest[key] = ts
      written = written + 1
    else
      latest[key] = stored
    end
  end
end
local pairs = {}
for i = 1, n do
  if take[i] then
    pairs[#pairs + 1] = KEYS[i + 2]
    pairs[#pairs + 1] = ARGV[2 * i + 2] .. '|' .. ARGV[2 * i + 3]
  end
end
for first = 1, #pairs, 2 * chunk do
  redis.call('MSET', unpack(pairs, first, math.min(first + 2 * chunk - 1, #pairs)))
end
if ARGV[2] == '1' then
  redis.call('SET', KEYS[2], ARGV[3])
end
if n > 0 or ARGV[2] == '1' then
  redis.call('SADD', KEYS[1], ARGV[1])
end
return written
"""

_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "\\*?[]"})


def _decode(value: bytes | None) -> tuple[int, bytes] | None:
    if value is None:
        return None
    ts, _, payload = value.partition(b"|")
    return int(ts), payload


class RedisOnlineStore(OnlineStore):
    """The online store in Redis: one key per record, batches by one atomic Lua script.

    ``count`` and ``clear`` walk the namespace with SCAN (they cost O(keys in the database), fine
    for maintenance, not for the hot path); ``clear`` is not atomic against a concurrent writer
    of the same view. Standalone Redis only: a batch spans many hash slots, so no Cluster."""

    @classmethod
    def from_url(cls, url: str, *, namespace: str, root: Path,
                 create: bool = True) -> RedisOnlineStore:
        """``redis://[user:password@]host:port/db``; keys are prefixed by ``namespace``
        (``create`` is for file stores: a Redis server has nothing to create)."""
        return cls(url, namespace=namespace)

    def __init__(self, url: str, *, namespace: str) -> None:
        self.url = redact(url)
        if not namespace or ":" in namespace:
            raise UsageError(f"online store {self.url}: bad namespace {namespace!r}",
                             hint="the namespace is the project name: non-empty, no ':'")
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ModuleNotFoundError:
            raise ConfigError(
                f"the online store URL {self.url} points at Redis but the client is not installed",
                hint="pip install 'tarmac[redis]'",
            ) from None
        self._errors: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
        self._response_error: type[Exception] = redis.ResponseError
        db = urlsplit(url).path.strip("/")
        if db and not db.isdigit():  # redis-py would silently fall back to db 0
            raise ConfigError(f"online store URL {self.url}: the database {db!r} is not a number",
                              hint="expected redis://[user:password@]host:port/db, db like 0")
        try:
            # One retry, at once, on a dropped connection (an idle socket closed by the server or
            # a proxy); a batch is idempotent, so retrying one whose reply was lost is safe.
            pool = redis.ConnectionPool.from_url(
                url, socket_connect_timeout=2, socket_timeout=10, decode_responses=False,
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)))
        except ValueError as exc:
            raise ConfigError(f"online store URL {self.url}: {exc}",
                              hint="expected redis://[user:password@]host:port/db") from None
        self._pool = pool
        self._client = redis.Redis(connection_pool=pool)
        self._script = self._client.register_script(_BATCH_LUA)
        self._base = f"tarmac:{namespace}:"
        self._views_key = f"{self._base}_views"
        self._prefixes: dict[str, str] = {}
        self._closed = False
        self.ping()

    def _prefix(self, view: str) -> str:
        prefix = self._prefixes.get(view)
        if prefix is None:
            _check_view(view, self.url)
            prefix = f"{self._base}{view}:"
            if len(self._prefixes) < 10_000:
                self._prefixes[view] = prefix
        return prefix

    def write_batch(self, view: str, keys: list[str], event_us: list[int],
                    payloads: list[bytes], *, checkpoint: str | None = None) -> int:
        self._check_batch(view, keys, event_us, payloads)
        if not keys and checkpoint is None:
            return 0
        self._check_open()
        n = len(keys)
        redis_keys = [self._views_key, f"{self._base}_checkpoint:{view}"]
        redis_keys += map(self._prefix(view).__add__, keys)
        args: list[Any] = [None] * (3 + 2 * n)
        args[0] = view
        args[1] = "0" if checkpoint is None else "1"
        args[2] = "" if checkpoint is None else checkpoint
        args[3::2] = event_us
        args[4::2] = payloads
        try:
            return int(self._script(keys=redis_keys, args=args))
        except self._errors as exc:
            raise self._unavailable(
                exc, f"; the batch for view {view!r} is one atomic script, so either none of it "
                "was applied or all of it with its checkpoint (if Redis ran it before the "
                "connection dropped): replaying it is safe") from None
        except self._response_error as exc:
            raise UsageError(
                f"online store {self.url}: Redis refused the batch for view {view!r} ({exc}); "
                "nothing of it was applied",
                hint=f"see Redis's reason: a value under {self._base}* that Tarmac did not write, "
                "Redis out of memory (maxmemory), or a read-only replica",
            ) from None

    def read(self, requests: list[tuple[str, list[str]]]) -> ReadResult:
        self._check_open()
        if len(requests) == 1:  # the common case: no splitting of the reply
            view, keys = requests[0]
            if not keys:
                return [[]]
            raw = self._mget(list(map(self._prefix(view).__add__, keys)))
            return [list(map(_decode, raw))]
        names: list[str] = []
        for view, keys in requests:
            names += map(self._prefix(view).__add__, keys)
        values = list(map(_decode, self._mget(names))) if names else []
        out: ReadResult = []
        start = 0
        for _, keys in requests:
            out.append(values[start:start + len(keys)])
            start += len(keys)
        return out

    def _mget(self, names: list[str]) -> list[bytes | None]:
        try:
            values: list[bytes | None] = self._client.execute_command("MGET", *names)
            return values
        except self._errors as exc:
            raise self._unavailable(exc, "") from None

    def checkpoint(self, view: str) -> str | None:
        self._check_open()
        _check_view(view, self.url)
        value = self._call(self._client.get, f"{self._base}_checkpoint:{view}")
        return None if value is None else bytes(value).decode()

    def clear(self, view: str) -> None:
        self._check_open()
        pattern = self._prefix(view).translate(_GLOB_SPECIAL) + "*"
        try:
            batch: list[bytes] = []
            for name in self._client.scan_iter(match=pattern, count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    self._client.unlink(*batch)
                    batch = []
            if batch:
                self._client.unlink(*batch)
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(f"{self._base}_checkpoint:{view}")
            pipe.srem(self._views_key, view)
            pipe.execute()
        except self._errors as exc:
            raise self._unavailable(exc, f" while clearing view {view!r}") from None

    def count(self, view: str) -> int:
        self._check_open()
        pattern = self._prefix(view).translate(_GLOB_SPECIAL) + "*"
        try:
            return sum(1 for _ in self._client.scan_iter(match=pattern, count=1000))
        except self._errors as exc:
            raise self._unavailable(exc, f" while counting view {view!r}") from None

    def views(self) -> list[str]:
        self._check_open()
        members = self._call(self._client.smembers, self._views_key)
        return sorted(bytes(m).decode() for m in members)

    def ping(self) -> None:
        self._check_open()
        self._call(self._client.ping)

    def close(self) -> None:
        self._closed = True
        self._pool.disconnect()

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError(f"online store {self.url} is closed",
                             hint="open it again with open_online_store")

    def _call(self, method: Any, *args: Any) -> Any:
        try:
            return method(*args)
        except self._errors as exc:
            raise self._unavailable(exc, "") from None

    def _unavailable(self, exc: Exception, detail: str) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"online store {self.url} is unreachable ({exc}){detail}",
            hint="is Redis running, and the online_store URL in tarmac.yaml right?",
        )
