"""``POST /v1/predict/{name}`` and ``p.serving.predict`` on a real project: features fetched
online, request values, signature checks, every bad input and fault of the issue answered with
the right status (never a stack trace), on SQLite and PostgreSQL catalogs and SQLite and Redis
online stores.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tarmac.errors import BackendUnavailableError, UsageError
from tarmac.project import Project
from tarmac.serving import create_app
from tarmac.serving.predict import MAX_ROWS

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

from serving.conftest import _cleanup, build_served  # noqa: E402

URL = "/v1/predict/risk"


@pytest.fixture
def client(served: Project) -> Iterator[TestClient]:
    with TestClient(create_app(served)) as c:
        yield c


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One served project and app for the tests whose requests are refused (or answered
    without anything a test reads back): a served project trains two models, so it is built
    once for these cases instead of once per case. A test that reads counters, the log or the
    audit gets a fresh one (``client``, ``served``)."""
    p = build_served(tmp_path_factory.mktemp("predict") / "proj")
    try:
        with TestClient(create_app(p)) as c:
            yield c
    finally:
        _cleanup(p)


def post(client: TestClient, payload: Any, url: str = URL) -> Any:
    return client.post(url, content=orjson.dumps(payload),
                       headers={"content-type": "application/json"})


# -- answers, on every backend -------------------------------------------------------------


def test_entities_are_scored_with_features_fetched_online(served_any: Project) -> None:
    with TestClient(create_app(served_any)) as client:
        r = post(client, {"entities": [{"customer_id": 1}, {"customer_id": 999_999}]})
        assert r.status_code == 200, r.text
        body = r.json()
        known, unknown = body["predictions"]
        assert body["request_id"] == r.headers["x-request-id"]
        assert known["model"] == "risk@1" and 0 < known["score"] < 1
        assert known["label"] in (0, 1) and known["id"]
        assert known["features"]["status"] == {"a": "present", "b": "present",
                                               "region": "present"}
        # an unknown entity is not an error: its features are missing, it gets no score
        assert unknown["features"]["status"] == dict.fromkeys(("a", "b", "region"), "missing")
        assert unknown["score"] is None and unknown["label"] is None
        # the SDK runs the same path in process: the same score for the same entity
        sdk = served_any.serving.predict("risk", entities=[{"customer_id": 1}])
        assert sdk["predictions"][0]["score"] == pytest.approx(known["score"])
        assert sdk["predictions"][0]["model"] == "risk@1"


def test_request_values_score_alone_or_override_fetched_ones(served_any: Project) -> None:
    with TestClient(create_app(served_any)) as client:
        raw = {"a": 2.0, "b": -1.0, "region": "north"}
        alone = post(client, {"rows": [raw]}).json()["predictions"][0]
        assert alone["features"]["status"] == dict.fromkeys(raw, "request")
        fetched = post(client, {"entities": [{"customer_id": 1}]}).json()["predictions"][0]
        mixed = post(client, {"entities": [{"customer_id": 1}], "rows": [{"a": 2.0}]}
                     ).json()["predictions"][0]
        assert mixed["features"]["status"] == {"a": "request", "b": "present",
                                               "region": "present"}
        assert mixed["score"] != pytest.approx(fetched["score"])


# -- bad input: 422 naming the field and the row ---------------------------------------------

GOOD = {"a": 0.5, "b": 0.1, "region": "east"}


@pytest.mark.parametrize("payload, loc, kind", [
    ({"rows": [GOOD, {**GOOD, "a": "high"}]}, ["body", "rows", 1, "a"], "float64_type"),
    ({"rows": [{**GOOD, "a": True}]}, ["body", "rows", 0, "a"], "float64_type"),
    ({"rows": [{**GOOD, "region": 3}]}, ["body", "rows", 0, "region"], "string_type"),
    ({"rows": [{"a": 1.0, "b": 2.0}]}, ["body", "rows", 0, "region"], "missing"),
    ({"rows": [{**GOOD, "plan": "x"}]}, ["body", "rows", 0, "plan"], "extra_forbidden"),
    ({"entities": [{"customer_id": 1, "shop": 2}]}, ["body", "entities", 0, "shop"],
     "extra_forbidden"),
    ({"entities": [{"cust": 1}]}, ["body", "entities", 0, "customer_id"], "missing"),
    ({"entities": [{"customer_id": "abc"}]}, ["body", "entities", 0, "customer_id"], None),
    ({"entities": [{"customer_id": 1}], "rows": [GOOD, GOOD]}, ["body", "rows"],
     "length_mismatch"),
    ({}, ["body"], "missing"),
    ({"rows": []}, ["body"], "missing"),
    ({"rows": {"a": 1}}, ["body", "rows"], "list_type"),
    ({"rows": [1]}, ["body", "rows", 0], "dict_type"),
    ({"features": "risk"}, ["body", "features"], "extra_forbidden"),
    ([GOOD], ["body"], "dict_type"),
    ({"rows": [GOOD] * 10_000}, ["body", "rows"], "too_long"),
])
def test_bad_fields_are_422_naming_field_and_row(refusing: TestClient, payload: Any,
                                                 loc: list[Any], kind: str | None) -> None:
    r = post(refusing, payload)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert errors[0]["loc"] == loc
    if kind:
        assert errors[0]["type"] == kind
    assert errors[0]["msg"]


def test_the_rows_limit_is_stated(refusing: TestClient) -> None:
    msg = post(refusing, {"rows": [GOOD] * (MAX_ROWS + 1)}).json()["detail"][0]["msg"]
    assert f"at most {MAX_ROWS:,}" in msg and "tarmac score" in msg
    assert post(refusing, {"rows": [GOOD] * MAX_ROWS}).status_code == 200


@pytest.mark.parametrize("raw", [b'{"rows": [{"a": NaN, "b": 1, "region": "x"}]}',
                                 b'{"rows": [{"a": Infinity, "b": 1, "region": "x"}]}',
                                 b'{"rows": [{"a": 1e999, "b": 1, "region": "x"}]}',
                                 b'{"rows": [', b"", b"not json"])
def test_malformed_json_nan_and_infinity_are_422(refusing: TestClient, raw: bytes) -> None:
    r = refusing.post(URL, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["type"] in ("json_invalid", "float64_type")


def test_sdk_refuses_nan_like_http(served: Project) -> None:
    with pytest.raises(UsageError, match="rows.0.a"):
        served.serving.predict("risk", rows=[{**GOOD, "a": math.nan}])
    with pytest.raises(UsageError, match="did you mean 'risk'"):
        served.serving.predict("rsk", rows=[GOOD])


def test_wrong_content_type_is_415(refusing: TestClient) -> None:
    r = refusing.post(URL, content=b"a=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "JSON" in r.json()["detail"]
    # curl -d sends a form content type: its JSON body is read as JSON
    r = refusing.post(URL, content=orjson.dumps({"rows": [GOOD]}),
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200


def test_a_10_mb_body_is_413(refusing: TestClient) -> None:
    r = refusing.post(URL, content=b'{"rows": [' + b" " * (10 << 20) + b"]}",
                      headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_unknown_endpoint_is_404_naming_close_names(refusing: TestClient) -> None:
    r = post(refusing, {"rows": [GOOD]}, "/v1/predict/rsk")
    assert r.status_code == 404
    assert "rsk" in r.json()["detail"] and "did you mean 'risk'" in r.json()["hint"]


# -- faults -----------------------------------------------------------------------------------


def test_no_champion_is_503_saying_so(tmp_path: Path) -> None:
    p = build_served(tmp_path / "p", versions=1, promote=False)
    try:
        with TestClient(create_app(p)) as client:
            r = post(client, {"entities": [{"customer_id": 1}]})
        assert r.status_code == 503 and r.headers["retry-after"]
        assert "has no champion" in r.json()["detail"]
        assert "tarmac promote risk" in r.json()["hint"]
        with pytest.raises(BackendUnavailableError, match="no champion"):
            p.serving.predict("risk", entities=[{"customer_id": 1}])
    finally:
        p.close()


def test_online_store_down_is_503(served: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    store = served.features.online_store

    def unreachable(*_a: Any, **_k: Any) -> Any:  # what a store raises when its server is gone
        raise BackendUnavailableError(f"online store {store.url} is unreachable")

    monkeypatch.setattr(store, "read", unreachable)
    with TestClient(create_app(served)) as client:
        r = post(client, {"entities": [{"customer_id": 1}]})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] and "unreachable" in r.json()["detail"]
        # raw rows need no store: still answered
        assert post(client, {"rows": [GOOD]}).status_code == 200


RAISES = '''
@model(name="risk", features="risk", label=label("labels", "churned", timestamp="observed"),
       split=time_split(by="known_at"))
def train(data):
    import numpy as np

    def score(frame):
        if (frame["a"] > 100).any():
            raise ValueError("a is out of range: secret 4242")
        return 1 / (1 + np.exp(-(1.8 * frame["a"] - 1.2 * frame["b"])))
    return score
'''


def test_a_model_that_raises_is_500_naming_endpoint_and_version(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from models.conftest import FEATURES

    p = build_served(tmp_path / "p", versions=1, text=FEATURES + RAISES)
    try:
        with TestClient(create_app(p)) as client:
            r = post(client, {"rows": [GOOD, {**GOOD, "a": 1000.0}]})
            assert r.status_code == 500
            detail = r.json()["detail"]
            assert "endpoint 'risk'" in detail and "risk v1" in detail
            assert r.json()["request_id"] in detail and "4242" not in r.text
            assert "a is out of range" in caplog.text  # the error is in the server's log
            assert post(client, {"rows": [GOOD]}).status_code == 200  # still serving
        # the app stopped: its log flushed; the failed rows are there as errors
        figures = p.serving.status("risk")[0].traffic["v1 champion"]
        assert (figures["requests"], figures["predictions"], figures["errors"]) == (2, 3, 2)
    finally:
        p.close()


# -- operations -------------------------------------------------------------------------------


def test_metrics_count_requests_features_and_in_flight(client: TestClient) -> None:
    assert post(client, {"entities": [{"customer_id": 1}, {"customer_id": 999_999}]}
                ).status_code == 200
    post(client, {"rows": [{"a": "x"}]})
    text = client.get("/metrics").text
    assert 'tarmac_predict_requests_total{endpoint="risk",status="200",version="1"} 1.0' in text
    assert 'tarmac_predict_requests_total{endpoint="risk",status="422",version="1"} 1.0' in text
    assert 'tarmac_predict_latency_seconds_bucket{endpoint="risk"' in text
    assert 'tarmac_feature_values_total{endpoint="risk",status="missing"} 3.0' in text
    assert "tarmac_in_flight_requests 0.0" in text
    assert 'tarmac_model_serving{endpoint="risk",role="champion"} 1.0' in text


def test_ready_says_which_versions_serve(refusing: TestClient) -> None:
    r = refusing.get("/ready")
    assert r.status_code == 200, r.text
    assert r.json()["endpoints"] == {"risk": {"champion": 1}}
    assert r.json()["load_failures"] == []
    listed = refusing.get("/v1/endpoints").json()["endpoints"]
    assert listed == [{"name": "risk", "champion": 1, "canary": None, "percent": None,
                       "shadow": None, "serving": {"champion": 1}}]


# -- the prediction log -----------------------------------------------------------------------


def test_every_answered_prediction_is_logged_before_the_answer(served: Project) -> None:
    from tarmac.serving.predlog import read_predictions

    answer = served.serving.predict("risk", entities=[{"customer_id": 1}, {"customer_id": 2}],
                                    rows=[{"a": 0.5}, {}], request_id="req-7")
    ids = [x["id"] for x in answer["predictions"]]
    engine = served.serving.engine
    assert engine.log.stats()["appended"] == 2  # in the segment before predict returned
    engine.log.flush()
    logged = read_predictions(served, "risk").to_pylist()
    assert served.serving.predictions("risk", since="1h").num_rows == 2
    assert sorted(r["id"] for r in logged) == sorted(ids)
    first = next(r for r in logged if r["id"] == ids[0])
    assert first["request_id"] == "req-7" and first["role"] == "champion"
    assert first["version"] == 1
    assert orjson.loads(first["request"]) == {"customer_id": 1, "a": 0.5}
    status = served.serving.status("risk")[0]
    assert status.answered == 2 and status.logged == 2 and status.pending == 0
    assert status.traffic["v1 champion"]["requests"] == 1


@pytest.mark.parametrize("error", ["LogBackpressure", "LogUnavailable"])
def test_a_log_that_refuses_records_is_503_and_nothing_is_answered(
        served: Project, monkeypatch: pytest.MonkeyPatch, error: str) -> None:
    from tarmac.serving import predlog
    from tarmac.serving.predlog import PredictionLog

    def refuse(self: Any, records: Any) -> None:  # backpressure, or a full disk
        raise getattr(predlog, error)("the log cannot take them", retry_after=2)

    monkeypatch.setattr(PredictionLog, "append", refuse)
    with TestClient(create_app(served)) as client:
        r = post(client, {"entities": [{"customer_id": 1}]})
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    assert "prediction log" in r.json()["detail"] and "predictions" not in r.json()


def test_the_prediction_log_can_be_turned_off_and_says_so(
        served: Project, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("TARMAC_PREDICTION_LOG", "off")
    with TestClient(create_app(served)) as client:
        assert post(client, {"rows": [GOOD]}).status_code == 200
        assert client.get("/ready").json()["prediction_log"] == "off"
    assert "prediction log is OFF (TARMAC_PREDICTION_LOG=off)" in caplog.text
    assert "predictions" not in served.lake.tables()  # nothing recorded
    monkeypatch.delenv("TARMAC_PREDICTION_LOG")
    with TestClient(create_app(served)) as client:
        assert post(client, {"rows": [GOOD]}).status_code == 200
        assert isinstance(client.get("/ready").json()["prediction_log"], dict)
    assert served.sql("SELECT count(*) AS n FROM predictions").to_pylist() == [{"n": 1}]


def test_fast_lane_and_framework_route_answer_alike(served: Project) -> None:
    """POST /v1/predict/{name} runs on the app's fast lane; with middleware the documented
    route answers instead, through it, with the same statuses and bodies."""
    plain, wrapped = create_app(served), create_app(served)
    seen: list[str] = []

    @wrapped.middleware("http")
    async def record(request: Any, call_next: Any) -> Any:
        seen.append(request.url.path)
        return await call_next(request)

    cases: list[tuple[str, bytes, str]] = [
        (URL, orjson.dumps({"rows": [GOOD]}), "application/json"),
        (URL, orjson.dumps({"rows": [{**GOOD, "a": "x"}]}), "application/json"),
        (URL, b"{nope", "application/json"),
        (URL, orjson.dumps({"rows": [GOOD]}), "text/csv"),
        ("/v1/predict/rsk", orjson.dumps({"rows": [GOOD]}), "application/json"),
    ]

    def strip(answer: Any) -> Any:  # ids and request ids differ between two calls
        body = answer.json()
        for p in body.get("predictions", []):
            p.pop("id")
        body.pop("request_id", None)
        return answer.status_code, body

    statuses = []
    with TestClient(plain) as fast, TestClient(wrapped) as framework:
        for url, content, kind in cases:
            a = fast.post(url, content=content, headers={"content-type": kind})
            b = framework.post(url, content=content, headers={"content-type": kind})
            assert strip(a) == strip(b), url
            assert a.headers["x-request-id"] and b.headers["x-request-id"]
            statuses.append(a.status_code)
        big = b'{"rows": [' + b" " * (5 << 20) + b"]}"
        for client in (fast, framework):
            r = client.post(URL, content=big, headers={"content-type": "application/json"})
            assert r.status_code == 413
    assert statuses == [200, 422, 422, 415, 404]
    assert seen.count(URL) == 5 and plain._fast_lane is True and wrapped._fast_lane is False
