"""Gap rules: what in a surveyed source will block production ML, each with a one-line fix."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from tarmac import humanize
from tarmac.errors import UsageError
from tarmac.ingest.spec import SourceSpec
from tarmac.ingest.survey._freshness import DEFAULT_STALE_AFTER
from tarmac.ingest.survey._report import Gap, Severity, SourceProfile, StreamProfile
from tarmac.profile.pii import snake

NULL_RATE_LIMIT = 0.2  # a column more empty than this is a gap


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
