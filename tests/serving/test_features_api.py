"""The feature endpoints over HTTP, on a real project: lake tables, definitions.py, apply and
materialize, read through FastAPI's TestClient (and once through a real ``tarmac serve`` with
two worker processes).

The project's data is placed relative to now, so that one customer's values are present, one's
are older than the view's ttl (stale) and an unknown customer is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import tarmac
from conftest import make_project, require_server
from serving.conftest import wait_until_up
from tarmac.cli import app as cli_app
from tarmac.project import Project
from tarmac.serving import create_app
from tarmac.serving.app import TarmacApp
from tarmac.serving.features_api import MAX_BODY_BYTES, MAX_ENTITIES

with warnings.catch_warnings():  # starlette would rather its test client ran on httpx2
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

NOW = datetime.now(UTC).replace(microsecond=0)
TS = pa.timestamp("us", tz="UTC")

DEFINITIONS = '''
from tarmac.features import *

customer = Entity("customer", join_keys=["customer_id"])
shop = Entity("shop", join_keys=["shop_id"])

activity = FeatureView(name="activity", entities=[customer], source="activity", timestamp="ev",
                       ttl="30d", features=[Feature("sessions", Int64), Feature("spend", Float64),
                                            Feature("region", String)])
shops = FeatureView(name="shops", entities=[shop], source="shops", timestamp="ev",
                    features=[Feature("rating", Float64)])


@on_demand(inputs=[activity[["spend"]]], request=[Feature("basket", Float64)],
           features=[Feature("ratio", Float64)])
def spend_ratio(df):
    return {"ratio": df["basket"] / (df["spend"] + 1)}


churn = FeatureService("churn", [activity[["sessions", "spend"]], spend_ratio])
'''


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def build(root: Path) -> Project:
    """The project: customer 1 and 3 fresh, customer 2 older than the 30 day ttl."""
    p = make_project(root)
    rows = [  # customer_id, hours ago, sessions, spend, region
        (1, 3, 2, 10.0, "north"), (1, 1, 5, 20.0, "south"),
        (2, 24 * 60, 9, 99.0, "east"),
        (3, 2, 1, 3.0, "west"),
    ]
    p.lake.write("activity", pa.table({
        "customer_id": pa.array([r[0] for r in rows], pa.int64()),
        "ev": pa.array([NOW - timedelta(hours=r[1]) for r in rows], TS),
        "sessions": pa.array([r[2] for r in rows], pa.int64()),
        "spend": [r[3] for r in rows], "region": [r[4] for r in rows]}))
    p.lake.write("shops", pa.table({
        "shop_id": ["s1", "s2"], "ev": pa.array([NOW - timedelta(days=400)] * 2, TS),
        "rating": [4.5, 3.0]}))
    (root / "definitions.py").write_text(DEFINITIONS)
    p.features.apply()
    p.features.materialize()
    return p


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    p = build(tmp_path_factory.mktemp("serving") / "proj")
    yield p
    p.close()


@pytest.fixture(scope="module")
def client(project: Project) -> Iterator[TestClient]:
    with TestClient(create_app(project)) as c:
        yield c


def _with_config(project: Project, root: Path, **settings: str) -> Project:
    """A copy of ``project`` in ``root`` with some tarmac.yaml settings replaced."""
    shutil.copytree(project.root, root)
    yaml = root / "tarmac.yaml"
    lines = yaml.read_text().splitlines()
    for key, value in settings.items():
        lines = [f"{key}: {value}" if line.startswith(f"{key}:") else line for line in lines]
    yaml.write_text("\n".join(lines) + "\n")
    if "name" in settings:  # the copied catalog belongs to the old name: a rename is explicit
        claimed = CliRunner().invoke(cli_app, ["--project", str(root), "catalog", "claim"])
        assert claimed.exit_code == 0, claimed.output
    return tarmac.open(root)


def post(client: TestClient, body: Any) -> httpx.Response:
    return client.post("/features", json=body)


def locs(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [e["loc"] for e in response.json()["detail"]]


# ---------------------------------------------------------------------------------------------
# 200: present, missing and stale values


def test_service_returns_present_missing_and_stale(client: TestClient) -> None:
    r = post(client, {"features": "churn", "entities": [
        {"customer_id": 1, "basket": 21.0}, {"customer_id": 999, "basket": 1.0},
        {"customer_id": 2, "basket": 5}]})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["features"] == ["sessions", "spend", "ratio"]
    fresh, missing, stale = body["results"]
    assert fresh == {
        "entity": {"customer_id": 1, "basket": 21.0},
        "values": {"sessions": 5, "spend": 20.0, "ratio": 1.0},  # the latest row, 1 hour ago
        "status": {"sessions": "present", "spend": "present", "ratio": "present"},
        "event_time": {"sessions": iso(NOW - timedelta(hours=1)),
                       "spend": iso(NOW - timedelta(hours=1)), "ratio": None}}
    assert missing["values"] == {"sessions": None, "spend": None, "ratio": None}
    assert missing["status"] == {"sessions": "missing", "spend": "missing", "ratio": "missing"}
    assert missing["event_time"] == {"sessions": None, "spend": None, "ratio": None}
    assert stale["values"] == {"sessions": None, "spend": None, "ratio": None}
    assert stale["status"] == {"sessions": "stale", "spend": "stale", "ratio": "missing"}
    assert stale["event_time"]["sessions"] == iso(NOW - timedelta(days=60))


def test_ref_list_across_views(client: TestClient) -> None:
    r = post(client, {"features": ["activity:region", "shops"], "entities": [
        {"customer_id": "3", "shop_id": "s1"}, {"customer_id": 1, "shop_id": "nope"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["features"] == ["region", "rating"]
    first, second = body["results"]
    assert first["values"] == {"region": "west", "rating": 4.5}  # shops has no ttl
    assert first["status"] == {"region": "present", "rating": "present"}
    assert first["entity"] == {"customer_id": "3", "shop_id": "s1"}  # echoed as sent
    assert second["values"] == {"region": "south", "rating": None}
    assert second["status"] == {"region": "present", "rating": "missing"}


def test_no_entities_is_an_empty_answer(client: TestClient) -> None:
    r = post(client, {"features": "activity", "entities": []})
    assert r.status_code == 200
    assert r.json() == {"features": ["sessions", "spend", "region"], "results": []}


def test_extra_fields_of_an_entity_are_echoed(client: TestClient) -> None:
    r = post(client, {"features": ["activity:sessions"],
                      "entities": [{"customer_id": 1, "note": [1, 2]}]})
    assert r.status_code == 200
    assert r.json()["results"][0]["entity"] == {"customer_id": 1, "note": [1, 2]}


def test_max_entities_is_accepted(client: TestClient) -> None:
    r = post(client, {"features": ["activity:sessions"],
                      "entities": [{"customer_id": i % 5} for i in range(MAX_ENTITIES)]})
    assert r.status_code == 200
    assert len(r.json()["results"]) == MAX_ENTITIES


# ---------------------------------------------------------------------------------------------
# 422: malformed requests, each error naming its field


def test_body_not_json(client: TestClient) -> None:
    r = client.post("/features", content=b"{features: churn")
    assert locs(r) == [["body"]]
    assert r.json()["detail"][0]["type"] == "json_invalid"
    assert "not JSON" in r.json()["detail"][0]["msg"]
    r = client.post("/features", content=b"")
    assert locs(r) == [["body"]] and "empty" in r.json()["detail"][0]["msg"]


@pytest.mark.parametrize("body", [[{"features": "churn"}], "churn", 42, None])
def test_body_not_an_object(client: TestClient, body: Any) -> None:
    r = client.post("/features", content=json.dumps(body))
    assert locs(r) == [["body"]]
    assert "JSON object" in r.json()["detail"][0]["msg"]


def test_missing_fields(client: TestClient) -> None:
    r = post(client, {})
    assert locs(r) == [["body", "features"], ["body", "entities"]]
    assert all(e["type"] == "missing" for e in r.json()["detail"])
    assert locs(post(client, {"features": "churn"})) == [["body", "entities"]]
    assert locs(post(client, {"entities": []})) == [["body", "features"]]


@pytest.mark.parametrize(("features", "loc"), [
    (5, ["body", "features"]),
    ({"name": "churn"}, ["body", "features"]),
    ("", ["body", "features"]),
    ([], ["body", "features"]),
    (["activity:sessions", 3], ["body", "features", 1]),
    (["activity:sessions", ""], ["body", "features", 1]),
])
def test_ill_typed_features(client: TestClient, features: Any, loc: list[Any]) -> None:
    assert locs(post(client, {"features": features, "entities": []})) == [loc]


@pytest.mark.parametrize("entities", [{"customer_id": 1}, "1", 1, None])
def test_ill_typed_entities(client: TestClient, entities: Any) -> None:
    r = post(client, {"features": "churn", "entities": entities})
    assert locs(r) == [["body", "entities"]]
    assert r.json()["detail"][0]["type"] == "list_type"


def test_entity_not_an_object(client: TestClient) -> None:
    r = post(client, {"features": ["activity:sessions"],
                      "entities": [{"customer_id": 1}, 7, [1], {"customer_id": 2}]})
    assert locs(r) == [["body", "entities", 1], ["body", "entities", 2]]
    assert r.json()["detail"][0]["type"] == "dict_type"


def test_entity_missing_a_join_key(client: TestClient) -> None:
    r = post(client, {"features": ["activity:sessions", "shops:rating"],
                      "entities": [{"customer_id": 1, "shop_id": "s1"}, {"customer": 1}]})
    assert locs(r) == [["body", "entities", 1, "customer_id"], ["body", "entities", 1, "shop_id"]]
    detail = r.json()["detail"]
    assert detail[0]["type"] == "missing"
    assert "customer_id" in detail[0]["msg"] and "activity" in detail[0]["msg"]


def test_entity_missing_a_request_value(client: TestClient) -> None:
    r = post(client, {"features": "churn", "entities": [{"customer_id": 1}]})
    assert locs(r) == [["body", "entities", 0, "basket"]]
    assert "spend_ratio" in r.json()["detail"][0]["msg"]


@pytest.mark.parametrize("value", ["abc", None, True, 1.5, [1], {"a": 1}])
def test_ill_typed_integer_key(client: TestClient, value: Any) -> None:
    r = post(client, {"features": ["activity:sessions"], "entities": [{"customer_id": value}]})
    assert locs(r) == [["body", "entities", 0, "customer_id"]]
    assert "must be an integer" in r.json()["detail"][0]["msg"]


def test_ill_typed_request_value(client: TestClient) -> None:
    r = post(client, {"features": "churn", "entities": [{"customer_id": 1, "basket": "big"}]})
    assert locs(r) == [["body", "entities", 0, "basket"]]
    assert "must be a number" in r.json()["detail"][0]["msg"]


def test_too_many_entities(client: TestClient) -> None:
    r = post(client, {"features": "churn",
                      "entities": [{"customer_id": 1}] * (MAX_ENTITIES + 1)})
    assert locs(r) == [["body", "entities"]]
    detail = r.json()["detail"][0]
    assert detail["type"] == "too_long"
    assert f"too many entities: {MAX_ENTITIES + 1}" in detail["msg"]
    assert f"at most {MAX_ENTITIES}" in detail["msg"]


def test_errors_are_listed_per_entity(client: TestClient) -> None:
    entities: list[Any] = [{"customer_id": 1}, {}, {"customer_id": "x"}, 3]
    r = post(client, {"features": ["activity:sessions"], "entities": entities})
    assert locs(r) == [["body", "entities", 1, "customer_id"],
                       ["body", "entities", 2, "customer_id"], ["body", "entities", 3]]


# ---------------------------------------------------------------------------------------------
# 404, 503, 500


@pytest.mark.parametrize(("features", "said"), [
    ("chrun", "no feature service named 'chrun'; did you mean 'churn'?"),
    (["activty:sessions"], "did you mean 'activity'?"),
    (["activity:sesions"], "feature view 'activity' has no feature 'sesions'; did you mean "
                           "'sessions'?"),
])
def test_unknown_names_are_404_with_a_suggestion(client: TestClient, features: Any,
                                                 said: str) -> None:
    r = post(client, {"features": features, "entities": [{"customer_id": 1}]})
    assert r.status_code == 404
    assert said in r.json()["detail"]


@pytest.fixture
def down_project(project: Project, tmp_path: Path) -> Iterator[Project]:
    """A copy of the project whose online store (Redis on port 1) is unreachable."""
    p = _with_config(project, tmp_path / "down", online_store="redis://127.0.0.1:1/0")
    yield p
    p.close()


def test_online_store_unreachable_is_503(down_project: Project) -> None:
    with TestClient(create_app(down_project)) as c:
        r = post(c, {"features": "churn", "entities": [{"customer_id": 1, "basket": 2.0}]})
        assert r.status_code == 503
        assert "online store redis://127.0.0.1:1/0 is unreachable" in r.json()["detail"]
        assert "Redis" in r.json()["hint"]
        ready = c.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "unavailable"
        assert "unreachable" in ready.json()["detail"]
        assert c.get("/health").status_code == 200
        assert c.get("/features").status_code == 200  # the registry is still readable
        # a malformed request is still a 422 and an unknown name a 404 (no store needed)
        assert post(c, {"features": "churn", "entities": [{}]}).status_code == 422
        assert post(c, {"features": "nope", "entities": []}).status_code == 404


@pytest.mark.redis
def test_redis_online_store_is_read_off_the_event_loop(project: Project,
                                                       tmp_path: Path) -> None:
    require_server("Redis", "127.0.0.1", 6379)
    name = f"t{uuid.uuid4().hex[:12]}"  # its own Redis namespace
    p = _with_config(project, tmp_path / "redis", name=name,
                     online_store="redis://127.0.0.1:6379/0")
    try:
        p.features.materialize(full=True)
        with TestClient(create_app(p)) as c:
            r = post(c, {"features": "churn", "entities": [
                {"customer_id": 1, "basket": 21.0}, {"customer_id": 2, "basket": 1.0}]})
            assert r.status_code == 200, r.text
            fresh, stale = r.json()["results"]
            assert fresh["values"] == {"sessions": 5, "spend": 20.0, "ratio": 1.0}
            assert stale["status"]["sessions"] == "stale"
            assert c.get("/ready").json()["online_store"] == "redis://127.0.0.1:6379/0"
    finally:
        for view in p.features.online_store.views():
            p.features.online_store.clear(view)
        p.close()


def test_a_bug_is_500_without_a_trace(project: Project, monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(project)

    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(project.features, "online", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = post(c, {"features": ["activity:sessions"], "entities": [{"customer_id": 1}]})
        assert r.status_code == 500
        assert r.json() == {"detail": "internal error: RuntimeError"}
        assert "secret" not in r.text
        monkeypatch.setattr(project.features, "registered", boom)
        r = c.get("/features")  # outside the hot path: the app-wide handler
        assert r.status_code == 500
        assert r.json() == {"detail": "internal error: RuntimeError"}
    assert any("secret internals" in (rec.exc_text or "") or rec.exc_info
               for rec in caplog.records)


def test_a_failing_on_demand_function_is_500_naming_the_view(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The definitions are at fault, not the request: a 5xx that says which view failed."""
    from tarmac.features.store import OnlineFeatures

    def failing(*_args: Any, **_kwargs: Any) -> OnlineFeatures:
        from tarmac.errors import OnDemandError

        raise OnDemandError("on-demand view 'spend_ratio' raised ZeroDivisionError: "
                            "division by zero", view="spend_ratio")

    monkeypatch.setattr(project.features, "online", failing)
    with TestClient(create_app(project), raise_server_exceptions=False) as c:
        r = post(c, {"features": "churn", "entities": [{"customer_id": 1, "basket": 2.0}]})
    assert r.status_code == 500
    # the view and the request id; the function's error stays in the server's log (issue 11)
    assert "on-demand view 'spend_ratio' failed" in r.json()["detail"]
    assert "ZeroDivisionError" not in r.text
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_registry_changes_are_picked_up(project: Project, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(project.root, root)
    with tarmac.open(root) as p, TestClient(create_app(p)) as c:
        assert post(c, {"features": "churn", "entities": [{"customer_id": 1}]}).status_code == 422
        text = (root / "definitions.py").read_text().replace(
            'FeatureService("churn", [activity[["sessions", "spend"]], spend_ratio])',
            'FeatureService("churn", [activity[["sessions", "spend"]]])')
        (root / "definitions.py").write_text(text)
        p.features.apply()
        r = post(c, {"features": "churn", "entities": [{"customer_id": 1}]})  # no basket needed
        assert r.status_code == 200, r.text
        assert r.json()["features"] == ["sessions", "spend"]


def test_a_body_over_the_limit_is_413(client: TestClient) -> None:
    big = b'{"features": "churn", "entities": [' + b'{"customer_id": 1},' * 300_000 + b"{}]}"
    assert len(big) > MAX_BODY_BYTES
    r = client.post("/features", content=big)
    assert r.status_code == 413
    assert "larger than" in r.json()["detail"]


def test_with_middleware_the_framework_route_answers_the_same(project: Project) -> None:
    """The fast lane steps aside when the app has middleware: the documented route answers,
    through the middleware, with the same bodies."""
    plain, wrapped = create_app(project), create_app(project)
    seen: list[str] = []

    @wrapped.middleware("http")
    async def record(request: Any, call_next: Any) -> Any:
        seen.append(f"{request.method} {request.url.path}")
        return await call_next(request)

    bodies: list[Any] = [
        {"features": "churn", "entities": [{"customer_id": 1, "basket": 21.0}]},
        {"features": "churn", "entities": [{"customer_id": 1}, 5]},
        {"features": "chrun", "entities": []},
        {"entities": "x"},
    ]
    with TestClient(plain) as fast, TestClient(wrapped) as framework:
        for body in bodies:
            a, b = post(fast, body), post(framework, body)
            assert (a.status_code, a.json()) == (b.status_code, b.json())
        assert framework.post("/features", content=b"nope").status_code == 422
        big = b"[" + b"1," * (MAX_BODY_BYTES // 2) + b"1]"
        assert framework.post("/features", content=big).status_code == 413
    assert seen.count("POST /features") == len(bodies) + 2
    assert isinstance(plain, TarmacApp) and plain._fast_lane is True
    assert isinstance(wrapped, TarmacApp) and wrapped._fast_lane is False


# ---------------------------------------------------------------------------------------------
# The other endpoints and the schema


def test_get_features_lists_services_and_views(client: TestClient) -> None:
    r = client.get("/features")
    assert r.status_code == 200
    body = r.json()
    assert body["services"] == [{
        "name": "churn", "description": "",
        "features": ["activity:sessions", "activity:spend", "spend_ratio:ratio"],
        "outputs": ["sessions", "spend", "ratio"], "join_keys": ["customer_id"],
        "request": ["basket"]}]
    views = {v["name"]: v for v in body["views"]}
    assert set(views) == {"activity", "shops", "spend_ratio"}
    assert [f["name"] for f in views["activity"]["features"]] == ["sessions", "spend", "region"]
    assert views["activity"]["join_keys"] == ["customer_id"]
    assert views["activity"]["ttl_seconds"] == 30 * 86400
    assert views["spend_ratio"]["kind"] == "on_demand"
    assert views["spend_ratio"]["request"] == [
        {"name": "basket", "dtype": "float64", "description": ""}]


def test_health_and_ready(client: TestClient, project: Project) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    r = client.get("/ready")
    assert r.status_code == 200
    assert r.json()["status"] == "ready"
    assert r.json()["online_store"].startswith("sqlite:///")
    assert r.json()["services"] == 1


def test_openapi_describes_request_and_response(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    post_op = spec["paths"]["/features"]["post"]
    schema = post_op["requestBody"]["content"]["application/json"]["schema"]
    assert post_op["requestBody"]["required"] is True
    assert set(schema["required"]) == {"features", "entities"}
    assert schema["properties"]["entities"]["maxItems"] == MAX_ENTITIES
    assert {"string", "array"} == {t["type"] for t in schema["properties"]["features"]["anyOf"]}
    ok = post_op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/FeaturesResponse"}
    assert {"404", "422", "503"} <= set(post_op["responses"])
    components = spec["components"]["schemas"]
    assert {"FeaturesResponse", "FeatureResult", "ValidationErrorBody"} <= set(components)
    assert "get" in spec["paths"]["/features"]
    assert {"/health", "/ready"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


# ---------------------------------------------------------------------------------------------
# tarmac serve


def test_serve_passes_tuned_settings_to_uvicorn(project: Project,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setenv("TARMAC_PROJECT", "elsewhere")  # restored afterwards
    runner = CliRunner()
    port = _free_port()
    result = runner.invoke(cli_app, ["--project", str(project.root), "serve", "--workers", "1",
                                     "--port", str(port)])
    assert result.exit_code == 0, result.output
    assert f"http://127.0.0.1:{port} " in result.output
    assert f"http://127.0.0.1:{port}/docs" in result.output
    app, kw = calls[0]
    assert not isinstance(app, str)  # in-process: the app object itself
    assert kw["loop"] == "uvloop" and kw["http"] == "httptools"
    assert kw["access_log"] is False and kw["timeout_keep_alive"] >= 60
    assert kw["port"] == port and kw["host"] == "127.0.0.1"

    result = runner.invoke(cli_app, ["--project", str(project.root), "serve", "--workers", "3",
                                     "--host", "0.0.0.0", "--port", str(_free_port())])
    assert result.exit_code == 0, result.output
    assert "3 workers" in result.output and "all interfaces" in result.output
    app, kw = calls[1]
    assert app == "tarmac.serving.app:app_from_env"
    assert kw["factory"] is True and kw["workers"] == 3
    assert os.environ["TARMAC_PROJECT"] == str(project.root.resolve())

    result = runner.invoke(cli_app, ["--project", str(project.root), "serve", "--workers", "0"])
    assert result.exit_code == 2 and "--workers 0" in result.output

    with socket.socket() as taken:  # a port in use: one line, before anything starts
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        result = runner.invoke(cli_app, ["--project", str(project.root), "serve", "--port",
                                         str(busy)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{busy}" in result.output
    assert len(calls) == 2  # uvicorn was not started


def test_default_workers_is_one_per_usable_cpu_within_1_to_8(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --workers, ``tarmac serve`` runs one worker per CPU this process may use, never
    fewer than 1 nor more than 8; on one CPU it serves in this process."""
    import uvicorn

    from tarmac.serving.server import default_workers

    n = default_workers()  # on this machine, untouched
    assert 1 <= n <= min(8, os.cpu_count() or 1)

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setenv("TARMAC_PROJECT", "elsewhere")  # restored afterwards
    runner = CliRunner()

    def serve_on(cpus: int) -> tuple[str, Any, dict[str, Any]]:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)),
                            raising=False)
        result = runner.invoke(cli_app, ["--project", str(project.root), "serve", "--port",
                                         str(_free_port())])
        assert result.exit_code == 0, result.output
        return result.output, *calls[-1]

    out, app, kw = serve_on(1)
    assert "(1 worker)" in out and not isinstance(app, str)  # the app object, in-process
    out, app, kw = serve_on(3)
    assert "3 workers" in out and kw["workers"] == 3
    out, app, kw = serve_on(64)
    assert "8 workers" in out and kw["workers"] == 8  # capped

    # no affinity API (not Linux): the CPU count, and 1 when even that is unknown
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert default_workers() == 2
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert default_workers() == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.slow
def test_tarmac_serve_with_two_workers(project: Project) -> None:
    port = _free_port()
    tarmac_bin = Path(sys.executable).parent / "tarmac"
    command = ([str(tarmac_bin)] if tarmac_bin.exists()
               else [sys.executable, "-c", "from tarmac.cli import main; main()"])
    env = {k: v for k, v in os.environ.items() if k != "TARMAC_PROJECT"}
    proc = subprocess.Popen(
        [*command, "--project", str(project.root), "serve", "--workers", "2", "--port",
         str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, url, path="/health", seconds=60)
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/ready").status_code == 200
            for _ in range(20):  # over one keep-alive connection
                r = http.post("/features", json={"features": "churn", "entities": [
                    {"customer_id": 1, "basket": 21.0}]})
                assert r.status_code == 200, r.text
                assert r.json()["results"][0]["values"] == {"sessions": 5, "spend": 20.0,
                                                            "ratio": 1.0}
            assert http.post("/features", json={"features": "chrun", "entities": []}
                             ).status_code == 404
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, output
        assert f"{url}/docs" in output
        assert "Traceback" not in output
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
