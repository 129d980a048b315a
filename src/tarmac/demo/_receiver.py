"""A local webhook receiver for the demo: where the monitor's alerts land.

Real alerts go to Slack, PagerDuty or an on-call service; the demo has none, so it starts this
receiver on 127.0.0.1 (a free port) and points a ``webhook(...)`` channel at ``.url``. It does
what a careful receiver does: it checks each POST's ``X-Tarmac-Signature`` (HMAC-SHA256 of
``"<X-Tarmac-Timestamp>.<body>"`` with the shared secret, ``tarmac.monitoring.alerts.sign``),
refuses a bad or missing signature and a timestamp too far from its clock (a replay) with 401,
and notes a repeated ``Idempotency-Key`` (a retry of a notice it already has) as a duplicate.
Every request is kept, accepted or not, in ``.received``. Only the standard library serves.

Example::

    with WebhookReceiver(secret="demo-secret") as hooks:
        channel = webhook(hooks.url, secret="demo-secret")
        ...                                   # the monitor runs, a check fails
        hooks.wait(1)[0].payload["summary"]   # '[FIRING] churn: drift on 'plan' is drifted ...'
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tarmac.errors import UsageError
from tarmac.monitoring.alerts import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

MAX_BODY = 1 << 20  # a notice is a few kilobytes; anything past a megabyte is refused (413)
TOLERANCE_S = 300  # a signed timestamp further than this from the receiver's clock: a replay


@dataclass(frozen=True)
class Received:
    """One POST the receiver got: its path, headers (lower-case names), raw body, the JSON
    payload (``None`` when the body is not JSON), whether it was ``accepted`` (2xx) and why
    not (``problem``), and whether its idempotency key had been seen before (``duplicate``)."""

    path: str
    headers: dict[str, str]
    body: bytes
    payload: Any
    accepted: bool
    problem: str | None
    duplicate: bool
    at: float  # unix seconds, when it arrived

    @property
    def key(self) -> str | None:
        """The ``Idempotency-Key`` header (the same on every retry of one notice)."""
        return self.headers.get(KEY_HEADER.lower())

    @property
    def signature(self) -> str | None:
        return self.headers.get(SIGNATURE_HEADER.lower())


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 (``port=0``: a free one) in a daemon thread that keeps
    every POST (see the module doc). With ``secret`` each request must carry a valid
    signature, else it is answered 401; without one nothing is checked.

    ``.url`` is where to point ``webhook(...)``, ``.received`` what arrived (oldest first),
    ``.alerts`` the payloads of the accepted, non-duplicate notices, ``wait(n)`` blocks until
    ``n`` accepted notices are in (or a timeout). Use it as a context manager, or call
    ``start()`` and ``stop()``.
    """

    def __init__(self, secret: str | None = None, *, path: str = "/alerts",
                 host: str = "127.0.0.1", port: int = 0,
                 tolerance_s: float = TOLERANCE_S) -> None:
        if not path.startswith("/"):
            raise UsageError(f"the receiver's path must start with '/', got {path!r}")
        self.secret = secret
        self.path = path
        self.host = host
        self.port = port
        self.tolerance_s = tolerance_s
        self._received: list[Received] = []
        self._keys: set[str] = set()
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> WebhookReceiver:
        """Listen (idempotent); ``.url`` is valid from now on."""
        if self._server is not None:
            return self
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                receiver._handle(self)

            def log_message(self, *args: Any) -> None:  # quiet: the demo prints its own story
                pass

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                        name="tarmac-demo-webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and free the port (idempotent); what arrived stays readable."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port><path>``; the receiver must be started."""
        if self._server is None:
            raise UsageError("the webhook receiver is not running: start() it (or use it in a "
                             "with block) before asking for its URL")
        return f"http://{self.host}:{self._server.server_address[1]}{self.path}"

    # -- what arrived ---------------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        """Every POST so far, oldest first (a copy)."""
        with self._cond:
            return list(self._received)

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """The JSON payloads of the accepted notices, each once (retries dropped)."""
        return [r.payload for r in self.received if r.accepted and not r.duplicate]

    def wait(self, count: int = 1, timeout: float = 10.0) -> list[Received]:
        """Block until ``count`` accepted, non-duplicate notices have arrived, or ``timeout``
        seconds; returns those that did (fewer on a timeout: the caller says what it missed)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self._received if r.accepted and not r.duplicate]
                left = deadline - time.monotonic()
                if len(got) >= count or left <= 0:
                    return got
                self._cond.wait(left)

    # -- serving --------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._answer(request, 413 if length > MAX_BODY else 400, "bad Content-Length")
            return
        body = request.rfile.read(length)
        path = request.path.split("?", 1)[0]
        problem, status = None, 200
        if path != self.path:
            problem, status = f"no receiver at {path}", 404
        else:
            problem = self._check_signature(headers, body)
            status = 401 if problem else 200
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
            if problem is None:
                problem, status = "the body is not JSON", 400
        key = headers.get(KEY_HEADER.lower())
        with self._cond:
            duplicate = status == 200 and key is not None and key in self._keys
            if status == 200 and key is not None:
                self._keys.add(key)
            self._received.append(Received(path, headers, body, payload, status == 200, problem,
                                           duplicate, time.time()))
            self._cond.notify_all()
        self._answer(request, status, problem or ("duplicate" if duplicate else "ok"))

    def _check_signature(self, headers: dict[str, str], body: bytes) -> str | None:
        """Why the request's signature is not acceptable, or ``None`` when it is (or when the
        receiver has no secret)."""
        if self.secret is None:
            return None
        stamp = headers.get(TIMESTAMP_HEADER.lower())
        signature = headers.get(SIGNATURE_HEADER.lower())
        if not stamp or not signature:
            return f"unsigned: no {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header"
        try:
            skew = abs(time.time() - int(stamp))
        except ValueError:
            return f"{TIMESTAMP_HEADER} is not unix seconds"
        if skew > self.tolerance_s:
            return f"{TIMESTAMP_HEADER} is {skew:.0f} s from now (a replay?)"
        expected = "sha256=" + sign(self.secret, stamp, body)
        if not hmac.compare_digest(expected, signature):
            return "the signature does not match the body (wrong secret, or altered)"
        return None

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, text: str) -> None:
        data = json.dumps({"status": status, "message": text}).encode()
        try:
            request.send_response(status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up waiting


__all__ = ["Received", "WebhookReceiver"]
