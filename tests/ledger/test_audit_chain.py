"""The audit trail is tamper-evident: edits, deletions, reorders and truncation are caught."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tarmac.catalog import AuditRecord
from tarmac.ledger.chain import GENESIS, canonical, make_record, verify
from tarmac.ledger.keys import AuditKey
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


KEY = AuditKey(b"k" * 32, "test")
OTHER_KEY = AuditKey(b"m" * 32, "attacker")


def keyed_chain(n: int, key: AuditKey | None = KEY, *,
                unkeyed_first: int = 0) -> list[AuditRecord]:
    """``n`` records, the first ``unkeyed_first`` written before keying was turned on."""
    out, prev = [], GENESIS
    for i in range(1, n + 1):
        rec = make_record(i, 1_700_000_000_000_000 + i, "ann", "lake.write", f"t{i % 3}",
                          canonical({"version": i}), prev, None if i <= unkeyed_first else key)
        out.append(rec)
        prev = rec.hash
    return out


def rehash_from(records: list[AuditRecord], i: int, mode: str) -> list[AuditRecord]:
    """The attack a catalog writer can make: edit record ``i`` and re-hash every record after
    it so the chain links again; the MACs are kept (``keep``), stripped, or remade with a key
    that is not the project's (``forge``)."""
    out, prev = list(records[:i]), records[i - 1].hash if i else GENESIS
    for j, r in enumerate(records[i:], start=i):
        details = canonical({"version": -1}) if j == i else r.details
        new = make_record(r.seq, r.time_us, r.actor, r.action, r.target, details, prev,
                          OTHER_KEY if mode == "forge" else None)
        if mode == "keep":
            new = AuditRecord(**{**new.__dict__, "mac": r.mac, "key_id": r.key_id})
        out.append(new)
        prev = new.hash
    return out


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 25), data=st.data())
def test_rehashing_a_keyed_chain_is_detected(n: int, data: st.DataObject) -> None:
    """Property: with the key, any edit followed by a re-hash of the rest of the chain fails at
    the edited record, whatever the attacker does with the MACs; records written before keying
    was turned on are counted, not blamed."""
    unkeyed = data.draw(st.integers(0, n - 1))
    records = keyed_chain(n, unkeyed_first=unkeyed)
    intact = verify(records, key=KEY)
    assert intact.ok and (intact.keyed, intact.unkeyed) == (n - unkeyed, unkeyed)
    i = data.draw(st.integers(unkeyed, n - 1))  # a keyed record
    mode = data.draw(st.sampled_from(["keep", "strip", "forge"]))
    if mode == "strip" and i == unkeyed:
        # stripping every MAC leaves a valid unkeyed chain: only an anchor catches that
        # (test_stripping_every_mac_is_caught_by_the_anchor)
        mode = "keep"
    tampered = rehash_from(records, i, mode)
    result = verify(tampered, key=KEY)
    assert not result.ok and result.bad_seq == i + 1
    expected = "wrong-key" if mode == "forge" and i == unkeyed else "tampered"
    assert result.kind == expected
    # and without the key nothing keyed can be vouched for
    if mode != "strip":
        assert not verify(tampered).ok


def test_unkeyed_chain_rehash_is_the_documented_limit() -> None:
    """Without a key, an edited-and-re-hashed chain verifies: why the key exists."""
    records = rehash_from(keyed_chain(6, None), 2, "strip")
    assert verify(records).ok and verify(records, key=KEY).ok


def test_keyed_chain_without_or_with_wrong_key() -> None:
    records = keyed_chain(5, unkeyed_first=2)
    none = verify(records)
    assert not none.ok and none.kind == "no-key" and none.bad_seq == 3
    assert "no audit key is configured" in none.problem and "3 record(s)" in none.problem
    wrong = verify(records, key=OTHER_KEY)
    assert not wrong.ok and wrong.kind == "wrong-key" and "wrong audit key" in wrong.problem
    assert KEY.key_id in wrong.problem and OTHER_KEY.key_id in wrong.problem
