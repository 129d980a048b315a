"""The prediction log: appends that are durable before the response, a background flusher that
moves them into the ``predictions`` lake table exactly once, and recovery of what a dead
process left behind. docs/prediction-log.md explains the guarantees.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tarmac import faults
from tarmac.errors import TarmacError, UsageError
from tarmac.serving.predlog import _publish as publish
from tarmac.serving.predlog import _segment as seg
from tarmac.serving.predlog._commit import TABLE, Committed, commit_segment, committed_count
from tarmac.serving.predlog._record import PredictionRecord, encode

if TYPE_CHECKING:
    from tarmac.lake import Lake
    from tarmac.project import Project

FsyncPolicy = Literal["batch", "always", "never"]
FSYNC_POLICIES = ("batch", "always", "never")
DEFAULT_MAX_PENDING = 256 * 1024 * 1024


class PredictionLogError(TarmacError):
    """The log cannot take a record now; the server answers 503 with ``Retry-After``
    (``retry_after`` seconds). Nothing already appended is affected."""

    def __init__(self, message: str, *, retry_after: float = 1.0, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class LogBackpressure(PredictionLogError):
    """The records not yet in the table reached ``max_pending_bytes``: flushing is slower than
    traffic. Shed load until the flusher catches up."""


class LogUnavailable(PredictionLogError):
    """The segment could not be written (disk full, I/O error, log closed)."""


@dataclass(frozen=True)
class LogStats:
    """A process's log counters. ``appended == flushed + pending_rows`` always holds;
    ``recovered`` counts records of dead processes this one committed."""

    appended: int
    flushed: int
    pending_rows: int
    pending_bytes: int
    flush_lag_s: float
    last_error: str | None
    writable: bool
    recovered: int
    segments: int
    fsync: str


@dataclass
class _Segment:
    """One of this process's segments and how much of it the table holds."""

    seq: int
    path: Path
    size: int = 0
    records: int = 0
    committed_bytes: int = 0
    committed_records: int = 0
    sealed: bool = False
    created: float = 0.0


class PredictionLog:
    """This process's write-ahead prediction log over ``project``.

    Example::

        log = PredictionLog(p)
        log.start()                         # recover dead processes' segments, start flushing
        log.append([record])                # durable (per ``fsync``) when it returns
        log.stats().pending_rows            # not yet in the predictions table
        log.close()                         # final flush
    """

    def __init__(self, project: Project, *, directory: Path | None = None,
                 fsync: FsyncPolicy = "batch", max_pending_bytes: int = DEFAULT_MAX_PENDING,
                 flush_every_s: float = 1.0, sync_every_ms: float = 50.0,
                 segment_bytes: int = 16 * 1024 * 1024, segment_age_s: float = 300.0,
                 table: str = TABLE, topic: str | None = None) -> None:
        if fsync not in FSYNC_POLICIES:
            raise UsageError(f"prediction log fsync policy {fsync!r} is not one of "
                             f"{', '.join(FSYNC_POLICIES)}")
        for name, value in (("max_pending_bytes", max_pending_bytes),
                            ("flush_every_s", flush_every_s), ("sync_every_ms", sync_every_ms),
                            ("segment_bytes", segment_bytes), ("segment_age_s", segment_age_s)):
            if not value > 0:
                raise UsageError(f"prediction log {name} must be positive (got {value!r})")
        self.project = project
        self.directory = directory or project.root / ".tarmac" / "predictions"
        self.fsync, self.table = fsync, table
        self.topic = topic  # publish to this stream topic instead of committing to the lake
        self.max_pending_bytes, self.flush_every_s = max_pending_bytes, flush_every_s
        self.sync_every_s, self.segment_bytes = sync_every_ms / 1000, segment_bytes
        self.segment_age_s = segment_age_s
        self._lock = threading.Lock()          # the append state below
        self._flush_lock = threading.Lock()    # one flush (or recovery) at a time
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lake: Lake | None = None
        self._family: str | None = None
        self._family_lock: seg.FamilyLock | None = None
        self._segments: dict[int, _Segment] = {}
        self._active: _Segment | None = None
        self._fd: int | None = None
        self._dirty = False
        self._closed = False
        self._appended = self._flushed = self._recovered = 0
        self._pending_rows = self._pending_bytes = 0
        self._pending_since: float | None = None
        self._last_error: str | None = None
        self._write_error: str | None = None
        self._refusing = False  # the last append was refused for backpressure

    @classmethod
    def from_config(cls, project: Project, **overrides: Any) -> PredictionLog:
        """The log as the project file's ``serving.prediction_log`` sets it up (``overrides``
        win), e.g. ``serving: {prediction_log: {fsync: always, max_pending_mb: 64}}``."""
        cfg = project.config.serving.prediction_log
        settings: dict[str, Any] = {
            "fsync": cfg.fsync, "sync_every_ms": cfg.sync_every_ms,
            "max_pending_bytes": int(cfg.max_pending_mb * 1024 * 1024),
            "flush_every_s": cfg.flush_every_s, "topic": cfg.topic}
        return cls(project, **(settings | overrides))

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Claim this process's segment family, recover the segments of dead processes into
        the table, and start the background flusher."""
        self._open_family()
        try:
            self.recover()
        except Exception as exc:  # the lake may be down: the flusher retries
            self._last_error = f"recovery: {type(exc).__name__}: {exc}"
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tarmac-predlog",
                                            daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the flusher and flush what is pending. Segments a failed final flush leaves
        behind are recovered by the next process that starts the log on this project."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            self._seal_active()  # sealed and fully flushed, a segment is deleted
        try:
            self.flush()
        finally:
            with self._lock:
                left = bool(self._segments)
                if self._family_lock is not None:
                    self._family_lock.release(remove=not left)
                    self._family_lock = None

    def __enter__(self) -> PredictionLog:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- appending ---------------------------------------------------------------------------

    def append(self, records: Sequence[PredictionRecord]) -> None:
        """Write ``records`` to the segment with one ``write`` call; when this returns they
        survive a kill of this process (and, per ``fsync``, a power loss).

        Raises ``LogBackpressure`` when the records not yet in the table would pass
        ``max_pending_bytes``, ``LogUnavailable`` when the segment cannot be written: then
        none of ``records`` is logged and nothing logged before is affected.
        """
        if not records:
            return
        buf = b"".join([seg.frame(encode(r)) for r in records])
        n, size = len(records), len(buf)
        with self._lock:
            if self._closed:
                raise LogUnavailable("the prediction log is closed")
            if self._pending_bytes + size > self.max_pending_bytes:
                self._refusing = True
                raise LogBackpressure(
                    f"the prediction log has {self._pending_bytes:,} bytes not yet flushed to "
                    f"the '{self.table}' table (bound {self.max_pending_bytes:,})",
                    retry_after=max(1.0, self.flush_every_s),
                    hint=self._last_error or "flushing is slower than traffic")
            if self._family is None:
                self._open_family()
            active = self._writable_segment()
            self._write(active, buf)
            active.size += size
            active.records += n
            self._refusing = False
            self._appended += n
            self._pending_rows += n
            self._pending_bytes += size
            if self._pending_since is None:
                self._pending_since = time.monotonic()
            if self.fsync == "always":
                self._sync_fd(self._fd)
            else:
                self._dirty = True
        if self._pending_bytes > self.max_pending_bytes // 4:
            self._wake.set()

    def _write(self, active: _Segment, buf: bytes) -> None:
        """One ``write`` of ``buf`` at the end of the active segment (a short write is
        finished); on failure the segment is cut back to its last whole frame and sealed."""
        assert self._fd is not None
        try:
            faults.point("predlog.write", path=str(active.path), size=len(buf))
            done = os.write(self._fd, buf)
            while done < len(buf):
                done += os.write(self._fd, memoryview(buf)[done:])
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, active.size)
            self._seal_active()
            reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else \
                f"{exc.strerror or exc}"
            self._write_error = self._last_error = f"cannot write {active.path}: {reason}"
            raise LogUnavailable(f"the prediction log cannot write its segment: {reason}; "
                                 "nothing logged before is lost", retry_after=5.0,
                                 hint=f"free space under {self.directory}") from None
        self._write_error = None

    def _writable_segment(self) -> _Segment:
        active = self._active
        now = time.monotonic()
        if active is not None and (active.size >= self.segment_bytes
                                   or now - active.created >= self.segment_age_s):
            self._seal_active()
            active = None
        if active is None:
            seq = max(self._segments, default=0) + 1
            assert self._family is not None
            path = self.directory / seg.segment_name(self._family, seq)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
                if self.fsync != "never":
                    seg.sync_directory(self.directory)
            except OSError as exc:
                self._write_error = self._last_error = f"cannot create {path}: {exc.strerror}"
                raise LogUnavailable(f"the prediction log cannot create a segment in "
                                     f"{self.directory}: {exc.strerror}", retry_after=5.0) \
                    from None
            active = _Segment(seq, path, created=now)
            self._segments[seq] = active
            self._active, self._fd = active, fd
        return active

    def _seal_active(self) -> None:
        """Close the active segment (synced unless fsync is "never"); called under the lock."""
        if self._active is None or self._fd is None:
            return
        with contextlib.suppress(OSError):
            if self.fsync != "never" and self._dirty:
                os.fdatasync(self._fd)
        os.close(self._fd)
        self._active.sealed = True
        self._active, self._fd, self._dirty = None, None, False

    def _sync_fd(self, fd: int | None) -> None:
        if fd is None:
            return
        try:
            os.fdatasync(fd)
        except OSError as exc:
            self._last_error = f"fsync failed: {exc.strerror}"

    def sync(self) -> None:
        """fsync the active segment now (the "batch" policy does this every ``sync_every_ms``
        from the flusher thread, off the append path)."""
        with self._lock:
            if not self._dirty or self._fd is None:
                return
            fd = os.dup(self._fd)  # sync outside the lock: appends keep going meanwhile
            self._dirty = False
        try:
            self._sync_fd(fd)
        finally:
            os.close(fd)

    # -- flushing ----------------------------------------------------------------------------

    def flush(self) -> int:
        """Commit everything appended so far to the table; returns the rows committed.
        Raises the lake's error if a commit fails (the records stay pending, nothing lost)."""
        with self._flush_lock:
            started = time.monotonic()
            with self._lock:
                todo = [(s, s.size, s.records) for s in self._segments.values()
                        if s.records > s.committed_records or s.sealed]
            total = 0
            try:
                for s, size, records in todo:
                    total += self._flush_segment(s, size, records)
            except Exception as exc:
                self._last_error = f"flush: {type(exc).__name__}: {exc}"
                raise
            with self._lock:
                if self._pending_rows == 0:
                    self._pending_since = None
                elif self._pending_since is not None:
                    self._pending_since = max(self._pending_since, started)
                if self._write_error is None:
                    self._last_error = None
            return total

    def _flush_segment(self, s: _Segment, size: int, records: int) -> int:
        if records > s.committed_records:
            frames = seg.read_frames(s.path, s.committed_bytes, size)
            if frames.torn or len(frames.payloads) != records - s.committed_records:
                raise LogUnavailable(f"segment {s.path} does not hold the {records} records "
                                     "this process wrote to it (changed on disk?)")
            self._commit(seg.segment_id(s.path), frames.payloads, records)
            n = records - s.committed_records
            with self._lock:
                s.committed_bytes, s.committed_records = size, records
                self._flushed += n
                self._pending_rows -= n
                self._pending_bytes -= frames.end
                self._refusing = False
        else:
            n = 0
        with self._lock:
            if s.sealed and s.committed_records == s.records:
                del self._segments[s.seq]
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(s.path)
                publish.forget(self.directory, seg.segment_id(s.path))
        return n

    def recover(self) -> int:
        """Commit the segments of every family whose process is gone (lock free), then delete
        them; returns the records newly committed. Safe to run from several processes: each
        family is recovered by whoever takes its lock."""
        total = 0
        with self._flush_lock:
            for family, paths in seg.families(self.directory).items():
                if family == self._family:
                    continue
                lock = seg.FamilyLock(self.directory, family)
                if not lock.acquire():
                    continue  # its writer is alive
                left = True
                try:
                    for path in seg.families(self.directory).get(family, paths):
                        total += self._recover_segment(path)
                    left = False
                finally:
                    lock.release(remove=not left)
        return total

    def _recover_segment(self, path: Path) -> int:
        frames = seg.read_frames(path)
        if frames.torn:  # a write cut short by the crash: never answered, cut it off
            with open(path, "r+b") as fh:
                fh.truncate(frames.end)
                if self.fsync != "never":
                    os.fsync(fh.fileno())
        sid = seg.segment_id(path)
        done = publish.published_count(self.directory, sid) if self.topic else \
            committed_count(self._lake_for_flush(), sid, self.table)
        result = self._commit(sid, frames.payloads[done:], len(frames.payloads))
        with self._lock:
            self._recovered += result.rows
        os.unlink(path)
        publish.forget(self.directory, sid)
        return result.rows

    def _commit(self, segment: str, payloads: list[bytes], total: int) -> Committed:
        """Records of a segment into the table, or published to the topic (``topic``)."""
        if self.topic is not None:
            return publish.publish_segment(self.project.streams, self.topic, self.directory,
                                           segment, payloads, total)
        return commit_segment(self._lake_for_flush(), segment, payloads, total, self.table)

    def _lake_for_flush(self) -> Lake:
        """The flusher's own Lake over the project's storage (its cached table snapshots are
        not shared with readers in other threads)."""
        if self._lake is None:
            from tarmac.lake import Lake

            shared = self.project.lake
            self._lake = Lake(shared.root, shared.ledger, storage_options=shared.storage_options,
                              owner=shared.default_owner)
        return self._lake

    def _run(self) -> None:
        """The background flusher: fsync every ``sync_every_ms`` ("batch"), flush every
        ``flush_every_s`` (sooner under pressure), adopt dead processes' segments. It never
        dies of an error: each one is kept in ``last_error`` and the step retried later."""
        last_flush = last_recover = time.monotonic()
        tick = min(self.sync_every_s, self.flush_every_s)
        while True:
            self._wake.wait(tick)
            pressed = self._wake.is_set()
            self._wake.clear()
            if self._closed:
                return
            now = time.monotonic()
            try:
                if self.fsync == "batch":
                    self.sync()
                if pressed or now - last_flush >= self.flush_every_s:
                    last_flush = now
                    self.flush()
                if now - last_recover >= max(5.0, self.flush_every_s):
                    last_recover = now
                    self.recover()
            except Exception as exc:  # flush() already noted its own error
                if not (self._last_error or "").startswith("flush:"):
                    self._last_error = f"{type(exc).__name__}: {exc}"

    def _open_family(self) -> None:
        if self._family is not None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for _ in range(5):  # a fresh name can only be lost to a recoverer's cleanup race
                family = seg.new_family()
                lock = seg.FamilyLock(self.directory, family)
                if lock.acquire():
                    break
            else:  # pragma: no cover
                raise LogUnavailable(f"could not claim a segment family in {self.directory}")
        except OSError as exc:
            raise LogUnavailable(f"cannot open the prediction log in {self.directory}: "
                                 f"{exc.strerror or exc}", retry_after=5.0) from None
        self._family, self._family_lock = family, lock

    # -- reading -----------------------------------------------------------------------------

    def stats(self) -> LogStats:
        """Counters for ``/metrics``, ``/ready`` and ``tarmac deploy status``."""
        with self._lock:
            lag = 0.0 if self._pending_since is None else time.monotonic() - self._pending_since
            return LogStats(
                appended=self._appended, flushed=self._flushed, pending_rows=self._pending_rows,
                pending_bytes=self._pending_bytes, flush_lag_s=lag, last_error=self._last_error,
                writable=not (self._closed or self._refusing or self._write_error),
                recovered=self._recovered, segments=len(self._segments), fsync=self.fsync)

    @property
    def family(self) -> str | None:
        """This process's segment family (``<host>-<pid>-<random>``), once opened."""
        return self._family
