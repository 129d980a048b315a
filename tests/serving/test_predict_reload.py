"""A real server (uvicorn in a thread) under load: an alias move or a deployment change is
served within 5 s with no failed request; a version that fails to load is not switched to (the
old one keeps serving, /ready and /metrics say so, the failure is audited); inference runs off
the event loop (/health answers while a model works) and in-flight requests are bounded.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.conftest import wait_until_up
from serving.test_deploy import slow_project  # noqa: E402  (tests/ is on sys.path)
from tarmac.project import Project
from tarmac.serving.server import running

URL = "/v1/predict/risk"
BODY = {"entities": [{"customer_id": 5}, {"customer_id": 6}]}


class Load:
    """``n`` clients posting predictions in a loop; every answer is kept with its time."""

    def __init__(self, url: str, n: int = 4) -> None:
        self.url, self.answers = url, []  # type: str, list[tuple[float, int, set[str]]]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(n)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    r = client.post(URL, json=BODY)
                    models = ({p["model"] for p in r.json()["predictions"]}
                              if r.status_code == 200 else set())
                    self.answers.append((time.monotonic(), r.status_code, models))
                except httpx.HTTPError as exc:  # a dropped connection is a failure too
                    self.answers.append((time.monotonic(), -1, {type(exc).__name__}))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def first(self, model: str, after: float, timeout: float = 10) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, status, models in list(self.answers):
                if at >= after and status == 200 and model in models:
                    return at
            time.sleep(0.05)
        return None


def test_a_promotion_is_served_within_5s_with_no_failed_request(served: Project) -> None:
    with running(served) as url, Load(url) as load:
        time.sleep(0.5)
        changed = time.monotonic()
        served.models.promote("risk", 2)
        seen = load.first("risk@2", changed)
        time.sleep(0.5)
    assert seen is not None and seen - changed < 5, "v2 was not served within 5 s"
    statuses = {status for _, status, _ in load.answers}
    assert statuses == {200}, f"failed requests during the switch: {statuses}"
    assert len(load.answers) > 20
    assert all(models == {"risk@2"} for at, _, models in load.answers if at > seen + 0.2)


def test_a_canary_deployment_is_served_within_5s(served: Project) -> None:
    entities = {"entities": [{"customer_id": i} for i in range(1, 201)]}
    with running(served) as url, httpx.Client(base_url=url) as client:
        assert {p["model"] for p in client.post(URL, json=entities).json()["predictions"]
                } == {"risk@1"}
        changed = time.monotonic()
        served.serving.deploy("risk", canary=2, percent=50)
        while time.monotonic() - changed < 5:
            got = {p["model"] for p in client.post(URL, json=entities).json()
                   ["predictions"]}
            if got == {"risk@1", "risk@2"}:
                break
            time.sleep(0.1)
        assert got == {"risk@1", "risk@2"}


def test_a_version_that_fails_to_load_is_not_switched_to(served: Project) -> None:
    v3 = served.models.train("risk", params={"C": 0.5}).version  # bytes of its own
    assert served.models.validate("risk", v3).status == "passed"
    record = served.models.version("risk", v3)
    served.models.artifacts.path(record.artifact).write_bytes(b"not the trained model")
    with running(served) as url, httpx.Client(base_url=url) as client:
        assert client.post(URL, json=BODY).status_code == 200
        served.models.promote("risk", v3)  # its gates passed; its artifact is broken
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ready = client.get("/ready").json()
            if ready.get("load_failures"):
                break
            time.sleep(0.1)
        assert ready["endpoints"] == {"risk": {"champion": 1}}  # the old one keeps serving
        assert "risk v3" in ready["load_failures"][0]
        assert "SHA-256" in ready["load_failures"][0] or "hash" in ready["load_failures"][0]
        r = client.post(URL, json=BODY)
        assert r.status_code == 200 and r.json()["predictions"][0]["model"] == "risk@1"
        metrics = client.get("/metrics").text
        assert 'tarmac_model_load_failures{endpoint="risk",version="3"} 1.0' in metrics
    audited = served.ledger.audit(action="serving.load_failed").items
    assert [a.target for a in audited] == ["model:risk@3"]


def test_health_answers_while_models_work_and_in_flight_is_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARMAC_MAX_IN_FLIGHT", "2")
    p = slow_project(tmp_path / "p")  # v2 sleeps 1 s per request
    try:
        p.models.promote("risk", 2, force=True, reason="a slow model for this test")
        with running(p) as url:
            answers: list[Any] = []

            def slow() -> None:
                with httpx.Client(base_url=url, timeout=30) as c:
                    answers.append(c.post(URL, json=BODY).status_code)

            workers = [threading.Thread(target=slow) for _ in range(2)]
            for w in workers:
                w.start()
            time.sleep(0.3)  # both are being scored now
            with httpx.Client(base_url=url) as client:
                started = time.perf_counter()
                assert client.get("/health").status_code == 200
                assert time.perf_counter() - started < 0.3  # the loop is free
                over = client.post(URL, json=BODY)
                assert over.status_code == 503 and over.headers["retry-after"]
                assert "in flight" in over.json()["detail"]
            for w in workers:
                w.join(30)
        assert answers == [200, 200]
    finally:
        p.close()


@pytest.mark.slow
def test_every_worker_process_picks_a_promotion_up(served: Project) -> None:
    """``tarmac serve --workers 2``: each process polls for itself; after a promotion, requests
    on fresh connections (spread over both workers) all get the new version within 5 s."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tarmac_bin = Path(sys.executable).parent / "tarmac"
    command = ([str(tarmac_bin)] if tarmac_bin.exists()
               else [sys.executable, "-c", "from tarmac.cli import main; main()"])
    env = {k: v for k, v in os.environ.items() if k != "TARMAC_PROJECT"}
    proc = subprocess.Popen(
        [*command, "--project", str(served.root), "serve", "--workers", "2", "--port",
         str(port), "--no-access-log"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=env, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def models(n: int) -> set[str]:
        seen: set[str] = set()
        for _ in range(n):  # a new connection each time: the kernel spreads them
            r = httpx.post(f"{url}{URL}", json=BODY, timeout=10)
            assert r.status_code == 200, r.text
            seen |= {p["model"] for p in r.json()["predictions"]}
        return seen

    try:
        wait_until_up(proc, url, seconds=90)
        assert models(10) == {"risk@1"}
        served.models.promote("risk", 2)
        changed = time.monotonic()
        while True:
            batch_started = time.monotonic()
            if models(20) == {"risk@2"}:
                break
            assert batch_started - changed < 5, "some worker still serves v1 after 5 s"
        assert batch_started - changed < 5
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
        assert "Traceback" not in output, output
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
