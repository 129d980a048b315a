"""Streams: one log interface (``StreamLog``) and its backends.

Chosen by the ``streams:`` URL of ``tarmac.yaml`` through the backend registry; ``embedded``
(the default) is a durable log in one SQLite file of the project folder, needing no server;
``redis://host:port/db`` is Redis Streams (``tarmac.streams.redis``); ``kafka://host:9092`` is
Apache Kafka (``tarmac.streams.kafka``). The sink into the lake, windows and the runner come
later (see docs/streams.md).

Example::

    log = tarmac.open(".").streams
    log.create_topic("clicks", partitions=4, retention="7d", exist_ok=True)
    log.produce("clicks", [{"user": "u1", "page": "/"}], key="user")  # [Delivered(...)]
    msgs = log.consume("clicks", "my-app", max_records=100, timeout=1.0)
    log.commit("my-app")                                  # the positions consume reached
"""

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

__all__ = ["JSON", "Delivered", "JsonSerializer", "Message", "PartitionReader", "Record",
           "Serializer", "StreamLog", "TopicInfo", "decode_json", "encode_json", "open_stream_log",
           "parse_jsonl", "partition_for"]
