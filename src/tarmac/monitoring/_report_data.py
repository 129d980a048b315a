"""The rows behind a monitor report, grouped: windows oldest first, each with its verdict, and
the helpers that name and format a row (``tarmac.monitoring.report`` draws them)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tarmac.monitoring import _render
from tarmac.monitoring._charts import Point, State, finite
from tarmac.monitoring.alerts import FIRING_VERDICTS, PASSING_VERDICTS

if TYPE_CHECKING:
    from tarmac.catalog.alerts import DeliveryRecord
    from tarmac.catalog.monitors import MonitorRun

#: the slice of all rows of a window (``tarmac.monitoring.performance``)
ALL_ROWS = "(all)"
#: run verdicts, besides the check verdicts, that read as failing or passing
FAILING_RUN = frozenset({"failing", "failed", "alert", "alerting", "degraded", "unhealthy"})
PASSING_RUN = frozenset({"passing", "passed", "ok", "healthy", "green"})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)


def state(verdict: str | None) -> State:
    """How a verdict reads: failing (alerts fire on it), passing, or undecided (not enough
    data, labels incomplete: decides nothing)."""
    if verdict in FIRING_VERDICTS or verdict in FAILING_RUN:
        return "fail"
    if verdict in PASSING_VERDICTS or verdict in PASSING_RUN:
        return "pass"
    return "undecided"


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    verdict: str
    state: State
    failing: int
    checks: int


@dataclass
class Data:
    monitor: str
    rows: list[dict[str, Any]]
    windows: list[Window]  # oldest first
    model: str | None
    version: int | None
    evaluated_at: datetime | None
    alerts: list[DeliveryRecord]
    label_format: str

    @classmethod
    def build(cls, monitor: str, rows: list[dict[str, Any]], runs: list[MonitorRun],
              alerts: list[DeliveryRecord]) -> Data:
        by_end: dict[datetime, list[dict[str, Any]]] = {}
        for r in rows:
            by_end.setdefault(r["window_end"], []).append(r)
        run_of = {r.window_end: r for r in runs}
        windows = []
        for end, group in sorted(by_end.items()):
            run = run_of.get((end - EPOCH) // US)
            failing = sum(state(r["verdict"]) == "fail" for r in group)
            verdict = run.verdict if run is not None and run.verdict else overall(group)
            windows.append(Window(group[0]["window_start"], end, verdict, state(verdict),
                                   failing, len(group)))
        latest = by_end[windows[-1].end]
        daily = all(w.end.hour == w.end.minute == w.end.second == 0 for w in windows)
        return cls(monitor, rows, windows, latest[0]["model"], latest[0]["version"],
                   max((r["evaluated_at"] for r in latest), default=None), alerts,
                   "%Y-%m-%d" if daily else "%m-%d %H:%M")

    @property
    def latest(self) -> Window:
        return self.windows[-1]

    def of(self, check: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["check"] == check]

    def label(self, end: datetime) -> str:
        return end.astimezone(UTC).strftime(self.label_format)

    def series(self, rows: Iterable[dict[str, Any]], value: str = "value") -> list[Point]:
        """One point per shown window (oldest first) from rows of one series: a window the
        series has no row in is a point with no value."""
        at = {r["window_end"]: r for r in rows}
        points = []
        for w in self.windows:
            r = at.get(w.end)
            if r is None:
                points.append(Point(self.label(w.end), None, None, "undecided",
                                    f"{when(w)}: not measured"))
                continue
            v = finite(r[value])
            title = f"{when(w)}: {num(v)} ({r['verdict']})"
            if finite(r["threshold"]) is not None:
                title += f", threshold {num(r['threshold'])}"
            if r["reason"]:
                title += f". {r['reason']}"
            points.append(Point(self.label(w.end), v, finite(r["threshold"]),
                                state(r["verdict"]), title))
        return points


def overall(rows: Sequence[dict[str, Any]]) -> str:
    states = [state(r["verdict"]) for r in rows]
    if "fail" in states:
        return "failing"
    return "passing" if "pass" in states else "not decided"


def when(w: Window) -> str:
    return f"{stamp(w.start)} → {stamp(w.end)}"


def stamp(t: datetime | None) -> str:
    if t is None:
        return ""
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%d %H:%M UTC") if (t.hour or t.minute) else t.strftime("%Y-%m-%d")


def num(v: Any) -> str:
    f = finite(v)
    return "–" if f is None else _render._fmt(f)


def what(r: dict[str, Any]) -> str:
    """metric · column · slice of a row, what it measures in a person's words (a drift row:
    its column; its figure names the statistic)."""
    if r["check"] == "drift" and r["column"]:
        return str(r["column"])
    parts = [r["metric"]]
    if r["column"]:
        parts.append(r["column"])
    if r["slice"] and r["slice"] != ALL_ROWS:
        parts.append(r["slice"])
    return " · ".join(parts)


def key(r: dict[str, Any]) -> tuple[str, str, str]:
    return r["metric"], r["column"] or "", r["slice"] or ""


def grouped(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return out
