"""The prediction log published to a topic: other systems subscribe to it, and the stream sink
puts it into the ``predictions`` table exactly once, with the values the direct path keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

import tarmac
from conftest import make_project
from serving.test_predlog import rec
from tarmac import faults
from tarmac.errors import ConfigError
from tarmac.project import Project
from tarmac.serving.predlog import SCHEMA, PredictionLog
from tarmac.serving.predlog._record import encode, to_table
from tarmac.streams.runner import StreamRunner
from tarmac.streams.sink import stream_sources

PUBLISH = "serving:\n  prediction_log: {topic: preds}\n"


@pytest.fixture
def p(tmp_path: Path) -> Project:
    root = tmp_path / "proj"
    make_project(root).close()
    with open(root / "tarmac.yaml", "a", encoding="utf-8") as f:
        f.write(PUBLISH)
    project = tarmac.open(root)
    yield project
    project.close()


def test_published_predictions_reach_the_table_once_with_the_same_values(p: Project) -> None:
    records = [rec(i, score=None if i == 3 else i / 10, label={"class": i}, error="boom"
                   if i == 5 else None) for i in range(20)]
    log = PredictionLog.from_config(p, flush_every_s=3600)
    log.start()
    log.append(records)
    log.flush()
    log.close()
    assert not p.lake.exists("predictions")  # published, not committed by the flusher
    assert sum(p.streams.end_offsets("preds")) == 20
    first = p.streams.read("preds", 0, limit=1)[0].json()
    assert first["time"].endswith("Z") and isinstance(first["features"], str)
    report = StreamRunner(p, ["predictions"], once=True).run()["predictions"]
    assert (report.rows_loaded, report.rows_quarantined) == (20, 0)
    got = p.sql("SELECT * FROM predictions ORDER BY request_id")
    want = to_table([encode(r) for r in records]).sort_by("request_id")
    assert got.schema.equals(SCHEMA)
    assert got.equals(want.cast(SCHEMA)), "a value changed on the way through the topic"


def test_a_crash_after_publishing_repeats_the_records_but_the_table_holds_them_once(
        p: Project) -> None:
    log = PredictionLog.from_config(p, flush_every_s=3600)
    log.start()
    log.append([rec(i) for i in range(10)])

    def crash(**_ctx: object) -> None:
        raise OSError("killed after the produce, before the count was noted")

    with faults.inject("predlog.after_publish", crash), pytest.raises(OSError):
        log.flush()
    log.flush()  # published again: nothing noted it
    log.close()
    assert sum(p.streams.end_offsets("preds")) == 20
    report = StreamRunner(p, ["predictions"], once=True).run()["predictions"]
    assert (report.rows_loaded, report.duplicates) == (10, 10)
    assert p.sql("SELECT count(DISTINCT id) AS d, count(*) AS n FROM predictions") \
        .to_pylist() == [{"d": 10, "n": 10}]


def test_the_prediction_stream_source_is_declared_by_tarmac(p: Project) -> None:
    spec = stream_sources(p)["predictions"]
    assert (spec.topic, spec.table, spec.primary_key, spec.timestamp) == \
        ("preds", "predictions", ["id"], "time")
    assert list(spec.columns) == SCHEMA.names
    with open(p.root / "tarmac.yaml", "a", encoding="utf-8") as f:
        f.write("sources:\n  predictions: {type: stream, topic: other}\n")
    with pytest.raises(ConfigError, match="taken by the prediction log"):
        stream_sources(tarmac.open(p.root))
