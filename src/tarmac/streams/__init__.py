"""Streams: one log interface (``StreamLog``) and its backends.

Chosen by the ``streams:`` URL of ``tarmac.yaml`` through the backend registry; ``embedded``
(the default) is a durable log in one SQLite file of the project folder, needing no server;
``redis://host:port/db`` is Redis Streams (``tarmac.streams.redis``); ``kafka://host:9092`` is
Apache Kafka (``tarmac.streams.kafka``). ``Producer`` (``tarmac.streams.produce``, what
``p.produce`` uses) checks records against the contract of the stream source declared over a
topic before they enter the log. ``tarmac.streams.sink`` commits a stream source's messages
to its lake table exactly once, ``tarmac.streams.runner`` runs sinks (``tarmac stream run``),
and ``tarmac.streams.windows`` computes windowed aggregates incrementally (docs/streams.md).

Example::

    log = tarmac.open(".").streams
    log.create_topic("clicks", partitions=4, retention="7d", exist_ok=True)
    log.produce("clicks", [{"user": "u1", "page": "/"}], key="user")  # [Delivered(...)]
    msgs = log.consume("clicks", "my-app", max_records=100, timeout=1.0)
    log.commit("my-app")                                  # the positions consume reached
    p.produce("clicks", [{"event_id": "e1", "user_id": 7}])   # checked by the source's contract
"""

from typing import Any

from tarmac.streams.jsonl import parse_jsonl
from tarmac.streams.log import (
    JSON,
    Delivered,
    JsonSerializer,
    Message,
    PartitionReader,
    Record,
    Serializer,
    StreamLog,
    TopicInfo,
    decode_json,
    encode_json,
    open_stream_log,
    partition_for,
)

# the checked producer imports the contract code (pyarrow, pandas): loaded on first use
_PRODUCE = ("ProduceResult", "Producer", "RecordProblem", "RecordsRefused")


def __getattr__(name: str) -> Any:
    if name in _PRODUCE:
        from tarmac.streams import produce

        return getattr(produce, name)
    raise AttributeError(f"module 'tarmac.streams' has no attribute {name!r}")


__all__ = ["JSON", "Delivered", "JsonSerializer", "Message", "PartitionReader", "ProduceResult",
           "Producer", "Record", "RecordProblem", "RecordsRefused", "Serializer", "StreamLog",
           "TopicInfo", "decode_json", "encode_json", "open_stream_log", "parse_jsonl",
           "partition_for"]
