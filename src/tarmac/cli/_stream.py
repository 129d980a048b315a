"""``tarmac stream``: topics, checked produce, tail, and stream sources into the lake
(``run``, ``status``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tarmac.cli import app, open_project
from tarmac.cli._output import console, emit, print_json
from tarmac.errors import UsageError

if TYPE_CHECKING:
    from tarmac.streams.produce import ProduceResult

stream_app = typer.Typer(help="Stream topics and sources: list, produce (checked), tail, run "
                              "into the lake exactly once, status.", no_args_is_help=True)
app.add_typer(stream_app, name="stream")


@stream_app.command()
def topics(ctx: typer.Context,
           as_json: bool = typer.Option(False, "--json", help="An array of objects.")) -> None:
    """Topics with their partitions, retention and end offsets."""
    p = open_project(ctx)
    rows = [{"topic": t.name, "partitions": t.partitions,
             "retention_s": t.retention.total_seconds() if t.retention else None,
             "records": t.records, "start_offsets": t.start_offsets,
             "end_offsets": t.end_offsets} for t in p.streams.topics()]
    if not as_json:
        for r in rows:
            r["retention"] = "forever" if r["retention_s"] is None else f"{r['retention_s']:g}s"
            r["ends"] = ", ".join(map(str, r["end_offsets"]))
    emit(rows, [("topic", "topic"), ("partitions", "partitions"), ("retention", "retention"),
                ("records", "records"), ("ends", "end offsets")], as_json=as_json,
         empty="no topics yet (tarmac stream produce TOPIC --create --file F.jsonl)")


@stream_app.command()
def produce(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="SOURCE_OR_TOPIC",
                               help="A stream source of tarmac.yaml (or its topic): records "
                                    "are checked against its contract; or any other topic."),
    file: Path | None = typer.Option(None, "--file", "-f", exists=True, dir_okay=False,
                                     help="JSON lines, one record a line (default: stdin)."),
    key: str | None = typer.Option(None, "--key", "-k",
                                   help="The field whose value is each record's key (a "
                                        "declared source's key is its own)."),
    create: bool = typer.Option(False, "--create",
                                help="Create the topic if it is missing (a declared source's "
                                     "topic is created anyway)."),
    partitions: int | None = typer.Option(None, "--partitions", min=1,
                                          help="Partitions of a topic --create makes "
                                               "(default 1; a declared source's own)."),
    as_json: bool = typer.Option(False, "--json", help="Offsets per partition as JSON."),
) -> None:
    """Append the JSON records of FILE (or stdin) in one batch. A line that is not JSON is
    refused with its number; for a stream source, so is every record breaking its contract
    (each line and field named): nothing is produced unless all records are good."""
    from tarmac.streams.jsonl import numbered_jsonl
    from tarmac.streams.produce import Producer

    if file is not None:
        with file.open("rb") as f:
            records, lines = numbered_jsonl(f, source=str(file))
    else:
        records, lines = numbered_jsonl(sys.stdin.buffer, source="stdin")
    p = open_project(ctx)
    producer = Producer(p.streams, p.sources)
    target = producer.target(name)
    if target.declared:
        if partitions is not None and partitions != target.partitions:
            raise UsageError(f"--partitions {partitions}: topic '{target.topic}' of stream "
                             f"source '{target.source}' has {target.partitions} (declared in "
                             "tarmac.yaml)", hint="leave out --partitions")
        result = p.produce(name, records, key=key, numbers=lines)
    else:
        for record, line in zip(records, lines, strict=True):
            if key is not None and not isinstance(record, dict):
                raise UsageError(f"line {line} is not an object, so it has no key {key!r}; "
                                 "nothing was produced")
        if create:
            p.streams.create_topic(name, partitions or 1, exist_ok=True)
        result = p.produce(name, records, key=key)
    _report(result, target.partitions, as_json)


def _report(result: ProduceResult, partitions: int, as_json: bool) -> None:
    rows = result.spans()
    if as_json:
        print_json({"topic": result.topic, "source": result.source, "records": result.count,
                    "created": result.created, "partitions": rows})
        return
    made = f" (created the topic, {partitions} partition(s))" if result.created else ""
    checked = f", checked against stream source '{result.source}'" if result.source else ""
    console.print(f"produced {result.count:,} record(s) to {result.topic}{checked}{made}")
    emit(rows, [("partition", "partition"), ("first_offset", "first offset"),
                ("last_offset", "last offset")], as_json=False, empty="(empty input)")


@stream_app.command()
def tail(
    ctx: typer.Context,
    topic: str = typer.Argument(..., help="The topic to read."),
    from_beginning: bool = typer.Option(False, "--from-beginning",
                                        help="From the earliest record held, not the last."),
    n: int = typer.Option(10, "-n", "--count", min=0, help="How many records."),
    as_json: bool = typer.Option(False, "--json", help="An array of objects."),
) -> None:
    """The last N records of TOPIC (or the first N with --from-beginning), read without
    committing anything."""
    from tarmac.streams import decode_json

    p = open_project(ctx)
    rows = []
    for m in p.streams.tail(topic, n, from_beginning=from_beginning):
        try:
            value: Any = decode_json(m.value)
        except UsageError:
            value = m.value.decode("utf-8", "replace")
        rows.append({"partition": m.partition, "offset": m.offset,
                     "timestamp": m.timestamp.isoformat(),
                     "key": None if m.key is None else m.key.decode("utf-8", "replace"),
                     "value": value})
    if as_json:
        print_json(rows)
        return
    for r in rows:
        r["value"] = _compact(r["value"])
    emit(rows, [("partition", "p"), ("offset", "offset"), ("timestamp", "time"),
                ("key", "key"), ("value", "value")], as_json=False,
         empty=f"topic {topic} holds no records")


def _compact(value: Any) -> str:
    from tarmac.streams import encode_json

    return value if isinstance(value, str) else encode_json(value).decode("utf-8")


@stream_app.command()
def run(
    ctx: typer.Context,
    sources: list[str] = typer.Argument(None, help="Stream sources to run (default: all)."),
    once: bool = typer.Option(False, "--once", help="Process what the log holds now, commit, "
                              "exit (cron, tests)."),
    max_records: int = typer.Option(10_000, "--max-records", min=1,
                                    help="The largest micro-batch (bounds memory)."),
    linger: float = typer.Option(0.5, "--linger", min=0.0,
                                 help="Seconds a batch waits for more after its first message."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", min=1, max=65535,
                                            help="Serve Prometheus /metrics on this port."),
    connect_timeout: float = typer.Option(30.0, "--connect-timeout", min=0.0,
                                          help="Seconds to retry a log that is down at start."),
    as_json: bool = typer.Option(False, "--json", help="The report as JSON."),
) -> None:
    """Stream sources into the lake, exactly once, until SIGTERM (or, with --once, until what
    the log held at start is committed). Several runners share a source's partitions."""
    import logging

    from tarmac.streams.runner import StreamRunner

    p = open_project(ctx)
    log = _connect(p, connect_timeout)
    registry = None
    if metrics_port is not None:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        start_http_server(metrics_port, addr="127.0.0.1", registry=registry)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    runner = StreamRunner(p, sources or None, once=once, max_records=max_records,
                          linger=linger, registry=registry, log=log)  # checks the names
    runner.hooks = _feature_hooks(p, list(runner.specs))
    runner.install_signal_handlers()
    report = runner.run()
    rows = [r.to_dict() for r in report.values()]
    if as_json:
        print_json(rows)
        return
    emit(rows, [("source", "source"), ("table", "table"), ("batches", "batches"),
                ("messages", "messages"), ("rows_loaded", "loaded"),
                ("rows_quarantined", "quarantined"), ("duplicates", "duplicates"),
                ("partitions", "partitions")], as_json=False)
    for r in rows:
        for e in r["errors"][:5]:
            console.print(f"[yellow]{r['source']}: {e}[/yellow]")


def _connect(p: Any, timeout: float) -> Any:
    """The project's stream log, retried with backoff while it is unreachable."""
    import time

    from tarmac.errors import BackendUnavailableError

    deadline = time.monotonic() + timeout
    wait = 0.5
    while True:
        try:
            return p.streams
        except BackendUnavailableError as exc:
            if time.monotonic() + wait > deadline:
                raise BackendUnavailableError(
                    f"{exc.message} (gave up after {timeout:g}s of retries)",
                    hint=exc.hint) from None
            console.print(f"[yellow]{exc.message}; retrying in {wait:.1f}s[/yellow]",
                          highlight=False)
            time.sleep(wait)
            wait = min(wait * 2, 10.0)


def _feature_hooks(p: Any, sources: list[str] | None) -> list[Any]:
    """The hook that keeps the stream feature views of these sources online (if any)."""
    from tarmac.features.streaming import runner_hook
    from tarmac.streams.sink import stream_sources

    hook = runner_hook(p, list(sources or stream_sources(p)))
    return [hook] if hook is not None else []


@stream_app.command()
def status(ctx: typer.Context,
           as_json: bool = typer.Option(False, "--json", help="An array of objects.")) -> None:
    """Per stream source and partition: committed offset, end offset, lag, rows, last
    commit, and the source's quarantined records."""
    from tarmac.streams.status import stream_status

    p = open_project(ctx)
    rows = stream_status(p)
    emit(rows, [("source", "source"), ("partition", "p"), ("committed", "committed"),
                ("end", "end"), ("lag", "lag"), ("rows", "rows"),
                ("quarantined", "quarantined"), ("last_commit", "last commit")],
         as_json=as_json, empty="no stream sources declared in tarmac.yaml")
