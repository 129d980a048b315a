"""Data-quality checks of a monitor's window (issue 15): null rates, ranges, new categories,
type changes, missing columns, features served missing or stale, and freshness of the log and
of feature views, each against a reference profile built as training builds it
(``profile(table, sketch=True)``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tarmac.errors import UsageError
from tarmac.monitoring._quality import quality_rows, view_freshness
from tarmac.monitoring.declare import QualityCheck, quality
from tarmac.monitoring.results import ResultRow, to_table
from tarmac.profile import TableProfile, profile
from tarmac.project import Project

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
N = 1000


def reference(n: int = N) -> TableProfile:
    """Training: amount in [0, 99] with 2% nulls, plan of three values, a flag."""
    rng = np.random.default_rng(0)
    amount = pa.array(np.arange(n) % 100, pa.float64(), mask=np.arange(n) % 50 == 1)
    return profile(pa.table({
        "amount": amount,
        "plan": pa.array(rng.choice(["basic", "pro", "family"], size=n)),
        "active": pa.array(rng.random(n) < 0.5),
    }), sketch=True)


def window(n: int = N, *, amount: Any = None, plan: Any = None,
           active: Any = None) -> pa.Table:
    """A window like training unless a column is given."""
    rng = np.random.default_rng(1)
    return pa.table({
        "amount": amount if amount is not None else pa.array(
            (np.arange(n) * 7) % 100, pa.float64(), mask=np.arange(n) % 40 == 0),
        "plan": plan if plan is not None else pa.array(
            rng.choice(["basic", "pro", "family"], size=n)),
        "active": active if active is not None else pa.array(rng.random(n) < 0.5),
    })


def run(current: pa.Table, check: QualityCheck | None = None, ref: TableProfile | None = None,
        **kw: Any) -> list[ResultRow]:
    return quality_rows(check or quality(), ref or reference(), current, now=NOW, **kw)


def row(rows: Sequence[ResultRow], metric: str, column: str | None) -> ResultRow:
    found = [r for r in rows if r.metric == metric and r.column == column]
    assert len(found) == 1, [(r.metric, r.column) for r in rows]
    return found[0]


# -- a window like its reference -------------------------------------------------------------


def test_a_window_like_training_passes_every_check() -> None:
    rows = run(window())
    assert {(r.metric, r.column) for r in rows} == {
        ("null_rate", "amount"), ("null_rate", "plan"), ("null_rate", "active"),
        ("out_of_range", "amount"), ("new_categories", "plan"), ("new_categories", "active")}
    assert {r.verdict for r in rows} == {"passed"}
    assert all(r.check == "quality" for r in rows)
    null = row(rows, "null_rate", "amount")
    assert null.value == pytest.approx(25 / N)
    assert null.threshold == pytest.approx(20 / N + 0.05)  # the reference's 2% + 5 points
    assert null.effect_size == pytest.approx(5 / N)
    assert (null.n_reference, null.n_current) == (N, N)
    # the rows are what the monitor_results table stores
    table = to_table(rows, run_id="r1", monitor="churn", model="churn", version=1,
                     window_start=NOW - timedelta(days=1), window_end=NOW, evaluated_at=NOW)
    assert table.num_rows == len(rows)


def test_switching_checks_off_leaves_their_rows_out() -> None:
    rows = run(window(), quality(nulls=False, ranges=False))
    assert {r.metric for r in rows} == {"new_categories"}


# -- null rate -------------------------------------------------------------------------------


def test_a_null_rate_up_more_than_allowed_fails() -> None:
    mask = np.arange(N) % 10 == 0  # 10% null, training 2%
    rows = run(window(amount=pa.array(np.full(N, 5.0), mask=mask)))
    r = row(rows, "null_rate", "amount")
    assert r.verdict == "failed"
    assert r.value == pytest.approx(0.1)
    assert r.effect_size == pytest.approx(0.08)
    assert "10.0% of 'amount' is null (100 of 1,000), up from 2.0%" in r.reason
    # within a looser allowance it passes
    assert row(run(window(amount=pa.array(np.full(N, 5.0), mask=mask)),
                   quality(max_null_increase=0.1)), "null_rate", "amount").verdict == "passed"


def test_nan_counts_as_null() -> None:
    values = np.full(N, 5.0)
    values[: N // 5] = np.nan
    r = row(run(window(amount=pa.array(values))), "null_rate", "amount")
    assert (r.verdict, r.value) == ("failed", pytest.approx(0.2))


def test_a_feature_null_in_every_prediction_alarms_even_in_a_small_window() -> None:
    """A model scored on an empty feature must alarm, though 20 rows decide no share."""
    rows = run(window(20, amount=pa.nulls(20, pa.float64())))
    r = row(rows, "null_rate", "amount")
    assert r.verdict == "failed"
    assert r.value == 1.0
    assert "every one of the window's 20 values of 'amount' is null" in r.reason
    assert "empty feature" in r.reason
    assert row(rows, "null_rate", "plan").verdict == "not enough data"
    # a column typed null (nothing to type it from) alarms the same way
    untyped = run(window(N, amount=pa.nulls(N)))
    assert row(untyped, "null_rate", "amount").verdict == "failed"
    assert not [r for r in untyped if r.column == "amount" and r.metric != "null_rate"]


def test_an_all_null_window_is_not_alarming_when_training_was_mostly_null_too() -> None:
    ref = profile(pa.table({"x": pa.array([1.0] + [None] * 999, pa.float64())}), sketch=True)
    r = row(run(pa.table({"x": pa.nulls(5, pa.float64())}), ref=ref), "null_rate", "x")
    assert r.verdict == "not enough data"  # 99.9% null in training: 5 nulls in a row is likely


def test_too_few_rows_decide_nothing() -> None:
    rows = run(window(50))
    assert {r.verdict for r in rows} == {"not enough data"}
    r = row(rows, "null_rate", "plan")
    assert r.reason == "50 rows in the window, fewer than the 100 a null rate needs"
    assert row(run(window(50), min_rows=50), "null_rate", "plan").verdict == "passed"


# -- ranges ----------------------------------------------------------------------------------


def test_values_beyond_the_training_range_fail() -> None:
    values = np.arange(N) % 100 * 1.0
    values[:30] = -1.0   # 3% below
    values[30:50] = 500  # 2% above
    r = row(run(window(amount=pa.array(values))), "out_of_range", "amount")
    assert r.verdict == "failed"
    assert r.value == pytest.approx(0.05)
    assert r.threshold == 0.01
    assert "5.0% of 'amount' (50 of 1,000) is outside the reference's range [0, 99]" in r.reason
    assert "e.g. -1, 500" in r.reason
    assert r.detail is not None and r.detail["min"] == 0 and r.detail["max"] == 99


def test_a_few_values_beyond_the_range_pass() -> None:
    values = np.arange(N) % 100 * 1.0
    values[:5] = 100.5  # 0.5%, below the 1% allowed
    r = row(run(window(amount=pa.array(values))), "out_of_range", "amount")
    assert (r.verdict, r.value) == ("passed", pytest.approx(0.005))


def test_the_contract_range_replaces_the_reference_range() -> None:
    values = pa.array(np.arange(N) % 100 * 1.0)
    contract = {"amount": {"min": 0, "max": 49}}
    r = row(run(window(amount=values), contract=contract), "out_of_range", "amount")
    assert (r.verdict, r.value) == ("failed", pytest.approx(0.5))
    assert "the contract's range [0, 49]" in r.reason
    only_min = row(run(window(amount=values), contract={"amount": {"min": -10}}),
                   "out_of_range", "amount")
    assert only_min.verdict == "passed"


def test_the_contract_allowed_values() -> None:
    plan = pa.array(["basic"] * 900 + ["gold"] * 100)
    rows = run(window(plan=plan), contract={"plan": {"values": ["basic", "pro", "family"]},
                                            "unused_column": {"min": 1}})
    r = row(rows, "out_of_range", "plan")
    assert (r.verdict, r.value) == ("failed", pytest.approx(0.1))
    assert "the contract's 3 allowed values" in r.reason and "'gold'" in r.reason
    with pytest.raises(UsageError, match="must be a mapping of min, max or values"):
        run(window(), contract={"plan": {"oneof": ["a"]}})
    with pytest.raises(UsageError, match="min of 'amount' must be a number"):
        run(window(), contract={"amount": {"min": "zero"}})


# -- new categories --------------------------------------------------------------------------


def test_categories_training_never_saw_fail_and_are_named() -> None:
    plan = (["basic"] * 900 + ["gold"] * 40 + ["silver"] * 30 + ["a", "b", "c", "d", "e"] * 6)
    r = row(run(window(plan=pa.array(plan))), "new_categories", "plan")
    assert r.verdict == "failed"
    assert r.value == pytest.approx(0.1)
    assert ("10.0% of 'plan' (100 of 1,000) are 7 values the reference never saw, more than "
            "the 1.0% allowed: 'gold' (40), 'silver' (30), 'a' (6), 'b' (6), 'c' (6) and 2 "
            "more") in r.reason
    assert r.detail is not None and r.detail["new_values"] == 7


def test_a_rare_new_category_passes() -> None:
    plan = ["basic"] * 995 + ["gold"] * 5
    r = row(run(window(plan=pa.array(plan))), "new_categories", "plan")
    assert (r.verdict, r.value) == ("passed", pytest.approx(0.005))
    assert "'gold' (5)" in r.reason


def test_a_boolean_training_only_saw_one_way() -> None:
    ref = profile(pa.table({"flag": pa.array([True] * 500)}), sketch=True)
    r = row(run(pa.table({"flag": pa.array([True, False] * 100)}), ref=ref),
            "new_categories", "flag")
    assert (r.verdict, r.value) == ("failed", 0.5)
    assert "False (100)" in r.reason


def test_new_categories_need_a_reference_that_lists_every_value() -> None:
    ref = profile(pa.table({"city": pa.array([f"c{i % 1000}" for i in range(5000)])}),
                  sketch=True)
    r = row(run(pa.table({"city": pa.array(["elsewhere"] * 200)}), ref=ref),
            "new_categories", "city")
    assert r.verdict == "not enough data"
    assert r.reason.startswith("the reference lists only the top 200 of ")
    assert "values of 'city'" in r.reason


def test_a_hundred_thousand_new_categories_are_counted_without_a_row_loop() -> None:
    n = 300_000
    ids = np.arange(n)
    # 100,000 distinct new values (each twice), the rest training's three plans
    new = pa.array(np.char.add("u", (ids[:200_000] // 2).astype(str)))
    known = pa.array(np.array(["basic", "pro", "family"])[ids[200_000:] % 3])
    plan = pa.chunked_array([new, known])
    current = pa.table({"plan": plan})
    ref = profile(pa.table({"plan": ["basic", "pro", "family"] * 100}), sketch=True)
    r = row(run(current, ref=ref), "new_categories", "plan")
    assert r.verdict == "failed"
    assert r.value == pytest.approx(200_000 / n)
    assert r.n_current == n
    assert r.detail is not None and r.detail["new_values"] == 100_000
    assert "'u0' (2), 'u1' (2), 'u10' (2), 'u100' (2), 'u1000' (2) and 99,995 more" in r.reason


# -- type changes and missing columns --------------------------------------------------------


def test_a_feature_that_turned_into_text_fails_its_type() -> None:
    amount = pa.array([str(i) for i in range(N)])
    rows = run(window(amount=amount))
    r = row(rows, "type", "amount")
    assert r.verdict == "failed"
    assert r.reason == ("feature 'amount' is categorical (string) in the window but numeric "
                        "(DOUBLE) in the reference")
    # no range or category rows for a column of the wrong kind; its null rate still counts
    assert {x.metric for x in rows if x.column == "amount"} == {"type", "null_rate"}


def test_a_feature_missing_from_the_window_fails() -> None:
    rows = run(window().drop_columns(["plan"]))
    r = row(rows, "missing_column", "plan")
    assert r.verdict == "failed"
    assert "feature 'plan' is not in the window's features" in r.reason
    assert "amount, active" in r.reason
    assert not [x for x in rows if x.column == "plan" and x.metric != "missing_column"]


# -- features served missing or stale --------------------------------------------------------


def statuses(counts: Mapping[tuple[str, str], int]) -> pa.Array:
    """The log's feature_status JSON text: ``counts`` of (plan status, amount status)."""
    out = []
    for (plan, amount), k in counts.items():
        out += [json.dumps({"plan": plan, "amount": amount})] * k
    return pa.array(out, pa.string())


def test_thirty_percent_stale_fails_the_stale_share() -> None:
    status = statuses({("present", "stale"): 300, ("present", "present"): 700})
    rows = run(window(), feature_status=status)
    stale = row(rows, "stale_features", None)
    assert (stale.verdict, stale.value, stale.threshold) == ("failed", pytest.approx(0.3), 0.1)
    assert stale.reason == ("30.0% of predictions (300 of 1,000) were served with at least one "
                            "feature stale, more than the 10.0% allowed")
    assert row(rows, "stale_features", "amount").value == pytest.approx(0.3)
    assert row(rows, "stale_features", "plan").verdict == "passed"
    missing = row(rows, "missing_features", None)
    assert (missing.verdict, missing.value) == ("passed", 0.0)


def test_missing_and_invalid_features_count_once_per_prediction() -> None:
    status = statuses({("missing", "invalid"): 40, ("missing", "present"): 20,
                       ("present", "invalid"): 20, ("present", "present"): 920})
    rows = run(window(), feature_status=pa.chunked_array([status[:500], status[500:]]))
    r = row(rows, "missing_features", None)
    assert (r.verdict, r.value) == ("failed", pytest.approx(0.08))
    assert row(rows, "missing_features", "plan").value == pytest.approx(0.06)
    assert row(rows, "missing_features", "amount").value == pytest.approx(0.06)
    assert row(run(window(), quality(max_missing_features=0.1), feature_status=status),
               "missing_features", None).verdict == "passed"


def test_unreadable_statuses_are_left_out_and_said() -> None:
    status = pa.array([json.dumps({"plan": "present"})] * 200 + ["not json", None])
    r = row(run(window(), feature_status=status), "missing_features", None)
    assert (r.verdict, r.n_current) == ("passed", 200)
    assert "1 status was not a JSON object of feature statuses and left out" in r.reason


def test_a_window_of_few_statuses_decides_nothing() -> None:
    rows = run(window(), feature_status=statuses({("stale", "stale"): 10}))
    assert row(rows, "stale_features", None).verdict == "not enough data"


# -- freshness -------------------------------------------------------------------------------


def test_freshness_of_the_prediction_log() -> None:
    check = quality(freshness="2h")
    fresh = row(run(window(), check, log_newest=NOW - timedelta(minutes=30)), "freshness", None)
    assert (fresh.verdict, fresh.value, fresh.threshold) == ("passed", 1800.0, 7200.0)
    old = row(run(window(), check, log_newest=NOW - timedelta(hours=3)), "freshness", None)
    assert old.verdict == "failed"
    assert old.value == 3 * 3600.0
    assert "older than the 2h allowed" in old.reason
    never = row(run(window(), check), "freshness", None)
    assert (never.verdict, never.reason) == ("failed", "no predictions logged")
    assert not [r for r in run(window(), log_newest=NOW) if r.metric == "freshness"]


def test_freshness_of_feature_views() -> None:
    views = {"activity": NOW - timedelta(minutes=5), "profile": NOW - timedelta(days=2),
             "fresh_start": None}
    rows = run(window(), quality(freshness="1h"), log_newest=NOW, view_freshness=views)
    assert row(rows, "freshness", "activity").verdict == "passed"
    old = row(rows, "freshness", "profile")
    assert (old.verdict, old.value) == ("failed", 2 * 86400.0)
    never = row(rows, "freshness", "fresh_start")
    assert (never.verdict, never.reason) == ("failed",
                                             "feature view 'fresh_start' was never materialized")


FEATURES = '''
from tarmac.features import *

customer = Entity("customer", join_keys=["customer_id"])
activity = FeatureView(name="activity", entities=[customer], source="activity", timestamp="ev",
                       features=[Feature("spend", Float64)])
profile = FeatureView(name="profile", entities=[customer], source="profile",
                      timestamp="updated", features=[Feature("plan", String)])
'''
T0 = datetime(2026, 3, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def activity(customers: list[int], days: list[int]) -> pa.Table:
    return pa.table({"customer_id": pa.array(customers, pa.int64()),
                     "ev": pa.array([T0 + timedelta(days=d) for d in days], TS),
                     "spend": pa.array([1.0] * len(days))})


def declare_views(project: Project, rows: pa.Table) -> None:
    """Two batch views: ``activity`` (of ``rows``) and ``profile``, registered."""
    (project.root / "definitions.py").write_text(FEATURES)
    project.lake.write("activity", rows)
    project.lake.write("profile", pa.table({
        "customer_id": pa.array([1], pa.int64()), "updated": pa.array([T0], TS),
        "plan": ["basic"]}))
    project.features.apply()


def test_view_freshness_is_the_newest_event_materialized(project: Project) -> None:
    declare_views(project, activity([1, 2, 1], [1, 3, 2]))
    assert view_freshness(project, ["activity", "profile"]) == {"activity": None,
                                                                "profile": None}
    project.features.materialize(["activity"])
    assert view_freshness(project, ["activity", "profile"]) == {
        "activity": T0 + timedelta(days=3), "profile": None}
    # new rows land but are not materialized yet: online is still as old as before
    project.lake.write("activity", activity([3], [6]), mode="append")
    assert view_freshness(project, ["activity"])["activity"] == T0 + timedelta(days=3)
    assert project.features.materialize(["activity"])[0].mode == "incremental"
    assert view_freshness(project, ["activity"])["activity"] == T0 + timedelta(days=6)
    # a rerun with nothing new keeps it
    assert project.features.materialize(["activity"])[0].mode == "skipped"
    assert view_freshness(project, ["activity"])["activity"] == T0 + timedelta(days=6)
    # a correction of an older row only does not move it back
    project.lake.write("activity", activity([1], [4]), mode="append")
    project.features.materialize(["activity"])
    assert view_freshness(project, ["activity"])["activity"] == T0 + timedelta(days=6)
    # a monitor sees the age of it
    rows = run(window(), quality(freshness="1d"), log_newest=NOW,
               view_freshness=view_freshness(project, ["activity", "profile"]))
    assert row(rows, "freshness", "activity").value == (NOW - T0 - timedelta(days=6)
                                                         ).total_seconds()
    assert row(rows, "freshness", "profile").reason == \
        "feature view 'profile' was never materialized"
    with pytest.raises(UsageError, match="no feature view named 'activty'.*activity"):
        view_freshness(project, ["activty"])


def test_view_freshness_of_a_view_materialized_before_checkpoints_kept_it(
        project: Project) -> None:
    """Its newest event is read from its source at the table versions the run read."""
    declare_views(project, activity([1, 2], [1, 2]))
    project.features.materialize(["activity"])
    online = project.features.online_store
    point = json.loads(online.checkpoint("activity") or "{}")
    point.pop("newest_us")
    online.write_batch("activity", [], [], [], checkpoint=json.dumps(point))
    project.lake.write("activity", activity([3], [9]), mode="append")  # not materialized
    assert view_freshness(project, ["activity"]) == {"activity": T0 + timedelta(days=2)}


def test_view_freshness_of_a_stream_view_is_its_newest_landed_event(tmp_path: Path) -> None:
    from features.test_streaming import build, rows

    p = build(tmp_path / "proj")
    try:
        p.features.apply()
        assert p.features.freshness(["live"]) == {"live": None}  # nothing landed yet
        live = p.features.streaming
        table = rows([(1, 1, 0.5, 10.0, "home"), (2, 2, 7.0, 5.0, "buy")])
        p.lake.write("clicks", table)  # what the sink commits, then applies online
        live.apply("clicks", table)
        assert view_freshness(p, ["live"]) == {"live": datetime(2026, 3, 1, 0, 7, tzinfo=UTC)}
    finally:
        p.close()
