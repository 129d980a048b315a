"""The stream log's behaviour, the same on every backend (the ``open_log``/``log`` fixtures run
each test on the embedded log and on Redis Streams): partitions and keys, offsets, consumer
groups, reads by offset and time, retention, two processes at once, and producers killed
mid-batch."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from tarmac.errors import TopicNotFoundError, UsageError
from tarmac.streams import Message, Record, StreamLog, decode_json, partition_for

from .conftest import REDIS_URL, OpenLog


def test_round_trip_with_keys_and_partitions(log: StreamLog) -> None:
    log.create_topic("clicks", partitions=4)
    records = [{"user": f"u{i % 5}", "n": i} for i in range(40)]
    delivered = log.produce("clicks", records, key="user")
    assert len(delivered) == 40
    for record, d in zip(records, delivered, strict=True):  # a key always lands on one partition
        assert d.partition == partition_for(record["user"].encode(), 4)
    got = log.consume("clicks", "g", max_records=1000)
    assert sorted(decode_json(m.value)["n"] for m in got) == list(range(40))
    by_part: dict[int, list[int]] = {}
    for m in got:
        by_part.setdefault(m.partition, []).append(m.offset)
        assert m.key == f"u{decode_json(m.value)['n'] % 5}".encode()
    for offsets in by_part.values():  # within a partition: 0, 1, 2 ... in order
        assert offsets == list(range(len(offsets)))
    # without a key: round robin over the partitions
    spread = log.produce("clicks", [b"a", b"b", b"c", b"d"])
    assert sorted(d.partition for d in spread) == [0, 1, 2, 3]
    # Record objects keep their own key and timestamp
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    [d] = log.produce("clicks", [Record(b"x", key="k", timestamp=when)])
    [m] = log.read("clicks", d.partition, from_offset=d.offset)
    assert (m.key, m.value, m.timestamp) == (b"k", b"x", when)
    # an empty key and an empty value are values, not absences
    [d] = log.produce("clicks", [Record(b"", key=b"")])
    [m] = log.read("clicks", d.partition, from_offset=d.offset)
    assert (m.key, m.value) == (b"", b"")


def test_offsets_are_monotonic_and_survive_reopen(open_log: OpenLog) -> None:
    with open_log() as first:
        first.create_topic("t", partitions=2)
        a = first.produce("t", [b"1", b"2", b"3"], key=lambda r: "same")
    with open_log() as again:
        b = again.produce("t", [b"4", b"5"], key=lambda r: "same")
        assert [d.offset for d in a + b] == [0, 1, 2, 3, 4]
        assert len({d.partition for d in a + b}) == 1
        assert sum(again.end_offsets("t")) == 5


def test_a_group_resumes_from_its_commit_and_groups_are_independent(open_log: OpenLog) -> None:
    with open_log() as log:
        log.create_topic("t", partitions=3)
        log.produce("t", [{"i": i} for i in range(30)])
        first = log.consume("t", "a", max_records=10)
        assert len(first) == 10
        log.commit("a")
        log.consume("t", "a", max_records=5)  # read but not committed: read again after restart
        assert sum(log.committed("a", "t").values()) == 10
        assert len(log.consume("t", "b", max_records=100)) == 30  # group b starts at the start
        assert log.committed("b", "t") == {}
    with open_log() as log:
        rest = log.consume("t", "a", max_records=100)
        seen = [m.json()["i"] for m in first + rest]
        assert sorted(seen) == list(range(30))  # nothing lost, nothing twice
        log.commit("a")
        assert log.consume("t", "a", max_records=100) == []
        log.commit("a", {("t", 0): 0})  # explicit offsets: rewind one partition
        assert len(log.consume("t", "a", max_records=100)) == 10
        log.seek("a", "t", 1, 5)
        assert [m.offset for m in log.consume("t", "a")] == [5, 6, 7, 8, 9]
        with pytest.raises(UsageError, match="nothing was committed"):
            log.commit("a", {("t", 0): 3, ("t", 1): 99})
        assert log.committed("a", "t")[0] == 0  # refused whole


def test_consume_waits_up_to_its_timeout(log: StreamLog) -> None:
    log.create_topic("t", partitions=2)
    began = time.monotonic()
    assert log.consume("t", "g", timeout=0.3) == []
    assert 0.25 <= time.monotonic() - began < 2.0


def test_read_by_offset_and_by_time(log: StreamLog) -> None:
    log.create_topic("t")
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    log.produce("t", [Record(f"{i}".encode(), timestamp=t0 + timedelta(minutes=i))
                      for i in range(10)])
    assert [m.offset for m in log.read("t", 0, from_offset=7)] == [7, 8, 9]
    assert [m.offset for m in log.read("t", 0, from_offset=2, limit=2)] == [2, 3]
    assert [m.offset for m in log.read("t", 0, from_time=t0 + timedelta(minutes=6, seconds=1))
            ] == [7, 8, 9]
    assert log.read("t", 0, from_time=t0 + timedelta(hours=1)) == []
    assert log.read("t", 0, from_offset=10) == []  # the end: nothing yet
    with pytest.raises(UsageError, match="bad offset 11"):
        log.read("t", 0, from_offset=11)
    with pytest.raises(UsageError, match="bad offset -1"):
        log.read("t", 0, from_offset=-1)
    with pytest.raises(UsageError, match="no partition 1") as e:
        log.read("t", 1)
    assert "0..0" in (e.value.hint or "")


def test_reads_by_time_with_unordered_timestamps_and_retention(log: StreamLog) -> None:
    """Event timestamps out of order: a read by time starts at the lowest offset whose timestamp
    is at or after the time asked, before and after retention, like a scan would."""
    log.create_topic("t", retention="1h")
    rng = random.Random(7)
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    stamps: list[datetime] = []
    for _ in range(4):
        batch = [t0 + timedelta(minutes=rng.randrange(0, 300)) for _ in range(40)]
        log.produce("t", [Record(b"x", timestamp=ts) for ts in batch])
        stamps += batch

    def check() -> None:
        start = log.topic("t").start_offsets[0]
        for minute in range(-5, 310, 7):
            asked = t0 + timedelta(minutes=minute)
            want = next((o for o in range(start, len(stamps)) if stamps[o] >= asked), None)
            got = log.read("t", 0, from_time=asked, limit=1)
            assert [m.offset for m in got] == ([] if want is None else [want]), minute

    check()
    for hours in (2, 3, 4, 5):  # retention cuts at the first record within the window
        now = t0 + timedelta(hours=hours)
        cutoff = now - timedelta(hours=1)
        before = log.topic("t").start_offsets[0]
        first = next((o for o in range(before, len(stamps)) if stamps[o] >= cutoff),
                     len(stamps))
        assert log.apply_retention(now) == first - before
        assert log.topic("t").start_offsets[0] == first
        check()


def test_retention_deletes_old_records_and_offsets_are_not_reused(log: StreamLog) -> None:
    log.create_topic("t", partitions=1, retention="1h")
    log.create_topic("forever")
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    log.produce("t", [Record(b"old", timestamp=now - timedelta(hours=3)) for _ in range(5)]
                + [Record(b"new", timestamp=now - timedelta(minutes=5)) for _ in range(3)])
    log.produce("forever", [Record(b"old", timestamp=now - timedelta(days=900))])
    assert log.apply_retention(now) == 5
    info = log.topic("t")
    assert (info.start_offsets, info.end_offsets, info.records) == ([5], [8], 3)
    assert info.retention == timedelta(hours=1) and log.topic("forever").retention is None
    assert [m.offset for m in log.read("t", 0)] == [5, 6, 7]
    with pytest.raises(UsageError, match="deleted by retention"):
        log.read("t", 0, from_offset=2)
    assert [m.offset for m in log.consume("t", "late")] == [5, 6, 7]  # a group starts at 5
    assert log.apply_retention(now + timedelta(hours=2)) == 3  # everything old: all gone
    [d] = log.produce("t", [b"next"])
    assert d.offset == 8  # never reused
    assert log.topic("forever").records == 1


def test_unknown_topic_names_close_ones(log: StreamLog) -> None:
    log.create_topic("clicks")
    log.create_topic("orders")
    with pytest.raises(TopicNotFoundError) as e:
        log.produce("clikcs", [b"x"])
    assert "'clikcs'" in e.value.message and "'clicks'" in (e.value.hint or "")
    assert isinstance(e.value, UsageError)
    with pytest.raises(TopicNotFoundError):
        log.consume("nope", "g")
    with pytest.raises(TopicNotFoundError):
        log.topic("nope")
    with pytest.raises(UsageError, match="exists already"):
        log.create_topic("clicks")
    assert log.create_topic("clicks", exist_ok=True).name == "clicks"
    with pytest.raises(UsageError, match="partitions are fixed|exists with"):
        log.create_topic("clicks", partitions=2, exist_ok=True)
    with pytest.raises(UsageError, match="bad topic name"):
        log.create_topic("no spaces")
    with pytest.raises(UsageError, match="partition count"):
        log.create_topic("zero", partitions=0)
    with pytest.raises(UsageError, match="nothing was produced"):
        log.produce("clicks", [b"ok", 42])  # type: ignore[list-item]
    assert log.end_offsets("clicks") == [0]
    assert [t.name for t in log.topics()] == ["clicks", "orders"]


def test_messages_are_plain_values(log: StreamLog) -> None:
    log.create_topic("t")
    log.produce("t", [{"a": 1}])
    [m] = log.consume("t", "g")
    assert isinstance(m, Message) and m.json() == {"a": 1} and m.topic == "t"
    assert m.timestamp.tzinfo is not None
    assert [x.value for x in log.tail("t", 5)] == [b'{"a":1}']


def test_a_closed_log_refuses_work(open_log: OpenLog) -> None:
    log = open_log()
    log.create_topic("t")
    log.close()
    with pytest.raises(UsageError, match="closed"):
        log.topics()


def _produce_in_another_process(open_log: OpenLog, batches: int, size: int) -> None:
    with open_log() as log:
        for b in range(batches):
            log.produce("t", [{"id": b * size + i} for i in range(size)], key=lambda r: r["id"])
            time.sleep(0.005)


def test_a_producer_and_a_consumer_in_two_processes(open_log: OpenLog) -> None:
    with open_log() as log:
        log.create_topic("t", partitions=3)
        batches, size = 20, 25
        child = multiprocessing.get_context("fork").Process(
            target=_produce_in_another_process, args=(open_log, batches, size))
        child.start()
        seen: list[int] = []
        deadline = time.monotonic() + 20
        while len(seen) < batches * size and time.monotonic() < deadline:
            got = log.consume("t", "reader", max_records=37, timeout=0.5)
            seen.extend(m.json()["id"] for m in got)
            log.commit("reader")
        child.join(10)
        assert child.exitcode == 0
        assert sorted(seen) == list(range(batches * size))  # nothing lost, nothing twice


_KILLED_PRODUCER = """
import sys
from pathlib import Path
kind, where, base = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "embedded":
    from tarmac.streams.embedded import EmbeddedLog
    log = EmbeddedLog.from_url("embedded", root=Path(where))
else:
    from tarmac.streams.redis import RedisStreamLog
    url, namespace = where.split(" ")
    log = RedisStreamLog(url, namespace=namespace)
for b in range(1000):
    recs = [{"id": f"{base}-{b}-{i}"} for i in range(50)]
    for d, r in zip(log.produce("t", recs, key="id"), recs):
        sys.stdout.write(f"{r['id']} {d.partition} {d.offset}\\n")
    sys.stdout.flush()
"""


def _where(log: StreamLog) -> tuple[str, str]:
    from tarmac.streams.embedded import EmbeddedLog
    from tarmac.streams.redis import RedisStreamLog

    if isinstance(log, EmbeddedLog):
        return "embedded", str(log.path.parent.parent)  # root/.tarmac/streams.db
    assert isinstance(log, RedisStreamLog)
    return "redis", f"{REDIS_URL} {log.namespace}"


def test_producers_killed_mid_batch_leave_every_confirmed_record_once(open_log: OpenLog) -> None:
    with open_log() as log:
        log.create_topic("t", partitions=2)
        kind, where = _where(log)
    rng = random.Random(14)
    confirmed: dict[str, tuple[int, int]] = {}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for trial in range(4):
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_PRODUCER, kind, where,
                                 str(trial)], stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # it is producing: kill it at a random moment after
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        out = first + proc.stdout.read()
        proc.wait()
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3:  # a torn last line was never a confirmation
                confirmed[parts[0]] = (int(parts[1]), int(parts[2]))
    with open_log() as log:
        held: dict[str, tuple[int, int]] = {}
        for p in range(2):
            for m in log.read("t", p, limit=10**6):
                rid = m.json()["id"]
                assert rid not in held, f"{rid} twice"
                held[rid] = (m.partition, m.offset)
        assert len(confirmed) >= 4 * 50
        assert all(held.get(r) == at for r, at in confirmed.items())
        # whole batches only: every trial's records come in multiples of the batch size
        for trial in range(4):
            assert sum(1 for r in held if r.startswith(f"{trial}-")) % 50 == 0
        ends = log.end_offsets("t")
        for p in range(2):  # offsets dense: the counter never ran ahead of the entries
            assert sorted(o for q, o in held.values() if q == p) == list(range(ends[p]))
        [d] = log.produce("t", [{"id": "after"}], key="id")
        assert d.offset == ends[d.partition]  # the log goes on where it was


def test_a_waiting_consumer_wakes_when_records_arrive(open_log: OpenLog) -> None:
    import threading

    with open_log() as log:
        log.create_topic("t", partitions=2)
        log.produce("t", [b"old"])
        assert len(log.consume("t", "g")) == 1

        def later() -> None:
            time.sleep(0.2)
            with open_log() as other:
                other.produce("t", [b"new"], key="k")

        producer = threading.Thread(target=later)
        began = time.monotonic()
        producer.start()
        got = log.consume("t", "g", timeout=5.0)
        producer.join()
        assert [m.value for m in got] == [b"new"]
        assert time.monotonic() - began < 2.0


def test_consume_fills_its_batch_from_uneven_partitions(log: StreamLog) -> None:
    log.create_topic("t", partitions=4)
    log.produce("t", [{"i": i} for i in range(25)], key=lambda r: "one")  # all on one partition
    log.produce("t", [{"i": 100}], key=lambda r: "other")
    seen: list[int] = []
    for size in (10, 10, 10):
        got = log.consume("t", "g", max_records=size)
        assert len(got) == min(size, 26 - len(seen))
        seen += [m.json()["i"] for m in got]
    assert sorted(seen) == [*range(25), 100]
