"""Prometheus metrics of one server process (``GET /metrics``), in a registry of its own (two
apps in one process, as in tests, do not share counters). With several uvicorn workers each
process answers with its own figures; a Prometheus scrape of the Service sums them.

Example::

    m = Metrics(); m.observe("churn", 3, "champion", 200, 0.004)
    m.render()      # the text exposition format
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

BUCKETS = (.001, .0025, .005, .0075, .01, .015, .02, .03, .05, .075, .1, .25, .5, 1, 2.5, 5)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The serving metrics: requests and latency per endpoint/version/status, feature value
    statuses, in-flight requests, model load failures and the prediction log's backlog."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("tarmac_predict_requests", "Predict requests answered",
                                ["endpoint", "version", "status"], registry=r)
        self.latency = Histogram("tarmac_predict_latency_seconds",
                                 "Predict latency in the server (parse to answer)",
                                 ["endpoint", "version"], buckets=BUCKETS, registry=r)
        self.predictions = Counter("tarmac_predictions", "Rows scored",
                                   ["endpoint", "version", "role"], registry=r)
        self.features = Counter("tarmac_feature_values",
                                "Feature values used, by status (missing, stale, ...)",
                                ["endpoint", "status"], registry=r)
        self.in_flight = Gauge("tarmac_in_flight_requests", "Predict requests being answered",
                               registry=r)
        self.rejected = Counter("tarmac_overload_rejections",
                                "Requests refused with 503 over the in-flight bound",
                                registry=r)
        self.load_failures = Gauge("tarmac_model_load_failures",
                                   "Versions that failed to load (1 while unresolved)",
                                   ["endpoint", "version"], registry=r)
        self.served = Gauge("tarmac_model_serving", "The version serving each role",
                            ["endpoint", "role"], registry=r)
        self.log_pending = Gauge("tarmac_prediction_log_pending",
                                 "Predictions answered but not yet flushed to the lake",
                                 registry=r)
        self.log_lag = Gauge("tarmac_prediction_log_flush_lag_seconds",
                             "Age of the oldest unflushed prediction", registry=r)
        self._collectors: list[Callable[[Metrics], None]] = []

    def on_render(self, collect: Callable[[Metrics], None]) -> None:
        """Run ``collect`` before each render (to set gauges read from elsewhere)."""
        self._collectors.append(collect)

    def observe(self, endpoint: str, version: int | None, status: int, seconds: float) -> None:
        v = "-" if version is None else str(version)
        self.requests.labels(endpoint, v, str(status)).inc()
        self.latency.labels(endpoint, v).observe(seconds)

    def count_features(self, endpoint: str, counts: dict[str, int]) -> None:
        for status, n in counts.items():
            if n:
                self.features.labels(endpoint, status).inc(n)

    def render(self) -> bytes:
        for collect in self._collectors:
            collect(self)
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, Any] | None = None) -> float | None:
        """One sample's value (tests, ``deploy status``)."""
        got = self.registry.get_sample_value(name, {k: str(v) for k, v in
                                                    (labels or {}).items()})
        return got


__all__ = ["CONTENT_TYPE", "Metrics"]
