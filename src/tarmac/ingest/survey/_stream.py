"""Profiling one stream's sample: columns (through ``tarmac.profile``), key, freshness, PII."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from tarmac.ingest.base import Sample
from tarmac.ingest.spec import SourceSpec
from tarmac.ingest.survey._freshness import DEFAULT_STALE_AFTER, freshness
from tarmac.ingest.survey._report import ColumnProfile, KeyProfile, StreamProfile
from tarmac.profile import ColumnStats, profile
from tarmac.profile.pii import PII_THRESHOLD, detect_pii

EXAMPLES = 3  # sampled values shown per column


def profile_sample(sample: Sample, spec: SourceSpec, now: datetime | None = None, *,
                   stale_after: timedelta = DEFAULT_STALE_AFTER,
                   pii_threshold: float = PII_THRESHOLD) -> StreamProfile:
    """Profile one stream from its ``Sample``: only the sampled rows are read.

    Counts come from the connector (``total_rows``, ``parts``, ``nbytes``); column figures are
    exact when the sample holds the whole source and marked estimated otherwise; freshness uses
    the connector's exact ``newest`` when it has the column, else the sample's maximum.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    table = sample.rows
    n = table.num_rows
    complete = (sample.total_rows is not None and not sample.estimated
                and n >= sample.total_rows)
    columns = _column_profiles(table, estimated=not complete)
    out = StreamProfile(name=sample.stream.name, table=sample.stream.table,
                        location=sample.stream.location, rows=sample.total_rows,
                        rows_estimated=sample.estimated or sample.total_rows is None,
                        sampled_rows=n, complete=complete, parts=sample.parts,
                        bytes=sample.nbytes, columns=columns, notes=list(sample.notes))
    if spec.primary_key:
        out.key = key_profile(table, spec.primary_key, estimated=not complete)
    out.freshness = freshness(sample, spec.cursor, now, stale_after=stale_after,
                              complete=complete)
    out.pii = detect_pii(table, spec.columns, stream=f"{sample.stream.source} "
                                                    f"{sample.stream.name}",
                         threshold=pii_threshold)
    return out


def _column_profiles(table: pa.Table, *, estimated: bool) -> list[ColumnProfile]:
    """Null and exact distinct counts of every column, computed by ``tarmac.profile`` (counts
    only: the survey shows no distributions). Columns are profiled by position, so a sample
    with repeated column names (a CSV header) keeps one profile per column."""
    n = table.num_rows
    positional = table.rename_columns([f"c{i}" for i in range(table.num_columns)])
    try:
        stats: list[ColumnStats | None] = list(profile(positional, basic=True,
                                                       exact_distinct=True))
    except duckdb.Error:  # a type DuckDB cannot read: profile what it can, column by column
        stats = [_one(positional.select([i])) for i in range(table.num_columns)]
    out = []
    for i, (name, s) in enumerate(zip(table.column_names, stats, strict=True)):
        nulls = s.nulls if s is not None else table.column(i).null_count
        distinct = s.distinct if s is not None else None
        out.append(ColumnProfile(name=name, type=str(table.schema.field(i).type),
                                 null_rate=round(nulls / n, 6) if n else 0.0, nulls=nulls,
                                 distinct=distinct if n else 0, estimated=estimated,
                                 examples=_examples(table.column(i))))
    return out


def _examples(column: pa.ChunkedArray, limit: int = EXAMPLES, width: int = 60) -> list[str]:
    """The first ``limit`` distinct non-null values of a column as text (cut to ``width``), so
    a reader sees what a column holds; nested or odd types that cannot be listed give none."""
    try:
        head = column.slice(0, 1000).drop_null()
        values = pc.unique(head).slice(0, limit).to_pylist()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return []
    return [str(v) if len(str(v)) <= width else str(v)[:width - 1] + "…" for v in values]


def _one(column: pa.Table) -> ColumnStats | None:
    try:
        return profile(column, basic=True, exact_distinct=True).columns[0]
    except duckdb.Error:
        return None  # counted from Arrow: nulls only, like nested values


def key_profile(table: pa.Table, key: Sequence[str], *, estimated: bool = False) -> KeyProfile:
    """Distinct values, duplicated values and null rows of the key ``key`` in ``table``."""
    missing = [k for k in key if k not in table.column_names]
    present = [k for k in key if k in table.column_names]
    if missing or not present:
        return KeyProfile(list(key), missing, 0, 0, 0, 0, estimated)
    keys = table.select(present)
    has_null = None
    for name in present:
        isnull = pc.is_null(keys.column(name))
        has_null = isnull if has_null is None else pc.or_(has_null, isnull)
    assert has_null is not None
    null_rows = pc.sum(has_null).as_py() or 0
    if null_rows:
        keys = keys.filter(pc.invert(has_null))
    try:
        counts = keys.group_by(present).aggregate([([], "count_all")]).column("count_all")
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        # a key of a type that cannot be grouped (mixed JSON values): compare as text
        keys = pa.table({k: pc.cast(keys.column(k), pa.string()) for k in present})
        counts = keys.group_by(present).aggregate([([], "count_all")]).column("count_all")
    dup = pc.greater(counts, 1)
    dup_values = pc.sum(dup).as_py() or 0
    dup_rows = (pc.sum(pc.filter(counts, dup)).as_py() or 0) - dup_values
    return KeyProfile(list(key), [], len(counts), dup_values, dup_rows, null_rows, estimated)
