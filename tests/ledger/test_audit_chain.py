"""The audit trail is tamper-evident: edits, deletions, reorders and truncation are caught."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tarmac.catalog import AuditRecord
from tarmac.ledger.chain import GENESIS, canonical, make_record, verify
from tarmac.project import Project


def chain(n: int) -> list[AuditRecord]:
    out, prev = [], GENESIS
    for i in range(1, n + 1):
        rec = make_record(i, 1_700_000_000_000_000 + i, "ann", "lake.write", f"t{i % 3}",
                          canonical({"version": i}), prev)
        out.append(rec)
        prev = rec.hash
    return out


def record_some(p: Project, n: int = 5) -> None:
    for i in range(n):
        p.ledger.commit("test.action", f"target_{i}", {"i": i})


def sql(p: Project, statement: str) -> None:
    with p.catalog.engine.begin() as conn:
        conn.execute(sa.text(statement))


def test_intact_chain_verifies(any_project: Project) -> None:
    record_some(any_project)
    result = any_project.ledger.verify()
    assert result.ok and result.records == 5 and result.head_seq == 5


def test_edited_record_is_named(any_project: Project) -> None:
    record_some(any_project)
    sql(any_project, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    result = any_project.ledger.verify()
    assert not result.ok and result.bad_seq == 3 and "was edited" in result.problem


def test_deleted_record_is_named(any_project: Project) -> None:
    record_some(any_project)
    sql(any_project, "DELETE FROM audit_log WHERE seq = 2")
    result = any_project.ledger.verify()
    assert not result.ok and result.bad_seq == 2 and "missing" in result.problem


def test_reordered_records_are_caught(any_project: Project) -> None:
    record_some(any_project)
    sql(any_project, "UPDATE audit_log SET seq = -1 WHERE seq = 2")
    sql(any_project, "UPDATE audit_log SET seq = 2 WHERE seq = 4")
    sql(any_project, "UPDATE audit_log SET seq = 4 WHERE seq = -1")
    result = any_project.ledger.verify()
    assert not result.ok and result.bad_seq == 2


def test_truncated_tail_is_caught_by_anchor(project: Project) -> None:
    record_some(project, 6)
    head = project.ledger.verify()
    anchor = (head.head_seq, head.head_hash)
    sql(project, "DELETE FROM audit_log WHERE seq = 6")
    assert project.ledger.verify().ok  # a shorter chain is still a chain...
    result = project.ledger.verify(anchor=anchor)  # ...but not the one that was published
    assert not result.ok and "removed from the end" in result.problem


def test_secrets_never_reach_the_audit_trail(project: Project) -> None:
    project.ledger.commit("source.add", "crm", {"url": "postgresql://bob:hunter2@db/crm",
                                                "api_token": "abc123", "nested": {"password": "x"}})
    stored = project.ledger.audit(limit=1).items[0].details
    assert "hunter2" not in stored and "abc123" not in stored and '"x"' not in stored
    assert json.loads(stored)["url"] == "postgresql://bob:***@db/crm"


def test_actor_comes_from_tarmac_user(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARMAC_USER", "ci-bot")
    project.ledger.commit("x", "y")
    assert project.ledger.audit(actor="ci-bot", limit=10).items[0].action == "x"


def test_failed_change_appends_nothing(project: Project) -> None:
    record_some(project, 2)

    def broken(conn: sa.Connection) -> None:
        conn.execute(sa.text("INSERT INTO no_such_table VALUES (1)"))

    with pytest.raises(sa.exc.OperationalError):
        project.ledger.commit("bad.change", "t", change=broken)
    assert project.catalog.count("audit_log") == 2 and project.ledger.verify().ok


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 30), data=st.data())
def test_any_single_tampering_is_detected(n: int, data: st.DataObject) -> None:
    """Property: for any chain and any one edit/delete/swap, verify fails (brute-force check)."""
    records = chain(n)
    assert verify(records).ok
    kind = data.draw(st.sampled_from(["edit", "delete", "swap"]))
    i = data.draw(st.integers(0, n - 1))
    if kind == "edit":
        field = data.draw(st.sampled_from(["actor", "action", "target", "details", "time_us"]))
        r = records[i]
        new = {"actor": r.actor + "x", "action": r.action + "x", "target": r.target + "x",
               "details": canonical({"version": -1}), "time_us": r.time_us + 1}[field]
        records[i] = AuditRecord(**{**r.__dict__, field: new})
        expected_bad = r.seq
    elif kind == "delete":
        if i == n - 1:
            i = n - 2  # deleting the last one is truncation: covered by the anchor test
        del records[i]
        expected_bad = i + 1
    else:
        j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i))
        records[i], records[j] = records[j], records[i]
        expected_bad = min(i, j) + 1
    result = verify(records)
    assert not result.ok and result.bad_seq == expected_bad
