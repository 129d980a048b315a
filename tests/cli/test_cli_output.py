"""What the CLI prints: data verbatim (never Rich markup or emoji), a failed run's error, and
valid JSON from every ``--json``, also when there is nothing to show."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tarmac.cli import app
from tarmac.cli._output import error_line
from tarmac.errors import UsageError
from tarmac.project import Project

runner = CliRunner()

TRICKY = ["a:x:b", "[bold]loud[/bold]", "[red]", "pip install 'tarmac[postgres]'", ":smile:"]


def run(project: Project, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["--project", str(project.root), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def tricky(project: Project) -> Project:
    project.lake.write("notes", {"id": list(range(len(TRICKY))), "text": TRICKY})
    return project


def test_sql_prints_data_values_verbatim(tricky: Project) -> None:
    code, out, _ = run(tricky, "sql", "SELECT text AS \"[b]col[/b]\" FROM notes ORDER BY id")
    assert code == 0
    for value in TRICKY:
        assert value in out, f"{value!r} was changed on the way to the terminal:\n{out}"
    assert "[b]col[/b]" in out  # a column name is data too
    assert "❌" not in out and "😄" not in out


def test_messages_print_names_verbatim(tricky: Project) -> None:
    with tricky.ledger.run("[bold]job[/bold]"):
        pass
    code, out, _ = run(tricky, "runs")
    assert code == 0 and "[bold]job[/bold]" in out
    code, out, _ = run(tricky, "lineage", "notes")
    assert code == 0 and "notes" in out


def test_error_and_hint_print_verbatim(project: Project) -> None:
    code, _, err = run(project, "sql", "SELECT * FROM read_csv('[x]:y:z.csv')")
    assert code == 2 and "[x]:y:z.csv" in err


def test_runs_shows_the_error_of_a_failed_run_not_its_hint(project: Project) -> None:
    with pytest.raises(UsageError), project.ledger.run("nightly"):
        raise UsageError("table 'orders' has no column 'amount'",
                         hint="declare it in tarmac.yaml [sources.orders]")
    code, out, _ = run(project, "runs")
    assert code == 0
    assert "has no column 'amount'" in out
    assert "declare it in" not in out


def test_error_line_picks_the_exception() -> None:
    assert error_line("tarmac.errors.UsageError: bad thing\n  hint: do this") == (
        "tarmac.errors.UsageError: bad thing")
    trace = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    g()\n"
             "KeyError: 'a'\n\nDuring handling of the above exception, another exception "
             "occurred:\n\nTraceback (most recent call last):\n  File \"x.py\", line 3\n"
             "ValueError: the real one\n  hint: not this")
    assert error_line(trace) == "ValueError: the real one"
    assert error_line(None) is None and error_line("  ") is None
    assert error_line("x" * 500).endswith("...")


EMPTY_JSON = [["tables"], ["runs"], ["runs", "--model", "churn"], ["audit", "log"],
              ["audit", "verify"], ["sources"], ["quarantine"], ["features", "list"],
              ["models", "list"], ["info"], ["apply", "--dry-run"],
              ["sql", "SELECT 1 AS n WHERE false"]]


@pytest.mark.parametrize("command", EMPTY_JSON, ids=" ".join)
def test_every_json_output_parses_on_an_empty_project(project: Project,
                                                      command: list[str]) -> None:
    code, out, _ = run(project, *command, "--json")
    assert code == 0, out
    json.loads(out)  # valid JSON, never a "nothing to show" sentence


def test_quarantine_json_is_an_empty_array_when_nothing_was_rejected(project: Project) -> None:
    code, out, _ = run(project, "quarantine", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = run(project, "quarantine")
    assert code == 0 and "nothing quarantined" in out


def test_json_of_a_table_with_data(tricky: Project) -> None:
    for command in (["history", "notes"], ["lineage", "notes"], ["tables"],
                    ["sql", "SELECT * FROM notes"]):
        code, out, _ = run(tricky, *command, "--json")
        assert code == 0 and json.loads(out), command


def test_hints_print_verbatim(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    from tarmac.errors import BackendUnavailableError

    def no_driver(*_args: object, **_kwargs: object) -> Project:
        raise BackendUnavailableError("catalog postgresql://db/x needs the psycopg driver",
                                      hint="pip install 'tarmac[postgres]'")

    monkeypatch.setattr("tarmac.project.open", no_driver)
    code, out, err = run(project, "tables")
    assert code == 2 and out == ""
    assert "hint: pip install 'tarmac[postgres]'" in err


def test_help_text_keeps_its_brackets(project: Project) -> None:
    code, out, _ = run(project, "lineage", "--help")
    assert code == 0 and "model:NAME[@VERSION]" in out and "training_set:NAME[@RUN]" in out


def test_json_is_strict_even_with_nan_and_infinity(project: Project) -> None:
    code, out, _ = run(project, "sql", "--json", "SELECT 'nan'::DOUBLE AS a, 'inf'::DOUBLE AS b, "
                                                 "-'inf'::DOUBLE AS c, 1.5::DOUBLE AS d")

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    assert code == 0
    assert json.loads(out, parse_constant=refuse) == [
        {"a": "NaN", "b": "Infinity", "c": "-Infinity", "d": 1.5}]


def test_output_cut_short_by_a_pipe_is_not_an_internal_error(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """``tarmac sql ... | head -1``: the reader leaves early and the next write fails with
    EPIPE; Click ends quietly (exit 1), never 'internal error: BrokenPipeError'."""

    def reader_gone(_value: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("tarmac.cli._lake.print_json", reader_gone)
    code, _, err = run(project, "sql", "--json", "SELECT 1 AS n")
    assert code == 1 and "internal error" not in err and "Broken pipe" not in err
