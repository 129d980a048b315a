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
