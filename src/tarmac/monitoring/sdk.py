"""``p.monitoring``: the monitoring namespace of a project.

Example::

    report = p.monitoring.drift(p.models.get("churn", 3).reference_profile,
                                "SELECT * FROM scored WHERE day = current_date")
    report.drifted                     # ['amount', 'plan']
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tarmac.catalog.alerts import DeliveryRecord
from tarmac.catalog.monitors import MonitorRun, RetrainLoop, monitor_runs, retrain_loops
from tarmac.monitoring._drift import DriftReport
from tarmac.monitoring._drift import drift as _drift
from tarmac.monitoring._labels import LABELS_TABLE, LabelJoin, ingest_labels, join_labels
from tarmac.monitoring._performance import performance
from tarmac.monitoring.alerts import alert_history
from tarmac.monitoring.declare import MonitorDefinition
from tarmac.monitoring.report import WINDOWS, monitor_report
from tarmac.monitoring.results import read_results

if TYPE_CHECKING:
    from tarmac.lake.lake import WriteResult
    from tarmac.monitoring.monitor import Evaluation, MonitorChange
    from tarmac.project import Project


class Monitoring:
    """Drift, late labels, performance, alerts and the declared monitors of one project."""

    def __init__(self, project: Project) -> None:
        self._project = project

    def drift(self, reference: Any, current: Any, columns: Sequence[str] | None = None,
              **options: Any) -> DriftReport:
        """Test each column of ``current`` for drift from ``reference``: one row per column
        with the test, its p-value corrected for the number of columns, the effect size and
        its class, and the verdict (see ``tarmac.monitoring.drift`` for the options).

        Each side may be a lake table name or SQL text (run on this project), an Arrow table
        or dataset, or a pandas DataFrame; the reference may also be a stored profile, such as
        a model version's ``reference_profile``.

        Example, on a project whose ``signals`` table holds 600 customers with two normal
        signals ``a`` and ``b``: the customers with a positive ``a`` have drifted in ``a`` only.

        >>> report = p.monitoring.drift("signals", "SELECT * FROM signals WHERE a > 0",
        ...                             columns=["a", "b", "region"])
        >>> report.drifted
        ['a']
        >>> report["a"].effect_class, report["b"].verdict
        ('large', 'not drifted')
        """
        return _drift(reference, current, columns, project=self._project, **options)

    def alert_history(self, monitor: str | None = None, *,
                      limit: int = 100) -> list[DeliveryRecord]:
        """Alert deliveries of ``monitor`` (of all monitors if ``None``), newest first: per
        notice and channel whether it was delivered, after how many attempts, the last status
        code and error (see ``tarmac.monitoring.alerts``).

        Example: ``[(d.state, d.outcome) for d in p.monitoring.alert_history("churn")]``
        """
        return alert_history(self._project, monitor, limit=limit)

    # -- declared monitors ------------------------------------------------------------------

    def monitors(self) -> dict[str, MonitorDefinition]:
        """The monitors ``definitions.py`` declares, by name."""
        from tarmac.monitoring.monitor import declared_monitors

        return declared_monitors(self._project)

    def apply(self, *, dry_run: bool = False) -> list[MonitorChange]:
        """Register the declared monitors (``tarmac apply`` does, with the features): which
        were added, changed, unchanged, or are no longer declared (see
        ``tarmac.monitoring.monitor.apply_monitors``)."""
        from tarmac.monitoring.monitor import apply_monitors

        return apply_monitors(self._project, dry_run=dry_run)

    def run(self, name: str | None = None, *, at: datetime | None = None,
            force: bool = False, alerts: bool = True) -> list[Evaluation]:
        """Evaluate the window due at ``at`` (default now) of one monitor, or of every declared
        one, as ``tarmac monitor run`` does: results stored, alerts sent, retraining started
        per policy. A window evaluated already is left out (``force`` evaluates it again).

        Example::

            [ev] = p.monitoring.run("churn")
            ev.verdict, [(r.check, r.column) for r in ev.failing]
        """
        from tarmac.monitoring.monitor import run_monitor

        names = [name] if name is not None else list(self.monitors())
        found = (run_monitor(self._project, n, at=at, force=force, alerts=alerts)
                 for n in names)
        return [ev for ev in found if ev is not None]

    def runs(self, monitor: str | None = None, *, limit: int = 50) -> list[MonitorRun]:
        """Evaluated windows (of one monitor, or of all), newest window first: status,
        verdict, how many checks ran, failed and decided nothing, the failing checks, and how
        many attempts the window took.

        Example: ``[(r.window_end, r.verdict) for r in p.monitoring.runs("churn", limit=5)]``
        """
        return monitor_runs(self._project.catalog, monitor, limit=limit)

    def retraining(self, *, model: str | None = None, monitor: str | None = None,
                   limit: int = 50) -> list[RetrainLoop]:
        """Retraining loops monitors started, newest first: their state, the version each
        trained, the champion it replaced and the monitor run that triggered it.

        Example: ``[(lp.state, lp.version) for lp in p.monitoring.retraining(model="churn")]``
        """
        return retrain_loops(self._project.catalog, model=model, monitor=monitor, limit=limit)

    def results(self, monitor: str | None = None, *, check: str | None = None,
                since: datetime | None = None) -> pa.Table:
        """Rows of the ``monitor_results`` lake table, oldest window first (see
        ``tarmac.monitoring.results``): the trend of every check over windows."""
        return read_results(self._project, monitor, check=check, since=since)
    def report(self, monitor: str, *, windows: int = WINDOWS) -> str:
        """One self-contained HTML page of ``monitor``'s last ``windows`` evaluated windows:
        the latest verdict and what fails, drift per feature (reference vs current, effect
        size per window against its threshold), quality, performance and SLO trends, and the
        alerts sent (see ``tarmac.monitoring.report``).

        Example: ``Path("churn.html").write_text(p.monitoring.report("churn"))``
        """
        return monitor_report(self._project, monitor, windows=windows)

    def join_labels(self, predictions: Any, labels: Any, *, label_column: str,
                    id_column: str | None = None, entity: str | None = None,
                    timestamp: str | None = None, delay: timedelta | str = "30d",
                    endpoint: str | None = None) -> LabelJoin:
        """Late labels joined to the prediction log: by prediction id when the labels carry
        it, else the latest prediction for the entity at or before the label's time, within
        ``delay``; duplicate, unknown and invalid labels counted (see
        ``tarmac.monitoring.join_labels``).

        Example::

            j = p.monitoring.join_labels("predictions", "labels", label_column="churned",
                                         entity="customer_id", timestamp="observed_at")
            j.joined, j.duplicates, j.unknown, j.unlabelled
        """
        return join_labels(self._project, predictions, labels, label_column=label_column,
                           id_column=id_column, entity=entity, timestamp=timestamp,
                           delay=delay, endpoint=endpoint)

    def performance(self, joined: LabelJoin | pa.Table,
                    metrics: Sequence[str] = ("roc_auc", "pr_auc"),
                    window: timedelta | str = "1d", slices: Sequence[str] | None = None,
                    complete_after: timedelta | str | None = None,
                    **options: Any) -> pa.Table:
        """The gates' metrics per window of prediction time and per slice, windows whose
        labels are not complete marked so (see ``tarmac.monitoring.performance``).

        Example::

            p.monitoring.performance(j, ["roc_auc", "pr_auc"], window="1d", slices=["region"])
        """
        return performance(joined, metrics, window, slices, complete_after, **options)

    def ingest_labels(self, source: str | Path | pa.Table, *, label_column: str,
                      id_column: str | None = None, entity: str | None = None,
                      timestamp: str | None = None, table: str = LABELS_TABLE) -> WriteResult:
        """Append a labels file (CSV, JSON Lines, Parquet) or Arrow table to the ``labels``
        lake table (an audited lake write); a missing id or label column is refused.

        Example::

            p.monitoring.ingest_labels("outcomes.csv", label_column="churned",
                                       id_column="prediction_id")
        """
        return ingest_labels(self._project, source, label_column=label_column,
                             id_column=id_column, entity=entity, timestamp=timestamp,
                             table=table)
