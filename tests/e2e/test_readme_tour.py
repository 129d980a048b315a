"""The README's five-minute tour, command by command, after `tarmac demo` (issue 11).

The commands are read from README.md itself (the ```bash block of "A five-minute tour"), so
the tour in the README stays true: every command must exit 0. A newcomer runs it right after
`make demo`, so this does too, with three things a person does by hand done here:

* the demo stops its tickets API when it ends, so `tarmac demo-api` serves it again before the
  first `tarmac ingest` (on a free port, named by ``KESTREL_TICKETS_URL``; the README's
  `tarmac demo-api &` line, when there, is started the same way);
* `tarmac serve` runs until stopped: it is started, asked `/health` and `/ready`, and stopped;
* ``RUN_ID`` is the run the tour's `tarmac train` just made, ``PREDICTION_ID`` the newest
  scored prediction.

Each command is a process of its own, forked from one that has already imported the CLI and its
libraries (``Forker``, tests/e2e/conftest.py): the imports are the same for every command and
would cost about a second and a half of CPU each. `tarmac serve` and `tarmac demo-api` start
as the `tarmac` executable.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from e2e.conftest import Forker, copy_demo  # tests/ is on sys.path

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TARMAC = shutil.which("tarmac", path=str(Path(sys.executable).parent)) or "tarmac"
BACKGROUND = {"serve", "demo-api"}  # commands that run until stopped


def tour_commands() -> list[list[str]]:
    """The tour's commands as argument lists (comments and `cd`/`source` lines left out)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## A five-minute tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the README's tour has no ```bash block"
    commands = []
    for line in block.group(1).splitlines():
        words = shlex.split(line.rstrip("&").strip(), comments=True)
        if words and words[0] == "tarmac":
            commands.append(words)
    assert len(commands) > 20, commands
    return commands


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{url}: the server exited ({proc.returncode})"
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory,
         demo_template: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A copy of the session's `tarmac demo tarmac-demo` (tests/e2e/conftest.py), with a state
    folder of its own: the tour changes the project and its audit trail's anchors."""
    root = tmp_path_factory.mktemp("tour")
    project, _ = copy_demo(demo_template, root, root / "state")
    env = {**os.environ, "TARMAC_USER": "alice", "COLUMNS": "200",
           "XDG_STATE_HOME": str(root / "state")}
    env.pop("TARMAC_PROJECT", None)
    env.pop("KESTREL_TICKETS_URL", None)
    yield project, env


def test_every_tour_command_exits_zero(demo: tuple[Path, dict[str, str]]) -> None:
    project, env = demo
    api_port = free_port()
    env = {**env, "KESTREL_TICKETS_URL": f"http://127.0.0.1:{api_port}/tickets"}
    running: list[subprocess.Popen[str]] = []

    def start_api() -> None:
        api = subprocess.Popen([TARMAC, "demo-api", "--port", str(api_port)], cwd=project,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
        running.append(api)
        wait_for(f"http://127.0.0.1:{api_port}/tickets?limit=1", api)

    failures: list[str] = []
    ran: list[str] = []
    took: list[tuple[float, str]] = []  # seconds per command, printed: the slowest first
    run_id = ""
    with Forker(env, project.parent) as forker:
        try:
            for words in tour_commands():
                words = [TARMAC, *words[1:]]  # this venv's tarmac, whatever PATH says
                verb = words[1]
                if verb == "demo-api":
                    if not running:
                        start_api()
                    continue
                if verb == "ingest" and not running:
                    start_api()  # what the README should say: `tarmac demo-api &` first
                if verb == "serve":
                    port = free_port()
                    server = subprocess.Popen([*words, "--port", str(port)], cwd=project, env=env,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              text=True)
                    try:
                        wait_for(f"http://127.0.0.1:{port}/health", server, timeout=120)
                        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=10)
                        if ready.status_code != 200:
                            failures.append(f"{shlex.join(words)}: /ready {ready.status_code} "
                                            f"{ready.text[:300]}")
                    finally:
                        server.terminate()
                        server.wait(timeout=30)
                    ran.append(shlex.join(words))
                    continue
                if "PREDICTION_ID" in words:  # the newest scored prediction of the demo
                    found = forker(["sql", "--json", "SELECT id FROM predictions "
                                    "WHERE score IS NOT NULL ORDER BY time DESC LIMIT 1"],
                                   cwd=project)
                    [row] = json.loads(found.stdout)
                    words = [row["id"] if w == "PREDICTION_ID" else w for w in words]
                if "RUN_ID" in words:
                    assert run_id, "the tour reproduces a run before training one"
                    words = [run_id if w == "RUN_ID" else w for w in words]
                started = time.monotonic()
                done = forker(words[1:], cwd=project)
                took.append((time.monotonic() - started, shlex.join(words[1:])))
                ran.append(shlex.join(words))
                if done.returncode != 0:
                    failures.append(f"{shlex.join(words)}: exit {done.returncode}\n"
                                    f"{(done.stdout + done.stderr)[-1500:]}")
                if verb == "train" and "--reproduce" not in words:
                    runs = forker(["runs", "--model", words[2], "--json"], cwd=project)
                    run_id = max(json.loads(runs.stdout), key=lambda r: r["run"])["run_id"]
        finally:
            for proc in running:
                proc.terminate()
                proc.wait(timeout=30)
            print(f"tour: {sum(t for t, _ in took):.0f} s in {len(took)} commands; slowest:")
            for seconds, command in sorted(took, reverse=True)[:15]:
                print(f"  {seconds:6.1f} s  {command[:120]}")
    assert not failures, "tour commands failed:\n" + "\n\n".join(failures)
    assert any(c.split()[1] == "ingest" for c in ran)
