"""``tarmac stream run``: stream sources into the lake, continuously or once.

A runner reads each of its stream sources in micro-batches (``max_records``, or ``linger``
seconds after the first message, or what the log holds now) and hands each batch to the
source's ``StreamSink``, which commits it exactly once; then to the hooks (streaming features).

**Sharing partitions.** Several runners may serve one source: each partition is read by one
runner at a time, holding an exclusive lock (``flock``) on ``.tarmac/streams/leases/SOURCE/P``.
Every runner also holds a lock on a member file, so each can count the live runners and keep a
fair share (``ceil(partitions / runners)``): a runner above its share releases partitions after
committing its batch, one below takes free ones. A runner that dies (even by SIGKILL) loses its
locks at once, and the others take its partitions over; each takeover first finishes the dead
runner's saved commit plan, then resumes from the offsets in the Delta log. The locks are local
files: runners sharing a source must share the project folder on one host (a lock on a network
file system is not reliable). The sink's commit fence refuses, as a second line of defence, a
batch that does not start where the lake stands.

**Stopping.** SIGTERM or SIGINT: the batch being read is committed, the leases released, the
ledger run closed; exit 0. A crash needs no manual step: the next start recovers.

Example::

    from tarmac.streams.runner import StreamRunner

    report = StreamRunner(p, ["clicks"], once=True).run()   # what is in the log now
    report["clicks"].rows_loaded
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np

from tarmac.catalog import now_us
from tarmac.errors import BackendUnavailableError, TarmacError, UsageError, WriteConflictError
from tarmac.ingest.spec import StreamSource
from tarmac.streams.log import PartitionReader, StreamLog
from tarmac.streams.sink import (
    Counts,
    SinkBatch,
    StreamSink,
    stream_source,
    stream_sources,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from tarmac.project import Project

__all__ = ["Hook", "SourceReport", "StreamRunner"]

log = logging.getLogger("tarmac.streams")
Hook = Callable[[SinkBatch], Any]  # runs after each committed batch with its rows


@dataclass
class SourceReport(Counts):
    """What a runner did for one source."""

    batches: int = 0
    partitions: list[int] = field(default_factory=list)
    lag: dict[int, int] = field(default_factory=dict)
    lost_to_retention: int = 0
    errors: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)

    def add(self, b: SinkBatch) -> None:
        self.batches += 1
        self.messages += b.messages
        self.rows_loaded += b.rows_loaded
        self.rows_quarantined += b.rows_quarantined
        self.late += b.late
        self.future += b.future
        self.duplicates += b.duplicates

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(sorted((str(p), n) for p, n in v.items())) if k == "lag" else v)
                for k, v in self.__dict__.items()}


class _Leases:
    """The partitions of one source this runner holds (see the module docstring)."""

    def __init__(self, folder: Path, runner_id: str, partitions: int) -> None:
        self.folder = folder
        self.partitions = partitions
        (folder / "members").mkdir(parents=True, exist_ok=True)
        self.member = folder / "members" / f"{runner_id}.lock"
        fd = _lock(self.member)
        if fd is None:
            raise UsageError(f"runner id {runner_id} is in use by another process")
        self._member_fd = fd
        self.held: dict[int, int] = {}  # partition -> fd

    def live_members(self) -> int:
        count = 0
        for f in (self.folder / "members").glob("*.lock"):
            if f == self.member:
                count += 1
                continue
            fd = _lock(f)
            if fd is None:
                count += 1  # held: its runner is alive
            else:  # a runner that died: its file is stale
                f.unlink(missing_ok=True)
                os.close(fd)
        return count

    def balance(self) -> tuple[list[int], list[int]]:
        """(partitions taken now, partitions to give back) for a fair share."""
        share = math.ceil(self.partitions / max(1, self.live_members()))
        extra = sorted(self.held)[share:] if len(self.held) > share else []
        taken: list[int] = []
        for p in range(self.partitions):
            if len(self.held) >= share:
                break
            if p in self.held:
                continue
            fd = _lock(self.folder / f"{p}.lock")
            if fd is not None:
                self.held[p] = fd
                taken.append(p)
        return taken, extra

    def release(self, partition: int) -> None:
        fd = self.held.pop(partition, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for p in list(self.held):
            self.release(p)
        self.member.unlink(missing_ok=True)
        os.close(self._member_fd)


def _lock(path: Path) -> int | None:
    """An exclusive lock on ``path`` (its fd), or None if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class _Source:
    """One source inside a runner: its sink, leases, reader and report."""

    def __init__(self, runner: StreamRunner, name: str, spec: StreamSource) -> None:
        self.runner = runner
        self.name = name
        self.spec = spec
        log_ = runner.log
        self.partitions = len(log_.end_offsets(spec.topic))
        self.sink = StreamSink(runner.project, name, log=log_, runner_id=runner.id).open()
        self.report = SourceReport(name, self.sink.table)
        self.leases = _Leases(runner.project.root / ".tarmac" / "streams" / "leases" / name,
                              runner.id, self.partitions)
        self.reader: PartitionReader = log_.reader(spec.topic, {})
        self.expected: dict[int, int | None] = {}
        self.ends: dict[int, int] = {}  # --once: the end offsets when the run started
        self.next_balance = 0.0

    def balance(self) -> None:
        taken, extra = self.leases.balance()
        for p in extra:
            self.reader.release(p)
            self.expected.pop(p, None)
            self.leases.release(p)
        if taken:
            self.report.recovered += self.sink.recover()
            self.sink.refresh()  # their keys may have been committed by another runner
        for p in taken:
            self._seek(p)
        self.report.partitions = sorted(self.leases.held)
        self.next_balance = time.monotonic() + self.runner.rebalance_every

    def _seek(self, p: int) -> None:
        start = self.runner.log.start_offsets(self.spec.topic)[p]
        pos = self.sink.position(p)
        if pos is not None and pos < start:
            lost = start - pos
            self.report.lost_to_retention += lost
            self.report.errors.append(f"partition {p}: offsets {pos}..{start - 1} were deleted "
                                      "by retention before they were committed to the lake")
            log.error("stream %s partition %d: %d record(s) deleted by retention before the "
                      "sink read them", self.name, p, lost)
        self.expected[p] = pos  # the commit fence: the lake must still be there
        self.reader.seek(p, start if pos is None else max(pos, start))
        if self.runner.once:
            self.ends[p] = self.runner.log.end_offsets(self.spec.topic)[p]

    def reseek(self) -> None:
        """After a failure: read every held partition again from where the lake stands."""
        for p in list(self.leases.held):
            self.reader.release(p)
            self._seek(p)

    def done(self) -> bool:
        """--once: every held partition reached the end it had when the run started."""
        return all(self.reader.positions.get(p, 0) >= end for p, end in self.ends.items())

    def close(self) -> None:
        self.reader.close()
        self.leases.close()
        self.sink.close()


class StreamRunner:
    """Runs stream sources into the lake (see the module docstring).

    ``sources``: names of ``type: stream`` sources (None: all of them). ``once``: process what
    the log holds at start, then return. ``max_records``: the largest micro-batch (the bound
    on memory); ``linger``: seconds a batch waits for more after its first message.
    ``hooks`` run after each committed batch (streaming features); ``registry``: a Prometheus
    registry to export the runner's metrics into.
    """

    def __init__(self, project: Project, sources: Sequence[str] | None = None, *,
                 once: bool = False, max_records: int = 10_000, linger: float = 0.5,
                 hooks: Iterable[Hook] = (), registry: CollectorRegistry | None = None,
                 log: StreamLog | None = None, rebalance_every: float = 2.0,
                 retention_every: float = 60.0, backoff: float = 0.5) -> None:
        if max_records < 1:
            raise UsageError(f"max_records must be at least 1 (got {max_records})")
        self.project = project
        names = list(sources) if sources else list(stream_sources(project))
        if not names:
            raise UsageError("no stream sources to run",
                             hint="declare one in tarmac.yaml: sources: {clicks: {type: stream, "
                                  "topic: clicks}}")
        self.specs = {n: stream_source(project, n) for n in names}
        self.once = once
        self.max_records = max_records
        self.linger = linger
        self.hooks = list(hooks)
        self.rebalance_every = rebalance_every
        self.retention_every = retention_every
        self.backoff = backoff  # the first wait after a failure; doubled up to 30 s
        self.id = uuid.uuid4().hex[:12]
        self.log = log or project.streams
        self.metrics = _Metrics(registry) if registry is not None else None
        self._stop = threading.Event()

    def stop(self) -> None:
        """Finish the batch in hand, commit it, and return from ``run`` (signal-safe)."""
        self._stop.set()

    def run(self) -> dict[str, SourceReport]:
        """Run until ``stop`` (or, with ``once``, until the log's content at start is in)."""
        params = {"sources": list(self.specs), "once": self.once, "runner": self.id}
        with self.project.ledger.run("stream.run", params=params):
            sources = [_Source(self, n, s) for n, s in self.specs.items()]
            try:
                self._loop(sources)
            finally:
                for src in sources:
                    src.close()
        return {s.name: s.report for s in sources}

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the runner after its current batch."""
        def handler(signum: int, frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # -- the loop -----------------------------------------------------------------------------

    def _loop(self, sources: list[_Source]) -> None:
        next_retention = time.monotonic() + self.retention_every
        backoff = 0.0
        while not self._stop.is_set():
            idle = True
            for src in sources:
                if self._stop.is_set():
                    break
                try:
                    if time.monotonic() >= src.next_balance:
                        src.balance()
                        self._lag(src)
                    if self.once and src.done():
                        continue
                    batch = self._read(src)
                    if batch:
                        idle = False
                        self._process(src, batch)
                    backoff = 0.0
                except (BackendUnavailableError, WriteConflictError) as exc:
                    backoff = min(max(self.backoff, backoff * 2), 30.0)
                    src.report.errors.append(exc.message)
                    log.warning("stream %s: %s; retrying in %.1fs", src.name, exc.message,
                                backoff)
                    self._stop.wait(backoff)
                    src.reseek()
            if self.once and all(s.done() for s in sources):
                for src in sources:
                    self._lag(src)
                return
            if time.monotonic() >= next_retention:
                self._retention()
                next_retention = time.monotonic() + self.retention_every
            if idle and not self.once:
                self._stop.wait(0.05)

    def _read(self, src: _Source) -> list[Any]:
        """One micro-batch: up to ``max_records``, at most ``linger`` s after the first."""
        out: list[Any] = []
        first = None
        while len(out) < self.max_records and not self._stop.is_set():
            got = src.reader.poll(self.max_records - len(out), timeout=0.0 if out else 0.05)
            if got:
                out.extend(got)
                first = first or time.monotonic()
            if not got or time.monotonic() - (first or 0) >= self.linger:
                break
        return out

    def _process(self, src: _Source, messages: list[Any]) -> None:
        started = time.perf_counter()
        expected = {p: src.expected.get(p) for p in {m.partition for m in messages}}
        batch = src.sink.process(messages, expected=expected)
        for p, o in batch.offsets.items():
            src.expected[p] = o
        src.report.add(batch)
        committed = time.perf_counter()
        if self.metrics is not None:
            self.metrics.batch(src.name, batch, committed - started)
        log.info("stream %s: committed %d message(s): %d loaded, %d quarantined, %d "
                 "duplicate(s); table %s v%s", src.name, batch.messages, batch.rows_loaded,
                 batch.rows_quarantined, batch.duplicates, batch.table, batch.version)
        for hook in self.hooks:
            try:
                result = hook(batch)
            except Exception as exc:  # noqa: BLE001 - committed data stays; the hook reports
                src.report.errors.append(f"hook {getattr(hook, '__name__', hook)}: "
                                         f"{type(exc).__name__}: {exc}")
                log.error("stream %s: hook failed after commit: %s", src.name, exc)
                continue
            latencies = getattr(result, "latencies", None)
            if self.metrics is not None and callable(latencies):
                self.metrics.online(src.name, latencies())

    def _lag(self, src: _Source) -> None:
        try:
            ends = self.log.end_offsets(src.spec.topic)
        except TarmacError:
            return
        src.report.lag = {p: max(0, ends[p] - src.reader.positions.get(p, ends[p]))
                          for p in src.leases.held}
        if self.metrics is not None:
            for p, n in src.report.lag.items():
                self.metrics.lag.labels(src.name, str(p)).set(n)

    def _retention(self) -> None:
        try:
            removed = self.log.apply_retention()
        except TarmacError as exc:
            log.warning("retention: %s", exc.message)
            return
        if removed:
            log.info("retention removed %d record(s)", removed)


class _Metrics:
    """The runner's Prometheus metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.messages = Counter("tarmac_stream_messages", "Messages committed, by outcome",
                                ["source", "outcome"], registry=registry)
        self.lag = Gauge("tarmac_stream_lag", "Messages in the log not yet committed",
                         ["source", "partition"], registry=registry)
        self.commit = Histogram("tarmac_stream_commit_seconds", "Decode, check and commit of "
                                "one micro-batch", ["source"], registry=registry,
                                buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.rate = Gauge("tarmac_stream_rows_per_second", "Rows loaded per second in the "
                          "last batch", ["source"], registry=registry)
        self.event_to_online = Histogram(
            "tarmac_stream_event_to_online_seconds", "From an event's time to its features "
            "being online", ["source"], registry=registry,
            buckets=(.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300))
        self.last_commit = Gauge("tarmac_stream_last_commit_timestamp_seconds",
                                 "When the last batch committed", ["source"], registry=registry)

    def batch(self, source: str, b: SinkBatch, seconds: float) -> None:
        self.messages.labels(source, "loaded").inc(b.rows_loaded)
        self.messages.labels(source, "quarantined").inc(b.rows_quarantined)
        self.messages.labels(source, "duplicate").inc(b.duplicates)
        self.commit.labels(source).observe(seconds)
        self.rate.labels(source).set(b.rows_loaded / seconds if seconds > 0 else 0)
        self.last_commit.labels(source).set(now_us() / 1e6)

    def online(self, source: str, seconds: np.ndarray) -> None:
        """A hook's event-to-online latencies (seconds, one per event applied)."""
        hist = self.event_to_online.labels(source)
        for lag in np.maximum(0.0, np.asarray(seconds, dtype=float)):
            hist.observe(float(lag))
