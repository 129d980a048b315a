"""Incoming data -> Arrow, and the schema rules of the lake.

Rules (said in the errors too):
- pandas frames, Arrow tables/batches/readers, lists of dicts and dicts of lists are accepted;
- types Delta cannot store are mapped losslessly (ns timestamps -> us, unsigned -> signed wider);
- a new column merges in as nullable; a table column missing from the data is filled with nulls;
- a column may widen (int32 -> int64, float32 -> float64, int -> float64); any other type change
  is refused, and the table is left untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from tarmac.errors import MergeKeyError, SchemaConflictError, UsageError
from tarmac.lake.types import storable_schema

ArrowData: TypeAlias = pa.Table | pa.RecordBatchReader
OnDuplicate = Literal["error", "last", "first"]

_INTS = [pa.int8(), pa.int16(), pa.int32(), pa.int64()]


def to_arrow(data: Any) -> ArrowData:
    """Anything tabular -> an Arrow table or a record-batch reader (streamed, never collected)."""
    if isinstance(data, pa.Table | pa.RecordBatchReader):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if hasattr(data, "to_arrow") and type(data).__module__.startswith("polars"):
        return data.to_arrow()
    try:
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            return pa.Table.from_pandas(data, preserve_index=False)
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return pa.Table.from_pylist(data)
    if isinstance(data, dict):
        return pa.table(data)
    if hasattr(data, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(data)
    raise UsageError(
        f"cannot write a {type(data).__name__}: expected a pandas DataFrame, a pyarrow Table, "
        "RecordBatch or RecordBatchReader, a list of dicts or a dict of lists"
    )


def _widens(old: pa.DataType, new: pa.DataType) -> bool:
    """True if data of type ``new`` can be written into a column of type ``old`` without loss."""
    if old == new:
        return True
    if old in _INTS and new in _INTS:
        return _INTS.index(new) <= _INTS.index(old)
    if pa.types.is_floating(old) and (pa.types.is_integer(new) or pa.types.is_floating(new)):
        return old.bit_width >= getattr(new, "bit_width", 64) or pa.types.is_integer(new)
    if pa.types.is_timestamp(old) and pa.types.is_timestamp(new):
        return (old.tz is None) == (new.tz is None)
    return bool(pa.types.is_date(old) and pa.types.is_date(new))


def plan_schema(table: str, current: pa.Schema | None, incoming: pa.Schema, *,
                replace: bool = False) -> tuple[pa.Schema, list[str]]:
    """The schema to write with, and the names of new columns.

    Raises ``SchemaConflictError`` naming every incompatible column.
    """
    incoming = storable_schema(incoming)
    dupes = {n for n in incoming.names if incoming.names.count(n) > 1}
    if dupes:
        raise SchemaConflictError(f"the data for '{table}' has duplicate column names: "
                                  f"{', '.join(sorted(dupes))}")
    if current is None or replace:
        return incoming, []
    problems = []
    for f in incoming:
        idx = current.get_field_index(f.name)
        if idx >= 0 and not _widens(current.field(idx).type, f.type):
            problems.append(f"column '{f.name}' is {current.field(idx).type} in the table but "
                            f"{f.type} in the data")
    missing_required = [f.name for f in current if not f.nullable and f.name not in incoming.names]
    problems += [f"column '{n}' is required (not null) but missing from the data"
                 for n in missing_required]
    if problems:
        raise SchemaConflictError(
            f"cannot write to '{table}': " + "; ".join(problems) + ". The table was not changed.",
            hint="cast the data to the table's types, or overwrite with replace_schema=True",
        )
    new = [f for f in incoming if current.get_field_index(f.name) < 0]
    return pa.schema(list(current) + [pa.field(f.name, f.type, True) for f in new]), \
        [f.name for f in new]


def conform(data: ArrowData, target: pa.Schema) -> ArrowData:
    """Reorder, cast and null-fill data to ``target``, batch by batch for readers."""
    if isinstance(data, pa.Table):
        return _conform_table(data, target)

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in data:
            table = _conform_table(pa.Table.from_batches([batch]), target)
            yield from table.to_batches()

    return pa.RecordBatchReader.from_batches(target, batches())


def conform_table(table: pa.Table, target: pa.Schema) -> pa.Table:
    """One in-memory table conformed to ``target`` (see ``conform``)."""
    return _conform_table(table, target)


def _conform_table(table: pa.Table, target: pa.Schema) -> pa.Table:
    if table.schema.equals(target, check_metadata=False):
        return table
    columns = []
    for f in target:
        if f.name in table.column_names:
            col = table.column(f.name)
            if pa.types.is_dictionary(col.type):
                col = col.cast(col.type.value_type)
            try:
                columns.append(col.cast(f.type, safe=True) if col.type != f.type else col)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaConflictError(
                    f"column '{f.name}' cannot be stored as {f.type}: {exc}") from None
        else:
            columns.append(pa.nulls(len(table), f.type))
    return pa.Table.from_arrays(columns, schema=target)


def duplicate_keys(table: pa.Table, keys: list[str]) -> pa.Table:
    """The key values that occur more than once, with their counts."""
    counts = table.select(keys).group_by(keys).aggregate([([], "count_all")])
    return counts.filter(pc.greater(counts["count_all"], 1))


def keep_last(table: pa.Table, keys: list[str], *, last: bool = True) -> pa.Table:
    """One row per key: the last (or first) occurrence in the data's order."""
    idx = pa.array(range(len(table)), pa.int64())
    agg = "max" if last else "min"
    picked = (table.select(keys).append_column("__row", idx).group_by(keys)
              .aggregate([("__row", agg)]))
    rows = picked[f"__row_{agg}"]
    return table.take(pc.take(rows, pc.sort_indices(rows)))


def merge_source(name: str, data: Any, keys: list[str] | None, on_duplicate: OnDuplicate,
                 schema: pa.Schema) -> pa.Table:
    """The incoming rows of a merge, checked: keys given and known, no nulls, no duplicates
    (unless ``on_duplicate`` says which occurrence wins)."""
    if not keys:
        raise MergeKeyError(f"merge into '{name}' needs keys=[...]: the columns that identify a "
                            "row (e.g. keys=['customer_id'])")
    missing = [k for k in keys if k not in schema.names]
    if missing:
        raise MergeKeyError(f"merge keys {missing} are not columns of '{name}'; columns: "
                            f"{', '.join(schema.names)}")
    table = data.read_all() if isinstance(data, pa.RecordBatchReader) else data
    for k in keys:
        nulls = table.column(k).null_count
        if nulls:
            raise MergeKeyError(f"merge into '{name}': {nulls} incoming row(s) have a null in key "
                                f"column '{k}'; a null key cannot match a row. Nothing was "
                                "written.")
    dupes = duplicate_keys(table, keys)
    if len(dupes):
        if on_duplicate == "error":
            sample = ", ".join(str({k: dupes[k][i].as_py() for k in keys})
                               for i in range(min(3, len(dupes))))
            raise MergeKeyError(
                f"merge into '{name}': {len(dupes)} key value(s) occur more than once in the "
                f"incoming data (e.g. {sample}); nothing was written",
                hint="deduplicate first, or pass on_duplicate='last' (the last occurrence in the "
                     "data wins) or on_duplicate='first'")
        table = keep_last(table, keys, last=on_duplicate == "last")
    return table
