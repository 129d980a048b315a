"""``tarmac deploy``: the NAME form beside the ``status`` subcommand, exit codes (2 for bad
input, 1 for a refused promotion), JSON output, and a model named like a subcommand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving.conftest import build_served
from tarmac.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "proj"
    build_served(folder).close()
    return folder


def run(root: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--project", str(root), *args])
    return result.exit_code, result.output


def test_deploy_canary_status_and_abort(root: Path) -> None:
    code, out = run(root, "deploy", "risk", "--canary", "2", "--percent", "20")
    assert code == 0, out
    assert "v1 80% / v2 20% canary" in out
    code, out = run(root, "deploy", "status", "risk", "--json")
    assert code == 0, out
    got = json.loads(out)[0]
    assert (got["champion"], got["canary"], got["percent"]) == (1, 2, 20.0)
    assert got["answered"] == got["logged"] + got["pending"]
    code, out = run(root, "deploy", "status")
    assert code == 0 and "v1 80% / v2 20% canary" in out
    code, out = run(root, "deploy", "risk", "--abort", "--reason", "enough")
    assert code == 0 and "v1 100%" in out


@pytest.mark.parametrize("args, message", [
    (["deploy", "rsk", "--abort"], "did you mean 'risk'"),
    (["deploy", "risk", "--canary", "9", "--percent", "5"], "no version 9"),
    (["deploy", "risk", "--canary", "2", "--percent", "120"], "from 0 to 100"),
    (["deploy", "risk", "--canary", "1", "--percent", "5"], "already the champion"),
    (["deploy", "risk", "--shadow", "8"], "no version 8"),
    (["deploy", "status", "--canary", "2", "--percent", "5"], "is a subcommand"),
    (["deploy", "export", "--shadow", "2"], "is a subcommand"),
    (["deploy", "status", "nope"], "no registered model named 'nope'"),
])
def test_bad_input_exits_2_with_a_clear_line(root: Path, args: list[str], message: str) -> None:
    code, out = run(root, *args)
    assert code == 2, out
    assert message in out and "Traceback" not in out


def test_promote_canary_refused_by_gates_exits_1(tmp_path: Path) -> None:
    p = build_served(tmp_path / "p", versions=1)
    p.models.train("risk")  # v2: never validated
    p.close()
    root = tmp_path / "p"
    assert run(root, "deploy", "risk", "--canary", "2", "--percent", "10")[0] == 0
    code, out = run(root, "deploy", "risk", "--promote-canary")
    assert code == 1 and "never been validated" in out
