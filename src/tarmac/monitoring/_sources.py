"""What a side of a drift comparison may be, read one column at a time.

An Arrow table, record-batch reader or pandas frame is held in memory as Arrow (the caller
already had it in memory); an Arrow dataset (Parquet files, a lake table) is read one column at
a time, so a window larger than memory is never loaded whole; SQL text runs once through the
project; a stored ``TableProfile`` (a model version's training profile) is a reference whose
sketches are already computed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.dataset as pads

from tarmac.errors import UsageError
from tarmac.profile import ColumnStats, Kind, TableProfile
from tarmac.profile.sketch import arrow_kind

if TYPE_CHECKING:
    from tarmac.project import Project

Role = Literal["reference", "current"]


@dataclass(frozen=True)
class Side:
    """One side of a comparison: its row count, each column's kind and type, and either the
    data (``table`` or ``dataset``) or a stored ``profile``."""

    role: Role
    rows: int
    kinds: dict[str, Kind]
    types: dict[str, str]
    table: pa.Table | None = None
    dataset: pads.Dataset | None = None
    profile: TableProfile | None = None

    def column(self, name: str) -> pa.ChunkedArray:
        """One column's values (from a dataset: only that column is read)."""
        if self.table is not None:
            return self.table.column(name)
        if self.dataset is not None:
            return self.dataset.to_table(columns=[name]).column(0)
        raise TypeError(f"the {self.role} is a stored profile: it has no values")

    def stats(self, name: str) -> ColumnStats | None:
        return None if self.profile is None else self.profile[name]


def side(data: Any, role: Role, project: Project | None) -> Side:
    """``data`` as a ``Side``; SQL text and lake table names need ``project``."""
    if isinstance(data, TableProfile):
        if role != "reference":
            raise UsageError("a stored profile can only be the reference: the current window "
                             "must be data (a table, frame, dataset, SQL text or table name)")
        return Side(role, data.rows, {c.name: c.kind for c in data.columns},
                    {c.name: c.type for c in data.columns}, profile=data)
    if isinstance(data, str):
        return _text(data, role, project)
    if isinstance(data, pa.RecordBatchReader):
        data = data.read_all()
    elif isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    elif _is_pandas(data):
        data = pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, pa.Table):
        return Side(role, data.num_rows, _kinds(data.schema), _types(data.schema), table=data)
    if isinstance(data, pads.Dataset):
        return Side(role, data.count_rows(), _kinds(data.schema), _types(data.schema),
                    dataset=data)
    raise UsageError(f"cannot compare a {type(data).__name__} as the {role}: pass an Arrow "
                     "table, dataset or record-batch reader, a pandas DataFrame, SQL text or a "
                     "lake table name (through a project), or a stored TableProfile "
                     "(reference only)")


def _text(text: str, role: Role, project: Project | None) -> Side:
    if project is None:
        raise UsageError(f"the {role} {text[:60]!r} is text: SQL or a lake table name needs a "
                         "project", hint="use p.monitoring.drift(...) on an open project")
    from tarmac.lake.lake import is_table_name

    name = text.strip()
    if is_table_name(name):  # one bare name: a lake table, read one column at a time
        if project.lake.latest(name) is None:
            raise project.lake.missing(name)
        dataset = project.lake.scan(name)
        return Side(role, dataset.count_rows(), _kinds(dataset.schema), _types(dataset.schema),
                    dataset=dataset)
    table = project.sql(text)
    return Side(role, table.num_rows, _kinds(table.schema), _types(table.schema), table=table)


def _is_pandas(data: Any) -> bool:
    pandas = sys.modules.get("pandas")  # a caller with a DataFrame has imported pandas
    return pandas is not None and isinstance(data, pandas.DataFrame)


def _kinds(schema: pa.Schema) -> dict[str, Kind]:
    return {f.name: arrow_kind(f.type) for f in schema}


def _types(schema: pa.Schema) -> dict[str, str]:
    return {f.name: str(f.type) for f in schema}
