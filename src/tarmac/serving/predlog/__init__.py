"""The prediction log: every prediction durable before its response, then in the
``predictions`` lake table exactly once.

``PredictionLog.append`` writes records to a write-ahead segment the process owns (one
``write`` call); a background flusher commits them to the table with a Delta
application-transaction marker per segment, one audit record per flush and the lineage
``model:NAME@V -> predictions@version``; ``start()`` recovers what killed processes left.
docs/prediction-log.md has the format and the guarantees.

Example::

    from tarmac.serving.predlog import PredictionLog, read_predictions

    with PredictionLog(p) as log:              # start() ... close()
        log.append([record])                   # a PredictionRecord per prediction
    read_predictions(p, "churn", since="1h").num_rows
"""

from tarmac.serving.predlog._commit import TABLE
from tarmac.serving.predlog._log import (
    FSYNC_POLICIES,
    LogBackpressure,
    LogStats,
    LogUnavailable,
    PredictionLog,
    PredictionLogError,
)
from tarmac.serving.predlog._read import (
    EndpointTotals,
    LogTotals,
    log_totals,
    parse_since,
    read_predictions,
)
from tarmac.serving.predlog._record import SCHEMA, PredictionRecord, new_prediction_id

__all__ = [
    "FSYNC_POLICIES",
    "SCHEMA",
    "TABLE",
    "EndpointTotals",
    "LogBackpressure",
    "LogStats",
    "LogTotals",
    "LogUnavailable",
    "PredictionLog",
    "PredictionLogError",
    "PredictionRecord",
    "log_totals",
    "new_prediction_id",
    "parse_since",
    "read_predictions",
]
