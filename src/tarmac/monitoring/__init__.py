"""Monitoring: is live data still like the data a model learned from?

``drift(reference, current)`` tests every column of a current window against a reference (a
table, a frame, a dataset, SQL or a lake table, or the training profile stored with a model
version) and returns a ``DriftReport``: per column a two-sample test, its p-value corrected for
the number of columns, an effect size with its class (none/small/medium/large), and a verdict
that needs both, so a million rows do not turn noise into alarms. ``p.monitoring.drift`` is
the same on a project, where text names a lake table or is SQL. See ``docs/monitoring.md``.

Example::

    import tarmac
    p = tarmac.open(".")
    report = p.monitoring.drift("train_rows", "SELECT * FROM scored WHERE day = '2024-06-01'")
    report.drifted                  # ['amount']
    report["amount"].effect_class   # 'small'
    print(report)                   # a table; report.to_html() a page with plots

Alerts (``tarmac.monitoring.alerts``): ``Alerter(p, [webhook("${ALERT_URL}"), log()])``
turns check results into one notice per episode, reminders after a cooldown and a resolved
notice, delivered with retries and recorded (``alert_history(p, "churn")``).
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
from tarmac.monitoring.sdk import Monitoring

__all__ = ["EFFECT_CLASSES", "MIN_ROWS", "THRESHOLDS", "Alert", "Alerter", "CheckResult",
           "ColumnDrift", "Delivery", "DriftReport", "EffectClass", "Monitoring", "Notice",
           "Verdict", "alert_history", "drift", "log", "webhook"]
