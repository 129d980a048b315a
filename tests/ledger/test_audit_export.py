"""`tarmac audit export` and `p.ledger.export`: every record of a range, one per line (JSON
lines) or row (CSV), equal to the catalog's records and re-checkable by a SIEM; the export is
itself audited; bad input exits 2 naming the value and leaves nothing at `-o`."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tarmac.catalog import AuditRecord, now_us
from tarmac.cli import app
from tarmac.ledger import export as export_module
from tarmac.ledger.chain import record_hash
from tarmac.project import Project

runner = CliRunner()


def fill(p: Project) -> list[AuditRecord]:
    """A few records of different actors and actions; returns the whole trail, oldest first."""
    p.ledger.commit("model.promote", "model:churn", {"alias": "champion", "to": 2,
                                                     "note": "é, \"quoted\"\nline two"})
    p.ledger.commit("model.rollback", "model:churn", {"alias": "champion", "to": 1})
    p.ledger.commit("lake.write", "table:orders", {"rows": 10, "nested": {"a": [1, 2.5, None]}})
    from tarmac.ledger import AuditEntry

    p.ledger.append([AuditEntry("access.read", "table:orders", {"rows": 3}, actor="ana")])
    p.ledger.commit("gate.check", "model:churn", {"auc": float("nan"), "big": 2**70})
    return list(p.catalog.iter_audit())


def cli(p: Project, *args: str) -> tuple[int, str, str]:
    got = runner.invoke(app, ["--project", str(p.root), *args])
    assert got.exception is None or isinstance(got.exception, SystemExit), got.exception
    return got.exit_code, got.stdout, got.stderr


def strict_only(constant: str) -> None:
    raise AssertionError(f"{constant} is not strict JSON")


def as_us(iso: str) -> int:
    when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return int(when.timestamp()) * 1_000_000 + when.microsecond


def test_jsonl_rows_equal_the_records_and_rehash(any_project: Project) -> None:
    project = any_project
    records = fill(project)
    out = io.StringIO()
    done = project.ledger.export(out)
    lines = out.getvalue().splitlines()
    assert done.count == len(lines) == len(records)
    assert (done.first_seq, done.last_seq) == (1, records[-1].seq)
    for line, rec in zip(lines, records, strict=True):
        row = json.loads(line, parse_constant=strict_only)  # strict JSON, no NaN
        # details nested when strict JSON (a 70-bit integer stays exact); with a NaN, the
        # hashed text as a string
        nested = "NaN" not in rec.details
        assert row == {"seq": rec.seq, "time": row["time"], "actor": rec.actor,
                       "action": rec.action, "target": rec.target,
                       "details": json.loads(rec.details) if nested else rec.details,
                       "hash": rec.hash,
                       "prev_hash": rec.prev_hash, "mac": rec.mac, "key_id": rec.key_id}
        assert row["time"].endswith("Z") and as_us(row["time"]) == rec.time_us
        # a SIEM can re-check each record's hash from the exported fields alone, as
        # docs/governance.md says ("Exporting the trail")
        details = json.dumps(row["details"], sort_keys=True, separators=(",", ":")) \
            if nested else row["details"]
        fields = [row["seq"], as_us(row["time"]), row["actor"], row["action"], row["target"],
                  details, row["prev_hash"]]
        text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(text.encode("utf-8")).hexdigest() == row["hash"]
        assert record_hash(*fields) == row["hash"]


def test_the_export_is_audited_with_count_and_range_not_contents(project: Project) -> None:
    records = fill(project)
    project.ledger.export(io.StringIO(), since_us=records[1].time_us, action="model.")
    rec = project.ledger.audit(limit=1).items[0]
    assert (rec.action, rec.target) == ("audit.export", "audit")
    details = json.loads(rec.details)
    assert details["count"] == 1 and details["first_seq"] == details["last_seq"] == 2
    assert details["action"] == "model." and details["through_seq"] == records[-1].seq
    assert details["complete"] is True and "champion" not in rec.details


def test_filters_actor_action_prefix_and_time_range(any_project: Project) -> None:
    project = any_project
    records = fill(project)
    out = io.StringIO()
    project.ledger.export(out, action="model.")
    assert [json.loads(x)["action"] for x in out.getvalue().splitlines()] == \
        ["model.promote", "model.rollback"]
    out = io.StringIO()
    project.ledger.export(out, actor="ana")
    assert [json.loads(x)["seq"] for x in out.getvalue().splitlines()] == \
        [r.seq for r in records if r.actor == "ana"]
    time.sleep(0.01)
    cut = now_us()
    project.ledger.commit("later.thing", "x", {})
    out = io.StringIO()
    project.ledger.export(out, since_us=cut)
    assert [json.loads(x)["action"] for x in out.getvalue().splitlines()] == ["later.thing"]
    out = io.StringIO()
    project.ledger.export(out, until_us=cut, action="later")
    assert out.getvalue() == ""
    # an action prefix is literal: '_' and '%' are not wildcards
    out = io.StringIO()
    project.ledger.export(out, action="model_")
    assert out.getvalue() == ""


def test_records_are_read_page_by_page(project: Project) -> None:
    records = fill(project)
    paged = list(project.catalog.iter_audit(batch=2, action_prefix="model."))
    assert [r.seq for r in paged] == [r.seq for r in records if r.action.startswith("model.")]
    assert list(project.catalog.iter_audit(batch=1)) == records


def test_csv_has_a_header_and_details_as_json_text(project: Project) -> None:
    records = fill(project)
    code, out, _ = cli(project, "audit", "export", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == list(export_module.COLUMNS)
    assert len(rows) == len(records)
    for got, rec in zip(rows, records, strict=True):
        assert int(got["seq"]) == rec.seq and got["details"] == rec.details
        assert json.loads(got["details"]) == json.loads(rec.details)
        assert (got["actor"], got["action"], got["hash"], got["prev_hash"]) == \
            (rec.actor, rec.action, rec.hash, rec.prev_hash)


def test_jsonl_to_stdout_parses_line_by_line(project: Project) -> None:
    records = fill(project)
    code, out, err = cli(project, "audit", "export", "--since", "30d", "--format", "jsonl")
    assert code == 0
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [r.seq for r in records]
    assert f"exported {len(records)} audit record(s)" in err  # the summary is not in the data


def test_output_file_appears_whole(project: Project, tmp_path: Path) -> None:
    records = fill(project)
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "audit.jsonl"
    code, out, _ = cli(project, "audit", "export", "--since", "30d", "-o", str(target))
    assert code == 0 and f"to {target}" in out
    assert len(target.read_text().splitlines()) == len(records)
    assert target.stat().st_mode & 0o077 == 0
    assert [p.name for p in target.parent.iterdir()] == ["audit.jsonl"]


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "banana"], "--since 'banana': expected e.g. 30m, 1h, 7d"),
    (["--until", "soon"], "--until 'soon': expected e.g. 30m, 1h, 7d"),
    (["--format", "xml"], "--format 'xml': expected one of jsonl, csv"),
])
def test_bad_values_exit_2_naming_them(project: Project, args: list[str], message: str) -> None:
    fill(project)
    before = project.catalog.count("audit_log")
    code, out, err = cli(project, "audit", "export", *args)
    assert code == 2 and message in err and "Traceback" not in err and out == ""
    assert project.catalog.count("audit_log") == before  # nothing exported, nothing recorded


def test_an_unwritable_output_path_exits_2_and_leaves_nothing(project: Project,
                                                              tmp_path: Path) -> None:
    fill(project)
    missing = tmp_path / "no" / "such" / "audit.jsonl"
    code, _, err = cli(project, "audit", "export", "-o", str(missing))
    assert code == 2 and f"-o '{missing}': cannot write there" in err
    assert not missing.parent.exists()
    folder = tmp_path / "folder"
    folder.mkdir()
    code, _, err = cli(project, "audit", "export", "-o", str(folder))
    assert code == 2 and "is a folder" in err
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        if not _can_write(locked):  # root writes anywhere: then only the cases above apply
            code, _, err = cli(project, "audit", "export", "-o", str(locked / "audit.jsonl"))
            assert code == 2 and "cannot write there" in err
            assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def _can_write(folder: Path) -> bool:
    try:
        (folder / ".probe").write_text("x")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


def test_a_failure_part_way_leaves_nothing_at_the_path(project: Project, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fill(project)
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "audit.jsonl"
    target.write_text("the previous export\n")

    def broken(records, out, fmt, tally=None):  # type: ignore[no-untyped-def]
        out.write('{"seq":1,"half a record')
        raise OSError("disk full")

    monkeypatch.setattr("tarmac.ledger.ledger.write_records", broken)
    before = project.catalog.count("audit_log")
    with pytest.raises(OSError, match="disk full"):
        project.ledger.export(target)
    assert target.read_text() == "the previous export\n"
    assert [p.name for p in target.parent.iterdir()] == ["audit.jsonl"]  # no .partial left
    assert project.catalog.count("audit_log") == before  # nothing left: nothing recorded


def test_a_stream_broken_part_way_is_still_recorded(project: Project) -> None:
    fill(project)

    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            if self.tell() > 200:
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    with pytest.raises(BrokenPipeError):
        project.ledger.export(ClosedPipe())
    rec = project.ledger.audit(limit=1).items[0]
    details = json.loads(rec.details)
    assert rec.action == "audit.export" and details["complete"] is False
    assert 0 < details["count"] < 5
