"""``tarmac predictions``: the log of one endpoint as a table or JSON, and clear errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from tarmac.cli import app
from tarmac.project import Project
from tarmac.serving.predlog import PredictionLog, PredictionRecord, new_prediction_id

runner = CliRunner()


def run(project: Project, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--project", str(project.root), *args])
    return result.exit_code, result.output


def rec(i: int, endpoint: str = "churn", when: datetime | None = None) -> PredictionRecord:
    now = when or datetime.now(UTC)
    return PredictionRecord(
        id=new_prediction_id(), request_id=f"r{i}", time=now, endpoint=endpoint,
        model=endpoint, version=2, role="champion", features={"plan": "basic", "tenure": i},
        feature_times={"plan": now, "tenure": None},
        feature_status={"plan": "present", "tenure": "stale"}, request={"customer_id": i},
        score=0.1 * i, label=i % 2 == 0, latency_ms=2.0)


@pytest.fixture
def logged(project: Project) -> Project:
    with PredictionLog(project, flush_every_s=3600) as log:
        log.append([rec(i) for i in range(5)] + [rec(9, "fraud")]
                   + [rec(7, when=datetime.now(UTC) - timedelta(hours=5))])
    return project


def test_table_shows_newest_first_within_since(logged: Project) -> None:
    code, out = run(logged, "predictions", "churn", "--since", "1h")
    assert code == 0, out
    assert "churn@2" in out and "1 present, 1 stale" in out
    assert "5 prediction(s) since" in out


def test_json_has_every_field_with_nested_values(logged: Project) -> None:
    code, out = run(logged, "predictions", "churn", "--since", "1d", "--limit", "3",
                    "--format", "json")
    assert code == 0, out
    rows = json.loads(out)
    assert len(rows) == 3
    assert rows[0]["features"]["plan"] == "basic" and rows[0]["request"]["customer_id"] == 4
    assert rows[0]["feature_status"] == {"plan": "present", "tenure": "stale"}
    assert {"id", "request_id", "time", "role", "shadow", "score", "label",
            "latency_ms"} <= set(rows[0])


def test_unknown_endpoint_names_close_ones(logged: Project) -> None:
    code, out = run(logged, "predictions", "chrun")
    assert code == 2 and "no predictions logged for endpoint 'chrun'" in out
    assert "did you mean churn" in out


def test_quiet_endpoint_is_just_empty(logged: Project) -> None:
    code, out = run(logged, "predictions", "fraud", "--since", "2026-01-01T00:00:00Z",
                    "--format", "json")
    assert code == 0 and len(json.loads(out)) == 1


def test_bad_since_is_one_clear_line(project: Project) -> None:
    code, out = run(project, "predictions", "churn", "--since", "lately")
    assert code == 2 and "since 'lately'" in out


def test_bad_format_is_refused(project: Project) -> None:
    code, out = run(project, "predictions", "churn", "--format", "xml")
    assert code == 2 and "xml" in out
