"""``FeatureStore`` is a facade over one module per job; what it adds is the registry cache and
the calls the CLI and console make (``last_materialization``)."""

from __future__ import annotations

from tarmac.features import FeatureStore, OnlineFeatures
from tarmac.project import Project


def test_last_materialization_is_none_until_the_view_is_materialized(
        fs_project: Project) -> None:
    fs: FeatureStore = fs_project.features
    assert fs.last_materialization("activity") is None
    fs.materialize(["activity"])
    last = fs.last_materialization("activity")
    assert last is not None and last.view == "activity" and last.ended_at
    assert fs.last_materialization("profile") is None  # not asked


def test_online_reads_the_same_through_a_service_or_its_refs(fs_project: Project) -> None:
    fs = fs_project.features
    fs.materialize()
    entities = [{"customer_id": 1}, {"customer_id": 999_999}]
    by_service = fs.online("churn", entities)
    by_refs = fs.online(["activity:sessions", "activity:spend", "profile:plan"], entities)
    assert isinstance(by_service, OnlineFeatures)
    assert by_service.rows == by_refs.rows and by_service.status == by_refs.status
    assert set(by_service.status[1].values()) == {"missing"}
    # resolved once per distinct request, then served from the cached plan
    assert fs.online("churn", entities).rows == by_service.rows
