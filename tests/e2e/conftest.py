"""One demo project for the end-to-end tests that only read it (``demo_run``): building it
takes a quarter of a minute, so it is built once per session. Under pytest-xdist (``make
test``) the files that use it run on one worker (``SHARED_SCOPES`` in tests/conftest.py), so
it is still built once; a new file that uses it belongs there too (else its worker builds a
demo of its own: right, only slower)."""

from __future__ import annotations

import contextlib
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


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``tarmac demo kestrel --seed 7``: the project folder and what the demo printed."""
    root = tmp_path_factory.mktemp("e2e")
    result = tarmac("demo", "kestrel", "--seed", "7", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "what just happened" in result.stdout and "tarmac lineage" in result.stdout
    return root / "kestrel", result.stdout
