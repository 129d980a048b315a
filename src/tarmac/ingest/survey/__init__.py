"""``tarmac survey``: map where a project's data lives, and what blocks it, before loading any.

For every declared source the survey asks its connector for a *sample* of each stream (the
connector counts rows, files and bytes cheaply and may give the exact newest cursor value) and
profiles only that sample: column types, null rates, distinct counts, duplicate primary keys,
freshness, personal data (by column name and by sampled values) and a few example values per
column (``[redacted]`` for personal columns where access is enforced and the reader lacks
``read:pii`` on the stream's lake table). Figures computed on a
sample that is not the whole source are marked estimated. Nothing is written to the lake or the
catalog.

From the profiles it derives the *gaps* that will block production ML (unreachable sources,
missing or duplicated keys, no timestamp for incremental loads or point-in-time features, stale
data, empty columns, untagged personal data), each with a severity and a one-line fix.

The package keeps one job per module: ``_run`` probes the sources (orchestration), ``_stream``
profiles one stream's sample (column statistics through ``tarmac.profile``), ``_freshness``
finds the newest record, ``_gaps`` holds the gap rules, ``_report`` the typed report and
``_render`` the terminal text; personal-data detection is ``tarmac.profile.pii``. ``survey()``
returns data; the CLI renders it.

Example::

    from tarmac.ingest.survey import survey
    report = survey(tarmac.open("."))
    report.headline()        # '6 sources, 5 reachable, 3 blocking gaps'
"""

from __future__ import annotations

from tarmac.ingest.contract import parse_times
from tarmac.ingest.survey._freshness import DEFAULT_STALE_AFTER, freshness
from tarmac.ingest.survey._gaps import (
    NULL_RATE_LIMIT,
    find_gaps,
    format_age,
    parse_duration,
    unique_looking,
)
from tarmac.ingest.survey._render import approx, freshness_text, pii_text, render, rows_text
from tarmac.ingest.survey._report import (
    SEVERITIES,
    ColumnProfile,
    Freshness,
    Gap,
    KeyProfile,
    Severity,
    SourceProfile,
    StreamProfile,
    SurveyReport,
)
from tarmac.ingest.survey._run import (
    DEFAULT_SAMPLE_ROWS,
    STREAM_NOTE,
    SURVEY_HTTP_BUDGET,
    SURVEY_HTTP_RETRIES,
    survey,
)
from tarmac.ingest.survey._stream import key_profile, profile_sample
from tarmac.profile.pii import (
    NAME_PATTERNS,
    NAME_THRESHOLD,
    PII_KINDS,
    PII_THRESHOLD,
    VALUE_CHECK_LIMIT,
    VALUE_PATTERNS,
    PiiFinding,
    detect_pii,
    kinds_by_name,
    looks_like,
    luhn_valid,
    snake,
    value_shares,
)

__all__ = [
    "DEFAULT_SAMPLE_ROWS", "DEFAULT_STALE_AFTER", "NAME_PATTERNS", "NAME_THRESHOLD",
    "NULL_RATE_LIMIT", "PII_KINDS", "PII_THRESHOLD", "SEVERITIES", "STREAM_NOTE",
    "SURVEY_HTTP_BUDGET", "SURVEY_HTTP_RETRIES", "VALUE_CHECK_LIMIT", "VALUE_PATTERNS",
    "ColumnProfile", "Freshness", "Gap", "KeyProfile", "PiiFinding", "Severity",
    "SourceProfile", "StreamProfile", "SurveyReport", "approx", "detect_pii", "find_gaps",
    "format_age", "freshness", "freshness_text", "key_profile", "kinds_by_name", "looks_like",
    "luhn_valid", "parse_duration", "parse_times", "pii_text", "profile_sample", "render",
    "rows_text", "snake", "survey", "unique_looking", "value_shares",
]
