"""The stream sink: each message of a stream source lands once, in its table or in quarantine
with its topic, partition and offset; positions come from the Delta log; the runner and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tarmac
from conftest import make_project
from tarmac.cli import app
from tarmac.errors import WriteConflictError
from tarmac.project import Project
from tarmac.streams.runner import StreamRunner
from tarmac.streams.sink import StreamSink

SOURCE = """
sources:
  clicks:
    type: stream
    topic: clicks
    primary_key: event_id
    timestamp: ts
    allowed_lateness: 10m
    max_future: 5m
    columns: {ts: timestamp, amount: {type: float, min: 0}, user: {type: string}}
"""
NOW = datetime.now(UTC).replace(microsecond=0)


def _project(tmp_path: Path, extra: str = SOURCE) -> Project:
    root = tmp_path / "proj"
    make_project(root).close()
    with open(root / "tarmac.yaml", "a", encoding="utf-8") as f:
        f.write(extra)
    p = tarmac.open(root)
    p.streams.create_topic("clicks", 2, exist_ok=True)
    return p


def _event(i: int, *, at: datetime | None = None, **over: object) -> dict[str, object]:
    return {"event_id": f"e{i}", "ts": (at or NOW - timedelta(seconds=60 - i)).isoformat(),
            "user": f"u{i % 4}", "amount": float(i), **over}


def _all(p: Project, sink: StreamSink) -> list:
    out = []
    for part in range(2):
        out += p.streams.read("clicks", part, from_offset=sink.position(part) or 0, limit=10_000)
    return out


@pytest.fixture
def p(tmp_path: Path) -> Project:
    project = _project(tmp_path)
    yield project
    project.close()


def test_every_message_lands_once_in_the_table_or_quarantine_with_where_it_was(
        p: Project) -> None:
    p.streams.produce("clicks", [_event(i) for i in range(20)], key="event_id")
    p.streams.produce("clicks", [
        b"\xff\xfe not utf-8", b"not json", b"[1, 2]", b"",          # undecodable values
        json.dumps(_event(90, amount=-1)).encode(),                   # breaks the contract
        json.dumps(_event(91, amount="lots")).encode(),               # wrong type
        json.dumps(_event(92, at=NOW - timedelta(days=3))).encode(),  # beyond lateness
        json.dumps(_event(93, at=NOW + timedelta(days=3))).encode(),  # from the future
        json.dumps(_event(94, ts=None)).encode(),                     # no event time
        json.dumps(_event(3)).encode(),                               # a producer's repeat
    ])
    with p.ledger.run("test"), StreamSink(p, "clicks") as sink:
        batch = sink.process(_all(p, sink))
    assert batch.messages == 30
    assert (batch.rows_loaded, batch.rows_quarantined, batch.duplicates) == (20, 9, 1)
    assert (batch.late, batch.future) == (1, 1)
    ids = p.sql("SELECT event_id FROM clicks ORDER BY event_id")["event_id"].to_pylist()
    assert sorted(ids) == sorted(f"e{i}" for i in range(20))
    q = p.sql("SELECT reason, origin FROM quarantine WHERE source = 'clicks' ORDER BY origin")
    reasons = q["reason"].to_pylist()
    assert len(reasons) == 9
    assert all(o.startswith("clicks/") and "@" in o for o in q["origin"].to_pylist())
    joined = " | ".join(reasons)
    for text in ("not valid UTF-8", "not a JSON object", "empty value", "below the minimum",
                 "not a valid float", "too late", "from the future", "no event time"):
        assert text in joined, text
    assert len(set(q["origin"].to_pylist())) == 9  # one row per rejected message
    assert p.ledger.verify().ok


def test_positions_come_from_the_delta_log_not_the_broker(p: Project) -> None:
    p.streams.produce("clicks", [_event(i) for i in range(10)], key="event_id")
    with p.ledger.run("test"), StreamSink(p, "clicks") as sink:
        assert sink.position(0) is None
        sink.process(_all(p, sink))
        ends = p.streams.end_offsets("clicks")
        assert [sink.position(0), sink.position(1)] == ends
        # a consumer group's committed offsets elsewhere change nothing
        p.streams.commit("clicks-sink", {("clicks", 0): 0, ("clicks", 1): 0})
    with p.ledger.run("test"), StreamSink(p, "clicks") as again:
        assert [again.position(0), again.position(1)] == ends
        assert again.process(_all(p, again)).messages == 0
    assert p.sql("SELECT count(*) AS n FROM clicks")["n"][0].as_py() == 10


def test_a_batch_the_lake_has_moved_past_is_refused_and_nothing_is_written(p: Project) -> None:
    p.streams.produce("clicks", [_event(i) for i in range(10)], key="event_id")
    with p.ledger.run("test"), StreamSink(p, "clicks") as sink:
        msgs = _all(p, sink)
        sink.process(msgs, expected={0: None, 1: None})
        with pytest.raises(WriteConflictError, match="committed by another process"):
            sink.process(msgs, expected={0: None, 1: None})
    assert p.sql("SELECT count(*) AS n FROM clicks")["n"][0].as_py() == 10


def test_a_repeat_after_a_restart_is_still_a_duplicate(p: Project) -> None:
    p.streams.produce("clicks", [_event(i) for i in range(5)], key="event_id")
    assert StreamRunner(p, once=True).run()["clicks"].rows_loaded == 5
    p.streams.produce("clicks", [_event(2), _event(7)], key="event_id")
    report = StreamRunner(p, once=True).run()["clicks"]
    assert (report.rows_loaded, report.duplicates) == (1, 1)
    assert p.sql("SELECT count(*) AS n FROM clicks")["n"][0].as_py() == 6


@pytest.mark.parametrize("policy", ["quarantine", "fail"])
def test_schema_change_mid_stream_follows_the_drift_policy(tmp_path: Path, policy: str) -> None:
    p = _project(tmp_path, SOURCE.replace("max_future: 5m", "max_future: 5m\n"
                                          f"    on_schema_change: {policy}"))
    p.streams.produce("clicks", [_event(i) for i in range(3)], key="event_id")
    StreamRunner(p, once=True).run()
    p.streams.produce("clicks", [_event(9, referrer="ad")], key="event_id")
    if policy == "quarantine":
        report = StreamRunner(p, once=True).run()["clicks"]
        assert report.rows_loaded == 0 and report.rows_quarantined == 1
        reason = p.sql("SELECT reason FROM quarantine")["reason"][0].as_py()
        assert "new column 'referrer'" in reason
    else:  # the runner stops with the error; nothing of the batch is committed
        with pytest.raises(tarmac.errors.ContractError, match="new column 'referrer'"):
            StreamRunner(p, once=True).run()
        sink = StreamSink(p, "clicks")
        assert sum(sink.position(i) or 0 for i in range(2)) == 3
    assert p.sql("SELECT count(*) AS n FROM clicks")["n"][0].as_py() == 3
    p.close()


def test_run_once_and_status_on_the_command_line(p: Project) -> None:
    p.streams.produce("clicks", [_event(i) for i in range(12)] + [b"junk"], key="event_id")
    cli = CliRunner()
    res = cli.invoke(app, ["--project", str(p.root), "stream", "run", "--once", "--json"])
    assert res.exit_code == 0, res.output
    [report] = json.loads(res.stdout)
    assert (report["messages"], report["rows_loaded"], report["rows_quarantined"]) == (13, 12, 1)
    assert report["partitions"] == [0, 1] and report["lag"] == {"0": 0, "1": 0}
    res = cli.invoke(app, ["--project", str(p.root), "stream", "status", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["lag"] for r in rows] == [0, 0]
    assert sum(r["rows"] for r in rows) == 12 and rows[0]["quarantined"] == 1
    res = cli.invoke(app, ["--project", str(p.root), "stream", "run", "nope", "--once"])
    assert res.exit_code != 0 and "no stream source 'nope'" in res.output


def test_a_source_that_is_not_a_stream_is_refused(tmp_path: Path) -> None:
    p = _project(tmp_path, SOURCE + "  files: {type: file, path: 'data/*.csv'}\n")
    with pytest.raises(tarmac.errors.UsageError, match="is a file source, not a stream"):
        StreamSink(p, "files")
    p.close()


def test_a_topic_that_does_not_exist_is_a_clear_error(tmp_path: Path) -> None:
    p = _project(tmp_path, SOURCE.replace("topic: clicks", "topic: nowhere"))
    with pytest.raises(tarmac.errors.TopicNotFoundError, match="nowhere"):
        StreamRunner(p, once=True).run()
    p.close()


def test_a_log_down_at_start_is_retried_then_a_clear_error_and_exit_code(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    make_project(root).close()
    text = (root / "tarmac.yaml").read_text().replace("streams: embedded",
                                                      "streams: redis://127.0.0.1:1/0")
    (root / "tarmac.yaml").write_text(text + SOURCE)
    res = CliRunner().invoke(app, ["--project", str(root), "stream", "run", "--once",
                                   "--connect-timeout", "1"])
    assert res.exit_code == 2, res.output
    assert "retrying in" in res.output and "gave up after 1s of retries" in res.output


def test_a_log_lost_mid_run_is_retried_and_nothing_is_lost(
        p: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    from tarmac.errors import BackendUnavailableError
    from tarmac.streams import PartitionReader

    p.streams.produce("clicks", [_event(i) for i in range(30)], key="event_id")
    real = PartitionReader.poll
    failures = [2]

    def flaky(self: PartitionReader, max_records: int, timeout: float = 0.0) -> list:
        got = real(self, max_records, timeout)
        if got and failures[0]:  # read, then the connection drops before the batch is whole
            failures[0] -= 1
            raise BackendUnavailableError("Redis at 127.0.0.1:6379: Connection reset by peer")
        return got

    monkeypatch.setattr(PartitionReader, "poll", flaky)
    report = StreamRunner(p, once=True, max_records=10, backoff=0.01).run()["clicks"]
    assert report.rows_loaded == 30 and report.messages == 30
    assert sum("Connection reset" in e for e in report.errors) == 2
    assert p.sql("SELECT count(*) AS n FROM clicks")["n"][0].as_py() == 30


def test_the_runner_exports_its_metrics(p: Project) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    p.streams.produce("clicks", [_event(i) for i in range(25)] + [b"junk"], key="event_id")
    registry = CollectorRegistry()
    StreamRunner(p, once=True, registry=registry).run()
    text = generate_latest(registry).decode()
    assert 'tarmac_stream_messages_total{outcome="loaded",source="clicks"} 25.0' in text
    assert 'tarmac_stream_messages_total{outcome="quarantined",source="clicks"} 1.0' in text
    assert 'tarmac_stream_lag{partition="0",source="clicks"} 0.0' in text
    assert 'tarmac_stream_commit_seconds_count{source="clicks"}' in text


def test_stream_run_keeps_stream_feature_views_online_equal_to_batch(tmp_path: Path) -> None:
    """Producer -> topic -> `tarmac stream run --once` -> lake table and online store; the
    online values equal the batch definition over the table the sink wrote."""
    p = _project(tmp_path)
    (p.root / "definitions.py").write_text(
        "from tarmac.features import *\n"
        "user = Entity('user', join_keys=['user'])\n"
        "live = StreamFeatureView(name='live', entities=[user], source='clicks', ttl='1d',\n"
        "    aggregates=[agg.count(), agg.sum('amount')], windows=['5m', '1h'])\n")
    cli = CliRunner()
    p.streams.produce("clicks", [_event(i) for i in range(40)], key="event_id")
    res = cli.invoke(app, ["--project", str(p.root), "stream", "run", "--once", "--json"])
    assert res.exit_code == 0, res.output
    p.features.apply()  # the view comes after the table: the next run builds it from the lake
    p.streams.produce("clicks", [_event(i) for i in range(40, 48)], key="event_id")
    res = cli.invoke(app, ["--project", str(p.root), "stream", "run", "--once", "--json"])
    assert res.exit_code == 0, res.output
    got = p.features.online(["live:count_1h", "live:amount_sum_1h"],
                            [{"user": f"u{k}"} for k in range(4)])
    want = p.sql("SELECT user, count(*) AS n, sum(amount) AS s FROM clicks GROUP BY user")
    expect = {r["user"]: (r["n"], r["s"]) for r in want.to_pylist()}
    for k, row in enumerate(got.rows):
        assert (row["count_1h"], row["amount_sum_1h"]) == expect[f"u{k}"]
    assert sum(r["count_1h"] for r in got.rows) == 48
    report = p.features.check(["live:count_5m", "live:amount_sum_1h"])
    assert report.compared and not report.mismatches
    p.close()
