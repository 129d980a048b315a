"""``tarmac score`` as a user types it: a summary line, JSON, exit codes for bad input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tarmac.cli import app
from tarmac.project import Project

runner = CliRunner()


def run(project: Project, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--project", str(project.root), *args])
    return result.exit_code, result.output


def test_score_from_the_command_line(mproject: Project) -> None:
    p = mproject
    p.models.train("risk")
    code, out = run(p, "score", "risk", "--input", "SELECT customer_id, observed FROM labels",
                    "--output", "risk_scores")
    assert code == 2 and "model 'risk' has no alias 'champion' (no aliases yet)" in out
    code, out = run(p, "score", "risk", "--input", "SELECT customer_id, observed FROM labels",
                    "--output", "risk_scores", "--version", "1")
    assert code == 0, out
    assert "scored 600 of 600 rows with risk v1 into risk_scores@0 (overwrite" in out
    assert "features: feature store: risk as of 'observed'" in out
    code, out = run(p, "score", "risk", "-i", "risk_scores", "-o", "again", "-v", "1",
                    "--mode", "append", "--json")
    assert code == 2 and "the output table adds" in out  # risk_scores already has score
    sql = ("SELECT customer_id, observed FROM labels UNION ALL "
           "SELECT -customer_id, observed FROM labels WHERE customer_id <= 3")
    code, out = run(p, "score", "risk", "-i", sql, "-o", "risk_scores", "-v", "1",
                    "--mode", "append", "--json")
    result = json.loads(out)
    assert code == 0 and result["output_version"] == 1 and result["rows_rejected"] == 3
    assert result["rows_in"] == 603 and result["rows_scored"] == 600
    assert p.lake.read("risk_scores").num_rows == 1203


def test_bad_input_exits_2_with_one_clear_line(mproject: Project) -> None:
    p = mproject
    p.models.train("risk")
    code, out = run(p, "score", "risk", "-i", "SELEC 1", "-o", "out", "-v", "1")
    assert code == 2 and "error: the input SQL failed: Parser Error" in out and "LINE 1" in out
    code, out = run(p, "score", "risk", "-i", "labels", "-o", "Bad Name", "-v", "1")
    assert code == 2 and "invalid output table name 'Bad Name'" in out
    code, out = run(p, "score", "risk", "-i", "labels", "-o", "out", "-v", "1",
                    "--mode", "merge")
    assert code == 2 and "expected overwrite or append" in out
    empty = "SELECT customer_id, observed FROM labels WHERE false"
    code, out = run(p, "score", "risk", "-i", empty, "-o", "out", "-v", "1")
    assert code == 2 and "the input has no rows" in out and "--allow-empty" in out
    code, out = run(p, "score", "risk", "-i", empty, "-o", "out", "-v", "1", "--allow-empty")
    assert code == 0 and "scored 0 of 0 rows" in out and "warning: the input has no rows" in out
