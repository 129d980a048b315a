"""Stream log throughput per backend: produce (batched, delivery confirmed) and consume, each
against a reference that does the same job with the backend's own client, in the same run.

Events: N JSON objects of about 1 KB (an event id, a user id of 10,000 as the key, a time, a
page, an amount and a text field), produced in batches of B to a topic of 4 partitions.

  embedded produce        EmbeddedLog.produce of the events as pre-encoded Records (value
                          bytes + key): one SQLite transaction per batch, synchronous=FULL
                          (each commit fsynced), what a producer handing JSON bytes gets
  embedded produce dicts  the same events as dicts: the log's JSON encoding included
  ref sqlite insert       sqlite3 executemany of prebuilt (id, ts, key, value) tuples into a
                          row-id table (same page size, WAL, synchronous=FULL, one transaction
                          per batch): the floor for appending these rows to SQLite from Python
  embedded consume        EmbeddedLog.consume by one group from the start to the end, in
                          batches of B (Message objects)
  ref sqlite read         SELECT of the same rows by row-id range, B at a time (tuples)
  redis produce/consume   RedisStreamLog (one Lua script per batch; XRANGE reads), if Redis is
                          reachable at 127.0.0.1:6379 (database 13, a namespace of its own)
  ref redis               redis-py pipelines of XADD (auto ids) and XRANGE of the same events
  kafka produce/consume   KafkaStreamLog on librdkafka's in-process mock cluster (idempotent
                          producer, acks=all, flushed per batch; assigned consumer)
  ref kafka               confluent_kafka Producer (same settings, flushed per batch) and
                          Consumer.consume on the same mock cluster

The inputs are kept out of garbage collection (``gc.freeze``) on both sides: a run holds all
its events in memory, which a real producer or consumer does not. The mock cluster is not a
broker on a network: its figures show the client-side cost of the
Kafka log, not what a real cluster sustains. The goals (embedded produce >= 200,000 events/s
batched, consume >= 500,000 events/s) are issue 14's.

    python benchmarks/bench_streams.py [--rows N] [--batch B] [--quick] [--json]
"""

from __future__ import annotations

import gc
import json
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c  # noqa: E402

PARTITIONS = 4
USERS = 10_000
REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 13
KAFKA_EVENTS = 16_000  # librdkafka's mock keeps about 5 MB per partition, dropping older ones
GOAL_PRODUCE = 200_000
GOAL_CONSUME = 500_000


@dataclass
class Events:
    """The benchmark's events: dicts, their JSON bytes, their keys."""

    dicts: list[dict[str, Any]]
    values: list[bytes]
    keys: list[bytes]

    @property
    def n(self) -> int:
        return len(self.values)

    def records(self) -> list[Any]:
        from tarmac.streams import Record

        return [Record(v, key=k) for v, k in zip(self.values, self.keys, strict=True)]


def make_events(n: int) -> Events:
    pad = "lorem ipsum dolor sit amet " * 34  # ~920 characters: events of about 1 KB
    dicts = [{"event_id": f"e{i:09d}", "user_id": f"u{i % USERS:05d}",
              "ts": f"2026-05-01T10:{(i // 60) % 60:02d}:{i % 60:02d}Z",
              "page": "/product/" + str(i % 977), "amount": round((i % 1000) * 0.37, 2),
              "text": pad} for i in range(n)]
    values = [json.dumps(d, separators=(",", ":")).encode() for d in dicts]
    return Events(dicts, values, [d["user_id"].encode() for d in dicts])


def batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def record(res: c.Result, name: str, events: int, seconds: float, note: str = "") -> float:
    r = rate(events, seconds)
    res.figure(name, round(r), "events/s", note)
    return r


def ratio(res: c.Result, name: str, ours: float, ref: float) -> None:
    res.figure(name, round(ours / ref, 2) if ref else 0.0, "x", "tarmac / reference")


def drain(consume: Callable[[], list[Any]], n: int) -> int:
    """Call ``consume`` until ``n`` records came back (or it comes back empty)."""
    got = 0
    while got < n:
        batch = consume()
        if not batch:
            break
        got += len(batch)
    return got


# -- embedded ------------------------------------------------------------------------------------

ROUNDS = 2  # each embedded case and its reference run this often, alternating; the best counts


class RawSqlite:
    """The reference: plain sqlite3 on a row-id table like the log's (the same page size, WAL,
    synchronous=FULL, one transaction per batch, prebuilt tuples)."""

    def __init__(self, path: Path, ev: Events, batch: int) -> None:
        from tarmac.streams.embedded import PAGE_SIZE
        from tarmac.streams.log import partition_for

        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.batch = batch
        now = time.time_ns() // 1000
        nxt = [0] * PARTITIONS
        rows = []
        for k, v in zip(ev.keys, ev.values, strict=True):
            p = partition_for(k, PARTITIONS)
            rows.append((((p + 1) << 40) | nxt[p], now, k, v))
            nxt[p] += 1
        self.parts = batches(rows, batch)

    def insert(self, table: str) -> None:
        self.conn.execute(f"CREATE TABLE {table}(id INTEGER PRIMARY KEY, ts_us INTEGER NOT "
                          "NULL, key BLOB, value BLOB NOT NULL)")
        for b in self.parts:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?)", b)
            self.conn.execute("COMMIT")

    def read(self, table: str) -> int:
        got = 0
        for p in range(PARTITIONS):
            lo = (p + 1) << 40
            while True:
                fetched = self.conn.execute(
                    f"SELECT id, ts_us, key, value FROM {table} WHERE id >= ? AND id < ? "
                    "ORDER BY id LIMIT ?", (lo, (p + 2) << 40, self.batch)).fetchall()
                if not fetched:
                    break
                got += len(fetched)
                lo = fetched[-1][0] + 1
        return got


def embedded_produce(res: c.Result, log: Any, raw: RawSqlite, ev: Events,
                     batch: int) -> tuple[float, float]:
    """(tarmac, reference) produce rates, the best of ``ROUNDS`` alternating runs."""
    parts = batches(ev.records(), batch)
    ours: list[float] = []
    ref: list[float] = []
    for r in range(ROUNDS):
        log.create_topic(f"events{r}", PARTITIONS)

        def tarmac(r: int = r) -> None:
            c.log(f"embedded: produce {ev.n:,} records in batches of {batch:,}")
            ours.append(c.timed(lambda: [log.produce(f"events{r}", b) for b in parts])[0])

        def reference(r: int = r) -> None:
            c.log("reference: sqlite3 executemany")
            ref.append(c.timed(lambda: raw.insert(f"raw{r}"))[0])

        for run in (tarmac, reference) if r % 2 else (reference, tarmac):
            run()
    note = f"best of {ROUNDS}, batches of {batch:,}"
    return (record(res, "embedded produce", ev.n, min(ours),
                   f"pre-encoded 1 KB JSON, synchronous=FULL; {note}"),
            record(res, "ref sqlite insert", ev.n, min(ref),
                   f"prebuilt tuples, same page size, WAL, synchronous=FULL; {note}"))


def embedded_produce_dicts(res: c.Result, log: Any, ev: Events, batch: int) -> float:
    log.create_topic("dicts", PARTITIONS)
    parts = batches(ev.dicts, batch)
    c.log(f"embedded: produce {ev.n:,} dicts")
    seconds, _ = c.timed(lambda: [log.produce("dicts", b, key="user_id") for b in parts])
    return record(res, "embedded produce dicts", ev.n, seconds,
                  "the same events as dicts: the log's JSON encoding included")


def embedded_consume(res: c.Result, log: Any, raw: RawSqlite, ev: Events,
                     batch: int) -> tuple[float, float]:
    """(tarmac, reference) consume rates of what ``embedded_produce`` wrote."""
    ours: list[float] = []
    ref: list[float] = []
    for r in range(ROUNDS):
        def tarmac(r: int = r) -> None:
            c.log(f"embedded: consume {ev.n:,} records")
            seconds, got = c.timed(lambda: drain(
                lambda: log.consume(f"events{r}", "bench", max_records=batch), ev.n))
            assert got == ev.n, f"consumed {got} of {ev.n}"
            ours.append(seconds)

        def reference(r: int = r) -> None:
            c.log("reference: sqlite3 read")
            seconds, got = c.timed(lambda: raw.read(f"raw{r}"))
            assert got == ev.n
            ref.append(seconds)

        for run in (tarmac, reference) if r % 2 else (reference, tarmac):
            run()
    note = f"best of {ROUNDS}, {batch:,} per call"
    return (record(res, "embedded consume", ev.n, min(ours), f"one group (Messages); {note}"),
            record(res, "ref sqlite read", ev.n, min(ref), f"SELECT by row-id range (tuples); "
                                                            f"{note}"))


def bench_embedded(res: c.Result, work: Path, ev: Events, batch: int) -> None:
    from tarmac.streams.embedded import EmbeddedLog

    log = EmbeddedLog(work / "embedded.db")
    raw = RawSqlite(work / "raw.db", ev, batch)
    try:
        produce, ref_produce = embedded_produce(res, log, raw, ev, batch)
        consume, ref_consume = embedded_consume(res, log, raw, ev, batch)
        embedded_produce_dicts(res, log, ev, batch)
    finally:
        log.close()
        raw.conn.close()
    ratio(res, "embedded produce / ref", produce, ref_produce)
    ratio(res, "embedded consume / ref", consume, ref_consume)
    res.goal("embedded produce, batched", round(produce), "events/s", f">= {GOAL_PRODUCE:,}",
             produce >= GOAL_PRODUCE)
    res.goal("embedded consume", round(consume), "events/s", f">= {GOAL_CONSUME:,}",
             consume >= GOAL_CONSUME)


# -- Redis ---------------------------------------------------------------------------------------


def bench_redis(res: c.Result, work: Path, ev: Events, batch: int) -> None:
    import socket

    try:
        socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1).close()
    except OSError as exc:
        res.figure("redis", "skipped", "", f"not reachable at {REDIS_HOST}:{REDIS_PORT} "
                                           f"({exc})")
        return
    import redis

    from tarmac.streams.redis import RedisStreamLog

    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    log = RedisStreamLog(url, namespace=namespace)
    raw = redis.Redis.from_url(url)
    ref_keys = [f"bench-ref:{namespace}:{p}" for p in range(PARTITIONS)]
    try:
        log.create_topic("events", PARTITIONS)
        parts = batches(ev.records(), batch)
        c.log(f"redis: produce {ev.n:,} records in batches of {batch:,}")
        seconds, _ = c.timed(lambda: [log.produce("events", b) for b in parts])
        produce = record(res, "redis produce", ev.n, seconds, f"one Lua script per batch of "
                                                               f"{batch:,}")
        seconds, got = c.timed(lambda: drain(
            lambda: log.consume("events", "bench", max_records=batch), ev.n))
        assert got == ev.n
        consume = record(res, "redis consume", ev.n, seconds, f"XRANGE, {batch:,} per call")

        from tarmac.streams.log import partition_for

        keyed = [(ref_keys[partition_for(k, PARTITIONS)], k, v)
                 for k, v in zip(ev.keys, ev.values, strict=True)]

        def ref_produce() -> None:
            for b in batches(keyed, batch):
                pipe = raw.pipeline(transaction=True)
                for stream, k, v in b:
                    pipe.xadd(stream, {"k": k, "v": v})
                pipe.execute()

        c.log("reference: redis-py pipelined XADD")
        seconds, _ = c.timed(ref_produce)
        ref_p = record(res, "ref redis XADD", ev.n, seconds, f"MULTI pipelines of {batch:,}")

        def ref_read() -> int:
            got = 0
            for stream in ref_keys:
                start = "-"
                while True:
                    entries = raw.xrange(stream, min=start, count=batch)
                    if not entries:
                        break
                    got += len(entries)
                    last = entries[-1][0].decode()
                    ms, seq = last.split("-")
                    start = f"{ms}-{int(seq) + 1}"
            return got

        seconds, got = c.timed(ref_read)
        assert got == ev.n
        ref_c = record(res, "ref redis XRANGE", ev.n, seconds, f"{batch:,} per call")
        ratio(res, "redis produce / ref", produce, ref_p)
        ratio(res, "redis consume / ref", consume, ref_c)
    finally:
        log.drop_all()
        log.close()
        raw.delete(*ref_keys)
        raw.close()


# -- Kafka (librdkafka's mock cluster) -----------------------------------------------------------


def bench_kafka(res: c.Result, work: Path, ev: Events, batch: int) -> None:
    try:
        from confluent_kafka import Consumer, Producer, TopicPartition

        from tarmac.streams.kafka_mock import MockCluster
    except ImportError as exc:
        res.figure("kafka", "skipped", "", f"confluent-kafka not installed ({exc})")
        return
    if ev.n > KAFKA_EVENTS:  # the mock drops a partition's oldest messages past about 5 MB
        ev = Events(ev.dicts[:KAFKA_EVENTS], ev.values[:KAFKA_EVENTS], ev.keys[:KAFKA_EVENTS])
    res.figure("kafka events", ev.n, "", "the mock keeps about 5 MB per partition: at most "
                                         f"{KAFKA_EVENTS:,} events over {PARTITIONS} partitions")
    with MockCluster() as cluster:
        log = cluster.open_log(root=work, environ={}, timeout=30)
        log.create_topic("events", PARTITIONS)
        log.create_topic("warm-up", 1)
        log.produce("warm-up", [b"x"])  # both sides connect and get a producer id untimed
        parts = batches(ev.records(), batch)
        c.log(f"kafka (mock): produce {ev.n:,} records in batches of {batch:,}")
        seconds, _ = c.timed(lambda: [log.produce("events", b) for b in parts])
        produce = record(res, "kafka produce (mock)", ev.n, seconds,
                         f"idempotent, acks=all, flushed per batch of {batch:,}")
        # both sides' first fetch (connecting, metadata) is a warm-up outside the timing
        first = len(log.consume("events", "bench", max_records=1, timeout=10))
        seconds, got = c.timed(lambda: drain(
            lambda: log.consume("events", "bench", max_records=batch, timeout=5), ev.n - 1))
        assert first + got == ev.n, f"consumed {first + got} of {ev.n}"
        consume = record(res, "kafka consume (mock)", ev.n - 1, seconds,
                         f"{batch:,} per call, after a first fetch of one")
        log.close()

        cluster.create_topic("ref", PARTITIONS)
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "enable.idempotence": True,
                             "acks": "all", "partitioner": "consistent_random",
                             "log_level": 0})
        producer.produce("warm-up", b"x")
        producer.flush(30)
        confirmed = [0]

        def delivered(err: Any, _msg: Any) -> None:
            if err is None:
                confirmed[0] += 1

        def ref_produce() -> None:
            for i in range(0, ev.n, batch):
                for k, v in zip(ev.keys[i:i + batch], ev.values[i:i + batch], strict=True):
                    while True:
                        try:
                            producer.produce("ref", v, key=k, on_delivery=delivered)
                            break
                        except BufferError:
                            producer.poll(0.1)
                    producer.poll(0)
                producer.flush(30)

        c.log("reference: confluent_kafka Producer")
        seconds, _ = c.timed(ref_produce)
        assert confirmed[0] == ev.n, f"confirmed {confirmed[0]} of {ev.n}"
        ref_p = record(res, "ref kafka Producer (mock)", ev.n, seconds, "same settings, "
                                                                         "flushed per batch")
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "ref",
                             "enable.auto.commit": False, "log_level": 0})
        consumer.assign([TopicPartition("ref", p, 0) for p in range(PARTITIONS)])

        def ref_read(n: int, most: int) -> int:
            got = 0
            deadline = time.monotonic() + 120
            while got < n and time.monotonic() < deadline:
                msgs = consumer.consume(num_messages=min(most, n - got), timeout=1)
                got += sum(1 for m in msgs if m.error() is None)
            return got

        first = ref_read(1, 1)
        seconds, got = c.timed(lambda: ref_read(ev.n - 1, batch))
        assert first + got == ev.n, f"the reference consumer read {first + got} of {ev.n}"
        ref_c = record(res, "ref kafka Consumer (mock)", ev.n - 1, seconds,
                       f"consume(num_messages={batch:,}), after a first fetch of one")
        consumer.close()
        ratio(res, "kafka produce / ref", produce, ref_p)
        ratio(res, "kafka consume / ref", consume, ref_c)


# -- the sink into the lake ---------------------------------------------------------------------

GOAL_SINK = 100_000
SINK_SOURCE = """
sources:
  events:
    type: stream
    topic: events
    partitions: 4
    primary_key: event_id
    key: user_id
    timestamp: ts
    allowed_lateness: 30d
    max_future: 3650d
    columns: {ts: timestamp, amount: float}
"""


def bench_sink(res: c.Result, work: Path, ev: Events, batch: int) -> None:
    """``tarmac stream run --once`` of the events from the embedded log into a Delta table
    (decode, contract, lateness, dedup, quarantine, exactly-once commit with offsets, audit),
    against the reference: pyarrow's JSON reader over the same values joined per batch, then
    ``write_deltalake`` of each batch (no log read, no checks, no offsets)."""
    import io

    import pyarrow.json as pajson
    from deltalake import write_deltalake

    import tarmac
    from tarmac.project import scaffold
    from tarmac.streams.runner import StreamRunner

    root = work / "proj"
    scaffold(root, name="bench")
    with open(root / "tarmac.yaml", "a", encoding="utf-8") as f:
        f.write(SINK_SOURCE)
    with tarmac.open(root) as p:
        p.streams.create_topic("events", PARTITIONS)
        for part in batches(ev.records(), batch):
            p.streams.produce("events", part)
        started = time.perf_counter()
        report = StreamRunner(p, ["events"], once=True, max_records=batch * 2).run()["events"]
        ours = time.perf_counter() - started
        if report.rows_loaded != ev.n:
            raise RuntimeError(f"the sink loaded {report.rows_loaded:,} of {ev.n:,} events")
    started = time.perf_counter()
    for part in batches(ev.values, batch * 2):
        table = pajson.read_json(io.BytesIO(b"\n".join(part)))
        write_deltalake(str(work / "reference"), table, mode="append")
    ref = time.perf_counter() - started
    sink = record(res, "sink: stream -> Delta, exactly once", ev.n, ours,
                  f"{report.batches} commits of {batch * 2:,}")
    reference = record(res, "sink reference: parse + write_deltalake", ev.n, ref)
    ratio(res, "sink / ref", sink, reference)
    res.goal("stream -> Delta sink", round(sink), "events/s", f">= {GOAL_SINK:,}",
             sink >= GOAL_SINK)


# -- main ----------------------------------------------------------------------------------------

#: (name, case): each backend's cases, run in this order, each guarded (one failing backend does
#: not lose the others' figures). A later case (the sink into the lake) is one more entry.
CASES: list[tuple[str, Callable[[c.Result, Path, Events, int], None]]] = [
    ("embedded", bench_embedded),
    ("redis", bench_redis),
    ("kafka", bench_kafka),
    ("sink", bench_sink),
]


def main() -> None:
    ap = c.parser(__doc__.splitlines()[0], default_rows=100_000, quick_rows=20_000)
    ap.add_argument("--batch", type=int, default=10_000, help="records per produce call")
    ap.add_argument("--only", default=",".join(n for n, _ in CASES),
                    help="comma-separated subset of " + ",".join(n for n, _ in CASES))
    args = ap.parse_args()
    n = c.rows_for(args)
    wanted = args.only.split(",")
    res = c.Result("streams", events=n, batch=args.batch, partitions=PARTITIONS,
                   src=c.src_fingerprint())
    c.log(f"building {n:,} events")
    ev = make_events(n)
    # the inputs live as long as the run: keep them out of every garbage collection, or each
    # full collection would walk them (hundreds of thousands of objects a real producer or
    # consumer does not hold), on the measured side and the reference's alike
    gc.collect()
    gc.freeze()
    res.figure("event size", round(sum(map(len, ev.values)) / n), "bytes", "JSON, average")
    for name, case in CASES:
        if name in wanted:
            with c.workdir(f"streams-{name}") as work:
                c.guarded(res, name, lambda case=case, work=work: case(res, work, ev,
                                                                       args.batch))
    res.emit(args.json)


if __name__ == "__main__":
    main()
