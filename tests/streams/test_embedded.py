"""The embedded stream log's own specifics: the SQLite file in the project folder, a failing
disk, and the JSON serializer. The behaviour every backend shares (partitions, offsets, groups,
reads, retention, two processes, producers killed mid-batch) is in test_log.py, run on each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tarmac.errors import UsageError
from tarmac.project import Project
from tarmac.streams import JSON, Delivered, Serializer, StreamLog, decode_json, encode_json
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


def test_a_schema_1_file_is_migrated_whole(tmp_path: Path) -> None:
    """A log file written before row-id keys (schema 1: records keyed by topic, partition and
    offset) opens with every record, offset, group commit and time lookup as it was."""
    import sqlite3
    from datetime import UTC, datetime, timedelta

    from tarmac.streams.log import to_us

    path = tmp_path / "streams.db"
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    stamps = [0, 30, 10, 20, 40, 35]  # minutes: out of order, as event times may be
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE topics(name TEXT PRIMARY KEY, partitions INTEGER NOT NULL,
                retention_s REAL, created_us INTEGER NOT NULL);
            CREATE TABLE partitions(topic TEXT NOT NULL, partition INTEGER NOT NULL,
                start_offset INTEGER NOT NULL, next_offset INTEGER NOT NULL,
                PRIMARY KEY(topic, partition)) WITHOUT ROWID;
            CREATE TABLE records(topic TEXT NOT NULL, partition INTEGER NOT NULL,
                offset INTEGER NOT NULL, ts_us INTEGER NOT NULL, key BLOB, value BLOB NOT NULL,
                PRIMARY KEY(topic, partition, offset)) WITHOUT ROWID;
            CREATE INDEX records_time ON records(topic, partition, ts_us);
            CREATE TABLE group_offsets(grp TEXT NOT NULL, topic TEXT NOT NULL,
                partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
                PRIMARY KEY(grp, topic, partition)) WITHOUT ROWID;
            INSERT INTO topics VALUES ('a', 2, NULL, 0), ('b', 1, 3600, 0);
            INSERT INTO partitions VALUES ('a', 0, 2, 8), ('a', 1, 0, 0), ('b', 0, 0, 6);
            INSERT INTO group_offsets VALUES ('g', 'a', 0, 5);
        """)
        conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)",
                         [("a", 0, o, to_us(t0) + o, b"k", f"a{o}".encode())
                          for o in range(2, 8)] +
                         [("b", 0, o, to_us(t0 + timedelta(minutes=m)), None,
                           f"b{o}".encode()) for o, m in enumerate(stamps)])
    with EmbeddedLog(path) as log:
        assert [(t.name, t.start_offsets, t.end_offsets) for t in log.topics()] == [
            ("a", [2, 0], [8, 0]), ("b", [0], [6])]
        assert [m.value for m in log.read("a", 0)] == [f"a{o}".encode() for o in range(2, 8)]
        assert [m.offset for m in log.consume("a", "g", max_records=10)] == [5, 6, 7]
        for minutes in range(-1, 42):  # the first offset at or after the time, as a scan says
            want = next((o for o, m in enumerate(stamps) if m >= minutes), None)
            got = log.read("b", 0, from_time=t0 + timedelta(minutes=minutes), limit=1)
            assert [m.offset for m in got] == ([] if want is None else [want]), minutes
        assert log.produce("a", [b"new"])[0] == Delivered("a", 0, 8)  # round robin: 0 first
        assert log.apply_retention(now=t0 + timedelta(minutes=30, hours=1)) == 1  # b's first
        assert log.topic("b").start_offsets == [1]
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = "
                                             "'table'")}
        assert "records" not in tables and conn.execute("PRAGMA user_version").fetchone() == (2,)


def test_a_file_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "streams.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 3")
    with pytest.raises(UsageError, match="schema version 3, newer than this Tarmac knows"):
        EmbeddedLog(path)
