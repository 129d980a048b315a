"""The embedded online store: one SQLite file (WAL), a connection per thread and per process."""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import closing
from itertools import repeat
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tarmac.config import redact
from tarmac.errors import BackendUnavailableError, ConfigError, UsageError
from tarmac.features.online._base import OnlineStore, ReadResult, _check_view

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
