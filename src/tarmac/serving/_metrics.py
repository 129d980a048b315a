"""Prometheus metrics of a server (``GET /metrics``).

One process (``tarmac serve --workers 1``, ``running(p)``, ``p.serving``, tests): the metrics
live in a registry of this ``Metrics`` instance (two apps in one process do not share counters).

Several uvicorn workers (``tarmac serve``'s default): a scrape reaches ONE worker, so each
answering with its own figures would make counters jump between workers' values. Instead
``tarmac serve`` gives the workers a private, fresh directory in ``PROMETHEUS_MULTIPROC_DIR``
(``server.metrics_dir``; set before the workers start, so prometheus-client picks its
multiprocess mode when the worker imports it) and every worker writes its values there; whichever
worker answers ``/metrics`` reads all the files (``MultiProcessCollector``) and reports the whole
server: counters and histograms summed over every worker that ever ran (a restarted worker's
counts are kept), gauges combined per gauge: in-flight requests and the log's pending rows summed
over the live workers, the log's flush lag and load failures their maximum, the version serving
each role the most recent value. Gauges read from elsewhere (``on_render``) are refreshed by each
worker every ``REFRESH_S``, so a worker that is not scraped still contributes; a worker that
stopped or died no longer does (``mark_process_dead``). A load failure that is resolved reads 0
(series cannot be removed from the files).

Example::

    m = Metrics(); m.observe("churn", 3, "champion", 200, 0.004)
    m.render()      # the text exposition format
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)

log = logging.getLogger("tarmac.serving")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REFRESH_S = 1.0  # how often a worker refreshes the gauges read from elsewhere (several workers)
_PID = re.compile(r"_(\d+)\.db$")

def multiprocess_dir() -> str | None:
    """The directory this process's metrics are shared through, or None (one process): set
    in the environment AND in effect (prometheus-client was imported after it was set)."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path or values.ValueClass is values.MutexValue:
        return None
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


BUCKETS = (.001, .0025, .005, .0075, .01, .015, .02, .03, .05, .075, .1, .25, .5, 1, 2.5, 5)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The serving metrics: requests and latency per endpoint/version/status, feature value
    statuses, in-flight requests, model load failures, the prediction log's backlog, and the
    produce requests and records of the topic endpoint."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.shared_dir = multiprocess_dir()  # None: this process's figures only
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
                               registry=r, multiprocess_mode="livesum")
        self.rejected = Counter("tarmac_overload_rejections",
                                "Requests refused with 503 over the in-flight bound",
                                registry=r)
        self.load_failures = Gauge("tarmac_model_load_failures",
                                   "Versions that failed to load (1 while unresolved)",
                                   ["endpoint", "version"], registry=r,
                                   multiprocess_mode="livemax")
        self.served = Gauge("tarmac_model_serving", "The version serving each role",
                            ["endpoint", "role"], registry=r,
                            multiprocess_mode="livemostrecent")
        self.log_pending = Gauge("tarmac_prediction_log_pending",
                                 "Predictions answered but not yet flushed to the lake",
                                 registry=r, multiprocess_mode="livesum")
        self.log_lag = Gauge("tarmac_prediction_log_flush_lag_seconds",
                             "Age of the oldest unflushed prediction", registry=r,
                             multiprocess_mode="livemax")
        self.topic_requests = Counter("tarmac_topic_requests",
                                      "Produce requests answered (POST /v1/topics/{topic}); "
                                      "topic '-' for names that are no topic",
                                      ["topic", "status"], registry=r)
        self.topic_records = Counter("tarmac_topic_records", "Records produced over HTTP",
                                     ["topic"], registry=r)
        self.topic_latency = Histogram("tarmac_topic_latency_seconds",
                                       "Produce latency in the server (body read to answer)",
                                       ["topic"], buckets=BUCKETS, registry=r)
        self._collectors: list[Callable[[Metrics], None]] = []
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    def on_render(self, collect: Callable[[Metrics], None]) -> None:
        """Run ``collect`` before each render (to set gauges read from elsewhere); with
        several workers also every ``REFRESH_S`` from a thread of this worker."""
        self._collectors.append(collect)
        if self.shared_dir is not None and self._refresher is None:
            self._refresher = threading.Thread(target=self._refresh, daemon=True,
                                               name="tarmac-metrics")
            self._refresher.start()

    def _collect(self) -> None:
        for collect in self._collectors:
            try:
                collect(self)
            except Exception as exc:  # a gauge read from elsewhere never fails a scrape
                log.warning("metrics: collecting gauges failed: %s", exc)

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_S):
            self._collect()

    def close(self) -> None:
        """Stop refreshing; with several workers, this worker's live gauges leave the sums."""
        self._stop.set()
        thread, self._refresher = self._refresher, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(REFRESH_S * 2)
        if self.shared_dir is not None:
            from prometheus_client import multiprocess

            with contextlib.suppress(OSError):
                multiprocess.mark_process_dead(os.getpid(), self.shared_dir)

    def _reap(self, path: str) -> None:
        """Forget the live gauges of workers that died without stopping (killed, crashed)."""
        from prometheus_client import multiprocess

        pids = {int(m.group(1)) for f in glob.glob(os.path.join(path, "gauge_live*_*.db"))
                if (m := _PID.search(f))}
        for pid in pids - {os.getpid()}:
            if not _alive(pid):
                with contextlib.suppress(OSError):
                    multiprocess.mark_process_dead(pid, path)

    def _exposed(self) -> CollectorRegistry:
        """The registry a scrape reads: this instance's, or every worker's files."""
        if self.shared_dir is None:
            return self.registry
        from prometheus_client import multiprocess

        self._reap(self.shared_dir)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self.shared_dir)
        return merged

    def observe(self, endpoint: str, version: int | None, status: int, seconds: float) -> None:
        v = "-" if version is None else str(version)
        self.requests.labels(endpoint, v, str(status)).inc()
        self.latency.labels(endpoint, v).observe(seconds)

    def observe_topic(self, topic: str, status: int, records: int, seconds: float) -> None:
        """One produce request: its answer, the records it appended, its latency."""
        self.topic_requests.labels(topic, str(status)).inc()
        self.topic_latency.labels(topic).observe(seconds)
        if records:
            self.topic_records.labels(topic).inc(records)

    def count_features(self, endpoint: str, counts: dict[str, int]) -> None:
        for status, n in counts.items():
            if n:
                self.features.labels(endpoint, status).inc(n)

    def render(self) -> bytes:
        self._collect()
        return generate_latest(self._exposed())

    def value(self, name: str, labels: dict[str, Any] | None = None) -> float | None:
        """One sample's value, as a scrape would report it (tests, ``deploy status``)."""
        got = self._exposed().get_sample_value(name, {k: str(v) for k, v in
                                                      (labels or {}).items()})
        return got


__all__ = ["CONTENT_TYPE", "MULTIPROC_ENV", "Metrics", "multiprocess_dir"]
