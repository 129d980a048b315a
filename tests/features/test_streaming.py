"""Stream feature views through a project: declared in definitions.py, registered by apply,
kept online by ``StreamingFeatures`` as a stream sink would call it, and equal to the batch
definition - in the online store (SQLite and Redis), in training sets and in ``features check``.

Rows reach the lake the way the sink puts them there: ``p.lake.write(table, rows)``, then
``apply`` with the same rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import tarmac
from features.conftest import on_store
from tarmac.errors import SchemaConflictError, UsageError
from tarmac.features import StreamingFeatures
from tarmac.project import Project, scaffold

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")

SOURCES = """
sources:
  clicks:
    type: stream
    topic: clicks
    primary_key: event_id
    timestamp: ts
    allowed_lateness: 10m
    columns: {event_id: int, customer_id: int, ts: timestamp, amount: float, page: str}
  crm: {type: file, path: "data/*.csv"}
"""

DEFINITIONS = """
from tarmac.features import *

customer = Entity("customer", join_keys=["customer_id"])

live = StreamFeatureView(
    name="live", entities=[customer], source="clicks", ttl="1h",
    aggregates=[agg.count(), agg.sum("amount"), agg.mean("amount"), agg.max("amount"),
                agg.last("page"), agg.distinct("page")],
    windows=["5m", "15m", tumbling("30m")],
)
service = FeatureService("scoring", [live[["count_5m", "amount_sum_15m"]]])
"""
FEATURES = [f"{a}_{w}" for a in ("count", "amount_sum", "amount_mean", "amount_max",
                                 "page_last", "page_distinct")
            for w in ("5m", "15m", "30m_tumbling")]


def build(root: Path, *, online_store: str | None = None, definitions: str = DEFINITIONS,
          sources: str = SOURCES) -> Project:
    scaffold(root, name=f"st{uuid.uuid4().hex[:8]}")
    text = (root / "tarmac.yaml").read_text()
    if online_store:
        text = "\n".join(f"online_store: {online_store}" if line.startswith("online_store:")
                         else line for line in text.splitlines()) + "\n"
    (root / "tarmac.yaml").write_text(text + sources)
    (root / "definitions.py").write_text(definitions)
    return tarmac.open(root)


def rows(events: list[tuple[int, int, float, float | None, str | None]]) -> pa.Table:
    """(event_id, customer_id, minutes after T0, amount, page) as the sink lands them."""
    return pa.table({
        "event_id": pa.array([e[0] for e in events], pa.int64()),
        "customer_id": pa.array([e[1] for e in events], pa.int64()),
        "ts": pa.array([T0 + timedelta(minutes=e[2]) for e in events], TS),
        "amount": pa.array([e[3] for e in events], pa.float64()),
        "page": pa.array([e[4] for e in events], pa.string()),
    })


BATCHES = [
    [(1, 1, 0.5, 10.0, "home"), (2, 2, 1.0, 5.0, "buy"), (3, 1, 2.0, None, "buy")],
    [(4, 1, 6.0, 2.5, "home"), (2, 2, 1.0, 5.0, "buy"),  # a producer's duplicate
     (5, 2, 3.0, 1.0, None)],  # late, out of order (within the 10m lateness)
    [(6, 3, 14.0, 4.0, "faq"), (7, 1, 21.0, 1.5, "home")],
    [(8, 2, 33.0, 7.0, "buy"), (9, 1, 31.5, 3.0, "faq")],
]


def sink(p: Project, live: StreamingFeatures, batch: list[Any]) -> Any:
    table = rows(batch)
    p.lake.write("clicks", table)  # the sink's commit...
    return live.apply("clicks", table)  # ...then the streaming features


def offline_at(p: Project, customers: list[int], at: datetime) -> list[dict[str, Any]]:
    frame = pa.table({"customer_id": pa.array(customers, pa.int64()),
                      "at": pa.array([at] * len(customers), TS)})
    return p.features.training_set(frame, ["live"], timestamp="at").to_arrow().to_pylist()


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Project]:
    p = build(tmp_path / "proj")
    yield p
    p.close()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    yield from on_store(request.param, tmp_path / "proj", build)


def test_apply_registers_a_stream_view_before_any_event(proj: Project) -> None:
    plan = proj.features.apply()  # the lake table does not exist yet: the contract's types
    assert [(c.kind, c.name, c.action) for c in plan.changes if c.kind == "view"] == \
        [("view", "live", "add")]
    view = proj.features.registered().views["live"]
    assert [f.name for f in view.features] == FEATURES
    types = {f.name: f.dtype for f in view.features}
    assert (types["count_5m"], types["amount_sum_15m"], types["page_last_5m"],
            types["page_distinct_30m_tumbling"]) == ("int64", "float64", "string", "int64")
    assert view.timestamp == "ts" and view.ttl_seconds == 3600
    assert view.streaming["table"] == "clicks"  # type: ignore[attr-defined]
    assert view.streaming["spec"]["primary_key"] == ["event_id"]  # type: ignore[attr-defined]
    assert view.streaming["spec"]["tile_seconds"] == 300  # type: ignore[attr-defined]
    assert StreamingFeatures(proj).views_for("clicks")[0].name == "live"
    with pytest.raises(UsageError, match="no source 'clickz'.*did you mean 'clicks'"):
        StreamingFeatures(proj).views_for("clickz")
    with pytest.raises(UsageError, match="source 'crm' is a file source, not a stream"):
        StreamingFeatures(proj).start("crm")
    assert not [c for c in proj.features.apply().changes if c.action != "unchanged"]
    proj.lake.write("clicks", rows(BATCHES[0]))  # once the table exists, still unchanged
    assert not [c for c in proj.features.apply().changes if c.action != "unchanged"]


def test_streaming_values_online_equal_batch_everywhere(any_store: Project) -> None:
    p = any_store
    p.features.apply()
    live = StreamingFeatures(p)
    live.start("clicks")  # nothing in the lake yet
    for batch in BATCHES:
        stats = sink(p, live, batch)
        assert stats.rows == len(batch) and stats.views[0].view == "live"
        assert len(stats.event_us) == stats.applied and (stats.latencies() >= 0).all()
        if batch is BATCHES[1]:
            assert (stats.applied, stats.views[0].duplicates, stats.entities) == (2, 1, 2)
    clock = T0 + timedelta(minutes=33)
    online = p.features.online(["live"], [{"customer_id": c} for c in (1, 2, 3, 4)],
                               now=clock + timedelta(minutes=1))
    offline = offline_at(p, [1, 2, 3, 4], clock + timedelta(minutes=1))
    for i, c in enumerate((1, 2, 3)):
        assert online.status[i]["count_5m"] == "present"
        for f in FEATURES:
            assert online.rows[i][f] == pytest.approx(offline[i][f]), (c, f)
    assert online.status[3]["count_5m"] == "missing"
    # customer 1: events at 0.5, 2 (no amount), 6, 21, 31.5 min -> at 33 min the 15m window
    # holds tiles 20-35 min: 21 and 31.5; the 30m tumbling window 30-60 min: 31.5
    c1 = online.rows[0]
    assert (c1["count_5m"], c1["count_15m"], c1["count_30m_tumbling"]) == (1, 2, 1)
    assert c1["amount_sum_15m"] == 4.5 and c1["amount_max_15m"] == 3.0
    assert (c1["page_last_15m"], c1["page_distinct_15m"]) == ("faq", 2)
    assert online.event_time[0]["count_5m"] == "2026-03-01T00:31:30Z"  # its newest event
    # customer 3's only event (14 min) left every window: zeros, dated at the last boundary
    c3 = online.rows[2]
    assert (c3["count_15m"], c3["amount_sum_15m"], c3["amount_mean_15m"]) == (0, 0, None)
    assert online.event_time[2]["count_5m"] == "2026-03-01T00:30:00Z"
    # the duplicate of event 2 counted once: customer 2 at 3 min had events 2 and 5
    early = offline_at(p, [2], T0 + timedelta(minutes=3))[0]
    assert (early["count_5m"], early["amount_sum_5m"]) == (2, 6.0)
    report = p.features.check(["live"], sample=10)
    assert report.mismatches == [] and report.compared > 0
    # ttl: an hour after its last value, a customer's features are stale
    later = p.features.online(["live"], [{"customer_id": 3}], now=clock + timedelta(hours=2))
    assert later.status[0]["count_5m"] == "stale"
    live.close()


def test_restart_rebuilds_from_the_lake(proj: Project, tmp_path: Path) -> None:
    proj.features.apply()
    first = StreamingFeatures(proj)
    first.start("clicks")
    for batch in BATCHES[:2]:
        sink(proj, first, batch)
    first.close()  # the runner stops; the next one starts from the lake
    second = StreamingFeatures(proj)
    second.start("clicks")
    for batch in BATCHES[2:]:
        sink(proj, second, batch)
    restarted = second.state("live").snapshot()  # type: ignore[union-attr]
    assert restarted.num_rows == 3

    other = build(tmp_path / "straight")
    other.features.apply()
    straight = StreamingFeatures(other)
    for batch in BATCHES:
        sink(other, straight, batch)
    assert straight.state("live").snapshot().equals(restarted)  # type: ignore[union-attr]
    entities = [{"customer_id": c} for c in (1, 2, 3)]
    at = T0 + timedelta(minutes=40)
    assert proj.features.online(["live"], entities, now=at).rows == \
        other.features.online(["live"], entities, now=at).rows
    second.close()
    straight.close()
    other.close()


def test_a_batch_committed_before_the_state_existed_is_rebuilt_not_double_counted(
        proj: Project) -> None:
    proj.features.apply()
    live = StreamingFeatures(proj)
    stats = sink(proj, live, BATCHES[0])  # no start(): apply builds from the lake
    assert stats.views[0].started and stats.views[0].entities == 2
    got = proj.features.online(["live:count_5m"], [{"customer_id": 1}],
                               now=T0 + timedelta(minutes=3))
    assert got.rows[0]["count_5m"] == 2
    live.close()


def test_training_sets_are_point_in_time(proj: Project) -> None:
    proj.features.apply()
    live = StreamingFeatures(proj)
    for batch in BATCHES:
        sink(proj, live, batch)
    times = [T0 + timedelta(minutes=m) for m in (0, 1, 5, 6, 9.99, 10, 22, 34)]
    frame = pa.table({"customer_id": pa.array([1] * len(times), pa.int64()),
                      "at": pa.array(times, TS)})
    got = proj.features.training_set(frame, ["live:count_5m", "live:count_15m"],
                                     timestamp="at").to_arrow().to_pylist()
    # customer 1's events: 0.5, 2, 6, 21, 31.5 min; 5m windows hop by the 5m tile
    assert [(r["count_5m"], r["count_15m"]) for r in got] == [
        (None, None),  # before its first event: no value yet
        (1, 1), (0, 2),  # at 5 min the first tile left the 5m window
        (1, 3), (1, 3), (0, 3),  # at 10 min: the 5-10 tile left the 5m window
        (1, 1), (1, 2)]  # at 22 the 15m window starts at 10 min: 21; at 34 (from 20): 21, 31.5
    # materialize reads the same definition in batch: it writes what streaming wrote
    entities = [{"customer_id": c} for c in (1, 2, 3)]
    at = T0 + timedelta(minutes=34)
    before = proj.features.online(["live"], entities, now=at)
    (result,) = proj.features.materialize(["live"])
    # evaluation rows: customer 1 has 5 events and 6 boundaries up to the 33 min clock (5, 10,
    # 15, 20, 25, 30 min), customer 2 has 3 + 3, customer 3 has 1 + 3 (15, 25, 30)
    assert (result.entities, result.rows) == (3, 21)
    after = proj.features.online(["live"], entities, now=at)
    assert (after.rows, after.event_time) == (before.rows, before.event_time)
    from tarmac.features.inspect import describe

    shown = describe(proj.features, "live")
    assert shown["source"] == ("stream clicks (lake table clicks): windows 5m, 15m, 30m "
                               "tumbling; tile 5m")
    # the lake table as it landed, the producer's copy included
    assert shown["freshness"] == "newest event 2026-03-01 00:33:00 UTC, 10 rows"
    live.close()


def bad(tmp_path: Path, definitions: str, sources: str = SOURCES) -> Exception:
    p = build(tmp_path / uuid.uuid4().hex[:6], definitions=definitions, sources=sources)
    try:
        with pytest.raises((UsageError, SchemaConflictError)) as info:
            p.features.apply()
        return info.value
    finally:
        p.close()


def view_text(**kw: str) -> str:
    args = {"aggregates": "[agg.count(), agg.sum('amount')]", "windows": "['5m', '1h']",
            "source": "'clicks'"}
    args.update(kw)
    return ("from tarmac.features import *\ncustomer = Entity('customer', ['customer_id'])\n"
            "v = StreamFeatureView(name='live', entities=[customer], "
            + ", ".join(f"{k}={v}" for k, v in args.items()) + ")\n")


def test_bad_declarations_name_the_view_and_the_field(tmp_path: Path) -> None:
    e = bad(tmp_path, view_text(aggregates="[agg.sum('amout')]"))
    assert "stream feature view 'live'" in str(e) and "aggregates[0] agg.sum('amout')" in str(e)
    assert "did you mean 'amount'" in str(e)
    e = bad(tmp_path, view_text(windows="['5 minutes']"))
    assert "stream feature view 'live': windows[0] '5 minutes'" in str(e)
    e = bad(tmp_path, view_text(windows="['5m', '7m']", tile="'5m'"))
    assert "windows[1] (7m) is not a whole number of tiles" in str(e)
    e = bad(tmp_path, view_text(source="'crm'"))
    assert "source 'crm' is a file source, not a stream" in str(e)
    e = bad(tmp_path, view_text(source="'clickz'"))
    assert "no source 'clickz'" in str(e) and "did you mean 'clicks'" in str(e)
    e = bad(tmp_path, view_text(aggregates="[agg.sum('page')]"))
    assert "column 'page' holds string, not numbers" in str(e)
    e = bad(tmp_path, view_text(aggregates="[agg.max('amount', Int64)]"))
    assert "declared int64 but column 'amount' holds double" in str(e)
    e = bad(tmp_path, view_text(aggregates="[agg.count(), agg.count()]"))
    assert "feature names repeat: count_1h, count_5m" in str(e)
    e = bad(tmp_path, view_text(windows="['30d']", tile="'1m'"))
    assert "43,200 tiles" in str(e)
    e = bad(tmp_path, view_text(), sources=SOURCES.replace("    timestamp: ts\n", ""))
    assert "declares no event-time column" in str(e)
    e = bad(tmp_path, view_text(aggregates="[agg.median('amount')]"))
    assert "agg" in str(e) and "median" in str(e)
