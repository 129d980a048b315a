"""Sizes and durations as people write and read them, shared by the CLI, the reports, the
project file and the lake (one parser of ``30m`` / ``6h`` / ``7d`` / ``2w`` for all of them)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$")
_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, *, default_unit: str | None = None,
                   units: tuple[str, ...] = tuple(_SECONDS)) -> timedelta:
    """``'30m'``, ``'6h'``, ``'7d'``, ``'2w'``, ``'90s'`` as a timedelta. A bare number takes
    ``default_unit`` when one is given; a unit outside ``units`` or anything else raises
    ``ValueError``."""
    m = _DURATION.match(text) if isinstance(text, str) else None
    unit = (m.group(2) or default_unit) if m else None
    if m is None or unit is None or unit not in units:
        raise ValueError(f"expected a duration such as 30m, 6h, 2d or 1w (got {text!r})")
    return timedelta(seconds=float(m.group(1)) * _SECONDS[unit])


def point_in_time(text: str, *, now: datetime | None = None) -> datetime:
    """``text`` as an aware UTC time: a duration back from ``now`` (``'30m'``, ``'7d'``: that
    long ago) or an ISO-8601 time (naive = UTC); ``ValueError`` otherwise. What every
    ``--since`` / ``--until`` reads.

    Example: ``point_in_time("2026-01-31T12:00:00Z")  # datetime(2026, 1, 31, 12, tzinfo=UTC)``
    """
    try:
        return (now or datetime.now(UTC)) - parse_duration(text)
    except ValueError:
        pass
    when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))  # ValueError if not
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def positive_duration(value: timedelta | str, what: str, example: str) -> timedelta:
    """``value`` (text such as ``example``, or a timedelta) checked to be positive; a
    ``UsageError`` naming ``what`` otherwise (the one check behind every "how long" option:
    windows, delays, retention, token expiry).

    Example: ``positive_duration("400d", "retention", "400d")  # timedelta(days=400)``
    """
    from tarmac.errors import UsageError, echo

    span: object = value
    if isinstance(value, str):
        try:
            span = parse_duration(value)
        except ValueError as exc:
            raise UsageError(f"{what}: {exc}") from None
    if not isinstance(span, timedelta) or span <= timedelta(0):
        raise UsageError(f"{what} must be a positive duration such as {example!r} "
                         f"(got {echo(value)!r})")
    return span


def duration(seconds: float) -> str:
    """The inverse of ``parse_duration`` for whole units: ``864000`` -> ``'10d'``."""
    for unit in ("w", "d", "h", "m"):
        if seconds >= _SECONDS[unit] and seconds % _SECONDS[unit] == 0:
            return f"{int(seconds // _SECONDS[unit])}{unit}"
    return f"{seconds:g}s"


def size(n: int | None) -> str:
    """Bytes for people: ``1.2 MB`` (``-`` when unknown)."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover
