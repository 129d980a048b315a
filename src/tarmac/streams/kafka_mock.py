"""librdkafka's built-in mock cluster, driven through its C API: a real Kafka protocol endpoint
in-process, no broker to install (the tests and ``benchmarks/bench_streams.py`` run the Kafka
log against it).

A client configured with ``test.mock.num.brokers`` hides a private mock cluster inside that one
client, but ``KafkaStreamLog`` opens several clients (AdminClient, Producer, Consumers) that
must share one cluster. So ``MockCluster`` creates the cluster itself
(``rd_kafka_mock_cluster_new`` on a bare handle, via ctypes on the librdkafka bundled in the
confluent-kafka wheel) and hands out its bootstrap address, which the log reaches like any
broker (``kafka://127.0.0.1:<port>``).

What the mock cannot do: it has no CreateTopics or DescribeConfigs handler, so ``open_log``
gives a log whose topic creation goes through ``rd_kafka_mock_topic_create`` (the log's
``_create_on_broker`` seam); everything else is the real client against the mock broker.

Example::

    with MockCluster() as cluster:
        log = cluster.open_log(root=Path("."))
        log.create_topic("clicks", partitions=4)
"""

from __future__ import annotations

import ctypes
import glob
import os
from pathlib import Path
from types import MethodType, TracebackType
from typing import Any

from tarmac.errors import BackendUnavailableError


class MockCluster:
    """A librdkafka mock cluster owned by this object; ``close`` (or ``with``) destroys it."""

    def __init__(self, brokers: int = 1) -> None:
        try:
            import confluent_kafka
        except ModuleNotFoundError:
            raise BackendUnavailableError("the Kafka mock cluster needs confluent-kafka",
                                          hint="pip install 'tarmac[kafka]'") from None
        libs = os.path.join(os.path.dirname(confluent_kafka.__file__), "..",
                            "confluent_kafka.libs")
        found = sorted(glob.glob(os.path.join(libs, "librdkafka*.so*")))
        if not found:
            raise BackendUnavailableError(
                "no librdkafka bundled with confluent-kafka to drive the mock cluster with",
                hint="a confluent-kafka wheel (not a build against a system librdkafka)")
        lib = self.lib = ctypes.CDLL(found[0])
        lib.rd_kafka_conf_new.restype = ctypes.c_void_p
        lib.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                          ctypes.c_char_p, ctypes.c_size_t]
        lib.rd_kafka_new.restype = ctypes.c_void_p
        lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                                     ctypes.c_size_t]
        lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
        lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.rd_kafka_mock_cluster_destroy.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
        lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_mock_topic_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                                   ctypes.c_int, ctypes.c_int]
        lib.rd_kafka_mock_set_controller_id.argtypes = [ctypes.c_void_p, ctypes.c_int]
        errstr = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        lib.rd_kafka_conf_set(conf, b"log_level", b"0", errstr, 512)
        self.rk = lib.rd_kafka_new(0, conf, errstr, 512)
        self.cluster = lib.rd_kafka_mock_cluster_new(self.rk, brokers)
        lib.rd_kafka_mock_set_controller_id(self.cluster, 1)  # admin requests need one
        self.bootstrap: str = lib.rd_kafka_mock_cluster_bootstraps(self.cluster).decode()

    @property
    def url(self) -> str:
        """The cluster as a ``streams:`` URL."""
        return f"kafka://{self.bootstrap}"

    def create_topic(self, name: str, partitions: int,
                     config: dict[str, str] | None = None) -> None:
        """Create a topic on the mock broker (its stand-in for CreateTopics; ``config`` is
        ignored: the mock keeps no topic configs)."""
        err = self.lib.rd_kafka_mock_topic_create(self.cluster, name.encode(), partitions, 1)
        if err != 0:
            raise BackendUnavailableError(f"the mock cluster refused to create topic {name!r} "
                                          f"(librdkafka error {err})")

    def open_log(self, *, root: Path, **kwargs: Any) -> Any:
        """A ``KafkaStreamLog`` on this cluster whose ``create_topic`` goes through the mock
        API (``kwargs``: ``from_url``'s, e.g. ``timeout``, ``environ``)."""
        from tarmac.streams.kafka import KafkaStreamLog

        log = KafkaStreamLog.from_url(self.url, root=root, **kwargs)
        log._create_on_broker = MethodType(  # type: ignore[method-assign]
            lambda _self, name, partitions, config: self.create_topic(name, partitions,
                                                                      config), log)
        return log

    def fail_produce_requests(self, count: int, error: int) -> None:
        """The next ``count`` Produce requests (ApiKey 0) get ``error`` from the broker."""
        self.lib.rd_kafka_mock_push_request_errors(
            ctypes.c_void_p(self.cluster), ctypes.c_int16(0), ctypes.c_size_t(count),
            *[ctypes.c_int(error)] * count)

    def broker_down(self, down: bool = True) -> None:
        """Take broker 1 down (or bring it back up)."""
        fn = self.lib.rd_kafka_mock_broker_set_down if down else \
            self.lib.rd_kafka_mock_broker_set_up
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int32]
        if fn(self.cluster, 1) != 0:
            raise BackendUnavailableError("the mock cluster has no broker 1")

    def close(self) -> None:
        self.lib.rd_kafka_mock_cluster_destroy(self.cluster)
        self.lib.rd_kafka_destroy(self.rk)

    def __enter__(self) -> MockCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


__all__ = ["MockCluster"]
