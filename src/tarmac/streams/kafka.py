"""The Kafka backend of the stream log: Apache Kafka through confluent-kafka (librdkafka).

``streams: kafka://host:9092[,host2:9092]`` in ``tarmac.yaml``. confluent-kafka is imported
only when this module is (the registry imports it when a ``kafka://`` log is opened), so
``import tarmac`` never loads it.

Client settings beyond the bootstrap servers come from the environment: every variable
``TARMAC_KAFKA_<SETTING>`` becomes the librdkafka setting ``<setting>`` lower-cased with
``_`` -> ``.`` (``TARMAC_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` -> ``security.protocol``,
``TARMAC_KAFKA_SASL_USERNAME`` -> ``sasl.username``, ``TARMAC_KAFKA_SSL_CA_LOCATION`` ->
``ssl.ca.location``). Secrets therefore never sit in ``tarmac.yaml``.

Mapping onto Kafka:

- topics are created with the AdminClient (partitions, replication factor, retention as the
  topic config ``retention.ms``); ``topics()`` reads the partitions from the cluster metadata,
  the retention with DescribeConfigs and the offsets with the watermarks.
- produce: one idempotent Producer (``enable.idempotence=true``, ``acks=all``), records queued
  then ``flush``ed; each delivery report gives the (partition, offset) of its record. Keyed
  records are placed by librdkafka's ``consistent_random`` partitioner, i.e. CRC32 of the key
  modulo the partition count, the same partition ``partition_for`` (and the embedded log)
  gives; records without a key go to a random partition. ``TARMAC_KAFKA_PARTITIONER=
  murmur2_random`` switches to the Java client's partitioner when other producers share the
  topic. A record whose delivery is not confirmed raises ``BackendUnavailableError`` saying
  how many records were not confirmed (the others were written: Kafka batches are not atomic
  across partitions).
- consumer groups: one Consumer per group with ``enable.auto.commit=false``; partitions are
  *assigned* (not subscribed): the group's position starts at its committed offset, or at the
  earliest record held, and ``commit`` stores explicit offsets in the group. Group membership
  with rebalancing between several runners comes with the runner.
- ``read`` assigns one partition to a private consumer (nothing committed); reads by time use
  ``offsets_for_times``; ``end_offsets`` are the high watermarks.
- retention is the broker's job (``retention.ms``): ``apply_retention`` deletes nothing and
  returns 0.

A broker that cannot be reached raises ``BackendUnavailableError`` after ``timeout`` seconds
(default 10; ``TARMAC_KAFKA_TIMEOUT``), never a hang.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from tarmac.errors import BackendUnavailableError, ConfigError, UsageError
from tarmac.streams.log import (
    Delivered,
    KeyOf,
    Message,
    PartitionReader,
    Produced,
    StreamLog,
    TopicInfo,
    as_retention,
    from_us,
    to_us,
)

ENV_PREFIX = "TARMAC_KAFKA_"
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9._\[\]:-]+:\d{1,5}$")
_HINT = ("is the broker running and reachable at {servers}? security settings (SASL/TLS) come "
         "from TARMAC_KAFKA_* variables, e.g. TARMAC_KAFKA_SECURITY_PROTOCOL")


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """librdkafka settings from ``TARMAC_KAFKA_<SETTING>`` variables (``_`` -> ``.``,
    lower-cased); ``TARMAC_KAFKA_TIMEOUT`` is Tarmac's own and is left out."""
    env = os.environ if environ is None else environ
    out = {}
    for name, value in env.items():
        if name.startswith(ENV_PREFIX) and name != ENV_PREFIX + "TIMEOUT":
            out[name[len(ENV_PREFIX):].lower().replace("_", ".")] = value
    return out


def _ms(when: datetime) -> int:
    return to_us(when) // 1000


class KafkaStreamLog(StreamLog):
    """The stream log on an Apache Kafka cluster (see the module docstring for the mapping)."""

    @classmethod
    def from_url(cls, url: str, *, root: Path, namespace: str | None = None,
                 environ: Mapping[str, str] | None = None,
                 timeout: float | None = None, replication_factor: int = 1,
                 **settings: Any) -> KafkaStreamLog:
        """``kafka://host:9092[,host2:9092]``; ``root`` (the project folder) and ``namespace``
        (the project name) are unused: a cluster's topics are named as they are.
        Settings: ``TARMAC_KAFKA_*`` from the environment, then ``settings`` (librdkafka names
        with ``_`` for ``.``)."""
        servers = url[len("kafka://"):] if url.startswith("kafka://") else ""
        hosts = [h.strip() for h in servers.split(",") if h.strip()]
        if not hosts or not all(_HOST_PORT.match(h) for h in hosts):
            raise ConfigError(f"streams URL {url!r}: expected kafka://host:port[,host:port]",
                              hint="fix streams in tarmac.yaml, e.g. kafka://broker:9092")
        env = os.environ if environ is None else environ
        if timeout is None:
            try:
                timeout = float(env.get(ENV_PREFIX + "TIMEOUT", "10"))
            except ValueError:
                raise ConfigError(f"{ENV_PREFIX}TIMEOUT={env[ENV_PREFIX + 'TIMEOUT']!r}: "
                                  "expected seconds") from None
        conf = settings_from_env(env)
        conf.update({k.replace("_", "."): str(v) for k, v in settings.items()})
        return cls(",".join(hosts), conf=conf, timeout=timeout,
                   replication_factor=replication_factor)

    def __init__(self, bootstrap_servers: str, *, conf: Mapping[str, str] | None = None,
                 timeout: float = 10.0, replication_factor: int = 1) -> None:
        self.url = f"kafka://{bootstrap_servers}"
        self.servers = bootstrap_servers
        self.timeout = float(timeout)
        self.replication_factor = replication_factor
        self._conf: dict[str, Any] = {**(conf or {}), "bootstrap.servers": bootstrap_servers}
        self._lock = threading.RLock()
        self._closed = False
        self._producer: Producer | None = None
        self._consumers: dict[str, Consumer] = {}
        self._assigned: dict[str, dict[tuple[str, int], int]] = {}  # group -> fetch positions
        self._positions: dict[tuple[str, str, int], int] = {}  # (group, topic, partition)
        self._partitions: dict[str, int] = {}
        try:
            self._admin = AdminClient(dict(self._conf))
        except KafkaException as exc:
            raise ConfigError(f"Kafka client settings: {self._unavailable(exc).message}",
                              hint="check the TARMAC_KAFKA_* variables (TARMAC_KAFKA_<SETTING> "
                                   "-> librdkafka setting, '_' -> '.')") from None
        self._metadata_consumer = self._consumer(f"tarmac-meta-{uuid.uuid4().hex[:12]}")
        self._list_topics()  # reachable now, or a clear error after ``timeout``

    # --- clients -------------------------------------------------------------------------------
    def _unavailable(self, exc: BaseException | KafkaError | str,
                     note: str = "") -> BackendUnavailableError:
        detail = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
        if isinstance(detail, KafkaError):
            detail = detail.str()
        return BackendUnavailableError(f"Kafka at {self.servers}: {detail}{note}",
                                       hint=_HINT.format(servers=self.servers))

    def _consumer(self, group: str) -> Consumer:
        conf = {**self._conf, "group.id": group, "enable.auto.commit": False,
                "auto.offset.reset": "earliest", "enable.partition.eof": False}
        conf.pop("partitioner", None)
        conf.pop("enable.idempotence", None)
        try:
            return Consumer(conf)
        except KafkaException as exc:
            raise ConfigError(f"Kafka consumer settings: {exc}",
                              hint="check the TARMAC_KAFKA_* variables") from None

    def _group_consumer(self, group: str) -> Consumer:
        self._check_open()
        if not isinstance(group, str) or not group:
            raise UsageError(f"bad consumer group {group!r}", hint="a non-empty name")
        if group not in self._consumers:
            self._consumers[group] = self._consumer(group)
            self._assigned[group] = {}
        return self._consumers[group]

    def _get_producer(self) -> Producer:
        self._check_open()
        if self._producer is None:
            conf = {"partitioner": "consistent_random", "enable.idempotence": True,
                    "acks": "all", "linger.ms": 5,
                    "message.timeout.ms": max(1000, int(self.timeout * 1000)), **self._conf}
            try:
                self._producer = Producer(conf)
            except KafkaException as exc:
                raise ConfigError(f"Kafka producer settings: {exc}",
                                  hint="check the TARMAC_KAFKA_* variables") from None
        return self._producer

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError(f"stream log {self.url} is closed",
                             hint="open it again (tarmac.open(...).streams)")

    def _list_topics(self) -> dict[str, int]:
        """topic -> partition count, internal topics (``__...``) left out."""
        self._check_open()
        try:
            md = self._admin.list_topics(timeout=self.timeout)
        except KafkaException as exc:
            raise self._unavailable(exc, f" (no answer within {self.timeout:g} s)") from None
        out = {name: len(t.partitions) for name, t in md.topics.items()
               if not name.startswith("__") and t.error is None}
        self._partitions.update(out)
        return out

    # --- topics --------------------------------------------------------------------------------
    def create_topic(self, name: str, partitions: int = 1,
                     retention: timedelta | float | str | None = None, *,
                     exist_ok: bool = False) -> TopicInfo:
        if not isinstance(name, str) or not _TOPIC_NAME.match(name) or name in (".", ".."):
            raise UsageError(f"bad topic name {name!r}",
                             hint="letters, digits, '.', '_' and '-', up to 249 characters")
        if not isinstance(partitions, int) or partitions < 1:
            raise UsageError(f"topic {name!r}: bad partition count {partitions!r}",
                             hint="1 or more")
        keep = as_retention(retention)
        existing = self._list_topics()
        if name in existing:
            if not exist_ok:
                raise UsageError(f"topic {name!r} exists already ({existing[name]} partitions)")
            if existing[name] != partitions:
                raise UsageError(f"topic {name!r} exists with {existing[name]} partitions, not "
                                 f"{partitions}", hint="partition counts are fixed")
            return self.topic(name)
        config = {"retention.ms": str(int(keep.total_seconds() * 1000)) if keep else "-1"}
        self._create_on_broker(name, partitions, config)
        deadline = time.monotonic() + self.timeout
        while name not in self._list_topics():  # metadata catches up with the controller
            if time.monotonic() > deadline:
                raise self._unavailable(f"topic {name!r} was created but does not show in the "
                                        "metadata yet")
            time.sleep(0.05)
        return self.topic(name)

    def _create_on_broker(self, name: str, partitions: int, config: dict[str, str]) -> None:
        """CreateTopics through the AdminClient (the seam the mock-cluster tests replace: the
        mock broker has no CreateTopics handler)."""
        new = NewTopic(name, num_partitions=partitions,
                       replication_factor=self.replication_factor, config=config)
        futures = self._admin.create_topics([new], request_timeout=self.timeout,
                                            operation_timeout=self.timeout)
        try:
            futures[name].result(timeout=self.timeout + 5)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                raise UsageError(f"topic {name!r} exists already") from None
            if isinstance(err, KafkaError) and err.code() in (
                    KafkaError.INVALID_PARTITIONS, KafkaError.INVALID_REPLICATION_FACTOR,
                    KafkaError.INVALID_CONFIG, KafkaError.POLICY_VIOLATION):
                raise UsageError(f"topic {name!r}: the broker refused it ({err.str()})") \
                    from None
            raise self._unavailable(exc, f"; topic {name!r} not created") from None
        except TimeoutError:
            raise self._unavailable("no answer to CreateTopics",
                                    f"; topic {name!r} may not exist") from None

    def _retentions(self, names: Sequence[str]) -> dict[str, timedelta | None]:
        """``retention.ms`` per topic (None: forever, or a broker without DescribeConfigs)."""
        if not names:
            return {}
        out: dict[str, timedelta | None] = dict.fromkeys(names)
        try:
            futures = self._admin.describe_configs(
                [ConfigResource("topic", n) for n in names], request_timeout=self.timeout)
            for resource, future in futures.items():
                entry = future.result(timeout=self.timeout + 5).get("retention.ms")
                if entry is not None and entry.value not in (None, "-1"):
                    out[resource.name] = timedelta(milliseconds=int(entry.value))
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, KafkaError)
                    and err.code() == KafkaError._UNSUPPORTED_FEATURE):
                raise self._unavailable(exc) from None
        return out

    def topics(self) -> list[TopicInfo]:
        found = self._list_topics()
        names = sorted(found)
        retention = self._retentions(names)
        out = []
        for name in names:
            bounds = [self._watermarks(name, p) for p in range(found[name])]
            out.append(TopicInfo(name, found[name], retention[name],
                                 end_offsets=[hi for _, hi in bounds],
                                 start_offsets=[lo for lo, _ in bounds]))
        return out

    def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            known = self._list_topics()
            if topic not in known:
                raise self._unknown_topic(topic, known)
            count = known[topic]
        return count

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        try:
            lo, hi = self._metadata_consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=self.timeout, cached=False)
        except KafkaException as exc:
            raise self._unavailable(exc) from None
        return int(lo), int(hi)

    _bounds = _watermarks  # (first offset held, next offset): the partition's watermarks

    def end_offsets(self, topic: str) -> list[int]:
        return [self._watermarks(topic, p)[1] for p in range(self._partition_count(topic))]

    # --- produce -------------------------------------------------------------------------------
    def produce(self, topic: str, records: Sequence[Produced], *, key: KeyOf = None,
                timestamp: datetime | None = None) -> list[Delivered]:
        self._partition_count(topic)
        encoded = self._encode(records, key, timestamp)
        if not encoded:
            return []
        producer = self._get_producer()
        reports: list[tuple[int, int] | None] = [None] * len(encoded)
        errors: list[str] = []

        def report(i: int) -> Any:
            def on_delivery(err: KafkaError | None, msg: Any) -> None:
                if err is None:
                    reports[i] = (msg.partition(), msg.offset())
                else:
                    errors.append(err.str())
            return on_delivery

        with self._lock:
            for i, (k, value, ts) in enumerate(encoded):
                kwargs: dict[str, Any] = {"key": k, "value": value, "on_delivery": report(i)}
                if ts is not None:
                    kwargs["timestamp"] = _ms(ts)
                while True:
                    try:
                        producer.produce(topic, **kwargs)
                        break
                    except BufferError:  # the local queue is full: let deliveries drain
                        producer.poll(0.1)
                    except KafkaException as exc:
                        raise self._unavailable(exc, f"; {len(encoded) - i} of {len(encoded)} "
                                                "records not queued") from None
                producer.poll(0)
            left = producer.flush(self.timeout + 1)
        missing = sum(r is None for r in reports)
        if missing:
            why = errors[0] if errors else f"{left} still queued after {self.timeout:g} s"
            raise self._unavailable(f"{missing} of {len(encoded)} records were not confirmed "
                                    f"({why})", "; the confirmed ones were written")
        return [Delivered(topic, p, o) for p, o in reports]  # type: ignore[misc]

    # --- reads ---------------------------------------------------------------------------------
    def _message(self, msg: Any) -> Message:
        _, ms = msg.timestamp()
        return Message(msg.topic(), msg.partition(), msg.offset(), msg.key(),
                       msg.value() or b"", from_us(max(ms, 0) * 1000))

    def _fetch(self, consumer: Consumer, wanted: dict[tuple[str, int], int],
               ends: dict[tuple[str, int], int], limit: int, deadline: float,
               any_will_do: bool = False) -> list[Message]:
        """Messages of the assigned partitions until ``limit``, every partition at its end
        (``ends``), or ``deadline``; ``wanted`` (the next offset per partition) advances."""
        out: list[Message] = []
        while len(out) < limit and any(wanted[tp] < ends[tp] for tp in wanted) \
                and not (any_will_do and out):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch = consumer.consume(num_messages=min(limit - len(out), 10_000),
                                         timeout=min(remaining, 0.05))
            except KafkaException as exc:
                raise self._unavailable(exc) from None
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise self._unavailable(err.str())
                tp = (msg.topic(), msg.partition())
                offset = msg.offset()
                if tp not in wanted or offset is None or offset < wanted[tp] \
                        or len(out) >= limit:
                    continue
                out.append(self._message(msg))
                wanted[tp] = offset + 1
        return out

    def read(self, topic: str, partition: int, *, from_offset: int | None = None,
             from_time: datetime | None = None, limit: int = 1000) -> list[Message]:
        start, end = self._read_bounds(topic, partition, from_offset, from_time, limit)
        consumer = self._consumer(f"tarmac-read-{uuid.uuid4().hex[:12]}")  # commits nothing
        try:
            if from_time is not None:
                found = self._offset_for_time(consumer, topic, partition, _ms(from_time))
                if found is None:
                    return []
                offset = max(found, start)
            elif from_offset is None:
                offset = start
            else:
                if not isinstance(from_offset, int) or from_offset < 0 or from_offset > end:
                    raise UsageError(f"topic {topic!r} partition {partition}: bad offset "
                                     f"{from_offset!r}", hint=f"offsets held now are "
                                     f"{start}..{end - 1}; {end} is the next one to be written")
                if from_offset < start:
                    raise UsageError(f"topic {topic!r} partition {partition}: offset "
                                     f"{from_offset} was deleted by retention",
                                     hint=f"the earliest offset held is {start}")
                offset = from_offset
            if limit == 0 or offset >= end:
                return []
            consumer.assign([TopicPartition(topic, partition, offset)])
            return self._fetch(consumer, {(topic, partition): offset}, {(topic, partition): end},
                               limit, time.monotonic() + self.timeout)
        finally:
            consumer.close()

    def _offset_for_time(self, consumer: Consumer, topic: str, partition: int,
                         ms: int) -> int | None:
        """The first offset whose timestamp is at or after ``ms`` (ListOffsets by time; None:
        no such record yet)."""
        try:
            [found] = consumer.offsets_for_times([TopicPartition(topic, partition, ms)],
                                                 timeout=self.timeout)
        except KafkaException as exc:
            raise self._unavailable(exc) from None
        if found.error is not None:
            raise self._unavailable(found.error)
        return None if found.offset < 0 else int(found.offset)

    # --- consumer groups -----------------------------------------------------------------------
    def consume(self, topic: str, group: str, *, max_records: int = 500,
                timeout: float = 0.0) -> list[Message]:
        count = self._partition_count(topic)
        if not isinstance(max_records, int) or max_records < 1:
            raise UsageError(f"consume: bad max_records {max_records!r}", hint="a count >= 1")
        consumer = self._group_consumer(group)
        with self._lock:
            tps = [(topic, p) for p in range(count)]
            stored: dict[int, int] = {}
            if any((group, t, p) not in self._positions for t, p in tps):
                stored = self.committed(group, topic)
            wanted: dict[tuple[str, int], int] = {}
            ends: dict[tuple[str, int], int] = {}
            for t, p in tps:
                lo, hi = self._watermarks(t, p)
                pos = self._positions.get((group, t, p), stored.get(p, lo))
                wanted[(t, p)] = max(pos, lo)
                ends[(t, p)] = hi
            assigned = self._assigned[group]
            if any(assigned.get(tp) != wanted[tp] for tp in tps):
                assigned.update(wanted)
                try:
                    consumer.assign([TopicPartition(t, p, o if o >= 0 else OFFSET_BEGINNING)
                                     for (t, p), o in assigned.items()])
                except KafkaException as exc:
                    raise self._unavailable(exc) from None
            start = time.monotonic()
            # what is in the log now is fetched (bounded by the client timeout); with
            # ``timeout`` we wait that long for records beyond it
            deadline = start + self.timeout
            out = self._fetch(consumer, wanted, ends, max_records, deadline)
            if not out and timeout > 0:
                far = {tp: wanted[tp] + 1 for tp in wanted}
                out = self._fetch(consumer, wanted, far, max_records, start + timeout,
                                  any_will_do=True)
            for (t, p), o in wanted.items():
                self._positions[(group, t, p)] = o
                assigned[(t, p)] = o
        return out

    def commit(self, group: str,
               offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        consumer = self._group_consumer(group)
        tps = [TopicPartition(t, p, o) for t, p, o in self._commits(group, offsets)]
        if not tps:
            return
        try:
            result = consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            raise self._unavailable(exc, "; the offsets may not be committed") from None
        for tp in result or []:
            if tp.error is not None:
                raise self._unavailable(tp.error, "; the offsets may not be committed")
        for tp in tps:
            self._positions[(group, tp.topic, tp.partition)] = tp.offset

    def committed(self, group: str, topic: str) -> dict[int, int]:
        count = self._partition_count(topic)
        consumer = self._group_consumer(group)
        try:
            got = consumer.committed([TopicPartition(topic, p) for p in range(count)],
                                     timeout=self.timeout)
        except KafkaException as exc:
            raise self._unavailable(exc) from None
        return {tp.partition: tp.offset for tp in got if tp.offset >= 0}

    def seek(self, group: str, topic: str, partition: int, offset: int) -> None:
        self._group_consumer(group)
        self._check_partition(topic, partition)
        start, end = self._watermarks(topic, partition)
        if not isinstance(offset, int) or offset < start or offset > end:
            raise UsageError(f"topic {topic!r} partition {partition}: bad offset {offset!r}",
                             hint=f"offsets held now are {start}..{end - 1}; {end} is the "
                                  "next one to be written")
        self._positions[(group, topic, partition)] = offset

    def reader(self, topic: str, positions: Mapping[int, int]) -> PartitionReader:
        """One consumer assigned to the partitions at their offsets (no group membership:
        the sink's positions live in the lake), fetching continuously."""
        self._partition_count(topic)
        return _KafkaReader(self, topic, positions)

    # --- maintenance ---------------------------------------------------------------------------
    def apply_retention(self, now: datetime | None = None) -> int:
        """Nothing to do: the brokers delete old segments by the topics' ``retention.ms``."""
        return 0

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._producer is not None:
                self._producer.flush(self.timeout)
                self._producer = None
            for consumer in [*self._consumers.values(), self._metadata_consumer]:
                with contextlib.suppress(KafkaException, RuntimeError):
                    consumer.close()
            self._consumers.clear()


class _KafkaReader(PartitionReader):
    """A ``PartitionReader`` over one assigned consumer (``incremental_assign``)."""

    def __init__(self, log: KafkaStreamLog, topic: str, positions: Mapping[int, int]) -> None:
        super().__init__(log, topic, {})
        self.kafka = log
        self.consumer = log._consumer(f"tarmac-sink-{uuid.uuid4().hex[:12]}")
        for p, o in positions.items():
            self.seek(p, o)

    def seek(self, partition: int, offset: int) -> None:
        tp = TopicPartition(self.topic, partition, offset)
        try:
            if partition in self.positions:
                self.consumer.incremental_unassign([TopicPartition(self.topic, partition)])
            self.consumer.incremental_assign([tp])
        except KafkaException as exc:
            raise self.kafka._unavailable(exc) from None
        self.positions[partition] = offset

    def release(self, partition: int) -> None:
        if partition in self.positions:
            with contextlib.suppress(KafkaException):
                self.consumer.incremental_unassign([TopicPartition(self.topic, partition)])
        super().release(partition)

    def poll(self, max_records: int, timeout: float = 0.0) -> list[Message]:
        if not self.positions:
            return []
        deadline = time.monotonic() + timeout
        out: list[Message] = []
        while len(out) < max_records:
            remaining = deadline - time.monotonic()
            try:
                batch = self.consumer.consume(num_messages=min(max_records - len(out), 10_000),
                                              timeout=max(0.0, min(remaining, 0.1)) if not out
                                              else 0)
            except KafkaException as exc:
                raise self.kafka._unavailable(exc) from None
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise self.kafka._unavailable(err.str())
                p, offset = msg.partition(), msg.offset()
                if p not in self.positions or offset is None or offset < self.positions[p]:
                    continue  # a fetch from before a seek or a release
                out.append(self.kafka._message(msg))
                self.positions[p] = offset + 1
            if not batch and (out or time.monotonic() >= deadline):
                break
        return out

    def close(self) -> None:
        with contextlib.suppress(KafkaException, RuntimeError):
            self.consumer.close()
        super().close()


__all__ = ["KafkaStreamLog", "settings_from_env"]
