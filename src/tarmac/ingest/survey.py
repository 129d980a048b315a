"""``tarmac survey``: map where a project's data lives, and what blocks it, before loading any.

For every declared source the survey asks its connector for a *sample* of each stream (the
connector counts rows, files and bytes cheaply and may give the exact newest cursor value) and
profiles only that sample: column types, null rates, distinct counts, duplicate primary keys,
freshness and personal data (by column name and by sampled values). Figures computed on a
sample that is not the whole source are marked estimated. Nothing is written to the lake or the
catalog.

From the profiles it derives the *gaps* that will block production ML (unreachable sources,
missing or duplicated keys, no timestamp for incremental loads or point-in-time features, stale
data, empty columns, untagged personal data), each with a severity and a one-line fix.

Example::

    from tarmac.ingest.survey import survey, render
    report = survey(tarmac.open("."))
    report.headline()        # '6 sources, 5 reachable, 3 blocking gaps'
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tarmac import humanize
from tarmac.errors import SourceError, UsageError
from tarmac.humanize import size
from tarmac.ingest.base import Connector, Sample
from tarmac.ingest.contract import parse_times
from tarmac.ingest.contract import to_datetime as _to_datetime
from tarmac.ingest.spec import (
    ColumnSpec,
    HttpSource,
    SourceSpec,
    StreamSource,
)

if TYPE_CHECKING:
    from rich.console import Console

    from tarmac.project import Project

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
PII_KINDS = ("email", "phone", "name", "card", "ip")

DEFAULT_SAMPLE_ROWS = 100_000
DEFAULT_STALE_AFTER = timedelta(days=7)
NULL_RATE_LIMIT = 0.2  # a column more empty than this is a gap
PII_THRESHOLD = 0.6  # share of sampled non-null values that must look like personal data
NAME_THRESHOLD = 0.8  # person names by values alone are easy to confuse (product names...)
VALUE_CHECK_LIMIT = 20_000  # non-null values per column the value detectors look at
STREAM_NOTE = "declared; consumed by the streams issue"
SURVEY_HTTP_RETRIES = 2  # an API that fails this often while surveyed is reported unreachable
SURVEY_HTTP_BUDGET = 5.0  # seconds of retry waiting per HTTP source
_PERSONAL_TABLES = re.compile(
    r"customer|client|user|person|people|contact|member|employee|staff|patient|subscriber|"
    r"account|lead|crm|student|guest|passenger|driver|buyer|seller")
_NOT_PERSON = re.compile(
    r"product|plan|sku|item|city|country|region|state|street|company|brand|category|title|"
    r"model|device|team|store|shop|file|table|host|server|event|page|campaign|tag|label|type")


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


@dataclass
class ColumnProfile:
    """One column of a stream's sample: its type, how empty it is, how varied."""

    name: str
    type: str
    null_rate: float  # share of sampled rows that are null
    nulls: int  # null rows in the sample
    distinct: int | None  # distinct non-null values in the sample (None: not countable)
    estimated: bool  # True when the sample is not the whole source

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "null_rate": self.null_rate,
                "nulls": self.nulls, "distinct": self.distinct, "estimated": self.estimated}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnProfile:
        return cls(**d)


@dataclass
class KeyProfile:
    """The declared primary key checked on the sample."""

    columns: list[str]
    missing: list[str]  # key columns the stream does not have
    distinct: int  # distinct key values (rows with a null key part excluded)
    duplicate_values: int  # key values that occur more than once
    duplicate_rows: int  # rows beyond the first of each key value
    null_rows: int  # rows with a null in any key column
    estimated: bool  # found in a sample: the whole source may hold more

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "missing": list(self.missing),
                "distinct": self.distinct, "duplicate_values": self.duplicate_values,
                "duplicate_rows": self.duplicate_rows, "null_rows": self.null_rows,
                "estimated": self.estimated}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KeyProfile:
        return cls(**d)


@dataclass
class Freshness:
    """The newest value of the cursor (else of a timestamp column) and its age."""

    column: str
    newest: datetime | int | float | str | None
    temporal: bool  # newest is a point in time (else a numeric/opaque cursor value)
    exact: bool  # True: the connector's max over the whole source; False: the sample's max
    age_seconds: float | None  # now - newest, for temporal values
    stale: bool

    @property
    def age(self) -> timedelta | None:
        return None if self.age_seconds is None else timedelta(seconds=self.age_seconds)

    def to_dict(self) -> dict[str, Any]:
        newest = self.newest.isoformat() if isinstance(self.newest, datetime) else self.newest
        return {"column": self.column, "newest": newest, "temporal": self.temporal,
                "exact": self.exact, "age_seconds": self.age_seconds, "stale": self.stale}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Freshness:
        d = dict(d)
        if d["temporal"] and isinstance(d["newest"], str):
            d["newest"] = datetime.fromisoformat(d["newest"])
        return cls(**d)


@dataclass
class PiiFinding:
    """A column that looks like personal data, why, and whether the source already tags it."""

    column: str
    kind: str  # email | phone | name | card | ip
    by: list[str]  # "name", "values" or both
    share: float | None  # share of sampled non-null values that look like ``kind``
    tagged: bool

    @property
    def reason(self) -> str:
        parts = []
        if "name" in self.by:
            parts.append(f"column name '{self.column}'")
        if "values" in self.by and self.share is not None:
            parts.append(f"{self.share:.0%} of sampled values")
        return " and ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "kind": self.kind, "by": list(self.by),
                "share": self.share, "tagged": self.tagged, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PiiFinding:
        return cls(**{k: v for k, v in d.items() if k != "reason"})


@dataclass
class StreamProfile:
    """One stream (SQL table, file set, endpoint) as its sample shows it."""

    name: str
    table: str  # the lake table it would land in
    location: str
    rows: int | None  # total rows (None: unknown)
    rows_estimated: bool
    sampled_rows: int
    complete: bool  # the sample is the whole source: every figure is exact
    parts: int | None
    bytes: int | None
    columns: list[ColumnProfile] = field(default_factory=list)
    key: KeyProfile | None = None
    freshness: Freshness | None = None
    pii: list[PiiFinding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def column(self, name: str) -> ColumnProfile:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "table": self.table, "location": self.location,
                "rows": self.rows, "rows_estimated": self.rows_estimated,
                "sampled_rows": self.sampled_rows, "complete": self.complete,
                "parts": self.parts, "bytes": self.bytes,
                "columns": [c.to_dict() for c in self.columns],
                "key": self.key.to_dict() if self.key else None,
                "freshness": self.freshness.to_dict() if self.freshness else None,
                "pii": [f.to_dict() for f in self.pii], "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamProfile:
        d = dict(d)
        d["columns"] = [ColumnProfile.from_dict(c) for c in d["columns"]]
        d["key"] = KeyProfile.from_dict(d["key"]) if d["key"] else None
        d["freshness"] = Freshness.from_dict(d["freshness"]) if d["freshness"] else None
        d["pii"] = [PiiFinding.from_dict(f) for f in d["pii"]]
        return cls(**d)


@dataclass
class SourceProfile:
    """A declared source: where it is, whether it answered, and its streams."""

    name: str
    type: str
    location: str  # secrets masked
    status: Literal["reachable", "unreachable", "failed", "not probed"]
    error: str | None  # why it is unreachable (the connector's message)
    hint: str | None
    note: str | None
    seconds: float
    streams: list[StreamProfile] = field(default_factory=list)

    @property
    def reachable(self) -> bool | None:
        """True or False once probed; None for sources the survey does not probe."""
        return None if self.status == "not probed" else self.status == "reachable"

    def stream(self, name: str) -> StreamProfile:
        for s in self.streams:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "location": self.location,
                "status": self.status, "reachable": self.reachable, "error": self.error,
                "hint": self.hint, "note": self.note, "seconds": self.seconds,
                "streams": [s.to_dict() for s in self.streams]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SourceProfile:
        d = {k: v for k, v in d.items() if k != "reachable"}
        d["streams"] = [StreamProfile.from_dict(s) for s in d["streams"]]
        return cls(**d)


@dataclass
class Gap:
    """Something that will block production ML, with a one-line fix."""

    severity: Severity
    kind: str  # unreachable, no_primary_key, duplicate_keys, null_keys, missing_key_columns,
    #            missing_cursor, no_timestamp, no_cursor, stale, high_nulls, untagged_pii, ...
    source: str
    stream: str | None
    message: str
    fix: str
    columns: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "kind": self.kind, "source": self.source,
                "stream": self.stream, "message": self.message, "fix": self.fix,
                "columns": list(self.columns)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Gap:
        return cls(**d)


@dataclass
class SurveyReport:
    """Everything ``tarmac survey`` found; ``to_dict()`` is what ``--json`` writes."""

    project: str
    generated_at: datetime
    sample_rows: int
    stale_after_seconds: float
    seconds: float
    sources: list[SourceProfile] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    @property
    def blocking(self) -> list[Gap]:
        """Gaps of severity ``error``."""
        return [g for g in self.gaps if g.severity == "error"]

    def source(self, name: str) -> SourceProfile:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    def headline(self) -> str:
        """'6 sources, 5 reachable, 3 blocking gaps'."""
        n = len(self.sources)
        reachable = sum(1 for s in self.sources if s.reachable)
        blocking = len(self.blocking)
        return (f"{n} source{'s' * (n != 1)}, {reachable} reachable, "
                f"{blocking} blocking gap{'s' * (blocking != 1)}")

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "generated_at": self.generated_at.isoformat(),
                "headline": self.headline(), "sample_rows": self.sample_rows,
                "stale_after_seconds": self.stale_after_seconds, "seconds": self.seconds,
                "sources": [s.to_dict() for s in self.sources],
                "gaps": [g.to_dict() for g in self.gaps]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SurveyReport:
        """Rebuild a report from ``to_dict()`` output (e.g. a saved ``survey.json``)."""
        return cls(project=d["project"], generated_at=datetime.fromisoformat(d["generated_at"]),
                   sample_rows=d["sample_rows"], stale_after_seconds=d["stale_after_seconds"],
                   seconds=d["seconds"],
                   sources=[SourceProfile.from_dict(s) for s in d["sources"]],
                   gaps=[Gap.from_dict(g) for g in d["gaps"]])


# ---------------------------------------------------------------------------------------------
# Surveying
# ---------------------------------------------------------------------------------------------


def survey(project: Project, names: list[str] | None = None, *,
           sample_rows: int = DEFAULT_SAMPLE_ROWS,
           stale_after: timedelta = DEFAULT_STALE_AFTER,
           null_limit: float = NULL_RATE_LIMIT,
           pii_threshold: float = PII_THRESHOLD,
           now: datetime | None = None,
           workers: int = 4) -> SurveyReport:
    """Survey the declared sources (all, or ``names``) without loading anything.

    Each source is sampled through its connector (``sample_rows`` rows per stream) and only the
    sample is profiled, so big sources stay fast; sources are probed in parallel (``workers``
    threads) because most of the time is spent waiting on databases, disks and APIs. A source
    that cannot be reached is reported with the connector's reason instead of failing the
    survey. Unknown ``names`` raise ``UsageError`` listing the declared sources.
    """
    if sample_rows < 1:
        raise UsageError(f"sample_rows must be at least 1 (got {sample_rows})")
    started = time.perf_counter()
    specs = project.sources
    if names:
        unknown = [n for n in names if n not in specs]
        if unknown:
            declared = ", ".join(specs) or "none"
            raise UsageError(f"unknown source{'s' * (len(unknown) > 1)}: {', '.join(unknown)}; "
                             f"declared sources: {declared}",
                             hint="declare sources under `sources:` in tarmac.yaml")
        chosen = {n: specs[n] for n in dict.fromkeys(names)}
    else:
        chosen = specs
    when = (now or datetime.now(UTC)).astimezone(UTC)
    opts = _Options(sample_rows, stale_after, pii_threshold, when)

    def one(item: tuple[str, SourceSpec]) -> SourceProfile:
        return _survey_source(item[0], item[1], project, opts)

    items = list(chosen.items())
    if workers > 1 and len(items) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(items)),
                                thread_name_prefix="tarmac-survey") as pool:
            sources = list(pool.map(one, items))
    else:
        sources = [one(item) for item in items]
    gaps: list[Gap] = []
    for src in sources:
        gaps.extend(find_gaps(src, chosen[src.name], stale_after=stale_after,
                              null_limit=null_limit))
    gaps.sort(key=lambda g: (SEVERITIES.index(g.severity), g.source, g.stream or "", g.kind))
    return SurveyReport(project=project.name, generated_at=when, sample_rows=sample_rows,
                        stale_after_seconds=stale_after.total_seconds(),
                        seconds=round(time.perf_counter() - started, 3), sources=sources,
                        gaps=gaps)


@dataclass(frozen=True)
class _Options:
    sample_rows: int
    stale_after: timedelta
    pii_threshold: float
    now: datetime


def _survey_source(name: str, spec: SourceSpec, project: Project, opts: _Options) -> SourceProfile:
    started = time.perf_counter()
    out = SourceProfile(name=name, type=spec.type, location=spec.location(), status="reachable",
                        error=None, hint=None, note=None, seconds=0.0)
    if isinstance(spec, StreamSource):
        out.status, out.note = "not probed", STREAM_NOTE
        return out
    from tarmac.ingest.connectors import open_connector

    connector: Connector[Any] | None = None
    if isinstance(spec, HttpSource):  # a probe: do not sit out a minute of polite retries
        spec = spec.model_copy(update={"retries": min(spec.retries, SURVEY_HTTP_RETRIES),
                                       "retry_budget": min(spec.retry_budget,
                                                           SURVEY_HTTP_BUDGET)})
    try:
        connector = open_connector(name, spec, project.root)
        if connector is None:  # a kind the survey does not probe
            out.status, out.note = "not probed", STREAM_NOTE
            return out
        for stream in connector.streams():
            sample = connector.sample(stream, opts.sample_rows)
            out.streams.append(profile_sample(sample, spec, opts.now,
                                              stale_after=opts.stale_after,
                                              pii_threshold=opts.pii_threshold))
    except SourceError as exc:
        out.status, out.error, out.hint = "unreachable", exc.message, exc.hint
    except Exception as exc:  # a connector bug must not hide the other sources
        if os.environ.get("TARMAC_DEBUG"):
            raise
        out.status, out.error = "failed", f"{type(exc).__name__}: {exc}"
        out.hint = "this looks like a bug in the connector; rerun with TARMAC_DEBUG=1"
    finally:
        if connector is not None:
            with contextlib.suppress(Exception):  # closing must not mask the findings
                connector.close()
        out.seconds = round(time.perf_counter() - started, 3)
    return out


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
    columns = [_profile_column(table, i, estimated=not complete)
               for i in range(table.num_columns)]
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


def _profile_column(table: pa.Table, i: int, *, estimated: bool) -> ColumnProfile:
    col = table.column(i)
    n = table.num_rows
    nulls = col.null_count
    distinct: int | None
    try:
        distinct = pc.count_distinct(col, mode="only_valid").as_py() if n else 0
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        distinct = None  # nested values (JSON objects, lists) have no distinct kernel
    return ColumnProfile(name=table.column_names[i], type=str(col.type),
                         null_rate=round(nulls / n, 6) if n else 0.0, nulls=nulls,
                         distinct=distinct, estimated=estimated)


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


# ---------------------------------------------------------------------------------------------
# Freshness
# ---------------------------------------------------------------------------------------------

_TIME_NAMES = re.compile(r"(^|_)(updated|modified|changed|loaded|ingested|synced)(_|$)|"
                         r"(^|_)(ts|at|time|timestamp|date|datetime|day|created|event)(_|$)|"
                         r"_at$|time|date")
_PREFERRED = re.compile(r"updated|modified|changed|synced|ingested|loaded")


def _as_string_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    return arr


def _is_text(t: pa.DataType) -> bool:
    return (pa.types.is_string(t) or pa.types.is_large_string(t)
            or str(t) == "string_view")


def _temporal_columns(table: pa.Table) -> dict[str, pa.Array]:
    """Columns holding points in time: timestamp/date typed, or text that parses as ISO."""
    out: dict[str, pa.Array] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        t = col.type
        if pa.types.is_timestamp(t):
            arr = col.combine_chunks()
            out[name] = arr if t.tz else pc.assume_timezone(arr, "UTC")
        elif pa.types.is_date(t):
            out[name] = pc.cast(col.combine_chunks(), pa.timestamp("us")).cast(
                pa.timestamp("us", tz="UTC"))
        elif _is_text(t) and col.null_count < len(col):
            head = _non_null(col, VALUE_CHECK_LIMIT)
            if _share(pc.is_valid(parse_times(head))) >= 0.9:
                out[name] = parse_times(col)
    return out


def freshness(sample: Sample, cursor: str | None, now: datetime | None = None, *,
              stale_after: timedelta = DEFAULT_STALE_AFTER,
              complete: bool = False) -> Freshness | None:
    """The newest value of ``cursor`` (else of the best timestamp/date column) and its age.

    The connector's ``Sample.newest`` is exact over the whole source and wins over the
    sample's maximum (which is exact too when the sample is ``complete``). Among several
    timestamp columns, an ``updated_at``-like one is preferred, then the latest.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    table = sample.rows
    temporal: dict[str, pa.Array] | None = None
    if cursor and (cursor in sample.newest or cursor in table.column_names):
        column = cursor
    else:
        temporal = _temporal_columns(table)
        candidates = [c for c in table.column_names if c in temporal]
        candidates += [c for c in sample.newest if c not in temporal
                       and _to_datetime(sample.newest[c]) is not None]
        if not candidates:
            return None

        def rank(c: str) -> tuple[int, bool, float]:
            assert temporal is not None
            arr = temporal.get(c)
            value = _to_datetime(sample.newest.get(c)) or _max_time(arr)
            ts = value.timestamp() if value else -math.inf
            if value and value > now + timedelta(days=1):
                ts = -ts  # a future date (expiry, due date) says little about freshness
            tier = (0 if _PREFERRED.search(c.lower()) else 1 if _TIME_NAMES.search(c.lower())
                    else 2)
            gaps = arr is not None and arr.null_count > 0  # closed_at: not every row has one
            return (tier, gaps, -ts)

        column = min(candidates, key=rank)
    from_connector = column in sample.newest
    exact = from_connector or complete
    newest: datetime | int | float | str | None
    if from_connector:
        raw = sample.newest[column]
        when = _to_datetime(raw)
    else:  # text timestamps compare as times, not as strings (offsets, mixed precision)
        raw = _column_max(table, column)
        if temporal is None:
            temporal = _temporal_columns(table.select([column]))
        when = _max_time(temporal.get(column))
    if when is not None:
        newest = when.astimezone(UTC)
        age = (now - newest).total_seconds()
        return Freshness(column, newest, True, exact, round(age, 3),
                         age > stale_after.total_seconds())
    newest = raw if isinstance(raw, int | float | str) or raw is None else str(raw)
    return Freshness(column, newest, False, exact, None, False)


def _max_time(arr: pa.Array | None) -> datetime | None:
    if arr is None or arr.null_count == len(arr):
        return None
    value = pc.max(arr).as_py()
    return _to_datetime(value)


def _column_max(table: pa.Table, column: str) -> Any:
    col = table.column(column)
    if col.null_count == len(col):
        return None
    try:
        return pc.max(col).as_py()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return None


# ---------------------------------------------------------------------------------------------
# Personal data
# ---------------------------------------------------------------------------------------------

#: column names that say what a column holds (matched on the snake_cased name)
NAME_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"e_?mail"),
    "phone": re.compile(r"phone|(^|_)(mobile|msisdn|tel|telephone|cell|fax)(_|$)"),
    "name": re.compile(r"(^|_)(first|last|full|given|family|middle|maiden|sur|fore|legal|"
                       r"contact|customer|person|cardholder|holder|display)_?name$|"
                       r"^(surname|forename|fullname|firstname|lastname)$"),
    "card": re.compile(r"credit_?card|card_?(number|num|no|pan)$|(^|_)(cc|pan)(_?(number|num|no))?$"
                       r"|^ccn$"),
    "ip": re.compile(r"(^|_)ip(_?(addr|address|v4|v6))?(_|$)|ip_?address|ipv[46]|"
                     r"(remote|client|source|src)_addr"),
}
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(\.{_OCTET}){{3}}"
_H = "[0-9A-Fa-f]{1,4}"
_IPV6 = ("(" + "|".join([
    rf"({_H}:){{7}}{_H}",
    rf"({_H}:){{1,7}}:",
    rf"({_H}:){{1,6}}:{_H}",
    rf"({_H}:){{1,5}}(:{_H}){{1,2}}",
    rf"({_H}:){{1,4}}(:{_H}){{1,3}}",
    rf"({_H}:){{1,3}}(:{_H}){{1,4}}",
    rf"({_H}:){{1,2}}(:{_H}){{1,5}}",
    rf"{_H}:(:{_H}){{1,6}}",
    rf":((:{_H}){{1,7}}|:)",
    rf"fe80:(:{_H}){{0,4}}%[0-9A-Za-z]+",
    rf"::([fF]{{4}}(:0{{1,4}})?:)?{_IPV4}",
    rf"({_H}:){{1,4}}:{_IPV4}",
]) + ")")
_WORD = r"\p{Lu}[\p{L}'’-]*\p{Ll}"
#: what the values of each kind look like (RE2 syntax, matched on trimmed text)
VALUE_PATTERNS: dict[str, str] = {
    "email": r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$",
    "phone": (r"^((\+|00)[1-9][0-9 ().-]{6,18}[0-9]|"
              r"\(?[0-9]{2,4}\)?[ .-]?[0-9]{2,4}[ .-][0-9]{2,5}([ .-][0-9]{2,5})?)$"),
    "name": (rf"^({_WORD}( ({_WORD}|\p{{Lu}}\.|van|von|de|da|del|der|di|du|le|la|bin|al))"
             rf"{{0,3}} {_WORD}|{_WORD}, {_WORD})$"),
    "card": r"^[0-9]([ -]?[0-9]){12,18}$",
    "ip": rf"^({_IPV4}|{_IPV6})$",
}
_NOT_PHONE = (rf"^([0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}|[0-9]{{1,2}}[/.-][0-9]{{1,2}}[/.-][0-9]{{2,4}}"
              rf"|{_IPV4})$")  # dates and IPv4 addresses have phone-like shapes


def snake(name: str) -> str:
    """``customerEmail`` / ``Customer Email`` -> ``customer_email`` (for name matching)."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")


def kinds_by_name(column: str) -> list[str]:
    """The personal-data kinds a column's name announces (``email_address`` -> ``[email]``)."""
    s = snake(column)
    return [kind for kind, pattern in NAME_PATTERNS.items() if pattern.search(s)]


def luhn_valid(values: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
    """Whether each value is a 13-19 digit number (spaces and dashes allowed) passing the Luhn
    check that payment card numbers carry. Vectorised: digits are laid out in a fixed-width
    matrix (left-padded with zeros, which the checksum ignores). Nulls stay null."""
    arr = _as_string_array(values)
    digits = pc.replace_substring_regex(arr, r"[ -]", "")
    shaped = pc.and_(pc.match_substring_regex(digits, r"^[0-9]{13,19}$"),
                     pc.invert(pc.match_substring_regex(digits, r"^0+$")))
    ok = np.zeros(len(arr), dtype=bool)
    idx = np.flatnonzero(pc.fill_null(shaped, False).to_numpy(zero_copy_only=False))
    if idx.size:
        padded = pc.utf8_lpad(pc.take(digits, pa.array(idx)), width=19, padding="0")
        padded = padded.combine_chunks() if isinstance(padded, pa.ChunkedArray) else padded
        offsets = np.frombuffer(padded.buffers()[1], dtype=np.int32)[padded.offset:]
        start = int(offsets[0])
        data = np.frombuffer(padded.buffers()[2], dtype=np.uint8)
        mat = (data[start:start + 19 * idx.size].reshape(idx.size, 19) - 48).astype(np.int64)
        double = (18 - np.arange(19)) % 2 == 1  # every second digit from the right
        mat[:, double] *= 2
        mat[mat > 9] -= 9
        ok[idx] = mat.sum(axis=1) % 10 == 0
    return pc.if_else(pc.is_null(arr), pa.scalar(None, pa.bool_()), pa.array(ok))


def looks_like(kind: str, values: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
    """Per value: does it look like ``kind`` (email, phone, name, card, ip)? Nulls stay null."""
    if kind not in VALUE_PATTERNS:
        raise ValueError(f"unknown kind {kind!r}; expected one of: {', '.join(PII_KINDS)}")
    s = pc.utf8_trim_whitespace(_as_string_array(values))
    hit = pc.match_substring_regex(s, VALUE_PATTERNS[kind])
    if kind == "phone":
        hit = pc.and_(hit, pc.invert(pc.match_substring_regex(s, _NOT_PHONE)))
    elif kind == "card":
        hit = pc.and_(hit, luhn_valid(s))
    return hit


def _non_null(col: pa.Array | pa.ChunkedArray, limit: int) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if arr.null_count:
        arr = pc.drop_null(arr)
    return arr.slice(0, limit)


def _share(mask: pa.Array | pa.ChunkedArray) -> float:
    n = len(mask) - mask.null_count
    return (pc.sum(mask).as_py() or 0) / n if n else 0.0


def value_shares(values: pa.Array | pa.ChunkedArray,
                 kinds: Iterable[str] = PII_KINDS) -> dict[str, float]:
    """Share of the non-null values (at most ``VALUE_CHECK_LIMIT``) that look like each kind."""
    head = _non_null(values, VALUE_CHECK_LIMIT)
    if not len(head):
        return {}
    return {kind: round(_share(looks_like(kind, head)), 4) for kind in kinds}


def detect_pii(table: pa.Table, declared: dict[str, ColumnSpec] | None = None, *,
               stream: str = "", threshold: float = PII_THRESHOLD) -> list[PiiFinding]:
    """Columns of ``table`` that look like personal data, by name and by sampled values.

    A name such as ``email`` or ``phone_number`` is enough; a value kind counts when at least
    ``threshold`` of the non-null sampled values match it (person names need more, 80%, since
    product and place names look alike). A bare ``name`` column counts as a person's name when
    the stream is about people (``customers``, ``users``...). ``declared`` columns tagged
    ``pii`` or with the kind are reported as tagged.
    """
    declared = declared or {}
    people = bool(_PERSONAL_TABLES.search(stream.lower()))
    out: list[PiiFinding] = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        s = snake(name)
        by_name = set(kinds_by_name(name))
        if s == "name" and people:
            by_name.add("name")
        shares: dict[str, float] = {}
        t = col.type
        if _is_text(t):
            kinds = [k for k in PII_KINDS if k != "name" or not _NOT_PERSON.search(s)]
            shares = value_shares(col, kinds)
        elif pa.types.is_integer(t):  # card numbers stored as numbers
            shares = value_shares(col, ["card"])
        by_value = {k for k, share in shares.items()
                    if share >= (max(threshold, NAME_THRESHOLD) if k == "name" else threshold)}
        if "card" in by_value and "phone" in by_value:  # a 16-digit card is not a phone
            by_value.discard("phone")
        for kind in PII_KINDS:
            if kind not in by_name and kind not in by_value:
                continue
            by = [b for b, hit in (("name", kind in by_name), ("values", kind in by_value))
                  if hit]
            out.append(PiiFinding(name, kind, by, shares.get(kind),
                                  _tagged(declared, name, kind)))
    return out


def _tagged(declared: dict[str, ColumnSpec], column: str, kind: str) -> bool:
    spec = declared.get(column)
    if spec is None:
        spec = next((c for n, c in declared.items() if n.lower() == column.lower()), None)
    if spec is None:
        return False
    tags = {t.lower() for t in spec.tags}
    return bool(tags & {"pii", "personal", "sensitive", kind, f"pii:{kind}", f"pii.{kind}"})


# ---------------------------------------------------------------------------------------------
# Gaps
# ---------------------------------------------------------------------------------------------

_ID_NAMES = re.compile(r"(^|_)(id|uuid|guid|key|sku|code|number|no)$|id$")


def find_gaps(source: SourceProfile, spec: SourceSpec, *,
              stale_after: timedelta = DEFAULT_STALE_AFTER,
              null_limit: float = NULL_RATE_LIMIT) -> list[Gap]:
    """What in one surveyed source will block production ML, each with a one-line fix."""
    name = source.name
    where = f"sources.{name}"
    gaps: list[Gap] = []

    def gap(severity: Severity, kind: str, stream: str | None, message: str, fix: str,
            columns: Sequence[str] = ()) -> None:
        gaps.append(Gap(severity, kind, name, stream, message, fix, list(columns)))

    if source.status in ("unreachable", "failed"):
        gap("error", "unreachable", None, source.error or "cannot be read",
            source.hint or f"check {where} in tarmac.yaml (url or path, credentials, table "
                           f"names), then rerun `tarmac survey {name}`")
        return gaps
    if source.status == "not probed":
        return gaps
    if not source.streams:
        gap("warning", "no_streams", None, "no tables, files or records found",
            f"check {where} in tarmac.yaml points at the data")
    for st in source.streams:
        s = st.name
        cols = [c.name for c in st.columns]
        if st.sampled_rows == 0:
            gap("info", "empty", s, "no rows to profile", "check the source holds data")
            continue
        # keys
        if not spec.primary_key:
            unique = unique_looking(st)
            fix = (f"declare primary_key: {unique} under {where} (unique in the sample)"
                   if unique else f"add a unique id at the source, then declare primary_key "
                                  f"under {where}")
            gap("warning", "no_primary_key", s, "no primary key declared: rows cannot be "
                "merged, deduplicated or joined reliably", fix, [unique] if unique else [])
        elif st.key is not None:
            k = st.key
            key = ", ".join(k.columns)
            if k.missing:
                gap("error", "missing_key_columns", s,
                    f"primary key column(s) {', '.join(k.missing)} not in the data",
                    f"fix primary_key under {where}; columns are: {_few(cols)}", k.missing)
            else:
                if k.duplicate_values:
                    approx = "at least " if k.estimated else ""
                    found = (f"{approx}{k.duplicate_values:,} {key} value(s) occur more than "
                             f"once ({k.duplicate_rows:,} extra row(s)"
                             f"{' in the sample' if k.estimated else ''})")
                    if spec.cursor and spec.cursor in cols:
                        # versions of a record: every load keeps the newest by the cursor
                        gap("info", "duplicate_keys", s, f"{found}: versions of a record",
                            f"none needed: loads keep the newest by {spec.cursor}", k.columns)
                    else:
                        # the loader keeps one row per key, but which one is arbitrary
                        gap("warning", "duplicate_keys", s,
                            f"{found}; loads keep one row per key (the last read)",
                            "deduplicate at the source, declare a cursor to keep the newest, "
                            "or key on more columns", k.columns)
                if k.null_rows:
                    gap("error", "null_keys", s,
                        f"{k.null_rows:,} row(s) have an empty {key}"
                        f"{' in the sample' if k.estimated else ''}",
                        "fill the key at the source or filter those rows out", k.columns)
        # time
        if spec.cursor and spec.cursor not in cols:
            gap("error", "missing_cursor", s, f"cursor column {spec.cursor} not in the data",
                f"fix cursor under {where}; columns are: {_few(cols)}", [spec.cursor])
        f = st.freshness
        if f is None:
            gap("warning", "no_timestamp", s, "no timestamp or cursor column: incremental "
                "loads and point-in-time features are impossible",
                "add an updated_at (or event time) column at the source; until then load "
                "with mode: full_refresh")
        else:
            if not spec.cursor and f.temporal:
                gap("info", "no_cursor", s, f"no cursor declared; {f.column} looks like one",
                    f"declare cursor: {f.column} under {where} for incremental loads",
                    [f.column])
            elif spec.cursor and not f.temporal:
                gap("info", "no_event_time", s, f"cursor {f.column} is not a point in time: "
                    "point-in-time features need an event timestamp",
                    "add an event or updated_at timestamp column at the source", [f.column])
            if f.stale and f.age_seconds is not None and isinstance(f.newest, datetime):
                gap("warning", "stale", s,
                    f"newest {f.column} is {f.newest:%Y-%m-%d %H:%M} UTC, "
                    f"{format_age(f.age_seconds)} old (limit {format_age(stale_after)})"
                    f"{'' if f.exact else ' in the sample'}",
                    "check the export or sync job that feeds this source (or raise "
                    "--stale-after if it updates slowly)", [f.column])
        # emptiness
        key_cols = set(spec.primary_key)
        empty = [c for c in st.columns if c.null_rate > null_limit and c.name not in key_cols]
        if empty:
            listed = ", ".join(f"{c.name} ({c.null_rate:.0%})" for c in empty[:8])
            more = f" and {len(empty) - 8} more" if len(empty) > 8 else ""
            gap("warning", "high_nulls", s,
                f"{len(empty)} column(s) more than {null_limit:.0%} empty: {listed}{more}",
                "fill them at the source, or plan imputation (or drop them) before training",
                [c.name for c in empty])
        # personal data
        untagged = [p for p in st.pii if not p.tagged]
        if untagged:
            names = list(dict.fromkeys(p.column for p in untagged))
            listed = ", ".join(f"{p.column} ({p.kind}, by {' and '.join(p.by)})"
                               for p in untagged)
            first = untagged[0]
            gap("warning", "untagged_pii", s, f"personal data not tagged: {listed}",
                f"tag it under {where}.columns, e.g. {first.column}: "
                f"{{tags: [pii, {first.kind}]}}", names)
    return gaps


def unique_looking(stream: StreamProfile) -> str | None:
    """A column unique and never null in the sample, id-like names first (for a key hint)."""
    n = stream.sampled_rows
    if n < 2:
        return None
    found = [c for c in stream.columns
             if c.nulls == 0 and c.distinct == n
             and not c.type.startswith(("double", "float", "bool", "halffloat", "timestamp"))]
    if not found:
        return None
    found.sort(key=lambda c: (0 if _ID_NAMES.search(snake(c.name)) else 1))
    return found[0].name


def _few(names: Sequence[str], limit: int = 10) -> str:
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def format_age(age: float | timedelta) -> str:
    """Seconds (or a timedelta) for people: '45s', '12m', '5h', '3d', '2y'."""
    seconds = age.total_seconds() if isinstance(age, timedelta) else float(age)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for unit, span in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span * (2 if unit == "y" else 1):
            return f"{sign}{int(seconds // span)}{unit}"
    return f"{sign}{int(seconds)}s"


def parse_duration(text: str) -> timedelta:
    """'7d', '12h', '30m', '2w', '90s' (a bare number is days) -> timedelta."""
    try:
        return humanize.parse_duration(text, default_unit="d")
    except ValueError:
        raise UsageError(f"expected a duration such as 7d, 12h, 30m or 2w (got {text!r})") \
            from None


# ---------------------------------------------------------------------------------------------
# Terminal output
# ---------------------------------------------------------------------------------------------


def rows_text(stream: StreamProfile) -> str:
    """Total rows: exact, '~' estimated, or '>=N' when the source does not say (an API)."""
    if stream.rows is None:
        return f">={stream.sampled_rows:,}" if stream.sampled_rows else "?"
    return approx(stream.rows, stream.rows_estimated)


def approx(value: int | None, estimated: bool) -> str:
    """A count for people, with '~' when it is an estimate and '?' when unknown."""
    if value is None:
        return "?"
    return f"{'~' if estimated else ''}{value:,}"




def freshness_text(f: Freshness | None) -> str:
    """'updated_at 2025-06-30 (12d old)' or the cursor's newest value."""
    if f is None:
        return "-"
    mark = "" if f.exact else "~"
    if isinstance(f.newest, datetime) and f.age_seconds is not None:
        return f"{f.column} {f.newest:%Y-%m-%d} ({mark}{format_age(f.age_seconds)} old)"
    return f"{f.column} max {mark}{f.newest}"


def pii_text(findings: Sequence[PiiFinding]) -> str:
    """'email, phone (untagged)'."""
    if not findings:
        return "-"
    cols: dict[str, bool] = {}
    for p in findings:
        cols[p.column] = cols.get(p.column, True) and p.tagged
    return ", ".join(f"{c}{'' if tagged else ' (untagged)'}" for c, tagged in cols.items())


def render(report: SurveyReport, console: Console) -> None:
    """The terminal summary: one table per source, then the gaps sorted by severity."""
    from rich.markup import escape
    from rich.table import Table

    if not report.sources:
        console.print("[dim]no sources declared: add them under `sources:` in tarmac.yaml[/dim]")
        return
    colours = {"reachable": "green", "unreachable": "red", "failed": "red",
               "not probed": "yellow"}
    for src in report.sources:
        state = f"[{colours[src.status]}]{src.status}[/]"
        title = (f"[bold]{escape(src.name)}[/bold] ({src.type}) {escape(src.location)} - "
                 f"{state}" + (f" [dim]{src.seconds:.1f}s[/dim]" if src.reachable else ""))
        if src.status != "reachable" or not src.streams:
            console.print(title)
            why = src.error or src.note or "no streams found"
            console.print(f"  {escape(why)}", style="red" if src.error else "dim",
                          soft_wrap=True)
            console.print()
            continue
        table = Table(title=title, title_justify="left", header_style="bold")
        for header, justify in (("stream", "left"), ("rows", "right"), ("parts", "right"),
                                ("size", "right"), ("columns", "right"), ("key dups", "right"),
                                ("freshness", "left"), ("PII columns", "left")):
            table.add_column(header, justify=justify, overflow="fold")  # type: ignore[arg-type]
        for st in src.streams:
            dups = ("-" if st.key is None else "missing key" if st.key.missing
                    else approx(st.key.duplicate_values, st.key.estimated))
            table.add_row(escape(st.name), rows_text(st),
                          approx(st.parts, False) if st.parts is not None else "-",
                          size(st.bytes), str(len(st.columns)), dups,
                          escape(freshness_text(st.freshness)), escape(pii_text(st.pii)))
        console.print(table)
        console.print()
    if report.gaps:
        table = Table(title="[bold]gaps[/bold]", title_justify="left", header_style="bold")
        for header in ("severity", "source", "stream", "problem", "fix"):
            table.add_column(header, overflow="fold")
        styles = {"error": "bold red", "warning": "yellow", "info": "dim"}
        for g in report.gaps:
            table.add_row(f"[{styles[g.severity]}]{g.severity}[/]", escape(g.source),
                          escape(g.stream or "-"), escape(g.message), escape(g.fix))
        console.print(table)
    else:
        console.print("[green]no gaps found[/green]")
    console.print(f"[bold]{report.headline()}[/bold] [dim](sampled up to "
                  f"{report.sample_rows:,} rows per stream; '~' marks estimates; "
                  f"{report.seconds:.1f}s)[/dim]")
