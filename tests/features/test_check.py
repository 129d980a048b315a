"""``features check``: coverage (present / null / stale / missing against training) and skew.

The fixture's activity ends on 2024-01-09 with a 10-day ttl, so online it is all stale today:
the check must fail on it, though offline and online agree that the values are null."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
from typer.testing import CliRunner

from tarmac.cli import app
from tarmac.project import Project

from .conftest import TS

runner = CliRunner()


def run(project: Project, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--project", str(project.root), *args])
    return result.exit_code, result.output


def test_stale_features_fail_the_check_with_their_coverage(fs_project: Project) -> None:
    fs_project.features.materialize()
    code, out = run(fs_project, "features", "check", "churn", "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    cov = {c["feature"]: c for c in report["coverage"]}
    # training (offline, same 2 entities at the data's end): sessions 2/2, spend 1/2 (a null)
    assert cov["sessions"] == {"feature": "sessions", "present": 0.0, "null": 0.0, "stale": 1.0,
                               "missing": 0.0, "training": 1.0, "drop": 1.0}
    assert cov["spend"]["training"] == 0.5 and cov["spend"]["drop"] == 0.5
    assert cov["plan"]["present"] == 1.0 and cov["plan"]["drop"] == 0.0
    # null offline and null online is not agreement: 4 values are unverified, 2 agree
    assert (report["compared"], report["agreed"], report["both_null"]) == (6, 2, 4)
    assert report["mismatches"] == []
    assert report["problems"] == [
        "sessions: 0% present online against 100% in training (stale 100%, missing 0%)",
        "spend: 0% present online against 50% in training (stale 100%, missing 0%)"]
    code, out = run(fs_project, "features", "check", "churn")
    assert code == 1 and "DROPPED" in out and "consistent" not in out
    assert "failed: sessions: 0% present online against 100% in training" in out


def test_an_empty_online_store_fails_whatever_the_allowed_drop(fs_project: Project) -> None:
    code, out = run(fs_project, "features", "check", "profile", "--max-drop", "1")
    assert code == 1 and "online is empty: none of the 3 sampled entities has a value" in out
    fs_project.features.materialize(["profile"])
    code, out = run(fs_project, "features", "check", "profile")
    assert code == 0 and "consistent: 6 of 6 values of 3 entities match" in out


def test_max_drop_sets_how_much_coverage_may_fall(fs_project: Project) -> None:
    fs_project.features.materialize()
    code, out = run(fs_project, "features", "check", "churn", "--max-drop", "0.5", "--json")
    assert code == 1 and json.loads(out)["problems"] == [
        "sessions: 0% present online against 100% in training (stale 100%, missing 0%)"]
    code, out = run(fs_project, "features", "check", "churn", "--max-drop", "1")
    assert code == 0 and "consistent: 2 of 6 values" in out
    assert "4 null on both sides (not verified)" in out


def test_coverage_equal_to_trainings_passes(fs_project: Project) -> None:
    """Fresh activity for customer 1 only: half the entities present online, and half had a
    value at the end of the data offline too (customer 2's is older than the ttl there)."""
    now = datetime.now(UTC)
    fs_project.lake.write("activity", pa.table({
        "customer_id": pa.array([1], pa.int64()), "ev": pa.array([now - timedelta(days=1)], TS),
        "loaded": pa.array([now - timedelta(days=1)], TS), "sessions": pa.array([9], pa.int64()),
        "spend": [1.0], "channel": ["web"]}))
    fs_project.features.materialize()
    report = fs_project.features.check("activity")
    cov = {c.feature: c for c in report.coverage}
    assert (cov["sessions"].present, cov["sessions"].stale, cov["sessions"].training) == (
        0.5, 0.5, 0.5)
    assert report.ok and report.agreed == 3 and report.both_null == 3


def test_coverage_against_a_models_training_profile(fs_project: Project) -> None:
    from tarmac.catalog import models as mcat

    fs_project.features.materialize()
    code, out = run(fs_project, "features", "check", "profile", "--model", "nope")
    assert code == 2 and "no registered model named 'nope'" in out
    # a stored profile: plan had a value in 40% of training rows, age in all
    record = mcat.ModelVersion(
        model="m", version=1, run_id="r1", flavor="sklearn", task="binary", artifact="x",
        holdout="y", signature={}, spec={}, created_at=0, actor="test",
        profile={"plan": {"count": 10, "nulls": 6}, "age": {"count": 10, "nulls": 0}})
    with fs_project.catalog.write() as conn:
        mcat.insert_version(conn, record)
    report = fs_project.features.check("profile", model="m")
    assert report.ok and report.baseline == "model m v1 (training profile)"
    assert {c.feature: c.training for c in report.coverage} == {"plan": 0.4, "age": 1.0}


def test_materialize_says_how_many_values_are_already_stale(fs_project: Project) -> None:
    code, out = run(fs_project, "features", "materialize", "--json")
    got = {r["view"]: r for r in json.loads(out)}
    assert code == 0 and (got["activity"]["stale"], got["activity"]["ttl"]) == (2, "10d")
    assert got["activity"]["warning"] == (
        "2 of 2 values written to 'activity' (100%) are already older than its ttl (10d): "
        "they are served as null with status stale")
    assert (got["profile"]["stale"], got["profile"]["warning"]) == (0, None)
    now = datetime.now(UTC)
    fs_project.lake.write("activity", pa.table({
        "customer_id": pa.array([3], pa.int64()), "ev": pa.array([now], TS),
        "loaded": pa.array([now], TS), "sessions": pa.array([1], pa.int64()),
        "spend": [1.0], "channel": ["web"]}))
    code, out = run(fs_project, "features", "materialize", "activity", "--full")
    assert code == 0 and "warning: 2 of 3 values written to 'activity' (67%)" in " ".join(
        out.split())
    fresh = fs_project.features.materialize(["activity"], full=True)[0]
    assert fresh.stale == 2 and fresh.entities == 3


def test_a_source_with_no_entities_is_not_consistent(fs_project: Project) -> None:
    """Nothing compared is not a pass: an emptied source used to report 'consistent'."""
    empty = fs_project.lake.read("profile").slice(0, 0)
    fs_project.lake.write("profile", empty, mode="overwrite")
    code, out = run(fs_project, "features", "check", "profile", "--json")
    report = json.loads(out)
    assert code == 1 and report["entities"] == 0 and report["compared"] == 0
    assert report["problems"] == ["nothing to compare: the features' source holds no entity keys"]
