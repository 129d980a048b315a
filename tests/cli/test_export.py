"""``tarmac deploy export`` as a user types it: files written, next steps printed, warnings on
stderr, bad input in one line with exit code 2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from models.conftest import build
from tarmac.cli import app
from tarmac.project import Project

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    p = build(tmp_path_factory.mktemp("export") / "proj")
    p.models.train("risk")
    yield p
    p.close()


def run(p: Project, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["--project", str(p.root), "deploy", "export", *args])
    return result.exit_code, result.stdout, result.stderr


def test_export_kubernetes(trained: Project, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    code, stdout, stderr = run(trained, "risk", "-o", str(out), "--image", "reg.io/risk:7",
                               "--replicas", "1", "--max-replicas", "4")
    assert code == 0, stdout + stderr
    assert "docker build -t reg.io/risk:7" in stdout
    assert "kubectl create secret generic risk-secrets --from-literal=TARMAC_AUDIT_KEY=..." \
        in stdout
    assert f"kubectl apply -f {out / 'kubernetes'}" in stdout
    assert "no champion" in stderr  # trained, never promoted: exported with a warning
    hpa = yaml.safe_load((out / "kubernetes" / "hpa.yaml").read_text())
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    deployment = yaml.safe_load((out / "kubernetes" / "deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "reg.io/risk:7"
    assert (out / "Dockerfile").is_file()


def test_export_docker(trained: Project, tmp_path: Path) -> None:
    code, stdout, _ = run(trained, "risk", "--target", "docker", "-o", str(tmp_path / "d"))
    assert code == 0 and (tmp_path / "d" / "Dockerfile").is_file()
    assert not (tmp_path / "d" / "kubernetes").exists() and "kubectl" not in stdout


@pytest.mark.parametrize(("args", "message"), [
    (["risk", "--target", "helm"], "unknown target 'helm'"),
    (["rsik"], "no registered model named 'rsik'; did you mean 'risk'?"),
    (["risk", "--cpu-limit", "lots"], "cpu_limit 'lots': expected a CPU quantity"),
    (["risk", "--k8s-name", "Not_Valid"], "'Not_Valid' is not a valid DNS-1123 label"),
])
def test_bad_input_is_one_line_and_exit_2(trained: Project, tmp_path: Path, args: list[str],
                                          message: str) -> None:
    code, _, stderr = run(trained, *args, "-o", str(tmp_path / "deploy"))
    assert code == 2 and message in stderr and "Traceback" not in stderr


def test_out_is_a_file(trained: Project, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    code, _, stderr = run(trained, "risk", "-o", str(tmp_path / "f"))
    assert code == 2 and "is a file, not a folder" in stderr
