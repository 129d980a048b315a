"""A served model project: the ``risk`` model of tests/models (a logistic regression over two
signals and a region), v1 validated and promoted to champion, v2 validated against it, the
features materialized online. ``served_any`` builds it on each backend pair the predict path
must work on: SQLite catalog + SQLite online store, PostgreSQL catalog, Redis online store.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import tarmac
from conftest import require_server
from models.conftest import definitions, label_rows, signal_rows
from tarmac.project import Project, scaffold

REDIS_URL = "redis://127.0.0.1:6379/11"  # a db of its own: other tests use 0 and 15


def wait_until_up(proc: subprocess.Popen[str], url: str, *, path: str = "/ready",
                  seconds: float = 90) -> None:
    """Wait until the server process ``proc`` answers 200 on ``url + path``; fail with its
    output if it exits first, or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"the server did not come up in {seconds:g} s"
        time.sleep(0.2)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "unmaterialized: served_any with nothing materialized "
                                       "online")


def set_key(root: Path, key: str, value: str) -> None:
    text = (root / "tarmac.yaml").read_text()
    lines = [f"{key}: {value}" if line.startswith(f"{key}:") else line
             for line in text.splitlines()]
    (root / "tarmac.yaml").write_text("\n".join(lines) + "\n")


def build_served(root: Path, *, catalog: str | None = None, online: str | None = None,
                 text: str | None = None, versions: int = 2, promote: bool = True,
                 materialize: bool = True) -> Project:
    scaffold(root, name=f"s{uuid.uuid4().hex[:10]}")  # a Redis namespace of its own
    if online:
        set_key(root, "online_store", online)
    if catalog:
        set_key(root, "catalog", catalog)
        # a PostgreSQL catalog turns tokens on (auth: auto); these tests are about serving,
        # tests/serving/test_auth.py about tokens
        with open(root / "tarmac.yaml", "a", encoding="utf-8") as f:
            f.write("auth: off\n")
    (root / "definitions.py").write_text(text or definitions())
    p = tarmac.open(root)
    signals = signal_rows()
    p.lake.write("signals", signals)
    p.lake.write("labels", label_rows(signals))
    p.features.apply()
    for v in range(1, versions + 1):
        p.models.train("risk")
        if v == 1 and promote:
            assert p.models.validate("risk", 1).status == "passed"
            p.models.promote("risk", 1)
    if versions > 1 and promote:
        assert p.models.validate("risk", 2).status == "passed"
    if materialize:
        p.features.materialize()
    return p


def _cleanup(p: Project) -> None:
    if p.config.online_store.startswith("redis"):
        for view in p.features.online_store.views():
            p.features.online_store.clear(view)
    p.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Project]:
    p = build_served(tmp_path / "proj")
    yield p
    _cleanup(p)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def served_any(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    """The served project on SQLite/SQLite, PostgreSQL catalog, Redis online store; a test
    marked ``@pytest.mark.unmaterialized`` gets it with nothing materialized online."""
    catalog = online = None
    materialize = request.node.get_closest_marker("unmaterialized") is None
    if request.param == "postgres":
        catalog = request.getfixturevalue("pg_url")
    if request.param == "redis":
        require_server("Redis", "127.0.0.1", 6379)
        online = REDIS_URL
    p = build_served(tmp_path / "proj", catalog=catalog, online=online,
                     materialize=materialize)
    yield p
    _cleanup(p)
