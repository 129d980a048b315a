"""What the feature server's trials broke (issue 11, item 11): the same on-demand feature named
twice, huge or duplicated refs, echoed input, an on-demand function's failure, non-finite
on-demand values, a deleted online store, and the access log.

Each test builds on the project of ``test_features_api`` (present, stale and missing customers,
an on-demand ``spend_ratio``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import tarmac
from tarmac.cli import app as cli_app
from tarmac.errors import echo
from tarmac.project import Project
from tarmac.serving import create_app
from tarmac.serving.features_api import MAX_ENTITIES, MAX_NAME_CHARS, MAX_REFS
from tarmac.serving.server import running

from .test_features_api import _free_port, build

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

DOUBLE = ["spend_ratio:ratio", "spend_ratio:ratio"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    p = build(tmp_path_factory.mktemp("hardening") / "proj")
    yield p
    p.close()


def copy(project: Project, root: Path) -> Project:
    shutil.copytree(project.root, root)
    return tarmac.open(root)


# -- the same feature named twice ------------------------------------------------------------


def test_the_same_on_demand_feature_twice_in_the_sdk(project: Project) -> None:
    got = project.features.online(DOUBLE, [{"customer_id": 1, "basket": 21.0}])
    assert got.features == ["ratio"]
    assert got.rows == [{"ratio": 1.0}] and got.status == [{"ratio": "present"}]
    both = project.features.online(["activity", "activity:sessions", "activity:sessions"],
                                   [{"customer_id": 1}])
    assert both.features == ["sessions", "spend", "region"]


def test_the_same_on_demand_feature_twice_in_the_cli(project: Project) -> None:
    result = CliRunner().invoke(cli_app, [
        "--project", str(project.root), "features", "get", ",".join(DOUBLE),
        "--entity", "customer_id=1,basket=21", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["features"] == ["ratio"]
    assert body["results"][0]["values"] == {"ratio": 1.0}


# -- echoed input ----------------------------------------------------------------------------


def test_echo_clips_long_input() -> None:
    assert echo("churn") == "churn"
    clipped = echo("x" * 1_000_000)
    assert clipped == "x" * 80 + "…(1,000,000 chars)"
    assert echo(["a"]) == "['a']"


def test_an_unknown_huge_name_is_not_echoed_by_the_sdk(project: Project) -> None:
    from tarmac.errors import UsageError

    with pytest.raises(UsageError) as caught:
        project.features.online("y" * 1_000_000, [{"customer_id": 1}])
    assert len(str(caught.value)) < 400
    assert "…(1,000,000 chars)" in str(caught.value)


# -- the online store is never created by a reader --------------------------------------------


def test_a_reader_never_creates_the_online_store(project: Project, tmp_path: Path) -> None:
    p = copy(project, tmp_path / "copy")
    try:
        db = p.root / ".tarmac" / "online.db"
        assert p.features.online_state().ready
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        state = p.features.online_state()
        assert not state.present and not state.ready
        assert state.missing == ["activity", "shops"]
        assert not db.exists()  # reading the state did not recreate the file
        p.features.materialize(full=True)  # a writer creates it again
        assert db.exists() and p.features.online_state().ready
    finally:
        p.close()


# -- HTTP: limits, duplicates, echo ------------------------------------------------------------


@pytest.fixture(scope="module")
def client(project: Project) -> Iterator[TestClient]:
    with TestClient(create_app(project), raise_server_exceptions=False) as c:
        yield c


def test_the_same_on_demand_feature_twice_over_http(client: TestClient) -> None:
    r = client.post("/features", json={"features": DOUBLE,
                                       "entities": [{"customer_id": 1, "basket": 21.0}]})
    assert r.status_code == 200, r.text
    assert r.json()["features"] == ["ratio"]
    assert r.json()["results"][0]["values"] == {"ratio": 1.0}


def test_too_many_refs_is_422_before_any_work(client: TestClient) -> None:
    r = client.post("/features", json={"features": ["activity:sessions"] * (MAX_REFS + 1),
                                       "entities": [{"customer_id": 1}]})
    assert r.status_code == 422
    assert r.json()["detail"] == [{"loc": ["body", "features"], "type": "too_long",
                                   "msg": f"too many refs: {MAX_REFS + 1:,}; at most "
                                          f"{MAX_REFS} per request"}]
    ok = client.post("/features", json={"features": ["activity:sessions"] * MAX_REFS,
                                        "entities": [{"customer_id": 1}]})
    assert ok.status_code == 200 and ok.json()["features"] == ["sessions"]


def test_long_names_are_422_and_never_echoed(client: TestClient) -> None:
    huge = "s" * 1_000_000
    r = client.post("/features", json={"features": huge, "entities": [{"customer_id": 1}]})
    assert r.status_code == 422 and len(r.content) < 500
    assert r.json()["detail"][0]["loc"] == ["body", "features"]
    assert r.json()["detail"][0]["type"] == "string_too_long"
    r = client.post("/features", json={"features": ["activity:sessions", "v" * 201],
                                       "entities": [{"customer_id": 1}]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "features", 1]
    unknown = "u" * MAX_NAME_CHARS  # within the limit but unknown: 404, clipped
    r = client.post("/features", json={"features": unknown, "entities": [{"customer_id": 1}]})
    assert r.status_code == 404
    assert f"'{'u' * 80}…({MAX_NAME_CHARS} chars)'" in r.json()["detail"]


def test_a_bad_entity_value_is_clipped(client: TestClient) -> None:
    r = client.post("/features", json={"features": ["activity:sessions"],
                                       "entities": [{"customer_id": "x" * 100_000}]})
    assert r.status_code == 422 and len(r.content) < 500


# -- heavy work stays off the event loop --------------------------------------------------------


def test_health_answers_while_a_heavy_request_is_served(project: Project,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that takes 2 s of work (a big body) must not hold up /health."""
    real = project.features.online

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(2.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(project.features, "online", slow)
    entities = [{"customer_id": i % 5, "padding": "p" * 40} for i in range(MAX_ENTITIES)]
    with running(project) as url, httpx.Client(base_url=url, timeout=30) as http:
        pool = ThreadPoolExecutor(1)
        heavy = pool.submit(http.post, "/features",
                            json={"features": ["activity:sessions"], "entities": entities})
        time.sleep(0.3)  # the heavy request is being worked on
        started = time.perf_counter()
        health = http.get("/health")
        waited = time.perf_counter() - started
        assert health.status_code == 200
        assert not heavy.done() and waited < 0.5, f"/health waited {waited:.2f} s"
        assert heavy.result().status_code == 200
        pool.shutdown()


# -- an on-demand function that fails, or returns no finite number -------------------------------

EXTRA = '''

@on_demand(inputs=[activity[["spend"]]], request=[Feature("basket", Float64)],
           features=[Feature("inverse", Float64)])
def inverse(df):
    if (df["basket"] < 0).any():
        raise ValueError(f"secret basket values {df['basket'].tolist()}")
    return {"inverse": 1.0 / df["basket"]}
'''


@pytest.fixture(scope="module")
def extra(project: Project, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    p = copy(project, tmp_path_factory.mktemp("extra") / "proj")
    defs = p.root / "definitions.py"
    defs.write_text(defs.read_text() + EXTRA)
    p.features.apply()
    yield p
    p.close()


def test_an_on_demand_exception_is_logged_with_the_request_id(
        extra: Project, caplog: pytest.LogCaptureFixture) -> None:
    with TestClient(create_app(extra), raise_server_exceptions=False) as c:
        r = c.post("/features", json={"features": ["inverse"],
                                      "entities": [{"customer_id": 1, "basket": -7.25}]},
                   headers={"X-Request-ID": "trial-42"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "trial-42"
    body = r.json()
    assert body["request_id"] == "trial-42"
    assert "on-demand view 'inverse' failed" in body["detail"]
    assert "secret" not in r.text and "-7.25" not in r.text and "ValueError" not in r.text
    logged = [rec for rec in caplog.records if "trial-42" in rec.getMessage()]
    assert logged and "secret basket values [-7.25]" in logged[0].getMessage()
    assert logged[0].exc_info is not None  # the traceback is in the log


def test_an_infinite_on_demand_value_is_invalid_not_present(extra: Project) -> None:
    got = extra.features.online(["inverse"], [{"customer_id": 1, "basket": 0.0},
                                              {"customer_id": 1, "basket": 4.0}])
    assert got.rows == [{"inverse": None}, {"inverse": 0.25}]
    assert got.status == [{"inverse": "invalid"}, {"inverse": "present"}]
    with TestClient(create_app(extra)) as c:
        r = c.post("/features", json={"features": ["inverse"],
                                      "entities": [{"customer_id": 1, "basket": 0}]})
    assert r.json()["results"][0]["status"] == {"inverse": "invalid"}


# -- /ready means the materialized values are there ---------------------------------------------


def test_ready_is_503_when_the_online_store_file_is_deleted(project: Project,
                                                             tmp_path: Path) -> None:
    p = copy(project, tmp_path / "copy")
    try:
        with TestClient(create_app(p)) as c:
            assert c.get("/ready").status_code == 200
            db = p.root / ".tarmac" / "online.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            r = c.get("/ready")
            assert r.status_code == 503
            assert r.headers["retry-after"] == "5"
            assert "holds no materialized values" in r.json()["detail"]
            assert "materialize" in r.json()["hint"]
            assert c.get("/health").status_code == 200
            assert not db.exists()  # the server did not recreate it empty
            p.features.materialize(full=True)
            assert c.get("/ready").status_code == 200
    finally:
        p.close()


def test_a_never_materialized_project_is_not_ready(project: Project, tmp_path: Path) -> None:
    p = copy(project, tmp_path / "copy")
    try:
        (p.root / ".tarmac" / "online.db").unlink()
        with TestClient(create_app(p)) as c:
            assert c.get("/ready").status_code == 503
            r = c.post("/features", json={"features": ["activity:sessions"],
                                          "entities": [{"customer_id": 1}]})
            assert r.status_code == 503
            assert "does not exist" in r.json()["detail"]
        assert not (p.root / ".tarmac" / "online.db").exists()
    finally:
        p.close()


# -- request ids and the access log --------------------------------------------------------------


def test_access_log_has_one_json_line_per_request(project: Project, tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "access.log"
    with TestClient(create_app(project, access_log=True, log_file=log_file)) as c:
        ok = c.post("/features", json={"features": ["activity:sessions"],
                                       "entities": [{"customer_id": 1}]},
                    headers={"X-Request-ID": "abc-1"})
        bad = c.post("/features", json={"features": "nope", "entities": []},
                     headers={"X-Request-ID": "not ok/<script>" * 3})
        c.get("/health")
    assert ok.headers["x-request-id"] == "abc-1"
    replaced = bad.headers["x-request-id"]
    assert len(replaced) == 32 and "not ok" not in replaced  # a bad id is replaced, not echoed
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(r["method"], r["path"], r["status"]) for r in lines] == [
        ("POST", "/features", 200), ("POST", "/features", 404), ("GET", "/health", 200)]
    assert [r["request_id"] for r in lines[:2]] == ["abc-1", replaced]
    assert all(isinstance(r["ms"], float) and r["ms"] >= 0 and r["time"].endswith("Z")
               for r in lines)


def test_a_full_access_log_queue_drops_instead_of_blocking(tmp_path: Path) -> None:
    from tarmac.serving._access import AccessLog

    log = AccessLog(tmp_path / "a.log", queue_size=2)  # not started: nobody drains it
    for i in range(5):
        log.record("GET", "/health", 200, 0.1, f"r{i}")
    assert log.dropped == 3
    log.start()
    log.stop()  # writes the two it kept
    assert [json.loads(x)["request_id"] for x in (tmp_path / "a.log").read_text().splitlines()
            ] == ["r0", "r1"]


def test_serve_access_log_options(project: Project, monkeypatch: pytest.MonkeyPatch,
                                  tmp_path: Path) -> None:
    import uvicorn

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    for key in ("TARMAC_PROJECT", "TARMAC_ACCESS_LOG", "TARMAC_LOG_FILE"):
        monkeypatch.setenv(key, "")  # restored afterwards
    runner = CliRunner()
    log_file = tmp_path / "access.log"
    result = runner.invoke(cli_app, ["--project", str(project.root), "serve", "--workers", "1",
                                     "--port", str(_free_port()), "--log-file", str(log_file)])
    assert result.exit_code == 0, result.output
    app = calls[0][0]
    assert app.access_log is not None and app.access_log.path == log_file
    result = runner.invoke(cli_app, ["--project", str(project.root), "serve", "--workers", "2",
                                     "--port", str(_free_port()), "--no-access-log"])
    assert result.exit_code == 0, result.output
    assert os.environ["TARMAC_ACCESS_LOG"] == "0"
    result = runner.invoke(cli_app, ["--project", str(project.root), "serve", "--workers", "2",
                                     "--port", str(_free_port()), "--log-file", str(log_file)])
    assert os.environ["TARMAC_ACCESS_LOG"] == "1"
    assert os.environ["TARMAC_LOG_FILE"] == str(log_file.resolve())


def test_bad_entities_are_clipped_in_the_sdk(project: Project) -> None:
    from tarmac.errors import UsageError

    with pytest.raises(UsageError) as caught:
        project.features.online(["activity:sessions"], [{"customer_id": "9" * 50 + "x" * 10**5}])
    assert len(str(caught.value)) < 300
    with pytest.raises(UsageError) as caught:
        project.features.online(["activity:sessions"], [{f"k{i}": 1 for i in range(10**4)}])
    assert len(str(caught.value)) < 300


def test_openapi_states_the_limits(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schema = spec["paths"]["/features"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    text, refs = schema["properties"]["features"]["anyOf"]
    assert text["maxLength"] == MAX_NAME_CHARS
    assert refs["maxItems"] == MAX_REFS and refs["items"]["maxLength"] == MAX_NAME_CHARS
    assert schema["properties"]["entities"]["maxItems"] == MAX_ENTITIES
    status = spec["components"]["schemas"]["FeatureResult"]["properties"]["status"]
    assert "invalid" in status["additionalProperties"]["enum"]
    ready = spec["paths"]["/ready"]["get"]["responses"]
    assert "503" in ready
