"""Tests for the demo's local tickets HTTP API and its paginating client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tarmac.demo import PaginationError, TicketsServer, fetch_all_tickets

N_TICKETS = 237


@pytest.fixture()
def tickets_path(tmp_path: Path) -> Path:
    rows = [
        {
            "ticket_id": f"TCK-{i:06d}",
            "customer_id": 10_000 + i % 50,
            "opened_at": "2025-01-01T00:00:00Z",
            "closed_at": None,
            "category": "billing",
            "priority": "low",
            "satisfaction": None,
        }
        for i in range(1, N_TICKETS + 1)
    ]
    path = tmp_path / "tickets.json"
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture()
def server(tickets_path: Path) -> Iterator[TicketsServer]:
    with TicketsServer(tickets_path) as srv:
        yield srv


def test_cursor_pagination_and_link_header(server: TicketsServer) -> None:
    assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/tickets")
    seen: list[str] = []
    url: str | None = f"{server.url}?limit=100"
    pages = 0
    while url is not None:
        r = httpx.get(url)
        assert r.status_code == 200
        body = r.json()
        seen += [t["ticket_id"] for t in body["data"]]
        pages += 1
        link = r.links.get("next", {}).get("url")
        if body["next_cursor"] is None:
            assert link is None
        else:
            assert body["next_cursor"] in link
        url = link
    assert pages == 3
    assert seen == [f"TCK-{i:06d}" for i in range(1, N_TICKETS + 1)]


def test_default_request_uses_cursor_style(server: TicketsServer) -> None:
    body = httpx.get(server.url).json()
    assert len(body["data"]) == 100 and body["next_cursor"]


def test_page_number_pagination(server: TicketsServer) -> None:
    r = httpx.get(server.url, params={"page": 1, "per_page": 50})
    body = r.json()
    assert body["page"] == 1 and body["total_pages"] == 5 and len(body["data"]) == 50
    assert "page=2" in r.links["next"]["url"]
    last = httpx.get(server.url, params={"page": 5, "per_page": 50})
    assert len(last.json()["data"]) == N_TICKETS - 200
    assert "next" not in last.links
    beyond = httpx.get(server.url, params={"page": 9, "per_page": 50}).json()
    assert beyond["data"] == [] and beyond["total_pages"] == 5


@pytest.mark.parametrize(
    "query",
    [
        "limit=abc",
        "limit=0",
        "limit=100000",
        "cursor=not-a-cursor!!",
        "page=0",
        "per_page=-3",
        "page=1&limit=10",
        "colour=blue",
        "limit=1&limit=2",
    ],
)
def test_bad_params_give_400(server: TicketsServer, query: str) -> None:
    r = httpx.get(f"{server.url}?{query}")
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    assert "error" in r.json()


def test_unknown_path_gives_404(server: TicketsServer) -> None:
    r = httpx.get(server.url.replace("/tickets", "/nope"))
    assert r.status_code == 404
    assert "error" in r.json()


def test_fetch_all_tickets(server: TicketsServer) -> None:
    tickets = fetch_all_tickets(server.url, limit=40)
    assert [t["ticket_id"] for t in tickets] == [f"TCK-{i:06d}" for i in range(1, N_TICKETS + 1)]


def test_server_start_stop(tickets_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    srv = TicketsServer(tickets_path)
    with pytest.raises(RuntimeError):
        _ = srv.url
    srv.start()
    url = srv.url
    assert httpx.get(url).status_code == 200
    srv.stop()
    srv.stop()  # idempotent
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=1.0)
    assert capfd.readouterr().err == ""  # no request logging noise


class _LoopingHandler(BaseHTTPRequestHandler):
    """A broken API that always hands back the same cursor."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        payload = json.dumps({"data": [{"ticket_id": "x"}], "next_cursor": "same"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def test_fetch_all_tickets_detects_repeating_cursor() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _LoopingHandler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        port = httpd.server_address[1]
        with pytest.raises(PaginationError, match="repeated"):
            fetch_all_tickets(f"http://127.0.0.1:{port}/tickets")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_clean_tables_reads_tickets_through_the_api(tmp_path: Path) -> None:
    from tarmac.demo import clean_tables, generate

    sources = generate(tmp_path, size="small", seed=3)
    with TicketsServer(sources.tickets_json) as srv:
        via_api = clean_tables(sources, tickets_url=srv.url).tables["tickets"]
    from_file = clean_tables(sources).tables["tickets"]
    assert via_api.num_rows == sources.tickets
    assert via_api.equals(from_file)
