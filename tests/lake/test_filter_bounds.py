"""A filter never skips a file whose log entry has no bounds for the filtered column.

delta-rs writes a file's statistics into the Arrow fragment's partition expression; a merge
that leaves a timestamp or float column without min/max made that ``col >= null`` (never
true), so ``read(filter=...)`` silently dropped every row of the file (found by the monitor
report, whose ``since`` filter lost all windows but the first)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from tarmac.project import Project

TS = pa.timestamp("us", tz="UTC")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_filters_on_time_and_float_columns_keep_merged_rows(project: Project) -> None:
    for i in range(3):
        project.lake.write("t", pa.table({"k": [f"k{i}"], "at": pa.array(
            [T0 + timedelta(days=i)], TS), "v": [1.0 + i]}), mode="merge", keys=["k"])
    assert project.lake.read("t").num_rows == 3
    after = project.lake.read("t", filter=pc.field("at") > pa.scalar(T0 - timedelta(1), TS))
    assert sorted(after.column("k").to_pylist()) == ["k0", "k1", "k2"]
    above = project.lake.read("t", filter=pc.field("v") > 1.5)
    assert sorted(above.column("k").to_pylist()) == ["k1", "k2"]
    assert project.sql("SELECT count(*) AS n FROM t WHERE \"at\" >= '2026-01-02'").column(
        "n")[0].as_py() == 2


def test_time_bounds_are_recorded_so_a_time_filter_skips_files(project: Project) -> None:
    at = T0 + timedelta(microseconds=123_456)  # bounds are kept to the millisecond: widened
    for i in range(3):
        project.lake.write("t", pa.table({"k": [f"k{i}"], "at": pa.array(
            [at + timedelta(days=i)], TS)}), mode="merge", keys=["k"])
    dataset = project.lake.dataset(project.lake.table("t"))
    wanted = pc.field("at") == pa.scalar(at + timedelta(days=1), TS)
    assert len(list(dataset.get_fragments(filter=wanted))) == 1  # two files never opened
    assert project.lake.read("t", filter=wanted).column("k").to_pylist() == ["k1"]
