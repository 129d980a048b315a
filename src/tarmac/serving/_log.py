"""The one seam between the predict path and the prediction log (``tarmac.serving.predlog``).

The predict path builds one plain record per prediction (the fields of ``PredictionRecord``) and
hands them here; ``PredictionLog.append`` makes them durable before the answer is sent. An
append the log refuses (backpressure: its spill bound is reached; its segment cannot be written)
raises ``LogUnavailable``, which the caller answers with 503: a prediction is never answered
without its record. The log is set up from the project file (``PredictionLog.from_config``: fsync
policy, spill bound, flush interval; docs/prediction-log.md). ``serving.prediction_log.enabled:
false`` in the project file, or ``TARMAC_PREDICTION_LOG=off`` in the server's environment, turns
it off: answers are not recorded, which the server logs at start and ``/ready`` reports.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tarmac.errors import TarmacError
from tarmac.serving import predlog as _predlog

if TYPE_CHECKING:
    from tarmac.project import Project

log = logging.getLogger("tarmac.serving")

class LogUnavailable(TarmacError):
    """The prediction log cannot take records now (backpressure, disk): answer 503 with
    ``Retry-After: retry_after``."""

    def __init__(self, message: str, *, hint: str | None = None,
                 retry_after: float = 1.0) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


_OFF = ("0", "off", "false", "no")


def enabled(project: Project) -> bool:
    """Whether predictions are recorded: on unless the project file or the environment
    (``TARMAC_PREDICTION_LOG=off``) turns the log off."""
    return _off_reason(project) is None


def _off_reason(project: Project) -> str | None:
    """What turned the log off, or None when it is on."""
    value = os.environ.get("TARMAC_PREDICTION_LOG", "")
    if value.strip().lower() in _OFF:
        return f"TARMAC_PREDICTION_LOG={value}"
    if not project.config.serving.prediction_log.enabled:
        return "serving.prediction_log.enabled: false in tarmac.yaml"
    return None


def new_id() -> str:
    """A new prediction id (time-ordered, unique across processes: the log's scheme)."""
    return str(_predlog.new_prediction_id())


class Log:
    """The prediction log of one process (off when the project or environment says so)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._log: Any = None
        self.off_reason = _off_reason(project)
        self.enabled = self.off_reason is None
        self._warned = False

    def start(self) -> None:
        if not self.enabled:
            if not self._warned:
                self._warned = True
                log.warning("the prediction log is OFF (%s): predictions are answered but not "
                            "recorded", self.off_reason)
            return
        if self._log is None:
            opened = _predlog.PredictionLog.from_config(self.project)
            opened.start()
            self._log = opened

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Make ``records`` durable (raises ``LogUnavailable`` when the log refuses them)."""
        if not records or not self.enabled:
            return
        if self._log is None:
            self.start()
        try:
            self._log.append([_predlog.PredictionRecord(**r) for r in records])
        except _predlog.PredictionLogError as exc:
            raise LogUnavailable(exc.message, hint=exc.hint,
                                 retry_after=exc.retry_after) from exc
        except OSError as exc:
            raise LogUnavailable(f"the prediction log cannot be written: {exc}") from exc

    def stats(self) -> dict[str, Any]:
        """The log's counters (``LogStats`` as a dict: appended, flushed, pending_rows,
        flush_lag_s, writable, last_error ...); empty when not started."""
        if self._log is None:
            return {}
        try:
            return dataclasses.asdict(self._log.stats())
        except Exception as exc:
            log.warning("prediction log stats failed: %s", exc)
            return {}

    def flush(self) -> None:
        if self._log is not None:
            self._log.flush()

    def close(self) -> None:
        log_, self._log = self._log, None
        if log_ is not None:
            log_.close()


def read(project: Project, endpoint: str, *, since: Any = None, limit: int | None = None
         ) -> Any:
    """The logged predictions of ``endpoint`` (the predlog package's ``read_predictions``)."""
    kwargs: dict[str, Any] = {"since": since}
    if limit is not None:
        kwargs["limit"] = limit
    return _predlog.read_predictions(project, endpoint, **kwargs)


__all__ = ["Log", "LogUnavailable", "enabled", "new_id", "read"]
