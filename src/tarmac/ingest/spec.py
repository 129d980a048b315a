"""Source declarations: the ``sources:`` block of ``tarmac.yaml``, validated.

Each source names a connector (``type``), where the data lives, and how it lands in the lake:
the mode, the primary key, the cursor column for incremental loads, and an optional contract
(``columns``) that rows must meet. A bad declaration raises ``ConfigError`` naming the file and
the key path, e.g. ``tarmac.yaml: key 'sources.crm.mode' (got 'upsert'): ...``.

Example::

    sources:
      crm: {type: sql, url: "sqlite:///data/crm.db", tables: [customers],
            primary_key: customer_id, cursor: updated_at, lookback: 1d}
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tarmac.config import describe, redact
from tarmac.errors import ConfigError
from tarmac.humanize import parse_duration
from tarmac.ingest.compression import strip_extension

Mode = Literal["append", "merge", "full_refresh"]
DriftPolicy = Literal["evolve", "quarantine", "fail"]
TS = pa.timestamp("us", tz="UTC")

#: contract type names -> Arrow types (what a declared column is stored as)
TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(), "integer": pa.int64(), "bigint": pa.int64(), "int64": pa.int64(),
    "int32": pa.int32(), "float": pa.float64(), "double": pa.float64(), "float64": pa.float64(),
    "float32": pa.float32(),
    "string": pa.string(), "str": pa.string(), "text": pa.string(), "bool": pa.bool_(),
    "boolean": pa.bool_(), "timestamp": TS, "datetime": TS, "date": pa.date32(),
}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")


class ColumnSpec(BaseModel):
    """One column of a contract: its type and the checks every row must pass."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str | None = None
    required: bool = False
    allowed: list[Any] | None = None
    min: float | str | None = None
    max: float | str | None = None
    pattern: str | None = None
    unique: bool = False
    tags: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)  # earlier names of this column
    formats: list[str] = Field(default_factory=list)  # strptime formats for dates in text

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is not None and value.lower() not in TYPES:
            raise ValueError(f"unknown column type; expected one of: {', '.join(TYPES)}")
        return value.lower() if value else value

    @field_validator("pattern")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc})") from None
        return value

    @property
    def arrow_type(self) -> pa.DataType | None:
        return TYPES[self.type] if self.type else None


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: str
    table: str | None = None
    mode: Mode | None = None
    primary_key: list[str] = Field(default_factory=list)
    cursor: str | None = None
    lookback: str | int | None = None
    columns: dict[str, ColumnSpec] = Field(default_factory=dict)
    on_schema_change: DriftPolicy = "evolve"
    tags: list[str] = Field(default_factory=list)
    description: str | None = None
    owner: str | None = None

    @field_validator("primary_key", mode="before")
    @classmethod
    def _key_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("columns", mode="before")
    @classmethod
    def _column_shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):  # `amount: float` is short for `amount: {type: float}`
            return {k: ({"type": v} if isinstance(v, str) else (v or {})) for k, v in value.items()}
        return value

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[a-z_][a-z0-9_]{0,62}$", value):
            raise ValueError("not a valid lake table name: use lowercase letters, digits and "
                             "underscores, starting with a letter")
        return value

    @field_validator("lookback")
    @classmethod
    def _lookback(cls, value: str | int | None) -> str | int | None:
        if isinstance(value, str):
            try:
                parse_duration(value)
            except ValueError:
                raise ValueError("expected a duration such as 30m, 6h, 2d or 1w (or a number, "
                                 "for numeric cursors)") from None
        if isinstance(value, int) and value < 0:
            raise ValueError("lookback cannot be negative")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> _Source:
        if self.mode == "merge" and not self.primary_key:
            raise ValueError("mode 'merge' needs a primary_key to match rows on")
        if self.lookback is not None and not self.cursor:
            raise ValueError("lookback needs a cursor column to look back along")
        if self.lookback is not None and not self.primary_key:
            raise ValueError("lookback re-reads rows already loaded; it needs a primary_key to "
                             "recognise them")
        return self

    @property
    def load_mode(self) -> Mode:
        """The declared mode, else merge when there is a key and append when there is not."""
        return self.mode or ("merge" if self.primary_key else "append")

    def lookback_value(self) -> timedelta | int | float | None:
        """The lookback as a timedelta (durations) or a number (numeric cursors)."""
        if self.lookback is None:
            return None
        if isinstance(self.lookback, int):
            return self.lookback
        return parse_duration(self.lookback)  # checked by the validator

    def location(self) -> str:
        """Where the data lives, safe to print (passwords masked)."""
        raise NotImplementedError


class SqlSource(_Source):
    """Tables or one query of any database SQLAlchemy reaches."""

    type: Literal["sql"] = "sql"
    url: str
    tables: list[str] | None = None
    query: str | None = None
    db_schema: str | None = Field(default=None, alias="schema")
    batch_size: int = Field(default=100_000, gt=0)

    @model_validator(mode="after")
    def _tables_or_query(self) -> SqlSource:
        if bool(self.tables) == bool(self.query):
            raise ValueError("give either tables: [...] or query: '...', exactly one of them")
        if self.query and self.table is None:
            return self  # the source name is the table name
        if self.tables and self.table and len(self.tables) > 1:
            raise ValueError("table: names one lake table; a source with several tables "
                             "loads each into a lake table of the same name")
        return self

    def location(self) -> str:
        return redact(self.url)


class FileSource(_Source):
    """CSV, JSON-lines or Parquet files matched by a glob, local or on S3."""

    type: Literal["file"] = "file"
    path: str
    format: Literal["csv", "jsonl", "parquet"] | None = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8"
    null_values: list[str] = Field(default_factory=list)  # CSV texts read as null, besides ""
    newlines_in_values: bool = False  # quoted CSV values span lines (found by itself, slower)
    storage_options: dict[str, str] = Field(default_factory=dict)
    batch_size: int = Field(default=131_072, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _tab_for_tsv(cls, data: Any) -> Any:
        """``*.tsv`` files are tab-separated unless a delimiter is declared."""
        if isinstance(data, dict) and "delimiter" not in data and \
                strip_extension(str(data.get("path", "")).lower()).endswith(".tsv"):
            return {**data, "delimiter": "\t"}
        return data

    @model_validator(mode="after")
    def _known_format(self) -> FileSource:
        if self.format is None and file_format(self.path) is None:
            raise ValueError(f"cannot tell the format of {self.path!r} from its extension; "
                             "add format: csv, jsonl or parquet")
        return self

    def file_format(self, path: str | None = None) -> str:
        fmt = self.format or file_format(path or self.path)
        assert fmt is not None
        return fmt

    def location(self) -> str:
        return self.path


class HttpSource(_Source):
    """A JSON REST API: paginated, authenticated from the environment, retried politely."""

    type: Literal["http"] = "http"
    url: str
    records: str | None = None  # dot path to the list of records in each page
    paginate: Literal["none", "page", "cursor", "link"] = "none"
    params: dict[str, str | int] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    page_param: str = "page"
    page_size: int | None = Field(default=None, gt=0)
    size_param: str | None = None
    cursor_param: str = "cursor"
    since_param: str | None = None  # query parameter the API filters by (gets the cursor's ISO)
    next_cursor: str = "next_cursor"  # dot path to the next page's token
    auth_env: str | None = None  # environment variable holding the token
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    timeout: float = Field(default=10.0, gt=0)
    retries: int = Field(default=5, ge=0)
    retry_budget: float = Field(default=60.0, ge=0)  # seconds of waiting allowed in total
    backoff: float = Field(default=0.5, ge=0)
    max_pages: int = Field(default=100_000, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value

    def location(self) -> str:
        return redact(self.url)


class StreamSource(_Source):
    """An event stream; declared here, consumed by ``tarmac stream run`` (not by ``ingest``).

    ``timestamp`` is the event-time column (windows and lateness use it; without it the log's
    append time is the event time). ``key`` is the field whose value keys each message (its
    partition; default: the first ``primary_key`` column); a record without it is refused at
    produce. ``allowed_lateness``: an event older than the newest event time committed minus
    this is quarantined as too late; ``max_future``: an event newer than now plus this is
    quarantined as from the future. Both are counted in the run's report, never dropped.
    """

    type: Literal["stream"] = "stream"
    topic: str
    format: Literal["json", "avro", "protobuf"] = "json"
    timestamp: str | None = None
    key: str | None = None
    allowed_lateness: str = "1h"
    max_future: str = "5m"
    partitions: int = Field(default=1, ge=1, le=1024)

    @field_validator("allowed_lateness", "max_future")
    @classmethod
    def _duration(cls, value: str) -> str:
        try:
            parse_duration(value)
        except ValueError:
            raise ValueError("expected a duration such as 30s, 10m, 6h or 2d") from None
        return value

    @property
    def key_field(self) -> str | None:
        """The record field that keys messages (``key``, else the first primary key column)."""
        return self.key or (self.primary_key[0] if self.primary_key else None)

    def location(self) -> str:
        return f"topic {self.topic}"


SourceSpec = SqlSource | FileSource | HttpSource | StreamSource
_KINDS: dict[str, type[_Source]] = {"sql": SqlSource, "file": FileSource, "http": HttpSource,
                                    "stream": StreamSource}
SourceSpecType = Annotated[SourceSpec, Field(discriminator="type")]


def file_format(path: str) -> str | None:
    """``csv``, ``jsonl`` or ``parquet`` from a path's extension (``.gz``, ``.zst``, ``.bz2``
    allowed), else None."""
    name = strip_extension(path.lower())
    for suffix, fmt in ((".csv", "csv"), (".tsv", "csv"), (".jsonl", "jsonl"),
                        (".ndjson", "jsonl"), (".json", "jsonl"), (".parquet", "parquet"),
                        (".pq", "parquet")):
        if name.endswith(suffix):
            return fmt
    return None


def check_columns(name: str, spec: SourceSpec, columns: Collection[str],
                  known: Collection[str] = (), *, stream: str | None = None) -> None:
    """Refuse a declaration that names a column the source does not have: a misspelled
    ``primary_key`` or ``cursor`` would otherwise quarantine every row (and remember the files
    as loaded), a misspelled ``columns:`` entry would add an empty column. ``columns`` are a
    chunk's columns as read, ``known`` the stored contract's (a declared column seen before
    and gone now is schema drift, handled by ``on_schema_change``). Sources without a fixed
    schema (JSON lines, HTTP) may leave out a column in one chunk: for them only the key and
    the cursor are checked, and for a source of several SQL tables (``columns:`` may describe
    only some of them) too. ``stream``: the table read, named when it is not the source."""
    have = set(columns)
    aliases = {old: new for new, col in spec.columns.items() for old in col.aliases}
    have |= {aliases[c] for c in have if c in aliases}
    fixed = (isinstance(spec, SqlSource) and len(spec.tables or []) <= 1) or (
        isinstance(spec, FileSource) and spec.file_format() in ("csv", "parquet"))
    what = f"source '{name}'" + (f" (table {stream!r})" if stream and stream != name else "")
    wanted = [("primary_key", k) for k in spec.primary_key] + (
        [("cursor", spec.cursor)] if spec.cursor else []) + (
        [(f"columns.{c}", c) for c in spec.columns if c not in known] if fixed else [])
    for key, column in wanted:
        if column in have:
            continue
        close = difflib.get_close_matches(column, sorted(set(columns)), n=1, cutoff=0.6)
        shown = ", ".join(sorted(columns)[:12]) + (", ..." if len(columns) > 12 else "")
        raise ConfigError(
            f"tarmac.yaml: key 'sources.{name}.{key}' (got {column!r}): {what} has no "
            f"column {column!r}" + (f"; did you mean {close[0]!r}?" if close else
                                    f" (it has: {shown})") + " Nothing was loaded.",
            hint="fix the name in tarmac.yaml and rerun; no file was remembered as loaded")


def parse_sources(raw: dict[str, Any], file: Path) -> dict[str, SourceSpec]:
    """Validate the ``sources:`` block; every problem names ``sources.NAME.key`` in ``file``."""
    out: dict[str, SourceSpec] = {}
    problems: list[str] = []
    for name, body in (raw or {}).items():
        where = f"{file}: key 'sources.{name}'"
        if not _NAME.match(str(name)):
            problems.append(f"{where}: invalid source name; use letters, digits, '_', '-' or "
                            "'.', starting with a letter")
            continue
        if not isinstance(body, dict):
            problems.append(f"{where}: expected a mapping such as {{type: sql, url: ...}}, got "
                            f"{type(body).__name__}")
            continue
        kind = body.get("type")
        model = _KINDS.get(str(kind))
        if model is None:
            problems.append(f"{file}: key 'sources.{name}.type' (got {kind!r}): expected one "
                            f"of: {', '.join(_KINDS)}")
            continue
        try:
            out[str(name)] = model.model_validate(body)  # type: ignore[assignment]
        except ValidationError as exc:
            problems.append(describe(exc, file, prefix=f"sources.{name}", model=model))
    if problems:
        raise ConfigError("\n".join(problems))
    return out
