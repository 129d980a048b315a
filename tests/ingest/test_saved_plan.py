"""A load's saved plan, read back by the next run: one an older Tarmac staged (an untyped dict)
is finished like a current one, and a damaged one fails its stream naming the load."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import tarmac
from tarmac.catalog import sources as state_store

from .test_kill import _company, _run, _state, reference  # noqa: F401 - reference: a fixture


def _legacy(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan dict the loader saved before the typed CommitPlan, built from a current plan."""
    rejects, rows = plan["commits"]
    p = plan["payload"]
    return {"load_id": plan["id"], "source": p["source"], "stream": p["stream"],
            "table": p["table"], "seq": p["seq"], "mode": rows["mode"],
            "merge_file": rows["merge_file"], "keys": rows["keys"], "data_files": rows["files"],
            "quarantine_files": rejects["files"], "schema": rows["schema"],
            "cursor": p["cursor"], "contract": p["contract"], "files": p["files"],
            "reset_files": p["reset_files"], "rows_total": p["rows_total"], "stats": p["stats"],
            "staging": plan["cleanup"][0], "description": rows["description"],
            "owner": p["owner"], "tags": p["tags"], "column_tags": p["column_tags"]}


def _staged(root: Path) -> Path:
    """A project whose load was killed right after its plans were saved."""
    root = root / "proj"
    _company(root)
    killed = _run(root, {"TARMAC_FAULT_KILL_AT": "planned"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    return root


def _rewrite(root: Path, edit: Any) -> list[str]:
    with tarmac.open(root) as p, p.catalog.write() as conn:
        staged = state_store.loads(p.catalog, statuses=("staged",))
        for load in staged:
            assert load.plan is not None and load.plan["format"] == 1
            state_store.set_load(conn, load.id, status="staged", plan=edit(load.plan))
    return [load.id for load in staged]


def test_a_load_staged_by_an_older_version_is_finished(
        tmp_path: Path, reference: dict[str, Any]) -> None:  # noqa: F811 - the fixture
    root = _staged(tmp_path)
    assert _rewrite(root, _legacy)
    with tarmac.open(root) as p:
        results = p.ingest()
    assert all(r.status == "succeeded" for r in results), results
    assert any(r.recovered for r in results)
    assert _state(root) == reference


def test_a_damaged_plan_fails_its_stream_naming_the_load(tmp_path: Path) -> None:
    root = _staged(tmp_path)
    ids = _rewrite(root, lambda plan: {**plan, "commits": "garbage"})
    with tarmac.open(root) as p:
        results = {r.source: r for r in p.ingest()}
    failed = [r for r in results.values() if r.status == "failed"]
    assert failed, results
    for r in failed:
        assert "the staged plan of load" in (r.error or "") and "is not a valid commit plan" \
            in (r.error or ""), r.error
        assert any(i in (r.error or "") for i in ids)
