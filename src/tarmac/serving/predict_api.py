"""The model endpoints: ``POST /v1/predict/{name}``, ``GET /v1/endpoints`` and ``GET /metrics``,
and ``models_concern``, what they contribute to the one app (``_base``).

The body is read with the app's size limit (413), must be JSON (415 for another content type;
curl's default form type is read as JSON too, so ``curl -d '{...}'`` works), is parsed with
orjson (422 for malformed JSON, NaN or Infinity) and answered by ``Predictions.answer_body``:
inference runs on worker threads in micro-batches, never on the event loop, so ``/health``
answers while models work. The route is also on the app's fast lane (``asgi``).
In-flight predict requests are bounded (``TARMAC_MAX_IN_FLIGHT``, default 64 per process):
over the bound the answer is 503 with ``Retry-After`` at once, so memory stays bounded under
overload instead of queueing without end.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from tarmac.catalog import MAX_PAGE, all_items
from tarmac.catalog import models as mcat
from tarmac.errors import BackendUnavailableError, TarmacError
from tarmac.serving._base import Concern, Ready
from tarmac.serving._errors import (
    ERROR_RESPONSES,
    JSON,
    RETRY_AFTER_S,
    body,
    too_large,
)
from tarmac.serving._metrics import CONTENT_TYPE, Metrics
from tarmac.serving.features_api import MAX_BODY_BYTES
from tarmac.serving.predict import MAX_ROWS, Predictions

DEFAULT_MAX_IN_FLIGHT = 64
_JSON_TYPES = ("application/json", "application/x-www-form-urlencoded")


class PredictRequest(BaseModel):
    """Entities whose features are fetched online, and/or rows of feature values."""

    entities: list[dict[str, Any]] | None = Field(
        None, max_length=MAX_ROWS, description="Join key values (and request values of "
                                               "on-demand features), one object per row.",
        examples=[[{"customer_id": 10001}]])
    rows: list[dict[str, Any]] | None = Field(
        None, max_length=MAX_ROWS, description="Feature values; with entities, row i overrides "
                                               "or completes what entity i fetched.",
        examples=[[{"plan": "basic", "tenure_days": 40}]])


class Prediction(BaseModel):
    id: str
    score: float | None = Field(description="P(positive) for a binary classifier, the top "
                                            "class's probability for multiclass, the value "
                                            "for a regression; null for a row with no input.")
    label: Any = Field(description="The predicted class (null for a regression).")
    model: str = Field(examples=["churn@3"])
    features: dict[str, dict[str, str]] = Field(
        description="status: per input, present / missing / stale / invalid / request")


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    request_id: str


PREDICT_PREFIX = "/v1/predict/"
_TOO_LARGE = too_large(MAX_BODY_BYTES, f"send at most {MAX_ROWS} rows per request, or score "
                                       "bigger batches with `tarmac score`")


def _refuse_type(content_type: str) -> bytes | None:
    """The 415 body for a content type that is not JSON (curl's default form type is read as
    JSON: ``curl -d '{...}'`` works), else None."""
    kind = content_type.split(";")[0].strip().lower()
    if kind and kind not in _JSON_TYPES and not kind.endswith("+json"):
        return body(f"content type '{kind[:80]}' is not supported: send JSON",
                    hint="Content-Type: application/json")
    return None


async def _read_body(receive: Receive) -> bytes | tuple[int, bytes] | None:
    """The request body; ``_TOO_LARGE`` past ``MAX_BODY_BYTES`` (the rest is not read); None
    when the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return _TOO_LARGE
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _max_in_flight() -> int:
    try:
        return max(1, int(os.environ.get("TARMAC_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT)))
    except ValueError:
        return DEFAULT_MAX_IN_FLIGHT


class ModelEndpoints:
    """The model endpoints of one app over one ``Predictions``."""

    def __init__(self, predictions: Predictions, *, max_in_flight: int | None = None) -> None:
        self.predictions = predictions
        self.metrics: Metrics = predictions.metrics
        self.max_in_flight = max_in_flight or _max_in_flight()
        self.in_flight = 0

    async def post(self, name: str, request: Request) -> Response:
        rid = request.scope.get("tarmac.request_id", "-")
        if self.in_flight >= self.max_in_flight:
            self.metrics.rejected.inc()
            return Response(body(f"overloaded: {self.in_flight} requests in flight, at most "
                                 f"{self.max_in_flight} per process", hint="retry later",
                                 request_id=rid),
                            status_code=503, media_type=JSON,
                            headers={"Retry-After": str(RETRY_AFTER_S)})
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        try:
            return await self._post(name, request, rid)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.set(self.in_flight)

    async def _post(self, name: str, request: Request, rid: str) -> Response:
        refused = _refuse_type(request.headers.get("content-type", ""))
        if refused is not None:
            return Response(refused, status_code=415, media_type=JSON)
        raw = await request.body()  # over the app's max_body_size: 413 before this returns
        outcome = await self.predictions.answer_body(name, raw, rid)
        return Response(outcome.json(), status_code=outcome.status, media_type=JSON,
                        headers=outcome.headers)

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /v1/predict/{name}`` as a bare ASGI app, for the app's fast lane: the same
        checks and answers as the FastAPI route (``post``) without the framework's request
        cycle (routing, dependency solving, the body-size middleware), which costs more than
        scoring a small model."""
        rid = scope.get("tarmac.request_id", "-")
        name = scope["path"][len(PREDICT_PREFIX):]
        headers: dict[str, str] | None = None
        if self.in_flight >= self.max_in_flight:
            self.metrics.rejected.inc()
            status, payload = 503, body(
                f"overloaded: {self.in_flight} requests in flight, at most "
                f"{self.max_in_flight} per process", hint="retry later", request_id=rid)
            headers = {"Retry-After": str(RETRY_AFTER_S)}
        else:
            kind = ""
            for key, value in scope["headers"]:
                if key == b"content-type":
                    kind = value.decode("latin-1")
            refused = _refuse_type(kind)
            if refused is not None:
                status, payload = 415, refused
            else:
                self.in_flight += 1
                self.metrics.in_flight.set(self.in_flight)
                try:
                    raw = await _read_body(receive)
                    if raw is None:
                        return  # the client went away
                    if isinstance(raw, tuple):
                        status, payload = raw
                    else:
                        outcome = await self.predictions.answer_body(name, raw, rid)
                        status, payload, headers = (outcome.status, outcome.json(),
                                                    outcome.headers)
                finally:
                    self.in_flight -= 1
                    self.metrics.in_flight.set(self.in_flight)
        out = [(b"content-type", b"application/json"),
               (b"content-length", str(len(payload)).encode())]
        if headers:
            out += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})

    def endpoints(self) -> dict[str, Any]:
        """The endpoints: champion, canary with its percent, shadow, load failures."""
        p = self.predictions.project
        out = []
        catalog = p.catalog
        champions = {a.model: a.version for a in all_items(
            lambda c: mcat.aliases(catalog, None, limit=MAX_PAGE, cursor=c))
            if a.alias == "champion"}
        from tarmac.catalog import deployments as dcat

        routes = self.predictions.routes.all()
        for name in sorted(mcat.model_names(catalog)):
            d = dcat.get_deployment(catalog, name)
            route = routes.get(name)
            out.append({"name": name, "champion": champions.get(name),
                        "canary": d.canary_version, "percent": d.canary_percent,
                        "shadow": d.shadow_version,
                        "serving": route.versions() if route is not None else {}})
        return {"endpoints": out,
                "load_failures": self.predictions.routes.describe()["load_failures"]}


def _collect(endpoints: ModelEndpoints) -> Any:
    reported: set[tuple[str, int]] = set()  # load failures exported (several workers)

    def collect(m: Metrics) -> None:
        routes = endpoints.predictions.routes
        failing = set(routes.failures)
        if m.shared_dir is None:
            m.load_failures.clear()
        else:  # series cannot be removed from the workers' shared files: resolved reads 0
            for (name, version) in reported - failing:
                m.load_failures.labels(name, str(version)).set(0)
            reported.clear()
            reported.update(failing)
        for (name, version) in failing:
            m.load_failures.labels(name, str(version)).set(1)
        for name, route in routes.all().items():
            for role, version in route.versions().items():
                m.served.labels(name, role).set(version)
        stats = endpoints.predictions.log.stats()
        if stats:
            m.log_pending.set(float(stats["pending_rows"]))
            m.log_lag.set(float(stats["flush_lag_s"]))
    return collect


def models_router(endpoints: ModelEndpoints) -> APIRouter:
    router = APIRouter(tags=["models"])
    router.add_api_route(
        PREDICT_PREFIX + "{name}", endpoints.post, methods=["POST"], response_model=PredictResponse,
        summary="Predictions of a model's endpoint",
        description="Scores each row with the endpoint's champion (or its canary, sticky by "
                    "entity key). Features of the given entities are fetched online; 'rows' "
                    "give raw values. Every answered prediction is in the prediction log "
                    f"before the answer. At most {MAX_ROWS} rows per request.",
        responses={**{k: ERROR_RESPONSES[k] for k in (404, 413, 422, 503, 500)},
                   415: {"description": "The body is not JSON."}},
        openapi_extra={"requestBody": {"required": True, "content": {
            JSON: {"schema": PredictRequest.model_json_schema()}}}})

    def list_endpoints() -> Response:  # a sync def: it reads the catalog
        return Response(orjson.dumps(endpoints.endpoints()), media_type=JSON)

    router.add_api_route("/v1/endpoints", list_endpoints, methods=["GET"],
                         summary="The model endpoints and the versions serving them")

    def metrics() -> Response:
        return Response(endpoints.metrics.render(), media_type=CONTENT_TYPE)

    router.add_api_route("/metrics", metrics, methods=["GET"], tags=["service"],
                         summary="Prometheus metrics of the server (every worker process)")
    return router


def models_concern(predictions: Predictions) -> Concern:
    """The models part of the app: its router, a warm-up (every champion loaded, the
    prediction log started, the hot-reload poller running), its readiness (every endpoint with
    a champion has one loaded; the feature views its champion and canary read online have been
    materialized; the prediction log takes records) and its shutdown."""
    endpoints = ModelEndpoints(predictions)
    predictions.metrics.on_render(_collect(endpoints))
    routes = predictions.routes

    def champions() -> list[str]:
        catalog = predictions.project.catalog
        return sorted({a.model for a in all_items(
            lambda c: mcat.aliases(catalog, None, limit=MAX_PAGE, cursor=c))
            if a.alias == "champion"})

    def warm_up() -> None:
        routes.start()
        predictions.log.start()
        for name in champions():
            routes.get(name)

    store = predictions.project.features
    views_of: dict[tuple[str, int], list[str]] = {}  # per version, for the definitions in
    views_for: list[Any] = [None]  # ... views_for[0] (re-resolved when they change)

    def needed_views(model: Any) -> list[str]:
        """The stored views a version reads online (none for a model taking raw rows)."""
        features = model.record.spec.get("features")
        if not features:
            return []
        defs = store.registered()
        if defs is not views_for[0]:
            views_of.clear()
            views_for[0] = defs
        key = (model.name, model.version)
        found = views_of.get(key)
        if found is None:
            try:
                found = sorted({part.view.name for part in store.resolve(features).parts})
            except TarmacError:  # its features are gone from the registry: predict says so
                found = []
            views_of[key] = found
        return found

    def not_materialized() -> list[str]:
        """Served champions and canaries needing stored views never materialized online
        (read every time: a materialization later makes the server ready, no restart)."""
        wanted: list[tuple[str, str, int, list[str]]] = []
        for name, route in sorted(routes.all().items()):
            for role in ("champion", "canary"):
                model = getattr(route, role)
                if model is not None:
                    views = needed_views(model)
                    if views:
                        wanted.append((name, role, model.version, views))
        if not wanted:
            return []
        online = store.online_store
        try:
            there = set(online.views()) if online.present() else set()
        except BackendUnavailableError:  # unreachable: the features part reports it
            return []
        out = []
        for name, role, version, views in wanted:
            missing = [v for v in views if v not in there]
            if missing:
                out.append(f"endpoint '{name}' {role} v{version} needs feature view"
                           f"{'s' if len(missing) > 1 else ''} never materialized online: "
                           f"{', '.join(missing)}")
        return out

    def ready() -> Ready:
        not_loaded = []
        for name in champions():
            route = routes.get(name)
            if route is None or route.champion is None:
                not_loaded.append(f"{name}: {route.champion_error if route else 'unknown'}")
        described = routes.describe()
        if not_loaded:
            return Ready(False, "no champion loaded for " + "; ".join(not_loaded),
                         "see the server's log; `tarmac models show NAME`",
                         info=described)
        unmaterialized = not_materialized()
        if unmaterialized:
            return Ready(False, "; ".join(unmaterialized),
                         "run `tarmac features materialize` (entity requests would find no "
                         "feature values)", info=described)
        log_ = predictions.log
        if not log_.enabled:
            return Ready(True, info={**described, "prediction_log": "off"})
        log_.start()  # raises (not ready) when its folder cannot be claimed
        stats = log_.stats()
        if stats and not stats["writable"]:
            return Ready(False, f"the prediction log cannot write: {stats['last_error']}",
                         "free disk space or fix the folder's permissions", info=described)
        info = {**described, "prediction_log": {
            k: stats.get(k) for k in ("appended", "flushed", "pending_rows", "flush_lag_s")}}
        return Ready(True, info=info)

    def shutdown() -> None:
        try:
            predictions.close()
        finally:
            predictions.metrics.close()

    return Concern("models", models_router(endpoints), ready,
                   (("POST", PREDICT_PREFIX + "{name}", endpoints.asgi),), warm_up, shutdown)


__all__ = ["ModelEndpoints", "PredictRequest", "PredictResponse", "models_concern",
           "models_router"]
