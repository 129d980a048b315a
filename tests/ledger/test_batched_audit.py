"""Batched audit appends: many records under one lock, one record per batch with count + hash.

Both run on SQLite and on the real PostgreSQL (``any_project``) and keep the chain verifiable.
"""

from __future__ import annotations

import hashlib
import json
import threading

import pytest
import sqlalchemy as sa

from tarmac.ledger import AuditEntry, batch_digest
from tarmac.ledger.chain import canonical, record_hash
from tarmac.project import Project


def test_append_chains_many_records_in_one_transaction(any_project: Project) -> None:
    p = any_project
    p.ledger.commit("before", "t", {})
    records = p.ledger.append([AuditEntry("access.read", f"table_{i}", {"rows": i})
                               for i in range(50)] + [AuditEntry("x", "y", actor="bot")])
    assert [r.seq for r in records] == list(range(2, 53))
    assert all(b.prev_hash == a.hash for a, b in zip(records, records[1:], strict=False))
    assert records[-1].actor == "bot" and records[0].actor == p.ledger.actor
    result = p.ledger.verify()
    assert result.ok and result.records == 52 and result.head_hash == records[-1].hash
    newest = p.ledger.audit(limit=2).items
    assert [(r.action, r.target) for r in newest] == [("x", "y"), ("access.read", "table_49")]
    assert p.ledger.append([]) == []


def test_a_failed_append_lands_nothing(any_project: Project) -> None:
    p = any_project
    p.ledger.commit("before", "t", {})
    bad = AuditEntry("ok", None)  # type: ignore[arg-type]  # target is NOT NULL in the catalog
    with pytest.raises(sa.exc.IntegrityError):
        p.ledger.append([AuditEntry("ok", "t1"), AuditEntry("ok", "t2"), bad])
    result = p.ledger.verify()
    assert result.ok and result.records == 1
    assert [r.seq for r in p.ledger.append([AuditEntry("ok", "t3")])] == [2]


def test_tampering_inside_a_batch_is_named(any_project: Project) -> None:
    p = any_project
    p.ledger.append([AuditEntry("a", f"t{i}") for i in range(10)])
    with p.catalog.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET target = 'evil' WHERE seq = 6"))
    result = p.ledger.verify()
    assert not result.ok and result.bad_seq == 6 and "was edited" in result.problem


def test_commit_batch_records_count_and_hash_of_the_ids(any_project: Project) -> None:
    p = any_project
    ids = [f"req-{i}" for i in range(10_000)]
    rec = p.ledger.commit_batch("predictions.flush", "churn", ids, {"segment": 7})
    stored = p.ledger.audit(limit=1).items[0]
    details = json.loads(stored.details)
    assert stored.seq == rec.seq == 1 and p.ledger.verify().records == 1
    assert details == {"count": 10_000, "ids_sha256": batch_digest(ids)[1], "segment": 7}
    assert batch_digest(ids) == (10_000, details["ids_sha256"])
    # the digest proves exactly these ids, in this order
    assert batch_digest(ids[:-1])[1] != details["ids_sha256"]
    assert batch_digest([*ids[:-1], "req-x"])[1] != details["ids_sha256"]
    assert batch_digest(list(reversed(ids)))[1] != details["ids_sha256"]
    # a generator works, and an edited count is caught by the chain
    assert batch_digest(i for i in ids) == batch_digest(ids)
    with p.catalog.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET details = replace(details, '10000', '9999')"))
    assert not p.ledger.verify().ok


def test_batch_digest_keeps_types_and_boundaries_apart() -> None:
    assert batch_digest([1])[1] != batch_digest(["1"])[1]
    assert batch_digest(["a\nb"])[1] != batch_digest(["a", "b"])[1]
    assert batch_digest(["ab", "c"])[1] != batch_digest(["a", "bc"])[1]
    assert batch_digest([]) == (0, hashlib.sha256(b"").hexdigest())


def test_commit_batch_applies_the_change_in_the_same_transaction(any_project: Project) -> None:
    p = any_project

    def change(conn: sa.Connection) -> None:
        raise RuntimeError("the catalog change failed")

    with pytest.raises(RuntimeError):
        p.ledger.commit_batch("stream.batch", "clicks", range(5), change=change)
    assert p.ledger.verify().records == 0


def test_concurrent_appends_keep_one_chain(any_project: Project) -> None:
    p = any_project
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            for b in range(5):
                p.ledger.append([AuditEntry("w", f"w{w}b{b}", {"i": i}) for i in range(20)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    result = p.ledger.verify()
    assert result.ok and result.records == 4 * 5 * 20


def test_the_record_hash_format_is_stable() -> None:
    """Chains written by earlier versions must keep verifying: the bytes hashed never change."""
    details = canonical({"b": [1, {"z": "é", "y": None}], "a": "postgresql://u:pw@h/db",
                         "api_key": "k"})
    assert details == '{"a":"postgresql://u:***@h/db","api_key":"***","b":[1,{"y":null,"z":"\\u00e9"}]}'
    assert record_hash(3, 123, "ann", "lake.write", "tæble", details, "0" * 64) == (
        "5e9aa80883dbaa66b2fdd86294677c56bf9ab1024db76600d4aeab762a37f2a2")


def test_the_batch_digest_is_each_ids_json_text_and_a_newline() -> None:
    """The documented digest, recomputed the plain way: anyone holding the ids can check a
    record, whatever the ids look like (quotes, backslashes, control and non-ASCII
    characters, numbers, nulls) and however many there are."""
    import hashlib
    import json

    def plain(ids: list[object]) -> tuple[int, str]:
        h = hashlib.sha256()
        for item in ids:
            h.update(json.dumps(item, ensure_ascii=False, default=str).encode("utf-8") + b"\n")
        return len(ids), h.hexdigest()

    odd: list[object] = ["a", 'say "hi"', "back\\slash", "tab\tnew\nline", "é", "\u2028",
                         "", 1, "1", 2.5, None, ["x"], {"k": 1}]
    many: list[object] = [f"{i:032x}" for i in range(9000)] + [7] + ["z"] * 5000
    for ids in ([], odd, many, odd + many):
        assert batch_digest(ids) == plain(ids)
    assert batch_digest(["1"]) != batch_digest([1])
