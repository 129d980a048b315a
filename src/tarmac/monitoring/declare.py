"""Declaring monitors in ``definitions.py``: ``monitor``, and the checks it runs.

A monitor watches one served model (its endpoint) window by window: ``window`` of prediction
time, evaluated ``every`` so often (by ``tarmac scheduler`` or ``tarmac monitor run`` from cron).
Each check is declared by a helper with sensible defaults, and left out by passing ``None``::

    from tarmac.models import label
    from tarmac.monitoring.declare import (drift, log, monitor, performance, quality, retrain,
                                           slo, webhook)

    monitor("churn",                                    # the served model (endpoint)
            reference="training",                       # the profile stored with the version
            window="1d", every="1h",
            drift=drift(features="all", predictions=True),
            quality=quality(nulls=True, ranges=True, new_categories=True, freshness="2h"),
            performance=performance(labels=label("labels", "churned",
                                                 timestamp="observed_until"),
                                    metrics=["roc_auc", "pr_auc"], delay="30d"),
            slo=slo(p99_ms=50, error_rate=0.01),
            alerts=[webhook("${ALERT_URL}"), log()],
            on_decay=retrain(promote="canary", canary_percent=10))

The helpers here share names with ``tarmac.monitoring.drift`` and ``performance`` (which compute
on data); these only declare, which is why they live in their own module.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from tarmac.errors import UsageError, echo
from tarmac.humanize import duration, positive_duration
from tarmac.models.definitions import Label
from tarmac.monitoring.alerts import Channel, Log, Webhook, log, webhook

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")
EFFECTS = ("none", "small", "medium", "large")
PROMOTE = ("canary", "direct", "approval")
THEN = ("promote_if_gates_pass", "wait_for_approval")
JOINS = ("auto", "id", "entity+time")


def _span(value: timedelta | str, what: str, example: str) -> timedelta:
    return positive_duration(value, what, example)


def _share(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise UsageError(f"{what} must be a share between 0 and 1, got {echo(value)!r}")
    return float(value)


def _names(value: Any, what: str) -> tuple[str, ...] | Literal["all"]:
    if value == "all":
        return "all"
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not value or \
            not all(isinstance(v, str) and v for v in value):
        raise UsageError(f"{what} must be 'all' or a list of column names, got {echo(value)!r}")
    return tuple(value)


@dataclass(frozen=True)
class DriftCheck:
    """Drift of the model's inputs (``features``) and output (``predictions``) from the
    reference; the options are ``tarmac.monitoring.drift``'s."""

    features: tuple[str, ...] | Literal["all"] = "all"
    predictions: bool = True
    alpha: float = 0.05
    correction: str = "holm"
    min_effect: str = "small"
    min_rows: int = 100

    def spec(self) -> dict[str, Any]:
        return {"features": list(self.features) if self.features != "all" else "all",
                "predictions": self.predictions, "alpha": self.alpha,
                "correction": self.correction, "min_effect": self.min_effect,
                "min_rows": self.min_rows}


def drift(features: str | Sequence[str] = "all", *, predictions: bool = True,
          alpha: float = 0.05, correction: str = "holm", min_effect: str = "small",
          min_rows: int = 100) -> DriftCheck:
    """Test the window's features (``"all"`` the model's, or a list) and, with
    ``predictions``, its scores against the reference. A column is drifted when the change is
    significant after correcting for the number of columns (``alpha``, ``correction``) and at
    least ``min_effect`` in size (docs/monitoring.md explains why both)."""
    if not 0 < alpha < 1:
        raise UsageError(f"drift(alpha=...) must be between 0 and 1, got {echo(alpha)!r}")
    if correction not in ("holm", "bh", "none"):
        raise UsageError(f"drift(correction=...) must be 'holm', 'bh' or 'none', got "
                         f"{echo(correction)!r}")
    if min_effect not in EFFECTS:
        raise UsageError(f"drift(min_effect=...) must be one of {', '.join(EFFECTS)}, got "
                         f"{echo(min_effect)!r}")
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 2:
        raise UsageError(f"drift(min_rows=...) must be a whole number >= 2, got "
                         f"{echo(min_rows)!r}")
    return DriftCheck(_names(features, "drift(features=...)"), bool(predictions), float(alpha),
                      correction, min_effect, min_rows)


@dataclass(frozen=True)
class QualityCheck:
    """Data quality of the window (see ``quality``)."""

    nulls: bool = True
    ranges: bool = True
    new_categories: bool = True
    freshness: timedelta | None = None
    max_null_increase: float = 0.05
    max_out_of_range: float = 0.01
    max_new_category_share: float = 0.01
    max_missing_features: float = 0.05
    max_stale_features: float = 0.10

    def spec(self) -> dict[str, Any]:
        return {"nulls": self.nulls, "ranges": self.ranges,
                "new_categories": self.new_categories,
                "freshness": duration(self.freshness.total_seconds())
                if self.freshness else None,
                "max_null_increase": self.max_null_increase,
                "max_out_of_range": self.max_out_of_range,
                "max_new_category_share": self.max_new_category_share,
                "max_missing_features": self.max_missing_features,
                "max_stale_features": self.max_stale_features}


def quality(*, nulls: bool = True, ranges: bool = True, new_categories: bool = True,
            freshness: timedelta | str | None = None, max_null_increase: float = 0.05,
            max_out_of_range: float = 0.01, max_new_category_share: float = 0.01,
            max_missing_features: float = 0.05, max_stale_features: float = 0.10,
            ) -> QualityCheck:
    """Data-quality checks of each window: a feature's null rate up by more than
    ``max_null_increase`` over the reference, values outside the reference's range (or the
    contract's) in more than ``max_out_of_range`` of rows, categories the reference never saw
    in more than ``max_new_category_share``, the prediction log and feature views older than
    ``freshness``, and requests served with missing (``max_missing_features``) or stale
    (``max_stale_features``) features: a model scored on empty features alarms."""
    return QualityCheck(
        bool(nulls), bool(ranges), bool(new_categories),
        _span(freshness, "quality(freshness=...)", "2h") if freshness is not None else None,
        _share(max_null_increase, "quality(max_null_increase=...)"),
        _share(max_out_of_range, "quality(max_out_of_range=...)"),
        _share(max_new_category_share, "quality(max_new_category_share=...)"),
        _share(max_missing_features, "quality(max_missing_features=...)"),
        _share(max_stale_features, "quality(max_stale_features=...)"))


@dataclass(frozen=True)
class PerformanceCheck:
    """Model performance from late labels (see ``performance``)."""

    labels: Label
    metrics: tuple[str, ...] = ("roc_auc", "pr_auc")
    join: str = "auto"
    delay: timedelta = timedelta(days=30)
    slices: tuple[str, ...] = ()
    max_drop: float = 0.05
    minimum: Mapping[str, float] = field(default_factory=dict)
    min_rows: int = 30
    min_coverage: float = 0.5

    def spec(self) -> dict[str, Any]:
        return {"labels": self.labels.spec(), "metrics": list(self.metrics), "join": self.join,
                "delay": duration(self.delay.total_seconds()), "slices": list(self.slices),
                "max_drop": self.max_drop, "min": dict(self.minimum),
                "min_rows": self.min_rows, "min_coverage": self.min_coverage}


def performance(labels: Label, *, metrics: Sequence[str] = ("roc_auc", "pr_auc"),
                join: str = "auto", delay: timedelta | str = "30d",
                slices: Sequence[str] = (), max_drop: float = 0.05,
                min: Mapping[str, float] | None = None,  # noqa: A002
                min_rows: int = 30, min_coverage: float = 0.5) -> PerformanceCheck:
    """The model's metrics on each window's labelled predictions (labels arrive late: a window
    is judged once its labels are complete). A metric is decayed when it is more than
    ``max_drop`` below the champion's holdout figure, or below ``min[metric]``. Each metric is
    also given per slice: ``slices``, by default the slices the model's gates judge. ``join`` is
    ``"id"`` (labels carry ``prediction_id``), ``"entity+time"`` (the prediction before the
    label's time, within ``delay``) or ``"auto"`` (by id when the labels have it)."""
    from tarmac.models import metrics as M

    if not isinstance(labels, Label):
        raise UsageError("performance(labels=...) takes label(table, column, timestamp=...) "
                         f"from tarmac.models, got {echo(labels)!r}")
    if isinstance(metrics, str):
        metrics = [metrics]
    for name in metrics:
        M.get(name)  # raises naming the known metrics
    if join not in JOINS:
        raise UsageError(f"performance(join=...) must be one of {', '.join(JOINS)}, got "
                         f"{echo(join)!r}")
    floors = dict(min or {})
    for name, value in floors.items():
        if name not in metrics or isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"performance(min=...) names a metric of metrics=... with a "
                             f"number, got {echo(name)!r}: {echo(value)!r}")
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise UsageError(f"performance(min_rows=...) must be a whole number >= 1, got "
                         f"{echo(min_rows)!r}")
    if isinstance(slices, str):
        slices = [slices]
    return PerformanceCheck(labels, tuple(metrics), join,
                            _span(delay, "performance(delay=...)", "30d"), tuple(slices),
                            _share(max_drop, "performance(max_drop=...)"),
                            {k: float(v) for k, v in floors.items()}, min_rows,
                            _share(min_coverage, "performance(min_coverage=...)"))


@dataclass(frozen=True)
class SloCheck:
    """Latency and errors of the served predictions (see ``slo``)."""

    p99_ms: float | None = None
    error_rate: float | None = None

    def spec(self) -> dict[str, Any]:
        return {"p99_ms": self.p99_ms, "error_rate": self.error_rate}


def slo(*, p99_ms: float | None = None, error_rate: float | None = None) -> SloCheck:
    """Service levels per window: the 99th percentile of the logged latency at most
    ``p99_ms``, the share of predictions that ended in an error at most ``error_rate``."""
    if p99_ms is None and error_rate is None:
        raise UsageError("slo() needs p99_ms=... and/or error_rate=...")
    if p99_ms is not None and (isinstance(p99_ms, bool) or not isinstance(p99_ms, int | float)
                               or p99_ms <= 0):
        raise UsageError(f"slo(p99_ms=...) must be a positive number of milliseconds, got "
                         f"{echo(p99_ms)!r}")
    return SloCheck(float(p99_ms) if p99_ms is not None else None,
                    _share(error_rate, "slo(error_rate=...)") if error_rate is not None
                    else None)


@dataclass(frozen=True)
class RetrainPolicy:
    """What a monitor does when its model decays or drifts (see ``retrain``)."""

    promote: str = "canary"
    canary_percent: float = 10.0
    canary_for: timedelta = timedelta(hours=1)
    then: str = "promote_if_gates_pass"
    params: Mapping[str, Any] = field(default_factory=dict)
    cooldown: timedelta = timedelta(days=1)

    def spec(self) -> dict[str, Any]:
        return {"promote": self.promote, "canary_percent": self.canary_percent,
                "canary_for": duration(self.canary_for.total_seconds()), "then": self.then,
                "params": dict(self.params),
                "cooldown": duration(self.cooldown.total_seconds())}


def retrain(*, promote: str = "canary", canary_percent: float = 10,
            canary_for: timedelta | str = "1h", then: str = "promote_if_gates_pass",
            params: Mapping[str, Any] | None = None,
            cooldown: timedelta | str = "1d") -> RetrainPolicy:
    """Retrain the model on the newest data (its own ``@model`` function, a new version), check
    its gates against the champion, then: ``promote="direct"`` promotes it; ``"approval"``
    waits for ``tarmac approve``; ``"canary"`` serves it to ``canary_percent`` of entities and,
    after ``canary_for`` with the canary's checks passing, promotes it
    (``then="promote_if_gates_pass"``) or waits for approval (``"wait_for_approval"``). A
    version whose gates fail is never promoted; the champion stays. One loop at a time per
    model, and none sooner than ``cooldown`` after the last one started."""
    if promote not in PROMOTE:
        raise UsageError(f"retrain(promote=...) must be one of {', '.join(PROMOTE)}, got "
                         f"{echo(promote)!r}")
    if then not in THEN:
        raise UsageError(f"retrain(then=...) must be one of {', '.join(THEN)}, got "
                         f"{echo(then)!r}")
    if isinstance(canary_percent, bool) or not isinstance(canary_percent, int | float) \
            or not 0 < canary_percent < 100:
        raise UsageError(f"retrain(canary_percent=...) must be above 0 and below 100, got "
                         f"{echo(canary_percent)!r}")
    return RetrainPolicy(promote, float(canary_percent),
                         _span(canary_for, "retrain(canary_for=...)", "1h"), then,
                         dict(params or {}), _span(cooldown, "retrain(cooldown=...)", "1d"))


@dataclass(frozen=True)
class MonitorDefinition:
    """One declared monitor (see ``monitor``)."""

    name: str
    model: str
    reference: str | Mapping[str, Any] = "training"
    window: timedelta = timedelta(days=1)
    every: timedelta = timedelta(hours=1)
    drift: DriftCheck | None = None
    quality: QualityCheck | None = None
    performance: PerformanceCheck | None = None
    slo: SloCheck | None = None
    alerts: tuple[Channel, ...] = ()
    cooldown: timedelta = timedelta(hours=6)
    on_decay: RetrainPolicy | None = None
    on_drift: RetrainPolicy | None = None

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model,
                "reference": self.reference if isinstance(self.reference, str)
                else dict(self.reference),
                "window": duration(self.window.total_seconds()),
                "every": duration(self.every.total_seconds()),
                "drift": self.drift.spec() if self.drift else None,
                "quality": self.quality.spec() if self.quality else None,
                "performance": self.performance.spec() if self.performance else None,
                "slo": self.slo.spec() if self.slo else None,
                "alerts": [c.name for c in self.alerts],
                "cooldown": duration(self.cooldown.total_seconds()),
                "on_decay": self.on_decay.spec() if self.on_decay else None,
                "on_drift": self.on_drift.spec() if self.on_drift else None}

    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.spec(), sort_keys=True, default=str).encode()
                              ).hexdigest()


_UNSET: Any = object()


def monitor(name: str, *, model: str | None = None, reference: str | Mapping[str, Any] = "training",
            window: timedelta | str = "1d", every: timedelta | str = "1h",
            drift: DriftCheck | None = _UNSET, quality: QualityCheck | None = _UNSET,
            performance: PerformanceCheck | None = None, slo: SloCheck | None = None,
            alerts: Sequence[Channel] = (), cooldown: timedelta | str = "6h",
            on_decay: RetrainPolicy | None = None,
            on_drift: RetrainPolicy | None = None) -> MonitorDefinition:
    """Declare a monitor of the served model ``model`` (default: ``name``).

    ``reference`` is what the window is compared with: ``"training"`` (the profile stored with
    the champion version), a lake table name or SQL, or ``{"since": "14d", "until": "7d"}``, a
    time range of the prediction log before now. Drift and quality run by default
    (``drift()``, ``quality()``); pass ``None`` to leave one out. ``alerts`` are the channels
    (``webhook``, ``log``) that hear of a failing check once per episode, again after
    ``cooldown``, and when it clears. ``on_decay`` runs its retraining policy when a
    performance check decays, ``on_drift`` when a drift check drifts.

    The monitor is returned; assign it in ``definitions.py`` (any name) for Tarmac to find it.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise UsageError(f"monitor name {echo(name)!r} must start with a letter and hold "
                         "letters, digits, '_', '.' or '-' (at most 128)")
    target = name if model is None else model
    if not isinstance(target, str) or not _NAME.match(target):
        raise UsageError(f"monitor {name!r}: model={echo(target)!r} is not a model name")
    if isinstance(reference, str):
        if not reference.strip():
            raise UsageError(f"monitor {name!r}: reference must be 'training', a table, SQL or "
                             "{'since': ..., 'until': ...}")
    elif isinstance(reference, Mapping):
        unknown = set(reference) - {"since", "until"}
        if unknown or "since" not in reference:
            raise UsageError(f"monitor {name!r}: a reference time range is {{'since': '14d', "
                             f"'until': '7d'}} (before now), got {echo(dict(reference))!r}")
        for key, value in reference.items():
            _span(value, f"monitor {name!r} reference {key}", "7d")
    else:
        raise UsageError(f"monitor {name!r}: reference must be 'training', a table, SQL or "
                         f"a time range, got {echo(reference)!r}")
    checks = {"drift": (drift, DriftCheck), "quality": (quality, QualityCheck),
              "performance": (performance, PerformanceCheck), "slo": (slo, SloCheck),
              "on_decay": (on_decay, RetrainPolicy), "on_drift": (on_drift, RetrainPolicy)}
    for what, (value, kind) in checks.items():
        if value is not None and value is not _UNSET and not isinstance(value, kind):
            raise UsageError(f"monitor {name!r}: {what}= takes {what.removeprefix('on_')}"
                             f"{'(...)' if not what.startswith('on_') else ''} "
                             f"{'retrain(...)' if what.startswith('on_') else ''}, got "
                             f"{echo(value)!r}".replace("  ", " "))
    channels = tuple(alerts)
    for c in channels:
        if not isinstance(c, Webhook | Log):
            raise UsageError(f"monitor {name!r}: alerts= takes webhook(...) and log() channels, "
                             f"got {echo(c)!r}")
    if on_decay is not None and performance is None:
        raise UsageError(f"monitor {name!r}: on_decay= needs performance=... (decay is measured "
                         "on late labels)")
    window_span = _span(window, f"monitor {name!r} window", "1d")
    every_span = _span(every, f"monitor {name!r} every", "1h")
    return MonitorDefinition(
        name, target, reference if isinstance(reference, str) else dict(reference),
        window_span, every_span, DriftCheck() if drift is _UNSET else drift,
        QualityCheck() if quality is _UNSET else quality, performance, slo, channels,
        _span(cooldown, f"monitor {name!r} cooldown", "6h"), on_decay, on_drift)


__all__ = ["DriftCheck", "MonitorDefinition", "PerformanceCheck", "QualityCheck",
           "RetrainPolicy", "SloCheck", "drift", "log", "monitor", "performance", "quality",
           "retrain", "slo", "webhook"]
