"""The feature endpoints: ``POST /features`` (online values) and ``GET /features`` (what is
registered), and ``features_concern``, what they contribute to the app (``_base``).

The hot path parses the body with orjson and validates it by hand (no pydantic per request):
the pydantic models of ``_feature_models`` describe the request and response in the OpenAPI
schema, with the limits these checks enforce. What a feature request needs of each entity (its
join keys and their types, the request values of on-demand views) is resolved once per
distinct ``features`` value and cached until the registry changes (``FeatureStore.registered``
tells, without querying the catalog more than every few seconds). ``FeatureEndpoints.asgi`` is
the same ``POST /features`` as a bare ASGI app, which the app runs directly when nothing needs
the framework's request cycle (see ``TarmacApp``); both give the same answers, built by
``FeatureEndpoints.answer``. Small requests of stored views are answered on the event loop;
big bodies, on-demand views and networked stores on the threadpool.

Answers: 200 with ``OnlineFeatures.to_dict()``; 422 with field-level detail (``loc`` like
``["body", "entities", 0, "customer_id"]``) for a malformed request or one over the limits; 404
naming the unknown service, view or feature (clipped) with a "did you mean" suggestion; 413 for
a body over 4 MiB; 503 when the online store (or the catalog) cannot be reached or holds
nothing; 500 ``internal error: <type>`` for a bug, or naming the on-demand view that failed and
the request id (its error goes to the log only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from tarmac.config import backend
from tarmac.errors import (
    BackendUnavailableError,
    ConfigError,
    OnDemandError,
    TarmacError,
    UsageError,
    echo,
)
from tarmac.features.keys import key_rule
from tarmac.features.store import FeatureStore
from tarmac.serving._base import Concern, Ready
from tarmac.serving._errors import (
    ERROR_RESPONSES,
    MAX_ERRORS,
    Answer,
    field_error,
    from_error,
    internal,
    invalid,
    respond,
    too_large,
)
from tarmac.serving._feature_models import (
    MAX_ENTITIES,
    MAX_NAME_CHARS,
    MAX_REFS,
    FeaturesRequest,
    FeaturesResponse,
    Registered,
    request_schema,
)

log = logging.getLogger("tarmac.serving")

INLINE_BODY_BYTES = 16 << 10  # bigger requests are answered on the threadpool, off the loop
MAX_BODY_BYTES = 4 << 20  # 1000 entities of a few hundred bytes each fit easily
_JSON = "application/json"
_MISSING = object()
_TOO_LARGE = too_large(MAX_BODY_BYTES, f"send at most {MAX_ENTITIES} entities per request")


_ERRORS: dict[int | str, dict[str, Any]] = {
    k: ERROR_RESPONSES[k] for k in (404, 413, 422, 503, 500)}


# -- validation -----------------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return v is None or type(v) in (int, float)


def _is_str(v: Any) -> bool:
    return v is None or type(v) is str


def _is_bool(v: Any) -> bool:
    return v is None or type(v) is bool


def _is_anything(v: Any) -> bool:
    return True


# A join key follows the one rule of tarmac.features.keys (the SDK and the CLI use it too). A
# request value may be null (the on-demand function decides), else of its type.
_REQUEST_CHECKS: dict[str, tuple[Callable[[Any], bool], str, str]] = {
    "int64": (_is_number, "must be a number", "number_type"),
    "int32": (_is_number, "must be a number", "number_type"),
    "float64": (_is_number, "must be a number", "number_type"),
    "float32": (_is_number, "must be a number", "number_type"),
    "string": (_is_str, "must be a string", "string_type"),
    "bool": (_is_bool, "must be true or false", "bool_type"),
}
_REQUEST_DEFAULT = (_is_anything, "", "")


_Field = tuple[str, Callable[[Any], bool], str, str, str]


class _Needs:
    """What every entity of one feature request must hold: (field, check, message, error type,
    why it is needed)."""

    __slots__ = ("demand", "fields")

    def __init__(self, fields: list[_Field], demand: bool) -> None:
        self.fields = fields
        self.demand = demand  # on-demand views run: user code, answered off the event loop


class _Ask:
    """A well-formed request, checked against what its features need: to be read."""

    __slots__ = ("entities", "features", "needs")

    def __init__(self, features: str | list[str], entities: list[Any], needs: _Needs) -> None:
        self.features, self.entities, self.needs = features, entities, needs


_error, _invalid, _fail = field_error, invalid, from_error


def _internal(exc: BaseException, request_id: str = "-") -> Answer:
    return internal(exc, request_id, "serving features")


def _on_demand_failed(exc: OnDemandError, request_id: str) -> Answer:
    """The caller learns which on-demand view failed and the request id; what failed (the
    function's exception, which may quote feature values) goes to the server's log only."""
    log.error("on-demand view %r failed (request %s): %s", exc.view, request_id, exc.message,
              exc_info=exc.__cause__ or exc)
    return 500, orjson.dumps({
        "detail": f"on-demand view '{exc.view}' failed; the server's log has the error under "
                  f"request id {request_id}",
        "hint": "a problem of the feature definitions, not of this request",
        "request_id": request_id})


def _well_formed(features: Any) -> bool:
    """The common case, checked fast: a service name or a list of refs within the limits."""
    if type(features) is str:
        return 0 < len(features) <= MAX_NAME_CHARS
    return (type(features) is list and 0 < len(features) <= MAX_REFS
            and all(type(r) is str and 0 < len(r) <= MAX_NAME_CHARS for r in features))


def _check_features(features: Any) -> list[dict[str, Any]]:
    if features is _MISSING:
        return [_error(["body", "features"], "field required: a feature service name or a "
                       "list of 'view:feature' refs", "missing")]
    if type(features) is str:
        if not features:
            return [_error(["body", "features"], "must not be empty", "string_too_short")]
        if len(features) > MAX_NAME_CHARS:
            return [_error(["body", "features"], f"a name of {len(features):,} characters; at "
                           f"most {MAX_NAME_CHARS}", "string_too_long")]
        return []
    if type(features) is not list:
        return [_error(["body", "features"], "must be a feature service name (string) or a "
                       "list of 'view:feature' refs", "features_type")]
    if not features:
        return [_error(["body", "features"], "must list at least one ref", "too_short")]
    if len(features) > MAX_REFS:
        return [_error(["body", "features"], f"too many refs: {len(features):,}; at most "
                       f"{MAX_REFS} per request", "too_long")]
    errors = []
    for i, ref in enumerate(features):
        if type(ref) is not str or not ref:
            errors.append(_error(["body", "features", i], "must be a non-empty string "
                                 "('view:feature' or 'view')", "string_type"))
        elif len(ref) > MAX_NAME_CHARS:
            errors.append(_error(["body", "features", i], f"a ref of {len(ref):,} characters; "
                                 f"at most {MAX_NAME_CHARS}", "string_too_long"))
        if len(errors) >= MAX_ERRORS:
            break
    return errors


def _check_entities(entities: Any) -> list[dict[str, Any]]:
    if entities is _MISSING:
        return [_error(["body", "entities"], "field required: a list of entity objects like "
                       '{"customer_id": 42}', "missing")]
    if type(entities) is not list:
        return [_error(["body", "entities"], "must be a list of entity objects",
                       "list_type")]
    if len(entities) > MAX_ENTITIES:
        return [_error(["body", "entities"], f"too many entities: {len(entities)}; at most "
                       f"{MAX_ENTITIES} per request (split the batch, or use a training set "
                       "offline)", "too_long")]
    return []


def _check_each(needs: _Needs, entities: list[Any]) -> list[dict[str, Any]]:
    """Each entity is an object holding every field the features need, of the right type."""
    errors: list[dict[str, Any]] = []
    for i, entity in enumerate(entities):
        if type(entity) is not dict:
            errors.append(_error(["body", "entities", i], "must be an object of join key "
                                 'values, like {"customer_id": 42}', "dict_type"))
            continue
        for name, ok, msg, kind, role in needs.fields:
            value = entity.get(name, _MISSING)
            if value is _MISSING:
                errors.append(_error(["body", "entities", i, name],
                                     f"field required: '{name}' ({role})", "missing"))
            elif not ok(value):
                errors.append(_error(["body", "entities", i, name], f"'{name}' {msg}, got "
                                     f"{echo(orjson.dumps(value).decode())}", kind))
        if len(errors) >= MAX_ERRORS:
            break
    return errors


# -- the endpoints ----------------------------------------------------------------------------


class FeatureEndpoints:
    """The feature endpoints of one app, over one FeatureStore kept for the app's lifetime."""

    def __init__(self, store: FeatureStore, *, inline: bool | None = None) -> None:
        self.store = store
        # In-process stores (SQLite) answer in microseconds: read them on the event loop (a
        # thread hop would cost more than the read). A networked store (Redis) is read on the
        # threadpool instead, so a slow round trip never stalls the loop.
        if inline is None:
            inline = backend("online_store", store.project.config.online_store).in_process
        self.inline = inline
        self._defs: Any = None
        self._needs: dict[Any, _Needs] = {}

    def needs(self, features: str | list[str]) -> _Needs:
        """What entities must hold for ``features`` (raises UsageError for unknown names)."""
        defs = self.store.registered()
        if defs is not self._defs:  # the registry changed: resolve again
            self._needs, self._defs = {}, defs
        key = features if type(features) is str else tuple(features)
        found = self._needs.get(key)
        if found is not None:
            return found
        resolved = self.store.resolve(features)
        fields: list[_Field] = []
        seen: set[str] = set()
        for part in resolved.parts:
            types = getattr(part.view, "key_types", {}) or {}
            for k in part.view.join_keys:
                if k not in seen:
                    seen.add(k)
                    rule = key_rule(types.get(k))
                    fields.append((k, rule.check, rule.expected, rule.error_type,
                                   f"join key of feature view '{part.view.name}'"))
        for d in resolved.demand:
            for f in d.view.request:
                if f.name not in seen:
                    seen.add(f.name)
                    fields.append((f.name, *_REQUEST_CHECKS.get(f.dtype, _REQUEST_DEFAULT),
                                   f"request value of on-demand view '{d.view.name}'"))
        needs = _Needs(fields, bool(resolved.demand))
        if len(self._needs) >= 1024:  # many distinct ref lists: keep the cache bounded
            self._needs.clear()
        self._needs[key] = needs
        return needs

    async def answer(self, body: bytes, request_id: str = "-") -> Answer:
        """The answer to a ``POST /features`` body: never raises. Small requests of stored
        views are answered on the event loop (a SQLite read takes microseconds, less than a
        thread hop); a big body, on-demand views (user code) and a networked store go to the
        threadpool, so ``/health`` and other requests never wait behind them."""
        try:
            if len(body) > INLINE_BODY_BYTES:
                return await run_in_threadpool(self._answer, body, request_id)
            ask = self._prepare(body)
            if type(ask) is not _Ask:
                return ask  # type: ignore[return-value]
            if self.inline and not ask.needs.demand:
                return self._read(ask, request_id)
            return await run_in_threadpool(self._read, ask, request_id)
        except Exception as exc:  # never a stack trace to the caller
            return _internal(exc, request_id)

    async def post(self, request: Request) -> Response:
        """The FastAPI endpoint (documented in OpenAPI; the app may take a faster path)."""
        status, payload = await self.answer(await request.body(),
                                            request.scope.get("tarmac.request_id", "-"))
        return Response(payload, status_code=status, media_type=_JSON)

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The same endpoint as a bare ASGI app: what the app runs for ``POST /features``
        when nothing (middleware, telemetry) needs the framework's request cycle."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    status, payload = _TOO_LARGE
                    break
                chunks.append(chunk)
            if not message.get("more_body", False):
                status, payload = await self.answer(
                    chunks[0] if len(chunks) == 1 else b"".join(chunks),
                    scope.get("tarmac.request_id", "-"))
                break
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    def _answer(self, body: bytes, request_id: str) -> Answer:
        """The whole answer, synchronously (on the threadpool)."""
        try:
            ask = self._prepare(body)
            return self._read(ask, request_id) if type(ask) is _Ask else ask  # type: ignore
        except Exception as exc:
            return _internal(exc, request_id)

    def _prepare(self, body: bytes) -> Answer | _Ask:
        """Parse and check a body: an error answer, or what to read."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            what = "the body is empty" if not body.strip() else f"the body is not JSON ({exc})"
            return _invalid([_error(["body"], what, "json_invalid")])
        if type(data) is not dict:
            return _invalid([_error(["body"], 'the body must be a JSON object like {"features":'
                                    ' "churn", "entities": [{"customer_id": 42}]}',
                                    "dict_type")])
        features = data.get("features", _MISSING)
        entities = data.get("entities", _MISSING)
        if not (type(entities) is list and len(entities) <= MAX_ENTITIES
                and _well_formed(features)):
            errors = _check_features(features) + _check_entities(entities)
            if errors:
                return _invalid(errors)
        try:
            needs = self.needs(features)
        except UsageError as exc:
            return _fail(404, exc)
        except (BackendUnavailableError, ConfigError) as exc:
            return _fail(503, exc)
        errors = _check_each(needs, entities)
        if errors:
            return _invalid(errors)
        return _Ask(features, entities, needs)

    def _read(self, ask: _Ask, request_id: str) -> Answer:
        try:
            result = self.store.online(ask.features, ask.entities)
        except OnDemandError as exc:  # the definitions are at fault, not the request
            return _on_demand_failed(exc, request_id)
        except UsageError as exc:
            return _invalid([_error(["body", "entities"], exc.message, "value_error")])
        except (BackendUnavailableError, ConfigError) as exc:
            return _fail(503, exc)
        except TarmacError as exc:
            return _fail(500, exc)
        return 200, orjson.dumps(result.to_dict())

    def registered(self) -> dict[str, Any]:
        defs = self.store.registered()
        services = []
        for name, service in sorted(defs.services.items()):
            refs = [r for sel in service.selections() for r in sel.refs()]
            try:
                resolved = self.store.resolve(name)
                outputs, keys = resolved.outputs, resolved.join_keys
                request = resolved.request_fields
            except UsageError:  # e.g. an on-demand view it reads is gone: list it anyway
                outputs, keys, request = [], [], []
            services.append({"name": name, "description": service.description,
                             "features": refs, "outputs": outputs, "join_keys": keys,
                             "request": request})
        views: list[dict[str, Any]] = []
        for name, view in sorted(defs.views.items()):
            views.append({"name": name, "kind": "view", "description": view.description,
                          "join_keys": view.join_keys, "ttl_seconds": view.ttl_seconds,
                          "features": _features(view.features), "request": []})
        for name, od in sorted(defs.on_demand.items()):
            views.append({"name": name, "kind": "on_demand", "description": od.description,
                          "join_keys": [], "ttl_seconds": None,
                          "features": _features(od.features), "request": _features(od.request)})
        return {"services": services, "views": views}


def _features(features: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"name": f.name, "dtype": f.dtype, "description": f.description} for f in features]


def features_router(endpoints: FeatureEndpoints) -> APIRouter:
    """The feature endpoints as a router (what OpenAPI documents). ``endpoints.asgi`` is the
    same ``POST /features`` as a bare ASGI app, for the app's fast lane."""
    router = APIRouter(tags=["features"])

    router.add_api_route(
        "/features", endpoints.post, methods=["POST"], response_model=FeaturesResponse,
        summary="Online feature values of some entities",
        description="Latest materialized values of each entity's features. A value older "
                    "than its view's ttl is null with status 'stale'; an unknown entity's "
                    "values are null with status 'missing' (not an error). "
                    f"At most {MAX_ENTITIES} entities per request.",
        responses=_ERRORS,
        openapi_extra={"requestBody": {"required": True, "content": {
            _JSON: {"schema": request_schema()}}}})

    def list_registered() -> Response:  # a sync def: it may read the catalog
        try:
            return Response(orjson.dumps(endpoints.registered()), media_type=_JSON)
        except (BackendUnavailableError, ConfigError) as exc:
            return respond(_fail(503, exc))

    router.add_api_route(
        "/features", list_registered, methods=["GET"], response_model=Registered,
        summary="Registered feature services and views",
        responses={503: _ERRORS[503], 500: _ERRORS[500]})
    return router


def features_concern(store: FeatureStore) -> Concern:
    """The features part of the app: its router, ``POST /features`` on the fast lane, a
    warm-up (the registry cache and the online store's connection) and its readiness: the
    registry can be read, the online store answers and holds the materialized values."""
    endpoints = FeatureEndpoints(store)

    def warm_up() -> None:
        store.registered()
        store.online_store.ping()

    def ready() -> Ready:
        defs = store.registered()
        online = store.online_store
        online.ping()
        state = store.online_state()
        if not state.ready:
            why = (f"online store {state.url} holds no materialized values (its file is "
                   "missing or was replaced)" if not state.present else
                   f"no registered feature view is materialized ({', '.join(state.missing)})")
            return Ready(False, why, "run `tarmac features materialize`")
        return Ready(True, info={"online_store": online.url, "services": len(defs.services),
                                 "views": len(defs.views) + len(defs.on_demand),
                                 "not_materialized": state.missing})

    return Concern("features", features_router(endpoints), ready,
                   [("POST", "/features", endpoints.asgi)], warm_up)


__all__ = ["MAX_ENTITIES", "MAX_NAME_CHARS", "MAX_REFS", "FeatureEndpoints", "FeaturesRequest",
           "FeaturesResponse", "features_concern", "features_router"]
