"""The ``monitor_results`` lake table: one row per monitor, window, check, metric, column and
slice of every evaluation, the history that trends, reports and alerts read.

Rows are written with a merge on ``key`` (the run id and the row's identity), so an evaluation
retried after a crash replaces what its dead attempt wrote instead of adding to it: a window has
its rows once. ``column`` is null for a check of no column (an SLO, the log's freshness),
``slice`` null outside performance (where ``"(all)"`` is every row of the window).

Columns: ``key``, ``run_id``, ``monitor``, ``model``, ``version`` (the champion evaluated),
``window_start``, ``window_end``, ``check`` (drift, quality, performance, slo), ``metric`` (the
statistic: ``ks``, ``chi2``, ``null_rate``, ``roc_auc``, ``p99_ms`` ...), ``column``, ``slice``,
``value``, ``threshold``, ``verdict``, ``effect_size``, ``effect_class``, ``p_value``,
``n_reference``, ``n_current``, ``reason``, ``detail`` (JSON: the two sketches of a drift row,
for plots), ``evaluated_at``. A drift row's ``value`` is its test statistic (KS D, chi-squared),
``effect_size`` the effect (PSI, Jensen-Shannon) and ``threshold`` the effect size at which it
counts as drifted; other rows compare ``value`` with ``threshold``.

Example::

    from tarmac.monitoring.results import read_results
    read_results(p, "churn", check="drift").to_pandas()   # every window's drift rows
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tarmac.errors import UsageError

if TYPE_CHECKING:
    from tarmac.lake.lake import WriteResult
    from tarmac.project import Project

#: the lake table monitors write to
RESULTS_TABLE = "monitor_results"
CHECKS = ("drift", "quality", "performance", "slo")

_TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([
    pa.field("key", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("monitor", pa.string(), nullable=False),
    pa.field("model", pa.string()),
    pa.field("version", pa.int64()),
    pa.field("window_start", _TS, nullable=False),
    pa.field("window_end", _TS, nullable=False),
    pa.field("check", pa.string(), nullable=False),
    pa.field("metric", pa.string(), nullable=False),
    pa.field("column", pa.string()),
    pa.field("slice", pa.string()),
    pa.field("value", pa.float64()),
    pa.field("threshold", pa.float64()),
    pa.field("verdict", pa.string(), nullable=False),
    pa.field("effect_size", pa.float64()),
    pa.field("effect_class", pa.string()),
    pa.field("p_value", pa.float64()),
    pa.field("n_reference", pa.int64()),
    pa.field("n_current", pa.int64()),
    pa.field("reason", pa.string()),
    pa.field("detail", pa.string()),
    pa.field("evaluated_at", _TS, nullable=False),
])


@dataclass(frozen=True)
class ResultRow:
    """One measured figure of one check in one window (see the module's columns)."""

    check: str
    metric: str
    verdict: str
    column: str | None = None
    slice: str | None = None
    value: float | None = None
    threshold: float | None = None
    effect_size: float | None = None
    effect_class: str | None = None
    p_value: float | None = None
    n_reference: int | None = None
    n_current: int | None = None
    reason: str = ""
    detail: Mapping[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            raise UsageError(f"a monitor result's check must be one of {', '.join(CHECKS)}, "
                             f"not {self.check!r}")

    @property
    def identity(self) -> str:
        """check/metric/column/slice: what a row measures, unique within one window."""
        return "/".join((self.check, self.metric, self.column or "", self.slice or ""))


def to_table(rows: Sequence[ResultRow], *, run_id: str, monitor: str, model: str | None,
             version: int | None, window_start: datetime, window_end: datetime,
             evaluated_at: datetime) -> pa.Table:
    """The rows of one evaluation as a ``SCHEMA`` table."""
    import json

    n = len(rows)

    def col(name: str) -> list[Any]:
        return [getattr(r, name) for r in rows]

    data: dict[str, Any] = {
        "key": [f"{run_id}/{r.identity}" for r in rows],
        "run_id": [run_id] * n, "monitor": [monitor] * n, "model": [model] * n,
        "version": [version] * n, "window_start": [window_start] * n,
        "window_end": [window_end] * n,
        **{c: col(c) for c in ("check", "metric", "column", "slice", "value", "threshold",
                               "verdict", "effect_size", "effect_class", "p_value",
                               "n_reference", "n_current", "reason")},
        "detail": [json.dumps(r.detail, sort_keys=True, default=str, allow_nan=False)
                   if r.detail is not None else None for r in rows],
        "evaluated_at": [evaluated_at] * n,
    }
    for name in ("value", "threshold", "effect_size", "p_value"):
        data[name] = [None if v is None or v != v else float(v) for v in data[name]]
    return pa.table(data, schema=SCHEMA)


def write_results(project: Project, table: pa.Table) -> WriteResult:
    """Merge one evaluation's rows into ``monitor_results`` (a retry replaces its rows)."""
    return project.lake.write(RESULTS_TABLE, table, mode="merge", keys=["key"])


def read_results(project: Project, monitor: str | None = None, *, check: str | None = None,
                 since: datetime | None = None) -> pa.Table:
    """The stored rows (of one monitor, one check, windows ending after ``since``), oldest
    window first; an empty ``SCHEMA`` table when nothing was evaluated yet."""
    if not project.lake.exists(RESULTS_TABLE):
        return SCHEMA.empty_table()
    import pyarrow.compute as pc

    wanted = [pc.field("monitor") == monitor if monitor is not None else None,
              pc.field("check") == check if check is not None else None,
              pc.field("window_end") > pa.scalar(since, _TS) if since is not None else None]
    filters = [f for f in wanted if f is not None]
    expression = None
    for f in filters:
        expression = f if expression is None else expression & f
    table = project.lake.read(RESULTS_TABLE, filter=expression)
    return table.sort_by([("window_end", "ascending"), ("check", "ascending"),
                          ("metric", "ascending"), ("column", "ascending"),
                          ("slice", "ascending")])


__all__ = ["CHECKS", "RESULTS_TABLE", "SCHEMA", "ResultRow", "read_results", "to_table",
           "write_results"]
