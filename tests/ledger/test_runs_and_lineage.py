"""Runs, lineage graphs and their OpenLineage export."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tarmac.project import Project


def build_pipeline(p: Project) -> None:
    p.lake.write("raw_customers", {"id": [1, 2, 3], "region": ["n", "s", "n"]})
    p.lake.write("raw_orders", {"id": [1, 1, 2], "amount": [10.0, 5.0, 7.5]})
    with p.ledger.run("build_summary", params={"by": "region"}):
        t = p.sql("SELECT c.region, sum(o.amount) AS spend FROM raw_customers c "
                  "JOIN raw_orders o USING (id) GROUP BY 1")
        p.lake.write("summary", t, mode="overwrite")
    with p.ledger.run("report"):
        p.lake.write("report", p.lake.read("summary"), mode="overwrite")


def test_run_records_inputs_outputs_and_status(any_project: Project) -> None:
    build_pipeline(any_project)
    run = any_project.ledger.runs(job="build_summary", limit=1).items[0]
    assert run.status == "succeeded" and run.params == {"by": "region"}
    assert sorted(map(str, run.inputs)) == ["raw_customers@0", "raw_orders@0"]
    assert [str(o) for o in run.outputs] == ["summary@0"]
    assert run.ended_at is not None and run.duration_s >= 0


def test_failed_run_is_recorded_with_error_and_audited(project: Project) -> None:
    with pytest.raises(ValueError), project.ledger.run("flaky"):
        raise ValueError("bad data in batch 3")
    run = project.ledger.runs(job="flaky", limit=1).items[0]
    assert run.status == "failed" and "bad data in batch 3" in run.error
    audit = project.ledger.audit(action="run.failed", limit=1).items[0]
    assert audit.target == "flaky" and "bad data in batch 3" in audit.details


def test_upstream_and_downstream_trees(project: Project) -> None:
    build_pipeline(project)
    up = project.ledger.lineage("report").to_dict()
    run = up["children"][0]
    assert run["name"] == "report" and run["children"][0]["name"] == "summary"
    summary_run = run["children"][0]["children"][0]
    assert summary_run["name"] == "build_summary"
    assert sorted(c["name"] for c in summary_run["children"]) == ["raw_customers", "raw_orders"]

    down = project.ledger.lineage("raw_orders", direction="downstream").to_dict()
    names = []

    def walk(node: dict) -> None:
        names.append(node["name"])
        for c in node["children"]:
            walk(c)

    walk(down)
    assert names == ["raw_orders", "build_summary", "summary", "report", "report"]


def test_openlineage_events_are_well_formed(project: Project) -> None:
    build_pipeline(project)
    events = project.ledger.openlineage("summary")
    kinds = [(e["job"]["name"], e["eventType"]) for e in events]
    assert ("build_summary", "START") in kinds and ("build_summary", "COMPLETE") in kinds
    complete = next(e for e in events if e["eventType"] == "COMPLETE"
                    and e["job"]["name"] == "build_summary")
    assert complete["job"]["namespace"] == "test"
    assert {i["name"] for i in complete["inputs"]} == {"raw_customers", "raw_orders"}
    out = complete["outputs"][0]
    assert out["name"] == "summary" and out["facets"]["version"]["datasetVersion"] == "0"
    for e in events:
        assert set(e) >= {"eventType", "eventTime", "run", "job", "producer", "schemaURL"}
        assert len(e["run"]["runId"]) == 36


def test_run_of_a_dead_process_is_marked_failed(project: Project) -> None:
    code = (
        "import os, signal, tarmac\n"
        f"p = tarmac.open({str(project.root)!r})\n"
        "with p.ledger.run('doomed'):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=os.environ.copy())
    assert proc.returncode == -9
    assert project.ledger.runs(job="doomed", limit=1).items[0].status == "running"
    reaped = project.ledger.reap()
    run = project.ledger.runs(job="doomed", limit=1).items[0]
    assert reaped == [run.id] and run.status == "failed" and "process ended" in run.error
    assert project.ledger.verify().ok


def test_lineage_shows_only_the_newest_runs_per_table(project: Project) -> None:
    for i in range(8):
        with project.ledger.run(f"hourly_{i}"):
            project.lake.write("events", {"n": [i]})
    tree = project.ledger.lineage("events").to_dict()
    assert [c["name"] for c in tree["children"]] == [f"hourly_{i}" for i in (7, 6, 5, 4, 3)]
