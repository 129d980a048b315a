"""The feature commands as a user types them: apply, features list/show/materialize/get/check."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tarmac.cli import app
from tarmac.project import Project

from .conftest import DEFINITIONS

runner = CliRunner()


def run(project: Project, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--project", str(project.root), *args])
    return result.exit_code, result.output


def test_apply_prints_the_plan_and_refuses_breaking_changes(fs_project: Project) -> None:
    (fs_project.root / "definitions.py").write_text(
        DEFINITIONS.replace('Feature("age", Int64)', 'Feature("age", Float64)'))
    code, out = run(fs_project, "apply", "--dry-run")
    assert code == 0 and "~ view profile v2" in out and "~ feature age: int64 -> float64" in out
    assert "dry run: nothing registered" in out
    code, out = run(fs_project, "apply")
    assert code == 0 and "applied: 0 to add, 1 to change, 0 to remove" in out
    code, out = run(fs_project, "apply")
    assert code == 0 and "nothing to apply" in out


def test_features_list_show_materialize_get_check(fs_project: Project) -> None:
    code, out = run(fs_project, "features", "list", "--json")
    rows = json.loads(out)
    assert code == 0 and {(r["kind"], r["name"]) for r in rows} >= {("view", "activity"),
                                                                   ("service", "churn")}
    code, out = run(fs_project, "features", "materialize", "--json")
    assert code == 0 and {r["view"]: r["entities"] for r in json.loads(out)} == {
        "activity": 2, "profile": 3}
    code, out = run(fs_project, "features", "show", "activity", "--json")
    info = json.loads(out)
    assert code == 0 and info["online_records"] == 2 and info["upstream"] == ["activity@0"]
    assert info["stats"]["sessions"]["count"] == 2 and info["ttl"] == "10d"
    code, out = run(fs_project, "features", "get", "churn", "-e", "customer_id=2",
                    "-e", "customer_id=404", "--json")
    got = json.loads(out)["results"]
    assert code == 0 and got[0]["values"]["plan"] == "premium"
    assert got[1]["status"]["plan"] == "missing"
    code, out = run(fs_project, "features", "check", "profile")
    assert code == 0 and "consistent" in out


def test_feature_command_errors_are_one_line_with_exit_2(fs_project: Project) -> None:
    code, out = run(fs_project, "features", "get", "chrun", "-e", "customer_id=1")
    assert code == 2 and "did you mean 'churn'" in out and "Traceback" not in out
    code, out = run(fs_project, "features", "get", "churn", "-e", "customer_id")
    assert code == 2 and "expected KEY=VALUE" in out
    code, out = run(fs_project, "features", "show", "nothing")
    assert code == 2 and "no feature view or service named 'nothing'" in out
    (fs_project.root / "definitions.py").write_text("import nope\n")
    code, out = run(fs_project, "apply")
    assert code == 2 and "line 1: ModuleNotFoundError" in out


def test_features_get_json_keeps_integer_keys_and_reads_request_values(
        fs_project: Project) -> None:
    # no ttl, so customer 2's old activity is served (not stale) and basket_share has a value
    (fs_project.root / "definitions.py").write_text(DEFINITIONS.replace('ttl="10d",', ""))
    code, out = run(fs_project, "apply")
    assert code == 0, out
    code, out = run(fs_project, "features", "materialize")
    assert code == 0
    code, out = run(fs_project, "features", "get", "churn", "-e", "customer_id=2", "--json")
    assert code == 0
    assert json.loads(out)["results"][0]["entity"] == {"customer_id": 2}  # not "2"
    # an on-demand feature's request value goes in the same --entity, typed as a number
    code, out = run(fs_project, "features", "get", "scored", "-e",
                    "customer_id=2,basket=15", "--json")
    assert code == 0, out
    got = json.loads(out)["results"][0]
    assert got["entity"] == {"customer_id": 2, "basket": 15}
    assert got["values"]["basket_share"] == 0.75 and got["status"]["basket_share"] == "present"
    code, out = run(fs_project, "features", "get", "scored", "-e", "customer_id=2,basket=15")
    assert code == 0 and "customer_id=2" in out and "0.75" in out


def test_features_get_help_says_how_to_pass_request_values(fs_project: Project) -> None:
    code, out = run(fs_project, "features", "get", "--help")
    assert code == 0 and "request values" in out
    assert "--entity customer_id=42,basket=19.99" in out
