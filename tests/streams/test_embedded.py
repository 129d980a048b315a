"""The embedded stream log's own specifics: the SQLite file in the project folder, a failing
disk, and the JSON serializer. The behaviour every backend shares (partitions, offsets, groups,
reads, retention, two processes, producers killed mid-batch) is in test_log.py, run on each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tarmac.errors import UsageError
from tarmac.project import Project
from tarmac.streams import JSON, Serializer, StreamLog, decode_json, encode_json
from tarmac.streams.embedded import EmbeddedLog


@pytest.fixture
def log(tmp_path: Path) -> Iterator[EmbeddedLog]:
    opened = EmbeddedLog.from_url("embedded", root=tmp_path)
    yield opened
    opened.close()


def test_json_serializer_round_trip() -> None:
    value = {"name": "Zoë 🚀 東京", "nested": {"list": [1, 2.5, None, True, {"deep": ["x"]}]},
             "empty": {}, "n": -3}
    data = encode_json(value)
    assert isinstance(data, bytes) and "東京".encode() in data
    assert decode_json(data) == value
    assert JSON.decode(JSON.encode(value)) == value and isinstance(JSON, Serializer)
    with pytest.raises(UsageError):
        encode_json({"bad": float("nan")})
    with pytest.raises(UsageError):
        decode_json(b"\xff not json")


def test_is_a_stream_log_opened_by_the_project(project: Project) -> None:
    assert isinstance(project.streams, StreamLog) and project.streams is project.streams
    project.streams.create_topic("t")
    assert (project.root / ".tarmac" / "streams.db").exists()
    project.close()  # closes the log too
    with pytest.raises(UsageError, match="closed"):
        project.streams.topics()


def test_a_failing_disk_is_a_clear_error_and_keeps_nothing(log: EmbeddedLog) -> None:
    from tarmac.errors import BackendUnavailableError

    log.create_topic("t")
    log.produce("t", [b"before"])
    conn = log._conn()
    conn.execute("PRAGMA max_page_count = 1")  # every page a write needs: 'disk full'
    with pytest.raises(BackendUnavailableError, match="full") as e:
        log.produce("t", [b"x" * 100_000])
    assert "nothing of this write was kept" in e.value.message
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert [m.value for m in log.read("t", 0)] == [b"before"]
    assert log.produce("t", [b"after"])[0].offset == 1
