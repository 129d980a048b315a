"""Moving a project's catalog to another database (SQLite -> PostgreSQL, SQLite -> SQLite), and
what a catalog that does not know the lake, or belongs to another project, does: refuse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import tarmac
from conftest import make_project
from tarmac.catalog import Catalog
from tarmac.catalog import _tables as t
from tarmac.catalog.copy import CatalogCopyError, copy_catalog
from tarmac.cli import app
from tarmac.errors import ConfigError
from tarmac.project import Project

runner = CliRunner()


def cli(root: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--project", str(root), *args])
    return result.exit_code, result.output


def point_at(root: Path, url: str) -> None:
    """Set ``catalog:`` in the project's tarmac.yaml."""
    path = root / "tarmac.yaml"
    lines = [f"catalog: {url}" if line.startswith("catalog:") else line
             for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")


def filled(root: Path) -> Project:
    """A project with lake writes, a run with lineage, an annotation and an ingested CSV
    source (cursor state, files seen, loads, quarantine)."""
    p = make_project(root)
    p.lake.write("customers", {"customer_id": [1, 2, 3], "region": ["N", "S", "N"]})
    p.lake.write("customers", {"customer_id": [3, 4], "region": ["E", "W"]}, mode="merge",
                 keys=["customer_id"])
    with p.ledger.run("summarise"):
        p.lake.write("by_region", p.sql("SELECT region, count(*) AS n FROM customers "
                                         "GROUP BY 1"), mode="overwrite")
    p.lake.annotate("customers", description="who buys", tags=["crm"])
    (root / "data").mkdir()
    (root / "data" / "events.csv").write_text("event_id,amount\n1,1.5\n2,oops\n3,3.0\n")
    with (root / "tarmac.yaml").open("a") as f:
        f.write("sources:\n"
                "  events: {type: file, path: data/events.csv, columns: {amount: float}}\n")
    p.close()
    p = tarmac.open(root)
    [r] = p.ingest(["events"])
    assert r.status == "succeeded" and r.rows_loaded == 2 and r.rows_quarantined == 1, r
    return p


def table_rows(url: str) -> dict[str, list[Any]]:
    """Every catalog table's rows, sorted (catalog_info without its time)."""
    cat = Catalog(url, migrate=False)
    out: dict[str, list[Any]] = {}
    with cat.engine.connect() as conn:
        for tbl in t.metadata.sorted_tables:
            cols = [c for c in tbl.columns if c.name != "updated_at"
                    or tbl.name != "catalog_info"]
            out[tbl.name] = sorted(tuple(r) for r in conn.execute(sa.select(*cols)))
    cat.close()
    return out


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_copy_moves_every_table_and_the_project_works_there(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root = tmp_path / "proj"
    p = filled(root)
    source = p.config.catalog
    head_before = p.ledger.verify()
    p.close()
    dest = request.getfixturevalue("pg_url") if backend == "postgres" else \
        f"sqlite:///{tmp_path}/moved.db"

    code, out = cli(root, "catalog", "copy", "--to", dest, "--dry-run", "--json")
    assert code == 0, out
    dry = json.loads(out)
    counts = {x["table"]: x["source_rows"] for x in dry["tables"]}
    assert counts["audit_log"] == head_before.records and counts["source_files"] == 1
    assert dry["copied"] == dry["rows"] > 0 and dry["verified"] is None

    code, out = cli(root, "catalog", "copy", "--to", dest, "--json", "--batch-size", "3")
    assert code == 0, out
    done = json.loads(out)
    assert done["copied"] == dry["rows"] and done["verified"] is True
    assert done["audit_records"] == head_before.records + 1  # the copy's own record
    moved, original = table_rows(dest), table_rows(source)
    copy_record = moved["audit_log"].pop()
    assert copy_record[3] == "catalog.copy" and moved == original

    code, out = cli(root, "catalog", "copy", "--to", dest, "--json")  # a rerun: nothing to do
    assert code == 0, out
    again = json.loads(out)
    assert again["copied"] == 0 and again["verified"] is True
    assert sum(x["identical"] for x in again["tables"]) == dry["rows"]

    point_at(root, dest)
    with tarmac.open(root) as moved_p:
        assert {d.name for d in moved_p.catalog.list_datasets().items} >= {"customers",
                                                                            "by_region"}
        assert moved_p.catalog.get_dataset("customers").description == "who buys"
        with moved_p.ledger.run("after_move"):  # new ids continue after the copied ones
            moved_p.lake.write("by_region", moved_p.sql("SELECT 1 AS n"), mode="overwrite")
        (root / "data" / "events.csv").write_text(
            "event_id,amount\n1,1.5\n2,oops\n3,3.0\n4,4.0\n")
        [r] = moved_p.ingest(["events"])
        # the changed file is read again (its rows appended: the source has no key)
        assert r.status == "succeeded" and r.rows_loaded == 3 and r.version == 1, r
        assert moved_p.sql("SELECT count(*) AS n FROM events").to_pylist() == [{"n": 5}]
        check = moved_p.ledger.verify()
        assert check.ok and check.records > done["audit_records"]


def test_copy_refuses_a_destination_that_differs_and_writes_nothing(tmp_path: Path) -> None:
    p = filled(tmp_path / "proj")
    dest = f"sqlite:///{tmp_path}/moved.db"
    copy_catalog(p.config.catalog, dest)
    with p.ledger.run("later"):  # the source moves on after the copy
        p.lake.write("customers", {"customer_id": [9], "region": ["X"]})
    before = table_rows(dest)
    with pytest.raises(CatalogCopyError, match="nothing copied"):
        copy_catalog(p.config.catalog, dest)
    assert table_rows(dest) == before
    p.close()


def test_copy_refuses_another_projects_catalog_by_name(tmp_path: Path) -> None:
    p = filled(tmp_path / "proj")
    tarmac.init(tmp_path / "other", name="billing")
    point_at(tmp_path / "other", f"sqlite:///{tmp_path}/billing.db")
    tarmac.open(tmp_path / "other").close()
    with pytest.raises(CatalogCopyError, match="holds project 'billing', not 'test'"):
        copy_catalog(p.config.catalog, f"sqlite:///{tmp_path}/billing.db")
    p.close()


def test_a_second_project_is_refused_by_name(tmp_path: Path) -> None:
    shared = f"sqlite:///{tmp_path}/shared.db"
    make_project(tmp_path / "first", catalog=shared).close()
    tarmac.init(tmp_path / "second", name="second")
    point_at(tmp_path / "second", shared)
    with pytest.raises(ConfigError, match="belongs to project 'test', not 'second'"):
        tarmac.open(tmp_path / "second")
    code, out = cli(tmp_path / "second", "tables")
    assert code == 2 and "belongs to project 'test'" in out


def test_a_renamed_project_claims_its_catalog_explicitly(project: Project) -> None:
    root = project.root
    project.lake.write("customers", {"customer_id": [1]})
    project.close()
    (root / "tarmac.yaml").write_text((root / "tarmac.yaml").read_text().replace(
        "name: test", "name: renamed"))
    code, out = cli(root, "tables")
    assert code == 2 and "tarmac catalog claim" in out
    code, out = cli(root, "catalog", "claim")
    assert code == 0 and "now belongs to 'renamed' (was 'test')" in out
    with tarmac.open(root) as p:
        [record] = p.ledger.audit(action="catalog.claim").items
        assert record.target == "renamed" and json.loads(record.details) == {"from": "test"}
        assert p.ledger.verify().ok and p.lake.read("customers").num_rows == 1


def test_an_empty_catalog_over_a_tarmac_lake_refuses_then_adopts(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    filled(root).close()
    point_at(root, f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(ConfigError, match="does not know 4 table") as err:
        tarmac.open(root)
    assert "by_region, customers, events, quarantine" in err.value.message
    assert "tarmac catalog copy" in str(err.value) and "tarmac catalog adopt" in str(err.value)
    for args in (["tables"], ["sql", "SELECT 1"], ["ingest"]):
        code, out = cli(root, *args)
        assert code == 2 and "does not know 4 table(s)" in out, (args, out)

    with tarmac.open(root, check_lake=False) as p:  # the escape hatch for tools
        check = p.ledger.verify()
        assert not check.ok and "the audit chain is empty but the lake holds 4" in \
            (check.problem or "")
    code, out = cli(root, "audit", "verify")
    assert code == 2  # opening refuses before verify can say "0 records, chain intact"

    code, out = cli(root, "catalog", "adopt", "--dry-run", "--json")
    assert code == 0 and [x["table"] for x in json.loads(out)] == [
        "by_region", "customers", "events", "quarantine"]
    code, out = cli(root, "catalog", "adopt", "customers", "nope")
    assert code == 2 and "cannot adopt nope" in out
    code, out = cli(root, "catalog", "adopt", "--json")
    assert code == 0 and {x["table"]: x["rows"] for x in json.loads(out)}["customers"] == 4
    with tarmac.open(root) as p:  # now it opens
        assert p.catalog.get_dataset("customers").rows == 4
        records = p.ledger.audit(action="dataset.adopt").items
        assert sorted(r.target for r in records) == ["by_region", "customers", "events",
                                                     "quarantine"]
        assert p.ledger.verify().ok
        # the catalog lost the source's load count: an incremental load is refused, never
        # "loaded" while no version is written; a whole reload numbers after the lake's marker
        [r] = p.ingest(["events"])
        assert r.status == "failed" and "the lake already holds load 1 of stream" in \
            (r.error or ""), r
        version = p.lake.version("events")
        with (root / "data" / "events.csv").open("a") as f:  # new content: a new version
            f.write("4,4.5\n")
        [r] = p.ingest(["events"], full_refresh=True)
        assert r.status == "succeeded" and r.rows_loaded == 3 and r.version == version + 1, r
        [r] = p.ingest(["events"])
        assert r.status == "succeeded", r
    code, out = cli(root, "catalog", "adopt")
    assert code == 0 and "nothing to adopt" in out


def test_a_write_that_crashed_before_its_catalog_record_does_not_block_opening(
        project: Project) -> None:
    """A Delta commit whose run this catalog knows is its own (crashed, or in flight)."""
    with project.ledger.run("crashed") as run:
        from deltalake import CommitProperties, write_deltalake

        write_deltalake(project.lake.uri("orphan"), sa_table(),
                        commit_properties=CommitProperties(
                            custom_metadata={"tarmac.run_id": run.id}))
    with tarmac.open(project.root) as p:
        assert p.catalog.get_dataset("orphan") is None
    code, out = cli(project.root, "catalog", "adopt", "--json")  # it can be registered
    assert code == 0 and [x["table"] for x in json.loads(out)] == ["orphan"]


def sa_table() -> Any:
    import pyarrow as pa

    return pa.table({"x": [1]})
