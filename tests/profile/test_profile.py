"""``tarmac.profile``: the statistics users and monitors read, on every kind of column and input."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from decimal import Decimal

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import tarmac.profile as tp
from tarmac.errors import UsageError
from tarmac.profile import (
    BINS,
    QUANTILES,
    TOP_K,
    ColumnStats,
    Histogram,
    TableProfile,
    profile,
    profile_table,
)
from tarmac.project import Project


def test_numeric_statistics_match_numpy() -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(50, 10, 5_000)
    col = profile(pa.table({"x": values}))["x"]
    assert (col.kind, col.count, col.nulls, col.nans) == ("numeric", 5_000, 0, 0)
    assert col.mean == pytest.approx(values.mean())
    assert col.std == pytest.approx(values.std(ddof=1))
    assert (col.min, col.max) == (values.min(), values.max())
    assert list(col.quantiles or {}) == list(QUANTILES)
    for p, v in (col.quantiles or {}).items():
        assert v == pytest.approx(np.quantile(values, p))
    assert col.distinct == pytest.approx(5_000, rel=0.05) and not col.distinct_exact


def test_reference_histogram_has_fixed_equal_width_bins_holding_every_value() -> None:
    values = [0.0, 1.0, 2.5, 5.0, 7.5, 9.99, 10.0, None]
    h = profile(pa.table({"x": values}))["x"].histogram
    assert h is not None and len(h.counts) == BINS
    assert h.edges == tuple(float(i) for i in range(11))
    # bins are [a, b) and the last one is closed: 10.0 lands in the last bin
    assert h.counts == (1, 1, 1, 0, 0, 1, 0, 1, 0, 2)
    assert (h.below, h.above, h.total) == (0, 0, 7)


def test_against_a_reference_reuses_its_edges_quantiles_and_categories() -> None:
    ref = profile(pa.table({"x": [float(i) for i in range(101)],
                            "plan": ["basic"] * 60 + ["pro"] * 41}), bins=4, top_k=5)
    live = profile(pa.table({"x": [-5.0, 10.0, 30.0, 60.0, 100.0, 250.0],
                             "plan": ["pro", "pro", "team", "team", "basic", None]}),
                   against=ref)
    x, rx = live["x"], ref["x"]
    assert x.histogram is not None and rx.histogram is not None
    assert x.histogram.edges == rx.histogram.edges == (0.0, 25.0, 50.0, 75.0, 100.0)
    assert x.histogram.counts == (1, 1, 1, 1) and (x.histogram.below, x.histogram.above) == (1, 1)
    assert list(x.quantiles or {}) == list(rx.quantiles or {})
    plan = live["plan"].top
    assert plan is not None and ref["plan"].top is not None and ref["plan"].top.complete
    # the reference's categories, in its order, then what it never saw
    assert plan.values == (("basic", 1), ("pro", 2)) and plan.unseen == 2 and plan.other == 0


def test_against_an_incomplete_reference_counts_the_rest_as_other() -> None:
    ref = profile(pa.table({"c": [f"v{i % 20}" for i in range(200)]}), top_k=3)
    top = ref["c"].top
    assert top is not None and not top.complete and len(top.values) == 3
    assert top.other == 200 - sum(n for _v, n in top.values)
    live = profile(pa.table({"c": ["v0", "v1", "zzz"]}), against=ref)["c"].top
    assert live is not None
    assert [v for v, _n in live.values] == [v for v, _n in top.values]
    assert live.unseen is None  # a value outside a top-3 may just be rare: not "unseen"
    assert live.other + sum(n for _v, n in live.values) == 3


def test_against_keeps_custom_quantiles_and_bins_of_a_stored_reference() -> None:
    ref = ColumnStats("x", "DOUBLE", "numeric", 3, 0, quantiles={0.1: 1.0, 0.9: 3.0},
                      histogram=Histogram((0.0, 2.0, 4.0), (1, 2)))
    live = profile(pa.table({"x": [1.0, 3.0, 5.0]}), against=TableProfile(3, (ref,)))["x"]
    assert list(live.quantiles or {}) == [0.1, 0.9]
    assert live.histogram == Histogram((0.0, 2.0, 4.0), (1, 1), 0, 1)


def test_all_null_empty_and_single_value_columns() -> None:
    nulls = profile(pa.table({"f": pa.array([None, None], pa.float64()),
                              "n": pa.nulls(2), "s": pa.array([None, None], pa.string())}))
    f = nulls["f"]
    assert (f.count, f.nulls, f.null_rate, f.mean, f.min, f.histogram) == (2, 2, 1.0, None,
                                                                           None, None)
    assert (nulls["n"].kind, nulls["n"].nulls, nulls["n"].distinct) == ("other", 2, None)
    s = nulls["s"].top
    assert s is not None and s.values == () and s.other == 0
    empty = profile(pa.table({"x": pa.array([], pa.int64()), "s": pa.array([], pa.string())}))
    assert empty.rows == 0 and empty["x"].count == 0 and empty["x"].null_rate == 0.0
    assert empty["x"].histogram is None and empty["s"].top is None
    one = profile(pa.table({"x": [4.2]}))["x"]
    assert (one.min, one.max, one.mean, one.std) == (4.2, 4.2, 4.2, None)
    assert one.histogram == Histogram((4.2, 4.2), (1,))
    assert profile(pa.table({"x": [4.2, 9.0]}), against=TableProfile(1, (one,)))["x"] \
        .histogram == Histogram((4.2, 4.2), (1,), 0, 1)


def test_high_cardinality_text_stays_small() -> None:
    n = 100_000
    table = pa.table({"id": [f"user-{i:06d}" for i in range(n)]})
    col = profile(table)["id"]
    assert col.top is not None and len(col.top.values) == TOP_K and not col.top.complete
    assert col.top.other == n - TOP_K
    assert col.distinct == pytest.approx(n, rel=0.05)
    assert len(json.dumps(col.to_dict())) < 2_000  # the profile does not grow with the data
    assert profile(table, exact_distinct=True)["id"].distinct == n


def test_booleans_timestamps_and_dates() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    p = profile(pa.table({
        "b": [True, True, False, None],
        "ts": pa.array([t0, datetime(2024, 3, 1, tzinfo=UTC), None], pa.timestamp("us", "UTC"))
        .to_pylist() + [t0],
        "d": [date(2024, 1, 2), date(2023, 5, 6), None, None]}))
    b = p["b"]
    assert b.kind == "boolean" and b.mean == pytest.approx(2 / 3)
    assert b.top is not None and b.top.values == ((True, 2), (False, 1))
    assert (b.min, b.max) == (False, True)
    ts = p["ts"]
    assert ts.kind == "temporal" and ts.min == t0 and ts.max == datetime(2024, 3, 1, tzinfo=UTC)
    assert ts.mean is None and ts.histogram is None
    assert (p["d"].min, p["d"].max) == (date(2023, 5, 6), date(2024, 1, 2))


def test_nested_columns_get_counts_and_nulls_only() -> None:
    p = profile(pa.table({"l": [[1, 2], None, []], "s": [{"a": 1}, {"a": 2}, None],
                          "m": pa.array([[("k", 1)], None, None], pa.map_(pa.string(),
                                                                          pa.int64()))}))
    for name, nulls in (("l", 1), ("s", 1), ("m", 2)):
        c = p[name]
        assert (c.kind, c.count, c.nulls, c.distinct, c.min, c.top) == ("nested", 3, nulls,
                                                                         None, None, None)
        assert set(c.to_dict()) == {"name", "type", "kind", "count", "nulls"}


def test_json_round_trip_keeps_special_values() -> None:
    p = profile(pa.table({
        "f": [1.0, math.nan, math.inf, -math.inf, None, 3.0],
        "dec": pa.array([Decimal("1.50"), Decimal("-2.25"), None, None, None, None],
                        pa.decimal128(10, 2)),
        "ts": pa.array([datetime(2024, 1, 1, 12, tzinfo=UTC)] * 5 + [None],
                       pa.timestamp("us", "UTC")),
        "naive": pa.array([datetime(2024, 1, 1, 12)] * 6, pa.timestamp("ms")),
        "d": [date(2024, 1, 1)] * 6, "b": [True, None, False, True, True, True],
        "s": ["a", "b", None, "a", "NaN", "2024-01-01"], "l": [[1]] * 6}))
    text = json.dumps(p.to_dict(), allow_nan=False)  # strict JSON: no NaN/Infinity tokens
    back = TableProfile.from_dict(json.loads(text))
    assert back.names == p.names and back.rows == 6
    for a, b in zip(p, back, strict=True):
        if a.name != "f":
            assert a == b, a.name
    f = back["f"]
    assert f.nans == 1 and (f.min, f.max) == (-math.inf, math.inf) and math.isnan(f.mean or 0)
    assert f.histogram == p["f"].histogram and f.histogram is not None
    assert (f.histogram.below, f.histogram.above) == (1, 1)  # -inf below, +inf above
    assert (back["dec"].min, back["dec"].max) == (Decimal("-2.25"), Decimal("1.50"))
    assert back["ts"].max == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert back["naive"].min == datetime(2024, 1, 1, 12)
    assert back["d"].min == date(2024, 1, 1)
    assert back["s"].top is not None and ("NaN", 1) in back["s"].top.values  # text stays text


def test_stored_shape_keeps_the_keys_older_readers_use() -> None:
    d = profile(pa.table({"x": [1, 2, 3], "c": ["a", "a", "b"]}), types={"x": "int64"}).to_dict()
    assert d["x"]["type"] == "int64" and d["x"]["quantiles"]["0.5"] == 2.0
    assert {"count", "nulls", "mean", "std", "min", "max"} <= set(d["x"])
    assert d["c"]["top"] == [["a", 2], ["b", 1]] and d["c"]["distinct"] == 2


def test_inputs_arrow_reader_relation_sql() -> None:
    table = pa.table({"x": [1, 2, 3, None], "y": ["a", "b", "b", "c"]})
    expected = profile(table)
    assert profile(pa.RecordBatchReader.from_batches(table.schema, table.to_batches())) \
        == expected
    con = duckdb.connect()
    try:
        con.register("t", table)
        assert profile(con.table("t")) == expected
        assert profile("SELECT * FROM t", con=con) == expected
        assert profile("SELECT * FROM t", con=con, columns=["y"]).names == ["y"]
        for _ in range(2):  # a reader on the caller's connection leaves nothing behind
            reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
            assert profile(reader, con=con) == expected
        assert con.sql("SELECT count(*) FROM duckdb_tables()").fetchall() == [(0,)]
    finally:
        con.close()


def test_profile_a_lake_table(project: Project) -> None:
    project.lake.write("signals", pa.table({"id": [1, 2, 3], "region": ["n", "s", "n"]}))
    project.lake.write("signals", pa.table({"id": [4], "region": ["e"]}))
    latest = profile_table(project.lake, "signals")
    assert latest.rows == 4 and latest["region"].top is not None
    assert latest["region"].top.values[0] == ("n", 2)
    first = profile_table(project.lake, "signals", version=0, columns=["id"])
    assert first.rows == 3 and first.names == ["id"] and first["id"].max == 3


def test_bad_inputs_say_what_is_wrong() -> None:
    table = pa.table({"x": [1]})
    with pytest.raises(UsageError, match="needs the DuckDB connection"):
        profile("SELECT 1")
    with pytest.raises(UsageError, match=r"column\(s\) nope: not in the data; columns are: x"):
        profile(table, columns=["nope"])
    with pytest.raises(UsageError, match="bins must be at least 1"):
        profile(table, bins=0)
    with pytest.raises(UsageError, match="top_k must be at least 1"):
        profile(table, top_k=0)
    with pytest.raises(UsageError, match="cannot profile a list"):
        profile([1, 2])  # type: ignore[arg-type]
    con = duckdb.connect()
    try:
        with pytest.raises(UsageError, match="cannot profile 'SELECT \\* FROM missing'"):
            profile("SELECT * FROM missing", con=con)
    finally:
        con.close()


def test_bad_stored_profiles_name_the_field() -> None:
    with pytest.raises(ValueError, match="column 'x': kind must be one of"):
        TableProfile.from_dict({"x": {"type": "int64", "count": 1, "nulls": 0}})
    with pytest.raises(ValueError, match="column 'x': missing 'nulls'"):
        TableProfile.from_dict({"x": {"kind": "numeric", "type": "int64", "count": 1}})
    with pytest.raises(ValueError, match=r"column 'x'.mean: expected a number"):
        ColumnStats.from_dict({"kind": "numeric", "type": "DOUBLE", "count": 1, "nulls": 0,
                               "mean": "lots"}, "x")
    with pytest.raises(ValueError, match="expected an ISO 8601"):
        ColumnStats.from_dict({"kind": "temporal", "type": "DATE", "count": 1, "nulls": 0,
                               "min": "yesterday"}, "d")
    with pytest.raises(ValueError, match="len\\(edges\\) == len\\(counts\\) \\+ 1"):
        Histogram((0.0, 1.0), (1, 2))
    with pytest.raises(ValueError, match="ascending"):
        Histogram((1.0, 0.0), (1,))
    with pytest.raises(ValueError, match="a table profile is a mapping"):
        TableProfile.from_dict([])  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no column 'z' in the profile; columns: x"):
        profile(pa.table({"x": [1]}))["z"]


def test_counts_only_mode_gives_the_same_figures_from_arrow_and_duckdb() -> None:
    table = pa.table({"s": ["a", "b", None, "a"], "x": [1.5, 1.5, 2.0, None],
                      "l": [[1], None, [2], [2]], "n": pa.nulls(4)})
    con = duckdb.connect()
    try:
        from_duckdb = profile(con.from_arrow(table), basic=True, exact_distinct=True)
    finally:
        con.close()
    from_arrow = profile(table, basic=True, exact_distinct=True)
    assert from_arrow == from_duckdb
    assert [(c.nulls, c.distinct) for c in from_arrow] == [(1, 2), (1, 2), (1, None), (4, None)]
    assert from_arrow["x"].mean is None and from_arrow["s"].top is None  # counts only


def test_public_names() -> None:
    assert {"profile", "profile_table", "TableProfile", "ColumnStats", "Histogram", "TopK",
            "QUANTILES", "BINS", "TOP_K"} <= set(tp.__all__)
    assert not [n for n in tp.__all__ if n.startswith("_")]


def test_arrow_types_duckdb_cannot_scan_are_cast_to_near_ones() -> None:
    p = profile(pa.table({
        "half": pa.array([1, 2, None], pa.float16()),
        "wide": pa.array([Decimal("1.5"), None, Decimal("2.5")], pa.decimal256(50, 2)),
        "fits": pa.array([Decimal("1.5"), None, None], pa.decimal256(20, 2)),
        "clock": pa.array([1, 2, 3], pa.time64("us")), "blob": [b"a", b"b", None]}))
    assert (p["half"].kind, p["half"].mean, p["half"].nulls) == ("numeric", 1.5, 1)
    assert (p["wide"].type, p["wide"].max) == ("DOUBLE", 2.5)
    assert p["fits"].min == Decimal("1.50")
    assert (p["clock"].kind, p["clock"].distinct, p["blob"].kind) == ("other", 3, "other")


def test_profile_docstring_example_runs() -> None:
    import doctest

    from tarmac.profile import _compute

    result = doctest.testmod(_compute, optionflags=doctest.ELLIPSIS)
    assert result.attempted and not result.failed
