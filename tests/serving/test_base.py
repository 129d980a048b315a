"""The one app: routers per concern, /ready from each concern's check, shared error answers."""

from __future__ import annotations

import json
import warnings

from fastapi import APIRouter

from tarmac.errors import BackendUnavailableError
from tarmac.serving._base import Concern, Ready, build_app
from tarmac.serving._errors import not_found, too_large

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient


def _concern(name: str, ready: Ready | Exception) -> Concern:
    router = APIRouter()

    @router.get(f"/{name}")
    def hello() -> dict[str, str]:
        return {"hello": name}

    def check() -> Ready:
        if isinstance(ready, Exception):
            raise ready
        return ready

    return Concern(name, router, check)


def test_ready_is_built_from_every_concerns_check() -> None:
    good = _concern("models", Ready(True, info={"models": 2}))
    app = build_app("t", [good, _concern("topics", Ready(True, info={"topics": 1}))])
    with TestClient(app) as c:
        r = c.get("/ready")
        assert r.status_code == 200
        assert r.json() == {"status": "ready", "models": 2, "topics": 1}
        assert c.get("/models").json() == {"hello": "models"}
        assert c.get("/health").json() == {"status": "ok"}
    down = _concern("topics", BackendUnavailableError("kafka://k:9092 is unreachable",
                                                      hint="is Kafka running?"))
    with TestClient(build_app("t", [good, down])) as c:
        r = c.get("/ready")
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json() == {"detail": "kafka://k:9092 is unreachable",
                            "hint": "is Kafka running?", "status": "unavailable",
                            "part": "topics"}
        assert c.get("/models").status_code == 200  # the other concern still serves


def test_a_bug_in_a_readiness_check_is_503_without_its_text() -> None:
    with TestClient(build_app("t", [_concern("x", RuntimeError("secret"))])) as c:
        r = c.get("/ready")
    assert r.status_code == 503 and "secret" not in r.text
    assert r.json()["detail"] == "internal error: RuntimeError"


def test_not_found_names_close_names_and_clips_the_name() -> None:
    status, payload = not_found("model", "chrun", ["churn", "ltv", "fraud"])
    assert status == 404
    assert json.loads(payload) == {"detail": "no model named 'chrun'",
                                   "hint": "did you mean 'churn'?"}
    status, payload = not_found("model", "z" * 10_000, ["churn"])
    assert json.loads(payload) == {"detail": f"no model named '{'z' * 80}…(10,000 chars)'",
                                   "hint": "known: churn"}
    assert json.loads(not_found("model", "a", [])[1]) == {"detail": "no model named 'a'"}


def test_too_large() -> None:
    status, payload = too_large(4 << 20, "send less")
    assert status == 413
    assert json.loads(payload) == {"detail": "the body is larger than 4 MiB",
                                   "hint": "send less"}
