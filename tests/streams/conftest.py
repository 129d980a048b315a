"""Fixtures for the stream log: ``open_log`` opens a log object on one store, the same store on
every call (to test reopening), once per backend; ``log`` is one opened log.

The Redis backend runs against the real server at 127.0.0.1:6379, database 12, under a fresh
namespace per test whose keys are deleted afterwards (skipped on a laptop without Redis, failed
under ``CI=true``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import require_server
from tarmac.project import Project, scaffold
from tarmac.streams import StreamLog
from tarmac.streams.embedded import EmbeddedLog

REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 12
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"

OpenLog = Callable[[], StreamLog]


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A fresh key namespace in the test Redis database, dropped afterwards."""
    require_server("Redis", REDIS_HOST, REDIS_PORT)
    from tarmac.streams.redis import RedisStreamLog

    namespace = f"t{uuid.uuid4().hex[:12]}"
    yield namespace
    with RedisStreamLog(REDIS_URL, namespace=namespace) as cleaner:
        cleaner.drop_all()


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenLog]:
    opened: list[StreamLog] = []

    if request.param == "embedded":
        def make() -> StreamLog:
            return EmbeddedLog.from_url("embedded", root=tmp_path)
    else:
        from tarmac.streams.redis import RedisStreamLog

        namespace = request.getfixturevalue("redis_namespace")

        def make() -> StreamLog:
            return RedisStreamLog(REDIS_URL, namespace=namespace)

    def opener() -> StreamLog:
        log = make()
        opened.append(log)
        return log

    yield opener
    for log in opened:
        log.close()


@pytest.fixture
def log(open_log: OpenLog) -> StreamLog:
    return open_log()


CLICKS_SOURCES = """sources:
  clicks:
    type: stream
    topic: click-events
    primary_key: event_id
    key: user_id
    timestamp: ts
    partitions: 4
    columns:
      user_id: int
      amount: {type: float, min: 0}
      page: {type: string, allowed: ["/", "/buy", "/help"]}
  crm: {type: file, path: "data/*.csv"}
"""


def stream_project(root: Path, sources: str = CLICKS_SOURCES) -> Project:
    """A fresh project declaring ``sources`` (by default the stream source ``clicks`` over the
    topic ``click-events``: keyed by ``user_id``, event time ``ts``, 4 partitions, a typed contract;
    and a file source ``crm``)."""
    import tarmac

    scaffold(root, name="test")
    config = root / "tarmac.yaml"
    config.write_text(config.read_text() + sources)
    return tarmac.open(root)


def click(i: int, **override: object) -> dict[str, object]:
    """A valid ``clicks`` record."""
    return {"event_id": f"e{i}", "user_id": i % 7, "ts": "2026-05-01T10:00:00Z",
            "amount": 1.5, "page": "/", **override}


@pytest.fixture
def clicks(tmp_path: Path) -> Iterator[Project]:
    """A project declaring the stream source ``clicks`` (see ``stream_project``)."""
    p = stream_project(tmp_path / "proj")
    yield p
    p.close()
