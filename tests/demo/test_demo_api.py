"""`tarmac demo-api`: the demo's tickets API outlives `tarmac demo`, so the tour's ingest works."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from tarmac.demo import fetch_all_tickets

TARMAC = shutil.which("tarmac", path=str(Path(sys.executable).parent)) or "tarmac"


def test_demo_api_serves_the_projects_tickets(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    tickets = [{"ticket_id": i, "customer_id": 10000 + i} for i in range(1, 8)]
    (tmp_path / "data" / "tickets.json").write_text(json.dumps(tickets))
    (tmp_path / "tarmac.yaml").write_text("name: demo\n")
    api = subprocess.Popen([TARMAC, "demo-api", str(tmp_path), "--port", "0"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert api.stdout is not None
        line = api.stdout.readline()
        assert "serving the demo's tickets at http://127.0.0.1:" in line, line
        url = line.split(" at ", 1)[1].split()[0]
        assert fetch_all_tickets(url, limit=3) == tickets
        assert httpx.get(url.replace("/tickets", "/nope")).status_code == 404
    finally:
        api.terminate()
        api.wait(timeout=10)


def test_demo_api_without_a_demo_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run([TARMAC, "demo-api", str(tmp_path), "--port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "no demo tickets in" in done.stderr and "run `tarmac demo` first" in done.stderr
