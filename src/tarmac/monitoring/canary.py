"""The default canary verdict of a retraining loop: what the canary's logged predictions say.

``canary_check`` reads the ``predictions`` table (the prediction log the servers flush): the
rows the endpoint answered with the loop's version in the ``canary`` role since the canary
started. Too few is ``not enough data``; too many errors or too slow (the monitor's ``slo()``,
else 1% errors) is ``failed``; otherwise ``passed``. ``advance_loops`` uses it when the caller
gives no ``canary_verdict`` of its own.

Example::

    check = canary_check(p, loop, definition=churn_monitor)
    check.verdict, check.predictions, check.errors      # ('passed', 412, 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from tarmac.catalog.monitors import RetrainLoop
from tarmac.monitoring.declare import MonitorDefinition

if TYPE_CHECKING:
    from tarmac.project import Project

#: the prediction log's lake table (written by the servers)
PREDICTIONS_TABLE = "predictions"
#: the default canary verdict wants at least this many canary predictions
MIN_CANARY_PREDICTIONS = 20
#: ... and at most this share of them ending in an error (unless the monitor's slo() says)
MAX_CANARY_ERROR_RATE = 0.01


@dataclass(frozen=True)
class CanaryCheck:
    """What the canary's logged predictions say: ``verdict`` is ``passed``, ``failed`` or
    ``not enough data``, ``reason`` says why in words."""

    verdict: str
    predictions: int
    errors: int
    error_rate: float | None
    p99_ms: float | None
    reason: str


def canary_check(project: Project, loop: RetrainLoop, *,
                 definition: MonitorDefinition | None = None,
                 min_predictions: int = MIN_CANARY_PREDICTIONS,
                 max_error_rate: float | None = None,
                 max_p99_ms: float | None = None) -> CanaryCheck:
    """The default canary verdict: the rows of the ``predictions`` table that the canary
    answered (this endpoint, ``version == loop.version``, role ``canary``) since
    ``canary_since``. Fewer than ``min_predictions`` is ``not enough data``; a share of
    errors above ``max_error_rate`` (default: the monitor's ``slo(error_rate=...)``, else
    1%) or a p99 latency above ``max_p99_ms`` (default: the monitor's ``slo(p99_ms=...)``,
    else none) is ``failed``; otherwise ``passed``. Only flushed predictions count.

    Example: ``canary_check(p, loop).verdict  # 'passed'``
    """
    slo = definition.slo if definition is not None else None
    if max_error_rate is None:
        max_error_rate = slo.error_rate if slo is not None and slo.error_rate is not None \
            else MAX_CANARY_ERROR_RATE
    if max_p99_ms is None and slo is not None:
        max_p99_ms = slo.p99_ms
    rows = _canary_rows(project, loop)
    n = rows.num_rows
    if n < min_predictions:
        return CanaryCheck("not enough data", n, 0, None, None,
                           f"{n} canary prediction(s) logged, {min_predictions} needed")
    errors = n - rows.column("error").null_count
    rate = errors / n
    latency = rows.column("latency_ms").drop_null()
    p99 = float(pc.quantile(latency, q=0.99)[0].as_py()) if len(latency) else None
    if rate > max_error_rate:
        return CanaryCheck("failed", n, errors, rate, p99,
                           f"{errors} of {n} canary predictions failed ({rate:.1%} > "
                           f"{max_error_rate:.1%})")
    if max_p99_ms is not None and p99 is not None and p99 > max_p99_ms:
        return CanaryCheck("failed", n, errors, rate, p99,
                           f"canary p99 latency {p99:.1f} ms > {max_p99_ms:g} ms")
    return CanaryCheck("passed", n, errors, rate, p99,
                       f"{n} canary predictions, {errors} error(s)")


def _canary_rows(project: Project, loop: RetrainLoop) -> pa.Table:
    if not project.lake.exists(PREDICTIONS_TABLE):
        return pa.table({"error": pa.array([], pa.string()),
                         "latency_ms": pa.array([], pa.float64())})
    since = datetime.fromtimestamp((loop.canary_since or 0) / 1_000_000, UTC)
    expr = ((pc.field("endpoint") == loop.model) & (pc.field("version") == loop.version)
            & (pc.field("role") == "canary")
            & (pc.field("time") >= pc.scalar(pa.scalar(since, pa.timestamp("us", tz="UTC")))))
    return project.lake.scan(PREDICTIONS_TABLE).to_table(columns=["error", "latency_ms"],
                                                         filter=expr)


__all__ = ["MAX_CANARY_ERROR_RATE", "MIN_CANARY_PREDICTIONS", "PREDICTIONS_TABLE", "CanaryCheck",
           "canary_check"]
