"""Producing to a declared stream source (``p.produce``, ``tarmac.streams.produce``): records
checked against the source's contract before they enter the log, keyed by its key field, the
topic created with its partitions; a bad batch refused whole with each record and field named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tarmac.errors import ConfigError, TopicNotFoundError, UsageError
from tarmac.ingest.contract import Contract
from tarmac.ingest.spec import parse_sources
from tarmac.project import Project
from tarmac.streams import RecordsRefused, partition_for
from tarmac.streams.produce import find_target

from .conftest import click, stream_project

TOPIC = "click-events"


def test_good_records_are_produced_keyed_into_a_topic_created_with_the_source_partitions(
        clicks: Project) -> None:
    records = [click(i) for i in range(30)]
    result = clicks.produce("clicks", records)
    assert (result.topic, result.source, result.count, result.created) == (
        TOPIC, "clicks", 30, True)
    assert clicks.streams.topic(TOPIC).partitions == 4  # the source's partitions
    for record, d in zip(records, result.delivered, strict=True):  # one entity, one partition
        assert d.partition == partition_for(str(record["user_id"]).encode(), 4)
    again = clicks.produce(TOPIC, [click(99, user_id=3)])  # by the topic's name: checked too
    assert (again.source, again.created) == ("clicks", False)
    assert again.delivered[0].partition == partition_for(b"3", 4)
    held = [m.json() for p in range(4) for m in clicks.streams.read(TOPIC, p)]
    assert sorted(held, key=lambda r: r["event_id"]) == sorted(
        [*records, click(99, user_id=3)], key=lambda r: r["event_id"])  # as sent


def test_every_bad_record_and_field_is_named_and_nothing_is_produced(clicks: Project) -> None:
    records = [
        click(0),
        click(1, user_id="seven"),                # not an int
        {k: v for k, v in click(2).items() if k != "user_id"},  # no key
        click(3, user_id=None),                   # a null key
        [1, 2, 3],                                # not an object
        click(5, page="/admin"),                  # not an allowed value
        click(6, amount=-3),                      # below the minimum
        click(7, ts="yesterday"),                 # not a time
        click(8, event_id=None),                  # a null primary key
        click(9, user_id={"id": 9}),              # a key that is not a scalar
        {},                                       # nothing at all
    ]
    with pytest.raises(RecordsRefused) as e:
        clicks.produce("clicks", records)
    got = {(p.index, p.field, p.kind) for p in e.value.problems}
    assert got == {
        (1, "user_id", "type"), (2, "user_id", "missing"), (3, "user_id", "null"),
        (4, None, "not_object"), (5, "page", "allowed"), (6, "amount", "range"),
        (7, "ts", "type"), (8, "event_id", "null"), (9, "user_id", "key_type"),
        (10, "user_id", "missing"), (10, "event_id", "missing"), (10, "ts", "missing")}
    text = str(e.value)
    assert "10 of 11 record(s) break the contract of stream source 'clicks'" in text
    assert "nothing was produced" in text
    assert "record 1, field 'user_id': 'user_id' is not a valid int, got \"seven\"" in text
    assert "record 2, field 'user_id': a message without a key: field 'user_id' is missing" \
        in text
    assert "record 3, field 'user_id': a message without a key: field 'user_id' is null" in text
    assert "record 4: a record must be a JSON object, got an array" in text
    assert "... and 2 more" in text  # 12 problems, 10 listed
    assert e.value.exit_code == 2
    assert TOPIC not in [t.name for t in clicks.streams.topics()]  # not even created


def test_errors_name_the_line_and_quote_at_most_200_characters(clicks: Project) -> None:
    from tarmac.streams.produce import Producer

    producer = Producer(clicks.streams, clicks.sources)
    with pytest.raises(RecordsRefused) as e:
        producer.produce("clicks", [click(0), click(1, page="x" * 10_000)], numbers=[3, 7])
    [problem] = e.value.problems
    message = problem.message
    assert len(message) < 300 and message.endswith("…(10,002 chars)")
    assert "line 7, field 'page'" in str(e.value)


def test_a_topic_no_source_declares_takes_json_unchecked_and_must_exist(
        clicks: Project) -> None:
    clicks.streams.create_topic("raw")
    result = clicks.produce("raw", [{"a": 1}, [1, 2], "x", None])
    assert (result.source, result.count) == (None, 4)
    assert [m.json() for m in clicks.streams.read("raw", 0)] == [{"a": 1}, [1, 2], "x", None]
    with pytest.raises(TopicNotFoundError, match="no topic 'rawr'") as e:
        clicks.produce("rawr", [{"a": 1}])
    assert "did you mean 'raw'" in (e.value.hint or "")


def test_a_source_of_another_type_and_a_foreign_key_are_refused(clicks: Project) -> None:
    with pytest.raises(UsageError, match="'crm' is a file source, not a stream"):
        clicks.produce("crm", [{"a": 1}])
    with pytest.raises(UsageError, match="keyed by 'user_id'"):
        clicks.produce("clicks", [click(1)], key="event_id")


def test_every_source_over_a_topic_is_checked_and_they_must_agree(tmp_path: Path) -> None:
    both = """sources:
  a: {type: stream, topic: t, key: k, columns: {n: int}}
  b: {type: stream, topic: t, key: k, columns: {s: {type: string, required: true}}}
"""
    p = stream_project(tmp_path / "p", both)
    try:
        with pytest.raises(RecordsRefused) as e:
            p.produce("t", [{"k": 1, "n": "x", "s": "ok"}, {"k": 2, "n": 2}])
        assert {(x.index, x.field, x.kind) for x in e.value.problems} == {
            (0, "n", "type"), (1, "s", "missing")}
        assert "stream source 'a' and 'b'" in str(e.value)
        assert p.produce("a", [{"k": 1, "n": 2, "s": "ok"}]).count == 1
    finally:
        p.close()
    clash = parse_sources({"a": {"type": "stream", "topic": "t", "key": "k"},
                           "b": {"type": "stream", "topic": "t", "key": "j"}}, Path("x.yaml"))
    with pytest.raises(ConfigError, match="read topic 't' with different key"):
        find_target(clash, "t")


def test_a_source_without_a_key_produces_unkeyed(tmp_path: Path) -> None:
    p = stream_project(tmp_path / "p", "sources:\n  s: {type: stream, topic: s, partitions: 2}\n")
    try:
        result = p.produce("s", [{"n": i} for i in range(4)])
        assert sorted(d.partition for d in result.delivered) == [0, 0, 1, 1]  # round robin
        with pytest.raises(RecordsRefused, match="must be a JSON object"):
            p.produce("s", ["not an object"])
    finally:
        p.close()


def test_the_contract_reports_each_broken_rule_with_its_rows() -> None:
    """What the produce checks read from the contract, one code path with batch ingestion."""
    [spec] = parse_sources({"s": {"type": "file", "path": "x.csv", "primary_key": "id",
                                  "columns": {"n": {"type": "int", "max": 5}}}},
                           Path("x.yaml")).values()
    checked = Contract("s", spec).check(pa.table({"id": [1, None, 3], "n": ["1", "x", "9"]}),
                                        "test")
    got = {(f.column, f.kind, tuple(f.rows.tolist())) for f in checked.failures}
    assert got == {("n", "type", (1,)), ("n", "range", (2,)), ("id", "null", (1,))}
    assert checked.good.num_rows == 1 and checked.rejected.num_rows == 2
    assert all(isinstance(f.rows, np.ndarray) for f in checked.failures)
