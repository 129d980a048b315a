"""The SQL and file connectors end to end, through ``p.ingest`` on a real project.

SQL sources are read from SQLite, the real PostgreSQL (through ADBC) and the real MariaDB:
tables and queries, incremental loads on a timestamp and a numeric cursor (pushed down to the
database where it can filter), late rows re-read by ``lookback`` without duplicates, full
refreshes, small batches, merge and append. File sources: CSV, JSON lines and Parquet, globs
over several files, new files picked up and old ones left alone, rewritten files re-read.
Every load is checked against ``read == loaded + quarantined + duplicates``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from tarmac.ingest.load import LoadProgress
from tarmac.project import Project

from .conftest import Database, Declare, accounted, column, load, load_all, quarantined, rows

T0 = datetime(2026, 1, 1)


def at(hours: float) -> datetime:
    """A cursor value: ``hours`` after T0 (naive, as the databases keep it)."""
    return T0 + timedelta(hours=hours)


def utc(hours: float) -> datetime:
    """The same instant as the lake returns it (UTC)."""
    return at(hours).replace(tzinfo=UTC)


def customers_table(db: Database, name: str = "customers") -> sa.Table:
    table = sa.Table(name, sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True,
                                                    autoincrement=False),
                     sa.Column("name", sa.String(40)), sa.Column("tier", sa.String(10)),
                     sa.Column("version", sa.Integer), sa.Column("updated_at", sa.DateTime),
                     schema=db.schema)
    table.metadata.create_all(db.engine)
    return table


def customer(i: int, hours: float, *, name: str | None = None, tier: str = "basic",
             version: int | None = None) -> dict[str, Any]:
    return {"id": i, "name": name or f"c{i}", "tier": tier,
            "version": version if version is not None else i, "updated_at": at(hours)}


def seed(db: Database, n: int = 5) -> sa.Table:
    """``customers`` with ids 1..n, customer i updated at hour i."""
    table = customers_table(db)
    db.insert("customers", [customer(i, i) for i in range(1, n + 1)])
    return table


def pushes_down(db: Database) -> bool:
    """SQLite keeps timestamps as text: the loader filters them, not the database."""
    return not db.url.startswith("sqlite")


# -- SQL: tables and queries ------------------------------------------------------------------


def test_sql_table_loads_every_row(project: Project, declare: Declare, any_db: Database) -> None:
    seed(any_db)
    p = declare(project, {"crm": any_db.source(tables=["customers"], primary_key="id",
                                               cursor="updated_at",
                                               columns={"updated_at": "timestamp"})})
    r = load(p, "crm")
    assert (r.table, r.mode, r.rows_read, r.rows_loaded, r.rows_quarantined, r.duplicates) == (
        "customers", "merge", 5, 5, 0, 0)
    assert r.cursor_after == utc(5).isoformat()
    assert rows(p, "SELECT id, name, tier, version, updated_at FROM customers ORDER BY id") == [
        {"id": i, "name": f"c{i}", "tier": "basic", "version": i, "updated_at": utc(i)}
        for i in range(1, 6)]
    assert quarantined(p) == []


def test_sql_several_tables_each_to_its_own_lake_table(project: Project, declare: Declare,
                                                       any_db: Database) -> None:
    seed(any_db)
    orders = sa.Table("orders", sa.MetaData(), sa.Column("order_id", sa.Integer),
                      sa.Column("customer_id", sa.Integer), sa.Column("amount", sa.Float),
                      schema=any_db.schema)
    orders.metadata.create_all(any_db.engine)
    any_db.insert("orders", [{"order_id": i, "customer_id": i % 3 + 1, "amount": i * 1.5}
                             for i in range(1, 8)])
    p = declare(project, {"crm": any_db.source(tables=["customers", "orders"])})
    results = load_all(p, "crm")
    assert [(r.stream, r.table, r.rows_loaded, r.mode) for r in results] == [
        ("customers", "customers", 5, "append"), ("orders", "orders", 7, "append")]
    assert rows(p, "SELECT count(*) AS n, sum(amount) AS total FROM orders") == [
        {"n": 7, "total": 1.5 * 28}]


def test_sql_query_source(project: Project, declare: Declare, any_db: Database) -> None:
    seed(any_db)
    any_db.run(f"UPDATE {any_db.qualified('customers')} SET tier = 'gold' WHERE id IN (2, 4)")
    query = (f"SELECT id, name, updated_at FROM {any_db.qualified('customers')} "
             "WHERE tier = 'gold';")
    p = declare(project, {"gold-customers": any_db.source(query=query, primary_key="id",
                                                          cursor="updated_at",
                                                          columns={"updated_at": "timestamp"})})
    r = load(p, "gold-customers")
    assert (r.table, r.rows_read, r.rows_loaded) == ("gold_customers", 2, 2)
    assert rows(p, "SELECT id, name FROM gold_customers ORDER BY id") == [
        {"id": 2, "name": "c2"}, {"id": 4, "name": "c4"}]
    # a later customer turning gold arrives incrementally, through the query
    any_db.run(f"UPDATE {any_db.qualified('customers')} SET tier = 'gold', updated_at = :t "
               "WHERE id = 5", t=at(9))
    r = load(p, "gold-customers")
    assert (r.rows_loaded, r.rows_quarantined) == (1, 0)
    assert column(p, "gold_customers", "id") == [2, 4, 5]


# -- SQL: incremental loads -------------------------------------------------------------------


def test_sql_incremental_timestamp_cursor(project: Project, declare: Declare,
                                          any_db: Database) -> None:
    seed(any_db)
    p = declare(project, {"crm": any_db.source(tables=["customers"], primary_key="id",
                                               cursor="updated_at",
                                               columns={"updated_at": "timestamp"})})
    first = load(p, "crm")
    assert first.rows_loaded == 5
    any_db.insert("customers", [customer(6, 6), customer(7, 7)])
    any_db.run(f"UPDATE {any_db.qualified('customers')} SET name = 'renamed', updated_at = :t "
               "WHERE id = 2", t=at(8))
    second = load(p, "crm")
    # new: 6, 7 and the update of 2; the row at the mark (5) is read again and recognised
    assert (second.rows_loaded, second.rows_quarantined) == (3, 0)
    if pushes_down(any_db):
        assert (second.rows_read, second.duplicates) == (4, 1)  # updated_at >= mark
    else:
        assert (second.rows_read, second.duplicates) == (7, 4)  # filtered by the loader
    assert second.cursor_before == utc(5).isoformat()
    assert second.cursor_after == utc(8).isoformat()
    assert rows(p, "SELECT id, name, updated_at FROM customers ORDER BY id") == [
        {"id": 1, "name": "c1", "updated_at": utc(1)},
        {"id": 2, "name": "renamed", "updated_at": utc(8)},
        *({"id": i, "name": f"c{i}", "updated_at": utc(i)} for i in range(3, 8))]
    third = load(p, "crm")  # nothing new
    assert third.rows_loaded == 0
    assert third.rows_read == (1 if pushes_down(any_db) else 7)
    assert rows(p, "SELECT count(*) AS n FROM customers") == [{"n": 7}]


def test_sql_incremental_numeric_cursor_is_pushed_down(project: Project, declare: Declare,
                                                       any_db: Database) -> None:
    seed(any_db)
    p = declare(project, {"crm": any_db.source(tables=["customers"], primary_key="id",
                                               cursor="version")})
    assert load(p, "crm").rows_loaded == 5
    any_db.insert("customers", [customer(6, 6)])
    any_db.run(f"UPDATE {any_db.qualified('customers')} SET tier = 'gold', version = 7 "
               "WHERE id = 1")
    r = load(p, "crm")
    # every database filters an integer cursor itself: version >= 5 -> ids 5, 6 and 1
    assert (r.rows_read, r.rows_loaded, r.duplicates) == (3, 2, 1)
    assert r.cursor_after == 7
    assert rows(p, "SELECT id, tier, version FROM customers WHERE id IN (1, 6) ORDER BY id") == [
        {"id": 1, "tier": "gold", "version": 7}, {"id": 6, "tier": "basic", "version": 6}]
    assert rows(p, "SELECT count(*) AS n, count(DISTINCT id) AS k FROM customers") == [
        {"n": 6, "k": 6}]


def test_sql_lookback_rereads_late_rows_without_duplicates(project: Project, declare: Declare,
                                                           any_db: Database) -> None:
    seed(any_db)
    p = declare(project, {"crm": any_db.source(tables=["customers"], primary_key="id",
                                               cursor="updated_at", lookback="2h",
                                               columns={"updated_at": "timestamp"})})
    assert load(p, "crm").rows_loaded == 5
    # a row committed late: its cursor (4:30) is behind the mark (5:00), inside the lookback
    any_db.insert("customers", [customer(8, 4.5)])
    r = load(p, "crm")
    assert (r.rows_loaded, r.rows_quarantined) == (1, 0)
    if pushes_down(any_db):  # updated_at >= 3:00: rows 3, 4, the late one and 5
        assert (r.rows_read, r.duplicates) == (4, 3)
    assert r.cursor_after == utc(5).isoformat()  # the mark never moves back
    assert column(p, "customers", "id") == [1, 2, 3, 4, 5, 8]
    # and again: the window is read once more, nothing doubles
    r = load(p, "crm")
    assert r.rows_loaded == 0
    assert rows(p, "SELECT count(*) AS n, count(DISTINCT id) AS k FROM customers") == [
        {"n": 6, "k": 6}]


def test_sql_without_lookback_misses_late_rows(project: Project, declare: Declare,
                                               sqlite_db: Database) -> None:
    """The reason lookback exists: a row behind the mark is not read again."""
    seed(sqlite_db)
    p = declare(project, {"crm": sqlite_db.source(tables=["customers"], primary_key="id",
                                                  cursor="version")})
    load(p, "crm")
    sqlite_db.insert("customers", [customer(8, 4.5, version=3)])
    r = load(p, "crm")
    assert r.rows_loaded == 0
    assert 8 not in column(p, "customers", "id")


def test_sql_lookback_on_a_text_cursor_is_refused_clearly(project: Project, declare: Declare,
                                                         sqlite_db: Database) -> None:
    """A lookback of hours cannot be subtracted from text: the load says so instead of
    silently ignoring the window; declaring the column's type makes it work."""
    sqlite_db.run("CREATE TABLE events (id INTEGER, updated_at TEXT)")
    sqlite_db.insert("events", [{"id": 1, "updated_at": "2026-01-01T01:00:00Z"},
                                {"id": 2, "updated_at": "2026-01-01T05:00:00Z"}])
    source = sqlite_db.source(tables=["events"], primary_key="id", cursor="updated_at",
                              lookback="2h")
    p = declare(project, {"ev": source})
    assert load(p, "ev").rows_loaded == 2
    sqlite_db.insert("events", [{"id": 3, "updated_at": "2026-01-01T04:00:00Z"}])  # late
    [failed] = p.ingest(["ev"])
    assert failed.status == "failed"
    assert "lookback '2h' cannot be applied to cursor 'updated_at'" in (failed.error or "")

    p = declare(p, {"ev": {**source, "columns": {"updated_at": "timestamp"}}})
    p.ingest(["ev"], full_refresh=True)
    sqlite_db.insert("events", [{"id": 4, "updated_at": "2026-01-01T03:30:00Z"}])  # late
    assert load(p, "ev").rows_loaded == 1
    assert column(p, "events", "id") == [1, 2, 3, 4]


def test_sql_full_refresh_replaces_the_table(project: Project, declare: Declare,
                                             any_db: Database) -> None:
    seed(any_db)
    p = declare(project, {"crm": any_db.source(tables=["customers"], primary_key="id",
                                               cursor="updated_at",
                                               columns={"updated_at": "timestamp"})})
    load(p, "crm")
    # deleted and back-dated rows: an incremental load cannot see either
    any_db.run(f"DELETE FROM {any_db.qualified('customers')} WHERE id IN (1, 2)",
               f"UPDATE {any_db.qualified('customers')} SET name = 'fixed', updated_at = :t "
               "WHERE id = 3", t=at(0))
    assert load(p, "crm").rows_loaded == 0
    assert column(p, "customers", "id") == [1, 2, 3, 4, 5]
    r = load(p, "crm", full_refresh=True)
    assert (r.mode, r.rows_read, r.rows_loaded, r.duplicates) == ("full_refresh", 3, 3, 0)
    assert r.cursor_after == utc(5).isoformat()  # the mark starts again from what was read
    assert rows(p, "SELECT id, name FROM customers ORDER BY id") == [
        {"id": 3, "name": "fixed"}, {"id": 4, "name": "c4"}, {"id": 5, "name": "c5"}]
    # incremental loads carry on from the refreshed mark
    any_db.insert("customers", [customer(9, 9)])
    assert load(p, "crm").rows_loaded == 1
    assert column(p, "customers", "id") == [3, 4, 5, 9]


def test_sql_declared_full_refresh_mode(project: Project, declare: Declare,
                                        sqlite_db: Database) -> None:
    seed(sqlite_db)
    p = declare(project, {"crm": sqlite_db.source(tables=["customers"], mode="full_refresh")})
    assert load(p, "crm").rows_loaded == 5
    sqlite_db.run("DELETE FROM customers WHERE id > 2")
    r = load(p, "crm")
    assert (r.rows_read, r.rows_loaded) == (2, 2)
    assert column(p, "customers", "id") == [1, 2]


def test_sql_batches_smaller_than_the_table(project: Project, declare: Declare,
                                            any_db: Database) -> None:
    customers_table(any_db)
    any_db.insert("customers", [customer(i, i) for i in range(1, 21)])  # 20 rows, batches of 5
    p = declare(project, {"crm": any_db.source(tables=["customers"], primary_key="id",
                                               cursor="version", batch_size=5)})
    seen: list[LoadProgress] = []
    results = p.ingest(["crm"], progress=seen.append)
    r = accounted(results[0])
    assert (r.status, r.rows_read, r.rows_loaded, r.duplicates) == ("succeeded", 20, 20, 0)
    reading = [e.rows_read for e in seen if e.phase == "reading"]
    assert reading == [5, 10, 15, 20]  # four chunks, never the whole table at once
    assert rows(p, "SELECT count(*) AS n, sum(version) AS v FROM customers") == [
        {"n": 20, "v": sum(range(1, 21))}]


def test_sql_merge_keeps_the_latest_append_keeps_history(project: Project, declare: Declare,
                                                         any_db: Database) -> None:
    seed(any_db, 3)
    p = declare(project, {
        "merged": any_db.source(tables=["customers"], table="merged", primary_key="id",
                                cursor="version", mode="merge"),
        "history": any_db.source(tables=["customers"], table="history", cursor="version",
                                 mode="append"),
    })
    assert load(p, "merged").rows_loaded == 3
    assert load(p, "history").rows_loaded == 3
    any_db.run(f"UPDATE {any_db.qualified('customers')} SET tier = 'gold', version = 10 "
               "WHERE id = 2")
    merged, history = load(p, "merged"), load(p, "history")
    assert (merged.mode, merged.rows_loaded) == ("merge", 1)
    # append without a key: rows at the mark were loaded already, only newer ones come in
    assert (history.mode, history.rows_loaded) == ("append", 1)
    assert rows(p, "SELECT id, tier, version FROM merged ORDER BY id") == [
        {"id": 1, "tier": "basic", "version": 1}, {"id": 2, "tier": "gold", "version": 10},
        {"id": 3, "tier": "basic", "version": 3}]
    assert rows(p, "SELECT id, tier, version FROM history ORDER BY id, version") == [
        {"id": 1, "tier": "basic", "version": 1}, {"id": 2, "tier": "basic", "version": 2},
        {"id": 2, "tier": "gold", "version": 10}, {"id": 3, "tier": "basic", "version": 3}]


def test_sql_decimals_keep_their_precision(project: Project, declare: Declare,
                                          any_db: Database) -> None:
    """DECIMAL(10, 2) is decimal(10, 2) in the lake, not what the first values suggest."""
    prices = sa.Table("prices", sa.MetaData(), sa.Column("id", sa.Integer),
                      sa.Column("amount", sa.Numeric(10, 2)), schema=any_db.schema)
    prices.metadata.create_all(any_db.engine)
    with any_db.engine.begin() as conn:
        conn.execute(prices.insert(), [{"id": 1, "amount": Decimal("12.50")},
                                       {"id": 2, "amount": Decimal("3.10")}])
    p = declare(project, {"prices": any_db.source(tables=["prices"], primary_key="id",
                                                  cursor="id")})
    load(p, "prices")
    with any_db.engine.begin() as conn:
        conn.execute(prices.insert(), [{"id": 3, "amount": Decimal("12345678.99")}])
    r = load(p, "prices")  # PostgreSQL's numeric used to break every load after the first
    assert (r.rows_loaded, r.rows_quarantined) == (1, 0)
    assert quarantined(p) == []
    got = column(p, "prices", "amount", "id")
    assert [Decimal(str(v)) for v in got] == [Decimal("12.50"), Decimal("3.10"),
                                              Decimal("12345678.99")]
    if not any_db.url.startswith("sqlite"):  # SQLite keeps NUMERIC as REAL: floats
        assert p.sql("SELECT amount FROM prices").schema.field("amount").type == \
            pa.decimal128(10, 2)


def test_sql_new_column_in_the_source_table(project: Project, declare: Declare,
                                            any_db: Database) -> None:
    seed(any_db, 2)
    p = declare(project, {"crm": any_db.source(tables=["customers"], primary_key="id",
                                               cursor="version")})
    load(p, "crm")
    any_db.run(f"ALTER TABLE {any_db.qualified('customers')} ADD COLUMN email VARCHAR(40)")
    any_db.run(f"INSERT INTO {any_db.qualified('customers')} (id, name, tier, version, email) "
               "VALUES (3, 'c3', 'basic', 3, 'c3@x.org')")
    r = load(p, "crm")
    assert r.rows_loaded == 1
    assert r.drift == ["new column 'email': type string (column added)"]
    assert rows(p, "SELECT id, email FROM customers ORDER BY id") == [
        {"id": 1, "email": None}, {"id": 2, "email": None}, {"id": 3, "email": "c3@x.org"}]


# -- files ------------------------------------------------------------------------------------

HEADER = ["order_id", "customer", "amount", "ordered_at"]


def order(i: int) -> dict[str, Any]:
    return {"order_id": i, "customer": f"c{i % 4}", "amount": round(i * 2.25, 2),
            "ordered_at": f"2026-01-{i % 28 + 1:02d}T10:00:00Z"}


def write_orders(path: Path, ids: range | list[int], fmt: str | None = None) -> Path:
    """Orders ``ids`` in ``path`` as CSV, JSON lines or Parquet (by extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [order(i) for i in ids]
    fmt = fmt or path.suffix.lstrip(".")
    if fmt == "csv":
        lines = [",".join(HEADER)] + [",".join(str(r[c]) for c in HEADER) for r in records]
        path.write_text("\n".join(lines) + "\n")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_file_formats(project: Project, declare: Declare, fmt: str) -> None:
    write_orders(project.root / "data" / f"orders.{fmt}", range(1, 11))
    p = declare(project, {"orders": {"type": "file", "path": f"data/orders.{fmt}",
                                     "primary_key": "order_id",
                                     "columns": {"ordered_at": "timestamp"}}})
    r = load(p, "orders")
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined, r.files) == (10, 10, 0, 1)
    assert rows(p, "SELECT order_id, customer, amount, ordered_at FROM orders "
                   "ORDER BY order_id LIMIT 2") == [
        {"order_id": 1, "customer": "c1", "amount": 2.25,
         "ordered_at": datetime(2026, 1, 2, 10, tzinfo=UTC)},
        {"order_id": 2, "customer": "c2", "amount": 4.5,
         "ordered_at": datetime(2026, 1, 3, 10, tzinfo=UTC)}]
    assert rows(p, "SELECT sum(amount) AS total FROM orders") == [{"total": 2.25 * 55}]


def test_file_glob_over_several_files(project: Project, declare: Declare) -> None:
    folder = project.root / "data" / "orders"
    write_orders(folder / "2026-01-01.csv", range(1, 4))
    write_orders(folder / "2026-01-02.csv", range(4, 9))
    write_orders(folder / "2026-01-03.csv", range(9, 11))
    (folder / "notes.txt").write_text("not matched by the glob")
    p = declare(project, {"orders": {"type": "file", "path": "data/orders/*.csv",
                                     "primary_key": "order_id"}})
    r = load(p, "orders")
    assert (r.rows_read, r.rows_loaded, r.files) == (10, 10, 3)
    assert column(p, "orders", "order_id") == list(range(1, 11))


def test_file_new_files_loaded_once(project: Project, declare: Declare) -> None:
    folder = project.root / "data" / "orders"
    write_orders(folder / "a.jsonl", range(1, 6))
    p = declare(project, {"orders": {"type": "file", "path": "data/orders/*.jsonl"}})
    assert load(p, "orders").rows_loaded == 5
    write_orders(folder / "b.jsonl", range(6, 9))
    r = load(p, "orders")
    assert (r.rows_read, r.rows_loaded, r.files) == (3, 3, 1)  # only the new file
    r = load(p, "orders")
    assert (r.rows_read, r.rows_loaded, r.files) == (0, 0, 0)  # nothing new
    assert column(p, "orders", "order_id") == list(range(1, 9))  # no row twice (append mode)


def touch_later(path: Path) -> None:
    """Move ``path``'s mtime a second on, as a rewrite a moment later would."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_file_rewritten_file_is_read_again(project: Project, declare: Declare) -> None:
    path = project.root / "data" / "customers.csv"
    path.parent.mkdir()
    path.write_text("id,name,updated_at\n" + "".join(
        f"{i},c{i},2026-01-0{i}T00:00:00Z\n" for i in range(1, 6)))
    p = declare(project, {"customers": {"type": "file", "path": "data/customers.csv",
                                        "primary_key": "id", "cursor": "updated_at"}})
    assert load(p, "customers").rows_loaded == 5
    assert load(p, "customers").rows_read == 0  # unchanged: not read again
    path.write_text(path.read_text().replace("3,c3,2026-01-03", "3,changed,2026-01-08")
                    + "6,c6,2026-01-06T00:00:00Z\n")
    touch_later(path)
    r = load(p, "customers")
    assert (r.rows_read, r.files) == (6, 1)
    assert (r.rows_loaded, r.duplicates) == (2, 4)  # customer 3 changed, customer 6 is new
    assert rows(p, "SELECT id, name FROM customers ORDER BY id") == [
        {"id": i, "name": "changed" if i == 3 else f"c{i}"} for i in range(1, 7)]


def test_file_rewritten_file_merges_changed_rows_without_cursor(project: Project,
                                                                declare: Declare) -> None:
    """Without a cursor nothing says which version is newer: the merge takes what was read."""
    path = write_orders(project.root / "data" / "orders.csv", range(1, 6))
    p = declare(project, {"orders": {"type": "file", "path": "data/orders.csv",
                                     "primary_key": "order_id"}})
    assert load(p, "orders").rows_loaded == 5
    text = path.read_text().replace(",c3,", ",changed,")
    path.write_text(text + ",".join(str(v) for v in order(6).values()) + "\n")
    touch_later(path)
    r = load(p, "orders")
    assert (r.rows_read, r.files) == (6, 1)
    assert rows(p, "SELECT order_id, customer FROM orders WHERE order_id IN (3, 6) "
                   "ORDER BY order_id") == [{"order_id": 3, "customer": "changed"},
                                            {"order_id": 6, "customer": "c2"}]
    assert rows(p, "SELECT count(*) AS n FROM orders") == [{"n": 6}]


def test_file_full_refresh_rereads_every_file(project: Project, declare: Declare) -> None:
    folder = project.root / "data" / "orders"
    write_orders(folder / "a.parquet", range(1, 4))
    write_orders(folder / "b.parquet", range(4, 6))
    p = declare(project, {"orders": {"type": "file", "path": "data/orders/*.parquet"}})
    load(p, "orders")
    (folder / "a.parquet").unlink()
    r = load(p, "orders", full_refresh=True)
    assert (r.rows_read, r.rows_loaded, r.files) == (2, 2, 1)
    assert column(p, "orders", "order_id") == [4, 5]


def test_file_batches(project: Project, declare: Declare) -> None:
    write_orders(project.root / "data" / "orders.parquet", range(1, 26))
    p = declare(project, {"orders": {"type": "file", "path": "data/orders.parquet",
                                     "batch_size": 10}})
    seen: list[LoadProgress] = []
    r = accounted(p.ingest(["orders"], progress=seen.append)[0])
    assert r.rows_loaded == 25
    assert [e.rows_read for e in seen if e.phase == "reading"] == [10, 20, 25]


def test_a_declared_full_refresh_file_source_reloaded_unchanged_keeps_its_rows(
        project: Project, declare: Declare) -> None:
    """Labels re-issued whole: loading the same unchanged file again must not empty the table."""
    folder = project.root / "data" / "orders"
    write_orders(folder / "a.parquet", range(1, 4))
    p = declare(project, {"orders": {"type": "file", "path": "data/orders/*.parquet",
                                     "mode": "full_refresh"}})
    first = load(p, "orders")
    # the same rows re-issued: nothing committed, so the next training run sees the same
    # data version (issue 11, item 12); every row read is counted as already there
    [again] = p.ingest(["orders"])
    assert (again.status, again.rows_read, again.rows_loaded, again.duplicates,
            again.version) == ("unchanged", 3, 0, 3, first.version)
    assert p.lake.version("orders") == first.version
    assert [e["version"] for e in p.lake.history("orders")] == [first.version]
    [audit] = p.ledger.audit(action="lake.unchanged").items
    assert (audit.target, json.loads(audit.details)["version"]) == ("orders", first.version)
    assert column(p, "orders", "order_id") == [1, 2, 3]
    data = p.root / "lake" / "orders"
    assert len(list(data.glob("*.parquet"))) == 1  # the staged copy was removed
    write_orders(folder / "b.parquet", range(7, 9))
    third = load(p, "orders")
    assert (third.rows_read, third.rows_loaded) == (5, 5)
    assert column(p, "orders", "order_id") == [1, 2, 3, 7, 8]


# -- SQL: rows without a cursor value (issue 11 item 1) ----------------------------------------


def _null_cursor_source(db: Database, table: str, *, key: bool, query: bool = False
                        ) -> dict[str, Any]:
    opts: dict[str, Any] = {"cursor": "updated_at", "columns": {"updated_at": "timestamp"}}
    if key:
        opts["primary_key"] = "id"
    if query:
        return db.source(query=f"SELECT id, name, updated_at FROM {db.qualified(table)}",
                         table=table, **opts)
    return db.source(tables=[table], **opts)


@pytest.mark.parametrize("query", [False, True], ids=["table", "query"])
def test_sql_null_cursor_rows_are_merged_by_key(project: Project, declare: Declare,
                                                any_db: Database, query: bool) -> None:
    """Rows inserted later with a NULL cursor are loaded (they used to vanish: not read,
    or counted as duplicates); re-read every load, an unchanged one is a duplicate and a
    changed one an update."""
    customers_table(any_db, "isql_nc")
    any_db.insert("isql_nc", [customer(i, i) for i in range(1, 4)])
    p = declare(project, {"crm": _null_cursor_source(any_db, "isql_nc", key=True,
                                                     query=query)})
    assert load(p, "crm").rows_loaded == 3
    any_db.insert("isql_nc", [{**customer(i, 0), "updated_at": None} for i in (4, 5)])
    second = load(p, "crm")
    assert (second.rows_loaded, second.rows_quarantined) == (2, 0)
    assert column(p, "isql_nc", "id") == [1, 2, 3, 4, 5]
    third = load(p, "crm")  # re-read, unchanged: duplicates, nothing new
    assert (third.rows_loaded, third.rows_quarantined) == (0, 0) and third.duplicates >= 2
    any_db.run(f"UPDATE {any_db.qualified('isql_nc')} SET name = 'renamed' WHERE id = 5")
    fourth = load(p, "crm")
    assert (fourth.rows_loaded, fourth.rows_quarantined) == (1, 0)
    assert rows(p, "SELECT id, name, updated_at FROM isql_nc WHERE id >= 4 ORDER BY id") == [
        {"id": 4, "name": "c4", "updated_at": None},
        {"id": 5, "name": "renamed", "updated_at": None}]
    assert quarantined(p) == []


def test_sql_null_cursor_rows_without_a_key_are_quarantined_once(
        project: Project, declare: Declare, any_db: Database) -> None:
    customers_table(any_db, "isql_nk")
    any_db.insert("isql_nk", [customer(i, i) for i in range(1, 4)])
    p = declare(project, {"crm": _null_cursor_source(any_db, "isql_nk", key=False)})
    assert load(p, "crm").rows_loaded == 3
    any_db.insert("isql_nk", [{**customer(9, 0), "updated_at": None}])
    second = load(p, "crm")
    assert (second.rows_loaded, second.rows_quarantined) == (0, 1)
    third = load(p, "crm")  # re-read: already in quarantine, counted as a duplicate
    assert (third.rows_loaded, third.rows_quarantined) == (0, 0) and third.duplicates >= 1
    [q] = quarantined(p, "crm")
    assert "'updated_at' is NULL" in q["reason"] and json.loads(q["record"])["id"] == 9
def test_merge_without_cursor_skips_rows_the_table_holds_unchanged(
        project: Project, declare: Declare, sqlite_db: Database) -> None:
    """A source re-served whole (an API or table without a cursor) merged by key: rows the
    table already holds exactly are duplicates, not a new identical version (issue 11, 12)."""
    seed(sqlite_db)
    p = declare(project, {"crm": sqlite_db.source(tables=["customers"], primary_key="id",
                                                  mode="merge")})
    first = load(p, "crm")
    again = load(p, "crm")
    assert (again.rows_read, again.rows_loaded, again.duplicates) == (5, 0, 5)
    assert again.version == first.version == p.lake.version("customers")
    sqlite_db.run("UPDATE customers SET name = 'renamed' WHERE id = 2")
    changed = load(p, "crm")
    assert (changed.rows_loaded, changed.duplicates) == (1, 4)
    assert rows(p, "SELECT name FROM customers WHERE id = 2") == [{"name": "renamed"}]
    assert column(p, "customers", "id") == [1, 2, 3, 4, 5]
