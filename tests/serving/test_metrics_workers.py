"""``/metrics`` of a server with several workers reports the whole server: whichever worker a
scrape reaches, the request counter is the number of requests every worker answered; the
workers share a private directory that exists only while the server runs. One process (tests,
``p.serving``) keeps a registry per app.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.conftest import wait_until_up
from tarmac.project import Project
from tarmac.serving import create_app
from tarmac.serving._metrics import MULTIPROC_ENV, Metrics
from tarmac.serving.server import metrics_dir

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

URL = "/v1/predict/risk"
BODY = {"entities": [{"customer_id": 5}, {"customer_id": 6}]}
N = 24


def _sample(text: str, name: str, **labels: str) -> float | None:
    """A sample's value in the exposition text (labels in any order)."""
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        if m is None or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if got == labels:
            return float(m.group(4))
    return None


@pytest.mark.slow
def test_metrics_of_two_workers_count_every_request_on_every_scrape(served: Project,
                                                                    tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tarmac_bin = Path(sys.executable).parent / "tarmac"
    command = ([str(tarmac_bin)] if tarmac_bin.exists()
               else [sys.executable, "-c", "from tarmac.cli import main; main()"])
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("TARMAC_PROJECT", MULTIPROC_ENV)}
    env["TMPDIR"] = str(tmp)  # where the server's private metrics directory goes
    proc = subprocess.Popen(
        [*command, "--project", str(served.root), "serve", "--workers", "2", "--port",
         str(port), "--no-access-log"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=env, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, url, seconds=90)
        shared = [d for d in tmp.iterdir() if d.name.startswith("tarmac-metrics-")]
        assert len(shared) == 1 and shared[0].is_dir()
        for _ in range(N):  # a new connection each time: the kernel spreads them
            r = httpx.post(f"{url}{URL}", json=BODY, timeout=10)
            assert r.status_code == 200, r.text
        workers = {int(m.group(1)) for f in shared[0].glob("counter_*.db")
                   if (m := re.search(r"_(\d+)\.db$", f.name))}
        assert len(workers) == 2  # both workers write their figures there
        for _ in range(12):  # each scrape reaches one worker or the other
            text = httpx.get(f"{url}/metrics", timeout=10).text
            assert _sample(text, "tarmac_predict_requests_total", endpoint="risk",
                           version="1", status="200") == N, text
            assert _sample(text, "tarmac_predictions_total", endpoint="risk", version="1",
                           role="champion") == 2 * N
            assert _sample(text, "tarmac_predict_latency_seconds_count", endpoint="risk",
                           version="1") == N
            assert _sample(text, "tarmac_in_flight_requests") == 0
            assert _sample(text, "tarmac_model_serving", endpoint="risk",
                           role="champion") == 1
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
        assert "Traceback" not in output, output
        assert list(tmp.iterdir()) == []  # the directory went with the server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_metrics_dir_is_fresh_private_and_removed() -> None:
    before = os.environ.get(MULTIPROC_ENV)
    with metrics_dir() as a:
        assert os.environ[MULTIPROC_ENV] == a
        assert os.listdir(a) == [] and (os.stat(a).st_mode & 0o777) == 0o700
        Path(a, "counter_1.db").write_bytes(b"x")
    with metrics_dir() as b:
        assert b != a and os.listdir(b) == []  # never another run's counts
    assert not os.path.exists(a) and not os.path.exists(b)
    assert os.environ.get(MULTIPROC_ENV) == before


def test_one_process_keeps_a_registry_per_app(served: Project) -> None:
    """Without the shared directory (tests, p.serving), two apps do not share counters."""
    assert Metrics().shared_dir is None
    with TestClient(create_app(served)) as one, TestClient(create_app(served)) as two:
        for _ in range(3):
            assert one.post(URL, json=BODY).status_code == 200
        assert two.post(URL, json=BODY).status_code == 200
        labels = {"endpoint": "risk", "version": "1", "status": "200"}
        assert _sample(one.get("/metrics").text, "tarmac_predict_requests_total",
                       **labels) == 3
        assert _sample(two.get("/metrics").text, "tarmac_predict_requests_total",
                       **labels) == 1


def test_serve_with_workers_hands_them_a_fresh_metrics_dir(
        served: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The directory is in the environment (which the workers inherit) while uvicorn runs,
    and gone afterwards; one worker serves in this process without it."""
    import uvicorn
    from typer.testing import CliRunner

    from tarmac.cli import app as cli_app

    seen: list[tuple[Any, str | None, bool]] = []

    def run(app: Any, **kw: Any) -> None:
        shared = os.environ.get(MULTIPROC_ENV)
        seen.append((app, shared, bool(shared) and os.path.isdir(shared)
                     and os.listdir(shared) == []))

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    for key in ("TARMAC_PROJECT", "TARMAC_ACCESS_LOG", "TARMAC_LOG_FILE"):
        monkeypatch.setenv(key, "")  # restored afterwards
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = CliRunner()
    for workers in ("2", "1"):
        result = runner.invoke(cli_app, ["--project", str(served.root), "serve", "--workers",
                                         workers, "--port", str(port)])
        assert result.exit_code == 0, result.output
    (multi, shared, fresh), (single, none, _) = seen
    assert multi == "tarmac.serving.app:app_from_env" and shared and fresh
    assert not os.path.exists(shared) and MULTIPROC_ENV not in os.environ
    assert not isinstance(single, str) and none is None
