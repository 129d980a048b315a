"""``p.sql`` and ``tarmac sql`` only read: every other statement is refused by name, and DuckDB
cannot touch a file outside the lake (``COPY ... TO``, ``read_csv('/etc/...')``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tarmac.cli import app
from tarmac.errors import SqlError
from tarmac.lake._readonly import check_read_only
from tarmac.project import Project


@pytest.fixture
def shop(project: Project) -> Project:
    project.lake.write("orders", {"order_id": [10, 11, 12], "amount": [5.0, 7.5, 10.0]})
    return project


REFUSED = {
    "COPY (SELECT * FROM orders) TO '{out}'": "COPY",
    "COPY orders TO '{out}' (FORMAT parquet)": "COPY",
    "CREATE TABLE t AS SELECT * FROM orders": "CREATE",
    "CREATE VIEW v AS SELECT 1": "CREATE",
    "CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')": "CREATE",
    "INSERT INTO orders VALUES (13, 1.0)": "INSERT",
    "UPDATE orders SET amount = 0": "UPDATE",
    "DELETE FROM orders": "DELETE",
    "DROP TABLE orders": "DROP",
    "ALTER TABLE orders ADD COLUMN x INT": "ALTER",
    "ATTACH '{out}' AS other": "ATTACH",
    "DETACH other": "DETACH",
    "INSTALL httpfs": "INSTALL",
    "LOAD httpfs": "LOAD",
    "SET threads = 1": "SET",
    "USE memory": "USE",
    "PRAGMA version": "PRAGMA",
    "CALL pragma_version()": "CALL",
    "EXPORT DATABASE '{out}'": "EXPORT",
    "CHECKPOINT": "CHECKPOINT",
    "BEGIN TRANSACTION": "BEGIN",
    "WITH x AS (SELECT 1) INSERT INTO orders SELECT * FROM x": "INSERT",
    "SELECT 1; COPY (SELECT 1) TO '{out}'": "COPY",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}'": "COPY",
}


@pytest.mark.parametrize("sql", list(REFUSED))
def test_p_sql_refuses_every_statement_that_is_not_a_query(shop: Project, tmp_path: Path,
                                                           sql: str) -> None:
    out = tmp_path / "out.csv"
    with pytest.raises(SqlError) as caught:
        shop.sql(sql.format(out=out))
    message = caught.value.message
    assert message == (f"SQL over the lake is read-only: {REFUSED[sql]} statements are "
                       "refused")
    assert "p.lake.write" in (caught.value.hint or "")
    assert not out.exists()
    assert shop.sql("SELECT count(*) AS n FROM orders").to_pylist() == [{"n": 3}]


@pytest.mark.parametrize("sql", [
    "SELECT sum(amount) AS n FROM orders",
    "WITH big AS (SELECT * FROM orders WHERE amount > 6) SELECT count(*) AS n FROM big",
    "FROM orders SELECT count(*) AS n",
    "VALUES (1), (2)",
    "DESCRIBE orders",
    "SUMMARIZE orders",
    "SHOW TABLES",
    "EXPLAIN SELECT * FROM orders",
    "EXPLAIN ANALYZE SELECT * FROM orders",
    "SELECT 1 AS a; SELECT 2 AS a",
    "PIVOT orders ON order_id USING sum(amount)",
])
def test_queries_still_run(shop: Project, sql: str) -> None:
    check_read_only(sql)
    assert shop.sql(sql).num_rows >= (0 if sql == "SHOW TABLES" else 1)


def test_no_file_outside_the_lake_can_be_read(shop: Project, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    for sql in (f"SELECT * FROM read_csv('{secret}')", f"SELECT * FROM '{secret}'",
                "SELECT * FROM read_text('/etc/hostname')", "SELECT * FROM glob('/etc/*')"):
        with pytest.raises(SqlError) as caught:
            shop.sql(sql)
        assert "hunter2" not in str(caught.value)


def test_lake_reads_still_work_after_a_refusal(shop: Project) -> None:
    with pytest.raises(SqlError):
        shop.sql("SET enable_external_access = true")
    shop.lake.write("orders", {"order_id": [13], "amount": [1.0]}, mode="append")
    assert shop.sql("SELECT count(*) AS n FROM orders").to_pylist() == [{"n": 4}]
    assert shop.lake.read("orders").num_rows == 4


def test_tarmac_sql_refuses_copy_in_one_line(shop: Project, tmp_path: Path) -> None:
    out = tmp_path / "leak.csv"
    result = CliRunner().invoke(app, ["--project", str(shop.root), "sql",
                                      f"COPY orders TO '{out}'"])
    assert result.exit_code == 2
    assert "error: SQL over the lake is read-only: COPY statements are refused" in result.stderr
    assert "Traceback" not in result.output and not out.exists()
