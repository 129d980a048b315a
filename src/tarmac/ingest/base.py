"""What every connector provides: its streams, their rows in Arrow chunks, and samples.

A connector knows how to talk to one kind of source (a database, files, an HTTP API) and nothing
about contracts, cursors or the lake: the loader (``tarmac.ingest.load``) applies those the same
way to every source. A source has one or more *streams*, each landing in one lake table (a SQL
source with ``tables: [a, b]`` has two).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import methodcaller
from pathlib import Path
from typing import Any, Generic, TypeVar

import pyarrow as pa

from tarmac.errors import SourceError
from tarmac.ingest.spec import SourceSpec

S = TypeVar("S", bound=SourceSpec)


@dataclass(frozen=True)
class Stream:
    """One flow of records from a source into one lake table."""

    source: str
    name: str  # e.g. the SQL table; the source name for single-stream sources
    table: str  # the lake table it lands in
    location: str  # where it is read from, safe to print


@dataclass(frozen=True)
class FileMark:
    """A file as it was when loaded: a file counts as new again if its size or mtime changes."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Reject:
    """A record the reader itself could not turn into a row (bad JSON, a broken CSV line)."""

    origin: str  # file path and line, URL and page, ...
    reason: str
    raw: str  # the record as read, for the quarantine table


@dataclass
class Chunk:
    """Some rows of a stream, as read (before the contract is applied)."""

    data: pa.Table
    origin: str
    nbytes: int = 0  # bytes read from the source for this chunk
    rejects: list[Reject] = field(default_factory=list)
    done_file: FileMark | None = None  # set on a file's last chunk: the file is fully read


@dataclass
class Sample:
    """What ``tarmac survey`` learns about a stream without loading it."""

    stream: Stream
    rows: pa.Table  # up to the requested number of rows, as read
    total_rows: int | None  # None: unknown
    estimated: bool = False  # True when total_rows (or the sample) is an extrapolation
    nbytes: int | None = None
    parts: int | None = None  # files or pages found
    newest: dict[str, Any] = field(default_factory=dict)  # column -> exact max over the source
    notes: list[str] = field(default_factory=list)


class Connector(ABC, Generic[S]):
    """Reads one declared source. Subclasses raise ``SourceError`` naming the source on failure."""

    def __init__(self, name: str, spec: S, root: Path) -> None:
        self.name = name
        self.spec = spec
        self.root = root  # the project folder: relative paths and SQLite files resolve here

    @abstractmethod
    def streams(self) -> list[Stream]:
        """The streams this source yields (may contact the source to discover them)."""

    @abstractmethod
    def read(self, stream: Stream, *, since: Any = None,
             seen: dict[str, FileMark] | None = None) -> Iterator[Chunk]:
        """Rows of ``stream`` in chunks. ``since`` is the lowest cursor value wanted (connectors
        that can filter at the source do; the loader filters again), ``seen`` the files loaded
        before (file connectors skip those unchanged)."""

    @abstractmethod
    def sample(self, stream: Stream, rows: int) -> Sample:
        """Up to ``rows`` rows and what can be counted cheaply, for the survey."""

    def source_types(self, stream: Stream) -> dict[str, pa.DataType]:
        """The lake type of each column the source declares (a database table's schema);
        empty where the source declares none (files, APIs, queries): the values decide."""
        return {}

    def close(self) -> None:
        """Release connections."""

    def error(self, message: str, *, hint: str | None = None) -> SourceError:
        """A ``SourceError`` whose message starts with the source's name."""
        return SourceError(f"source '{self.name}': {message}", hint=hint)


def rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Record batches regrouped into tables of ``rows`` rows (the last may be shorter): readers
    hand out batches of their own size, the loader wants chunks of ``batch_size``."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending)


def table_name(name: str) -> str:
    """A lake table name derived from a source or SQL table name (``Tickets-API`` ->
    ``tickets_api``)."""
    out = re.sub(r"[^a-z0-9_]", "_", name.lower().rsplit(".", 1)[-1])
    return out if re.match(r"^[a-z_]", out) else f"_{out}"


def records_table(records: list[dict[str, Any]]) -> pa.Table:
    """A table from JSON objects that may disagree: the union of their keys (missing -> null),
    one Arrow type per column when its values agree (ints with floats -> float64), else strings
    (``str`` of strings, JSON text of anything else), and nested objects/lists as JSON text."""
    shapes = dict.fromkeys(map(tuple, records))  # the distinct key sequences, in order
    keys = dict.fromkeys(key for shape in shapes for key in shape)
    return pa.table({key: _column(list(map(methodcaller("get", key), records)))
                     for key in keys})


def _column(values: list[Any]) -> pa.Array:
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if not kinds:
        return pa.nulls(len(values))
    if len(kinds) == 1:
        kind = next(iter(kinds))
        arrow = {str: pa.string(), bool: pa.bool_(), int: pa.int64(), float: pa.float64()}
        if kind in arrow:
            try:
                return pa.array(values, type=arrow[kind])
            except (pa.ArrowInvalid, OverflowError):  # ints beyond 64 bits
                pass
    elif kinds == {int, float}:  # JSON has one number type: 42 and 1.5 are both numbers
        return pa.array(values, type=pa.float64())
    return pa.array([v if v is None or type(v) is str else _json_text(v) for v in values],
                    type=pa.string())


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def raw_json(record: Any) -> str:
    """A record as compact JSON for the quarantine table (non-JSON values as strings)."""
    return json.dumps(record, default=str, ensure_ascii=False, separators=(",", ":"))
