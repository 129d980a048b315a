"""``p.monitoring``: the monitoring namespace of a project.

Example::

    report = p.monitoring.drift(p.models.get("churn", 3).reference_profile,
                                "SELECT * FROM scored WHERE day = current_date")
    report.drifted                     # ['amount', 'plan']
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tarmac.catalog.alerts import DeliveryRecord
from tarmac.monitoring._drift import DriftReport
from tarmac.monitoring._drift import drift as _drift
from tarmac.monitoring._labels import LABELS_TABLE, LabelJoin, ingest_labels, join_labels
from tarmac.monitoring._performance import performance
from tarmac.monitoring.alerts import alert_history

if TYPE_CHECKING:
    from tarmac.lake.lake import WriteResult
    from tarmac.project import Project


class Monitoring:
    """Drift, late labels and performance (and, as they land, quality and alerts) for one
    project."""

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
