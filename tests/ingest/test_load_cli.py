"""The loader's promises seen from the SDK and the CLI: results per stream, tags in the catalog,
the ledger's runs and audit records, and `tarmac ingest / sources / quarantine`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tarmac.cli import app
from tarmac.errors import UsageError
from tarmac.project import Project

runner = CliRunner()


def _csv(path: Path, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture
def shop(project: Project, declare) -> Project:  # type: ignore[no-untyped-def]
    _csv(project.root / "data" / "orders.csv",
         ["order_id,email,amount,status", "1,a@x.com,10.5,paid", "2,b@x.com,oops,paid",
          "3,c@x.com,7,lost", "3,c@x.com,8,paid"])
    return declare(project, {
        "orders": {"type": "file", "path": "data/orders.csv", "primary_key": "order_id",
                   "tags": ["sales"], "owner": "shop-team",
                   "columns": {"amount": "float", "email": {"tags": ["pii", "email"]},
                               "status": {"allowed": ["paid", "open"]}}},
        "events": {"type": "stream", "topic": "events"},
    })


def test_results_counts_tags_and_ledger(shop: Project) -> None:
    [result] = shop.ingest()
    assert (result.source, result.table, result.status) == ("orders", "orders", "succeeded")
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined,
            result.duplicates) == (4, 2, 2, 0)
    assert shop.sql("SELECT order_id, amount FROM orders ORDER BY 1").to_pylist() == [
        {"order_id": 1, "amount": 10.5}, {"order_id": 3, "amount": 8.0}]
    info = shop.catalog.get_dataset("orders")
    assert info is not None and info.owner == "shop-team" and "sales" in info.tags
    assert {c.name: c.tags for c in info.columns}["email"] == ("email", "pii")
    run = shop.catalog.get_run(result.run_id or "")
    assert run is not None and run.job == "ingest.orders" and run.status == "succeeded"
    actions = [a.action for a in shop.ledger.audit(limit=50).items]
    assert "ingest.load" in actions and "lake.ingest" in actions
    assert shop.ledger.verify().ok
    reasons = shop.sql("SELECT reason, value FROM quarantine ORDER BY value").to_pylist()
    assert reasons == [
        {"reason": "'status' is not one of the allowed values (paid, open)", "value": "lost"},
        {"reason": "'amount' is not a valid float", "value": "oops"}]


def test_unknown_source_and_stream_sources(shop: Project) -> None:
    with pytest.raises(UsageError, match="unknown source.*nope.*declared: orders, events"):
        shop.ingest(["nope"])
    [skipped] = shop.ingest(["events"])
    assert skipped.status == "skipped" and "tarmac stream" in (skipped.error or "")


def test_cli_ingest_sources_quarantine(shop: Project) -> None:
    root = str(shop.root)
    out = runner.invoke(app, ["--project", root, "ingest", "--json"])
    assert out.exit_code == 0, out.output
    [loaded] = json.loads(out.stdout)
    assert loaded["rows_loaded"] == 2 and loaded["rows_quarantined"] == 2

    table = runner.invoke(app, ["--project", root, "ingest"])
    assert table.exit_code == 0 and "orders" in table.stdout and "succeeded" in table.stdout

    listed = json.loads(runner.invoke(app, ["--project", root, "sources", "--json"]).stdout)
    by_name = {s["source"]: s for s in listed}
    assert by_name["orders"]["loads"] == 2 and by_name["orders"]["rows"] == 2
    assert by_name["orders"]["status"] == "committed"
    assert by_name["events"]["status"] == "streams"

    q = runner.invoke(app, ["--project", root, "quarantine", "orders", "--json"])
    assert q.exit_code == 0
    assert {r["value"] for r in json.loads(q.stdout)} == {"oops", "lost"}
    bad = runner.invoke(app, ["--project", root, "quarantine", "nope"])
    assert bad.exit_code == 2 and "unknown source 'nope'" in bad.output


def test_cli_exit_code_1_when_a_source_fails(project: Project, declare) -> None:  # type: ignore[no-untyped-def]
    p = declare(project, {"gone": {"type": "file", "path": "data/missing/*.csv"}})
    out = runner.invoke(app, ["--project", str(p.root), "ingest"])
    assert out.exit_code == 1
    assert "source 'gone': no files match 'data/missing/*.csv'" in out.output
    run = p.catalog.list_runs(limit=5).items[0]
    assert run.job == "ingest.gone" and run.status == "failed"


def test_http_source_failing_mid_way_commits_nothing_and_recovers(project: Project,
                                                                  declare) -> None:  # type: ignore[no-untyped-def]
    """Page 1 arrives, page 2 is broken JSON: the load fails naming the source and the page,
    nothing of page 1 is visible, and once the API is fixed the next run loads both pages."""
    from ._fault_server import FaultServer, Reply

    with FaultServer() as fault:
        url = fault.script("/t", Reply(body={"data": [{"id": 1}], "next_cursor": "b"}),
                           Reply(raw=b'{"data": [{"id": 2}'))
        p = declare(project, {"api": {"type": "http", "url": url, "paginate": "cursor",
                                      "primary_key": "id", "retries": 0}})
        [failed] = p.ingest()
        assert failed.status == "failed" and failed.rows_loaded == 0
        assert failed.error is not None and failed.error.startswith("source 'api': ")
        assert "page 2" in failed.error and "not valid JSON" in failed.error
        assert not p.lake.exists("api") and not p.lake.exists("quarantine")

        fault.script("/t", Reply(body={"data": [{"id": 1}], "next_cursor": "b"}),
                     Reply(body={"data": [{"id": 2}], "next_cursor": None}))
        [ok] = p.ingest()
        assert (ok.status, ok.rows_loaded) == ("succeeded", 2)
        assert p.sql("SELECT id FROM api ORDER BY id").to_pylist() == [{"id": 1}, {"id": 2}]


def test_a_bad_row_served_again_is_not_quarantined_again(project: Project,
                                                         declare) -> None:  # type: ignore[no-untyped-def]
    """A source without a cursor re-serves every row each run: its bad rows stay quarantined
    once (the repeats count as duplicates), and a new bad row still lands."""
    _csv(project.root / "data" / "t.csv", ["id,amount", "1,1.5", "2,oops"])
    p = declare(project, {"t": {"type": "sql", "url": "sqlite:///data/t.db",
                                "tables": ["t"], "columns": {"amount": "float"},
                                "primary_key": "id"}})
    import sqlite3

    con = sqlite3.connect(p.root / "data" / "t.db")
    con.execute("CREATE TABLE t (id INTEGER, amount TEXT)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(1, "1.5"), (2, "oops")])
    con.commit()
    [first] = p.ingest()
    assert (first.rows_loaded, first.rows_quarantined) == (1, 1)
    [second] = p.ingest()
    # the good row is already in the table as it is: a duplicate too, not merged again
    assert (second.rows_read, second.rows_loaded, second.rows_quarantined,
            second.duplicates) == (2, 0, 0, 2)
    con.execute("INSERT INTO t VALUES (3, 'n/a')")
    con.commit()
    con.close()
    [third] = p.ingest()
    assert (third.rows_quarantined, third.duplicates) == (1, 2)
    values = p.sql("SELECT value FROM quarantine ORDER BY value").to_pylist()
    assert values == [{"value": "n/a"}, {"value": "oops"}]


def test_cli_history_counts_ingested_rows(shop: Project) -> None:
    """`tarmac history` shows the rows an ingest loaded, not +0 -0 (issue 11 item 9)."""
    root = str(shop.root)
    assert runner.invoke(app, ["--project", root, "ingest"]).exit_code == 0
    _csv(shop.root / "data" / "orders.csv",
         ["order_id,email,amount,status", "4,d@x.com,1,paid", "5,e@x.com,2,open"])
    assert runner.invoke(app, ["--project", root, "ingest"]).exit_code == 0
    out = runner.invoke(app, ["--project", root, "history", "orders", "--json"])
    assert out.exit_code == 0, out.output
    got = [(h["operation"], h["rows_added"], h["rows_removed"]) for h in json.loads(out.stdout)]
    assert got == [("MERGE", 2, 0), ("INGEST", 2, 0)]
