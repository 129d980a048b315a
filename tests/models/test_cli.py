"""The model commands as a user (and a CI job) types them, exit codes included."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tarmac.cli import app
from tarmac.project import Project

from .conftest import definitions, redefine

runner = CliRunner()


def run(project: Project, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--project", str(project.root), *args])
    return result.exit_code, result.output


def test_train_validate_promote_rollback_from_the_command_line(mproject: Project,
                                                               tmp_path: Path) -> None:
    p = mproject
    code, out = run(p, "train", "risk", "--param", "C=0.5")
    assert code == 0 and "registered risk v1" in out and "roc_auc" in out
    assert "inputs labels@0, signals@0" in out and "next: tarmac validate risk 1" in out
    code, out = run(p, "validate", "risk", "1")
    assert code == 0 and "passed" in out and "no champion yet" in out
    code, out = run(p, "promote", "risk", "1")
    assert code == 0 and "promoted risk v1 to champion" in out

    code, out = run(p, "train", "risk", "--param", "only=region", "--json")
    trained = json.loads(out)
    assert code == 0 and trained["version"] == 2 and trained["params"]["only"] == "region"
    report = tmp_path / "report.md"
    code, out = run(p, "validate", "risk", "--format", "markdown", "--output", str(report))
    assert code == 1  # a gate failed
    assert out.startswith("### ❌ risk v2 failed") and "| Gate | Result |" in out
    assert report.read_text() == out and not out.endswith("\n\n")
    code, out = run(p, "promote", "risk", "2")  # refused by the gates: exit 1, not 2
    assert code == 1 and "not promoting risk v2 to champion: its latest validation failed" in out
    code, out = run(p, "promote", "risk", "2", "--force", "--reason", "load test")
    assert code == 0 and "(forced)" in out
    code, out = run(p, "rollback", "risk", "--reason", "worse")
    assert code == 0 and "rolled back risk champion: v2 -> v1" in out
    code, out = run(p, "rollback", "risk", "--to", "2")
    assert code == 1 and "its gates never passed" in out

    code, out = run(p, "runs", "--model", "risk", "--json")
    runs = json.loads(out)
    assert code == 0 and [r["run"] for r in runs] == [2, 1]
    assert runs[1]["params"] == {"C": 0.5, "only": None}
    assert runs[1]["inputs"] == {"labels": 0, "signals": 0}
    code, out = run(p, "runs", "--model", "risk")
    assert code == 0 and "roc_auc" in out and "labels@0" in out
    code, out = run(p, "models", "list", "--json")
    (listed,) = json.loads(out)
    assert code == 0 and listed["model"] == "risk" and listed["aliases"] == "champion v1"
    code, out = run(p, "models", "show", "risk", "--json")
    shown = json.loads(out)
    assert shown["aliases"] == {"champion": 1}
    assert [v["validation"]["status"] for v in shown["versions"]] == ["failed", "passed"]
    assert [h["action"] for h in shown["history"]] == ["rollback", "promote", "promote"]
    assert shown["profile"]["a"]["count"] > 0
    code, out = run(p, "models", "show", "risk")
    assert code == 0 and "alias history" in out and "forced" in out and "load test" in out
    code, out = run(p, "lineage", "model:risk@1")
    assert code == 0 and "training_set:risk@1" in out and "signals@0" in out
    code, out = run(p, "lineage", "training_set:risk@1", "--downstream", "--json")
    tree = json.loads(out)
    assert [(r["name"], [c["version"] for c in r["children"]]) for r in tree["children"]] == [
        ("train:risk", [1])]  # only the run that read @1, and the version it wrote
    code, out = run(p, "lineage", "model:risk@1", "--openlineage")
    assert code == 0 and {e["job"]["name"] for e in json.loads(out)} == {"train:risk"}
    code, out = run(p, "lineage", "model:risk@9")
    assert code == 2 and "no recorded lineage for 'model:risk@9'" in out
    code, out = run(p, "audit", "log", "--json")
    actions = {r["action"] for r in json.loads(out)}
    assert {"model.register", "model.validate", "model.promote", "model.rollback"} <= actions


def test_validate_exit_2_when_a_gate_cannot_run(mproject: Project) -> None:
    redefine(mproject, definitions(gates='[slice_metric("roc_auc", by="regoin") >= 0.5]'))
    run(mproject, "train", "risk")
    code, out = run(mproject, "validate", "risk", "--format", "json")
    assert code == 2 and json.loads(out)["results"][0]["status"] == "error"


def test_annotate_a_version(mproject: Project) -> None:
    run(mproject, "train", "risk")
    code, out = run(mproject, "models", "annotate", "risk", "1", "-d", "baseline",
                    "--tag", "ticket=CHURN-42", "--tag", "owner=ml")
    assert code == 0 and "risk v1: baseline; tags owner=ml, ticket=CHURN-42" in out
    code, out = run(mproject, "models", "annotate", "risk", "1", "--tag", "owner=")
    assert code == 0 and "tags ticket=CHURN-42" in out and "owner" not in out
    assert mproject.models.version("risk", 1).description == "baseline"
    code, out = run(mproject, "models", "annotate", "risk", "1", "--tag", "oops")
    assert code == 2 and "expected KEY=VALUE" in out
    code, out = run(mproject, "models", "annotate", "risk", "5", "-d", "x")
    assert code == 2 and "has no version 5" in out


def test_model_command_errors(mproject: Project) -> None:
    code, out = run(mproject, "train", "risk", "--param", "C")
    assert code == 2 and "expected NAME=VALUE" in out
    code, out = run(mproject, "validate", "risk")
    assert code == 2 and "no registered model named 'risk'" in out
    code, out = run(mproject, "validate", "risk", "--format", "html")
    assert code == 2 and "expected table, markdown or json" in out
    code, out = run(mproject, "rollback", "risk")
    assert code == 2 and "no registered model named 'risk'" in out
    code, out = run(mproject, "lineage", "model:nothing")
    assert code == 2 and "no recorded lineage for 'model:nothing'" in out
    code, out = run(mproject, "models", "list")
    assert code == 0 and "no models yet" in out
