"""SQL over lake tables (DuckDB), pushdown of filters/projections, reads recorded as lineage."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tarmac.catalog import DatasetVersion
from tarmac.errors import SqlError, TarmacError, UsageError, VersionNotFoundError
from tarmac.lake.sql import connect


@pytest.fixture
def shop(project):
    p = project
    p.lake.write("customers", {"id": [1, 2, 3], "region": ["north", "south", "north"]})
    p.lake.write("orders", {"order_id": [10, 11, 12, 13], "customer_id": [1, 1, 2, 3],
                            "amount": [5.0, 7.5, 10.0, 2.5]})
    return p


def test_aggregate(shop):
    got = shop.sql("SELECT count(*) AS n, sum(amount) AS total, max(order_id) AS last "
                   "FROM orders").to_pylist()
    assert got == [{"n": 4, "total": 25.0, "last": 13}]


def test_join_two_tables(shop):
    got = shop.sql("""
        SELECT c.region, sum(o.amount) AS total, count(*) AS n
        FROM orders o JOIN customers c ON c.id = o.customer_id
        GROUP BY c.region ORDER BY c.region""").to_pylist()
    assert got == [{"region": "north", "total": 15.0, "n": 3},
                   {"region": "south", "total": 10.0, "n": 1}]


def test_as_of_pins_one_table(shop):
    p = shop
    p.lake.write("customers", {"id": [4], "region": ["east"]})
    p.lake.write("orders", {"order_id": [14], "customer_id": [4], "amount": [100.0]})
    q = "SELECT count(*) AS n FROM orders o JOIN customers c ON c.id = o.customer_id"
    assert p.sql(q).to_pylist() == [{"n": 5}]
    assert p.sql(q, as_of={"customers": 0}).to_pylist() == [{"n": 4}]
    assert p.sql("SELECT count(*) AS n FROM orders", as_of={"orders": "0"}).to_pylist() == [
        {"n": 4}]
    when = p.lake.history("customers")[-1]["time"]
    assert p.sql("SELECT count(*) AS n FROM customers",
                 as_of={"customers": when.isoformat()}).to_pylist() == [{"n": 3}]
    with pytest.raises(VersionNotFoundError, match="has versions 0 to 1"):
        p.sql("SELECT * FROM customers", as_of={"customers": 7})


def test_as_of_naming_unused_table(shop):
    with pytest.raises(UsageError) as exc:
        shop.sql("SELECT count(*) FROM orders", as_of={"customers": 0})
    assert exc.type is UsageError
    assert "as_of names customers, which the query does not read" in str(exc.value)


def test_syntax_error(shop):
    with pytest.raises(SqlError) as exc:
        shop.sql("SELEC count(*) FROM orders")
    msg = str(exc.value)
    assert "syntax error" in msg and "SELEC" in msg
    assert "lake tables: customers, orders" in msg


def test_unknown_table_lists_lake_tables(shop):
    with pytest.raises(SqlError) as exc:
        shop.sql("SELECT * FROM ordrs")
    msg = str(exc.value)
    assert "ordrs" in msg and "does not exist" in msg
    assert "lake tables: customers, orders" in msg


def test_unknown_column_is_sql_error(shop):
    with pytest.raises(SqlError, match="nope"):
        shop.sql("SELECT nope FROM orders")


def test_empty_table_queryable(project):
    p = project
    p.lake.write("e", {"id": [1, 2], "v": ["a", "b"]})
    p.lake.write("e", pa.table({"id": pa.array([], pa.int64()), "v": pa.array([], pa.string())}),
                 mode="overwrite")
    assert p.lake.read("e").num_rows == 0
    got = p.sql("SELECT count(*) AS n, max(v) AS m FROM e").to_pylist()
    assert got == [{"n": 0, "m": None}]
    assert p.sql("SELECT * FROM e").schema.names == ["id", "v"]
    assert p.sql("SELECT count(*) AS n FROM e", as_of={"e": 0}).to_pylist() == [{"n": 2}]


def test_after_schema_evolution_old_files_read_null(project):
    p = project
    p.lake.write("c", {"id": [1, 2]})
    p.lake.write("c", {"id": [3], "email": ["c@x"]})
    got = p.sql("SELECT id, email FROM c ORDER BY id").to_pylist()
    assert got == [{"id": 1, "email": None}, {"id": 2, "email": None}, {"id": 3, "email": "c@x"}]
    assert p.sql("SELECT count(*) AS n FROM c WHERE email IS NULL").to_pylist() == [{"n": 2}]


def test_column_added_by_empty_write_is_queryable(project):
    p = project
    p.lake.write("c", {"id": [1, 2]})
    empty = pa.table({"id": pa.array([], pa.int64()), "email": pa.array([], pa.string())})
    p.lake.write("c", empty)
    assert p.lake.read("c").schema.names == ["id", "email"]  # the Arrow path has it
    got = p.sql("SELECT id, email FROM c ORDER BY id").to_pylist()
    assert got == [{"id": 1, "email": None}, {"id": 2, "email": None}]


def test_unquoted_uppercase_table_name(shop):
    assert shop.sql("SELECT count(*) AS n FROM Orders").to_pylist() == [{"n": 4}]


def test_as_of_vacuumed_version_fails_cleanly(project):
    p = project
    p.lake.write("t", {"id": [1]})
    p.lake.write("t", {"id": [2]}, mode="overwrite")
    p.lake.vacuum("t", retain="0h")
    with pytest.raises(TarmacError):
        p.sql("SELECT * FROM t", as_of={"t": 0})


def test_reads_inside_run_are_inputs(shop):
    p = shop
    p.lake.write("orders", {"order_id": [14], "customer_id": [3], "amount": [1.0]})
    with p.ledger.run("report") as run:
        summary = p.sql("SELECT c.region, sum(o.amount) AS total FROM orders o "
                        "JOIN customers c ON c.id = o.customer_id GROUP BY 1")
        p.lake.write("region_totals", summary)
    with p.ledger.run("peek") as peek:
        p.lake.read("orders", version=0, filter="amount > 6")
    got = p.ledger.get_run(run.id)
    assert set(got.inputs) == {DatasetVersion("orders", 1), DatasetVersion("customers", 0)}
    assert got.outputs == (DatasetVersion("region_totals", 0),)
    assert p.ledger.get_run(peek.id).inputs == (DatasetVersion("orders", 0),)
    assert p.ledger.get_run(peek.id).outputs == ()
    # reads outside a run record nothing
    before = p.catalog.count("lineage_edges")
    p.sql("SELECT 1 FROM orders")
    assert p.catalog.count("lineage_edges") == before


# -- pushdown ------------------------------------------------------------------------------------


@pytest.fixture
def five_files(project):
    for i in range(5):
        project.lake.write("big", {"id": list(range(i * 1000, (i + 1) * 1000)),
                                   "payload": [f"row-{i}"] * 1000, "n": [i] * 1000})
    assert len(project.lake.table("big").file_uris()) == 5
    return project


def test_sql_filter_prunes_row_groups(five_files):
    q = "SELECT count(*) AS n FROM big WHERE id < 10"
    assert five_files.sql(q).to_pylist() == [{"n": 10}]
    con = connect(five_files.lake, q)
    try:
        plan = "\n".join(str(r[1]) for r in con.sql("EXPLAIN ANALYZE " + q).fetchall())
    finally:
        con.close()
    scanned = re.search(r"Row Groups Scanned:\s*(\d+)\s*/\s*(\d+)", plan)
    assert scanned, plan
    assert (int(scanned.group(1)), int(scanned.group(2))) == (1, 5)
    assert re.search(r"Filters:\s*id\s*<\s*10", plan), plan


def test_arrow_filter_skips_files_and_projects(five_files):
    p = five_files
    dataset = p.lake.scan("big")
    assert len(list(dataset.get_fragments(filter=pc.field("id") < 10))) == 1
    got = p.lake.read("big", filter=pc.field("id") < 10, columns=["id", "n"])
    assert got.schema.names == ["id", "n"]
    assert sorted(got.column("id").to_pylist()) == list(range(10))
    got = p.lake.read("big", filter="id BETWEEN 2995 AND 3004", columns=["id"])
    assert got.schema.names == ["id"]
    assert sorted(got.column("id").to_pylist()) == list(range(2995, 3005))


def test_unknown_read_column(five_files):
    with pytest.raises(UsageError, match="has no column.*nope.*columns: id, payload, n"):
        five_files.lake.read("big", columns=["id", "nope"])
