"""Monitoring: is live data still like the data a model learned from?

``drift(reference, current)`` tests every column of a current window against a reference (a
table, a frame, a dataset, SQL or a lake table, or the training profile stored with a model
version) and returns a ``DriftReport``: per column a two-sample test, its p-value corrected for
the number of columns, an effect size with its class (none/small/medium/large), and a verdict
that needs both, so a million rows do not turn noise into alarms. ``p.monitoring.drift`` is
the same on a project, where text names a lake table or is SQL. ``join_labels`` joins late
labels to the prediction log (by prediction id, else by entity and time) and ``performance``
computes the gates' metrics per window and slice from them, marking windows whose labels are
not complete yet. See ``docs/monitoring.md``.

Example::

    import tarmac
    p = tarmac.open(".")
    report = p.monitoring.drift("train_rows", "SELECT * FROM scored WHERE day = '2024-06-01'")
    report.drifted                  # ['amount']
    report["amount"].effect_class   # 'small'
    print(report)                   # a table; report.to_html() a page with plots

Monitors are declared in ``definitions.py`` with ``tarmac.monitoring.declare.monitor`` and
evaluated window by window by ``run_monitor`` (``tarmac monitor run``, ``p.monitoring.run``) or
the scheduler (``tarmac scheduler``): results in the ``monitor_results`` lake table, alerts to
the declared channels, and the retraining loop started on decay or drift.

Alerts (``tarmac.monitoring.alerts``): ``Alerter(p, [webhook("${ALERT_URL}"), log()])``
turns check results into one notice per episode, reminders after a cooldown and a resolved
notice, delivered with retries and recorded (``alert_history(p, "churn")``).

``monitor_report(p, "churn")`` (``p.monitoring.report``, ``tarmac monitor report``) is one
self-contained HTML page of a monitor's recent windows: drift per feature, trends and alerts.
"""

from __future__ import annotations

from tarmac.monitoring._drift import (
    EFFECT_CLASSES,
    MIN_ROWS,
    THRESHOLDS,
    ColumnDrift,
    DriftReport,
    EffectClass,
    Verdict,
    drift,
)
from tarmac.monitoring._labels import (
    LABELS_TABLE,
    PREDICTION_ID,
    LabelJoin,
    ingest_labels,
    join_labels,
    read_labels_file,
)
from tarmac.monitoring._performance import performance
from tarmac.monitoring.alerts import (
    Alert,
    Alerter,
    CheckResult,
    Delivery,
    Notice,
    alert_history,
    log,
    webhook,
)
from tarmac.monitoring.monitor import Evaluation, run_monitor
from tarmac.monitoring.report import monitor_report
from tarmac.monitoring.sdk import Monitoring

__all__ = ["EFFECT_CLASSES", "LABELS_TABLE", "MIN_ROWS", "PREDICTION_ID", "THRESHOLDS", "Alert",
           "Alerter", "CheckResult", "ColumnDrift", "Delivery", "DriftReport", "EffectClass",
           "Evaluation",
           "LabelJoin", "Monitoring", "Notice", "Verdict", "alert_history", "drift",
           "ingest_labels", "join_labels", "log", "monitor_report", "performance",
           "read_labels_file", "run_monitor", "webhook"]
