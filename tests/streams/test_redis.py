"""Redis Streams specifics: the key layout and entry ids, namespaces, opening by URL from a
project, a server that is down, and a batch Redis refuses leaving nothing behind. The behaviour
shared with the embedded log runs on Redis in test_log.py."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tarmac.config import open_backend
from tarmac.errors import BackendUnavailableError, ConfigError, UsageError
from tarmac.streams import Record, partition_for
from tarmac.streams.redis import RedisStreamLog

from .conftest import REDIS_URL

pytestmark = pytest.mark.redis


@pytest.fixture
def rlog(redis_namespace: str) -> Iterator[RedisStreamLog]:
    with RedisStreamLog(REDIS_URL, namespace=redis_namespace) as log:
        yield log


@pytest.fixture
def raw(rlog: RedisStreamLog) -> Iterator[object]:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def test_key_layout_entry_ids_and_time_index(rlog: RedisStreamLog, raw: object) -> None:
    import redis

    assert isinstance(raw, redis.Redis)
    rlog.create_topic("clicks", partitions=2, retention="7d")
    when = datetime(2026, 4, 1, tzinfo=UTC)
    rlog.produce("clicks", [Record(b"a", key="k", timestamp=when), Record(b"b", key="k",
                                                                          timestamp=when)])
    base = f"tarmac:{rlog.namespace}:_streams:"
    p = rlog.read("clicks", 0)[0].partition if rlog.read("clicks", 0) else 1
    entries = raw.xrange(f"{base}clicks:{p}")
    assert [e[0] for e in entries] == [b"0-1", b"1-1"]  # offset o is the entry id o-1
    assert entries[0][1] == {b"t": str(int(when.timestamp() * 1e6)).encode(), b"v": b"a",
                             b"k": b"k"}
    meta = raw.hgetall(f"{base}clicks")
    assert meta[b"partitions"] == b"2" and meta[f"next:{p}".encode()] == b"2"
    assert float(meta[b"retention_s"]) == 7 * 86400
    # equal timestamps: only the first record raised the running maximum
    assert raw.zrange(f"{base}clicks:{p}:time", 0, -1) == [b"0"]
    assert raw.smembers(f"{base}_topics") == {b"clicks"}
    assert all(k.startswith(base.encode()) for k in raw.keys(f"tarmac:{rlog.namespace}:*"))


def test_namespaces_keep_projects_apart(rlog: RedisStreamLog, redis_namespace: str) -> None:
    rlog.create_topic("t")
    rlog.produce("t", [b"mine"])
    other = RedisStreamLog(REDIS_URL, namespace=redis_namespace + "x")
    try:
        assert other.topics() == []
        other.create_topic("t", partitions=3)
        assert other.produce("t", [b"theirs"])[0].offset == 0
        assert rlog.topic("t").partitions == 1 and rlog.end_offsets("t") == [1]
    finally:
        other.drop_all()
        other.close()
    with pytest.raises(UsageError, match="namespace"):
        RedisStreamLog(REDIS_URL, namespace="a:b")


def test_opened_by_url_with_the_namespace_it_is_given(tmp_path: Path,
                                                     redis_namespace: str) -> None:
    """The registry seam passes the namespace through; the log reads no project file (the
    folder here has none)."""
    log = open_backend("streams", REDIS_URL, root=tmp_path, namespace=redis_namespace)
    try:
        assert isinstance(log, RedisStreamLog) and log.namespace == redis_namespace
        assert log.url == REDIS_URL and repr(log) == f"RedisStreamLog({REDIS_URL!r})"
    finally:
        log.close()
    with pytest.raises(ConfigError, match="not a number"):
        RedisStreamLog("redis://127.0.0.1:6379/twelve", namespace="x")
    with pytest.raises(ConfigError, match="needs a namespace"):
        open_backend("streams", REDIS_URL, root=tmp_path)


def test_project_streams_keys_are_under_the_project_name(tmp_path: Path, raw: object,
                                                         redis_namespace: str) -> None:
    """``Project.streams`` passes the project's name as the namespace: what it produces lands
    under ``tarmac:{name}:_streams:``, whatever tarmac.yaml says by then."""
    import redis

    import tarmac
    from tarmac.project import scaffold

    assert isinstance(raw, redis.Redis)
    root = scaffold(tmp_path / "proj", name=redis_namespace)
    config = root / "tarmac.yaml"
    config.write_text("\n".join(f"streams: {REDIS_URL}" if line.startswith("streams:")
                                 else line for line in config.read_text().splitlines()) + "\n")
    with tarmac.open(root) as p:
        config.write_text(config.read_text().replace(f"name: {redis_namespace}",
                                                     "name: someone-else"))
        log = p.streams
        assert isinstance(log, RedisStreamLog) and log.namespace == redis_namespace
        log.create_topic("t")
        log.produce("t", [b"x"])
    assert raw.xlen(f"tarmac:{redis_namespace}:_streams:t:0") == 1
    assert not raw.keys("tarmac:someone-else:*")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_redis_down_is_a_clear_error(tmp_path: Path) -> None:
    url = f"redis://:secret@127.0.0.1:{_closed_port()}/12"
    with pytest.raises(BackendUnavailableError) as e:
        RedisStreamLog(url, namespace="x")
    assert "unreachable" in e.value.message and "secret" not in e.value.message
    assert "Redis running" in (e.value.hint or "")
    with pytest.raises(BackendUnavailableError):
        open_backend("streams", url, root=tmp_path, namespace="acme")


def test_a_batch_redis_refuses_leaves_nothing(rlog: RedisStreamLog, raw: object) -> None:
    import redis

    assert isinstance(raw, redis.Redis)
    rlog.create_topic("t", partitions=2)
    rlog.produce("t", [Record(b"before", key="k")])
    base = f"tarmac:{rlog.namespace}:_streams:"
    other = 1 - partition_for(b"k", 2)  # the partition "before" is not in
    raw.set(f"{base}t:{other}", "not a stream")  # not a stream
    batch = [b"x", b"y", b"z", b"w"]  # round robin: both partitions
    with pytest.raises(UsageError, match="nothing of the batch") as e:
        rlog.produce("t", batch)
    assert "Tarmac did not write" in e.value.message
    raw.delete(f"{base}t:{other}")
    raw.xadd(f"{base}t:{other}", {"v": "x"}, id="5-1")  # an entry past the counter
    with pytest.raises(UsageError, match="past its counter"):
        rlog.produce("t", batch)
    raw.delete(f"{base}t:{other}")
    assert sum(rlog.topic("t").end_offsets) == 1  # no counter moved
    assert [m.value for p in (0, 1) for m in rlog.read("t", p)] == [b"before"]
    assert rlog.produce("t", [Record(b"after", key="k")])[0].offset == 1


def test_a_project_on_redis_streams_through_the_sdk_and_cli(tmp_path: Path,
                                                             redis_namespace: str) -> None:
    import json
    import re

    from typer.testing import CliRunner

    import tarmac
    from tarmac.cli import app
    from tarmac.project import scaffold

    root = tmp_path / "proj"
    scaffold(root, name=redis_namespace)
    config = root / "tarmac.yaml"
    config.write_text(re.sub(r"(?m)^streams:.*$", f"streams: {REDIS_URL}", config.read_text()))
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"user": f"u{i % 3}", "n": i}) + "\n"
                              for i in range(9)))
    result = CliRunner().invoke(app, ["--project", str(root), "stream", "produce", "clicks",
                                      "--file", str(events), "--create", "--partitions", "3",
                                      "--key", "user"])
    assert result.exit_code == 0, result.output
    p = tarmac.open(root)
    try:
        assert isinstance(p.streams, RedisStreamLog) and p.streams.namespace == redis_namespace
        assert sum(p.streams.end_offsets("clicks")) == 9
        got = p.streams.consume("clicks", "app", max_records=100)
        assert sorted(m.json()["n"] for m in got) == list(range(9))
    finally:
        p.close()
