"""Request ids and the structured access log, kept off the request's critical path.

Every request gets an id: the caller's ``X-Request-ID`` when it is a short token (letters,
digits, ``._:-``, at most 128), else a new one (a random per-process prefix and a counter: no
system call per request); it is sent back in ``X-Request-ID`` and named in the server's log
lines about that request, so a caller quoting it finds the trace.

The access log is one JSON object per line (time, method, path, status, latency in ms, request
id). A request only puts a tuple on a bounded queue (no formatting, no I/O, no lock held while
writing); a background thread drains the queue, formats the records and writes them, many per
write. When the writer falls behind and the queue is full, records are dropped and counted
rather than slowing requests down (the count is logged when the server stops). The standard
library's ``QueueHandler``/``QueueListener`` do the same one record at a time through the
logging machinery, which costs more than the feature read itself.

Example::

    log = AccessLog(Path("access.log"))   # or AccessLog(None): stderr
    log.start(); log.record("POST", "/features", 200, 0.31, "3f2a..."); log.stop()
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import re
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import orjson
from starlette.types import Scope

from tarmac.errors import echo

REQUEST_ID_HEADER = b"x-request-id"
QUEUE_SIZE = 10_000  # records waiting for the writer thread; beyond it they are dropped
BATCH = 1_000  # records per write at most
STOP_TIMEOUT_S = 5.0  # how long a shutdown waits for the writer
PAUSE_S = 0.05  # the writer's pause between batches: lines appear at most this late
_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,128}")

log = logging.getLogger("tarmac.serving")


class RequestIds:
    """New request ids: 16 random hex digits drawn once per process, then a counter."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}{next(self._count):016x}"

    def of(self, scope: Scope) -> str:
        """The caller's ``X-Request-ID`` if it is a short token, else a new id (a bad header
        is replaced, never echoed)."""
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                try:
                    text = value.decode("ascii")
                except UnicodeDecodeError:
                    break
                if _TOKEN.fullmatch(text):
                    return text
                break
        return self.new()


_STOP = object()


class AccessLog:
    """The access log of one server process: ``record`` on the request path, writing on a
    background thread between ``start`` and ``stop``."""

    def __init__(self, path: Path | None = None, *, queue_size: int = QUEUE_SIZE) -> None:
        self.path = path
        self._queue: queue.Queue[Any] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def start(self) -> None:
        """Open the output and start the writer thread (idempotent)."""
        if self._thread is not None:
            return
        out: IO[str]
        if self.path is None:
            out = sys.stderr
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            out = self.path.open("a", encoding="utf-8")
        self._thread = threading.Thread(target=self._write, args=(out,), daemon=True,
                                        name="tarmac-access-log")
        self._thread.start()

    def stop(self) -> None:
        """Write what is queued, stop the thread, close the output."""
        if self._thread is None:
            return
        try:  # the writer may be stuck on an output nobody reads: never hang the shutdown
            self._queue.put(_STOP, timeout=STOP_TIMEOUT_S)
        except queue.Full:
            log.warning("access log: the writer is stuck; queued records are lost")
        self._thread.join(STOP_TIMEOUT_S)
        self._thread = None
        if self.dropped:
            log.warning("access log: %d records dropped (the writer fell behind)", self.dropped)

    def record(self, method: str, path: str, status: int, ms: float, rid: str) -> None:
        """Queue one request's record: no formatting and no I/O on the caller's thread."""
        try:
            self._queue.put_nowait((time.time(), method, path, status, ms, rid))
        except queue.Full:
            self.dropped += 1

    def _write(self, out: IO[str]) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        try:
            while True:
                items = [get()]
                while len(items) < BATCH:
                    try:
                        items.append(get_nowait())
                    except queue.Empty:
                        break
                done = items[-1] is _STOP
                lines = [_line(*item) for item in items if item is not _STOP]
                if lines:
                    try:
                        out.write("".join(lines))
                        out.flush()
                    except (OSError, ValueError) as exc:  # disk full, closed stream
                        log.error("access log: cannot write (%s); %d records lost", exc,
                                  len(lines))
                if done:
                    return
                if len(items) < BATCH:  # let records gather: one wake-up and write per
                    time.sleep(PAUSE_S)  # batch, not per request
        finally:
            if out is not sys.stderr:
                out.close()


def _line(at: float, method: str, path: str, status: int, ms: float, rid: str) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
    return orjson.dumps({
        "time": f"{stamp}.{int(at % 1 * 1000):03d}Z", "method": method,
        "path": path if len(path) <= 256 else echo(path, 256), "status": status,
        "ms": round(ms, 3), "request_id": rid}).decode() + "\n"


__all__ = ["REQUEST_ID_HEADER", "AccessLog", "RequestIds"]
