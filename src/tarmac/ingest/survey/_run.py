"""Running a survey: probing each declared source through its connector, in parallel."""

from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tarmac.errors import SourceError, UsageError
from tarmac.ingest.base import Connector
from tarmac.ingest.spec import HttpSource, SourceSpec, StreamSource
from tarmac.ingest.survey._gaps import (
    DEFAULT_STALE_AFTER,
    NULL_RATE_LIMIT,
    find_gaps,
)
from tarmac.ingest.survey._report import SEVERITIES, Gap, SourceProfile, SurveyReport
from tarmac.ingest.survey._stream import profile_sample
from tarmac.profile.pii import PII_THRESHOLD

if TYPE_CHECKING:
    from tarmac.project import Project

DEFAULT_SAMPLE_ROWS = 100_000
STREAM_NOTE = "declared; consumed by the streams issue"
SURVEY_HTTP_RETRIES = 2  # an API that fails this often while surveyed is reported unreachable
SURVEY_HTTP_BUDGET = 5.0  # seconds of retry waiting per HTTP source


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
    _redact_personal(project, sources, chosen)
    gaps: list[Gap] = []
    for src in sources:
        gaps.extend(find_gaps(src, chosen[src.name], stale_after=stale_after,
                              null_limit=null_limit))
    gaps.sort(key=lambda g: (SEVERITIES.index(g.severity), g.source, g.stream or "", g.kind))
    return SurveyReport(project=project.name, generated_at=when, sample_rows=sample_rows,
                        stale_after_seconds=stale_after.total_seconds(),
                        seconds=round(time.perf_counter() - started, 3), sources=sources,
                        gaps=gaps)


REDACTED = "[redacted]"


def _redact_personal(project: Project, sources: list[SourceProfile],
                     specs: dict[str, SourceSpec]) -> None:
    """Where access is enforced, a reader without ``read:pii`` on the lake table a stream lands
    in sees ``[redacted]`` for the sampled values of its personal columns (detected by the
    survey or tagged personal on the source), like the lake masks them: in the report, its JSON
    and its HTML alike."""
    from tarmac.lake.masking import is_personal

    guard = project.ledger.guard
    if not guard.enforced:
        return
    for src in sources:
        spec = specs[src.name]
        tagged = {name for name, col in (getattr(spec, "columns", None) or {}).items()
                  if is_personal(list(getattr(col, "tags", ()) or ()))}
        for st in src.streams:
            if guard.allows("read:pii", f"table:{st.table}"):
                continue
            personal = tagged | {f.column for f in st.pii}
            hidden = False
            for c in st.columns:
                if c.name in personal and c.examples:
                    c.examples = [REDACTED] * len(c.examples)
                    hidden = True
            f = st.freshness
            if f is not None and f.column in personal and not f.temporal:
                f.newest, hidden = REDACTED, True
            if hidden:
                st.notes.append("sampled values of personal columns are redacted: reading them "
                                "needs read:pii on table " + st.table)


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
