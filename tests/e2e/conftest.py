"""One demo project for the end-to-end tests that only read it (``demo_run``): building it
takes a quarter of a minute, so it is built once per session. Under pytest-xdist (``make
test``) the files that use it run on one worker (``SHARED_SCOPES`` in tests/conftest.py), so
it is still built once; a new file that uses it belongs there too (else its worker builds a
demo of its own: right, only slower)."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``tarmac demo kestrel --seed 7``: the project folder and what the demo printed."""
    root = tmp_path_factory.mktemp("e2e")
    result = tarmac("demo", "kestrel", "--seed", "7", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "what just happened" in result.stdout and "tarmac lineage" in result.stdout
    return root / "kestrel", result.stdout
