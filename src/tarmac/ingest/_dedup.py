"""Deduplication by primary key and the row accounting of a load, before its plan is saved.

Staged rows are deduplicated with DuckDB, out of core and only when needed (a cheap check
first): the latest record by cursor wins (ties: the last read), and rows the table already
holds (same key; in merge mode at the same or a newer cursor) are dropped. Rejected records a
source re-serves every run are not quarantined twice. Then ``read == loaded + quarantined +
duplicates`` is checked against the files about to be committed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tarmac.errors import TarmacError
from tarmac.ingest import quarantine
from tarmac.ingest.spec import SourceSpec
from tarmac.lake import quote_ident as _q
from tarmac.lake.staging import rows_in

if TYPE_CHECKING:
    from tarmac.ingest.load import LoadResult
    from tarmac.lake import Lake

DEDUP_MEMORY = "1GB"  # DuckDB's memory for deduplication; beyond it, it spills to disk


def dedup(lake: Lake, spec: SourceSpec, table: str, staging: Path, glob: str, *,
          against_table: bool) -> tuple[Path | None, int]:
    """The staged rows, one per key (latest by cursor, then last read), minus rows the
    table already holds; written to one Parquet file by DuckDB, out of core. Returns the file
    (None if no row is left) and its row count."""
    keys = ", ".join(_q(k) for k in spec.primary_key)
    # staged files are numbered in read order, rows in order within each file
    order = (f"{_q(spec.cursor)} DESC NULLS LAST, " if spec.cursor else "") + \
        "filename DESC, file_row_number DESC"
    out = staging / "deduplicated.parquet"
    staging.mkdir(parents=True, exist_ok=True)
    con = duckdb_for(staging)
    try:
        query = (f"SELECT * EXCLUDE (__rn, filename, file_row_number) FROM (SELECT *, "
                 f"row_number() OVER (PARTITION BY {keys} ORDER BY {order}) AS __rn FROM "
                 f"read_parquet('{glob}', union_by_name = true, filename = true, "
                 "file_row_number = true)) d WHERE __rn = 1")
        # rows the table holds already: in append mode any row with the key; in merge mode
        # a row at the same or a newer cursor; without a cursor, a merge skips the rows the
        # table holds exactly as they are (a source re-served whole, like an API without a
        # cursor, does not make an identical new version every load)
        exact = spec.load_mode == "merge" and not spec.cursor
        if against_table and (spec.load_mode == "append" or spec.cursor or exact):
            dt = lake.latest(table)
            assert dt is not None
            cols = list(spec.primary_key) + ([spec.cursor] if spec.cursor else [])
            existing = lake.dataset(dt)
            # rows without a cursor value are re-read every load: one the table holds
            # unchanged is a duplicate, a changed one an update
            null_cursor = bool(spec.cursor and spec.load_mode == "merge" and con.execute(
                f"SELECT 1 FROM read_parquet('{glob}', union_by_name = true) WHERE "
                f"{_q(spec.cursor or '')} IS NULL LIMIT 1").fetchall())
            staged = [d[0] for d in con.execute(
                f"SELECT * FROM read_parquet('{glob}', union_by_name = true) LIMIT 0"
            ).description] if null_cursor or exact else []
            same: list[str] = []
            if null_cursor:
                same = [c for c in staged if c in existing.schema.names and c not in cols]
                cols += same
            if exact:
                cols = staged
            if all(c in existing.schema.names for c in cols):
                # only the table's rows whose first key falls in the incoming keys' range:
                # file and row-group statistics skip the rest (new ids skip almost all)
                first = spec.primary_key[0]
                lo, hi = con.execute(
                    f"SELECT min({_q(first)}), max({_q(first)}) FROM read_parquet('{glob}', "
                    "union_by_name = true)").fetchall()[0]
                where = None
                if lo is not None:
                    t = existing.schema.field(first).type
                    where = (pc.field(first) >= pa.scalar(lo).cast(t)) & \
                        (pc.field(first) <= pa.scalar(hi).cast(t))
                con.register("__target",
                             existing.scanner(columns=cols, filter=where).to_reader())
                match = " AND ".join(f"t.{_q(k)} = d.{_q(k)}" for k in spec.primary_key)
                if spec.cursor and spec.load_mode == "merge":
                    c = _q(spec.cursor)
                    unchanged = " AND ".join(
                        [f"t.{c} IS NULL", f"d.{c} IS NULL"] +
                        [f"t.{_q(x)} IS NOT DISTINCT FROM d.{_q(x)}" for x in same])
                    match += f" AND (t.{c} >= d.{c} OR ({unchanged}))"
                if exact:
                    match += "".join(f" AND t.{_q(c)} IS NOT DISTINCT FROM d.{_q(c)}"
                                     for c in cols if c not in spec.primary_key)
                query = (f"SELECT * FROM ({query}) d WHERE NOT EXISTS "
                         f"(SELECT 1 FROM __target t WHERE {match})")
        con.execute(f"COPY ({query}) TO '{out}' (FORMAT parquet)")
    finally:
        con.close()
    final = int(pq.ParquetFile(out).metadata.num_rows)
    return (out if final else None), final


def fresh_rejects(lake: Lake, source: str, staging: Path, glob: str) -> pa.Table:
    """The staged quarantine records (files matching ``glob``) that this source does not
    already have in quarantine (a source that re-serves a bad row every run, like a table
    without a cursor, does not fill the quarantine with copies)."""
    dt = lake.latest(quarantine.TABLE)
    assert dt is not None
    con = duckdb_for(staging)
    try:
        known = lake.dataset(dt).scanner(
            columns=["table", "reason", "record"],
            filter=pc.field("source") == source).to_reader()
        con.register("__known", known)
        return con.sql(
            f"SELECT * FROM read_parquet('{glob}') s WHERE NOT EXISTS ("
            "SELECT 1 FROM "
            "__known k WHERE k.\"table\" = s.\"table\" AND k.reason = s.reason AND "
            "k.record = s.record)").to_arrow_table()
    finally:
        con.close()


def reconcile(r: LoadResult, source: str, data_files: list[dict[str, Any]],
              merge_file: str | None, q_files: list[dict[str, Any]]) -> None:
    """``read == loaded + quarantined + duplicates``, with loaded and quarantined counted
    in the files about to be committed (not in the counters kept while reading): a row
    that vanished anywhere on the way fails the load, naming how many."""
    loaded = sum(rows_in(f) for f in data_files) + (
        pq.ParquetFile(merge_file).metadata.num_rows if merge_file else 0)
    quarantined = sum(rows_in(f) for f in q_files)
    where = f"source '{source}'"
    if (loaded, quarantined) != (r.rows_loaded, r.rows_quarantined):
        raise TarmacError(
            f"{where}: row accounting does not add up: the load counted {r.rows_loaded:,} "
            f"loaded and {r.rows_quarantined:,} quarantined, but its files hold {loaded:,} "
            f"and {quarantined:,}; nothing was committed")
    missing = r.rows_read - (loaded + quarantined + r.duplicates)
    if missing:
        raise TarmacError(
            f"{where}: row accounting does not add up: {abs(missing):,} row(s) "
            f"{'unaccounted for' if missing > 0 else 'counted twice'} (read "
            f"{r.rows_read:,} != loaded {loaded:,} + quarantined {quarantined:,} + "
            f"duplicates {r.duplicates:,}); nothing was committed")


def duckdb_for(staging: Path) -> Any:
    """A private DuckDB for deduplication: spills to the load's staging folder, stays quiet."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{staging / 'spill'}'")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET memory_limit = '{DEDUP_MEMORY}'")
    return con


def repeats(glob: str, keys: list[str], staging: Path) -> bool:
    """True if some key occurs more than once in the staged files (a cheap aggregate: the
    full deduplication runs only when it is needed)."""
    cols = ", ".join(_q(k) for k in keys)
    con = duckdb_for(staging)
    try:
        return bool(con.execute(f"SELECT 1 FROM read_parquet('{glob}', union_by_name = true) "
                                f"GROUP BY {cols} HAVING count(*) > 1 LIMIT 1").fetchall())
    finally:
        con.close()
