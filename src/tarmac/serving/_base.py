"""One app from routers per concern: ``build_app(title, [Concern, ...])``.

A ``Concern`` (features now; models, topics and the console next) brings its FastAPI router,
its fast-lane endpoints (bare ASGI apps for hot paths), a warm-up run at start-up and a
readiness check. The app adds what every concern shares: ``GET /health`` (liveness),
``GET /ready`` (every concern's check; 503 with ``Retry-After`` naming each that fails, and
why),
request ids, the access log, and a 500 without a stack trace for any bug.

Example::

    app = build_app("Tarmac: shop", [features_concern(project.features)])
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tarmac.errors import TarmacError
from tarmac.serving._access import REQUEST_ID_HEADER, AccessLog, RequestIds
from tarmac.serving._errors import JSON, ErrorBody, internal, respond, unavailable

log = logging.getLogger("tarmac.serving")

_OK = orjson.dumps({"status": "ok"})


@dataclass(frozen=True)
class Ready:
    """A concern's readiness: ``ok``, else ``detail`` (and a ``hint``) say why not; ``info``
    goes into ``/ready``'s answer either way."""

    ok: bool
    detail: str = ""
    hint: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Concern:
    """What one router contributes to the app."""

    name: str
    router: APIRouter
    ready: Callable[[], Ready]  # sync: run on the threadpool (it may touch a backend)
    fast_routes: Sequence[tuple[str, str, ASGIApp]] = ()  # (method, path, bare ASGI app)
    warm_up: Callable[[], None] | None = None  # at start-up; a failure only logs
    shutdown: Callable[[], None] | None = None  # when the app stops (threads, logs)


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
        # (method, path prefix, app): a route with one trailing path parameter, such as
        # POST /v1/predict/{name}; the app reads the rest of the path itself
        self.fast_prefixes: list[tuple[str, str, ASGIApp]] = []
        self._fast_lane: bool | None = None  # decided on the first request
        self.access_log = access_log
        self.request_ids = RequestIds()
        # checks each request's token and permission (tarmac.serving._auth); None: open
        self.gate: Callable[[Scope, Receive, Send], Awaitable[bool]] | None = None

    def add_fast_route(self, method: str, path: str, endpoint: ASGIApp) -> None:
        """``path`` exactly, or, ending in ``/{param}``, every path with that prefix and one
        more segment (the endpoint takes the segment from ``scope["path"]``)."""
        if path.endswith("}") and "/{" in path:
            prefix = path[: path.rindex("{")]
            self.fast_prefixes.append((method.upper(), prefix, endpoint))
        else:
            self.fast_routes[(method.upper(), path)] = endpoint

    def _fast_endpoint(self, method: str, path: str) -> ASGIApp | None:
        endpoint = self.fast_routes.get((method, path))
        if endpoint is not None:
            return endpoint
        for m, prefix, app in self.fast_prefixes:
            if m == method and path.startswith(prefix) and len(path) > len(prefix) and \
                    "/" not in path[len(prefix):]:
                return app
        return None

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
            if self.gate is not None and not await self.gate(scope, receive, send_with_id):
                return
            endpoint = self._fast_endpoint(scope["method"], scope["path"])
            if endpoint is not None and self._fast_lane_open():
                await endpoint(scope, receive, send_with_id)
            else:
                await super().__call__(scope, receive, send_with_id)
        finally:
            if self.access_log is not None:
                self.access_log.record(scope["method"], scope["path"], status,
                                       (time.perf_counter() - started) * 1000, rid)


def build_app(title: str, concerns: Sequence[Concern], *, description: str = "",
              version: str = "0", max_body_size: int | None = None,
              access_log: AccessLog | None = None,
              on_shutdown: Callable[[], None] | None = None) -> TarmacApp:
    """One app serving ``concerns``: their routers and fast routes, /health, /ready built from
    their checks, request ids, the access log (started and stopped with the app)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for concern in concerns:  # warm up so the first request does not pay for it
            if concern.warm_up is not None:
                try:
                    concern.warm_up()
                except Exception as exc:  # reported by /ready, not raised
                    log.warning("tarmac serve: %s not ready yet: %s", concern.name, exc)
        if access_log is not None:
            access_log.start()
        try:
            yield
        finally:
            for concern in concerns:
                if concern.shutdown is not None:
                    try:
                        concern.shutdown()
                    except Exception as exc:  # the others still stop
                        log.error("tarmac serve: stopping %s failed", concern.name,
                                  exc_info=exc)
            if access_log is not None:
                access_log.stop()
            if on_shutdown is not None:
                on_shutdown()

    extra: dict[str, Any] = {} if max_body_size is None else {"max_body_size": max_body_size}
    app = TarmacApp(title=title, description=description, version=version, lifespan=lifespan,
                    access_log=access_log, **extra)

    @app.get("/health", tags=["service"], summary="Liveness: the process answers")
    async def health() -> Response:
        return Response(_OK, media_type=JSON)

    @app.get("/ready", tags=["service"],
             summary="Readiness: every part of the server can answer (" +
                     ", ".join(c.name for c in concerns) + ")",
             responses={503: {"model": ErrorBody, "description": "Not ready (Retry-After)."}})
    def ready() -> Response:  # a sync def: a slow check must not stall the event loop
        info: dict[str, Any] = {"status": "ready"}
        failed: list[tuple[str, Ready]] = []
        for concern in concerns:
            try:
                state = concern.ready()
            except TarmacError as exc:
                state = Ready(False, exc.message, exc.hint)
            except Exception as exc:
                log.error("readiness check of %s failed", concern.name, exc_info=exc)
                state = Ready(False, f"internal error: {type(exc).__name__}")
            if not state.ok:
                failed.append((concern.name, state))
            elif not failed:
                info.update(state.info)
        if not failed:
            return Response(orjson.dumps(info), media_type=JSON)
        if len(failed) == 1:
            part, state = failed[0]
            return unavailable(state.detail, hint=state.hint,
                               extra={"status": "unavailable", "part": part})
        # every part that is not ready says why (the first named in "part")
        hints = list(dict.fromkeys(s.hint for _, s in failed if s.hint))
        return unavailable("; ".join(f"{part}: {s.detail}" for part, s in failed),
                           hint="; ".join(hints) or None,
                           extra={"status": "unavailable", "part": failed[0][0],
                                  "parts": [part for part, _ in failed]})

    for concern in concerns:
        app.include_router(concern.router)
        for method, path, endpoint in concern.fast_routes:
            app.add_fast_route(method, path, endpoint)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        return respond(internal(exc, request.scope.get("tarmac.request_id", "-")))

    return app


__all__ = ["Concern", "Ready", "TarmacApp", "build_app"]
