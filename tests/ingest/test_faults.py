"""Every bad input and fault a source can throw at a load, through ``p.ingest`` on a real project.

Sources that cannot be read (an unreachable server, wrong credentials, a missing table, file or
glob, an unreadable or broken file) fail with one message naming the source, leave the lake
table and the quarantine as they were, and load normally once the cause is fixed. Records that
cannot be rows (a truncated CSV line, a line in the wrong encoding, a line that is not JSON)
and rows that break the contract (null cursors, types, rules, schema drift) go to the
``quarantine`` table with the reason while the rest loads. Bad declarations are ``ConfigError``s
naming ``sources.NAME.key``. Every load is checked against
``read == loaded + quarantined + duplicates``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

import tarmac
from tarmac.errors import ConfigError
from tarmac.project import Project

from .conftest import (
    MARIA_HOST,
    MARIA_PORT,
    PG_HOST,
    PG_PORT,
    Database,
    Declare,
    column,
    exists,
    load,
    quarantined,
    rows,
    snapshot,
)


def customers(db: Database, n: int = 3, start: int = 1) -> None:
    """A ``customers`` table (created if needed) with ids start..start+n-1."""
    table = sa.Table("customers", sa.MetaData(), sa.Column("id", sa.Integer),
                     sa.Column("name", sa.String(40)), schema=db.schema)
    table.metadata.create_all(db.engine)
    db.insert("customers", [{"id": i, "name": f"c{i}"} for i in range(start, start + n)])


def write(project: Project, rel: str, content: str | bytes) -> Path:
    path = project.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def rewrite(path: Path, content: str | bytes) -> None:
    """Replace a file's content, with an mtime that surely differs from the last load's."""
    before = path.stat().st_mtime_ns
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def reasons(p: Project, source: str) -> list[str]:
    return [q["reason"] for q in quarantined(p, source)]


# -- sources that cannot be read --------------------------------------------------------------


def test_unreachable_database(project: Project, declare: Declare, pg_db: Database) -> None:
    customers(pg_db)
    good = pg_db.source(tables=["customers"])
    p = declare(project, {"crm": good})
    load(p, "crm")
    before = snapshot(p, "customers")
    customers(pg_db, 2, start=4)
    p = declare(p, {"crm": good | {"url": "postgresql://postgres@127.0.0.1:1/test"}})
    r = load(p, "crm", ok=False)
    assert "database unreachable" in r.error and "127.0.0.1:1" in r.error
    assert (r.rows_read, r.rows_loaded) == (0, 0)
    assert snapshot(p, "customers") == before
    p = declare(p, {"crm": good})  # the server is back
    assert load(p, "crm").rows_loaded == 5
    assert column(p, "customers", "id") == [1, 1, 2, 2, 3, 3, 4, 5]  # append mode, no key


def test_postgres_unknown_user(project: Project, declare: Declare, pg_db: Database) -> None:
    customers(pg_db)
    bad = pg_db.source(tables=["customers"],
                       url=f"postgresql://no_such_user@{PG_HOST}:{PG_PORT}/test")
    p = declare(project, {"crm": bad})
    r = load(p, "crm", ok=False)
    assert "connecting to postgresql://no_such_user@" in r.error
    assert 'role "no_such_user" does not exist' in r.error
    assert not exists(p, "customers") and not exists(p, "quarantine")
    p = declare(p, {"crm": pg_db.source(tables=["customers"])})
    assert load(p, "crm").rows_loaded == 3


def test_mariadb_wrong_password(project: Project, declare: Declare, maria_db: Database) -> None:
    customers(maria_db)
    database = maria_db.url.rsplit("/", 1)[1]
    bad = maria_db.source(tables=["customers"],
                          url=f"mysql://root:s3cret-pw@{MARIA_HOST}:{MARIA_PORT}/{database}")
    p = declare(project, {"crm": bad})
    r = load(p, "crm", ok=False)
    assert "authentication failed" in r.error and "Access denied for user 'root'" in r.error
    assert "s3cret-pw" not in r.error and "root:***@" in r.error  # the password is masked
    assert not exists(p, "customers") and not exists(p, "quarantine")
    p = declare(p, {"crm": maria_db.source(tables=["customers"])})
    assert load(p, "crm").rows_loaded == 3


def test_missing_table_loads_nothing(project: Project, declare: Declare,
                                     any_db: Database) -> None:
    customers(any_db)
    p = declare(project, {"crm": any_db.source(tables=["customers", "orders"])})
    r = load(p, "crm", ok=False)
    assert "table 'orders' not found" in r.error and "(tables: customers)" in r.error
    assert not exists(p, "customers") and not exists(p, "quarantine")  # not even the good one
    orders = sa.Table("orders", sa.MetaData(), sa.Column("order_id", sa.Integer),
                      schema=any_db.schema)
    orders.metadata.create_all(any_db.engine)
    any_db.insert("orders", [{"order_id": 1}])
    results = p.ingest(["crm"])
    assert [(r.table, r.status, r.rows_loaded) for r in results] == [
        ("customers", "succeeded", 3), ("orders", "succeeded", 1)]


def test_missing_sqlite_file_is_not_created(project: Project, declare: Declare) -> None:
    p = declare(project, {"crm": {"type": "sql", "url": "sqlite:///data/crm.db",
                                  "tables": ["customers"]}})
    r = load(p, "crm", ok=False)
    path = p.root / "data" / "crm.db"
    assert f"database file {path} does not exist" in r.error
    assert not path.exists() and not path.parent.exists()
    assert not exists(p, "customers")
    path.parent.mkdir()
    customers(Database(f"sqlite:///{path}", sa.create_engine(f"sqlite:///{path}")))
    assert load(p, "crm").rows_loaded == 3


def test_glob_matching_nothing(project: Project, declare: Declare) -> None:
    p = declare(project, {"orders": {"type": "file", "path": "data/orders/*.csv"}})
    r = load(p, "orders", ok=False)
    assert "no files match 'data/orders/*.csv'" in r.error
    assert not exists(p, "orders")
    write(p, "data/orders/a.csv", "id,amount\n1,2.5\n")
    assert load(p, "orders").rows_loaded == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(project: Project, declare: Declare) -> None:
    write(project, "data/orders/a.csv", "id,amount\n1,2.5\n")
    locked = write(project, "data/orders/b.csv", "id,amount\n2,3.5\n")
    locked.chmod(0)
    try:
        p = declare(project, {"orders": {"type": "file", "path": "data/orders/*.csv"}})
        r = load(p, "orders", ok=False)
        assert f"cannot read {locked}" in r.error and "permission denied" in r.error.lower()
        assert not exists(p, "orders")  # a.csv, read first, was not committed either
    finally:
        locked.chmod(0o644)
    r = load(p, "orders")
    assert (r.rows_loaded, r.files) == (2, 2)


def test_unreadable_file_even_for_root(project: Project, declare: Declare) -> None:
    """A path the glob matches but nobody can read (here a dangling link, which stops root
    too): the load fails naming the file, commits nothing, and recovers once it is fixed."""
    write(project, "data/orders/a.csv", "id,amount\n1,2.5\n")
    target = project.root / "data" / "elsewhere.csv"
    link = project.root / "data" / "orders" / "b.csv"
    link.symlink_to(target)
    p = declare(project, {"orders": {"type": "file", "path": "data/orders/*.csv"}})
    r = load(p, "orders", ok=False)
    assert f"source 'orders': cannot read {link}" in r.error
    assert not exists(p, "orders")
    write(p, "data/elsewhere.csv", "id,amount\n2,3.5\n")
    r = load(p, "orders")
    assert (r.rows_loaded, r.files) == (2, 2)


def test_broken_file_fails_the_whole_load(project: Project, declare: Declare) -> None:
    """A file that is not what its extension says stops the load; files read before it are not
    committed, and the next run loads everything once it is replaced."""
    pq.write_table(pa.table({"id": [1, 2]}), project.root / "a.parquet")
    write(project, "b.parquet", b"PAR1 this is not parquet at all")
    p = declare(project, {"orders": {"type": "file", "path": "*.parquet"}})
    r = load(p, "orders", ok=False)
    assert f"{p.root / 'b.parquet'} is not a readable parquet file" in r.error
    assert not exists(p, "orders") and not exists(p, "quarantine")
    pq.write_table(pa.table({"id": [3]}), p.root / "b.parquet")
    r = load(p, "orders")
    assert (r.rows_read, r.rows_loaded, r.files) == (3, 3, 2)


def test_failed_load_reports_nothing_loaded(project: Project, declare: Declare) -> None:
    (project.root / "data").mkdir()
    pq.write_table(pa.table({"id": [1, 2]}), project.root / "data" / "a.parquet")
    write(project, "data/b.parquet", b"PAR1 not parquet")
    p = declare(project, {"mixed": {"type": "file", "path": "data/*.parquet",
                                    "columns": {"id": {"max": 1}}}})  # a: 1 loads, 1 rejected
    r = load(p, "mixed", ok=False)
    assert "b.parquet is not a readable parquet file" in r.error
    assert r.rows_read == 2
    assert not exists(p, "mixed") and quarantined(p) == []  # as the user sees the lake
    assert (r.rows_loaded, r.rows_quarantined) == (0, 0)  # and as the result reports it


def test_failed_source_does_not_stop_the_others(project: Project, declare: Declare) -> None:
    write(project, "data/ok.csv", "id\n1\n2\n")
    p = declare(project, {"broken": {"type": "file", "path": "missing/*.csv"},
                          "fine": {"type": "file", "path": "data/ok.csv"}})
    results = p.ingest()
    assert [(r.source, r.status) for r in results] == [("broken", "failed"),
                                                       ("fine", "succeeded")]
    assert results.failed[0].error.startswith("source 'broken': no files match")
    assert column(p, "fine", "id") == [1, 2]


# -- records that cannot be rows --------------------------------------------------------------


def test_truncated_csv(project: Project, declare: Declare) -> None:
    full = "id,name,tier,amount\n1,Ann,gold,10.5\n2,Bob,basic,3\n3,Carol,gold,7.25\n"
    path = write(project, "data/customers.csv", full[:-len("ol,gold,7.25\n")])  # cut mid-row
    p = declare(project, {"customers": {"type": "file", "path": "data/customers.csv",
                                        "primary_key": "id"}})
    r = load(p, "customers")
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined) == (3, 2, 1)
    assert column(p, "customers", "name", "id") == ["Ann", "Bob"]
    (q,) = quarantined(p, "customers")
    assert q["reason"] == "CSV row has the wrong number of fields (expected 4, got 2)"
    assert (q["record"], q["origin"], q["table"]) == ("3,Car", str(path), "customers")
    rewrite(path, full)  # the complete file arrives
    r = load(p, "customers")
    assert (r.rows_read, r.rows_quarantined) == (3, 0)
    assert column(p, "customers", "name", "id") == ["Ann", "Bob", "Carol"]
    assert len(quarantined(p)) == 1


def test_mixed_encodings_quarantine_the_bad_line(project: Project, declare: Declare) -> None:
    lines = ["id,name,city\n", "1,Zoë,Kraków\n", "2,José,São Paulo\n", "3,Renée,Besançon\n",
             "4,Øyvind,Tromsø\n"]
    content = b"".join(line.encode("latin-1" if i == 3 else "utf-8")
                       for i, line in enumerate(lines))
    path = write(project, "data/people.csv", content)
    p = declare(project, {"people": {"type": "file", "path": "data/people.csv",
                                     "primary_key": "id", "columns": {"id": "int"}}})
    r = load(p, "people")
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined) == (4, 3, 1)
    assert rows(p, "SELECT id, name, city FROM people ORDER BY id") == [
        {"id": 1, "name": "Zoë", "city": "Kraków"}, {"id": 2, "name": "José", "city": "São Paulo"},
        {"id": 4, "name": "Øyvind", "city": "Tromsø"}]
    (q,) = quarantined(p, "people")
    assert q["reason"].startswith("line 4 is not valid utf-8 (byte 0xe9")
    assert q["record"] == "3,Renée,Besançon"  # kept, decoded as Latin-1
    assert q["origin"].endswith("people.csv:4")
    rewrite(path, "".join(lines).encode())  # re-exported, all in UTF-8
    r = load(p, "people")
    assert (r.rows_read, r.rows_quarantined) == (4, 0)
    assert column(p, "people", "name", "id") == ["Zoë", "José", "Renée", "Øyvind"]


def test_json_line_in_another_encoding(project: Project, declare: Declare) -> None:
    write(project, "data/e.jsonl", '{"id": 1, "name": "Zoë"}\n'.encode()
          + '{"id": 2, "name": "Renée"}\n'.encode("latin-1") + b'{"id": 3, "name": "Al"}\n')
    p = declare(project, {"e": {"type": "file", "path": "data/e.jsonl"}})
    r = load(p, "e")
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined) == (3, 2, 1)
    assert column(p, "e", "name", "id") == ["Zoë", "Al"]
    (q,) = quarantined(p, "e")
    assert q["reason"] == "line 2 is not valid utf-8 (byte 0xe9 at position 22)"
    assert (q["record"], q["origin"]) == ('{"id": 2, "name": "Renée"}', f"{p.root}/data/e.jsonl:2")


def test_json_lines_that_are_not_json(project: Project, declare: Declare) -> None:
    path = write(project, "data/events.jsonl", "\n".join([
        '{"id": 1, "kind": "click"}',
        "not json at all",
        '{"id": 2, "kind": oops}',
        '{"id": 3, "kind": "view"}',
        '{"id": 4, "ki',  # truncated
    ]) + "\n")
    p = declare(project, {"events": {"type": "file", "path": "data/events.jsonl",
                                     "primary_key": "id"}})
    r = load(p, "events")
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined) == (5, 2, 3)
    assert column(p, "events", "kind", "id") == ["click", "view"]
    got = {q["record"]: q["reason"] for q in quarantined(p, "events")}
    assert set(got) == {"not json at all", '{"id": 2, "kind": oops}', '{"id": 4, "ki'}
    assert got["not json at all"] == "not a JSON object (broken or truncated line)"
    assert got['{"id": 4, "ki'] == "not a JSON object (broken or truncated line)"
    assert got['{"id": 2, "kind": oops}'].startswith("not valid JSON")
    rewrite(path, '{"id": 2, "kind": "buy"}\n{"id": 4, "kind": "view"}\n')
    assert load(p, "events").rows_loaded == 2
    assert column(p, "events", "id") == [1, 2, 3, 4]


def test_json_values_that_change_type_are_coerced(project: Project, declare: Declare) -> None:
    write(project, "data/orders.jsonl", "\n".join(json.dumps(r) for r in [
        {"order_id": 1, "customer_id": 42, "placed": "2026-01-05"},
        {"order_id": 2, "customer_id": "42", "placed": "2026-01-06T08:30:00Z"},
        {"order_id": 3, "customer_id": " 7 ", "placed": "2026-01-07"},
    ]) + "\n")
    p = declare(project, {"orders": {"type": "file", "path": "data/orders.jsonl",
                                     "columns": {"customer_id": "int", "placed": "timestamp"}}})
    r = load(p, "orders")
    assert (r.rows_loaded, r.rows_quarantined) == (3, 0)
    assert rows(p, "SELECT customer_id, placed FROM orders ORDER BY order_id") == [
        {"customer_id": 42, "placed": datetime(2026, 1, 5, tzinfo=UTC)},
        {"customer_id": 42, "placed": datetime(2026, 1, 6, 8, 30, tzinfo=UTC)},
        {"customer_id": 7, "placed": datetime(2026, 1, 7, tzinfo=UTC)}]
    assert rows(p, "SELECT typeof(customer_id) AS t FROM orders LIMIT 1") == [{"t": "BIGINT"}]


# -- rows that break the contract -------------------------------------------------------------


def test_null_cursor_rows_are_merged_by_key(project: Project, declare: Declare) -> None:
    """With a primary key a row without a cursor value is loaded (merged by its key); it does
    not move the high-water mark (issue 11 item 1: it used to be quarantined)."""
    write(project, "data/c.csv", "id,name,updated_at\n1,a,2026-01-01T00:00:00Z\n2,b,\n"
                                 "3,c,2026-01-03T00:00:00Z\n4,d,\n")
    p = declare(project, {"c": {"type": "file", "path": "data/c.csv", "primary_key": "id",
                                "cursor": "updated_at"}})
    r = load(p, "c")
    assert (r.rows_loaded, r.rows_quarantined) == (4, 0)
    assert r.cursor_after == "2026-01-03T00:00:00+00:00"
    assert column(p, "c", "id") == [1, 2, 3, 4]
    assert quarantined(p, "c") == []


def test_null_cursor_rows_without_a_key_are_quarantined(project: Project,
                                                        declare: Declare) -> None:
    write(project, "data/c.csv", "id,name,updated_at\n1,a,2026-01-01T00:00:00Z\n2,b,\n"
                                 "3,c,2026-01-03T00:00:00Z\n4,d,\n")
    p = declare(project, {"c": {"type": "file", "path": "data/c.csv", "cursor": "updated_at"}})
    r = load(p, "c")
    assert (r.rows_loaded, r.rows_quarantined) == (2, 2)
    assert r.cursor_after == "2026-01-03T00:00:00+00:00"
    assert column(p, "c", "id") == [1, 3]
    got = quarantined(p, "c")
    assert [json.loads(q["record"])["id"] for q in got] == [2, 4]
    assert {q["reason"] for q in got} == {
        "cursor 'updated_at' is NULL and the source has no primary key: the row cannot be "
        "placed in time for incremental loads"}
    assert {q["column"] for q in got} == {"updated_at"}


def test_null_cursor_in_a_sql_source(project: Project, declare: Declare,
                                     any_db: Database) -> None:
    table = sa.Table("events", sa.MetaData(), sa.Column("id", sa.Integer),
                     sa.Column("seq", sa.Integer), schema=any_db.schema)
    table.metadata.create_all(any_db.engine)
    any_db.insert("events", [{"id": 1, "seq": 10}, {"id": 2, "seq": None}, {"id": 3, "seq": 30}])
    p = declare(project, {"ev": any_db.source(tables=["events"], primary_key="id",
                                              cursor="seq")})
    r = load(p, "ev")  # with a key, the row without a cursor is merged by it (issue 11 item 1)
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined, r.cursor_after) == (3, 3, 0, 30)
    assert quarantined(p, "ev") == []


def test_duplicate_keys_in_one_batch(project: Project, declare: Declare) -> None:
    write(project, "data/c.csv", "\n".join([
        "id,name,updated_at",
        "1,first,2026-01-01T00:00:00Z",
        "2,only,2026-01-01T00:00:00Z",
        "1,latest,2026-01-03T00:00:00Z",
        "1,middle,2026-01-02T00:00:00Z",
        "3,early,2026-01-01T00:00:00Z",
        "3,tie-last-read,2026-01-01T00:00:00Z",  # same cursor: the last one read wins
    ]) + "\n")
    p = declare(project, {"c": {"type": "file", "path": "data/c.csv", "primary_key": "id",
                                "cursor": "updated_at"}})
    r = load(p, "c")
    assert (r.rows_read, r.rows_loaded, r.duplicates, r.rows_quarantined) == (6, 3, 3, 0)
    assert rows(p, "SELECT id, name FROM c ORDER BY id") == [
        {"id": 1, "name": "latest"}, {"id": 2, "name": "only"}, {"id": 3, "name": "tie-last-read"}]


# schema drift --------------------------------------------------------------------------------

BASE = "id,name,email\n1,Ann,ann@x.org\n2,Bob,bob@x.org\n"
WITH_PHONE = "id,name,email,phone\n3,Cy,cy@x.org,555-0100\n4,Di,di@x.org,\n"


def drift_project(project: Project, declare: Declare, policy: str,
                  **options: Any) -> Project:
    write(project, "data/people/1.csv", BASE)
    p = declare(project, {"people": {"type": "file", "path": "data/people/*.csv",
                                     "primary_key": "id", "on_schema_change": policy,
                                     **options}})
    assert load(p, "people").rows_loaded == 2
    return p


def test_new_column_evolve(project: Project, declare: Declare) -> None:
    p = drift_project(project, declare, "evolve")
    write(p, "data/people/2.csv", WITH_PHONE)
    r = load(p, "people")
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined) == (2, 2, 0)
    assert r.drift == ["new column 'phone': type string (column added)"]
    assert rows(p, "SELECT id, phone FROM people ORDER BY id") == [
        {"id": 1, "phone": None}, {"id": 2, "phone": None}, {"id": 3, "phone": "555-0100"},
        {"id": 4, "phone": None}]


def test_new_column_quarantine(project: Project, declare: Declare) -> None:
    p = drift_project(project, declare, "quarantine")
    write(p, "data/people/2.csv", WITH_PHONE)
    r = load(p, "people")
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined) == (2, 1, 1)
    assert r.drift == ["new column 'phone': type string (rows with a value quarantined)"]
    assert column(p, "people", "id") == [1, 2, 4]
    assert "phone" not in p.sql("SELECT * FROM people").column_names
    (q,) = quarantined(p, "people")
    assert q["reason"] == "schema drift: new column 'phone' is not in the contract"
    assert (q["column"], q["value"]) == ("phone", "555-0100")
    assert json.loads(q["record"])["id"] == 3


def test_new_column_fail(project: Project, declare: Declare) -> None:
    p = drift_project(project, declare, "fail")
    before = snapshot(p, "people")
    write(p, "data/people/2.csv", WITH_PHONE)
    r = load(p, "people", ok=False)
    assert "schema changed: new column 'phone'" in r.error and "nothing was loaded" in r.error
    assert snapshot(p, "people") == before
    # the fix: accept the column; the file (never recorded as loaded) is read again
    p = declare(p, {"people": {"type": "file", "path": "data/people/*.csv",
                               "primary_key": "id", "on_schema_change": "evolve"}})
    r = load(p, "people")
    assert (r.rows_read, r.rows_loaded) == (2, 2)
    assert column(p, "people", "phone", "id") == [None, None, "555-0100", None]


def test_renamed_column_reported(project: Project, declare: Declare) -> None:
    p = drift_project(project, declare, "evolve")
    write(p, "data/people/2.csv", "id,name,mail\n3,Cy,cy@x.org\n")
    r = load(p, "people")
    assert r.rows_loaded == 1
    (renamed, missing) = sorted(r.drift, reverse=True)
    assert renamed.startswith("renamed column 'mail': type string; looks like 'email' renamed")
    assert "aliases: [mail]" in renamed
    assert missing == "missing column 'email': no longer in the source (filled with nulls)"
    assert rows(p, "SELECT email, mail FROM people WHERE id = 3") == [
        {"email": None, "mail": "cy@x.org"}]


def test_renamed_column_with_aliases_is_silent(project: Project, declare: Declare) -> None:
    p = drift_project(project, declare, "fail",
                      columns={"email": {"aliases": ["mail", "e_mail"]}})
    write(p, "data/people/2.csv", "id,name,mail\n3,Cy,cy@x.org\n")
    r = load(p, "people")
    assert (r.rows_loaded, r.rows_quarantined, r.drift) == (1, 0, [])
    assert column(p, "people", "email", "id") == ["ann@x.org", "bob@x.org", "cy@x.org"]
    assert "mail" not in p.sql("SELECT * FROM people").column_names


def test_type_change_quarantines_rows(project: Project, declare: Declare) -> None:
    write(project, "data/sales/1.csv", "id,amount\n1,10.5\n2,3\n")
    p = declare(project, {"sales": {"type": "file", "path": "data/sales/*.csv",
                                    "primary_key": "id"}})
    assert load(p, "sales").rows_loaded == 2
    write(p, "data/sales/2.csv", "id,amount\n3,twelve\n4,unknown\n5,\n")
    r = load(p, "sales")
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined) == (3, 1, 2)
    assert r.drift == ["type change 'amount': expected float, the source sends string "
                       "(rows quarantined)"]
    assert rows(p, "SELECT id, amount FROM sales ORDER BY id") == [
        {"id": 1, "amount": 10.5}, {"id": 2, "amount": 3.0}, {"id": 5, "amount": None}]
    got = quarantined(p, "sales")
    assert [(q["column"], q["value"]) for q in got] == [("amount", "twelve"), ("amount", "unknown")]
    assert {q["reason"] for q in got} == {"'amount' is not a valid float"}


def test_type_change_in_a_sql_column(project: Project, declare: Declare,
                                     sqlite_db: Database) -> None:
    """SQLite lets a REAL column take text: the rows are quarantined, the drift reported."""
    sqlite_db.run("CREATE TABLE sales (id INTEGER, amount REAL)")
    sqlite_db.insert("sales", [{"id": 1, "amount": 10.5}, {"id": 2, "amount": 3.25}])
    p = declare(project, {"sales": sqlite_db.source(tables=["sales"], primary_key="id",
                                                    cursor="id")})
    load(p, "sales")
    # the exporting app now writes text, also into the row at the mark (read again: id >= 2)
    sqlite_db.run("UPDATE sales SET amount = 'three' WHERE id = 2")
    sqlite_db.insert("sales", [{"id": 3, "amount": "12,50"}, {"id": 4, "amount": "n/a"}])
    r = load(p, "sales")
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined) == (3, 0, 3)
    assert r.drift == ["type change 'amount': expected float, the source sends string "
                       "(rows quarantined)"]
    assert [(q["value"], q["reason"]) for q in quarantined(p, "sales")] == [
        (v, "'amount' is not a valid float") for v in ("three", "12,50", "n/a")]
    assert rows(p, "SELECT id, amount FROM sales ORDER BY id") == [
        {"id": 1, "amount": 10.5}, {"id": 2, "amount": 3.25}]


def test_decimal_too_large_for_the_contract(project: Project, declare: Declare) -> None:
    """A value that does not fit the stored decimal type is quarantined, never wrapped around."""
    folder = project.root / "data"
    folder.mkdir()
    pq.write_table(pa.table({"id": [1], "amount": pa.array([Decimal("12.50")],
                                                           pa.decimal128(4, 2))}),
                   folder / "1.parquet")
    p = declare(project, {"prices": {"type": "file", "path": "data/*.parquet"}})
    load(p, "prices")
    pq.write_table(pa.table({"id": [2, 3, 4], "amount": pa.array(
        [Decimal("123456.75"), Decimal("1.50"), Decimal("0.125")], pa.decimal128(9, 3))}),
        folder / "2.parquet")
    r = load(p, "prices")
    assert (r.rows_loaded, r.rows_quarantined) == (1, 2)
    assert rows(p, "SELECT id, amount FROM prices ORDER BY id") == [
        {"id": 1, "amount": Decimal("12.50")}, {"id": 3, "amount": Decimal("1.50")}]
    assert [(q["value"], q["reason"]) for q in quarantined(p, "prices")] == [
        ("123456.750", "'amount' is not a valid decimal128(4, 2)"),
        ("0.125", "'amount' is not a valid decimal128(4, 2)")]


def test_type_change_fail_policy(project: Project, declare: Declare) -> None:
    write(project, "data/sales/1.csv", "id,amount\n1,10.5\n")
    p = declare(project, {"sales": {"type": "file", "path": "data/sales/*.csv",
                                    "on_schema_change": "fail"}})
    load(p, "sales")
    before = snapshot(p, "sales")
    write(p, "data/sales/2.csv", "id,amount\n3,twelve\n")
    r = load(p, "sales", ok=False)
    assert "schema changed: type change 'amount'" in r.error
    assert snapshot(p, "sales") == before


# contract rules and coercion -----------------------------------------------------------------

RULES = {
    "id": {"type": "int", "required": True},
    "status": {"allowed": ["open", "closed"]},
    "amount": {"type": "float", "min": 0, "max": 1000},
    "code": {"pattern": "[A-Z]{3}-[0-9]+"},
    "email": {"unique": True},
    "qty": "int",
    "seen_at": "timestamp",
    "due": {"type": "date", "formats": ["%d/%m/%Y", "%Y-%m-%d"]},
}
GOOD = {"id": "1", "status": "open", "amount": "10", "code": "ABC-1", "email": "a@x.org",
        "qty": "42", "seen_at": "2026-01-05", "due": "31/01/2026"}


def test_contract_rules(project: Project, declare: Declare) -> None:
    cases = [  # (overrides of a good row, the reason it is rejected); None: it passes
        ({}, None),
        ({"id": "2", "status": "closed", "amount": "0", "code": "XYZ-99", "email": "b@x.org",
          "qty": "7", "due": "2026-02-28"}, None),
        ({"id": "", "email": "z@x.org"}, "'id' is required"),
        ({"id": "4", "status": "pending", "email": "c@x.org"},
         "'status' is not one of the allowed values (open, closed)"),
        ({"id": "5", "amount": "-1", "email": "d@x.org"}, "'amount' is below the minimum 0"),
        ({"id": "6", "amount": "1000.5", "email": "e@x.org"},
         "'amount' is above the maximum 1000"),
        ({"id": "7", "code": "abc-1", "email": "f@x.org"},
         "'code' does not match the pattern [A-Z]{3}-[0-9]+"),
        ({"id": "8"}, "'email' must be unique; the value occurred before"),
        ({"id": "9", "qty": "4.5", "email": "g@x.org"}, "'qty' is not a valid int"),
        ({"id": "10", "qty": "many", "email": "h@x.org"}, "'qty' is not a valid int"),
        ({"id": "11", "seen_at": "yesterday", "email": "i@x.org"},
         "'seen_at' is not a valid timestamp"),
        ({"id": "12", "due": "01.02.2026", "email": "j@x.org"},
         "'due' is not a valid date in one of the formats %d/%m/%Y, %Y-%m-%d"),
    ]
    header = list(GOOD)
    lines = [",".join(header)] + [",".join({**GOOD, **o}[c] for c in header) for o, _ in cases]
    write(project, "data/t.csv", "\n".join(lines) + "\n")
    p = declare(project, {"t": {"type": "file", "path": "data/t.csv", "columns": RULES}})
    r = load(p, "t")
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined) == (12, 2, 10)
    assert rows(p, "SELECT * FROM t ORDER BY id") == [
        {"id": 1, "status": "open", "amount": 10.0, "code": "ABC-1", "email": "a@x.org",
         "qty": 42, "seen_at": datetime(2026, 1, 5, tzinfo=UTC), "due": date(2026, 1, 31)},
        {"id": 2, "status": "closed", "amount": 0.0, "code": "XYZ-99", "email": "b@x.org",
         "qty": 7, "seen_at": datetime(2026, 1, 5, tzinfo=UTC), "due": date(2026, 2, 28)}]
    by_row = {json.loads(q["record"])["email"] + "/" + str(json.loads(q["record"])["id"]):
              q["reason"] for q in quarantined(p, "t")}
    want = {f"{({**GOOD, **o})['email']}/{({**GOOD, **o})['id'] or None}": reason
            for o, reason in cases if reason}
    assert by_row.keys() == want.keys()
    for row, reason in want.items():  # min/max print as floats: "the minimum 0.0"
        assert by_row[row].startswith(reason), (row, by_row[row])


def test_unique_across_the_chunks_of_a_load(project: Project, declare: Declare) -> None:
    """``unique`` remembers the values of earlier chunks of the same load."""
    write(project, "data/u.jsonl", "".join(json.dumps({"id": i, "email": e}) + "\n" for i, e in
                                           [(1, "a@x.org"), (2, "b@x.org"), (3, "a@x.org")]))
    p = declare(project, {"u": {"type": "file", "path": "data/u.jsonl",
                                "columns": {"email": {"unique": True}}, "batch_size": 1}})
    r = load(p, "u")
    assert (r.rows_loaded, r.rows_quarantined) == (2, 1)
    (q,) = quarantined(p, "u")
    assert (json.loads(q["record"])["id"], q["value"]) == (3, "a@x.org")


# -- bad declarations -------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "key", "says"), [
    ({"type": "file", "path": "a.csv", "columns": {"n": "integr"}}, "sources.x.columns.n.type",
     "unknown column type"),
    ({"type": "file", "path": "a.csv", "mode": "merge"}, "sources.x",
     "mode 'merge' needs a primary_key"),
    ({"type": "sql", "url": "sqlite:///a.db", "tables": ["t"], "primary_key": "id",
      "lookback": "1d"}, "sources.x", "lookback needs a cursor column"),
    ({"type": "file", "path": "a.csv", "primry_key": "id"}, "sources.x.primry_key", ""),
    ({"type": "file", "path": "a.csv", "mode": "upsert"}, "sources.x.mode", "upsert"),
    ({"type": "database", "url": "x"}, "sources.x.type", "expected one of: sql, file"),
])
def test_bad_declarations(project: Project, declare: Declare, body: dict[str, Any], key: str,
                          says: str) -> None:
    p = declare(project, {"x": body})
    for attempt in (lambda: p.sources, lambda: p.ingest(["x"])):
        with pytest.raises(ConfigError) as info:
            attempt()
        message = str(info.value)
        assert f"tarmac.yaml: key '{key}" in message, message
        assert says in message, message
    assert not exists(p, "x")


def test_bad_declaration_in_a_fresh_open(project: Project) -> None:
    """Opening the project still works: only the sources are refused, by name."""
    path = project.root / "tarmac.yaml"
    path.write_text(path.read_text() + "sources:\n  orders: {type: file, path: a.csv, "
                                        "lookback: 1d}\n")
    with tarmac.open(project.root) as p, pytest.raises(ConfigError,
                                                       match=r"sources\.orders"):
        p.ingest()


# -- the accounting catches rows that vanish (issue 11 item 1) ---------------------------------


def test_rows_dropped_by_the_contract_fail_the_load(project: Project, declare: Declare,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from tarmac.ingest.contract import Contract

    write(project, "data/c.csv", "id,name\n1,a\n2,b\n3,c\n")
    p = declare(project, {"c": {"type": "file", "path": "data/c.csv", "primary_key": "id"}})
    real = Contract.check

    def lossy(self: Contract, table: pa.Table, origin: str) -> Any:
        checked = real(self, table, origin)
        checked.good = checked.good.slice(1)  # a bug that loses a row silently
        return checked

    monkeypatch.setattr(Contract, "check", lossy)
    r = load(p, "c", ok=False)
    assert "1 row(s)" in (r.error or "") and "nothing was committed" in (r.error or "")
    assert not p.lake.exists("c")


def test_rows_dropped_uncounted_fail_the_load(project: Project, declare: Declare,
                                              sqlite_db: Database,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows that vanish between reading and committing (here: dropped by the window filter
    without being counted) fail the load, naming how many."""
    from tarmac.ingest import load as loader

    sqlite_db.run("CREATE TABLE ev (id INTEGER PRIMARY KEY, seq INTEGER)",
                  "INSERT INTO ev VALUES (1, 10), (2, 20)")
    p = declare(project, {"ev": sqlite_db.source(tables=["ev"], primary_key="id",
                                                 cursor="seq")})
    load(p, "ev")
    sqlite_db.run("INSERT INTO ev VALUES (3, 30), (4, NULL)")
    monkeypatch.setattr(loader._StreamLoad, "_window",
                        lambda self, data, since, contract: data.slice(0, 1))
    r = load(p, "ev", ok=False)
    assert "row accounting does not add up: 2 row(s) unaccounted for" in (r.error or ""), r.error
    assert p.lake.version("ev") == 0
