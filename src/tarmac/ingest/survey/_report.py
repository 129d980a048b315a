"""The typed survey report: sources, their streams, column and key profiles, freshness, gaps.

``SurveyReport.to_dict()`` is what ``tarmac survey --json`` writes; ``from_dict`` reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from tarmac.profile.pii import PiiFinding

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")


@dataclass
class ColumnProfile:
    """One column of a stream's sample: its type, how empty it is, how varied."""

    name: str
    type: str
    null_rate: float  # share of sampled rows that are null
    nulls: int  # null rows in the sample
    distinct: int | None  # distinct non-null values in the sample (None: not countable)
    estimated: bool  # True when the sample is not the whole source
    #: a few sampled values, as text (``[redacted]`` for personal data the reader may not see)
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "null_rate": self.null_rate,
                "nulls": self.nulls, "distinct": self.distinct, "estimated": self.estimated,
                "examples": list(self.examples)}

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
