"""The Kafka stream log against librdkafka's built-in mock cluster (real Kafka protocol,
in-process, no broker to install).

How the mock is reached (confluent-kafka 2.16 / librdkafka 2.16): a client configured with
``test.mock.num.brokers`` replaces its own ``bootstrap.servers`` with a private mock cluster,
but ``KafkaStreamLog`` opens several clients (AdminClient, Producer, Consumers) that must share
one cluster. So the fixture creates the cluster itself through librdkafka's mock API
(``tarmac.streams.kafka_mock.MockCluster``: ``rd_kafka_mock_cluster_new`` on a bare handle, via
ctypes on the librdkafka bundled in the confluent-kafka wheel; the benchmark uses it too) and
hands its ``rd_kafka_mock_cluster_bootstraps()`` address to the log as an ordinary
``kafka://127.0.0.1:<port>`` URL. (Reading the address from a ``test.mock``
client's metadata works too, but only the mock API can create topics, see below.)

What the mock cannot do, and how it is covered: it has no CreateTopics and no DescribeConfigs
handler (the AdminClient gets ``_UNSUPPORTED_FEATURE``). ``create_topic`` therefore goes
through the log's ``_create_on_broker`` seam, which these tests point at
``rd_kafka_mock_topic_create`` (the real AdminClient call is what runs against a broker);
retention on the mock reads as None. The mock also answers -1 (no record) to every
offsets-for-times lookup, so reads by time replace the log's ``_offset_for_time`` (one
``offsets_for_times`` call) with a scan giving the broker's answer; the rest of the by-time
read is the real path. Everything else (produce with delivery reports, the
partitioner, consumer-group commits, offsets_for_times, watermarks) is the real client against
the mock broker. Faults are injected with the mock API as well: Produce errors pushed onto
the broker (``rd_kafka_mock_push_request_errors``) and the broker taken down mid-run
(``rd_kafka_mock_broker_set_down``), each on a cluster of its own.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from tarmac.config import open_backend  # noqa: E402
from tarmac.errors import BackendUnavailableError, ConfigError, TopicNotFoundError, UsageError  # noqa: E402,E501
from tarmac.streams import Record, decode_json, partition_for  # noqa: E402
from tarmac.streams.kafka import KafkaStreamLog, settings_from_env  # noqa: E402
from tarmac.streams.kafka_mock import MockCluster  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[MockCluster]:
    try:
        mock = MockCluster(brokers=1)
    except BackendUnavailableError as exc:
        pytest.skip(exc.message)
    yield mock
    mock.close()


def _offset_for_time_by_scan(self: KafkaStreamLog, consumer: Any, topic: str,
                             partition: int, ms: int) -> int | None:
    """What a broker's time index answers (the first offset with a timestamp >= ms), found by
    reading the partition: the mock answers -1 to every ListOffsets-by-time request."""
    for m in self.read(topic, partition, limit=10**6):
        if m.timestamp >= datetime.fromtimestamp(ms / 1000, UTC):
            return m.offset
    return None


def _open(cluster: MockCluster, monkeypatch: pytest.MonkeyPatch,
          tmp_path: Path) -> KafkaStreamLog:
    monkeypatch.setattr(KafkaStreamLog, "_create_on_broker",
                        lambda self, name, partitions, config:
                        cluster.create_topic(name, partitions, config))
    monkeypatch.setattr(KafkaStreamLog, "_offset_for_time", _offset_for_time_by_scan)
    log: KafkaStreamLog = open_backend("streams", f"kafka://{cluster.bootstrap}", root=tmp_path,
                                       environ={}, timeout=5)
    return log


@pytest.fixture
def log(cluster: MockCluster, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> Iterator[KafkaStreamLog]:
    opened = _open(cluster, monkeypatch, tmp_path)
    yield opened
    opened.close()


def _name(request: pytest.FixtureRequest, suffix: str = "") -> str:
    """Topics live as long as the module's cluster: one name per test."""
    return f"{request.node.name.replace('[', '-').replace(']', '')}{suffix}"[:200]


def test_round_trip_with_keys_and_partitions(log: KafkaStreamLog,
                                             request: pytest.FixtureRequest) -> None:
    t = _name(request)
    log.create_topic(t, partitions=4)
    records = [{"user": f"u{i % 5}", "n": i} for i in range(40)]
    delivered = log.produce(t, records, key="user")
    assert len(delivered) == 40
    for record, d in zip(records, delivered, strict=True):  # consistent = crc32 % partitions
        assert d.partition == partition_for(record["user"].encode(), 4)
    got = log.consume(t, "g", max_records=1000)
    assert sorted(decode_json(m.value)["n"] for m in got) == list(range(40))
    by_part: dict[int, list[int]] = {}
    for m in got:
        by_part.setdefault(m.partition, []).append(m.offset)
        assert m.key == f"u{decode_json(m.value)['n'] % 5}".encode()
    for offsets in by_part.values():
        assert offsets == list(range(len(offsets)))
    spread = log.produce(t, [b"a", b"b", b"c", b"d"])  # no key: any partition, all confirmed
    assert all(0 <= d.partition < 4 for d in spread)
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    [d] = log.produce(t, [Record(b"x", key="k", timestamp=when)])
    [m] = log.read(t, d.partition, from_offset=d.offset)
    assert (m.key, m.value, m.timestamp) == (b"k", b"x", when)
    info = log.topic(t)
    assert (info.partitions, info.records, sum(info.end_offsets)) == (4, 45, 45)


def test_offsets_are_monotonic_across_log_objects(cluster: MockCluster,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    t = _name(request)
    with _open(cluster, monkeypatch, tmp_path) as first:
        first.create_topic(t, partitions=2)
        a = first.produce(t, [b"1", b"2", b"3"], key=lambda r: "same")
    with _open(cluster, monkeypatch, tmp_path) as again:
        b = again.produce(t, [b"4", b"5"], key=lambda r: "same")
        assert [d.offset for d in a + b] == [0, 1, 2, 3, 4]
        assert len({d.partition for d in a + b}) == 1
        assert sum(again.end_offsets(t)) == 5


def test_a_group_resumes_from_its_commit_and_groups_are_independent(
        cluster: MockCluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    t = _name(request)
    with _open(cluster, monkeypatch, tmp_path) as log:
        log.create_topic(t, partitions=3)
        log.produce(t, [{"i": i} for i in range(30)])
        first = log.consume(t, "a", max_records=10)
        assert len(first) == 10
        log.commit("a")
        log.consume(t, "a", max_records=5)  # read but not committed: read again after restart
        assert sum(log.committed("a", t).values()) == 10
        assert len(log.consume(t, "b", max_records=100)) == 30
        assert log.committed("b", t) == {}
    with _open(cluster, monkeypatch, tmp_path) as log:
        rest = log.consume(t, "a", max_records=100)
        seen = [m.json()["i"] for m in first + rest]
        assert sorted(seen) == list(range(30))  # nothing lost, nothing twice
        log.commit("a")
        assert log.consume(t, "a", max_records=100) == []
        ends = log.end_offsets(t)
        log.commit("a", {(t, 0): 0})  # explicit offsets: rewind one partition
        assert log.committed("a", t)[0] == 0
        assert len(log.consume(t, "a", max_records=100)) == ends[0]
        log.seek("a", t, 1, ends[1] - 2)
        assert [m.offset for m in log.consume(t, "a")] == [ends[1] - 2, ends[1] - 1]


def test_read_by_offset_and_by_time(log: KafkaStreamLog, request: pytest.FixtureRequest) -> None:
    t = _name(request)
    log.create_topic(t)
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    log.produce(t, [Record(f"{i}".encode(), timestamp=t0 + timedelta(minutes=i))
                    for i in range(10)])
    assert [m.offset for m in log.read(t, 0, from_offset=7)] == [7, 8, 9]
    assert [m.offset for m in log.read(t, 0, from_offset=2, limit=2)] == [2, 3]
    assert [m.offset for m in log.read(t, 0, from_time=t0 + timedelta(minutes=6, seconds=1))
            ] == [7, 8, 9]
    assert log.read(t, 0, from_time=t0 + timedelta(hours=1)) == []
    assert log.read(t, 0, from_offset=10) == []
    with pytest.raises(UsageError, match="bad offset 11"):
        log.read(t, 0, from_offset=11)
    with pytest.raises(UsageError, match="bad offset -1"):
        log.read(t, 0, from_offset=-1)
    with pytest.raises(UsageError, match="no partition 1") as e:
        log.read(t, 1)
    assert "0..0" in (e.value.hint or "")
    assert [m.value for m in log.tail(t, 2)] == [b"8", b"9"]
    assert log.committed("tail-never-commits", t) == {}


def test_unknown_topic_names_close_ones(log: KafkaStreamLog) -> None:
    log.create_topic("clicks", exist_ok=True)
    log.create_topic("orders", exist_ok=True)
    with pytest.raises(TopicNotFoundError) as e:
        log.produce("clikcs", [b"x"])
    assert "'clikcs'" in e.value.message and "'clicks'" in (e.value.hint or "")
    with pytest.raises(TopicNotFoundError):
        log.consume("nope", "g")
    with pytest.raises(UsageError, match="exists already"):
        log.create_topic("clicks")
    assert log.create_topic("clicks", exist_ok=True).name == "clicks"
    with pytest.raises(UsageError, match="bad topic name"):
        log.create_topic("no spaces")
    with pytest.raises(UsageError, match="partition count"):
        log.create_topic("zero", partitions=0)
    with pytest.raises(UsageError, match="nothing was produced"):
        log.produce("clicks", [b"ok", 42])  # type: ignore[list-item]
    assert log.apply_retention() == 0  # the broker's job (retention.ms)


def test_json_round_trip(log: KafkaStreamLog, request: pytest.FixtureRequest) -> None:
    t = _name(request)
    log.create_topic(t)
    value = {"name": "Zoë 🚀 東京", "nested": {"list": [1, 2.5, None, True, {"deep": ["x"]}]},
             "empty": {}, "n": -3}
    [d] = log.produce(t, [value])
    [m] = log.read(t, 0, from_offset=d.offset)
    assert m.json() == value


def test_records_the_broker_refuses_are_counted_as_not_confirmed(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    own = MockCluster()  # its own cluster: injected errors must not leak into other tests
    try:
        with _open(own, monkeypatch, tmp_path) as log:
            log.create_topic("t")
            own.fail_produce_requests(20, 29)  # TOPIC_AUTHORIZATION_FAILED: not retriable
            with pytest.raises(BackendUnavailableError,
                               match=r"3 of 3 records were not confirmed"):
                log.produce("t", [b"a", b"b", b"c"])
    finally:
        own.close()


def test_a_broker_lost_mid_run_is_a_clear_error_not_a_hang(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    own = MockCluster()
    try:
        with _open(own, monkeypatch, tmp_path) as log:
            log.create_topic("t")
            log.produce("t", [b"before"])  # the default timeout: a loaded machine still confirms it
            log.timeout = 1.0  # now bound the wait for the records the lost broker cannot take
            own.broker_down()
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="2 of 2 records were not "
                               "confirmed") as e:
                log.produce("t", [b"x", b"y"])
            with pytest.raises(BackendUnavailableError):
                log.consume("t", "g")
            assert time.monotonic() - started < 8
            assert "TARMAC_KAFKA_" in (e.value.hint or "")
    finally:
        own.close()


def test_a_broker_that_is_down_is_a_clear_error_within_seconds(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as e:
        KafkaStreamLog.from_url(f"kafka://127.0.0.1:{port}", root=tmp_path, environ={},
                                timeout=1.5)
    assert time.monotonic() - started < 6
    assert f"127.0.0.1:{port}" in e.value.message and "TARMAC_KAFKA_" in (e.value.hint or "")


def test_urls_and_settings_from_the_environment(tmp_path: Path) -> None:
    env = {"TARMAC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TARMAC_KAFKA_SASL_USERNAME": "u",
           "TARMAC_KAFKA_TIMEOUT": "3", "KAFKA_OTHER": "x"}
    assert settings_from_env(env) == {"security.protocol": "SASL_SSL", "sasl.username": "u"}
    with pytest.raises(ConfigError, match="no.such.setting"):
        KafkaStreamLog.from_url("kafka://127.0.0.1:1", root=tmp_path,
                                environ={"TARMAC_KAFKA_NO_SUCH_SETTING": "x"})
    for bad in ("kafka://", "kafka://host", "kafka://h:1,nope"):
        with pytest.raises(ConfigError, match="expected kafka://host:port"):
            KafkaStreamLog.from_url(bad, root=tmp_path, environ={})




def test_a_project_with_a_kafka_url_opens_this_log(cluster: MockCluster, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import tarmac

    for name in [n for n in os.environ if n.startswith("TARMAC_KAFKA_")]:
        monkeypatch.delenv(name)
    (tmp_path / "tarmac.yaml").write_text(f"name: acme\nstreams: kafka://{cluster.bootstrap}\n")
    with tarmac.open(tmp_path) as p:
        assert isinstance(p.streams, KafkaStreamLog)
        assert p.streams.url == f"kafka://{cluster.bootstrap}"
        p.streams.topics()


def test_the_mock_cluster_opens_a_log_that_creates_topics_on_it(
        cluster: MockCluster, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """``MockCluster.open_log`` (what the benchmark uses): topics made through the mock API,
    the rest the real client."""
    t = _name(request)
    with cluster.open_log(root=tmp_path, environ={}, timeout=5) as log:
        assert log.url == cluster.url
        log.create_topic(t, partitions=3)
        delivered = log.produce(t, [{"n": i} for i in range(6)], key="n")
        assert log.topic(t).partitions == 3 and len(delivered) == 6
        assert sorted(m.json()["n"] for m in log.consume(t, "g", max_records=10)) == \
            list(range(6))
