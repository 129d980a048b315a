"""``POST /v1/topics/{topic}``: records appended to a stream source's topic after its contract's
checks (400 not JSON, 404 no such topic, 413 too big, 415 not JSON, 422 per record and field),
on the threadpool, counted in /metrics, in the OpenAPI schema."""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.conftest import CLICKS_SOURCES, click, stream_project
from tarmac.project import Project
from tarmac.serving import create_app
from tarmac.serving._metrics import Metrics
from tarmac.serving.app import TarmacApp
from tarmac.serving.topics_api import TopicEndpoints, topics_concern
from tarmac.streams import partition_for

with warnings.catch_warnings():  # starlette would rather its test client ran on httpx2
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

TOPIC = "click-events"
LIMITS = "serving:\n  topics: {max_body_mb: 0.05, max_records: 200}\n"  # 52,428 bytes
URL = f"/v1/topics/{TOPIC}"


@pytest.fixture
def clicks(tmp_path: Path) -> Iterator[Project]:
    p = stream_project(tmp_path / "proj", CLICKS_SOURCES + LIMITS)
    yield p
    p.close()


@pytest.fixture
def client(clicks: Project) -> Iterator[TestClient]:
    with TestClient(create_app(clicks)) as c:
        yield c


def held(p: Project) -> int:
    return sum(t.records for t in p.streams.topics() if t.name == TOPIC)


def errors(r: Any) -> list[tuple[list[Any], str, str]]:
    return [(e["loc"], e["type"], e["msg"]) for e in r.json()["detail"]]


def test_records_are_appended_with_their_deliveries(client: TestClient,
                                                    clicks: Project) -> None:
    records = [click(i) for i in range(12)]
    r = client.post(URL, json={"records": records})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["topic"], body["source"], body["count"], body["created"]) == (
        TOPIC, "clicks", 12, True)
    assert [d["partition"] for d in body["deliveries"]] == [
        partition_for(str(rec["user_id"]).encode(), 4) for rec in records]
    assert clicks.streams.topic(TOPIC).partitions == 4
    r = client.post("/v1/topics/clicks", json=[click(20), click(21)])  # the source, an array
    assert r.status_code == 200 and r.json()["count"] == 2 and not r.json()["created"]
    ndjson = b'{"event_id": "n1", "user_id": 1, "ts": "2026-05-01"}\n\n' \
             b'{"event_id": "n2", "user_id": 2, "ts": "2026-05-02"}\n'
    r = client.post(URL, content=ndjson, headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200 and r.json()["count"] == 2
    assert held(clicks) == 16


def test_bad_json_is_400_and_another_content_type_415(client: TestClient,
                                                      clicks: Project) -> None:
    r = client.post(URL, content=b'{"records": [{"event_id": ', headers={
        "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["detail"].startswith("the body is not JSON")
    r = client.post(URL, content=b"")
    assert r.status_code == 400 and r.json()["detail"] == "the body is empty"
    r = client.post(URL, content=b'{"event_id": "a", "user_id": 1, "ts": "2026-05-01"}\n{oops\n',
                    headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("line 2 of the body is not JSON")
    r = client.post(URL, content=b"event_id=1", headers={"content-type": "text/csv"})
    assert r.status_code == 415 and "text/csv" in r.json()["detail"]
    assert held(clicks) == 0


def test_each_bad_record_is_422_by_record_and_field_and_nothing_is_appended(
        client: TestClient, clicks: Project) -> None:
    no_key = {k: v for k, v in click(2).items() if k != "user_id"}
    r = client.post(URL, json={"records": [click(0), click(1, amount="lots"), no_key,
                                           click(3, user_id=None), "a string"]})
    assert r.status_code == 422, r.text
    assert errors(r) == [
        (["body", "records", 1, "amount"], "type", "'amount' is not a valid float, got "
                                                   '"lots"'),
        (["body", "records", 2, "user_id"], "missing",
         "a message without a key: field 'user_id' is missing; topic 'click-events' is keyed "
         "by it (stream source 'clicks'), so that one entity always lands in one partition"),
        (["body", "records", 3, "user_id"], "null",
         "a message without a key: field 'user_id' is null; topic 'click-events' is keyed by "
         "it (stream source 'clicks'), so that one entity always lands in one partition"),
        (["body", "records", 4], "not_object", "a record must be a JSON object, got a string")]
    assert (r.json()["errors"], r.json()["records"], r.json()["refused"]) == (4, 5, 4)
    assert r.json()["hint"] == "nothing was produced"
    r = client.post(URL, content=b'{"event_id": "a", "user_id": 1, "ts": "2026-05-01"}\n'
                                 b'{"event_id": "b", "user_id": "x", "ts": "2026-05-01"}\n',
                    headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 422 and r.json()["detail"][0]["line"] == 2
    assert held(clicks) == 0


def test_the_shape_of_the_body_is_422(client: TestClient, clicks: Project) -> None:
    cases: list[tuple[Any, list[Any], str]] = [
        ({"records": []}, ["body", "records"], "too_short"),
        ({"record": [click(1)]}, ["body", "record"], "extra_forbidden"),
        ({}, ["body", "records"], "missing"),
        ({"records": {"a": 1}}, ["body", "records"], "list_type"),
        (5, ["body"], "dict_type"),
        ({"records": [click(i) for i in range(201)]}, ["body", "records"], "too_long"),
    ]
    for payload, loc, kind in cases:
        r = client.post(URL, json=payload)
        assert r.status_code == 422, (payload, r.text)
        [(got_loc, got_kind, msg)] = errors(r)
        assert (got_loc, got_kind) == (loc, kind)
    assert "no records: send at least one" in errors(client.post(URL, json=[]))[0][2]
    assert held(clicks) == 0


def test_at_most_50_errors_are_listed_and_values_are_cut(client: TestClient) -> None:
    r = client.post(URL, json=[click(i, page="p" * 300) for i in range(120)])
    assert r.status_code == 422
    body = r.json()
    assert (len(body["detail"]), body["errors"], body["refused"]) == (50, 120, 120)
    assert body["hint"] == "nothing was produced; 70 more error(s) not listed"
    msg = body["detail"][0]["msg"]
    assert msg.endswith("…(302 chars)") and len(msg) < 300  # the value cut at 200 characters


def test_unknown_names_are_404(client: TestClient, clicks: Project) -> None:
    r = client.post("/v1/topics/clickz", json=[{"a": 1}])
    assert r.status_code == 404
    assert r.json()["detail"] == "no topic named 'clickz'"
    assert "declare a `type: stream` source over it" in r.json()["hint"]
    r = client.post("/v1/topics/" + "z" * 5000, json=[{"a": 1}])
    assert r.status_code == 404 and len(r.text) < 600  # the name is cut, not echoed whole
    r = client.post("/v1/topics/crm", json=[{"a": 1}])
    assert r.status_code == 404 and "is a file source, not a stream" in r.json()["detail"]
    clicks.streams.create_topic("plain")  # a topic no source declares: unchecked
    r = client.post("/v1/topics/plain", json={"records": [{"a": 1}, [2]]})
    assert r.status_code == 200 and r.json()["source"] is None and r.json()["count"] == 2


def test_a_body_over_the_limit_is_413_before_it_is_read(client: TestClient,
                                                        clicks: Project) -> None:
    big = b"[" + b'{"event_id": "x", "user_id": 1, "ts": "2026-05-01"},' * 1200 + b"{}]"
    assert len(big) > 52_428
    r = client.post(URL, content=big)
    assert r.status_code == 413
    assert r.json()["detail"] == "the body is larger than 52,428 bytes"
    assert "max_body_mb" in r.json()["hint"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: refused once the limit is passed
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096]

    r = client.post(URL, content=chunked())
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    assert held(clicks) == 0
    # a Content-Length over the limit is answered without reading a byte of the body
    endpoints = TopicEndpoints(clicks, Metrics())
    received: list[Any] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        received.append(1)
        return {"type": "http.request", "body": big, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": URL,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(big)).encode())]}
    asyncio.run(endpoints.asgi(scope, receive, send))
    assert sent[0]["status"] == 413 and received == []


def test_the_framework_route_answers_the_same(clicks: Project) -> None:
    """With middleware the fast lane steps aside; the documented route gives the same answers
    (413 included, in the same shape)."""
    plain, wrapped = create_app(clicks), create_app(clicks)

    @wrapped.middleware("http")
    async def passthrough(request: Any, call_next: Any) -> Any:
        return await call_next(request)

    big = b"[" + b"1," * 40_000 + b"1]"
    cases: list[dict[str, Any]] = [
        {"json": [click(1)]}, {"json": [click(2, user_id=None)]}, {"json": {"records": []}},
        {"content": b"nope"}, {"content": big},
        {"content": b"x", "headers": {"content-type": "text/plain"}}]
    with TestClient(plain) as fast, TestClient(wrapped) as framework:
        for case in cases:
            a, b = fast.post(URL, **case), framework.post(URL, **case)
            assert a.status_code == b.status_code, case
            if a.status_code != 200:
                assert a.json() == b.json(), case
        assert framework.post("/v1/topics/none", json=[1]).status_code == 404
    assert isinstance(plain, TarmacApp) and plain._fast_lane is True
    assert isinstance(wrapped, TarmacApp) and wrapped._fast_lane is False


def test_health_answers_while_a_batch_is_appended(client: TestClient, clicks: Project,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Checking and appending run on the threadpool: the event loop keeps answering."""
    log = clicks.streams
    entered, release = threading.Event(), threading.Event()
    produce = log.produce

    def slow(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert release.wait(30)
        return produce(*args, **kwargs)

    monkeypatch.setattr(log, "produce", slow)
    answers: list[int] = []
    worker = threading.Thread(target=lambda: answers.append(
        client.post(URL, json=[click(1)]).status_code))
    worker.start()
    try:
        assert entered.wait(30)
        assert client.get("/health").status_code == 200  # while the append is held
        assert answers == []
    finally:
        release.set()
        worker.join(30)
    assert answers == [200]


def test_metrics_count_requests_and_records(client: TestClient) -> None:
    assert client.post(URL, json=[click(i) for i in range(7)]).status_code == 200
    assert client.post(URL, json=[click(1, user_id=None)]).status_code == 422
    assert client.post("/v1/topics/nothing-here", json=[1]).status_code == 404
    text = client.get("/metrics").text
    assert f'tarmac_topic_records_total{{topic="{TOPIC}"}} 7.0' in text
    assert f'tarmac_topic_requests_total{{status="200",topic="{TOPIC}"}} 1.0' in text
    assert f'tarmac_topic_requests_total{{status="422",topic="{TOPIC}"}} 1.0' in text
    assert 'tarmac_topic_requests_total{status="404",topic="-"} 1.0' in text
    assert "nothing-here" not in text  # names that are no topic do not become series


def test_the_schema_documents_the_endpoint(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/v1/topics/{topic}"]["post"]
    assert set(op["responses"]) >= {"200", "400", "404", "413", "415", "422", "503"}
    assert set(op["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    assert "contract" in op["description"]



def test_readiness_names_the_log_and_touches_no_backend(clicks: Project) -> None:
    state = topics_concern(clicks, Metrics()).ready()
    assert state.ok and state.info == {"streams": "embedded", "stream_sources": ["clicks"]}
    assert "streams" not in clicks.__dict__  # the log is opened by the first request only
