"""The validation report: overall status and exit code, storage round trip, the PR comment."""

from __future__ import annotations

import json

import pytest

from tarmac.gates import GateResult, Report, metric, no_regression, run_gates
from tarmac.gates.report import fmt

from .test_gates import DUMMY, champ, context

PASSED = GateResult("roc_auc >= 0.75", "metric", "passed", 0.812345, ">= 0.75", "0.8123 >= 0.75",
                    {"metric": "roc_auc", "rows": 1200})
FAILED = GateResult("recall >= 0.7", "metric", "failed", 0.65, ">= 0.7", "0.65 is below 0.7")
SKIPPED = GateResult("no regression in roc_auc (tolerance 0.01)", "no_regression", "skipped",
                     None, None, "no champion yet: regression gates are skipped")
ERROR = GateResult("holdout | size", "custom", "error", None, None, "ValueError: a | b\nmore")


def report(*results: GateResult, champion: int | None = 2) -> Report:
    return Report("churn", 4, champion, list(results), 1.2345)


def test_status_and_exit_code_follow_the_worst_result() -> None:
    assert (report(PASSED, SKIPPED).status, report(PASSED, SKIPPED).exit_code) == ("passed", 0)
    assert (report(PASSED, FAILED).status, report(PASSED, FAILED).exit_code) == ("failed", 1)
    both = report(FAILED, ERROR, PASSED)
    assert (both.status, both.exit_code) == ("error", 2)
    assert report().status == "passed"


def test_markdown_for_a_failed_version() -> None:
    md = report(PASSED, FAILED, SKIPPED).to_markdown()
    lines = md.splitlines()
    assert lines[0] == "### ❌ churn v4 failed 1 of 3 gates"
    assert lines[2] == "Compared with champion v2"
    assert lines[4:7] == [
        "| Gate | Result | Value | Threshold | Why |",
        "|---|---|---|---|---|",
        "| roc_auc >= 0.75 | ✅ passed | 0.8123 | >= 0.75 | 0.8123 >= 0.75 |",
    ]
    assert lines[7] == "| recall >= 0.7 | ❌ failed | 0.65 | >= 0.7 | 0.65 is below 0.7 |"
    assert lines[8] == ("| no regression in roc_auc (tolerance 0.01) | ⏭️ skipped | — | — | "
                        "no champion yet: regression gates are skipped |")
    assert lines[-1] == "_3 gates checked in 1.23 s_"
    assert md == report(PASSED, FAILED, SKIPPED).to_markdown()  # deterministic


def test_markdown_headings_for_passed_and_error_and_no_champion() -> None:
    ok = report(PASSED, SKIPPED, champion=None).to_markdown().splitlines()
    assert ok[0] == "### ✅ churn v4 passed its gates"
    assert ok[2] == "No champion yet: regression and signature gates were skipped"
    broken = report(PASSED, ERROR).to_markdown().splitlines()
    assert broken[0] == "### ⚠️ churn v4: 1 gate could not run"
    # pipes inside cells are escaped and newlines folded, so the table stays one row per gate
    assert broken[7] == ("| holdout \\| size | ⚠️ error | — | — | ValueError: a \\| b more |")
    assert report(ERROR, ERROR, FAILED).to_markdown().startswith(
        "### ⚠️ churn v4: 2 gates could not run, 1 failed\n")


def test_round_trip_through_json() -> None:
    original = report(PASSED, FAILED, SKIPPED, ERROR)
    stored = json.loads(json.dumps(original.to_dict()))
    assert stored["status"] == "error"
    back = Report.from_dict(stored)
    assert back == original
    assert back.results[0].details == {"metric": "roc_auc", "rows": 1200}


@pytest.mark.parametrize("value, text", [
    (0.812345, "0.8123"), (0.75, "0.75"), (12345.678, "12,350"), (3, "3"), (1200, "1,200"),
    (0.0, "0"), (1e-6, "1e-06"), (-0.05, "-0.05"), ("0.1..0.9", "0.1..0.9"), (None, "—"),
])
def test_values_are_shown_with_four_significant_digits(value: object, text: str) -> None:
    assert fmt(value) == text  # type: ignore[arg-type]


def test_a_real_run_round_trips_and_renders() -> None:
    result = run_gates([metric("roc_auc") >= 0.99, no_regression("roc_auc")],
                       context(champion=champ(DUMMY)))
    assert result.status == "failed" and result.exit_code == 1
    assert result.to_markdown().splitlines()[0] == "### ❌ churn v3 failed 1 of 3 gates"
    back = Report.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back.to_markdown() == result.to_markdown()
