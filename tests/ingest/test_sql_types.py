"""Every type a SQL source declares has a lake type that survives every later load (issue 11
items 4 and 5): PostgreSQL uuid, interval, arrays, json, money; MariaDB TINYINT(1) and zero
dates; list<string> from Parquet. A column's type comes from the source's declared schema,
not from one batch's values."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tarmac.ingest.sql_types import iso_interval
from tarmac.project import Project

from .conftest import Database, Declare, load, quarantined, rows

U1 = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
U2 = "b1ffcd00-0d1c-4ef8-bb6d-6bb9bd380a22"


def _schema(p: Project, table: str) -> dict[str, pa.DataType]:
    s = p.lake.read(table).schema
    return {f.name: f.type for f in s}


def test_postgres_special_types_load_twice(project: Project, declare: Declare,
                                           pg_db: Database) -> None:
    t = pg_db.qualified("isql_special")
    pg_db.run(f"CREATE TABLE {t} (id int PRIMARY KEY, u uuid, iv interval, tags text[], "
              "nums int[], doc jsonb, price money, addr inet, seen_at timestamp)")
    pg_db.run(f"INSERT INTO {t} VALUES (1, '{U1}', '1 year 2 months 3 days 04:05:06.5', "
              "'{a,b}', '{1,2}', '{\"k\": 1}', 12.5, '10.0.0.1', '2026-01-01 10:00')")
    p = declare(project, {"pg": pg_db.source(tables=["isql_special"], primary_key="id",
                                             cursor="seen_at")})
    first = load(p, "pg")
    assert (first.rows_loaded, first.rows_quarantined) == (1, 0)
    types = _schema(p, "isql_special")
    assert types["u"] == pa.string() and types["iv"] == pa.string()
    assert types["tags"] == pa.list_(pa.string()) and types["nums"] == pa.list_(pa.int64())
    assert types["doc"] == pa.string() and types["price"] == pa.decimal128(19, 2)
    pg_db.run(f"INSERT INTO {t} VALUES (2, '{U2}', '-2 hours', '{{}}', NULL, '[1]', 0.99, "
              "'::1', '2026-01-02 10:00')")
    second = load(p, "pg")  # failed with "list<element: string> in the table but string"
    assert (second.rows_loaded, second.rows_quarantined) == (1, 0)
    assert _schema(p, "isql_special") == types
    assert rows(p, "SELECT id, u, iv, tags, nums, doc, price, addr FROM isql_special "
                   "ORDER BY id") == [
        {"id": 1, "u": U1, "iv": "P1Y2M3DT4H5M6.5S", "tags": ["a", "b"], "nums": [1, 2],
         "doc": '{"k": 1}', "price": Decimal("12.50"), "addr": "10.0.0.1/32"},
        {"id": 2, "u": U2, "iv": "PT-2H", "tags": [], "nums": None, "doc": "[1]",
         "price": Decimal("0.99"), "addr": "::1/128"}]


def test_postgres_query_source_interval_is_named_or_mapped(project: Project, declare: Declare,
                                                           pg_db: Database) -> None:
    """A query has no declared schema: what ADBC hands out is mapped (interval -> ISO text,
    uuid -> its text) and a type the lake cannot keep names its column."""
    p = declare(project, {
        "q": pg_db.source(query=f"SELECT 1 AS id, interval '3 days' AS iv, "
                                f"'{U1}'::uuid AS u", table="isql_q"),
        "bad": pg_db.source(query="SELECT 1 AS id, '10.0.0.1'::inet AS addr",
                            table="isql_bad")})
    load(p, "q")
    assert rows(p, "SELECT iv, u FROM isql_q") == [{"iv": "P3D", "u": U1}]
    r = load(p, "bad", ok=False)
    assert "'addr'" in (r.error or "") and "no lake type" in (r.error or "")


def _maria_events(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.exec_driver_sql("SET SESSION sql_mode = ''")
        conn.exec_driver_sql("CREATE TABLE isql_events (id int PRIMARY KEY, active tinyint(1), "
                             "level tinyint, happened datetime, doc json)")
        conn.exec_driver_sql(
            "INSERT INTO isql_events VALUES (1, 1, 7, '0000-00-00 00:00:00', '{\"a\": 1}'), "
            "(2, 0, 8, '2026-01-02 10:00:00', NULL), (3, 1, 9, '2026-01-03 10:00:00', '[]')")


@pytest.mark.parametrize("batch_size", [1, 1000])
def test_mariadb_zero_date_is_quarantined_and_types_follow_the_declaration(
        project: Project, declare: Declare, maria_db: Database, batch_size: int) -> None:
    _maria_events(maria_db)
    p = declare(project, {"m": maria_db.source(tables=["isql_events"], primary_key="id",
                                               cursor="happened", batch_size=batch_size)})
    r = load(p, "m")
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined) == (3, 2, 1)
    types = _schema(p, "isql_events")
    assert types["active"] == pa.bool_() and types["level"] == pa.int64()
    assert types["happened"] == pa.timestamp("us", tz="UTC") and types["doc"] == pa.string()
    assert rows(p, "SELECT id, active, happened FROM isql_events ORDER BY id") == [
        {"id": 2, "active": False, "happened": datetime(2026, 1, 2, 10, tzinfo=UTC)},
        {"id": 3, "active": True, "happened": datetime(2026, 1, 3, 10, tzinfo=UTC)}]
    [q] = quarantined(p, "m")
    assert q["column"] == "happened" and q["value"] == "0000-00-00 00:00:00"
    assert r.cursor_after == datetime(2026, 1, 3, 10, tzinfo=UTC).isoformat()
    again = load(p, "m")  # the cursor is a timestamp: nothing is re-read and re-loaded
    assert again.rows_loaded == 0 and len(quarantined(p, "m")) == 1


def test_mariadb_unmappable_type_names_table_and_column(project: Project, declare: Declare,
                                                        maria_db: Database) -> None:
    maria_db.run("CREATE TABLE isql_geo (id int PRIMARY KEY, place geometry)")
    p = declare(project, {"m": maria_db.source(tables=["isql_geo"])})
    r = load(p, "m", ok=False)
    assert "column 'place' of table 'isql_geo'" in (r.error or ""), r.error


def test_parquet_list_column_loads_twice(project: Project, declare: Declare) -> None:
    data = project.root / "data"
    data.mkdir()
    pq.write_table(pa.table({"id": [1, 2], "tags": [["a", "b"], []]}), data / "a.parquet")
    p = declare(project, {"items": {"type": "file", "path": "data/*.parquet",
                                    "primary_key": "id"}})
    load(p, "items")
    pq.write_table(pa.table({"id": [3], "tags": [["c"]]}), data / "b.parquet")
    second = load(p, "items")
    assert second.rows_loaded == 1
    assert rows(p, "SELECT id, tags FROM items ORDER BY id") == [
        {"id": 1, "tags": ["a", "b"]}, {"id": 2, "tags": []}, {"id": 3, "tags": ["c"]}]


def test_sqlite_declared_types_do_not_depend_on_batches(project: Project, declare: Declare,
                                                        sqlite_db: Database) -> None:
    """A DATETIME column is a timestamp whatever the batch holds; a value that is not one is
    quarantined with its text."""
    sqlite_db.run("CREATE TABLE isql_t (id INTEGER PRIMARY KEY, at DATETIME, flag BOOLEAN)")
    sqlite_db.run("INSERT INTO isql_t VALUES (1, 'soon', 1), (2, '2026-01-02 10:00:00', 0)")
    p = declare(project, {"s": sqlite_db.source(tables=["isql_t"], batch_size=1)})
    r = load(p, "s")
    assert (r.rows_loaded, r.rows_quarantined) == (1, 1)
    assert _schema(p, "isql_t")["at"] == pa.timestamp("us", tz="UTC")
    assert _schema(p, "isql_t")["flag"] == pa.bool_()
    assert quarantined(p, "s")[0]["value"] == "soon"


def test_iso_interval() -> None:
    assert iso_interval(14, 3, 14_706_500_000_000) == "P1Y2M3DT4H5M6.5S"
    assert iso_interval(0, 0, 0) == "PT0S"
    assert iso_interval(0, 0, -7_200_000_000_000) == "PT-2H"
    assert iso_interval(-1, 0, 0) == "P-1M"


def test_contract_types_round_trip_exactly() -> None:
    from tarmac.ingest.contract import parse_type, stored_type, type_json

    for t in (pa.list_(pa.string()), pa.list_(pa.int64()), pa.decimal128(19, 2),
              pa.struct([("a", pa.int64()), ("b", pa.list_(pa.string()))]),
              pa.timestamp("us", tz="UTC"), pa.binary(), pa.bool_()):
        assert stored_type(type_json("c", t)) == t, t
    # a contract stored before types were serialized still reads its list columns back
    assert parse_type("list<element: string>") == pa.list_(pa.string())
    assert parse_type("list<item: int64>") == pa.list_(pa.int64())


def test_postgres_other_types_load_as_their_text(project: Project, declare: Declare,
                                                 pg_db: Database) -> None:
    """Types ADBC hands out as opaque binary (xml, point, ranges, bit) were loaded as COPY
    bytes; they are their PostgreSQL text form now, and enums are strings."""
    s = pg_db.schema
    pg_db.run(f"CREATE TYPE {s}.isql_mood AS ENUM ('ok', 'sad')",
              f"CREATE TABLE {s}.isql_other (id int PRIMARY KEY, mood {s}.isql_mood, x xml, "
              "pt point, r int4range, bt bit(3))",
              f"INSERT INTO {s}.isql_other VALUES (1, 'ok', '<a/>', '(1,2)', '[1,5)', '101')")
    p = declare(project, {"pg": pg_db.source(tables=["isql_other"], primary_key="id")})
    load(p, "pg")
    assert rows(p, "SELECT mood, x, pt, r, bt FROM isql_other") == [
        {"mood": "ok", "x": "<a/>", "pt": "(1,2)", "r": "[1,5)", "bt": "101"}]
