"""The demo project the end-to-end tests start from: ``tarmac demo tarmac-demo``, exactly what
``make demo`` builds, made once per test session (it takes a minute of CPU on a loaded
2-core machine) and copied for each user of it.

``demo_template`` builds it under a file lock in the session's shared temporary folder, so of
the pytest-xdist workers (``make test``) the first one builds and the others wait and copy; no
one ever opens the template itself, so a copy is never taken while something writes it. The
project holds only relative paths (``lake: ./lake``, ``sqlite:///.tarmac/...``), and the
anchors of its audit trail live in its own ``XDG_STATE_HOME``, copied with it, so each copy is
a project of its own that verifies. ``demo_run`` is the copy the files that only read the demo
share (they run on one worker: ``SHARED_SCOPES`` in tests/conftest.py); the README tour takes
its own, since it changes the project."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TARMAC = shutil.which("tarmac", path=str(Path(sys.executable).parent)) or "tarmac"


def tarmac(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``tarmac ARGS`` run as a user would: a subprocess, as user ``newcomer``."""
    env = {**os.environ, "TARMAC_USER": "newcomer"}
    env.pop("TARMAC_PROJECT", None)
    return subprocess.run([TARMAC, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def tarmac_here(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``tarmac ARGS`` in this process, through the same Typer app (Typer's ``CliRunner``), as
    user ``newcomer`` in ``cwd``: the same output, error lines and exit codes as ``tarmac``,
    without an interpreter start per command. For checking what a command shows; ``tarmac``
    (a real process) where the process is the point."""
    from typer.testing import CliRunner

    from tarmac.cli import app

    with contextlib.chdir(cwd):
        result = CliRunner().invoke(app, list(args),
                                    env={"TARMAC_USER": "newcomer", "TARMAC_PROJECT": None})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # escaped the CLI's error handling: a crash, not an exit code
    return subprocess.CompletedProcess(["tarmac", *args], result.exit_code, result.stdout,
                                       result.stderr)


DEMO = "tarmac-demo"


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding the built demo (``tarmac-demo/``), its state (``state/``) and what it
    printed (``stdout.txt``); built by the first worker to ask, never opened. Copy it with
    ``copy_demo``."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "demo-template"
    root.mkdir(exist_ok=True)
    with open(shared / "demo-template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the others wait here while the first one builds
        if not (root / "stdout.txt").exists():
            env = {**os.environ, "TARMAC_USER": "newcomer",
                   "XDG_STATE_HOME": str(root / "state")}
            env.pop("TARMAC_PROJECT", None)
            shutil.rmtree(root / DEMO, ignore_errors=True)  # an earlier try that failed
            result = subprocess.run([TARMAC, "demo", DEMO], cwd=root, env=env,
                                    capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, result.stderr[-3000:]
            (root / "stdout.txt").write_text(result.stdout)
    return root


def copy_demo(template: Path, to: Path, state: Path) -> tuple[Path, str]:
    """A copy of the template's demo under ``to``, its anchors copied into the ``state``
    folder its users give as ``XDG_STATE_HOME``: (project, what the demo printed)."""
    shutil.copytree(template / DEMO, to / DEMO, symlinks=True)
    if (template / "state").exists():
        shutil.copytree(template / "state", state, symlinks=True, dirs_exist_ok=True)
    return to / DEMO, (template / "stdout.txt").read_text()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory,
             demo_template: Path) -> tuple[Path, str]:
    """The demo the reading tests share: the project folder and what the demo printed."""
    project, stdout = copy_demo(demo_template, tmp_path_factory.mktemp("e2e"),
                                Path(os.environ["XDG_STATE_HOME"]))  # tests/conftest.py's
    assert "what just happened" in stdout and "tarmac lineage" in stdout
    return project, stdout
