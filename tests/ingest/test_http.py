"""The HTTP connector against real local servers: the demo tickets API and a fault server."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tarmac.demo import TicketsServer
from tarmac.errors import SourceError
from tarmac.ingest.base import Chunk, records_table
from tarmac.ingest.http import HttpConnector
from tarmac.ingest.spec import HttpSource

from ._fault_server import FaultServer, Reply, Seen

N_TICKETS = 237
Connect = Callable[..., HttpConnector]


@pytest.fixture()
def connect(tmp_path: Path) -> Iterator[Connect]:
    """Build connectors named 'tickets' whose sleeps are recorded, not slept; closed after."""
    made: list[HttpConnector] = []

    def make(**options: Any) -> HttpConnector:
        connector = HttpConnector("tickets", HttpSource.model_validate({"type": "http",
                                                                        **options}), tmp_path)
        connector._sleep = lambda seconds: None
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


@pytest.fixture()
def tickets(tmp_path: Path) -> Iterator[TicketsServer]:
    rows = [{"ticket_id": f"TCK-{i:06d}", "customer_id": 10_000 + i % 50,
             "opened_at": "2025-01-01T00:00:00Z", "closed_at": None, "category": "billing"}
            for i in range(1, N_TICKETS + 1)]
    path = tmp_path / "tickets.json"
    path.write_text(json.dumps(rows))
    with TicketsServer(path) as server:
        yield server


@pytest.fixture()
def fault() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_all(connector: HttpConnector) -> list[Chunk]:
    (stream,) = connector.streams()
    return list(connector.read(stream))


def ids(chunks: list[Chunk], column: str = "ticket_id") -> list[Any]:
    return [v for c in chunks for v in c.data.column(column).to_pylist()]


def error(connector: HttpConnector, **read: Any) -> str:
    (stream,) = connector.streams()
    with pytest.raises(SourceError) as info:
        list(connector.read(stream, **read))
    message = str(info.value)
    assert message.startswith("source 'tickets': ")
    return message


# -- the demo tickets API: every pagination style --------------------------------------------------


def test_streams_do_not_contact_the_server(connect: Connect) -> None:
    connector = connect(url="http://127.0.0.1:9/nowhere", table="support_tickets")
    (stream,) = connector.streams()
    assert (stream.source, stream.name, stream.table) == ("tickets", "tickets", "support_tickets")
    assert stream.location == "http://127.0.0.1:9/nowhere"
    assert connect(url="http://127.0.0.1:9/x").streams()[0].table == "tickets"


def test_cursor_pagination_reads_every_ticket_once(connect: Connect,
                                                   tickets: TicketsServer) -> None:
    connector = connect(url=tickets.url, paginate="cursor", records="data", size_param="limit",
                        page_size=50)
    chunks = read_all(connector)
    got = ids(chunks)
    assert len(got) == N_TICKETS and len(set(got)) == N_TICKETS
    assert len(chunks) == 5 and [c.data.num_rows for c in chunks] == [50, 50, 50, 50, 37]
    assert chunks[0].origin == f"GET {tickets.url}?limit=50 (page 1)"
    assert "cursor=" in chunks[2].origin and chunks[2].origin.endswith("(page 3)")
    assert all(c.nbytes > 0 and not c.rejects for c in chunks)
    assert chunks[0].data.schema.field("customer_id").type == pa.int64()


def test_cursor_pagination_with_the_demo_declaration(connect: Connect,
                                                     tickets: TicketsServer) -> None:
    chunks = read_all(connect(url=tickets.url, paginate="cursor", records="data"))
    assert len(set(ids(chunks))) == N_TICKETS and len(chunks) == 3  # server default: 100


@pytest.mark.parametrize("page_size", [None, 60])
def test_page_pagination_stops_at_total_pages(connect: Connect, tickets: TicketsServer,
                                              page_size: int | None) -> None:
    connector = connect(url=tickets.url, paginate="page", page_param="page",
                        size_param="per_page", page_size=page_size)
    chunks = read_all(connector)
    got = ids(chunks)
    assert len(got) == N_TICKETS and len(set(got)) == N_TICKETS
    assert len(chunks) == (3 if page_size is None else 4)
    assert chunks[-1].origin.endswith(f"page={len(chunks)} (page {len(chunks)})")


def test_link_pagination_follows_rel_next(connect: Connect, tickets: TicketsServer) -> None:
    chunks = read_all(connect(url=f"{tickets.url}?limit=80", paginate="link"))
    got = ids(chunks)
    assert len(got) == N_TICKETS and len(set(got)) == N_TICKETS and len(chunks) == 3


def test_page_pagination_stops_on_a_short_page(connect: Connect, fault: FaultServer) -> None:
    def page(seen: Seen) -> Reply:
        n = int(seen.params["page"])
        return Reply(body=[{"id": i} for i in range(n * 10, n * 10 + (10 if n < 3 else 4))])

    url = fault.script("/p", page)
    chunks = read_all(connect(url=url, paginate="page", page_size=10, size_param="size"))
    assert len(ids(chunks, "id")) == 24
    assert [s.params for s in fault.hits("/p")] == [{"page": "1", "size": "10"},
                                                   {"page": "2", "size": "10"},
                                                   {"page": "3", "size": "10"}]


def test_an_empty_page_ends_the_stream(connect: Connect, fault: FaultServer) -> None:
    url = fault.script("/p", Reply(body={"items": [{"id": 1}]}), Reply(body={"items": []}))
    chunks = read_all(connect(url=url, paginate="page"))
    assert ids(chunks, "id") == [1] and len(fault.hits("/p")) == 2


# -- records ---------------------------------------------------------------------------------------


def test_records_path_explicit_and_found_by_convention(connect: Connect,
                                                       fault: FaultServer) -> None:
    nested = fault.script("/nested", Reply(body={"result": {"items": [{"id": 1}, {"id": 2}]},
                                                 "data": "not this"}))
    assert ids(read_all(connect(url=nested, records="result.items")), "id") == [1, 2]
    bare = fault.script("/bare", Reply(body=[{"id": 3}]))
    assert ids(read_all(connect(url=bare)), "id") == [3]
    keyed = fault.script("/keyed", Reply(body={"meta": {}, "results": [{"id": 4}]}))
    assert ids(read_all(connect(url=keyed)), "id") == [4]


def test_records_not_found_names_the_keys_seen(connect: Connect, fault: FaultServer) -> None:
    url = fault.script("/odd", Reply(body={"tickets": [{"id": 1}], "next": None}))
    message = error(connect(url=url))
    assert url in message and "'tickets', 'next'" in message
    message = error(connect(url=url, records="result.items"))
    assert "records path 'result.items'" in message and "'tickets'" in message


def test_messy_records_become_one_table(connect: Connect, fault: FaultServer) -> None:
    url = fault.script("/messy", Reply(body={"data": [
        {"id": 1, "code": 42, "price": 10, "meta": {"a": [1, 2]}},
        {"id": 2, "code": "42", "price": 10.5, "flag": True},
        {"id": 3, "code": 1.5, "tags": ["x"]},
    ]}))
    (chunk,) = read_all(connect(url=url))
    table = chunk.data
    assert table.column_names == ["id", "code", "price", "meta", "flag", "tags"]
    assert table.column("code").type == pa.string()
    assert table.column("code").to_pylist() == ["42", "42", "1.5"]
    assert table.column("price").to_pylist() == [10.0, 10.5, None]
    assert table.column("meta").to_pylist() == ['{"a":[1,2]}', None, None]
    assert table.column("flag").to_pylist() == [None, True, None]
    assert table.column("tags").to_pylist() == [None, None, '["x"]']


def test_records_table_edge_cases() -> None:
    table = records_table([{"a": None, "b": 2**70, "c": True}, {"a": None, "b": 1, "c": 0}])
    assert table.column("a").null_count == 2
    assert table.column("b").to_pylist() == [str(2**70), "1"]
    assert table.column("c").to_pylist() == ["true", "0"]
    assert records_table([]).num_rows == 0


def test_a_record_that_is_not_an_object_is_rejected(connect: Connect,
                                                    fault: FaultServer) -> None:
    url = fault.script("/r", Reply(body={"data": [{"id": 1}, "oops", None, {"id": 2}]}))
    (chunk,) = read_all(connect(url=url))
    assert chunk.data.column("id").to_pylist() == [1, 2]
    assert [(r.raw, r.reason) for r in chunk.rejects] == [
        ('"oops"', "record is a string, not a JSON object"),
        ("null", "record is null, not a JSON object")]
    assert chunk.rejects[0].origin == f"GET {url} (page 1), record 2"


# -- auth ------------------------------------------------------------------------------------------


def test_auth_header_comes_from_the_environment(connect: Connect, fault: FaultServer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETS_TOKEN", "s3cret")
    url = fault.script("/a", Reply(body=[{"id": 1}]))
    chunks = read_all(connect(url=url, auth_env="TICKETS_TOKEN", headers={"X-Team": "ml"}))
    (seen,) = fault.hits("/a")
    assert seen.headers["authorization"] == "Bearer s3cret" and seen.headers["x-team"] == "ml"
    assert "s3cret" not in chunks[0].origin
    read_all(connect(url=url, auth_env="TICKETS_TOKEN", auth_header="X-Api-Key",
                     auth_scheme=""))
    assert fault.hits("/a")[-1].headers["x-api-key"] == "s3cret"


def test_missing_token_fails_before_any_request(connect: Connect, fault: FaultServer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKETS_TOKEN", raising=False)
    url = fault.script("/a", Reply(body=[]))
    message = error(connect(url=url, auth_env="TICKETS_TOKEN"))
    assert "TICKETS_TOKEN" in message and "not set" in message
    assert fault.requests == []


def test_a_token_unfit_for_a_header_is_not_echoed(connect: Connect, fault: FaultServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETS_TOKEN", "s3\ncret\n")
    url = fault.script("/a", Reply(body=[]))
    message = error(connect(url=url, auth_env="TICKETS_TOKEN"))
    assert "TICKETS_TOKEN" in message and "s3" not in message and fault.requests == []


def test_401_fails_at_once_without_retrying(connect: Connect, fault: FaultServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETS_TOKEN", "wrong")
    url = fault.script("/a", Reply(401, {"error": "bad token"}))
    connector = connect(url=url, auth_env="TICKETS_TOKEN")
    message = error(connector)
    assert "authentication failed (HTTP 401)" in message and url in message
    assert "wrong" not in message
    assert len(fault.hits("/a")) == 1 and connector.waits == []


def test_other_client_errors_fail_with_the_body(connect: Connect, fault: FaultServer) -> None:
    url = fault.script("/bad", Reply(400, {"error": "unknown parameter 'since'"}))
    connector = connect(url=url)
    message = error(connector)
    assert "HTTP 400" in message and "unknown parameter" in message
    assert len(fault.hits("/bad")) == 1 and connector.waits == []


def test_the_token_only_goes_to_the_configured_host(connect: Connect, fault: FaultServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETS_TOKEN", "s3cret")
    with FaultServer() as other:  # another port: another origin
        elsewhere = other.script("/b", Reply(body=[{"id": 2}]))
        url = fault.script("/a", Reply(body=[{"id": 1}], headers={"Link": f'<{elsewhere}>; '
                                                                          'rel="next"'}))
        moved = fault.script("/moved", Reply(302, {}, {"Location": "/a"}))
        away = fault.script("/away", Reply(307, {}, {"Location": elsewhere}))
        for start in (url, moved, away):
            chunks = read_all(connect(url=start, paginate="link", auth_env="TICKETS_TOKEN",
                                      auth_header="X-Api-Key", auth_scheme=""))
            assert sorted(ids(chunks, "id")) == ([1, 2] if start != away else [2])
        assert [s.headers.get("x-api-key") for s in fault.requests] == [
            "s3cret", "s3cret", "s3cret", "s3cret"]  # /a, /moved, /a again, /away
        assert [s.headers.get("x-api-key") for s in other.requests] == [None, None, None]


def test_secret_query_parameters_are_masked(connect: Connect, fault: FaultServer) -> None:
    url = fault.script("/k", Reply(body=[{"id": 1}]))
    (chunk,) = read_all(connect(url=url, params={"api_key": "s3cret", "region": "eu"}))
    assert "s3cret" not in chunk.origin and "api_key=***" in chunk.origin
    assert fault.hits("/k")[0].params == {"api_key": "s3cret", "region": "eu"}


# -- failures and retries --------------------------------------------------------------------------


def test_a_timeout_is_retried(connect: Connect, fault: FaultServer) -> None:
    url = fault.script("/slow", Reply(body=[], delay=0.6), Reply(body=[{"id": 1}]))
    connector = connect(url=url, timeout=0.2)
    assert ids(read_all(connector), "id") == [1]
    assert len(connector.waits) == 1 and len(fault.hits("/slow")) == 2


def test_server_errors_are_retried_with_backoff(connect: Connect, fault: FaultServer) -> None:
    url = fault.script("/flaky", Reply(500, {}), Reply(502, {}), Reply(body=[{"id": 1}]))
    connector = connect(url=url, backoff=0.5)
    assert ids(read_all(connector), "id") == [1]
    assert len(connector.waits) == 2
    assert 0 <= connector.waits[0] <= 0.5 and 0 <= connector.waits[1] <= 1.0


def test_a_connection_error_is_retried_then_reported(connect: Connect) -> None:
    connector = connect(url=f"http://127.0.0.1:{closed_port()}/closed", retries=2)
    message = error(connector)
    assert "failed after 3 attempt(s)" in message and "connection failed" in message
    assert len(connector.waits) == 2


def test_retry_after_is_honoured_exactly(connect: Connect, fault: FaultServer) -> None:
    url = fault.script("/busy", Reply(429, {}, {"Retry-After": "2"}), Reply(body=[{"id": 1}]))
    slept: list[float] = []
    connector = connect(url=url)
    connector._sleep = slept.append
    assert ids(read_all(connector), "id") == [1]
    assert connector.waits == [2.0] and slept == [2.0]


def test_retry_after_as_an_http_date(connect: Connect, fault: FaultServer) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    url = fault.script("/busy", Reply(503, {}, {"Retry-After": when}), Reply(body=[{"id": 1}]))
    connector = connect(url=url)
    assert ids(read_all(connector), "id") == [1]
    assert len(connector.waits) == 1 and 25 < connector.waits[0] <= 30


def test_retry_after_beyond_the_budget_fails_at_once(connect: Connect,
                                                     fault: FaultServer) -> None:
    url = fault.script("/busy", Reply(429, {}, {"Retry-After": "3600"}))
    connector = connect(url=url, retry_budget=60)
    message = error(connector)
    assert "retry budget of 60s" in message and "3600" in message and url in message
    assert connector.waits == [] and len(fault.hits("/busy")) == 1


def test_retries_exhausted_names_status_and_attempts(connect: Connect,
                                                     fault: FaultServer) -> None:
    url = fault.script("/down", Reply(503, {"error": "maintenance"}))
    connector = connect(url=url, retries=3)
    message = error(connector)
    assert "failed after 4 attempt(s)" in message and "HTTP 503" in message and url in message
    assert len(connector.waits) == 3 and len(fault.hits("/down")) == 4


def test_malformed_json_names_the_page(connect: Connect, fault: FaultServer) -> None:
    url = fault.script("/p", Reply(body=[{"id": 1}]), Reply(raw=b'[{"id": 2}, {"id": '))
    message = error(connect(url=url, paginate="page"))
    assert f"page 2 at {url}?page=2 is not valid JSON" in message
    assert "line 1 column 20" in message


def test_a_truncated_page_is_retried_like_a_server_error(connect: Connect,
                                                        fault: FaultServer) -> None:
    url = fault.script("/p", Reply(body=[{"id": 1}]), Reply(raw=b'[{"id": 2}, {"id": '),
                       Reply(body=[{"id": 2}, {"id": 3}]), Reply(body=[]))
    connector = connect(url=url, paginate="page", backoff=0.5)
    assert ids(read_all(connector), "id") == [1, 2, 3]
    assert len(connector.waits) == 1 and 0 <= connector.waits[0] <= 0.5  # the same backoff
    assert [h.params.get("page") for h in fault.hits("/p")][1:3] == ["2", "2"]


def test_a_page_broken_every_time_fails_after_the_retries(connect: Connect,
                                                          fault: FaultServer) -> None:
    url = fault.script("/p", Reply(raw=b'{"data": [{"id": 1}'))
    connector = connect(url=url, retries=2)
    message = error(connector)
    assert f"page 1 at {url} is not valid JSON after 3 attempt(s)" in message
    assert len(connector.waits) == 2 and len(fault.hits("/p")) == 3


# -- endless pagination ----------------------------------------------------------------------------


def test_a_repeating_cursor_is_a_loop(connect: Connect, fault: FaultServer) -> None:
    url = fault.script("/loop", Reply(body={"data": [{"id": 1}], "next_cursor": "abc"}),
                       Reply(body={"data": [{"id": 2}], "next_cursor": "abc"}))
    message = error(connect(url=url, paginate="cursor"))
    assert "pagination loop" in message and "'abc'" in message
    assert len(fault.hits("/loop")) == 2


def test_a_repeating_next_link_is_a_loop(connect: Connect, fault: FaultServer) -> None:
    url = fault.script("/loop",
                       Reply(body=[{"id": 1}], headers={"Link": '</loop?p=2>; rel="next"'}),
                       Reply(body=[{"id": 2}], headers={"Link": '</loop>; rel="next"'}))
    message = error(connect(url=url, paginate="link"))
    assert "pagination loop" in message and url in message


def test_a_page_parameter_ignored_is_a_loop(connect: Connect, fault: FaultServer) -> None:
    url = fault.script("/same", Reply(body={"data": [{"id": 1}, {"id": 2}]}))
    message = error(connect(url=url, paginate="page"))
    assert "pagination loop" in message and "page 2" in message and "'page'" in message


def test_max_pages_bounds_the_read(connect: Connect, fault: FaultServer) -> None:
    def endless(seen: Seen) -> Reply:
        n = int(seen.params.get("cursor", "0"))
        return Reply(body={"data": [{"id": n}], "meta": {"next": str(n + 1)}})

    url = fault.script("/endless", endless)
    message = error(connect(url=url, paginate="cursor", next_cursor="meta.next", max_pages=3))
    assert "max_pages=3" in message and len(fault.hits("/endless")) == 3


# -- incremental and sampling ----------------------------------------------------------------------


def test_since_goes_to_the_api(connect: Connect, fault: FaultServer) -> None:
    url = fault.script("/inc", Reply(body=[{"id": 1}]))
    connector = connect(url=url, since_param="updated_since", params={"status": "open"})
    (stream,) = connector.streams()
    list(connector.read(stream, since=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)))
    list(connector.read(stream, since=17))
    list(connector.read(stream))
    assert [s.params for s in fault.hits("/inc")] == [
        {"status": "open", "updated_since": "2025-01-02T03:04:05Z"},
        {"status": "open", "updated_since": "17"},
        {"status": "open"}]


def test_sample_reads_only_what_it_needs(connect: Connect, fault: FaultServer) -> None:
    def page(seen: Seen) -> Reply:
        n = int(seen.params["page"])
        return Reply(body={"data": [{"id": n * 3 + i} for i in range(3)], "total": 100})

    url = fault.script("/s", page)
    connector = connect(url=url, paginate="page")
    sample = connector.sample(connector.streams()[0], 5)
    assert sample.rows.num_rows == 5 and sample.rows.column("id").to_pylist() == [3, 4, 5, 6, 7]
    assert (sample.total_rows, sample.estimated, sample.parts) == (100, False, 2)
    assert sample.nbytes and len(fault.hits("/s")) == 2


def test_sample_ignores_a_count_of_the_page(connect: Connect, fault: FaultServer) -> None:
    url = fault.script("/s", Reply(body={"data": [{"id": 1}, {"id": 2}], "count": 2,
                                         "next_cursor": "more"}))
    connector = connect(url=url, paginate="cursor")
    sample = connector.sample(connector.streams()[0], 2)
    assert (sample.rows.num_rows, sample.total_rows, sample.parts) == (2, None, 1)


def test_sample_totals_exact_or_estimated(connect: Connect, tickets: TicketsServer) -> None:
    everything = connect(url=tickets.url, paginate="cursor")
    sample = everything.sample(everything.streams()[0], 1000)
    assert (sample.rows.num_rows, sample.total_rows, sample.estimated) == (237, 237, False)
    paged = connect(url=tickets.url, paginate="page", size_param="per_page", page_size=50)
    sample = paged.sample(paged.streams()[0], 10)
    assert (sample.rows.num_rows, sample.total_rows, sample.estimated) == (10, 250, True)
    assert sample.parts == 1
