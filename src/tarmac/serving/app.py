"""The app factory: ``create_app(project)`` serves a project's features, its models and its
stream topics over HTTP as one app built from a router per concern (``_base.build_app``);
``app_from_env()`` opens the project named by ``TARMAC_PROJECT`` (what each uvicorn worker
process calls, with ``factory=True``).

Endpoints shared by every concern: ``GET /health`` (liveness: the process answers) and
``GET /ready`` (readiness: each concern's own check, e.g. the registry can be read, the online
store answers and holds the materialized values; 503 with ``Retry-After`` otherwise). A bug
never reaches the caller as a stack trace: it gets 500 ``{"detail": "internal error: <type>"}``
and the trace goes to the log under the request id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI

from tarmac.serving._access import AccessLog
from tarmac.serving._auth import Gate
from tarmac.serving._auth import required as auth_required
from tarmac.serving._base import TarmacApp, build_app
from tarmac.serving.features_api import MAX_BODY_BYTES, features_concern
from tarmac.serving.predict import Predictions
from tarmac.serving.predict_api import models_concern
from tarmac.serving.topics_api import topics_concern

if TYPE_CHECKING:
    from tarmac.project import Project


def create_app(project: Project, *, owns_project: bool = False,
               access_log: bool = False, log_file: Path | None = None,
               host: str | None = None) -> FastAPI:
    """A FastAPI app serving ``project``: ``POST /features``, ``POST /v1/predict/{name}`` and
    ``POST /v1/topics/{topic}`` (records appended to a stream source's topic, checked).
    It keeps one FeatureStore (``project.features``) and one set of loaded models (kept
    current by a hot-reload poller) for its lifetime; ``owns_project``: close the project
    when the app shuts down.
    ``access_log``: one JSON line per request to ``log_file`` (else stderr), written by a
    background thread while the app runs. ``host`` is the address it listens on, which
    ``auth: auto`` reads (tokens are required beyond loopback; see ``tarmac.serving._auth``)."""
    predictions = Predictions(project)
    app = build_app(
        f"Tarmac: {project.name}",
        [features_concern(project.features), models_concern(predictions),
         topics_concern(project, predictions.metrics)],
        description="Online features, model predictions and stream ingestion of the project.",
        version=_version(), max_body_size=MAX_BODY_BYTES,
        access_log=AccessLog(log_file) if access_log else None,
        on_shutdown=project.close if owns_project else None)
    if auth_required(project, host):
        app.gate = Gate(project, project.identity)
    return app


def app_from_env() -> FastAPI:
    """The app of the project in ``TARMAC_PROJECT`` (else the nearest folder with tarmac.yaml),
    for ``uvicorn --factory tarmac.serving.app:app_from_env``; it closes the project on exit.
    ``TARMAC_ACCESS_LOG=1`` turns the access log on, to ``TARMAC_LOG_FILE`` if set."""
    import tarmac

    log_file = os.environ.get("TARMAC_LOG_FILE")
    return create_app(tarmac.open(os.environ.get("TARMAC_PROJECT") or None), owns_project=True,
                      access_log=os.environ.get("TARMAC_ACCESS_LOG") == "1",
                      log_file=Path(log_file) if log_file else None,
                      host=os.environ.get("TARMAC_SERVE_HOST"))


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("tarmac")
    except Exception:  # not installed as a distribution
        return "0"


__all__ = ["TarmacApp", "app_from_env", "create_app"]
