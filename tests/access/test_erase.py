"""Erasure of a data subject: after it, no query at any version still readable returns the
subject, in the lake tables, the prediction log or the online store; the audit trail keeps a
salted hash, not the subject; a subject nobody holds changes nothing; an interrupted erasure
completes when run again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models.conftest import build
from monitoring.monitor_data import traffic
from tarmac import faults
from tarmac.cli import app
from tarmac.errors import TarmacError, UsageError
from tarmac.project import Project

SUBJECT = 5


@pytest.fixture(params=["sqlite", "postgres"])
def held_any(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    """``held`` on each catalog: SQLite, then the real PostgreSQL."""
    catalog = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    yield from _held(tmp_path, catalog)


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Project]:
    """The risk project: customer 5 in signals (two versions) and labels, online, and in the
    prediction log's requests."""
    yield from _held(tmp_path, None)


def _held(tmp_path: Path, catalog: str | None) -> Iterator[Project]:
    p = build(tmp_path / "proj", catalog=catalog)
    p.lake.write("signals", p.lake.read("signals").slice(0, 10))  # a second version holds 5
    version = p.models.train("risk").version
    p.models.promote("risk", version, force=True, reason="erasure tests")
    p.features.materialize()
    traffic(p, datetime(2026, 6, 1, tzinfo=UTC), 50, first_id=1)  # requests for customers 1-50
    yield p
    p.close()


def holds(p: Project, table: str) -> int:
    """Rows naming the subject at every version of ``table`` still readable."""
    found = 0
    for h in p.lake.history(table):
        try:
            rows = p.lake.read(table, version=h["version"])
        except TarmacError:  # its files are gone: nothing there to read
            continue
        if "customer_id" in rows.column_names:
            found += rows.column("customer_id").to_pylist().count(SUBJECT)
        else:
            found += sum(json.loads(r or "{}").get("customer_id") == SUBJECT
                         for r in rows.column("request").to_pylist())
    return found


def test_dry_run_lists_and_changes_nothing(held: Project) -> None:
    plan = held.erase(f"customer_id={SUBJECT}", reason="GDPR request #1", dry_run=True)
    assert {t.table: t.rows for t in plan.tables} == {"signals": 2, "labels": 1,
                                                     "predictions": 1}
    assert plan.views == ["signals"]
    assert holds(held, "signals") > 0 and holds(held, "predictions") == 1


def test_after_erasure_no_readable_version_holds_the_subject(held_any: Project) -> None:
    held = held_any
    before = held.features.online("risk", [{"customer_id": SUBJECT}]).status[0]
    assert set(before.values()) == {"present"}
    done = held.erase(f"customer_id={SUBJECT}", reason="GDPR request #2")
    assert done.rows == 4 and all(t.files_removed > 0 for t in done.tables)
    for table in ("signals", "labels", "predictions"):
        assert holds(held, table) == 0, table
    assert held.sql("SELECT count(*) AS n FROM signals WHERE customer_id = 6")["n"][0].as_py() \
        == 2  # the others stay
    after = held.features.online("risk", [{"customer_id": SUBJECT}]).status[0]
    assert set(after.values()) == {"missing"}
    records = [r for r in held.ledger.audit() if r.action.startswith("erase.")]
    assert [r.action for r in records] == ["erase.completed"] + ["erase.table"] * 3 + [
        "erase.started"]  # one record per table done, newest first
    assert {json.loads(r.details)["table"] for r in records[1:4]} == {
        "signals", "labels", "predictions"}
    text = " ".join(r.details + r.target for r in records)
    assert f"customer_id={SUBJECT}" not in text and '"5"' not in text
    assert json.loads(records[0].details)["subject_hash"] == done.subject_hash
    assert held.ledger.verify().ok


def test_a_subject_nobody_holds_changes_nothing(held: Project) -> None:
    versions = {t: held.lake.version(t) for t in ("signals", "labels", "predictions")}
    result = CliRunner().invoke(app, ["-p", str(held.root), "erase", "--subject",
                                      "customer_id=999999", "--reason", "request #3"])
    assert result.exit_code == 0 and "nothing to erase" in result.output
    assert {t: held.lake.version(t) for t in versions} == versions


def test_an_interrupted_erasure_completes_when_run_again(held: Project) -> None:
    calls = []

    def die(**ctx: object) -> None:
        calls.append(ctx["table"])
        if len(calls) == 2:
            raise RuntimeError("killed mid-erasure")

    with faults.inject("lake.before_record", die), pytest.raises(RuntimeError):
        held.erase(f"customer_id={SUBJECT}", reason="GDPR request #4")
    again = held.erase(f"customer_id={SUBJECT}", reason="GDPR request #4")
    assert again.rows > 0
    for table in ("signals", "labels", "predictions"):
        assert holds(held, table) == 0, table
    actions = [r.action for r in held.ledger.audit() if r.action.startswith("erase.")]
    assert actions.count("erase.started") == 2 and actions.count("erase.completed") == 1


@pytest.mark.parametrize("subject, message", [
    ("customer_id", "must be COLUMN=VALUE"), ("1bad=3", "not a column name"),
    ("customer_id=", "1 to 256 characters")])
def test_bad_subjects_say_what_is_wrong(held: Project, subject: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        held.erase(subject, reason="r")
    with pytest.raises(UsageError, match="needs a reason"):
        held.erase("customer_id=5", reason=" ")


def test_old_versions_of_an_erased_table_say_their_files_are_gone(held: Project) -> None:
    held.erase(f"customer_id={SUBJECT}", reason="GDPR request #5")
    with pytest.raises(TarmacError, match="gone|missing"):
        held.lake.read("signals", version=0)
    assert held.lake.read("signals").num_rows == 608  # 600 + 10, less the subject's two


def _quarantine(p: Project, records: list[tuple[str | None, str | None, str]]) -> None:
    """Rejected records (column, value, raw record) in the ingest quarantine."""
    import pyarrow as pa

    from tarmac.ingest import quarantine

    n = len(records)
    rejected = pa.table({"reason": ["contract"] * n, "column": [r[0] for r in records],
                         "value": [r[1] for r in records], "origin": ["crm.csv"] * n,
                         "record": [r[2] for r in records]})
    p.lake.write(quarantine.TABLE, quarantine.rows(
        rejected, source="crm", table="signals", run_id="r1", load_id="l1",
        at=datetime(2026, 6, 1, tzinfo=UTC)))


def test_the_quarantine_s_records_naming_the_subject_are_erased(held: Project) -> None:
    _quarantine(held, [
        (None, None, f'{{"customer_id": {SUBJECT}, "email": "ann@example.com"}}'),
        (None, None, f'{{"customer_id": "{SUBJECT}", "email": "ann@ex'),  # a broken line
        ("customer_id", str(SUBJECT), "x;y;z"),  # the key itself was rejected
        (None, None, f'{{"customer_id": {SUBJECT}0, "email": "bob@example.com"}}'),  # 50
        (None, None, f'{{"customer_id": {SUBJECT}.5}}'),
        (None, None, f'{{"order_id": {SUBJECT}}}')])
    plan = held.erase(f"customer_id={SUBJECT}", reason="GDPR request #6", dry_run=True)
    assert {t.table: t.rows for t in plan.tables}["quarantine"] == 3
    held.erase(f"customer_id={SUBJECT}", reason="GDPR request #6")
    left = held.lake.read("quarantine").column("record").to_pylist()
    assert left == [f'{{"customer_id": {SUBJECT}0, "email": "bob@example.com"}}',
                    f'{{"customer_id": {SUBJECT}.5}}', f'{{"order_id": {SUBJECT}}}']
    assert all(h["version"] == held.lake.version("quarantine")
               or "ann@" not in str(_read_or_none(held, h["version"]))
               for h in held.lake.history("quarantine"))


def _read_or_none(p: Project, version: int) -> object:
    try:
        return p.lake.read("quarantine", version=version).to_pylist()
    except TarmacError:
        return None


def test_tagged_columns_are_erased_and_derived_tables_without_one_are_listed(
        held: Project) -> None:
    import pyarrow as pa

    with held.ledger.run("derive"):
        signals = held.lake.read("signals")
        held.lake.write("scores", pa.table({"buyer": signals.column("customer_id"),
                                            "score": signals.column("a")}))
        counts = signals.group_by("region").aggregate([("a", "count")])
        held.lake.write("region_counts", counts)
    with held.ledger.run("derive_more"):
        held.lake.read("region_counts")
        held.lake.write("region_report", counts)
    held.lake.annotate("scores", column_tags={"buyer": ["subject:customer_id"]})
    text = CliRunner().invoke(app, ["-p", str(held.root), "erase", "--subject",
                                    f"customer_id={SUBJECT}", "--reason", "request #7",
                                    "--dry-run"]).output
    assert "region_counts" in " ".join(text.split())
    assert "not erased: it has no column naming the subject; tag one" in " ".join(text.split())
    result = CliRunner().invoke(app, ["-p", str(held.root), "erase", "--subject",
                                      f"customer_id={SUBJECT}", "--reason", "request #7",
                                      "--json"])
    assert result.exit_code == 0, result.output
    done = json.loads(result.output)
    assert {t["table"]: t["rows"] for t in done["tables"]}["scores"] == 2
    assert {d["table"]: d["derived_from"] for d in done["derived"]} == {
        "region_counts": ["signals"], "region_report": ["region_counts"]}
    assert SUBJECT not in held.lake.read("scores").column("buyer").to_pylist()
    completed = next(r for r in held.ledger.audit() if r.action == "erase.completed")
    assert json.loads(completed.details)["derived_not_erased"] == {
        "region_counts": ["signals"], "region_report": ["region_counts"]}


@pytest.mark.slow
def test_an_erasure_killed_by_sigkill_completes_when_run_again(held: Project) -> None:
    """A real ``tarmac erase`` process SIGKILLed between a table's DELETE and its VACUUM (the
    current version clean, older files still holding the subject): the audit shows an erasure
    started and a table not done; the rerun says it completes it and vacuums that table."""
    import os
    import subprocess
    import sys

    src = str(Path(__file__).resolve().parents[2] / "src")
    tarmac = Path(sys.executable).parent / "tarmac"
    cmd = [str(tarmac), "-p", str(held.root), "erase", "--subject", f"customer_id={SUBJECT}",
           "--reason", "GDPR request #8"]
    env = {**os.environ, "PYTHONPATH": src, "TARMAC_FAULTS": "erase.after_delete=kill@2"}
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    actions = [(r.action, json.loads(r.details).get("table"))
               for r in held.ledger.audit() if r.action.startswith("erase.")]
    assert actions[-1][0] == "erase.started" and len(actions) == 2  # one table done
    assert sum(holds(held, t) for t in ("signals", "labels", "predictions")) > 0
    env.pop("TARMAC_FAULTS")
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "completing an interrupted erasure" in " ".join(again.stdout.split())
    for table in ("signals", "labels", "predictions"):
        assert holds(held, table) == 0, table
    actions = [r.action for r in held.ledger.audit() if r.action.startswith("erase.")]
    assert actions[0] == "erase.completed" and actions.count("erase.started") == 2
    assert actions.count("erase.table") == 3  # one before the kill, the other two by the rerun
    assert held.ledger.verify().ok


def test_a_malformed_fault_variable_names_what_is_wrong() -> None:
    from tarmac.faults import _env_fault

    for spec, message in (("nowhere=kill", "must be POINT=ACTION"),
                          ("erase.after_delete=explode", "kill or sleep"),
                          ("erase.after_delete=kill@0", "whole number"),
                          ("erase.after_delete=sleep:x", "0 to 3600")):
        with pytest.raises(UsageError, match=message):
            _env_fault(spec)
