"""Request ids and the structured access log, kept off the request's critical path.

Every request gets an id: the caller's ``X-Request-ID`` when it is a short token (letters,
digits, ``._:-``, at most 128), else a new one; it is sent back in ``X-Request-ID`` and named in
the server's log lines about that request, so a caller quoting it finds the trace.

The access log is one JSON object per line (time, method, path, status, latency in ms, request
id) on the ``tarmac.access`` logger. A request only puts its record on a bounded queue
(``QueueHandler``, no formatting, no I/O); a background thread (``QueueListener``) formats and
writes. When the writer falls behind and the queue is full, records are dropped and counted
rather than slowing requests down (the count is logged when the server stops).

Example::

    log = AccessLog(Path("access.log"))   # or AccessLog(None): stderr
    log.start(); log.record("POST", "/features", 200, 0.31, "3f2a..."); log.stop()
"""

from __future__ import annotations

import logging
import queue
import re
import sys
import time
import uuid
from logging.handlers import QueueHandler, QueueListener
from pathlib import Path
from typing import Any

import orjson
from starlette.types import Scope

from tarmac.errors import echo

REQUEST_ID_HEADER = b"x-request-id"
QUEUE_SIZE = 10_000  # records waiting for the writer thread; beyond it they are dropped
_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,128}")

access_logger = logging.getLogger("tarmac.access")
log = logging.getLogger("tarmac.serving")


def request_id(scope: Scope) -> str:
    """The request's id: the caller's ``X-Request-ID`` if it is a short token, else a new one
    (a bad header is replaced, never echoed)."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                break
            if _TOKEN.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


class _DroppingQueueHandler(QueueHandler):
    """A QueueHandler that neither formats on the caller's thread nor blocks: a full queue
    drops the record and counts it."""

    def __init__(self, q: queue.Queue[Any]) -> None:
        super().__init__(q)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # formatted by the listener's handler, on its thread

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class _JsonLines(logging.Formatter):
    """One JSON object per access record."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "access", None)
        if fields is None:  # some other record logged on tarmac.access
            fields = {"message": record.getMessage()}
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = {"time": f"{stamp}.{int(record.msecs):03d}Z", **fields}
        return orjson.dumps(line).decode()


class AccessLog:
    """The access log of one server process: ``record`` on the request path, writing on a
    background thread between ``start`` and ``stop``."""

    def __init__(self, path: Path | None = None, *, queue_size: int = QUEUE_SIZE) -> None:
        self.path = path
        self._queue: queue.Queue[Any] = queue.Queue(queue_size)
        self._handler = _DroppingQueueHandler(self._queue)
        self._listener: QueueListener | None = None
        self._out: logging.Handler | None = None

    @property
    def dropped(self) -> int:
        return self._handler.dropped

    def start(self) -> None:
        """Open the output and start the writer thread (idempotent)."""
        if self._listener is not None:
            return
        out: logging.Handler
        if self.path is None:
            out = logging.StreamHandler(sys.stderr)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            out = logging.FileHandler(self.path, encoding="utf-8")  # append mode
        out.setFormatter(_JsonLines())
        self._out = out
        self._listener = QueueListener(self._queue, out, respect_handler_level=False)
        self._listener.start()
        access_logger.addHandler(self._handler)
        access_logger.setLevel(logging.INFO)
        access_logger.propagate = False

    def stop(self) -> None:
        """Write what is queued, stop the thread, close the output."""
        if self._listener is None:
            return
        access_logger.removeHandler(self._handler)
        self._listener.stop()  # drains the queue first
        self._listener = None
        if self._out is not None:
            self._out.close()
            self._out = None
        if self.dropped:
            log.warning("access log: %d records dropped (the writer fell behind)", self.dropped)

    def record(self, method: str, path: str, status: int, ms: float, rid: str) -> None:
        """Queue one request's record: no formatting and no I/O on the caller's thread."""
        if access_logger.isEnabledFor(logging.INFO):
            access_logger.info("request", extra={"access": {
                "method": method, "path": path if len(path) <= 256 else echo(path, 256),
                "status": status, "ms": round(ms, 3), "request_id": rid}})


__all__ = ["REQUEST_ID_HEADER", "AccessLog", "request_id"]
