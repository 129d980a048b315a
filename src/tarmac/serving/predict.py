"""The predict path: ``Predictions.answer(name, body, request_id)``, shared by
``POST /v1/predict/{name}`` and ``p.serving.predict`` (same code, no socket for the SDK).

A request gives ``entities`` (join key values, and the request values on-demand features need:
features are fetched online through ``FeatureStore.online``) and/or ``rows`` (raw feature
values; with entities, row ``i`` overrides or completes what entity ``i`` fetched). Each row
goes to the champion or, sticky by entity key, to the canary (``_routes.bucket``); its inputs
are checked against that version's signature (a wrong, missing or extra field is a 422 naming
the field and the row). Checked requests to one endpoint are scored in micro-batches
(``_batching.Combiner``: the requests that arrive while the model works are scored together in
its next call, one online read and one model call per version); each answered prediction is
appended to the prediction log before the answer is returned (503 if the log refuses), one
append per batch. A shadow version scores the same requests on a worker thread afterwards,
logged only.

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
from starlette.concurrency import run_in_threadpool

from tarmac.errors import BackendUnavailableError, ConfigError, OnDemandError, UsageError, echo
from tarmac.serving import _log
from tarmac.serving._batching import AsyncBatcher, Combiner
from tarmac.serving._errors import close_names, field_error
from tarmac.serving._metrics import Metrics
from tarmac.serving._routes import Route, Routes
from tarmac.serving._scoring import Scorer
from tarmac.serving.features_api import FeatureEndpoints, _check_each

if TYPE_CHECKING:
    from tarmac.models.registry import LoadedModel
    from tarmac.project import Project

log = logging.getLogger("tarmac.serving")

MAX_ROWS = 1000  # per request: bigger batches belong to batch scoring (tarmac score)
SHADOW_QUEUE = 1000  # shadow requests waiting for the worker; beyond it they are skipped
BATCH_ROWS = 256  # rows scored together at most in one micro-batch
INLINE_BODY_BYTES = 16 << 10  # bodies parsed and checked on the event loop; bigger: a thread
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


@dataclass
class _Job:
    """A checked request waiting to be scored."""

    name: str
    rid: str
    started: float
    route: Route
    entities: list[Any] | None
    rows: list[Any] | None
    picks: list[tuple[LoadedModel, str]]
    n: int


class _Version:
    """What the predict path keeps per loaded version: what its rows may hold (input kinds by
    name; its join keys, allowed in rows too) and its scorer."""

    __slots__ = ("keys", "kinds", "model", "names", "scorer")

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.kinds: dict[str, str] = dict(model.signature.inputs)
        self.names: list[str] = list(self.kinds)
        self.keys: set[str] = set(model.record.spec.get("keys") or []) - set(self.kinds)
        self.scorer = Scorer(model)


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
        self._combiners: dict[str, Combiner[_Job, tuple[Outcome, int | None]]] = {}
        self._combiners_lock = threading.Lock()
        self._batchers: dict[str, AsyncBatcher[_Job, tuple[Outcome, int | None]]] = {}
        self._versions: dict[int, _Version] = {}  # id(LoadedModel) -> its _Version

    # -- the answer ---------------------------------------------------------------------------

    def answer(self, name: str, data: Any, request_id: str) -> Outcome:
        """The answer to a predict request whose body parsed to ``data``: never raises.

        Checked on the caller's thread; scored in a micro-batch with the requests to the
        same endpoint that arrive meanwhile from other threads (``_batching.Combiner``: no
        timer, a lone request is scored at once). What ``p.serving.predict`` calls."""
        started = time.perf_counter()
        version: int | None = None
        try:
            prepared = self._prepare(name, data, request_id, started)
            if isinstance(prepared, _Job):
                outcome, version = self._combiner(prepared.route.endpoint)(
                    prepared, rows=prepared.n)
            else:
                outcome, version = prepared
        except Exception as exc:
            outcome = self._trouble(exc, name, request_id)
        self._observe(name, version, outcome, started)
        return outcome

    async def answer_body(self, name: str, raw: bytes, request_id: str) -> Outcome:
        """The answer to a predict request's raw body, on the server's event loop: never
        raises. A small body to an endpoint whose route is built is parsed and checked on the
        loop (less work than a thread hop); a big one, or an unknown or not yet loaded name
        (a catalog read, perhaps a model load), on the threadpool. Scoring always runs on a
        worker thread, in micro-batches of the requests that queued meanwhile
        (``_batching.AsyncBatcher``), so ``/health`` and other requests never wait behind a
        model."""
        started = time.perf_counter()
        version: int | None = None
        try:
            if len(raw) <= INLINE_BODY_BYTES and self.routes.built(name):
                prepared = self._parse(name, raw, request_id, started)
            else:  # a big body, or a name whose route needs the catalog (or a model load)
                prepared = await run_in_threadpool(self._parse, name, raw, request_id, started)
            if isinstance(prepared, _Job):
                outcome, version = await self._batcher(prepared.route.endpoint).submit(
                    prepared, rows=prepared.n)
            else:
                outcome, version = prepared
        except Exception as exc:
            outcome = self._trouble(exc, name, request_id)
        self._observe(name, version, outcome, started)
        return outcome

    def _parse(self, name: str, raw: bytes, rid: str, started: float
               ) -> _Job | tuple[Outcome, int | None]:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            what = ("the body is empty" if not raw.strip() else
                    f"the body is not JSON ({exc}); NaN and Infinity are not JSON numbers")
            return _invalid([field_error(["body"], what, "json_invalid")]), None
        return self._prepare(name, data, rid, started)

    def _trouble(self, exc: Exception, name: str, rid: str) -> Outcome:
        """The answer to an exception of the predict path."""
        if isinstance(exc, _log.LogUnavailable):
            return _fail(503, f"the prediction log cannot take records: {exc.message}",
                         exc.hint, retry_after=exc.retry_after, request_id=rid)
        if isinstance(exc, BackendUnavailableError | ConfigError):
            return _fail(503, exc.message, exc.hint, request_id=rid)
        # a bug: the trace to the log, the type to the caller
        log.error("internal error predicting %s (request %s)", echo(name), rid, exc_info=exc)
        return _fail(500, f"internal error: {type(exc).__name__}", request_id=rid)

    def _observe(self, name: str, version: int | None, outcome: Outcome,
                 started: float) -> None:
        if outcome.status != 404:  # unknown names would make unbounded label sets
            self.metrics.observe(name, version, outcome.status, time.perf_counter() - started)

    def _batcher(self, endpoint: str) -> AsyncBatcher[_Job, tuple[Outcome, int | None]]:
        batcher = self._batchers.get(endpoint)
        if batcher is None:
            batcher = self._batchers[endpoint] = AsyncBatcher(self._run_jobs,
                                                              max_rows=BATCH_ROWS)
        return batcher

    def _combiner(self, endpoint: str) -> Combiner[_Job, tuple[Outcome, int | None]]:
        combiner = self._combiners.get(endpoint)
        if combiner is None:
            with self._combiners_lock:
                combiner = self._combiners.setdefault(
                    endpoint, Combiner(self._run_jobs, max_rows=BATCH_ROWS))
        return combiner

    def _prepare(self, name: str, data: Any, rid: str, started: float
                 ) -> _Job | tuple[Outcome, int | None]:
        """The request checked: an answer (an error), or the job to score."""
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
        return _Job(name, rid, started, route, entities, rows, picks, n)

    def _run_jobs(self, jobs: list[_Job]) -> list[tuple[Outcome, int | None]]:
        """Answers of a micro-batch of checked requests: scored together, logged in one
        append. A model or on-demand failure is isolated to the request that causes it by
        scoring the batch's requests one by one."""
        try:
            return self._score_jobs(jobs)
        except (ModelFailed, OnDemandError) as exc:
            if len(jobs) > 1:
                return [self._run_jobs([job])[0] for job in jobs]
            return [self._failed(jobs[0], exc)]

    def _failed(self, job: _Job, exc: ModelFailed | OnDemandError
                ) -> tuple[Outcome, int | None]:
        name, rid = job.name, job.rid
        if isinstance(exc, OnDemandError):
            log.error("on-demand view %r failed (request %s): %s", exc.view, rid,
                      exc.message, exc_info=exc.__cause__ or exc)
            return _fail(500, f"on-demand view '{exc.view}' failed; the server's log has "
                              f"the error under request id {rid}", request_id=rid), \
                job.picks[0][0].version
        log.error("model %s v%s failed on request %s", name, exc.model.version, rid,
                  exc_info=exc.cause)
        idx = [i for i, (m, _) in enumerate(job.picks) if m.version == exc.model.version]
        role = job.picks[idx[0]][1] if idx else "champion"
        self._log_failure(name, exc, role, idx, job.entities, job.rows, rid, job.started)
        return _fail(500, f"endpoint '{name}': model {name} v{exc.model.version} failed "
                          "on this request; the server's log has the error under "
                          f"request id {rid}", request_id=rid), exc.model.version

    def _score_jobs(self, jobs: list[_Job]) -> list[tuple[Outcome, int | None]]:
        groups: dict[int, tuple[LoadedModel, list[tuple[_Job, int]]]] = {}
        for job in jobs:
            for i, (model, _role) in enumerate(job.picks):
                groups.setdefault(model.version, (model, []))[1].append((job, i))
        scored: dict[tuple[int, int], _Scored] = {}
        for model, refs in groups.values():
            for (job, i), s in zip(refs, self._score(model, refs), strict=True):
                scored[(id(job), i)] = s
        now = datetime.now(UTC)
        answers: list[tuple[Outcome, int | None]] = []
        records: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        done = time.perf_counter()
        for job in jobs:
            name, rid = job.name, job.rid
            latency_ms = (done - job.started) * 1000
            predictions = []
            for i, (model, role) in enumerate(job.picks):
                s = scored[(id(job), i)]
                pid = _log.new_id()
                predictions.append({"id": pid, "score": s.score, "label": s.label,
                                    "model": f"{name}@{model.version}",
                                    "features": {"status": s.status}})
                for st in s.status.values():
                    if st in ("missing", "stale", "invalid"):
                        counts[st] = counts.get(st, 0) + 1
                records.append(_record(pid, rid, now, name, model.version, role, s,
                                       _request(job.entities, job.rows, i), latency_ms))
            answers.append((Outcome(200, {"predictions": predictions, "request_id": rid}),
                            job.picks[0][0].version))
        self.log.append(records)  # durable before the answers (LogUnavailable: 503 to all)
        name = jobs[0].name
        if counts:
            self.metrics.count_features(name, counts)
        for model, refs in groups.values():
            role = refs[0][0].picks[refs[0][1]][1]
            self.metrics.predictions.labels(name, str(model.version), role).inc(len(refs))
        shadowed = [job for job in jobs if job.route.shadow is not None]
        if shadowed:
            self._shadow_later(shadowed)
        return answers

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
            c = self._version(model)
            if entities:
                allowed = {f[0] for f in needs_of[model.version].fields}
                errors += [field_error(["body", "entities", i, k],
                                       f"'{echo(k)}' is not a join key or request value of "
                                       f"{model.name} v{model.version} (it takes "
                                       f"{', '.join(sorted(allowed)) or 'none'})",
                                       "extra_forbidden")
                           for k in entities[i] if k not in allowed]
            if rows:
                row = rows[i]
                kinds = c.kinds
                for k, v in row.items():
                    kind = kinds.get(k)
                    if kind is None:
                        if k not in c.keys:
                            errors.append(field_error(
                                ["body", "rows", i, k], f"'{echo(k)}' is not an input of "
                                f"{model.name} v{model.version} (inputs: "
                                f"{echo(', '.join(sorted(kinds)), 200)})", "extra_forbidden"))
                    elif not (type(v) is float and kind in _NUMERIC and math.isfinite(v)) \
                            and not _type_ok(kind, v):  # the common case first, inline
                        errors.append(field_error(
                            ["body", "rows", i, k], f"'{echo(k)}' must be "
                            f"{_KINDS.get(kind, 'a finite value')} ({kind}), got "
                            f"{_shown(v)}",
                            f"{kind}_type"))
                if not entities and not all(k in row for k in c.names):
                    errors += [field_error(["body", "rows", i, k], f"field required: '{k}' "
                                           f"(an input of {model.name} v{model.version}; or "
                                           "give entities to fetch it)", "missing")
                               for k in c.names if k not in row]
            if len(errors) >= 50:
                break
        return errors[:50]

    def _score(self, model: LoadedModel, refs: list[tuple[_Job, int]]) -> list[_Scored]:
        """Rows (row ``i`` of job ``job``) scored by ``model`` in one call: entity features
        fetched online in one read, request values over them."""
        out: list[_Scored] = []
        wanted = [job.entities[i] for job, i in refs if job.entities]
        got = self.project.features.model_inputs(model.record.spec["features"], wanted) \
            if wanted else None
        j = 0
        for job, i in refs:
            if job.entities:
                assert got is not None
                values, status, times = got.rows[j], got.status[j], got.event_time[j]
                j += 1
                if job.rows:
                    for k, v in job.rows[i].items():
                        values[k], status[k], times[k] = v, "request", None
                out.append(_Scored(values, status, times))
            else:
                assert job.rows is not None
                row = job.rows[i]
                out.append(_Scored(dict(row), dict.fromkeys(row, "request"),
                                   dict.fromkeys(row)))
        try:
            scores, labels = self._version(model).scorer([s.values for s in out])
        except Exception as exc:
            raise ModelFailed(model, exc) from exc
        for s, score, label in zip(out, scores, labels, strict=True):
            s.score, s.label = score, label
        return out

    def _version(self, model: LoadedModel) -> _Version:
        """``model``'s _Version, built once per loaded model (a reload loads a new one)."""
        found = self._versions.get(id(model))
        if found is None or found.model is not model:  # an id reused after a reload
            if len(self._versions) >= 64:
                self._versions.clear()
            found = self._versions[id(model)] = _Version(model)
        return found

    # -- shadow -------------------------------------------------------------------------------

    def _shadow_later(self, jobs: list[_Job]) -> None:
        """Score the requests with their shadow version on the worker thread, logged only."""
        with self._shadow_lock:
            if self._shadow_pending >= SHADOW_QUEUE:
                self.shadow_skipped += len(jobs)
                return
            self._shadow_pending += len(jobs)
        self._shadow.submit(self._shadow_score, jobs)

    def _shadow_score(self, jobs: list[_Job]) -> None:
        try:
            started = time.perf_counter()
            by_model: dict[int, tuple[LoadedModel, list[tuple[_Job, int]]]] = {}
            for job in jobs:
                model = job.route.shadow
                if model is None:
                    continue
                if self._check(job.route, [(model, "shadow")] * job.n, job.entities,
                               job.rows):
                    log.warning("shadow %s v%s cannot score request %s: its inputs differ",
                                job.route.endpoint, model.version, job.rid)
                    continue
                by_model.setdefault(id(model), (model, []))[1].extend(
                    (job, i) for i in range(job.n))
            for model, refs in by_model.values():
                try:
                    scored = self._score(model, refs)
                except Exception as exc:  # a shadow never fails a request: logged
                    log.error("shadow scoring of %s v%s failed (requests %s)",
                              refs[0][0].route.endpoint, model.version,
                              ", ".join(sorted({job.rid for job, _ in refs})[:5]),
                              exc_info=exc)
                    continue
                ms = (time.perf_counter() - started) * 1000
                now = datetime.now(UTC)
                endpoint = refs[0][0].route.endpoint
                self.log.append([_record(_log.new_id(), job.rid, now, endpoint, model.version,
                                         "shadow", s, _request(job.entities, job.rows, i), ms)
                                 for (job, i), s in zip(refs, scored, strict=True)])
                self.metrics.predictions.labels(endpoint, str(model.version),
                                                "shadow").inc(len(refs))
        except Exception as exc:  # a shadow never fails a request: its trouble is logged
            log.error("shadow scoring failed (requests %s)",
                      ", ".join(job.rid for job in jobs[:5]), exc_info=exc)
        finally:
            with self._shadow_lock:
                self._shadow_pending -= len(jobs)

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
