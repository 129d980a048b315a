"""Kill ``tarmac stream run`` for real (SIGKILL at random moments, and inside a commit at each
of its steps), restart it, and check the lake holds every produced event exactly once, the
quarantine every bad message exactly once, and the audit chain verifies; on each backend: the
embedded log, Redis Streams (the real server) and Kafka (librdkafka's mock cluster, reached by
the runner processes over TCP). Two runners on one source share its partitions.

The suite runs a few trials per backend (``TARMAC_STREAM_KILL_TRIALS``, default 4); the
benchmark's full count is ``TARMAC_STREAM_KILL_TRIALS=20`` (60 kills over the three backends).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import tarmac
from conftest import require_server
from tarmac.catalog import sources as state_store
from tarmac.project import Project, scaffold
from tarmac.streams.runner import StreamRunner
from tarmac.streams.sink import StreamSink

pytestmark = pytest.mark.slow

TRIALS = int(os.environ.get("TARMAC_STREAM_KILL_TRIALS", "4"))
RUNNER = textwrap.dedent("""
    import os, signal, sys
    import tarmac
    from tarmac import faults
    from tarmac.streams.runner import StreamRunner

    p = tarmac.open(sys.argv[1])
    kill = os.environ.get("KILL_AT")
    if kill:  # SIGKILL at the n-th time the run passes this point of a commit
        point, nth = kill.rsplit(":", 1)
        left = [int(nth)]

        def die(**_ctx):
            left[0] -= 1
            if left[0] <= 0:
                os.kill(os.getpid(), signal.SIGKILL)

        faults.inject(point, die).__enter__()
    r = StreamRunner(p, max_records=int(os.environ.get("MAX_RECORDS", "40")), linger=0.05,
                     rebalance_every=0.3)
    r.install_signal_handlers()
    r.run()
""")
POINTS = ["commit.after_step", "commit.after_catalog", "lake.before_record"]


def _source(partitions: int) -> str:
    return textwrap.dedent(f"""
        sources:
          clicks:
            type: stream
            topic: clicks
            partitions: {partitions}
            primary_key: event_id
            timestamp: ts
            allowed_lateness: 1d
            columns: {{ts: timestamp, amount: {{type: float, min: 0}}}}
    """)


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis), "kafka"])
def streams_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "embedded":
        yield "embedded"
    elif request.param == "redis":
        require_server("Redis", "127.0.0.1", 6379)
        yield "redis://127.0.0.1:6379/12"
    else:
        pytest.importorskip("confluent_kafka")
        from tarmac.streams.kafka_mock import MockCluster

        mock = MockCluster(brokers=1)
        request.node.mock = mock
        yield f"kafka://{mock.bootstrap}"
        mock.close()


def _project(root: Path, url: str, partitions: int, request: pytest.FixtureRequest) -> Project:
    name = f"k{uuid.uuid4().hex[:10]}"  # the Redis key namespace: one per test
    scaffold(root, name=name)
    text = "\n".join(f"streams: {url}" if line.startswith("streams:") else line
                     for line in (root / "tarmac.yaml").read_text().splitlines())
    (root / "tarmac.yaml").write_text(text + "\n" + _source(partitions))
    p = tarmac.open(root)
    mock = getattr(request.node, "mock", None)
    if mock is not None:  # the mock has no CreateTopics: made through its own API
        mock.create_topic("clicks", partitions, {})
    else:
        p.streams.create_topic("clicks", partitions)
    if url.startswith("redis"):
        request.addfinalizer(lambda: _drop_redis(url, name))
    return p


def _drop_redis(url: str, namespace: str) -> None:
    from tarmac.streams.redis import RedisStreamLog

    with RedisStreamLog(url, namespace=namespace) as log:
        log.drop_all()


class Producer:
    """Produces good events, bad messages and repeats, remembering what should land where."""

    def __init__(self, p: Project) -> None:
        self.p = p
        self.good: set[str] = set()
        self.bad = 0
        self.n = 0
        self.now = datetime.now(UTC)

    def chunk(self, good: int = 60) -> None:
        records: list[dict[str, object] | bytes] = []
        for _ in range(good):
            self.n += 1
            eid = f"e{self.n}"
            self.good.add(eid)
            records.append({"event_id": eid, "amount": float(self.n % 50),
                            "ts": (self.now - timedelta(seconds=10_000 - self.n)).isoformat()})
        records += [b"not json", json.dumps({"event_id": f"bad{self.n}", "amount": -1,
                                             "ts": self.now.isoformat()}).encode()]
        self.bad += 2
        records.append(next(r for r in records if isinstance(r, dict)))  # a producer's repeat
        random.shuffle(records)
        self.p.streams.produce("clicks", records, key=lambda r: r.get("event_id")
                               if isinstance(r, dict) else None)


def _spawn(root: Path, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(root)],
                            env={**os.environ, "TARMAC_KAFKA_TIMEOUT": "5", **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _check_exactly_once(p: Project, producer: Producer) -> None:
    report = StreamRunner(p, once=True).run()["clicks"]  # what the kills left, then check
    assert not [e for e in report.errors if "retention" in e]
    rows = p.sql("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM clicks")
    assert rows["n"][0].as_py() == rows["d"][0].as_py(), "an event was committed twice"
    ids = set(p.sql("SELECT event_id FROM clicks")["event_id"].to_pylist())
    lost, extra = producer.good - ids, ids - producer.good
    assert not lost and not extra, f"lost {len(lost)}, extra {len(extra)}"
    q = p.sql("SELECT count(*) AS n, count(DISTINCT origin) AS d FROM quarantine "
              "WHERE source = 'clicks'")
    assert q["n"][0].as_py() == q["d"][0].as_py() == producer.bad
    assert p.ledger.verify().ok
    sink = StreamSink(p, "clicks")
    assert [sink.position(i) for i in range(len(p.streams.end_offsets("clicks")))] == \
        p.streams.end_offsets("clicks")


def test_killed_runner_restarts_and_every_event_lands_exactly_once(
        tmp_path: Path, streams_url: str, request: pytest.FixtureRequest) -> None:
    root = tmp_path / "proj"
    p = _project(root, streams_url, 3, request)
    producer = Producer(p)
    rng = random.Random(1234)
    kills = 0
    for trial in range(TRIALS):
        producer.chunk()
        env = {"KILL_AT": f"{POINTS[trial % 3]}:{rng.randint(1, 4)}"} if trial % 2 else {}
        proc = _spawn(root, **env)
        try:
            proc.wait(timeout=rng.uniform(1.2, 2.5))  # died at its fault point
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL at a random moment
            proc.wait()
        assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr.read().decode()[-2000:]
        kills += proc.returncode == -signal.SIGKILL
    assert kills >= TRIALS // 2
    _check_exactly_once(p, producer)
    p.close()


def test_two_runners_share_the_partitions_and_stop_cleanly_on_sigterm(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root = tmp_path / "proj"
    p = _project(root, "embedded", 4, request)
    producer = Producer(p)
    procs = [_spawn(root, MAX_RECORDS="25") for _ in range(2)]
    try:
        members = root / ".tarmac" / "streams" / "leases" / "clicks" / "members"
        deadline = time.monotonic() + 30
        while len(list(members.glob("*.lock"))) < 2:  # both up, then a rebalance or two
            assert time.monotonic() < deadline, "the runners did not start"
            time.sleep(0.1)
        sink = StreamSink(p, "clicks")
        deadline = time.monotonic() + 90
        owners: dict[str, str | None] = {}
        while True:  # rounds of events until the last commits show two runners, 2 + 2
            producer.chunk(50)
            while [sink.position(i) for i in range(4)] != p.streams.end_offsets("clicks"):
                assert time.monotonic() < deadline, "the runners did not catch up"
                assert all(proc.poll() is None for proc in procs)
                time.sleep(0.2)
            owners = {s.stream: s.last_run_id
                      for s in state_store.stream_states(p.catalog, "clicks") if ":" in s.stream}
            split = sorted(list(owners.values()).count(o) for o in set(owners.values()))
            if len(owners) == 4 and split == [2, 2] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(owners) == 4 and len(set(owners.values())) == 2, owners
        assert sorted(list(owners.values()).count(o) for o in set(owners.values())) == [2, 2]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=30) for proc in procs]
    assert codes == [0, 0], [proc.stderr.read().decode()[-2000:] for proc in procs]
    runs = p.ledger.runs(job="stream.run")
    assert sorted(r.status for r in runs.items) == ["succeeded", "succeeded"]
    _check_exactly_once(p, producer)
    p.close()
