"""Merge (upsert by keys) and delete by predicate; the ledger records both, on each catalog."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from tarmac.errors import MergeKeyError, TableNotFoundError, UsageError


def rows(p, name, key="id", **kw):
    return sorted(p.lake.read(name, **kw).to_pylist(), key=lambda r: r[key])


@pytest.fixture
def customers(project):
    project.lake.write("customers", {"id": [1, 2, 3], "name": ["ann", "bob", "cy"]})
    return project


# -- merge ---------------------------------------------------------------------------------------


def test_merge_upserts(customers):
    p = customers
    r = p.lake.write("customers", [{"id": 2, "name": "BOB"}, {"id": 4, "name": "dee"},
                                   {"id": 5, "name": "eve"}], mode="merge", keys=["id"])
    assert (r.version, r.operation, r.rows_updated, r.rows_added) == (1, "MERGE", 1, 2)
    assert rows(p, "customers") == [{"id": 1, "name": "ann"}, {"id": 2, "name": "BOB"},
                                    {"id": 3, "name": "cy"}, {"id": 4, "name": "dee"},
                                    {"id": 5, "name": "eve"}]
    h = p.lake.history("customers")[0]
    assert (h["version"], h["operation"], h["rows_added"]) == (1, "MERGE", 2)
    assert h["run_id"] == r.run_id


def test_merge_into_missing_table_creates_it(project):
    r = project.lake.write("fresh", {"id": [1, 2], "v": ["a", "b"]}, mode="merge", keys=["id"])
    assert r.version == 0 and r.rows_added == 2
    assert rows(project, "fresh") == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]
    assert project.catalog.get_dataset("fresh").version == 0


def test_merge_from_reader_with_new_column(customers):
    p = customers
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("tier", pa.string())])
    batch = pa.record_batch([pa.array([1, 9]), pa.array(["ANN", "ivy"]), pa.array(["gold", None])],
                            schema=schema)
    r = p.lake.write("customers", pa.RecordBatchReader.from_batches(schema, iter([batch])),
                     mode="merge", keys=["id"])
    assert r.new_columns == ("tier",) and (r.rows_updated, r.rows_added) == (1, 1)
    assert rows(p, "customers") == [
        {"id": 1, "name": "ANN", "tier": "gold"}, {"id": 2, "name": "bob", "tier": None},
        {"id": 3, "name": "cy", "tier": None}, {"id": 9, "name": "ivy", "tier": None}]


@pytest.mark.parametrize("keys", [None, []])
def test_merge_without_keys(customers, keys):
    with pytest.raises(MergeKeyError, match=r"needs keys=\[\.\.\.\]"):
        customers.lake.write("customers", {"id": [1], "name": ["x"]}, mode="merge", keys=keys)
    assert customers.lake.version("customers") == 0


def test_merge_unknown_key_column(customers):
    with pytest.raises(MergeKeyError) as exc:
        customers.lake.write("customers", {"id": [1], "name": ["x"]}, mode="merge",
                             keys=["customer_id"])
    assert "customer_id" in str(exc.value) and "columns: id, name" in str(exc.value)
    assert customers.lake.version("customers") == 0


def test_merge_null_keys_refused(customers):
    with pytest.raises(MergeKeyError, match="1 incoming row.*null in key column 'id'"):
        customers.lake.write("customers", {"id": [7, None], "name": ["g", "h"]}, mode="merge",
                             keys=["id"])
    assert customers.lake.version("customers") == 0
    assert len(rows(customers, "customers")) == 3


def test_merge_duplicate_keys_refused(customers):
    with pytest.raises(MergeKeyError) as exc:
        customers.lake.write("customers", {"id": [2, 2, 8], "name": ["x", "y", "z"]},
                             mode="merge", keys=["id"])
    msg = str(exc.value)
    assert "1 key value(s) occur more than once" in msg
    assert "{'id': 2}" in msg
    assert "on_duplicate='last'" in msg
    assert customers.lake.version("customers") == 0
    assert rows(customers, "customers")[1] == {"id": 2, "name": "bob"}


@pytest.mark.parametrize(("how", "expected"), [("last", "second"), ("first", "first")])
def test_merge_on_duplicate_picks_row(customers, how, expected):
    p = customers
    p.lake.write("customers", {"id": [2, 4, 2], "name": ["first", "new", "second"]},
                 mode="merge", keys=["id"], on_duplicate=how)
    assert rows(p, "customers") == [{"id": 1, "name": "ann"}, {"id": 2, "name": expected},
                                    {"id": 3, "name": "cy"}, {"id": 4, "name": "new"}]


def test_merge_unknown_on_duplicate_refused(customers):
    with pytest.raises(UsageError, match="on_duplicate"):
        customers.lake.write("customers", {"id": [5], "name": ["x"]}, mode="merge", keys=["id"],
                             on_duplicate="newest")
    assert customers.lake.version("customers") == 0


def test_merge_composite_keys(project):
    p = project
    p.lake.write("sales", {"region": ["n", "s", "n"], "id": [1, 1, 2], "amt": [10, 20, 30]})
    r = p.lake.write("sales", {"region": ["s", "e"], "id": [1, 1], "amt": [99, 5]},
                     mode="merge", keys=["region", "id"])
    assert (r.rows_updated, r.rows_added) == (1, 1)
    got = sorted((x["region"], x["id"], x["amt"]) for x in p.lake.read("sales").to_pylist())
    assert got == [("e", 1, 5), ("n", 1, 10), ("n", 2, 30), ("s", 1, 99)]
    with pytest.raises(MergeKeyError, match="occur more than once"):
        p.lake.write("sales", {"region": ["n", "n"], "id": [1, 1], "amt": [0, 0]},
                     mode="merge", keys=["region", "id"])


# -- delete --------------------------------------------------------------------------------------


def test_delete_by_predicate(customers):
    p = customers
    r = p.lake.delete("customers", "name = 'bob' OR id = 3")
    assert (r.version, r.operation, r.rows_deleted) == (1, "DELETE", 2)
    assert rows(p, "customers") == [{"id": 1, "name": "ann"}]
    h = p.lake.history("customers")
    assert [x["operation"] for x in h] == ["DELETE", "WRITE"]
    assert h[0]["rows_removed"] == 2 and h[0]["run_id"] == r.run_id
    assert len(rows(p, "customers", version=0)) == 3
    audit = p.ledger.audit(target="customers", action="lake.delete").items
    assert len(audit) == 1 and json.loads(audit[0].details)["version"] == 1


def test_delete_matching_nothing_creates_no_version(customers):
    r = customers.lake.delete("customers", "id > 100")
    assert (r.version, r.rows_deleted) == (0, 0)
    assert customers.lake.version("customers") == 0
    assert len(customers.lake.history("customers")) == 1
    assert customers.ledger.audit(action="lake.delete").items == []


def test_delete_bad_predicate(customers):
    with pytest.raises(UsageError, match="no_such_col"):
        customers.lake.delete("customers", "no_such_col = 1")
    assert customers.lake.version("customers") == 0


@pytest.mark.parametrize("pred", ["", "   "])
def test_delete_empty_predicate_refused(customers, pred):
    with pytest.raises(UsageError, match="needs a predicate"):
        customers.lake.delete("customers", pred)
    assert len(rows(customers, "customers")) == 3


def test_delete_missing_table(customers):
    with pytest.raises(TableNotFoundError, match="tables: customers"):
        customers.lake.delete("nope", "id = 1")


# -- both catalog backends -----------------------------------------------------------------------


def test_write_merge_history_verify(any_project):
    p = any_project
    with p.ledger.run("load") as run:
        w = p.lake.write("acct", {"id": [1, 2], "bal": [10.0, 20.0]})
        m = p.lake.write("acct", {"id": [2, 3], "bal": [25.0, 30.0]}, mode="merge", keys=["id"])
    d = p.lake.delete("acct", "id = 1")
    assert (w.version, m.version, d.version) == (0, 1, 2)
    assert (m.rows_updated, m.rows_added) == (1, 1)
    assert rows(p, "acct") == [{"id": 2, "bal": 25.0}, {"id": 3, "bal": 30.0}]
    h = p.lake.history("acct")
    assert [(x["version"], x["operation"]) for x in h] == [(2, "DELETE"), (1, "MERGE"),
                                                            (0, "WRITE")]
    assert h[1]["run_id"] == h[2]["run_id"] == run.id != h[0]["run_id"]
    got = p.ledger.get_run(run.id)
    assert got.status == "succeeded"
    assert [str(o) for o in got.outputs] == ["acct@0", "acct@1"]
    assert p.ledger.get_run(d.run_id).status == "succeeded"
    ds = p.catalog.get_dataset("acct")
    assert (ds.version, ds.rows) == (2, 2)
    actions = [a.action for a in p.ledger.audit(target="acct").items]
    assert actions == ["lake.delete", "lake.merge", "lake.write"]
    v = p.ledger.verify()
    assert v.ok and v.problem is None and v.records >= 4


# -- history's row counts ------------------------------------------------------------------------


def test_history_counts_rows_of_every_write_path(project):
    """Every commit says how many rows it added and removed: appends, overwrites (whose removed
    rows delta-rs does not count), staged-file commits (which carry no Delta metrics) and
    deletes (issue 11 item 9)."""
    p = project
    p.lake.write("h", {"id": [1, 2, 3], "v": ["a", "b", "c"]})
    p.lake.write("h", {"id": [4, 5], "v": ["d", "e"]}, mode="overwrite")
    schema = pa.schema([("id", pa.int64()), ("v", pa.string())])
    stager = p.lake.stage("h", "t1")
    stager.write(pa.table({"id": [6, 7, 8, 9], "v": list("fghi")}, schema=schema))
    from tarmac.lake.staging import action_to_dict
    p.lake.commit_files("h", [action_to_dict(a) for a in stager.close()], schema,
                        operation="INGEST")
    stager = p.lake.stage("h", "t2")
    stager.write(pa.table({"id": [10], "v": ["j"]}, schema=schema))
    p.lake.commit_files("h", [action_to_dict(a) for a in stager.close()], schema,
                        mode="overwrite", operation="INGEST")
    p.lake.delete("h", "id = 10")
    got = [(h["version"], h["operation"], h["rows_added"], h["rows_removed"])
           for h in p.lake.history("h")]
    assert got == [(4, "DELETE", 0, 1), (3, "INGEST", 1, 6), (2, "INGEST", 4, 0),
                   (1, "WRITE", 2, 3), (0, "WRITE", 3, 0)]
