"""Gates: the checks a model version must pass before it can replace the champion.

Declare them next to the model in ``definitions.py``::

    from tarmac.gates import *

    gates = [
        metric("roc_auc") >= 0.75,
        no_regression("roc_auc", tolerance=0.01),       # vs the champion, same holdout
        slice_metric("roc_auc", by="region") >= 0.70,   # every slice with >= 30 rows
        slice_gap("roc_auc", by="region") <= 0.10,      # best minus worst slice
        latency(p99_ms=20),
        no_nulls_in_predictions(),
        prediction_range(min=0.0, max=1.0),
        custom(lambda ctx: len(ctx.holdout) >= 1000, name="holdout has 1,000 rows"),
    ]

``run_gates(gates, ctx)`` judges one version and returns a ``Report`` (status, exit code,
Markdown for a pull request); ``signature_compatible()`` is added when not declared.
"""

from __future__ import annotations

from tarmac.gates._base import Gate
from tarmac.gates._context import Champion, GateContext
from tarmac.gates._declare import (
    custom,
    latency,
    metric,
    no_nulls_in_predictions,
    no_regression,
    prediction_range,
    signature_compatible,
    slice_gap,
    slice_metric,
)
from tarmac.gates._runner import run_gates
from tarmac.gates.report import GateResult, Report

__all__ = [
    "Champion",
    "Gate",
    "GateContext",
    "GateResult",
    "Report",
    "custom",
    "latency",
    "metric",
    "no_nulls_in_predictions",
    "no_regression",
    "prediction_range",
    "run_gates",
    "signature_compatible",
    "slice_gap",
    "slice_metric",
]
