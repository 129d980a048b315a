"""The app factory: ``create_app(project)`` serves a project's features (and, later, its
models) over HTTP; ``app_from_env()`` opens the project named by ``TARMAC_PROJECT`` (what each
uvicorn worker process calls, with ``factory=True``).

Endpoints shared by every concern: ``GET /health`` (liveness: the process answers) and
``GET /ready`` (readiness: the registry can be read and the online store answers a ping;
503 otherwise). A bug never reaches the caller as a stack trace: it gets 500
``{"detail": "internal error: <type>"}`` and the trace goes to the log.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tarmac.errors import TarmacError
from tarmac.serving._access import REQUEST_ID_HEADER, AccessLog, RequestIds
from tarmac.serving.features_api import (
    MAX_BODY_BYTES,
    ErrorBody,
    FeatureEndpoints,
    features_router,
)

if TYPE_CHECKING:
    from tarmac.project import Project

log = logging.getLogger("tarmac.serving")

_JSON = "application/json"
_OK = orjson.dumps({"status": "ok"})


class TarmacApp(FastAPI):
    """FastAPI with a fast lane: hot endpoints registered with ``add_fast_route`` are also
    bare ASGI apps, run directly for their (method, path), skipping the framework's request
    cycle (routing, dependency solving, telemetry and middleware layers: about 190 of the 240
    microseconds of CPU a one-entity ``POST /features`` takes in process). They are documented
    and served as ordinary routes too: the fast lane is closed, and the ordinary route
    answers, when the app has user middleware, a root path or OpenTelemetry on, so nothing
    that wraps requests is ever bypassed.

    Every HTTP request, fast lane or not, gets a request id (``X-Request-ID`` in and out, in
    ``scope["tarmac.request_id"]`` for the endpoints' log lines) and, when ``access_log`` is
    set, one access log record queued after the answer is sent."""

    def __init__(self, *, access_log: AccessLog | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_routes: dict[tuple[str, str], ASGIApp] = {}
        self._fast_lane: bool | None = None  # decided on the first request
        self.access_log = access_log
        self.request_ids = RequestIds()

    def add_fast_route(self, method: str, path: str, endpoint: ASGIApp) -> None:
        self.fast_routes[(method.upper(), path)] = endpoint

    def _fast_lane_open(self) -> bool:
        if self._fast_lane is None:
            telemetry = getattr(self, "_native_telemetry", None)
            self._fast_lane = (not self.user_middleware and not self.root_path
                               and not (telemetry is not None and telemetry.enabled()))
        return self._fast_lane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        started = time.perf_counter()
        rid = self.request_ids.of(scope)
        scope["tarmac.request_id"] = rid
        id_header = (REQUEST_ID_HEADER, rid.encode())
        status = 500  # if no answer starts (the client went away, a crash)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        try:
            endpoint = self.fast_routes.get((scope["method"], scope["path"]))
            if endpoint is not None and self._fast_lane_open():
                await endpoint(scope, receive, send_with_id)
            else:
                await super().__call__(scope, receive, send_with_id)
        finally:
            if self.access_log is not None:
                self.access_log.record(scope["method"], scope["path"], status,
                                       (time.perf_counter() - started) * 1000, rid)


def create_app(project: Project, *, owns_project: bool = False,
               access_log: bool = False, log_file: Path | None = None) -> FastAPI:
    """A FastAPI app serving ``project``. It keeps one FeatureStore (``project.features``) for
    its lifetime; ``owns_project``: close the project when the app shuts down.
    ``access_log``: one JSON line per request to ``log_file`` (else stderr), written by a
    background thread while the app runs."""
    store = project.features
    access = AccessLog(log_file) if access_log else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Warm up so the first request does not pay for it: the registry cache and the online
        # store's connection. A failure is not fatal: /ready reports it, requests get 503.
        try:
            store.registered()
            store.online_store.ping()
        except Exception as exc:  # reported by /ready, not raised
            log.warning("tarmac serve: not ready yet: %s", exc)
        if access is not None:
            access.start()
        try:
            yield
        finally:
            if access is not None:
                access.stop()
            if owns_project:
                project.close()

    app = TarmacApp(
        title=f"Tarmac: {project.name}",
        description="Online features of the project (and, later, its models).",
        version=_version(),
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
        access_log=access,
    )
    app.state.project = project

    @app.get("/health", tags=["service"], summary="Liveness: the process answers")
    async def health() -> Response:
        return Response(_OK, media_type=_JSON)

    @app.get("/ready", tags=["service"], summary="Readiness: the registry and online store "
                                                 "answer and the materialized values are there",
             responses={503: {"model": ErrorBody, "description": "Not ready (Retry-After)."}})
    def ready() -> Response:  # a sync def: a slow ping must not stall the event loop
        try:
            defs = store.registered()
            online = store.online_store
            online.ping()
            state = store.online_state()
        except TarmacError as exc:
            return _unready(exc.message)
        except Exception as exc:
            log.error("readiness check failed", exc_info=exc)
            return _unready(f"internal error: {type(exc).__name__}")
        if not state.ready:
            why = (f"online store {state.url} holds no materialized values (its file is "
                   "missing or was replaced)" if not state.present else
                   f"no registered feature view is materialized ({', '.join(state.missing)})")
            return _unready(why, hint="run `tarmac features materialize`")
        return Response(orjson.dumps({"status": "ready", "online_store": online.url,
                                      "services": len(defs.services),
                                      "views": len(defs.views) + len(defs.on_demand),
                                      "not_materialized": state.missing}),
                        media_type=_JSON)

    features = FeatureEndpoints(store)
    app.include_router(features_router(features))
    app.add_fast_route("POST", "/features", features.asgi)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> Response:
        log.error("internal error", exc_info=exc)
        return Response(orjson.dumps({"detail": f"internal error: {type(exc).__name__}"}),
                        status_code=500, media_type=_JSON)

    return app


RETRY_AFTER_S = 5  # what a 503 of /ready asks load balancers and probes to wait


def _unready(detail: str, *, hint: str | None = None) -> Response:
    body: dict[str, Any] = {"status": "unavailable", "detail": detail}
    if hint:
        body["hint"] = hint
    return Response(orjson.dumps(body), status_code=503, media_type=_JSON,
                    headers={"Retry-After": str(RETRY_AFTER_S)})


def app_from_env() -> FastAPI:
    """The app of the project in ``TARMAC_PROJECT`` (else the nearest folder with tarmac.yaml),
    for ``uvicorn --factory tarmac.serving.app:app_from_env``; it closes the project on exit."""
    import tarmac

    log_file = os.environ.get("TARMAC_LOG_FILE")
    return create_app(tarmac.open(os.environ.get("TARMAC_PROJECT") or None), owns_project=True,
                      access_log=os.environ.get("TARMAC_ACCESS_LOG") == "1",
                      log_file=Path(log_file) if log_file else None)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("tarmac")
    except Exception:  # not installed as a distribution
        return "0"


__all__ = ["TarmacApp", "app_from_env", "create_app"]
