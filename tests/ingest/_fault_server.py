"""A programmable local HTTP server for connector tests: scripted replies and faults per path.

Each path has a queue of replies; a request takes the next one and the last one repeats, so
``script("/t", Reply(500), Reply(500), Reply(body=...))`` fails twice and then succeeds for
ever. A reply may also be a function of the request (for pages that depend on the query).
Every request is recorded (path, query parameters, headers) for the test to assert on.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    """One request as the server received it."""

    path: str
    params: dict[str, str]
    headers: dict[str, str]  # lowercase names


@dataclass
class Reply:
    """What to answer: a status, a JSON body (or raw bytes), headers, and a delay first."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to sleep before answering (longer than the client timeout)
    raw: bytes | None = None  # sent as is instead of the JSON body


Script = Reply | Callable[[Seen], Reply]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        """Keep test output clean."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        parts = urlsplit(self.path)
        seen = Seen(parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()},
                    {k.lower(): v for k, v in self.headers.items()})
        reply = self.server.owner.next_reply(seen)
        if reply.delay:
            time.sleep(reply.delay)
        payload = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (a timeout test)
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FaultServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-reply are expected here; do not print tracebacks."""


class FaultServer:
    """Serve scripted replies on 127.0.0.1 (a free port) from a background thread."""

    def __init__(self) -> None:
        self._scripts: dict[str, list[Script]] = {}
        self._lock = threading.Lock()
        self.requests: list[Seen] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def script(self, path: str, *replies: Script) -> str:
        """Answer requests to ``path`` with ``replies`` in turn (the last repeats); its URL."""
        with self._lock:
            self._scripts[path] = list(replies)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def hits(self, path: str) -> list[Seen]:
        """The requests made to ``path`` so far."""
        return [r for r in self.requests if r.path == path]

    def next_reply(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            queue = self._scripts.get(seen.path)
            if not queue:
                return Reply(404, {"error": f"no script for {seen.path}"})
            script = queue.pop(0) if len(queue) > 1 else queue[0]
        return script(seen) if callable(script) else script

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
