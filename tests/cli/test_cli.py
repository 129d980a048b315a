"""The CLI through its real entry point: output, --json, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tarmac.catalog._engine import HEAD_REVISION
from tarmac.cli import app
from tarmac.project import Project

runner = CliRunner()


def run(project: Project | Path, *args: str) -> tuple[int, str]:
    root = project.root if isinstance(project, Project) else project
    result = runner.invoke(app, ["--project", str(root), *args])
    return result.exit_code, result.output


@pytest.fixture
def filled(project: Project) -> Project:
    project.lake.write("customers", {"customer_id": [1, 2, 3], "region": ["North", "South",
                                                                          "North"]})
    project.lake.write("customers", {"customer_id": [3, 4], "region": ["East", "West"]},
                       mode="merge", keys=["customer_id"])
    with project.ledger.run("summarise"):
        project.lake.write("by_region", project.sql(
            "SELECT region, count(*) AS n FROM customers GROUP BY 1"), mode="overwrite")
    return project


def test_tables_json_is_an_array_of_objects(filled: Project) -> None:
    code, out = run(filled, "tables", "--json")
    assert code == 0
    rows = json.loads(out)
    by_name = {r["name"]: r for r in rows}
    assert by_name["customers"]["rows"] == 4 and by_name["customers"]["version"] == 1
    assert {"owner", "tags", "bytes", "updated_at"} <= set(by_name["customers"])


def test_tables_human_output(filled: Project) -> None:
    code, out = run(filled, "tables")
    assert code == 0 and "customers" in out and "by_region" in out


def test_sql_and_time_travel(filled: Project) -> None:
    code, out = run(filled, "sql", "--json", "SELECT count(*) AS n FROM customers")
    assert code == 0 and json.loads(out) == [{"n": 4}]
    code, out = run(filled, "sql", "--json", "--as-of", "customers=0",
                    "SELECT count(*) AS n FROM customers")
    assert code == 0 and json.loads(out) == [{"n": 3}]
    code, out = run(filled, "sql", "SELECT region, count(*) AS n FROM customers GROUP BY 1 "
                                   "ORDER BY 1")
    assert code == 0 and "North" in out and "4 row(s)" in out


@pytest.mark.parametrize("args, fragment", [
    (["sql", "SELEC 1"], "syntax error"),
    (["sql", "SELECT * FROM nope"], "lake tables: by_region, customers"),
    (["sql", "--as-of", "customers=9", "SELECT 1 FROM customers"], "versions 0 to 1"),
    (["sql", "--as-of", "customers", "SELECT 1 FROM customers"], "expected TABLE=VERSION"),
    (["history", "nope"], "no lake table named 'nope'"),
    (["audit", "log", "--since", "yesterday-ish"], "expected e.g. 30m"),
])
def test_user_errors_are_one_line_exit_2_no_traceback(filled: Project, args: list[str],
                                                      fragment: str) -> None:
    code, out = run(filled, *args)
    assert code == 2
    assert fragment in out and "Traceback" not in out and out.startswith("error:")


def test_history_shows_operations_and_runs(filled: Project) -> None:
    code, out = run(filled, "history", "customers", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["operation"] for r in rows] == ["MERGE", "WRITE"]
    assert rows[0]["rows_added"] == 1 and rows[1]["rows_added"] == 3
    assert filled.ledger.get_run(rows[0]["run_id"]).status == "succeeded"


def test_lineage_tree_and_openlineage(filled: Project) -> None:
    code, out = run(filled, "lineage", "by_region")
    assert code == 0 and "summarise" in out and "customers@1" in out
    code, out = run(filled, "lineage", "customers", "--downstream")
    assert code == 0 and "by_region@0" in out
    code, out = run(filled, "lineage", "by_region", "--openlineage")
    events = json.loads(out)
    assert code == 0 and {e["eventType"] for e in events} == {"START", "COMPLETE"}


def test_audit_log_filters(filled: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARMAC_USER", "zoe")
    filled.ledger.commit("manual.fix", "customers", {"why": "typo"})
    code, out = run(filled, "audit", "log", "--actor", "zoe", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["action"] for r in rows] == ["manual.fix"]
    code, out = run(filled, "audit", "log", "--since", "1h", "--json")
    assert code == 0 and len(json.loads(out)) == filled.catalog.count("audit_log")
    code, out = run(filled, "audit", "log", "--target", "customers", "--json")
    assert {r["target"] for r in json.loads(out)} == {"customers"}


def test_audit_verify_exit_codes(filled: Project) -> None:
    code, out = run(filled, "audit", "verify")
    assert code == 0 and "chain intact" in out
    with filled.catalog.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET details = '{}' WHERE seq = 2"))
    code, out = run(filled, "audit", "verify")
    assert code == 1 and "TAMPERED" in out and "record 2" in out
    code, out = run(filled, "audit", "verify", "--json")
    assert code == 1 and json.loads(out)["bad_seq"] == 2


def test_runs_listing(filled: Project) -> None:
    code, out = run(filled, "runs", "--json", "--job", "summarise")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 1 and rows[0]["outputs"] == ["by_region@0"]
    assert rows[0]["inputs"] == ["customers@1"]


def test_bad_config_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "tarmac.yaml").write_text("name: x\ncatalog: oracle://db\n")
    code, out = run(tmp_path, "tables")
    assert code == 2 and "tarmac.yaml" in out and "'catalog'" in out and "oracle" in out


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", str(tmp_path / "p")])
    assert result.exit_code == 0 and (tmp_path / "p" / "tarmac.yaml").exists()
    again = runner.invoke(app, ["init", str(tmp_path / "p")])
    assert again.exit_code == 2 and "not overwriting" in again.output


def test_compact_and_vacuum(filled: Project) -> None:
    code, out = run(filled, "compact", "customers")
    assert code == 0 and "rewritten" in out
    code, out = run(filled, "vacuum", "customers", "--retain", "0h", "--dry-run")
    assert code == 0 and "would delete" in out
    code, out = run(filled, "vacuum", "customers", "--retain", "soon")
    assert code == 2 and "invalid retention" in out


def test_info_masks_secrets(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tarmac.project import scaffold

    scaffold(tmp_path / "p")
    cfg = tmp_path / "p" / "tarmac.yaml"
    monkeypatch.setenv("PGPASSWORD_TEST", "s3cr3t")
    secret_url = pg_url.replace("postgres@", "postgres:${PGPASSWORD_TEST}@")
    cfg.write_text(cfg.read_text().replace("catalog: sqlite:///.tarmac/catalog.db",
                                           f"catalog: {secret_url}"))
    code, out = run(tmp_path / "p", "info", "--json")
    facts = json.loads(out)
    assert code == 0 and "s3cr3t" not in out and ":***@" in facts["catalog"]
    assert facts["catalog_revision"] == HEAD_REVISION and facts["tables"] == 0
    code, out = run(tmp_path / "p", "info")
    assert code == 0 and "s3cr3t" not in out and "catalog revision" in out


def test_debug_flag_shows_the_real_exception(filled: Project,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from tarmac.errors import SqlError

    monkeypatch.setenv("TARMAC_DEBUG", "1")
    result = runner.invoke(app, ["--project", str(filled.root), "sql", "SELEC 1"])
    # the traceback is shown, and the exit code stays the user error's (2), not a crash's (1)
    assert result.exit_code == SqlError.exit_code == 2
    assert "Traceback" in result.stderr and "SqlError" in result.stderr
    assert "error:" in result.stderr


def test_tag_sets_and_clears_column_tags_and_masks_for_analysts(filled: Project) -> None:
    code, out = run(filled, "tag", "customers", "region=pii,region_code", "--json")
    assert code == 0, out
    assert json.loads(out) == {"table": "customers",
                               "column_tags": {"region": ["pii", "region_code"]}}
    [record] = filled.ledger.audit(action="dataset.annotate", limit=1).items
    assert record.target == "customers" and "region" in record.details
    code, out = run(filled, "tag", "customers", "region=")
    assert code == 0 and "customers.region: (no tags)" in out
    info = filled.catalog.get_dataset("customers")
    assert info is not None and all(not c.tags for c in info.columns)


@pytest.mark.parametrize(("args", "message"), [
    (["customers", "region"], "expected COLUMN=TAG"),
    (["customers", "=pii"], "expected COLUMN=TAG"),
    (["customers", "region=p ii"], "tag 'p ii' may hold"),
    (["customers", "region=pii", "region=email"], "column 'region' is given twice"),
    (["customers", "nope=pii"], "table 'customers' has no column(s) nope"),
    (["nope", "region=pii"], "nope"),
])
def test_bad_tags_say_what_is_wrong(filled: Project, args: list[str], message: str) -> None:
    code, out = run(filled, "tag", *args)
    assert code == 2 and message in out, out
