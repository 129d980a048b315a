"""The survey's column figures, now computed by ``tarmac.profile``: exact on the sample, one per
column even when a header repeats a name, and never failing a source over an odd type."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from tarmac.ingest.base import Sample, Stream
from tarmac.ingest.spec import parse_sources
from tarmac.ingest.survey import profile_sample


def _profile(table: pa.Table) -> list[tuple[str, str, int, int | None]]:
    spec = parse_sources({"src": {"type": "file", "path": "x.csv"}}, Path("tarmac.yaml"))["src"]
    sample = Sample(Stream("src", "s", "src_s", "x.csv"), table, total_rows=table.num_rows)
    return [(c.name, c.type, c.nulls, c.distinct) for c in profile_sample(sample, spec).columns]


def test_repeated_names_and_odd_types_each_get_a_column_profile() -> None:
    table = pa.table([pa.array([1, 1, 2]), pa.array(["a", None, "b"]),
                      pa.array([[1], None, [2]]),
                      pa.array([Decimal("1"), None, Decimal("1")], pa.decimal256(60, 0)),
                      pa.array([1.0, 2.0, 2.0], pa.float16())],
                     names=["id", "id", "tags", "big", "half"])
    assert _profile(table) == [("id", "int64", 0, 2), ("id", "string", 1, 2),
                               ("tags", "list<item: int64>", 1, None),
                               ("big", "decimal256(60, 0)", 1, 1), ("half", "halffloat", 0, 2)]


def test_distinct_is_exact_on_the_sample() -> None:  # the key hint needs distinct == rows
    n = 50_000
    table = pa.table({"code": [f"c{i}" for i in range(n)]})
    assert _profile(table) == [("code", "string", 0, n)]
