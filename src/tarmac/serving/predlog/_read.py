"""Reading the prediction log: rows of the ``predictions`` table, and totals that reconcile the
table with what every process still holds in its segments."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from tarmac.errors import UsageError
from tarmac.humanize import point_in_time
from tarmac.serving.predlog import _segment as seg
from tarmac.serving.predlog._commit import TABLE
from tarmac.serving.predlog._record import SCHEMA, scalars

if TYPE_CHECKING:
    from tarmac.project import Project


def parse_since(since: datetime | timedelta | str | None, *,
                now: datetime | None = None) -> datetime | None:
    """``since`` as an aware UTC time: a datetime (naive = UTC), a timedelta or a duration such
    as ``"1h"`` / ``"30m"`` back from now, or an ISO-8601 time."""
    if since is None or isinstance(since, datetime):
        return since if since is None or since.tzinfo else since.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    if isinstance(since, timedelta):
        return now - since
    if isinstance(since, str):
        try:
            return point_in_time(since, now=now)
        except ValueError:
            raise UsageError(f"since {since!r}: expected a duration such as 30m, 1h, 2d or an "
                             "ISO time such as 2026-01-31T12:00:00Z") from None
    raise UsageError(f"since must be a datetime, a timedelta or text such as '1h' "
                     f"(got {type(since).__name__})")


def read_predictions(project: Project, endpoint: str | None = None, *,
                     since: datetime | timedelta | str | None = None, limit: int | None = None,
                     table: str = TABLE) -> pa.Table:
    """Logged predictions from the ``predictions`` table, newest first: of one endpoint (all by
    default), from ``since`` on (a time, or a duration back from now such as ``"1h"``), at
    most ``limit`` rows. Predictions still in a segment (not flushed yet) are not included.

    Example::

        rows = read_predictions(p, "churn", since="1h", limit=100)
        rows.column("score").to_pylist()[:3]
    """
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise UsageError(f"limit must be a whole number of rows, 0 or more (got {limit!r})")
    start = parse_since(since)
    if not project.lake.exists(table):
        return SCHEMA.empty_table()
    expr = None
    if endpoint is not None:
        expr = pc.field("endpoint") == endpoint
    if start is not None:
        bound = pc.scalar(pa.scalar(start, type=pa.timestamp("us", tz="UTC")))
        cond = pc.field("time") >= bound
        expr = cond if expr is None else expr & cond
    rows = project.lake.scan(table).to_table(filter=expr)
    rows = rows.sort_by([("time", "descending"), ("id", "descending")])
    return rows if limit is None else rows.slice(0, limit)


@dataclass(frozen=True)
class EndpointTotals:
    """One endpoint's predictions: in the table, and still in segments."""

    logged: int = 0
    pending: int = 0


@dataclass(frozen=True)
class LogTotals:
    """The whole project's prediction log: rows in the table (``logged``), records still in
    some process's segments (``pending``), by endpoint, and how many segment files and
    process families hold them. ``logged + pending`` is every prediction ever answered."""

    logged: int
    pending: int
    segments: int
    families: int
    endpoints: dict[str, EndpointTotals] = field(default_factory=dict)


def log_totals(project: Project, *, directory: Path | None = None,
               table: str = TABLE) -> LogTotals:
    """Reconcile the log across processes: the table's rows plus every segment's records the
    table does not hold yet (read without locking; a live writer's newest frame may be missed
    while it is being written).

    Example::

        t = log_totals(p)
        t.logged + t.pending                  # answered, across every server on the project
    """
    directory = directory or project.root / ".tarmac" / "predictions"
    lake = project.lake
    logged: Counter[str] = Counter()
    markers = None
    if lake.exists(table):
        # one table version for both the row counts and the segment markers, so a flush
        # landing meanwhile is counted once (as pending), never twice or not at all
        markers = lake.table(table)
        version = markers.version()
        counts = pc.value_counts(lake.scan(table, version=version).to_table(
            columns=["endpoint"]).column("endpoint")).to_pylist()
        logged.update({c["values"]: c["counts"] for c in counts})
    pending: Counter[str] = Counter()
    found = seg.families(directory)
    files = 0
    for paths in found.values():
        for path in paths:
            try:
                frames = seg.read_frames(path)
            except FileNotFoundError:  # flushed and removed meanwhile
                continue
            files += 1
            app = seg.app_id(seg.segment_id(path))
            done = (markers.transaction_version(app) or 0) if markers is not None else 0
            for payload in frames.payloads[done:]:
                pending[str(scalars(payload)[3])] += 1
    names = sorted(set(logged) | set(pending))
    return LogTotals(
        logged=sum(logged.values()), pending=sum(pending.values()), segments=files,
        families=sum(1 for paths in found.values() if paths),
        endpoints={n: EndpointTotals(logged[n], pending[n]) for n in names})
