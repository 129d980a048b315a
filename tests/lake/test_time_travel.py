"""Time travel, history, compaction and vacuum."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pyarrow as pa
import pyarrow.compute  # noqa: F401 (pa.compute)
import pytest

from tarmac.errors import TarmacError, UsageError, VersionNotFoundError


def ids(table: pa.Table) -> list[int]:
    return sorted(table.column("id").to_pylist())


@pytest.fixture
def three_versions(project):
    """t@0 = [1, 2], t@1 = [1, 2, 3], t@2 = [1, 2, 3, 4], commits at least 30 ms apart."""
    for batch in ([1, 2], [3], [4]):
        project.lake.write("t", {"id": batch})
        time.sleep(0.03)
    return project


def test_read_by_version(three_versions):
    p = three_versions
    assert ids(p.lake.read("t", version=0)) == [1, 2]
    assert ids(p.lake.read("t", version=1)) == [1, 2, 3]
    assert ids(p.lake.read("t", version=2)) == ids(p.lake.read("t")) == [1, 2, 3, 4]
    assert p.lake.table("t", version=1).version() == 1
    # a filter and a projection apply to the old version too
    assert ids(p.lake.read("t", version=1, filter="id >= 2")) == [2, 3]
    assert ids(p.lake.read("t", version=0, filter=pa.compute.field("id") >= 2)) == [2]


def test_read_as_of_between_commits(three_versions):
    p = three_versions
    h = {x["version"]: x["time"] for x in p.lake.history("t")}
    between = h[0] + (h[1] - h[0]) / 2
    assert h[0] < between < h[1]
    assert ids(p.lake.read("t", as_of=between)) == [1, 2]
    assert ids(p.lake.read("t", as_of=h[1] + (h[2] - h[1]) / 2)) == [1, 2, 3]
    assert ids(p.lake.read("t", as_of=between.isoformat())) == [1, 2]
    # naive datetimes are UTC
    assert ids(p.lake.read("t", as_of=between.replace(tzinfo=None))) == [1, 2]
    assert ids(p.lake.read("t", as_of=h[2] + timedelta(days=1))) == [1, 2, 3, 4]


@pytest.mark.parametrize("version", [3, 99, -1])
def test_missing_version_names_valid_range(three_versions, version):
    with pytest.raises(VersionNotFoundError) as exc:
        three_versions.lake.read("t", version=version)
    assert "has versions 0 to 2" in str(exc.value)
    assert f"version {version} does not exist" in str(exc.value)


def test_as_of_before_creation(three_versions):
    first = three_versions.lake.history("t")[-1]["time"]
    with pytest.raises(VersionNotFoundError, match="did not exist at .*first version was written"):
        three_versions.lake.read("t", as_of=first - timedelta(hours=1))


def test_as_of_bad_input(three_versions):
    with pytest.raises(UsageError, match="invalid time 'yesterday'"):
        three_versions.lake.read("t", as_of="yesterday")
    with pytest.raises(UsageError, match="either version or as_of"):
        three_versions.lake.read("t", version=0, as_of="2024-01-01T00:00:00")


def test_history_newest_first_with_run_and_actor(project, monkeypatch):
    p = project
    monkeypatch.setenv("TARMAC_USER", "alice")
    with p.ledger.run("nightly") as run:
        p.lake.write("t", {"id": [1, 2, 3]})
    monkeypatch.setenv("TARMAC_USER", "bob")
    w = p.lake.write("t", {"id": [4, 5]}, mode="overwrite")
    h = p.lake.history("t")
    assert [(x["version"], x["operation"], x["rows_added"]) for x in h] == [
        (1, "WRITE", 2), (0, "WRITE", 3)]
    assert h[0]["time"] >= h[1]["time"]
    assert (h[1]["run_id"], h[1]["actor"]) == (run.id, "alice")
    assert (h[0]["run_id"], h[0]["actor"]) == (w.run_id, "bob")
    assert h[0]["parameters"].get("mode") == "Overwrite"
    for entry in h:
        r = p.ledger.get_run(entry["run_id"])
        assert r is not None and r.status == "succeeded" and r.actor == entry["actor"]
    assert p.ledger.get_run(run.id).job == "nightly"
    assert p.ledger.get_run(w.run_id).job == "lake.overwrite"
    audit = p.ledger.audit(target="t").items
    assert [(a.actor, json.loads(a.details)["version"]) for a in audit] == [("bob", 1),
                                                                             ("alice", 0)]
    assert len(p.lake.history("t", limit=1)) == 1


# -- compact / vacuum ----------------------------------------------------------------------------


def _files(p, name, **kw) -> int:
    return len(p.lake.table(name, **kw).file_uris())


def test_compact_reduces_files_and_keeps_rows(project):
    p = project
    for i in range(5):
        p.lake.write("t", {"id": list(range(i * 10, i * 10 + 10)), "g": [i % 2] * 10})
    assert _files(p, "t") == 5
    before = p.lake.read("t").sort_by("id")
    metrics = p.lake.compact("t")
    assert metrics["numFilesRemoved"] == 5 and metrics["numFilesAdded"] == 1
    assert _files(p, "t") == 1
    assert p.lake.read("t").sort_by("id").equals(before)
    assert p.lake.history("t")[0]["operation"] == "OPTIMIZE"
    assert p.lake.version("t") == 5
    assert p.catalog.get_dataset("t").files == 1
    assert p.ledger.audit(target="t", action="lake.optimize").items
    # compacting an already compact table commits nothing
    p.lake.compact("t")
    assert p.lake.version("t") == 5
    # z-order rewrites too and keeps the rows
    p.lake.write("t", {"id": [100], "g": [0]})
    p.lake.compact("t", z_order=["g", "id"])
    assert ids(p.lake.read("t")) == list(range(50)) + [100]
    assert p.ledger.verify().ok


def test_vacuum_removes_old_files(project):
    p = project
    p.lake.write("t", {"id": [1, 2]})
    p.lake.write("t", {"id": [3]})
    p.lake.write("t", {"id": [9]}, mode="overwrite")
    assert p.lake.vacuum("t") == []  # default 7 days keeps everything
    planned = p.lake.vacuum("t", retain="0h", dry_run=True)
    assert len(planned) == 2
    assert ids(p.lake.read("t", version=0)) == [1, 2]  # dry run deleted nothing
    removed = p.lake.vacuum("t", retain="0h")
    assert sorted(removed) == sorted(planned)
    assert ids(p.lake.read("t")) == [9]
    assert [h["operation"] for h in p.lake.history("t")][-3:] == ["WRITE", "WRITE", "WRITE"]
    audit = p.ledger.audit(action="lake.vacuum").items
    assert [{k: json.loads(a.details)[k] for k in ("files_removed", "retain_hours")}
            for a in audit] == [{"files_removed": 2, "retain_hours": 0},
                                {"files_removed": 0, "retain_hours": 168}]
    removal = json.loads(audit[0].details)
    assert removal["operation"] == "VACUUM" and removal["version"] == p.lake.version("t")
    assert p.ledger.verify().ok


def test_time_travel_after_vacuum_fails_cleanly(project):
    p = project
    p.lake.write("t", {"id": [1]})
    p.lake.write("t", {"id": [2]}, mode="overwrite")
    p.lake.vacuum("t", retain="0h")
    with pytest.raises(TarmacError, match="version 0"):
        p.lake.read("t", version=0)


def test_vacuum_commits_go_through_the_ledger(project):
    p = project
    p.lake.write("t", {"id": [1]})
    p.lake.write("t", {"id": [2]}, mode="overwrite")
    p.lake.vacuum("t", retain="0h")
    for h in p.lake.history("t"):
        assert h["run_id"] and p.ledger.get_run(h["run_id"]) is not None, h["operation"]
        assert h["actor"], h["operation"]
    assert p.catalog.get_dataset("t").version == p.lake.version("t")


@pytest.mark.parametrize("retain", ["7 days", "1w", "-1h", "h", ""])
def test_invalid_retain(project, retain):
    project.lake.write("t", {"id": [1]})
    with pytest.raises(UsageError, match="invalid retention"):
        project.lake.vacuum("t", retain=retain)
    assert project.ledger.audit(action="lake.vacuum").items == []


def test_retain_forms(project):
    project.lake.write("t", {"id": [1]})
    project.lake.vacuum("t", retain="2d")
    project.lake.vacuum("t", retain=timedelta(hours=5))
    project.lake.vacuum("t", retain="90m")
    hours = [json.loads(a.details)["retain_hours"]
             for a in project.ledger.audit(action="lake.vacuum").items]
    assert hours == [1, 5, 48]
