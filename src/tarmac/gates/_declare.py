"""The declaration syntax used in ``definitions.py``: ``metric("roc_auc") >= 0.75``,
``no_regression(...)``, ``latency(...)`` ... each returns a gate of ``_kinds``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tarmac.errors import UsageError
from tarmac.gates._base import Gate, _number
from tarmac.gates._context import GateContext
from tarmac.gates._kinds import (
    CustomGate,
    LatencyGate,
    MetricGate,
    NoNullsGate,
    NoRegressionGate,
    PredictionRangeGate,
    SignatureGate,
    SliceGapGate,
    SliceMetricGate,
)
from tarmac.models import metrics as M


class _Comparable:
    """Becomes a gate when compared with a threshold: ``metric("roc_auc") >= 0.75``."""

    def _gate(self, op: str, threshold: float) -> Gate:
        raise NotImplementedError

    def _checked(self, op: str, threshold: Any) -> Gate:
        return self._gate(op, _number(threshold, f"the threshold in {self!r} {op} ..."))

    def __ge__(self, threshold: Any) -> Gate:
        return self._checked(">=", threshold)

    def __gt__(self, threshold: Any) -> Gate:
        return self._checked(">", threshold)

    def __le__(self, threshold: Any) -> Gate:
        return self._checked("<=", threshold)

    def __lt__(self, threshold: Any) -> Gate:
        return self._checked("<", threshold)


class MetricBuilder(_Comparable):
    """``metric(name)`` before its threshold."""

    def __init__(self, name: str) -> None:
        self.metric = M.get(name).name

    def __repr__(self) -> str:
        return f"metric({self.metric!r})"

    def _gate(self, op: str, threshold: float) -> Gate:
        return MetricGate(self.metric, op, threshold)


def _slice_args(name: str, by: str, min_rows: int) -> tuple[str, str, int]:
    metric_name = M.get(name).name
    if not isinstance(by, str) or not by.strip():
        raise UsageError(f"slice by must name a column of the holdout set (got {by!r})")
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise UsageError(f"min_rows must be a whole number >= 1 (got {min_rows!r})")
    return metric_name, by, min_rows


class SliceMetricBuilder(_Comparable):
    """``slice_metric(name, by=...)`` before its threshold."""

    def __init__(self, name: str, by: str, min_rows: int = 30) -> None:
        self.metric, self.by, self.min_rows = _slice_args(name, by, min_rows)

    def __repr__(self) -> str:
        return f"slice_metric({self.metric!r}, by={self.by!r})"

    def _gate(self, op: str, threshold: float) -> Gate:
        return SliceMetricGate(self.metric, self.by, op, threshold, self.min_rows)


class SliceGapBuilder(_Comparable):
    """``slice_gap(name, by=...)`` before its threshold."""

    def __init__(self, name: str, by: str, min_rows: int = 30) -> None:
        self.metric, self.by, self.min_rows = _slice_args(name, by, min_rows)

    def __repr__(self) -> str:
        return f"slice_gap({self.metric!r}, by={self.by!r})"

    def _gate(self, op: str, threshold: float) -> Gate:
        return SliceGapGate(self.metric, self.by, op, threshold, self.min_rows)


def metric(name: str) -> MetricBuilder:
    """A holdout metric, to compare with a threshold: ``metric("roc_auc") >= 0.75``."""
    return MetricBuilder(name)


def no_regression(name: str, tolerance: float = 0.0) -> Gate:
    """The metric may not be worse than the champion's, on this version's holdout set, by more
    than ``tolerance``. Skipped while there is no champion."""
    metric_name = M.get(name).name
    tol = _number(tolerance, "tolerance")
    if tol < 0:
        raise UsageError(f"tolerance must be >= 0 (got {tolerance!r})")
    return NoRegressionGate(metric_name, tol)


def slice_metric(name: str, by: str, min_rows: int = 30) -> SliceMetricBuilder:
    """The metric in every slice of column ``by`` with at least ``min_rows`` rows, to compare
    with a threshold: ``slice_metric("roc_auc", by="region") >= 0.70``."""
    return SliceMetricBuilder(name, by, min_rows)


def slice_gap(name: str, by: str, min_rows: int = 30) -> SliceGapBuilder:
    """Best minus worst slice value of the metric (fairness across slices), to compare with a
    threshold: ``slice_gap("roc_auc", by="region") <= 0.10``."""
    return SliceGapBuilder(name, by, min_rows)


def latency(p99_ms: float | None = None, batch_p99_ms: float | None = None,
            batch_size: int = 1000) -> Gate:
    """p99 predict latency measured during validation: single rows (``p99_ms``) and/or batches
    of ``batch_size`` rows (``batch_p99_ms``). At least one budget is required."""
    if p99_ms is None and batch_p99_ms is None:
        raise UsageError("latency() needs a budget: p99_ms (single row) and/or batch_p99_ms",
                         hint="e.g. latency(p99_ms=20)")
    budgets: list[float | None] = []
    for label, value in (("p99_ms", p99_ms), ("batch_p99_ms", batch_p99_ms)):
        if value is None:
            budgets.append(None)
            continue
        v = _number(value, label)
        if v <= 0:
            raise UsageError(f"{label} must be > 0 milliseconds (got {value!r})")
        budgets.append(v)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a whole number >= 1 (got {batch_size!r})")
    return LatencyGate(budgets[0], budgets[1], batch_size)


def no_nulls_in_predictions() -> Gate:
    """No prediction, nor score, is null or NaN."""
    return NoNullsGate()


def prediction_range(min: float | None = None, max: float | None = None) -> Gate:  # noqa: A002
    """Every score (or prediction, when the model has no scores) lies within [min, max]."""
    if min is None and max is None:
        raise UsageError("prediction_range() needs min and/or max",
                         hint="e.g. prediction_range(min=0.0, max=1.0)")
    lo = None if min is None else _number(min, "min")
    hi = None if max is None else _number(max, "max")
    if lo is not None and hi is not None and lo > hi:
        raise UsageError(f"prediction_range min ({lo:g}) is above max ({hi:g})")
    return PredictionRangeGate(lo, hi)


def signature_compatible() -> Gate:
    """This version can serve requests made for the champion (added when not declared)."""
    return SignatureGate()


def custom(fn: Callable[[GateContext], Any], name: str | None = None) -> Gate:
    """A check in Python: ``fn(ctx)`` returns a bool, (bool, why) or a GateResult."""
    if not callable(fn):
        raise UsageError(f"custom() needs a function taking the gate context (got {fn!r})")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise UsageError(f"custom() name must be a non-empty string (got {name!r})")
    return CustomGate(fn, name)
