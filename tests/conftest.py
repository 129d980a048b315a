"""Shared fixtures: real projects in temp folders, on SQLite and on the real PostgreSQL.

Server-backed tests skip with a reason when the server is unreachable (or, for the local S3,
the ``moto`` package is missing) on a laptop, and fail under CI (``CI=true``), so a green CI
run means the PostgreSQL (and S3) path really ran.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

import tarmac
from tarmac.project import Project, scaffold

# The CLI sizes its tables to the terminal, else to COLUMNS, else 160 columns; the tests read
# its output as CI prints it (no terminal). pytest-xdist workers start with COLUMNS=80 in their
# environment: the controller process has it in its C environment (GNU readline, loaded there,
# exports the terminal's size), not in os.environ. Dropped here, before the CLI is imported.
os.environ.pop("COLUMNS", None)

# Audit anchors (and audit keys) default to files in the user's state/config folders, outside
# the project: the tests keep theirs in one temporary folder per session, never in $HOME.
_XDG = tempfile.mkdtemp(prefix="tarmac-tests-xdg-")
os.environ["XDG_STATE_HOME"] = os.path.join(_XDG, "state")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_XDG, "config")
os.environ.pop("TARMAC_AUDIT_KEY", None)

PG_HOST = os.environ.get("TARMAC_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TARMAC_TEST_PG_PORT", "5432"))
PG_URL = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"


# Under pytest-xdist ``--dist loadfile`` (``make test``) each file runs on one worker, so its
# module-scoped fixtures are built once; the files listed here share one worker too, because
# they share a session-scoped fixture that is slow to build (the demo project, tests/e2e).
SHARED_SCOPES = {
    "tests/e2e/test_demo.py": "e2e-demo",
    "tests/e2e/test_exit.py": "e2e-demo",
}


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: ignored without the plugin
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile``, with the files of ``SHARED_SCOPES`` sent to one worker together.

    (xdist's own ``--dist loadgroup`` reads groups from node ids it rewrites, which pytest 9.2
    no longer lets it do: pytest-dev/pytest-xdist#1386.)
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return SHARED_SCOPES.get(path, path)

    return SharedFileScheduling(config, log)


def missing(name: str, message: str) -> NoReturn:
    """Skip (laptop) or fail (CI, ``CI=true``) a test whose server or package is missing."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}; CI must exercise the {name} path")
    pytest.skip(message)


def require_server(name: str, host: str, port: int) -> None:
    """Skip (laptop) or fail (CI) when a server the test needs is not listening."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        missing(name, f"{name} is not reachable at {host}:{port} ({exc})")


def require_module(module: str, name: str, install: str) -> Any:
    """The imported ``module``; skip (laptop) or fail (CI) when it is not installed."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing(name, f"{name} needs the Python package {install} ({exc}); "
                      "`pip install -e '.[dev]'` installs it")


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema in the real PostgreSQL database ``test``, dropped afterwards."""
    require_server("PostgreSQL", PG_HOST, PG_PORT)
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/test")
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def pg_url(pg_schema: str) -> str:
    """A PostgreSQL catalog URL whose search_path is a fresh schema."""
    return f"{PG_URL}?options=-csearch_path%3D{pg_schema}"


def make_project(root: Path, *, catalog: str | None = None, auth: str | None = None,
                 token: str | None = None) -> Project:
    """A fresh project in ``root``; ``catalog`` overrides the default SQLite catalog URL.
    ``auth`` is written to tarmac.yaml; by default a PostgreSQL catalog gets ``auth: off``
    (``auto`` would check tokens there once users exist: tests/access tests that)."""
    scaffold(root, name="test")
    if catalog:
        text = (root / "tarmac.yaml").read_text()
        lines = [f"catalog: {catalog}" if line.startswith("catalog:") else line
                 for line in text.splitlines()]
        (root / "tarmac.yaml").write_text("\n".join(lines) + "\n")
    if auth is None and catalog and catalog.startswith("postgresql"):
        auth = "off"
    if auth is not None:
        with open(root / "tarmac.yaml", "a", encoding="utf-8") as f:
            f.write(f"auth: {auth}\n")
    return tarmac.open(root, token=token)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """A fresh project on the embedded defaults (SQLite catalog, local lake)."""
    p = make_project(tmp_path / "proj")
    yield p
    p.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    """The same project on each catalog backend: SQLite, then the real PostgreSQL."""
    catalog = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    p = make_project(tmp_path / "proj", catalog=catalog)
    yield p
    p.close()
