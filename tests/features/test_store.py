"""The feature store as a user drives it: apply, training sets, materialize, online, check."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from tarmac.catalog import features as fcat
from tarmac.errors import BackendUnavailableError, SchemaConflictError, UsageError
from tarmac.project import Project

from .conftest import DEFINITIONS, TS, build, day, entities

# -- apply --------------------------------------------------------------------------------------


def test_apply_registers_everything_once_then_nothing(fs_project: Project) -> None:
    current = fcat.current_definitions(fs_project.catalog)
    assert sorted(current) == [("entity", "customer"), ("on_demand", "basket_share"),
                               ("service", "churn"), ("service", "scored"),
                               ("view", "activity"), ("view", "profile")]
    again = fs_project.features.apply()
    assert not again.applied and {c.action for c in again.changes} == {"unchanged"}
    record = fs_project.ledger.audit(action="features.apply", limit=5).items
    assert len(record) == 1 and "add view activity v1" in record[0].details


def test_apply_shows_a_plan_of_changes_and_bumps_versions(fs_project: Project) -> None:
    defs = fs_project.root / "definitions.py"
    defs.write_text(DEFINITIONS.replace('Feature("sessions", Int64)',
                                        'Feature("sessions", Float64)')
                    .replace('churn = FeatureService("churn", [activity[["sessions", "spend"]], '
                             'profile[["plan"]]])', ""))
    plan = fs_project.features.apply(dry_run=True)
    changes = {(c.kind, c.name): c for c in plan.pending}
    assert changes[("view", "activity")].action == "change"
    assert "~ feature sessions: int64 -> float64" in changes[("view", "activity")].details
    assert changes[("service", "churn")].action == "remove"
    assert fcat.current_definitions(fs_project.catalog)[("view", "activity")].version == 1
    fs_project.features.apply()
    current = fcat.current_definitions(fs_project.catalog)
    assert current[("view", "activity")].version == 2
    assert ("service", "churn") not in current
    history = fcat.definition_history(fs_project.catalog, "view", "activity")
    assert [d.version for d in history] == [2, 1]


def test_removing_a_feature_a_training_set_uses_is_refused_unless_forced(
        fs_project: Project) -> None:
    fs_project.features.training_set(entities((1, 6)), "churn", timestamp="at").save("train")
    defs = fs_project.root / "definitions.py"
    defs.write_text(DEFINITIONS.replace('Feature("spend", Float64), ', '')
                    .replace('[activity[["sessions", "spend"]]', '[activity[["sessions"]]')
                    .replace('activity[["spend"]]', 'activity[["sessions"]]')
                    .replace('df["spend"]', 'df["sessions"]'))
    with pytest.raises(SchemaConflictError) as err:
        fs_project.features.apply()
    assert "training_set:train uses activity:spend; this removes it" in str(err.value)
    assert fcat.current_definitions(fs_project.catalog)[("view", "activity")].version == 1
    plan = fs_project.features.apply(force=True, reason="spend moves to the orders view")
    assert plan.applied
    audit = fs_project.ledger.audit(action="features.apply", limit=1).items[0]
    assert "spend moves to the orders view" in audit.details and "forced" in audit.details


def test_a_type_change_of_a_consumed_feature_is_breaking(fs_project: Project) -> None:
    fs_project.features.training_set(entities((1, 6)), "churn", timestamp="at").save("train")
    (fs_project.root / "definitions.py").write_text(
        DEFINITIONS.replace('Feature("sessions", Int64)', 'Feature("sessions", Float64)'))
    with pytest.raises(SchemaConflictError, match="changes its type int64 -> float64"):
        fs_project.features.apply()


@pytest.mark.parametrize("edit, message", [
    (('Feature("age", Int64)', 'Feature("age", String)'),
     "feature 'age' is declared string but the source column holds int64"),
    (('Feature("age", Int64)', 'Feature("years", Int64)'), "feature column 'years' is missing"),
    (('timestamp="updated"', 'timestamp="updated", created="customer_id"'),
     "created timestamp column 'customer_id' holds int64, not timestamps"),
    (('source="profile"', 'source="profiles"'), "reads lake table 'profiles', which does not "
                                                "exist"),
])
def test_apply_checks_each_view_against_its_source(fs_project: Project, edit: tuple[str, str],
                                                   message: str) -> None:
    (fs_project.root / "definitions.py").write_text(DEFINITIONS.replace(*edit))
    with pytest.raises(SchemaConflictError) as err:
        fs_project.features.apply()
    assert message in str(err.value) and "profile" in str(err.value)


@pytest.mark.parametrize("text, message", [
    ("x = (", "definitions.py line 1: SyntaxError"),
    ("from tarmac.features import *\nFeature('x', 'decimal')",
     "feature 'x' has unknown type 'decimal'"),
    ("from tarmac.features import *\nEntity('customer', join_keys=[])",
     "entity 'customer' needs at least one join key"),
    ("from tarmac.features import *\nEntity('_customer', join_keys=['id'])",
     "entity name '_customer' is not valid"),
    ("from tarmac.features import *\nc = Entity('c', ['id'])\n"
     "v = FeatureView(name='v', entities=[c], source='t', timestamp='ts', features=[])",
     "feature view 'v' declares no features"),
    ("from tarmac.features import *\nc = Entity('c', ['id'])\n"
     "v = FeatureView(name='v', entities=[c], source='t', timestamp='ts', ttl='soon', "
     "features=[Feature('a')])", "feature view 'v': ttl 'soon'"),
    ("from tarmac.features import *\nc = Entity('c', ['id'])\n"
     "a = FeatureView(name='a', entities=[c], source='t', timestamp='ts',\n"
     "  features=[Feature('x')])\n"
     "b = FeatureView(name='b', entities=[c], source='u', timestamp='ts',\n"
     "  features=[Feature('x')])"
     "\ns = FeatureService('s', [a, b])",
     "feature 'x' comes from both 'a' and 'b'"),
    ("from tarmac.features import *\nc = Entity('c', ['id'])\n"
     "a = FeatureView(name='a', entities=[c], source='t', timestamp='ts',\n"
     "  features=[Feature('x')])\n"
     "b = FeatureView(name='a', entities=[c], source='u', timestamp='ts',\n"
     "  features=[Feature('x')])",
     "two different views are named 'a'"),
])
def test_bad_definitions_name_the_file_and_the_problem(fs_project: Project, text: str,
                                                      message: str) -> None:
    (fs_project.root / "definitions.py").write_text(text)
    with pytest.raises(UsageError) as err:
        fs_project.features.apply()
    assert message in str(err.value) and "definitions.py" in str(err.value)


def test_a_prefix_resolves_duplicate_feature_names(fs_project: Project) -> None:
    fs_project.lake.write("activity2", pa.table({"customer_id": [1], "ev": pa.array([day(0)], TS),
                                                 "sessions": [99]}))
    (fs_project.root / "definitions.py").write_text(DEFINITIONS + '''
other = FeatureView(name="other", entities=[customer], source="activity2", timestamp="ev",
                    features=[Feature("sessions", Int64)])
both = FeatureService("both", [activity[["sessions"]], other.prefixed("other")])
''')
    fs_project.features.apply()
    frame = fs_project.features.training_set(entities((1, 2)), "both", timestamp="at").to_arrow()
    assert frame.column_names == ["customer_id", "at", "sessions", "other__sessions"]
    assert frame.to_pylist()[0]["other__sessions"] == 99 and frame["sessions"][0].as_py() == 3


# -- training sets ------------------------------------------------------------------------------


def test_training_set_is_point_in_time_correct_with_ttl_and_ties(fs_project: Project) -> None:
    ents = entities((1, 0.5), (1, 1), (1, 6), (1, 8.5), (1, 30), (2, 3), (3, 4), (99, 4))
    rows = fs_project.features.training_set(ents, ["activity", "profile:plan"],
                                            timestamp="at").to_arrow().to_pylist()
    got = [(r["customer_id"], r["sessions"], r["spend"], r["plan"]) for r in rows]
    assert got == [
        (1, None, None, "basic"),     # before any activity
        (1, 3, 10.0, "basic"),        # exactly at the event time: visible
        (1, 5, 25.0, "basic"),        # day 5 tie: the later-recorded correction wins
        (1, 6, None, "basic"),        # a null value is the latest value, not skipped
        (1, None, None, "basic"),     # 22 days after the last event: older than the 10d ttl
        (2, 1, 5.0, "premium"),
        (3, None, None, "family"),    # no activity history at all
        (99, None, None, None),       # unknown entity: a row of nulls, not a dropped row
    ]


def test_knowledge_time_hides_what_was_recorded_later(fs_project: Project) -> None:
    ents = entities((1, 6), (1, 9))
    fs = fs_project.features
    by_event = fs.training_set(ents, "activity:spend", timestamp="at").to_arrow()
    known = fs.training_set(ents, "activity:spend", timestamp="at",
                            semantics="knowledge").to_arrow()
    assert by_event["spend"].to_pylist() == [25.0, None]
    # on day 6 only the first day-5 value had been recorded; on day 9 the correction is known
    # but day 8's null value also is: it is the latest
    assert known["spend"].to_pylist() == [20.0, None]


def test_knowledge_time_needs_a_created_column(fs_project: Project) -> None:
    with pytest.raises(UsageError, match="'profile' declares no created timestamp"):
        fs_project.features.training_set(entities((1, 6)), "profile", timestamp="at",
                                         semantics="knowledge").to_arrow()


def test_training_set_from_pandas_keeps_every_row_and_column(fs_project: Project) -> None:
    df = pd.DataFrame({"customer_id": [2, 1, 1], "label": [1, 0, 1],
                       "at": pd.to_datetime(["2024-01-04", "2024-01-07", "2024-01-07"], utc=True)})
    out = fs_project.features.training_set(df, "churn", label="label").to_pandas()
    assert list(out.columns) == ["customer_id", "label", "at", "sessions", "spend", "plan"]
    assert out["customer_id"].tolist() == [2, 1, 1] and out["sessions"].tolist() == [1, 5, 5]


def test_training_set_from_sql_and_saved_with_lineage(fs_project: Project) -> None:
    fs_project.lake.write("labels", pa.table({"customer_id": [1, 2], "churned": [0, 1],
                                              "at": pa.array([day(6), day(3)], TS)}))
    ts = fs_project.features.training_set("SELECT * FROM labels", "churn", timestamp="at",
                                          label="churned")
    assert ts.to_arrow().num_rows == 2  # computed before the save: lineage must still hold
    version = ts.save("churn_train")
    saved = fs_project.lake.read("churn_train").sort_by("customer_id").to_pylist()
    assert [(r["customer_id"], r["churned"], r["sessions"]) for r in saved] == [(1, 0, 5),
                                                                                 (2, 1, 1)]
    assert version == 0
    run = fs_project.ledger.lineage("churn_train").children[0]
    assert run.kind == "run" and run.name == "features.training_set:churn_train"
    assert {(c.name, c.version) for c in run.children} == {("activity", 0), ("labels", 0),
                                                           ("profile", 0)}
    users = fcat.consumers_of(fs_project.catalog, ["activity:sessions", "profile:plan"])
    assert users["activity:sessions"] == [("training_set:churn_train", "int64")]


@pytest.mark.parametrize("frame, message", [
    (pa.table({"id": [1], "at": pa.array([datetime(2024, 1, 2, tzinfo=UTC)], TS)}),
     "no column 'customer_id'"),
    (pa.table({"customer_id": [1], "at": pa.array([datetime(2024, 1, 2)], pa.timestamp("us"))}),
     "naive timestamps"),
    (pa.table({"customer_id": [1], "at": ["2024-01-02"]}), "say which column"),
    (pa.table({"customer_id": ["1"], "at": pa.array([datetime(2024, 1, 2, tzinfo=UTC)], TS)}),
     "keys it by int64"),
    (pa.table({"customer_id": [1], "sessions": [1],
               "at": pa.array([datetime(2024, 1, 2, tzinfo=UTC)], TS)}),
     "already has column.s. sessions"),
])
def test_bad_entity_frames_are_refused_with_the_reason(fs_project: Project, frame: pa.Table,
                                                      message: str) -> None:
    with pytest.raises(UsageError, match=message):
        fs_project.features.training_set(frame, "churn").to_arrow()


def test_unknown_names_suggest_the_closest(fs_project: Project) -> None:
    fs = fs_project.features
    with pytest.raises(UsageError, match="no feature service named 'chrun'; did you mean "
                                         "'churn'"):
        fs.training_set(entities((1, 1)), "chrun", timestamp="at")
    with pytest.raises(UsageError, match="has no feature 'sesions'; did you mean 'sessions'"):
        fs.training_set(entities((1, 1)), ["activity:sesions"], timestamp="at")
    with pytest.raises(UsageError, match="did you mean 'activity'"):
        fs.online(["activty:spend"], [{"customer_id": 1}])
    with pytest.raises(UsageError, match="label column 'churned' is not in the entity frame"):
        fs.training_set(entities((1, 1)), "churn", timestamp="at", label="churned")


def test_a_source_that_drifted_after_apply_is_refused_at_use(fs_project: Project) -> None:
    fs_project.lake.write("profile", pa.table({"customer_id": [1], "updated": pa.array(
        [day(0)], TS), "plan": ["basic"]}), mode="overwrite", replace_schema=True)
    with pytest.raises(SchemaConflictError, match="feature column 'age' is missing"):
        fs_project.features.training_set(entities((1, 1)), "profile", timestamp="at").to_arrow()
    with pytest.raises(SchemaConflictError, match="feature column 'age' is missing"):
        fs_project.features.materialize(["profile"])


# -- on-demand ----------------------------------------------------------------------------------


def test_on_demand_features_are_equal_offline_and_online(fs_project: Project) -> None:
    fs = fs_project.features
    fs.materialize()
    now = day(9.5)
    frame = pa.table({"customer_id": [1, 2], "basket": [5.0, 10.0],
                      "at": pa.array([now, now], TS)})
    offline = fs.training_set(frame, "scored", timestamp="at").to_arrow().to_pylist()
    online = fs.online("scored", [{"customer_id": 1, "basket": 5}, {"customer_id": 2,
                                                                     "basket": 10.0}], now=now)
    # customer 1's latest spend is null (day 8): the share is null in both
    assert [r["basket_share"] for r in offline] == [None, pytest.approx(10 / 15)]
    assert [r["basket_share"] for r in online.rows] == [r["basket_share"] for r in offline]
    assert [r["sessions"] for r in online.rows] == [r["sessions"] for r in offline]


def test_an_on_demand_null_is_present_when_its_inputs_are_missing_when_not(
        fs_project: Project) -> None:
    fs = fs_project.features
    fs.materialize()
    online = fs.online("scored", [{"customer_id": 1, "basket": 5}, {"customer_id": 999,
                                                                     "basket": 5}],
                       now=day(9.5))
    known, unknown = online.status
    # customer 1's spend is a stored null: the share computed from it is null, and that is
    # the answer (present), not a missing feature; an unknown customer's share is missing
    assert online.rows[0]["basket_share"] is None and known["basket_share"] == "present"
    assert unknown["spend"] == "missing" and unknown["basket_share"] == "missing"


def test_on_demand_errors_say_which_view(fs_project: Project) -> None:
    fs = fs_project.features
    with pytest.raises(UsageError, match="request column"):
        fs.training_set(entities((1, 1)), "scored", timestamp="at")
    fs.materialize()
    with pytest.raises(UsageError, match="needs request value 'basket'"):
        fs.online("scored", [{"customer_id": 1}])


# -- materialize and online ---------------------------------------------------------------------


def test_online_values_status_and_event_time(fs_any: Project) -> None:
    fs = fs_any.features
    results = fs.materialize()
    assert {(r.view, r.mode, r.entities) for r in results} == {("activity", "full", 2),
                                                              ("profile", "full", 3)}
    got = fs.online("churn", [{"customer_id": 1}, {"customer_id": "2"}, {"customer_id": 3},
                              {"customer_id": 404}], now=day(9))
    assert got.rows[0] == {"sessions": 6, "spend": None, "plan": "basic"}
    assert got.status[0] == {"sessions": "present", "spend": "present", "plan": "present"}
    assert got.event_time[0]["sessions"] == "2024-01-09T00:00:00Z"
    assert got.status[1]["sessions"] == "present" and got.rows[1]["spend"] == 5.0
    assert got.status[2] == {"sessions": "missing", "spend": "missing", "plan": "present"}
    assert got.rows[3] == {"sessions": None, "spend": None, "plan": None}
    assert set(got.status[3].values()) == {"missing"}


def test_ttl_holds_online_as_offline(fs_any: Project) -> None:
    fs = fs_any.features
    fs.materialize()
    late = day(8) + timedelta(days=10, seconds=1)
    got = fs.online("churn", [{"customer_id": 1}], now=late)
    assert got.rows[0]["sessions"] is None and got.status[0]["sessions"] == "stale"
    assert got.event_time[0]["sessions"] == "2024-01-09T00:00:00Z"
    edge = fs.online("churn", [{"customer_id": 1}], now=day(8) + timedelta(days=10))
    assert edge.status[0]["sessions"] == "present"
    offline = fs.training_set(entities((1, 18)), "churn", timestamp="at").to_arrow()
    assert offline["sessions"].to_pylist() == [6]  # day 18 is exactly ttl after day 8


def test_materialize_is_incremental_idempotent_and_never_regresses(fs_any: Project) -> None:
    fs = fs_any.features
    fs.materialize()
    again = fs.materialize()
    assert {r.mode for r in again} == {"skipped"}
    fs_any.lake.write("activity", pa.table({
        "customer_id": pa.array([2, 1], pa.int64()), "ev": pa.array([day(7), day(2)], TS),
        "loaded": pa.array([day(7), day(10)], TS), "sessions": pa.array([9, 0], pa.int64()),
        "spend": [7.0, 1.0], "channel": ["app", "web"]}))  # customer 1's row is late and old
    third = {r.view: r for r in fs.materialize()}
    assert third["activity"].mode == "incremental" and third["activity"].rows == 2
    assert third["profile"].mode == "skipped"
    got = fs.online("churn", [{"customer_id": 1}, {"customer_id": 2}], now=day(9))
    assert [r["sessions"] for r in got.rows] == [6, 9]
    assert fs.check("churn").mismatches == []  # no skew (stale: coverage fails)
    full = {r.view: r for r in fs.materialize(full=True)}
    assert full["activity"].mode == "full" and full["activity"].rows == 7
    assert fs.online("churn", [{"customer_id": 1}], now=day(9)).rows[0]["sessions"] == 6


def test_materialize_records_lineage_stats_and_audit(fs_project: Project) -> None:
    fs_project.features.materialize(["activity"])
    last = fcat.last_materialization(fs_project.catalog, "activity")
    assert last is not None and last.inputs == {"activity": 0} and last.entities == 2
    spend = last.stats["spend"]
    assert spend["count"] == 2 and spend["nulls"] == 1 and spend["mean"] == 5.0
    assert last.stats["channel"]["top"] == [["web", 2]]
    run = fs_project.ledger.get_run(last.run_id)
    assert run is not None and run.status == "succeeded"
    run_node = fs_project.ledger.lineage("online.activity").children[0]
    assert run_node.name == "features.materialize:activity"
    assert [(c.name, c.version) for c in run_node.children] == [("activity", 0)]
    assert fs_project.ledger.audit(action="features.materialize", limit=1).items


def test_a_merge_into_the_source_recomputes(fs_project: Project) -> None:
    fs = fs_project.features
    fs.materialize(["profile"])
    fs_project.lake.write("profile", pa.table({
        "customer_id": pa.array([1], pa.int64()), "updated": pa.array([day(4)], TS),
        "plan": ["premium"], "age": pa.array([31], pa.int64())}), mode="merge",
        keys=["customer_id"])
    result = fs.materialize(["profile"])[0]
    assert result.mode == "full"
    assert fs.online("profile:plan", [{"customer_id": 1}]).rows[0]["plan"] == "premium"


def test_since_limits_materialization_by_event_time(fs_project: Project) -> None:
    result = fs_project.features.materialize(["activity"], since="2024-01-07T00:00:00Z")[0]
    assert result.mode == "since" and result.rows == 1 and result.entities == 1
    with pytest.raises(UsageError, match="no time zone"):
        fs_project.features.materialize(since="2024-01-07T00:00:00")
    with pytest.raises(UsageError, match="not an ISO date"):
        fs_project.features.materialize(since="last tuesday")
    with pytest.raises(UsageError, match="no feature view named 'activty'; did you mean"):
        fs_project.features.materialize(["activty"])


def test_a_failed_batch_resumes_where_it_stopped(fs_project: Project,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tarmac.features import materialize as mat

    n = 25
    fs_project.lake.write("activity", pa.table({
        "customer_id": pa.array(range(100, 100 + n), pa.int64()),
        "ev": pa.array([day(3)] * n, TS), "loaded": pa.array([day(3)] * n, TS),
        "sessions": pa.array(range(n), pa.int64()), "spend": [1.0] * n, "channel": ["x"] * n}))
    monkeypatch.setattr(mat, "BATCH", 10)
    store = fs_project.features.online_store
    real = store.write_batch
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise BackendUnavailableError("online store went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "write_batch", flaky)
    with pytest.raises(BackendUnavailableError) as err:
        fs_project.features.materialize(["activity"])
    assert "stopped at batch 2 of 3" in str(err.value) and "resumes" in str(err.value)
    assert store.count("activity") == 10
    assert json.loads(store.checkpoint("activity") or "{}")["next"] == 1
    result = fs_project.features.materialize(["activity"])[0]
    assert result.mode == "resumed" and store.count("activity") == 27
    assert fs_project.features.check("activity", sample=50).mismatches == []


def test_redis_down_during_materialize_is_a_clear_error(tmp_path: Path) -> None:
    p = build(tmp_path / "proj", online_store="redis://127.0.0.1:1/0")
    try:
        with pytest.raises(BackendUnavailableError, match="redis://127.0.0.1:1/0"):
            p.features.materialize()
        assert fcat.last_materialization(p.catalog, "activity") is None
    finally:
        p.close()


def test_online_entity_errors(fs_project: Project) -> None:
    fs = fs_project.features
    fs.materialize()
    with pytest.raises(UsageError, match="entity 1 has no 'customer_id'"):
        fs.online("churn", [{"customer_id": 1}, {"id": 2}])
    with pytest.raises(UsageError, match="entity key 'customer_id' must be an integer, got 'abc'"):
        fs.online("churn", [{"customer_id": "abc"}])


def test_check_reports_skew_when_online_lags_the_source(fs_project: Project) -> None:
    fs = fs_project.features
    fs.materialize()
    now = datetime.now(UTC)
    fs_project.lake.write("profile", pa.table({
        "customer_id": pa.array([1, 2, 3], pa.int64()),
        "updated": pa.array([now - timedelta(hours=1)] * 3, TS),
        "plan": ["gold", "gold", "gold"], "age": pa.array([1, 2, 3], pa.int64())}))
    report = fs.check("profile")
    assert not report.ok and report.entities == 3
    assert {(m["feature"], m["offline"], m["online"]) for m in report.mismatches
            if m["entity"] == {"customer_id": 1}} == {("plan", "gold", "basic"), ("age", 1, 30)}
    fs.materialize(["profile"])
    assert fs.check("profile").ok


def test_fully_tied_rows_resolve_the_same_way_offline_and_online(fs_project: Project) -> None:
    """Two rows with the same key, event and created time: the hash tiebreak picks the same one
    for the training set and for materialization."""
    fs_project.lake.write("activity", pa.table({
        "customer_id": pa.array([7] * 6, pa.int64()), "ev": pa.array([day(3)] * 6, TS),
        "loaded": pa.array([day(3)] * 6, TS), "sessions": pa.array(range(6), pa.int64()),
        "spend": [float(i) for i in range(6)], "channel": list("abcdef")}))
    fs = fs_project.features
    fs.materialize(["activity"])
    offline = fs.training_set(entities((7, 4), (7, 4)), "activity", timestamp="at").to_arrow()
    online = fs.online("activity", [{"customer_id": 7}], now=day(4))
    assert offline["sessions"].to_pylist()[0] == offline["sessions"].to_pylist()[1]
    assert online.rows[0] == {k: offline[k][0].as_py() for k in ("sessions", "spend", "channel")}


@pytest.mark.parametrize("body, message", [
    ("return 1 / 0", "on-demand view 'basket_share' raised ZeroDivisionError"),
    ("return {'other': df['basket']}", "did not return basket_share"),
    ("return {'basket_share': [1.0]}", "returned 1 basket_share values for 2 rows"),
    ("return {'basket_share': ['x', 'y']}", "returned basket_share values that are not DOUBLE"),
])
def test_a_broken_on_demand_function_is_named_in_the_error(tmp_path: Path, body: str,
                                                           message: str) -> None:
    p = build(tmp_path / "proj")
    try:
        (p.root / "definitions.py").write_text(DEFINITIONS.replace(
            'return {"basket_share": df["basket"] / (df["spend"] + df["basket"])}', body))
        p.features.apply()
        frame = pa.table({"customer_id": [1, 2], "basket": [1.0, 2.0],
                          "at": pa.array([day(9), day(9)], TS)})
        with pytest.raises(UsageError, match=message):
            p.features.training_set(frame, "scored", timestamp="at").to_arrow()
    finally:
        p.close()


def test_a_broken_unapplied_edit_does_not_stop_online_reads(fs_project: Project) -> None:
    fs = fs_project.features
    fs.materialize()
    (fs_project.root / "definitions.py").write_text("this is not python\n")
    fs._invalidate()  # as after the refresh interval
    got = fs.online("churn", [{"customer_id": 2}], now=day(9))
    assert got.rows[0]["plan"] == "premium"
    with pytest.raises(UsageError, match="on-demand view 'basket_share' cannot run"):
        fs.online("scored", [{"customer_id": 2, "basket": 1.0}], now=day(9))
