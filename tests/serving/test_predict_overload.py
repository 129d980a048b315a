"""Overload: 64 concurrent clients against one worker process. Requests over the in-flight
bound are shed with 503 + Retry-After at once, so the server's memory stays bounded and no
answer is a 5xx other than 503. ``TARMAC_OVERLOAD_S`` sets the duration (10 s here; the issue's
figure is 30 s)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from serving.conftest import wait_until_up
from tarmac.project import Project

CLIENTS = 64


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_overload_sheds_with_503_and_memory_stays_bounded(served: Project) -> None:
    seconds = float(os.environ.get("TARMAC_OVERLOAD_S", "10"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "TARMAC_PROJECT"}
    env["TARMAC_MAX_IN_FLIGHT"] = "8"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tarmac.cli import main; main()", "--project",
         str(served.root), "serve", "--workers", "1", "--port", str(port), "--no-access-log"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, url, seconds=60)
        body = {"entities": [{"customer_id": i} for i in range(1, 21)]}
        for _ in range(20):  # warm: the first requests allocate what every later one reuses
            httpx.post(f"{url}/v1/predict/risk", json=body, timeout=10)
        before = _rss_mb(proc.pid)  # one worker: uvicorn serves in this process
        statuses: Counter[int] = Counter()

        async def client(http: httpx.AsyncClient, until: float) -> None:
            while time.monotonic() < until:
                r = await http.post("/v1/predict/risk", json=body)
                statuses[r.status_code] += 1
                if r.status_code == 503:
                    assert r.headers["retry-after"]

        async def load() -> None:
            limits = httpx.Limits(max_connections=CLIENTS)
            async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
                until = time.monotonic() + seconds
                await asyncio.gather(*(client(http, until) for _ in range(CLIENTS)))

        asyncio.run(load())
        grown = _rss_mb(proc.pid) - before
        print(f"overload {seconds:g} s: {dict(statuses)}, RSS +{grown:.1f} MB")
        assert statuses[200] > 0
        assert set(statuses) <= {200, 503}, statuses
        assert grown < 100, f"RSS grew {grown:.0f} MB under overload"
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
