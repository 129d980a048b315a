"""A tiny local HTTP API serving the demo company's support tickets.

Real companies keep support tickets in a SaaS tool reachable only over a
paginated REST API, so the demo serves ``tickets.json`` the same way, with the
two pagination styles connectors meet in practice:

* cursor style (default): ``GET /tickets?limit=N&cursor=TOKEN`` ->
  ``{"data": [...], "next_cursor": "..." | null}``
* page-number style: ``GET /tickets?page=K&per_page=N`` ->
  ``{"data": [...], "page": K, "total_pages": T}``

Both also send an RFC 8288 ``Link: <...>; rel="next"`` header while more data
remains.  Bad query parameters give 400, unknown paths 404, both with a JSON
``{"error": ...}`` body.  Only the standard library is used for the server.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_CURSOR_PARAMS = {"limit", "cursor"}
_PAGE_PARAMS = {"page", "per_page"}


class PaginationError(RuntimeError):
    """The API's pagination misbehaved (e.g. a cursor repeated: endless loop)."""


class _BadRequest(Exception):
    pass


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        kind, _, value = raw.partition(":")
        offset = int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _BadRequest(f"invalid cursor {token!r}") from None
    if kind != "offset" or offset < 0:
        raise _BadRequest(f"invalid cursor {token!r}")
    return offset


def _int_param(params: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise _BadRequest(f"{name} must be between {lo} and {hi}, got {value}")
    return value


class _Handler(BaseHTTPRequestHandler):
    server: _TicketsHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        """Silence the default per-request stderr logging."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        parts = urlsplit(self.path)
        if parts.path.rstrip("/") != "/tickets":
            self._send(404, {"error": f"no such resource: {parts.path}"})
            return
        try:
            body, next_query = self._page(parts.query)
        except _BadRequest as exc:
            self._send(400, {"error": str(exc)})
            return
        headers = {}
        if next_query is not None:
            headers["Link"] = f'<{self.server.base_url}/tickets?{next_query}>; rel="next"'
        self._send(200, body, headers)

    def _page(self, query: str) -> tuple[dict[str, Any], str | None]:
        """Select one page of tickets; return the body and the next page's query."""
        raw = parse_qs(query, keep_blank_values=True)
        unknown = set(raw) - _CURSOR_PARAMS - _PAGE_PARAMS
        if unknown:
            raise _BadRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        if any(len(v) > 1 for v in raw.values()):
            raise _BadRequest("query parameters must not repeat")
        params = {k: v[0] for k, v in raw.items()}
        if set(params) & _CURSOR_PARAMS and set(params) & _PAGE_PARAMS:
            raise _BadRequest("use either limit/cursor or page/per_page, not both")
        tickets = self.server.tickets
        total = len(tickets)
        if set(params) & _PAGE_PARAMS:
            per_page = _int_param(params, "per_page", DEFAULT_LIMIT, 1, MAX_LIMIT)
            pages = max(1, -(-total // per_page))
            page = _int_param(params, "page", 1, 1, 10**9)
            data = tickets[(page - 1) * per_page : page * per_page]
            more = page < pages
            nxt = urlencode({"page": page + 1, "per_page": per_page}) if more else None
            return {"data": data, "page": page, "total_pages": pages}, nxt
        limit = _int_param(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _decode_cursor(params["cursor"]) if "cursor" in params else 0
        if offset > total:
            raise _BadRequest("cursor points past the end of the data")
        end = offset + limit
        cursor = _encode_cursor(end) if end < total else None
        nxt = urlencode({"limit": limit, "cursor": cursor}) if cursor else None
        return {"data": tickets[offset:end], "next_cursor": cursor}, nxt

    def _send(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)


class _TicketsHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    tickets: list[dict[str, Any]]
    base_url: str


class TicketsServer:
    """Serve ``tickets.json`` over HTTP on a background daemon thread.

    ``port=0`` picks a free port; ``url`` is the tickets endpoint, e.g.
    ``http://127.0.0.1:54321/tickets``.  Use as a context manager or call
    ``start()`` / ``stop()``.
    """

    def __init__(self, tickets_path: Path | str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.tickets_path = Path(tickets_path)
        self.host = host
        self.port = port
        self._server: _TicketsHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The tickets endpoint URL (only valid once started)."""
        if self._server is None:
            raise RuntimeError("TicketsServer is not running; call start() first")
        return f"{self._server.base_url}/tickets"

    def start(self) -> TicketsServer:
        """Load the tickets and start serving; returns ``self``. Idempotent."""
        if self._server is not None:
            return self
        tickets = json.loads(self.tickets_path.read_text(encoding="utf-8"))
        server = _TicketsHTTPServer((self.host, self.port), _Handler)
        server.tickets = tickets
        host, port = server.server_address[:2]
        server.base_url = f"http://{host!s}:{port}"
        self.port = int(port)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # so stop() returns promptly
            name="tarmac-demo-tickets",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port. Safe to call twice."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> TicketsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def fetch_all_tickets(url: str, *, limit: int = 500, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Fetch every ticket from a cursor-paginated endpoint such as ``TicketsServer.url``.

    Follows ``next_cursor`` until it is null.  Raises ``PaginationError`` if a
    cursor comes back twice (a server bug that would otherwise loop forever)
    and ``httpx.HTTPStatusError`` on error responses.
    """
    tickets: list[dict[str, Any]] = []
    seen: set[str] = set()
    params: dict[str, str | int] = {"limit": limit}
    with httpx.Client(timeout=timeout) as client:
        while True:
            response = client.get(url, params=params)
            response.raise_for_status()
            body = response.json()
            tickets.extend(body["data"])
            cursor = body.get("next_cursor")
            if not cursor:
                return tickets
            if cursor in seen:
                raise PaginationError(
                    f"cursor {cursor!r} repeated after {len(seen)} pages from {url}: "
                    "the API is looping; stopping"
                )
            seen.add(cursor)
            params = {"limit": limit, "cursor": cursor}
