"""A data file of the current version deleted by hand (issue 11, item 13): every reader names
the table, the version and the file; `tables` and `doctor` show it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tarmac.cli import app
from tarmac.errors import DataFileMissingError
from tarmac.project import Project

runner = CliRunner()


def cli(p: Project, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--project", str(p.root), *args])
    return result.exit_code, result.output


@pytest.fixture
def broken(project: Project) -> tuple[Project, str]:
    project.lake.write("t", {"id": [1, 2]})
    project.lake.write("t", {"id": [3]})
    project.lake.write("ok", {"id": [1]})
    gone = sorted(f.name for f in (Path(project.root) / "lake" / "t").glob("*.parquet"))[0]
    (Path(project.root) / "lake" / "t" / gone).unlink()
    return project, gone


def test_missing_files_lists_the_deleted_file(broken: tuple[Project, str]) -> None:
    p, gone = broken
    assert p.lake.missing_files("t") == [gone]
    assert p.lake.missing_files("ok") == []


@pytest.mark.parametrize("how", ["read", "sql"])
def test_reading_names_table_version_and_file(broken: tuple[Project, str], how: str) -> None:
    p, gone = broken
    with pytest.raises(DataFileMissingError) as caught:
        if how == "read":
            p.lake.read("t")
        else:
            p.sql("SELECT count(*) FROM t")
    message = caught.value.message
    assert "table 't' version 1 is missing data file" in message and gone in message
    assert "vacuum" not in message and "read_parquet" not in message
    assert caught.value.files == [gone]


def test_cli_sql_tables_and_doctor(broken: tuple[Project, str]) -> None:
    p, gone = broken
    code, out = cli(p, "sql", "SELECT * FROM t")
    assert code == 1 and "table 't' version 1 is missing data file" in out
    assert "read_parquet" not in out and "vacuum" not in out
    code, out = cli(p, "tables", "--json")
    health = {t["name"]: t["health"] for t in json.loads(out)}
    assert health["ok"] == "ok" and gone in health["t"] and "missing 1 data file" in health["t"]
    code, out = cli(p, "doctor", "--json")
    assert code == 1
    checks = {c["check"]: c for c in json.loads(out)}
    assert not checks["table t"]["ok"] and gone in checks["table t"]["detail"]
    assert checks["table ok"]["ok"] and checks["audit chain"]["ok"]


def test_doctor_passes_on_a_healthy_project(project: Project) -> None:
    project.lake.write("t", {"id": [1]})
    code, out = cli(project, "doctor")
    assert code == 0 and "all checks passed" in out
