"""Writing Parquet data files into a table's folder without committing them.

A file written here is invisible to every reader until a Delta commit adds it, so a writer can
prepare all of a load's files first and then make them visible in one atomic commit (or, if the
process dies first, leave files no version references, which vacuum removes). Used by the
bounded-memory merge and by staged loads (``Lake.stage`` / ``Lake.commit_files``).

This module is the lake's public staging seam for other packages (ingestion's atomic loads now,
stream sinks next): ``Stager`` writes the files, ``action_to_dict`` turns what it wrote into the
JSON-able entries a commit plan stores and ``Lake.commit_files`` takes, and ``rows_in`` counts
an entry's rows. Users of the SDK never need it, so ``tarmac.lake`` does not export it.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake.transaction import AddAction

from tarmac.lake._arrow import conform_table
from tarmac.lake._quote import literal_list, quote_ident

__all__ = ["Stager", "action_to_dict", "rows_in"]

FILE_ROWS = 4_000_000  # rows per data file before a staged write starts the next


def write_files(root: str, tables: Any, schema: pa.Schema) -> list[AddAction]:
    """Write ``tables`` (an iterable of Arrow tables, conformed to ``schema``) as data files in
    ``root``; no file when every table is empty."""
    stager = Stager(root, str(uuid.uuid4()))
    for table in tables:
        stager.write(conform_table(table, schema))
    return stager.close()


def _action(path: Path, name: str, stats: Stats) -> AddAction:
    info = path.stat()
    return AddAction(path=name, size=info.st_size, partition_values={},
                     modification_time=int(info.st_mtime * 1000), data_change=True,
                     stats=stats.to_json())


def action_to_dict(action: AddAction) -> dict[str, Any]:
    """An add action as JSON-able data (to store in a load's commit plan)."""
    return {"path": action.path, "size": action.size, "partition_values": {},
            "modification_time": action.modification_time, "data_change": True,
            "stats": action.stats}


def action_from_dict(data: dict[str, Any]) -> AddAction:
    return AddAction(path=data["path"], size=data["size"], partition_values={},
                     modification_time=data["modification_time"], data_change=True,
                     stats=data["stats"])


def rows_in(action: dict[str, Any]) -> int:
    return int(json.loads(action["stats"]).get("numRecords", 0))


class Stager:
    """Writes batches into uncommitted data files in a table's folder, rolling to a new file
    every ``FILE_ROWS`` rows or when the schema changes; ``close()`` returns the add actions."""

    def __init__(self, root: str, tag: str) -> None:
        self.root = root
        self.tag = tag
        os.makedirs(root, exist_ok=True)
        self.actions: list[AddAction] = []
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._stats: Stats | None = None
        self._name = ""
        self._n = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is not None and (table.schema != self._schema or (
                self._stats is not None and self._stats.rows >= FILE_ROWS)):
            self._finish()
        if self._writer is None:
            self._name = f"part-{self._n:05d}-{self.tag}-c000.snappy.parquet"
            self._n += 1
            self._schema = table.schema
            self._stats = Stats(table.schema)
            self._writer = pq.ParquetWriter(Path(self.root) / self._name, table.schema,
                                            compression="snappy")
        self._writer.write_table(table)
        assert self._stats is not None
        self._stats.add(table)
        self.rows += table.num_rows

    @property
    def glob(self) -> str:
        """A pattern matching exactly the files this stager writes (for DuckDB's readers)."""
        return f"{self.root}/part-*-{self.tag}-c000.snappy.parquet"

    def _finish(self) -> None:
        if self._writer is None or self._stats is None:
            return
        self._writer.close()
        self.actions.append(_action(Path(self.root) / self._name, self._name, self._stats))
        self._writer = None

    def close(self) -> list[AddAction]:
        self._finish()
        return self.actions

    def abort(self) -> None:
        """Remove the files written so far (they were never committed)."""
        names = [a.path for a in self.actions]
        if self._writer is not None:  # the file being written is not among the actions yet
            self._writer.close()
            self._writer = None
            names.append(self._name)
        for name in names:
            Path(self.root, name).unlink(missing_ok=True)
        self.actions = []
        self.rows = 0


class Stats:
    """Delta file statistics: row count, null counts, and min/max for ints, strings, dates and
    time-zone-aware timestamps (floats are left out: NaN has no place in a bound, which only
    costs file skipping). Delta keeps timestamp bounds to the millisecond, so a minimum is
    rounded down and a maximum up to one: a bound never excludes a row of its file."""

    def __init__(self, schema: pa.Schema) -> None:
        self.rows = 0
        self.nulls = {f.name: 0 for f in schema}
        self.bounded = [f.name for f in schema if pa.types.is_integer(f.type)
                        or pa.types.is_string(f.type) or pa.types.is_date32(f.type)]
        self.instants = [f.name for f in schema
                         if pa.types.is_timestamp(f.type) and f.type.tz is not None]
        self.lo: dict[str, Any] = {}
        self.hi: dict[str, Any] = {}

    def add(self, table: pa.Table) -> None:
        self.rows += len(table)
        for name in self.nulls:
            self.nulls[name] += table[name].null_count
        for name in self.bounded:
            mm = pc.min_max(table[name]).as_py()
            if mm["min"] is None:
                continue
            self.lo[name] = mm["min"] if name not in self.lo else min(self.lo[name], mm["min"])
            self.hi[name] = mm["max"] if name not in self.hi else max(self.hi[name], mm["max"])
        for name in self.instants:
            micros = table[name].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
            mm = pc.min_max(micros).as_py()
            if mm["min"] is None:
                continue
            lo, hi = mm["min"] // 1000 * 1000, -(-mm["max"] // 1000) * 1000
            self.lo[name] = _Instant(lo if name not in self.lo else min(self.lo[name].us, lo))
            self.hi[name] = _Instant(hi if name not in self.hi else max(self.hi[name].us, hi))

    def to_json(self) -> str:
        def plain(v: Any) -> Any:
            return v.isoformat() if hasattr(v, "isoformat") else v

        return json.dumps({"numRecords": self.rows,
                           "minValues": {k: plain(v) for k, v in self.lo.items()},
                           "maxValues": {k: plain(v) for k, v in self.hi.items()},
                           "nullCount": self.nulls})


class _Instant:
    """A timestamp bound in microseconds, written as Delta writes them (UTC, milliseconds)."""

    def __init__(self, us: int) -> None:
        self.us = us

    def isoformat(self) -> str:
        from datetime import UTC, datetime, timedelta

        at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=self.us)
        return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def same_rows(current: list[str], staged: list[str], columns: list[str]) -> bool:
    """True if two sets of Parquet files hold the same rows, in any order (a multiset
    comparison over an order-independent sum of row hashes, streamed by DuckDB: a full
    refresh of a big table is compared without holding it in memory)."""
    import duckdb

    def fingerprint(con: duckdb.DuckDBPyConnection, files: list[str]) -> tuple[int, int]:
        if not files:
            return 0, 0
        listing = literal_list(files)
        row = ", ".join(f"{quote_ident(c)} := {quote_ident(c)}" for c in columns)
        [found] = con.execute(
            f"SELECT count(*), coalesce(sum(hash(struct_pack({row}))::HUGEINT), 0) "
            f"FROM read_parquet([{listing}], union_by_name = true)").fetchall()
        return int(found[0]), int(found[1])

    con = duckdb.connect()
    try:
        return fingerprint(con, current) == fingerprint(con, staged)
    finally:
        con.close()
