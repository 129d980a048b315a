"""``p.monitoring``: the monitoring namespace of a project.

Example::

    report = p.monitoring.drift(p.models.get("churn", 3).reference_profile,
                                "SELECT * FROM scored WHERE day = current_date")
    report.drifted                     # ['amount', 'plan']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tarmac.catalog.alerts import DeliveryRecord
from tarmac.monitoring._drift import DriftReport
from tarmac.monitoring._drift import drift as _drift
from tarmac.monitoring.alerts import alert_history

if TYPE_CHECKING:
    from tarmac.project import Project


class Monitoring:
    """Drift (and, as they land, quality, performance and alerts) for one project."""

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
