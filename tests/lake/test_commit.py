"""The atomic commit path on its own: typed plans that survive JSON, commits with one or several
application-transaction markers, replays that add nothing twice, and damaged plans refused by
name. (The ingest's kill tests cover the same path under real SIGKILLs.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tarmac import faults
from tarmac.catalog import now_us
from tarmac.catalog import sources as state_store
from tarmac.catalog.sources import SourceState
from tarmac.errors import CommitPlanError, UsageError, WriteConflictError
from tarmac.lake import CommitOutcome, CommitPlan, Committer, TableCommit
from tarmac.ledger.chain import batch_digest
from tarmac.project import Project

MARKERS = [("log/churn/p0", 41), ("log/churn/p1", 17)]


def batch(start: int, n: int) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + n), pa.int64()),
                     "score": pa.array([i / 10 for i in range(n)], pa.float64())})


class Offsets:
    """A catalog change like a sink's: the plan's markers as stream offsets, counting calls."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.calls = 0

    def __call__(self, conn: Any, outcome: CommitOutcome) -> None:
        self.calls += 1
        for app_id, version in outcome.plan.markers:
            state_store.save_state(conn, SourceState(
                "log", app_id, "predictions", version, {"value": version, "type": "int"}, None,
                0, None, now_us()))

    def saved(self) -> dict[str, int]:
        return {s.stream: s.seq for s in state_store.list_states(self.project.catalog)}


def audits(p: Project, action: str = "predictions.flush") -> list[dict[str, Any]]:
    return [json.loads(r.details) for r in p.ledger.audit(action=action, limit=1000)]


def plan_for(c: Committer, rows: pa.Table, markers: Any = MARKERS, **kw: Any) -> CommitPlan:
    return CommitPlan("plan-1", tuple(markers), (c.stage("predictions", rows),),
                      "predictions.flush", "churn", **kw)


# -- the plan -------------------------------------------------------------------------------------


def test_a_plan_round_trips_through_json_and_a_file(project: Project, tmp_path: Path) -> None:
    c = Committer(project.lake)
    appended = c.stage("predictions", batch(0, 5))
    merged = TableCommit("scores", pa.schema([("id", pa.int64())]), mode="merge",
                         merge_file=str(tmp_path / "m.parquet"), keys=("id",),
                         description="scores by id", extra={"load": 7})
    plan = CommitPlan("p-9", (("a", 3), ("b", 0)), (appended, merged), "stream.commit", "clicks",
                      details={"rows": 5}, payload={"offsets": {"0": 3}},
                      cleanup=(str(tmp_path / "staging"),))
    again = CommitPlan.from_json(plan.to_json())
    assert again == plan
    assert again.commits[0].rows == 5 and again.markers == (("a", 3), ("b", 0))
    plan.save(tmp_path / "plans" / "p.json")
    assert CommitPlan.load(tmp_path / "plans" / "p.json") == plan
    assert [f.name for f in (tmp_path / "plans").iterdir()] == ["p.json"]  # no temp file left


@pytest.mark.parametrize("text, problem", [
    ("{not json", "is not JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"format": 99}', "has plan format 99"),
    ('{"format": 1, "id": "x"}', "is missing field 'markers'"),
    ('{"format": 1, "id": "x", "markers": [["a", -1]], "commits": [], "action": "a", '
     '"target": "t", "details": {}, "payload": {}, "cleanup": [], "created_us": 1}',
     "invalid transaction marker"),
])
def test_a_damaged_plan_file_is_refused_naming_the_file(project: Project, tmp_path: Path,
                                                        text: str, problem: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(CommitPlanError, match=problem) as err:
        CommitPlan.load(path)
    assert str(path) in err.value.message
    with pytest.raises(CommitPlanError, match=problem):  # replay refuses it the same way
        Committer(project.lake).replay(path)
    assert path.exists() and not project.lake.exists("predictions")


@pytest.mark.parametrize("markers, problem", [
    ((), "at least one transaction marker"),
    ((("", 1),), "non-empty app id"),
    ((("a", -1),), "version >= 0"),
    ((("a", 1), ("a", 2)), "given twice in one commit: a"),
])
def test_a_plan_needs_valid_markers(project: Project, markers: Any, problem: str) -> None:
    step = TableCommit("t", pa.schema([("id", pa.int64())]))
    with pytest.raises(UsageError, match=problem):
        CommitPlan("p", markers, (step,), "a", "t")


def test_a_step_is_checked(project: Project) -> None:
    schema = pa.schema([("id", pa.int64())])
    with pytest.raises(UsageError, match="a merge step takes a merge_file and keys"):
        TableCommit("t", schema, mode="merge", merge_file="x.parquet")
    with pytest.raises(UsageError, match="unknown commit mode 'upsert'"):
        TableCommit("t", schema, mode="upsert")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="invalid table name 'Bad-Name'"):
        TableCommit("Bad-Name", schema)
    with pytest.raises(UsageError, match="one step per table"):
        CommitPlan("p", (("a", 1),), (TableCommit("t", schema), TableCommit("t", schema)),
                   "a", "t")


# -- applying and replaying ---------------------------------------------------------------------


def test_apply_then_replay_commits_once(project: Project) -> None:
    c, offsets = Committer(project.lake), Offsets(project)
    plan = plan_for(c, batch(0, 10), details={"model": "churn"})
    first = c.apply(plan, change=offsets)
    assert first.results["predictions"].operation == "WRITE"  # type: ignore[union-attr]
    assert first.recorded and not first.replayed and first.versions == {"predictions": 0}
    assert project.lake.read("predictions").num_rows == 10
    assert project.lake.applied("predictions", MARKERS)

    again = c.apply(plan, change=offsets)  # a replay of the same plan
    assert again.results["predictions"].operation == "SKIPPED"  # type: ignore[union-attr]
    assert again.replayed and not again.recorded and again.audit is None
    assert project.lake.read("predictions").num_rows == 10
    assert project.lake.version("predictions") == 0
    assert offsets.calls == 1 and offsets.saved() == dict(MARKERS)
    [record] = audits(project)
    assert record == {"model": "churn", "versions": {"predictions": 0}, "plan_id": "plan-1"}


def test_killed_after_the_data_commit_then_replayed(project: Project, tmp_path: Path) -> None:
    """The process dies between the Delta commit and the catalog transaction: the replay
    skips the data (its markers are in the table) and makes the catalog step once."""
    c, offsets = Committer(project.lake), Offsets(project)
    path = tmp_path / "plans" / "flush.json"

    def die(**_: Any) -> None:
        raise KeyboardInterrupt  # as abrupt as it gets inside Python

    with faults.inject("commit.after_step", die), pytest.raises(KeyboardInterrupt):
        c.commit(plan_for(c, batch(0, 10)), path=path, change=offsets)
    assert path.exists() and project.lake.read("predictions").num_rows == 10
    assert offsets.calls == 0 and audits(project) == []

    done = c.replay(path, change=offsets)
    assert done is not None and done.replayed and done.recorded
    assert not path.exists() and c.replay(path, change=offsets) is None
    assert project.lake.read("predictions").num_rows == 10
    assert offsets.calls == 1 and len(audits(project)) == 1


def test_killed_after_the_catalog_step_then_replayed(project: Project, tmp_path: Path) -> None:
    """The process dies after the catalog transaction, before the plan file is removed: the
    replay finds the plan's audit record and changes nothing."""
    c, offsets = Committer(project.lake), Offsets(project)
    path = tmp_path / "flush.json"

    def die(**_: Any) -> None:
        raise KeyboardInterrupt

    with faults.inject("commit.after_catalog", die), pytest.raises(KeyboardInterrupt):
        c.commit(plan_for(c, batch(0, 10)), path=path, change=offsets)
    assert path.exists() and offsets.calls == 1

    done = c.replay(path, change=offsets)
    assert done is not None and not done.recorded
    assert offsets.calls == 1 and len(audits(project)) == 1
    assert project.lake.read("predictions").num_rows == 10 and not path.exists()


def test_a_waiting_plan_must_be_replayed_first(project: Project, tmp_path: Path) -> None:
    c = Committer(project.lake)
    path = tmp_path / "flush.json"
    plan_for(c, batch(0, 3)).save(path)
    with pytest.raises(UsageError, match=f"already waiting at {path}: replay it first"):
        c.commit(plan_for(c, batch(3, 3), markers=[("log/churn/p0", 42)]), path=path)


# -- several markers in one commit -----------------------------------------------------------------


def test_one_commit_with_a_marker_per_partition_then_replayed(project: Project,
                                                              tmp_path: Path) -> None:
    c, offsets = Committer(project.lake), Offsets(project)
    ids = [f"req-{i}" for i in range(10)]
    path = tmp_path / "flush.json"
    out = c.write("predictions", [batch(0, 6), batch(6, 4).to_batches()[0]], markers=MARKERS,
                  action="predictions.flush", target="churn", ids=ids, change=offsets,
                  plan_path=path)
    assert out.versions == {"predictions": 0} and not path.exists()
    assert project.lake.history("predictions")[0]["rows_added"] == 10
    for app_id, version in MARKERS:  # both markers ride in the one Delta commit
        assert project.lake.transaction_version("predictions", app_id) == version
    [record] = audits(project)
    count, digest = batch_digest(ids)
    assert (record["count"], record["ids_sha256"]) == (count, digest)

    # the same flush again (a retry after a crash): nothing staged, nothing doubled
    files = sorted(p.name for p in Path(project.lake.uri("predictions")).glob("*.parquet"))
    again = c.write("predictions", batch(0, 10), markers=MARKERS, action="predictions.flush",
                    target="churn", ids=ids, change=offsets)
    assert again.results["predictions"].operation == "SKIPPED"  # type: ignore[union-attr]
    assert sorted(p.name for p in Path(project.lake.uri("predictions")).glob("*.parquet")) \
        == files
    assert project.lake.read("predictions").num_rows == 10
    assert offsets.calls == 1 and len(audits(project)) == 1

    # the next flush moves both partitions on
    c.write("predictions", batch(10, 2), markers=[("log/churn/p0", 42), ("log/churn/p1", 18)],
            action="predictions.flush", target="churn", change=offsets)
    assert project.lake.read("predictions").num_rows == 12
    assert offsets.saved() == {"log/churn/p0": 42, "log/churn/p1": 18}


def test_markers_only_partly_applied_are_refused(project: Project) -> None:
    """One partition's marker is in the table, the other's is not: another commit covered part
    of this one's work, so it is refused whole and nothing is written."""
    lake = project.lake
    lake.write("predictions", batch(0, 5), txn=("log/churn/p0", 41))
    assert not lake.applied("predictions", MARKERS)
    assert lake.applied("predictions", [("log/churn/p0", 40)])
    with pytest.raises(WriteConflictError,
                       match=r"log/churn/p0@41 but not log/churn/p1@17.*nothing was written"):
        lake.write("predictions", batch(5, 5), txn=MARKERS)
    c = Committer(lake)
    with pytest.raises(WriteConflictError, match="log/churn/p0@41"):
        c.apply(plan_for(c, batch(5, 5)))
    assert lake.version("predictions") == 0 and lake.read("predictions").num_rows == 5
    # markers that all advance are committed together
    lake.write("predictions", batch(5, 5), txn=[("log/churn/p0", 42), ("log/churn/p1", 17)])
    assert lake.applied("predictions", [("log/churn/p0", 42), ("log/churn/p1", 17)])


def test_lake_write_takes_one_marker_or_several(project: Project) -> None:
    lake = project.lake
    assert lake.write("t", batch(0, 2), txn=("a", 1)).operation == "WRITE"
    assert lake.write("t", batch(0, 2), txn=("a", 1)).operation == "SKIPPED"
    assert lake.write("t", batch(2, 2), txn=[("b", 1), ("c", 1)]).operation == "WRITE"
    assert lake.write("t", batch(2, 2), txn=[("b", 1), ("c", 1)]).operation == "SKIPPED"
    assert lake.read("t").num_rows == 4
    with pytest.raises(UsageError, match="invalid transaction marker 'a'"):
        lake.write("t", batch(0, 1), txn="a")  # type: ignore[arg-type]


def test_staging_nothing_needs_a_schema(project: Project) -> None:
    with pytest.raises(UsageError, match="no rows and no schema given"):
        Committer(project.lake).stage("predictions", [])
    step = Committer(project.lake).stage("predictions", [], schema=batch(0, 1).schema)
    assert step.files == () and step.rows == 0
