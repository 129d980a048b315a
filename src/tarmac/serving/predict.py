"""The predict path: ``Predictions.answer(name, body, request_id)``, shared by
``POST /v1/predict/{name}`` and ``p.serving.predict`` (same code, no socket for the SDK).

A request gives ``entities`` (join key values, and the request values on-demand features need:
features are fetched online through ``FeatureStore.online``) and/or ``rows`` (raw feature
values; with entities, row ``i`` overrides or completes what entity ``i`` fetched). Each row
goes to the champion or, sticky by entity key, to the canary (``_routes.bucket``); its inputs
are checked against that version's signature (a wrong, missing or extra field is a 422 naming
the field and the row). Rows are scored per version in one batch; each answered prediction is
appended to the prediction log before the answer is returned (503 if the log refuses). A shadow
version scores the same request on a worker thread afterwards, logged only.

Answers (status, JSON-able body): 200 ``{"predictions": [{"id", "score", "label", "model",
"features": {"status"}}], "request_id"}``; 404 unknown endpoint (closest names); 422 malformed;
503 no champion, online store or log unavailable; 500 the model raised (endpoint and version
named, the error logged under the request id).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd

from tarmac.errors import BackendUnavailableError, ConfigError, OnDemandError, UsageError, echo
from tarmac.serving import _log
from tarmac.serving._errors import close_names, field_error
from tarmac.serving._metrics import Metrics
from tarmac.serving._routes import Route, Routes
from tarmac.serving._scoring import run_model
from tarmac.serving.features_api import FeatureEndpoints, _check_each

if TYPE_CHECKING:
    from tarmac.models.registry import LoadedModel
    from tarmac.project import Project

log = logging.getLogger("tarmac.serving")

MAX_ROWS = 1000  # per request: bigger batches belong to batch scoring (tarmac score)
SHADOW_QUEUE = 1000  # shadow requests waiting for the worker; beyond it they are skipped
_MISSING = object()
_NUMERIC = {"int64", "int32", "float64", "float32"}
_KINDS = {"int64": "a number", "int32": "a number", "float64": "a number",
          "float32": "a number", "bool": "true or false", "string": "a string"}


@dataclass(frozen=True)
class Outcome:
    """An answer: HTTP status, JSON-able body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None

    def json(self) -> bytes:
        return orjson.dumps(self.body)


def _invalid(errors: list[dict[str, Any]]) -> Outcome:
    return Outcome(422, {"detail": errors[:50]})


def _fail(status: int, detail: str, hint: str | None = None, *, retry_after: float = 5,
          **extra: Any) -> Outcome:
    body: dict[str, Any] = {"detail": detail}
    if hint:
        body["hint"] = hint
    body.update(extra)
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if status == 503 else None
    return Outcome(status, body, headers)


def _type_ok(kind: str, value: Any) -> bool:
    if value is None:
        return True
    if kind in _NUMERIC:
        return type(value) in (int, float) and math.isfinite(value)
    if kind == "bool":
        return type(value) is bool
    if kind == "string":
        return type(value) is str
    return not (type(value) is float and not math.isfinite(value))


class _Scored:
    __slots__ = ("label", "score", "status", "times", "values")

    def __init__(self, values: dict[str, Any], status: dict[str, str],
                 times: dict[str, Any]) -> None:
        self.values, self.status, self.times = values, status, times
        self.score: Any = None
        self.label: Any = None


class ModelFailed(Exception):
    def __init__(self, model: LoadedModel, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.model, self.cause = model, cause


class Predictions:
    """Predictions of a project's endpoints: routes, feature reads, scoring, logging."""

    def __init__(self, project: Project, *, routes: Routes | None = None,
                 log_: _log.Log | None = None, metrics: Metrics | None = None) -> None:
        self.project = project
        self.routes = routes or Routes(project)
        self.log = log_ or _log.Log(project)
        self.metrics = metrics or Metrics()
        self.features = FeatureEndpoints(project.features, inline=False)
        self._shadow = ThreadPoolExecutor(1, thread_name_prefix="tarmac-shadow")
        self._shadow_pending = 0
        self._shadow_lock = threading.Lock()
        self.shadow_skipped = 0

    # -- the answer ---------------------------------------------------------------------------

    def answer(self, name: str, data: Any, request_id: str) -> Outcome:
        """The answer to a predict request whose body parsed to ``data``: never raises."""
        started = time.perf_counter()
        version: int | None = None
        try:
            outcome, version = self._answer(name, data, request_id, started)
        except _log.LogUnavailable as exc:
            outcome = _fail(503, f"the prediction log cannot take records: {exc.message}",
                            exc.hint, retry_after=exc.retry_after, request_id=request_id)
        except (BackendUnavailableError, ConfigError) as exc:
            outcome = _fail(503, exc.message, exc.hint, request_id=request_id)
        except Exception as exc:  # a bug: the trace to the log, the type to the caller
            log.error("internal error predicting %s (request %s)", echo(name), request_id,
                      exc_info=exc)
            outcome = _fail(500, f"internal error: {type(exc).__name__}",
                            request_id=request_id)
        if outcome.status != 404:  # unknown names would make unbounded label sets
            self.metrics.observe(name, version, outcome.status, time.perf_counter() - started)
        return outcome

    def _answer(self, name: str, data: Any, rid: str, started: float
                ) -> tuple[Outcome, int | None]:
        route = self.routes.get(name)
        if route is None:
            known = self.routes.known()
            close = close_names(name, known)
            hint = (f"did you mean {', '.join(repr(c) for c in close)}?" if close
                    else f"known: {', '.join(sorted(known)[:12])}" if known else
                    "no model is registered yet")
            return _fail(404, f"no endpoint named '{echo(name)}' (endpoints are model names)",
                         hint), None
        if type(data) is not dict:
            return _invalid([field_error(["body"], 'the body must be a JSON object like '
                                         '{"entities": [{"customer_id": 42}]}', "dict_type")]
                            ), None
        entities, rows, errors = _shape(data)
        if errors:
            return _invalid(errors), None
        if route.champion is None:
            return _fail(503, f"endpoint '{name}' cannot serve: {route.champion_error}",
                         f"promote a version: tarmac promote {name} VERSION"), None
        n = len(entities or rows or [])
        picks = self._assign(route, entities, rows, rid, n)
        errors = self._check(route, picks, entities, rows)
        if errors:
            return _invalid(errors), route.champion.version
        groups: dict[int, tuple[LoadedModel, str, list[int]]] = {}
        for i, (model, role) in enumerate(picks):
            groups.setdefault(model.version, (model, role, []))[2].append(i)
        scored: list[_Scored | None] = [None] * n
        for model, role, idx in groups.values():
            try:
                for i, s in zip(idx, self._score(model, idx, entities, rows), strict=True):
                    scored[i] = s
            except OnDemandError as exc:
                log.error("on-demand view %r failed (request %s): %s", exc.view, rid,
                          exc.message, exc_info=exc.__cause__ or exc)
                return _fail(500, f"on-demand view '{exc.view}' failed; the server's log has "
                                  f"the error under request id {rid}", request_id=rid), \
                    model.version
            except ModelFailed as exc:
                log.error("model %s v%s failed on request %s", name, exc.model.version, rid,
                          exc_info=exc.cause)
                self._log_failure(name, exc, role, idx, entities, rows, rid, started)
                return _fail(500, f"endpoint '{name}': model {name} v{exc.model.version} failed "
                                  "on this request; the server's log has the error under "
                                  f"request id {rid}", request_id=rid), exc.model.version
        latency_ms = (time.perf_counter() - started) * 1000
        now = datetime.now(UTC)
        predictions, records = [], []
        counts: dict[str, int] = {}
        for i, ((model, role), got) in enumerate(zip(picks, scored, strict=True)):
            assert got is not None
            s = got
            pid = _log.new_id()
            predictions.append({"id": pid, "score": s.score, "label": s.label,
                                "model": f"{name}@{model.version}",
                                "features": {"status": s.status}})
            for st in s.status.values():
                counts[st] = counts.get(st, 0) + 1
            records.append(_record(pid, rid, now, name, model.version, role, s,
                                   _request(entities, rows, i), latency_ms))
        self.log.append(records)  # durable before the answer (LogUnavailable: 503)
        self.metrics.count_features(name, {k: v for k, v in counts.items()
                                           if k in ("missing", "stale", "invalid")})
        for model, role, idx in groups.values():
            self.metrics.predictions.labels(name, str(model.version), role).inc(len(idx))
        if route.shadow is not None:
            self._shadow_later(route, entities, rows, rid)
        version = route.champion.version if len(groups) == 1 and \
            route.champion.version in groups else next(iter(groups))
        return Outcome(200, {"predictions": predictions, "request_id": rid}), version

    def _log_failure(self, name: str, exc: ModelFailed, role: str, idx: list[int],
                     entities: list[Any] | None, rows: list[Any] | None, rid: str,
                     started: float) -> None:
        """Failed rows go to the log too, with the error's type (its text, which may quote
        data, stays in the server's log): ``deploy status`` counts them as errors."""
        now, ms = datetime.now(UTC), (time.perf_counter() - started) * 1000
        blank = _Scored({}, {}, {})
        records = [{**_record(_log.new_id(), rid, now, name, exc.model.version, role, blank,
                              _request(entities, rows, i), ms),
                    "error": f"model failed: {type(exc.cause).__name__}"} for i in idx]
        try:
            self.log.append(records)
        except _log.LogUnavailable as err:
            log.warning("prediction log: failed rows of request %s not logged: %s", rid,
                        err.message)

    # -- steps --------------------------------------------------------------------------------

    def _assign(self, route: Route, entities: list[Any] | None, rows: list[Any] | None,
                rid: str, n: int) -> list[tuple[LoadedModel, str]]:
        """Each row's model: by its entity key's bucket (the request id's without one)."""
        assert route.champion is not None
        if route.canary is None:
            return [(route.champion, "champion")] * n
        keys = route.champion.record.spec.get("keys") or []
        out = []
        for i in range(n):
            source = entities[i] if entities else rows[i] if rows else None
            if keys and type(source) is dict and all(k in source for k in keys):
                key = orjson.dumps([source[k] for k in keys]).decode()
            else:
                key = f"request:{rid}"
            out.append(route.pick(key))
        return out

    def _check(self, route: Route, picks: list[tuple[LoadedModel, str]],
               entities: list[Any] | None, rows: list[Any] | None) -> list[dict[str, Any]]:
        """Field errors of the request against what each row's version needs."""
        errors: list[dict[str, Any]] = []
        needs_of: dict[int, Any] = {}
        for model in {id(m): m for m, _ in picks}.values():
            if entities:
                try:
                    needs_of[model.version] = self.features.needs(model.record.spec["features"])
                except UsageError as exc:  # its features are gone from the registry
                    raise ConfigError(f"the features of {model.name} v{model.version} cannot be "
                                      f"served: {exc.message}", hint=exc.hint) from None
                errors += _check_each(needs_of[model.version], entities)
        if errors:
            return errors[:50]
        for i, (model, _role) in enumerate(picks):
            inputs = model.signature.inputs
            names = {n for n, _ in inputs}
            keys = set(model.record.spec.get("keys") or [])
            if entities:
                entity = entities[i]
                allowed = {f[0] for f in needs_of[model.version].fields}
                errors += [field_error(["body", "entities", i, k],
                                       f"'{echo(k)}' is not a join key or request value of "
                                       f"{model.name} v{model.version} (it takes "
                                       f"{', '.join(sorted(allowed)) or 'none'})",
                                       "extra_forbidden")
                           for k in entity if k not in allowed]
            if rows:
                row = rows[i]
                for k, v in row.items():
                    kind = dict(inputs).get(k)
                    if k not in names and k not in keys:
                        errors.append(field_error(
                            ["body", "rows", i, k], f"'{echo(k)}' is not an input of "
                            f"{model.name} v{model.version} (inputs: "
                            f"{echo(', '.join(sorted(names)), 200)})", "extra_forbidden"))
                    elif kind is not None and not _type_ok(kind, v):
                        errors.append(field_error(
                            ["body", "rows", i, k], f"'{echo(k)}' must be "
                            f"{_KINDS.get(kind, 'a finite value')} ({kind}), got "
                            f"{_shown(v)}",
                            f"{kind}_type"))
                if not entities:
                    errors += [field_error(["body", "rows", i, k], f"field required: '{k}' "
                                           f"(an input of {model.name} v{model.version}; or "
                                           "give entities to fetch it)", "missing")
                               for k in model.signature.input_names if k not in row]
            if len(errors) >= 50:
                break
        return errors[:50]

    def _score(self, model: LoadedModel, idx: list[int], entities: list[Any] | None,
               rows: list[Any] | None) -> list[_Scored]:
        out: list[_Scored] = []
        if entities:
            got = self.project.features.online(model.record.spec["features"],
                                               [entities[i] for i in idx])
            for j, i in enumerate(idx):
                values, status, times = got.rows[j], got.status[j], got.event_time[j]
                if rows:
                    for k, v in rows[i].items():
                        values[k], status[k], times[k] = v, "request", None
                out.append(_Scored(values, status, times))
        else:
            assert rows is not None
            for i in idx:
                row = rows[i]
                out.append(_Scored(dict(row), dict.fromkeys(row, "request"),
                                   dict.fromkeys(row)))
        names = model.signature.input_names
        frame = pd.DataFrame([[s.values.get(k) for k in names] for s in out], columns=names)
        try:
            scores, labels = run_model(model, frame)
        except Exception as exc:
            raise ModelFailed(model, exc) from exc
        for s, score, label in zip(out, scores, labels, strict=True):
            s.score, s.label = score, label
        return out

    # -- shadow -------------------------------------------------------------------------------

    def _shadow_later(self, route: Route, entities: list[Any] | None,
                      rows: list[Any] | None, rid: str) -> None:
        """Score the request with the shadow version on the worker thread, logged only."""
        with self._shadow_lock:
            if self._shadow_pending >= SHADOW_QUEUE:
                self.shadow_skipped += 1
                return
            self._shadow_pending += 1
        self._shadow.submit(self._shadow_score, route, entities, rows, rid)

    def _shadow_score(self, route: Route, entities: list[Any] | None, rows: list[Any] | None,
                      rid: str) -> None:
        try:
            model = route.shadow
            assert model is not None
            n = len(entities or rows or [])
            started = time.perf_counter()
            if self._check(route, [(model, "shadow")] * n, entities, rows):
                log.warning("shadow %s v%s cannot score request %s: its inputs differ",
                            route.endpoint, model.version, rid)
                return
            scored = self._score(model, list(range(n)), entities, rows)
            ms = (time.perf_counter() - started) * 1000
            now = datetime.now(UTC)
            self.log.append([_record(_log.new_id(), rid, now, route.endpoint, model.version,
                                     "shadow", s, _request(entities, rows, i), ms)
                             for i, s in enumerate(scored)])
            self.metrics.predictions.labels(route.endpoint, str(model.version),
                                            "shadow").inc(n)
        except Exception as exc:  # a shadow never fails a request: its trouble is logged
            log.error("shadow scoring of %s failed (request %s)", route.endpoint, rid,
                      exc_info=exc)
        finally:
            with self._shadow_lock:
                self._shadow_pending -= 1

    def drain(self, timeout: float = 10.0) -> None:
        """Wait for queued shadow scoring (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._shadow_pending and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.drain()
        self._shadow.shutdown(wait=True)
        self.routes.stop()
        self.log.close()


def _shown(v: Any) -> str:
    """A request value as quoted in an error (JSON where it is JSON, else its repr), clipped."""
    try:
        return echo(orjson.dumps(v).decode())
    except TypeError:
        return echo(repr(v))


def _shape(data: dict[str, Any]) -> tuple[list[Any] | None, list[Any] | None,
                                           list[dict[str, Any]]]:
    """entities and rows, checked for shape and limits."""
    errors = [field_error(["body", k], f"unknown field '{echo(k)}': a predict request has "
                          "'entities' and/or 'rows'", "extra_forbidden")
              for k in data if k not in ("entities", "rows")]
    got: dict[str, list[Any] | None] = {}
    for key, what in (("entities", 'objects of join key values, like {"customer_id": 42}'),
                      ("rows", "objects of feature values")):
        value = data.get(key, _MISSING)
        got[key] = None
        if value is _MISSING or value is None:
            continue
        if type(value) is not list:
            errors.append(field_error(["body", key], f"must be a list of {what}", "list_type"))
        elif len(value) > MAX_ROWS:
            errors.append(field_error(["body", key], f"too many {key}: {len(value):,}; at most "
                                      f"{MAX_ROWS:,} per request (score bigger batches with "
                                      "`tarmac score`)", "too_long"))
        else:
            errors += [field_error(["body", key, i], f"must be an object: {what}", "dict_type")
                       for i, v in enumerate(value) if type(v) is not dict][:50]
            got[key] = value
    entities, rows = got["entities"], got["rows"]
    if not errors:
        if not entities and not rows:
            errors.append(field_error(["body"], "give 'entities' (keys whose features are "
                                      "fetched) and/or 'rows' (feature values), not empty",
                                      "missing"))
        elif entities and rows and len(entities) != len(rows):
            errors.append(field_error(["body", "rows"], f"{len(rows)} rows for "
                                      f"{len(entities)} entities: with both, row i completes "
                                      "entity i (give as many)", "length_mismatch"))
    return entities, rows, errors


def _request(entities: Sequence[Any] | None, rows: Sequence[Any] | None, i: int
             ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if entities:
        out.update(entities[i])
    if rows:
        out.update(rows[i])
    return out


def _record(pid: str, rid: str, now: datetime, endpoint: str, version: int, role: str,
            s: _Scored, request: dict[str, Any], latency_ms: float) -> dict[str, Any]:
    return {"id": pid, "request_id": rid, "time": now, "endpoint": endpoint,
            "model": endpoint, "version": version, "role": role, "features": s.values,
            "feature_times": s.times, "feature_status": s.status, "request": request,
            "score": s.score, "label": s.label, "latency_ms": latency_ms}


__all__ = ["MAX_ROWS", "Outcome", "Predictions"]
