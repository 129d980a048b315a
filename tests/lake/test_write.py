"""Lake writes: input kinds, stored types, schema evolution, table names."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pyarrow as pa
import pytest

from tarmac.errors import SchemaConflictError, TableNotFoundError, UsageError


def rows(p, name, key="id", **kw):
    return sorted(p.lake.read(name, **kw).to_pylist(), key=lambda r: r[key])


# -- input kinds ---------------------------------------------------------------------------------


def test_append_pandas_then_overwrite(project):
    df = pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", "c"], "score": [1.5, 2.5, None]})
    r = project.lake.write("people", df)
    assert (r.table, r.version, r.operation, r.rows_added) == ("people", 0, "WRITE", 3)
    assert rows(project, "people") == [
        {"id": 1, "name": "a", "score": 1.5},
        {"id": 2, "name": "b", "score": 2.5},
        {"id": 3, "name": "c", "score": None},
    ]
    r2 = project.lake.write("people", pd.DataFrame({"id": [9], "name": ["z"], "score": [0.0]}),
                            mode="overwrite")
    assert r2.version == 1
    assert rows(project, "people") == [{"id": 9, "name": "z", "score": 0.0}]
    assert project.lake.version("people") == 1
    assert len(rows(project, "people", version=0)) == 3


def test_append_arrow_table_twice(project):
    t = pa.table({"id": pa.array([1, 2], pa.int64()), "v": ["x", "y"]})
    project.lake.write("t", t)
    r = project.lake.write("t", pa.table({"id": pa.array([3], pa.int64()), "v": ["z"]}))
    assert r.version == 1 and r.rows_added == 1
    assert [x["id"] for x in rows(project, "t")] == [1, 2, 3]


def test_record_batch_reader_is_streamed_in_full(project):
    schema = pa.schema([("id", pa.int64()), ("v", pa.string())])
    consumed = []

    def batches():
        for i in range(6):
            consumed.append(i)
            yield pa.record_batch([pa.array(range(i * 100, i * 100 + 100), pa.int64()),
                                   pa.array([f"b{i}"] * 100)], schema=schema)

    r = project.lake.write("stream", pa.RecordBatchReader.from_batches(schema, batches()))
    assert consumed == list(range(6))
    assert r.rows_added == 600
    got = project.lake.read("stream")
    assert got.num_rows == 600
    assert sorted(got.column("id").to_pylist()) == list(range(600))


def test_list_of_dicts_and_dict_of_lists(project):
    project.lake.write("d", [{"id": 1, "tag": "a"}, {"id": 2, "tag": None}])
    project.lake.write("d", {"id": [3], "tag": ["c"]})
    assert rows(project, "d") == [{"id": 1, "tag": "a"}, {"id": 2, "tag": None},
                                  {"id": 3, "tag": "c"}]


def test_unsupported_input_is_usage_error(project):
    with pytest.raises(UsageError, match="cannot write a str"):
        project.lake.write("t", "id,name\n1,a")
    assert not project.lake.exists("t")


def test_bad_mode_and_keys_outside_merge(project):
    with pytest.raises(UsageError, match="unknown write mode 'upsert'"):
        project.lake.write("t", {"id": [1]}, mode="upsert")
    with pytest.raises(UsageError, match="keys are only used by mode='merge'"):
        project.lake.write("t", {"id": [1]}, keys=["id"])
    assert not project.lake.exists("t")


# -- stored types --------------------------------------------------------------------------------


def test_pandas_ns_timestamps_stored_as_us(project):
    ts = pd.Series(pd.to_datetime(["2024-01-02 03:04:05.123456", "2024-06-30 23:59:59.000001"]))
    df = pd.DataFrame({"id": [1, 2], "at": ts.astype("datetime64[ns]"),
                       "at_utc": ts.astype("datetime64[ns]").dt.tz_localize("UTC")})
    assert str(df["at"].dtype) == "datetime64[ns]"
    project.lake.write("events", df)
    got = project.lake.read("events")
    assert got.schema.field("at").type == pa.timestamp("us")
    assert got.schema.field("at_utc").type == pa.timestamp("us", tz="UTC")
    assert got.sort_by("id").column("at").to_pylist() == [
        datetime(2024, 1, 2, 3, 4, 5, 123456), datetime(2024, 6, 30, 23, 59, 59, 1)]


def test_uint64_stored_as_int64(project):
    project.lake.write("u", pa.table({"id": pa.array([1, 2**40], pa.uint64())}))
    got = project.lake.read("u")
    assert got.schema.field("id").type == pa.int64()
    assert sorted(got.column("id").to_pylist()) == [1, 2**40]
    col = {c.name: c.type for c in project.catalog.get_dataset("u").columns}
    assert col == {"id": "int64"}


def test_uint64_too_large_for_int64_is_refused(project):
    project.lake.write("u", pa.table({"id": pa.array([1], pa.uint64())}))
    with pytest.raises(SchemaConflictError, match="'id' cannot be stored as int64"):
        project.lake.write("u", pa.table({"id": pa.array([2**63], pa.uint64())}))
    assert project.lake.version("u") == 0
    assert project.lake.read("u").column("id").to_pylist() == [1]


# -- schema evolution ----------------------------------------------------------------------------


def test_new_nullable_column_merges_in(project):
    project.lake.write("c", {"id": [1, 2]})
    r = project.lake.write("c", {"id": [3], "email": ["x@y.z"]})
    assert r.new_columns == ("email",)
    assert project.lake.read("c").schema.names == ["id", "email"]
    assert rows(project, "c") == [{"id": 1, "email": None}, {"id": 2, "email": None},
                                  {"id": 3, "email": "x@y.z"}]
    cols = [c.name for c in project.catalog.get_dataset("c").columns]
    assert cols == ["id", "email"]


def test_missing_column_filled_with_nulls(project):
    project.lake.write("c", {"id": [1], "name": ["a"], "age": [30]})
    r = project.lake.write("c", {"id": [2]})
    assert r.new_columns == ()
    assert rows(project, "c") == [{"id": 1, "name": "a", "age": 30},
                                  {"id": 2, "name": None, "age": None}]


def test_int32_widens_into_int64_column(project):
    project.lake.write("w", pa.table({"id": pa.array([1], pa.int64()),
                                      "amount": pa.array([1.5], pa.float64())}))
    project.lake.write("w", pa.table({"id": pa.array([2], pa.int32()),
                                      "amount": pa.array([7], pa.int32())}))
    got = project.lake.read("w")
    assert got.schema.field("id").type == pa.int64()
    assert got.schema.field("amount").type == pa.float64()
    assert rows(project, "w") == [{"id": 1, "amount": 1.5}, {"id": 2, "amount": 7.0}]


def test_narrowing_is_refused(project):
    project.lake.write("n", pa.table({"id": pa.array([1], pa.int32())}))
    with pytest.raises(SchemaConflictError, match="'id' is int32 in the table but int64"):
        project.lake.write("n", pa.table({"id": pa.array([2], pa.int64())}))
    assert project.lake.version("n") == 0


def test_incompatible_type_change_refused_and_table_unchanged(project):
    project.lake.write("s", {"id": [1, 2], "name": ["a", "b"]})
    with pytest.raises(SchemaConflictError) as exc:
        project.lake.write("s", {"id": ["three"], "name": ["c"]})
    msg = str(exc.value)
    assert "'id'" in msg and "int64" in msg and "string" in msg
    assert "'name'" not in msg  # only the bad column is named
    assert "replace_schema=True" in msg
    assert project.lake.version("s") == 0
    assert rows(project, "s") == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert project.catalog.get_dataset("s").version == 0


def test_schema_conflict_from_reader_leaves_table_unchanged(project):
    project.lake.write("s", {"id": [1]})
    schema = pa.schema([("id", pa.string())])
    reader = pa.RecordBatchReader.from_batches(
        schema, iter([pa.record_batch([pa.array(["x"])], schema=schema)]))
    with pytest.raises(SchemaConflictError, match="int64 in the table but string"):
        project.lake.write("s", reader)
    assert project.lake.version("s") == 0


def test_replace_schema_with_overwrite(project):
    project.lake.write("s", {"id": [1, 2], "name": ["a", "b"]})
    r = project.lake.write("s", {"id": ["k1"], "label": ["new"]}, mode="overwrite",
                           replace_schema=True)
    assert r.version == 1
    got = project.lake.read("s")
    assert got.schema.names == ["id", "label"]
    assert got.schema.field("id").type == pa.string()
    assert got.to_pylist() == [{"id": "k1", "label": "new"}]
    # the old version still reads with its own schema
    assert project.lake.read("s", version=0).schema.field("id").type == pa.int64()


def test_replace_schema_is_ignored_by_append(project):
    project.lake.write("s", {"id": [1]})
    with pytest.raises(SchemaConflictError):
        project.lake.write("s", {"id": ["x"]}, replace_schema=True)
    assert project.lake.version("s") == 0


# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["Bad-Name", "1abc", "", "UPPER", "a" * 64, "../escape"])
def test_invalid_table_names(project, bad):
    with pytest.raises(UsageError, match="invalid table name"):
        project.lake.write(bad, {"id": [1]})
    with pytest.raises(UsageError, match="invalid table name"):
        project.lake.read(bad)
    assert project.lake.tables() == []


def test_reading_missing_table_lists_existing(project):
    with pytest.raises(TableNotFoundError, match="tables: none yet"):
        project.lake.read("orders")
    project.lake.write("orders", {"id": [1]})
    project.lake.write("customers", {"id": [1]})
    with pytest.raises(TableNotFoundError) as exc:
        project.lake.read("ordres")
    assert "no lake table named 'ordres'" in str(exc.value)
    assert "customers, orders" in str(exc.value)
    with pytest.raises(TableNotFoundError, match="ordres"):
        project.lake.history("ordres")


def test_catalog_entry_tracks_writes(project, monkeypatch):
    monkeypatch.setenv("TARMAC_USER", "alice")
    project.lake.write("t", {"id": [1, 2]})
    r = project.lake.write("t", {"id": [3]})
    ds = project.catalog.get_dataset("t")
    assert (ds.version, ds.rows, ds.files) == (1, 3, 2)
    assert ds.last_run_id == r.run_id and ds.last_actor == "alice"
    assert project.lake.tables() == ["t"]
