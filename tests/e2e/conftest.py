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
import json
import os
import select
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


_FORK_SERVER = r"""
import json, os, sys
import tarmac.cli
# what the commands load on first use, loaded once here so that no command pays for it
import duckdb, deltalake, pandas, pyarrow.dataset, pyarrow.parquet, sklearn.linear_model  # noqa
import tarmac.features.store, tarmac.lake, tarmac.models.registry  # noqa
for line in sys.stdin:
    job = json.loads(line)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # the command: a process of its own, from the state just after the imports
        os.chdir(job["cwd"])
        os.environ.clear()
        os.environ.update(job["env"])
        for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(f, fd)
            os.close(f)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        sys.argv = ["tarmac", *job["args"]]
        tarmac.cli.main()  # exits through SystemExit: atexit handlers and teardown run
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class Forker:
    """Runs ``tarmac ARGS`` as processes forked from one that has imported the CLI and the
    libraries its commands load: each command is still a process of its own (its exit code,
    stdout and stderr, atexit handlers, a fresh state), without an interpreter start and
    about a second and a half of imports per command, which on a 2-core machine running the
    suite adds up for the README tour's sixty commands. POSIX only (``os.fork``).

    Example::

        with Forker(env) as run:
            done = run(["models", "list"], cwd=project)   # a CompletedProcess
    """

    def __init__(self, env: dict[str, str], scratch: Path) -> None:
        self.env, self.scratch = env, scratch
        self.proc: subprocess.Popen[str] | None = None
        self.n = 0

    def __enter__(self) -> Forker:
        self.proc = subprocess.Popen([sys.executable, "-c", _FORK_SERVER], env=self.env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return self

    def __call__(self, args: list[str], *, cwd: Path, env: dict[str, str] | None = None,
                 timeout: float = 600) -> subprocess.CompletedProcess[str]:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.n += 1
        out, err = self.scratch / f"cmd{self.n}.out", self.scratch / f"cmd{self.n}.err"
        job = {"args": args, "cwd": str(cwd), "env": env or self.env, "stdout": str(out),
               "stderr": str(err)}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            self.proc.kill()
            raise AssertionError(f"tarmac {' '.join(args)}: no answer in {timeout:.0f} s")
        line = self.proc.stdout.readline()
        assert line, f"the fork server ended (exit {self.proc.poll()})"
        return subprocess.CompletedProcess(["tarmac", *args], json.loads(line)["code"],
                                           out.read_text(), err.read_text())

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None and self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
