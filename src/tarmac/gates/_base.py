"""The ``Gate`` base class and the helpers every kind shares (threshold checks, messages)."""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from tarmac.errors import UsageError
from tarmac.gates._context import GateContext
from tarmac.gates.report import GateResult
from tarmac.models import metrics as M

_FAILS = {">=": "is below", ">": "is not above", "<=": "is above", "<": "is not below"}
_NEGATED = {">=": "<", ">": "<=", "<=": ">", "<": ">="}


class _Unjudgeable(Exception):
    """The gate cannot be judged on this version (its ``why``); becomes status ``error``."""


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(
            float(value)):
        raise UsageError(f"{what} must be a finite number (got {value!r})")
    return float(value)


def _holds(value: float, op: str, threshold: float) -> bool:
    """``value op threshold``, with float noise at the boundary counted as equal."""
    close = math.isclose(value, threshold, rel_tol=1e-9, abs_tol=1e-12)
    if op == ">=":
        return value >= threshold or close
    if op == "<=":
        return value <= threshold or close
    if op == ">":
        return value > threshold and not close
    return value < threshold and not close


def _exception_why(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _metric_value(ctx: GateContext, name: str, champion: bool = False) -> float:
    """A metric of this version (or of the champion) on the holdout, or _Unjudgeable saying
    why it has no value."""
    task = ctx.task
    if task not in M.get(name).tasks:
        raise _Unjudgeable(f"{name} does not apply to {task} models; metrics for {task}: "
                           f"{', '.join(M.names(task))}")
    computed = ctx.champion_metrics() if champion else ctx.metrics()
    if name in computed:
        return computed[name]
    whose = f"champion v{ctx._champion().version}'s" if champion else "this version's"
    try:
        if champion:
            M.compute_one(task, name, ctx.y(), ctx.champion_predictions(), ctx.champion_scores())
        else:
            M.compute_one(task, name, ctx.y(), ctx.predictions(), ctx.scores())
    except M.MetricUndefined as exc:
        raise _Unjudgeable(f"{name} is undefined for {whose} predictions on this holdout: "
                           f"{exc}") from None
    raise _Unjudgeable(f"{name} is undefined for {whose} predictions on this holdout")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _names(keys: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


# --- the gates ----------------------------------------------------------------------------------



class Gate(ABC):
    """A declared check: a display name, a kind, a stable spec and how to judge a version."""

    kind: ClassVar[str]

    @property
    @abstractmethod
    def name(self) -> str:
        """What reports show, e.g. ``roc_auc >= 0.75``."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """A JSON-able, stable description: stored, and compared to detect changed gates."""

    @abstractmethod
    def _evaluate(self, ctx: GateContext) -> GateResult: ...

    def evaluate(self, ctx: GateContext) -> GateResult:
        """Judge one version; a gate that cannot be judged is ``error`` with the reason."""
        try:
            return self._evaluate(ctx)
        except _Unjudgeable as exc:
            return self._result("error", None, None, str(exc))

    def _result(self, status: str, value: float | str | None, threshold: str | None, why: str,
                details: dict[str, Any] | None = None) -> GateResult:
        return GateResult(self.name, self.kind, status, value, threshold, why, details or {})
