"""The topic endpoint, ``POST /v1/topics/{topic}``: JSON records appended to a topic after the
checks of the stream source declared over it, and ``topics_concern``, what it contributes to the
one app (``_base``).

The checks and the append are ``tarmac.streams.produce``, the code ``p.produce`` and ``tarmac
stream produce`` run: each record a JSON object, the source's contract (declared types and
rules, as batch ingestion checks them), the key field present and not null; one bad record
refuses the whole request and nothing enters the log. ``{topic}`` is a ``type: stream`` source
of tarmac.yaml or the topic of one (checked, created with the source's partitions if missing),
or another existing topic (appended unchecked).

The body is ``{"records": [...]}`` or a JSON array (``application/json``; a missing type and
curl's default form type are read as JSON too), or one record per line
(``application/x-ndjson`` or ``application/jsonl``). It is refused with 413 over
``serving.topics.max_body_mb`` (16 MiB): from its Content-Length before a byte is read, else as
soon as the bytes read pass the limit. Parsing, checking and appending run on the threadpool,
never on the event loop, so ``/health`` and other requests answer while a big batch is checked.
The route is also on the app's fast lane (``asgi``).

Answers: 200 ``{topic, source, count, created, deliveries: [{partition, offset}, ...]}`` (in
the order of the records); 400 for a body that is not JSON (naming the line of an NDJSON
body); 404 for a name that is neither a stream source, nor the topic of one, nor an existing
topic; 413; 415 for another content type; 422 with one entry per record and field at fault
(``loc`` ``["body", "records", i, field]``, at most 50 listed, ``errors`` counting all; a value
quoted is cut at 200 characters) for records that break the contract or lack their key, no
records, or more than ``serving.topics.max_records``; 503 when the log cannot be reached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from tarmac.config import redact
from tarmac.errors import (
    BackendUnavailableError,
    ConfigError,
    TarmacError,
    TopicNotFoundError,
    UsageError,
    echo,
)
from tarmac.serving._base import Concern, Ready
from tarmac.serving._errors import (
    ERROR_RESPONSES,
    JSON,
    MAX_ERRORS,
    Answer,
    ErrorBody,
    body,
    field_error,
    from_error,
    internal,
)
from tarmac.serving._metrics import Metrics
from tarmac.streams.produce import Producer, RecordProblem, RecordsRefused

if TYPE_CHECKING:
    from tarmac.project import Project

TOPICS_PREFIX = "/v1/topics/"
_NDJSON = ("application/x-ndjson", "application/jsonl", "application/json-lines",
           "application/jsonlines", "application/x-jsonlines")
_JSON = ("", "application/json", "application/x-www-form-urlencoded")
_OTHER = "-"  # the metrics label of a name that is no topic (callers choose names)


class TopicRequest(BaseModel):
    """The records to append (or send the array alone, or NDJSON)."""

    records: list[Any] = Field(description="JSON objects, checked against the contract of the "
                                           "stream source declared over the topic.",
                               examples=[[{"event_id": "e1", "user_id": 7,
                                           "ts": "2026-05-01T10:00:00Z"}]])


class Delivery(BaseModel):
    partition: int
    offset: int


class TopicResponse(BaseModel):
    topic: str
    source: str | None = Field(description="The stream source whose contract was checked "
                                           "(null: a topic no source declares, unchecked).")
    count: int = Field(description="Records appended.")
    created: bool = Field(description="The topic was created by this request.")
    deliveries: list[Delivery] = Field(description="Where each record landed, in order.")


class RecordError(BaseModel):
    loc: list[str | int] = Field(examples=[["body", "records", 3, "user_id"]])
    msg: str
    type: str = Field(description="not_object, missing, null, key_type, type, allowed, range, "
                                  "pattern, unique; or a problem of the body's shape")
    line: int | None = Field(None, description="The line of the record (NDJSON bodies).")


class RecordErrorsBody(BaseModel):
    detail: list[RecordError]
    errors: int = Field(description="All errors found (at most 50 are listed).")
    records: int = Field(description="Records in the request.")
    refused: int = Field(description="Records with at least one error.")
    hint: str | None = None


class _Gone(Exception):
    """The client went away before its body was read."""


class _Body:
    """A parsed body: its records and, for NDJSON, the line of each."""

    __slots__ = ("lines", "records")

    def __init__(self, records: list[Any], lines: list[int] | None = None) -> None:
        self.records, self.lines = records, lines


def _body_kind(content_type: str) -> str | None:
    """``json``, ``ndjson``, or None for a type that is neither."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in _NDJSON:
        return "ndjson"
    if kind in _JSON or kind.endswith("+json"):
        return "json"
    return None


def _problems(problems: list[RecordProblem], records: int,
              lines: Sequence[int] | None) -> Answer:
    """422 for records refused: the first ``MAX_ERRORS`` problems and the count of all."""
    detail = []
    for p in problems[:MAX_ERRORS]:
        entry = field_error(["body", "records", p.index, *([p.field] if p.field else [])],
                            p.message, p.kind)
        if lines is not None:
            entry["line"] = lines[p.index]
        detail.append(entry)
    more = len(problems) - len(detail)
    hint = "nothing was produced" + (f"; {more:,} more error(s) not listed" if more else "")
    return 422, orjson.dumps({"detail": detail, "errors": len(problems), "records": records,
                              "refused": len({p.index for p in problems}), "hint": hint})


def _shape(loc: list[str | int], msg: str, kind: str, records: int = 0) -> Answer:
    """422 for a body of the wrong shape (one error, nothing about records)."""
    return 422, orjson.dumps({"detail": [field_error(loc, msg, kind)], "errors": 1,
                              "records": records, "refused": 0,
                              "hint": "nothing was produced"})


class TopicEndpoints:
    """``POST /v1/topics/{topic}`` over one project's stream log (opened on first use)."""

    def __init__(self, project: Project, metrics: Metrics, *,
                 max_body_bytes: int | None = None, max_records: int | None = None) -> None:
        limits = project.config.serving.topics
        self.project = project
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes or int(limits.max_body_mb * (1 << 20))
        self.max_records = max_records or limits.max_records
        self._producer: Producer | None = None
        self._lock = threading.Lock()
        size = (f"{self.max_body_bytes >> 20} MiB" if self.max_body_bytes >= 1 << 20
                else f"{self.max_body_bytes:,} bytes")
        self._too_large = 413, body(
            f"the body is larger than {size}",
            hint=f"send at most {self.max_records:,} records per request (serving.topics."
                 "max_body_mb in tarmac.yaml sets the limit)")

    def producer(self) -> Producer:
        """The producer over the project's log and sources (built once, on a worker thread:
        opening a networked log may wait)."""
        if self._producer is None:
            with self._lock:
                if self._producer is None:
                    self._producer = Producer(self.project.streams, self.project.sources)
        return self._producer

    # -- the answer -----------------------------------------------------------------------------

    async def respond(self, topic: str, content_type: str, content_length: str | None,
                      chunks: AsyncIterator[bytes], request_id: str) -> Answer:
        """The answer to one request (never raises but ``_Gone``): the content type and the
        length checked before the body is read, the body read up to the limit, the rest on
        the threadpool."""
        started = time.perf_counter()
        label, produced = _OTHER, 0
        kind = _body_kind(content_type)
        if kind is None:
            answer: Answer = 415, body(
                f"content type '{echo(content_type.split(';')[0].strip())}' is not supported",
                hint="send Content-Type: application/json ({\"records\": [...]} or an array) "
                     "or application/x-ndjson (one record per line)")
        elif content_length is not None and not content_length.strip().isdigit():
            answer = 400, body(f"bad Content-Length {echo(content_length)!r}")
        elif content_length is not None and int(content_length) > self.max_body_bytes:
            answer = self._too_large  # refused before a byte of it is read
        else:
            parts: list[bytes] = []
            size = 0
            over = False
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_body_bytes:
                    over = True
                    break
                parts.append(chunk)
            if over:
                answer = self._too_large
            else:
                raw = parts[0] if len(parts) == 1 else b"".join(parts)
                answer, label, produced = await run_in_threadpool(
                    self._answer, topic, kind, raw, request_id)
        self.metrics.observe_topic(label, answer[0], produced, time.perf_counter() - started)
        return answer

    def _answer(self, topic: str, kind: str, raw: bytes,
                request_id: str) -> tuple[Answer, str, int]:
        """(answer, metrics label, records produced), on a worker thread."""
        try:
            parsed = self._parse(kind, raw)
            if not isinstance(parsed, _Body):
                return parsed, _OTHER, 0
            return self._produce(topic, parsed.records, parsed.lines)
        except Exception as exc:  # never a stack trace to the caller
            return internal(exc, request_id, "producing to a topic"), _OTHER, 0

    def _parse(self, kind: str, raw: bytes) -> _Body | Answer:
        """The records of a body (and, for NDJSON, each one's line), or an error answer."""
        if kind == "ndjson":
            records: list[Any] = []
            lines: list[int] = []
            for number, line in enumerate(raw.split(b"\n"), start=1):
                if not line.strip():
                    continue
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    return 400, body(f"line {number} of the body is not JSON ({exc}): "
                                     f"{echo(line.decode('utf-8', 'replace').strip())}",
                                     hint="one JSON record per line; nothing was produced")
                lines.append(number)
            return _Body(records, lines)
        if not raw.strip():
            return 400, body("the body is empty", hint='send {"records": [...]}')
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return 400, body(f"the body is not JSON ({exc})",
                             hint='send {"records": [...]} or a JSON array, or NDJSON with '
                                  "Content-Type: application/x-ndjson")
        if isinstance(data, list):
            return _Body(data)
        if not isinstance(data, dict):
            return _shape(["body"], 'the body must be an object like {"records": [...]} or an '
                                    "array of records", "dict_type")
        extra = [k for k in data if k != "records"]
        if extra:
            return _shape(["body", echo(extra[0])], 'unknown field: the body is {"records": '
                                                    "[...]}", "extra_forbidden")
        if "records" not in data:
            return _shape(["body", "records"], "field required: a list of records",
                          "missing")
        if not isinstance(data["records"], list):
            return _shape(["body", "records"], "must be a list of records", "list_type")
        return _Body(data["records"])

    def _produce(self, topic: str, records: list[Any],
                 lines: list[int] | None) -> tuple[Answer, str, int]:
        if not records:
            return _shape(["body", "records"], "no records: send at least one (nothing was "
                                               "produced)", "too_short"), _OTHER, 0
        if len(records) > self.max_records:
            return _shape(["body", "records"], f"too many records: {len(records):,}; at most "
                                               f"{self.max_records:,} per request (split the "
                                               "batch)", "too_long", len(records)), _OTHER, 0
        try:
            producer = self.producer()
            target = producer.target(topic)
        except UsageError as exc:  # a source of another type: nothing to produce to
            return from_error(404, exc), _OTHER, 0
        except (BackendUnavailableError, ConfigError) as exc:
            return from_error(503, exc), _OTHER, 0
        label = target.topic if target.declared else _OTHER
        try:
            result = producer.produce(topic, records, numbers=lines)
        except RecordsRefused as exc:
            return _problems(exc.problems, len(records), lines), label, 0
        except TopicNotFoundError as exc:
            return (404, body(f"no topic named '{echo(topic)}'",
                              hint=f"{exc.hint}; or declare a `type: stream` source over it "
                                   "in tarmac.yaml" if exc.hint else None)), _OTHER, 0
        except (BackendUnavailableError, ConfigError) as exc:
            return from_error(503, exc), label, 0
        except TarmacError as exc:  # e.g. a value the log's serializer refuses
            return _shape(["body", "records"], exc.message, "value_error",
                          len(records)), label, 0
        return (200, orjson.dumps(result.to_dict())), result.topic, result.count

    # -- the two ways in ------------------------------------------------------------------------

    async def post(self, topic: str, request: Request) -> Response:
        """The FastAPI endpoint (documented in OpenAPI; the app may take the fast lane)."""
        headers = request.headers
        try:
            status, payload = await self.respond(
                topic, headers.get("content-type", ""), headers.get("content-length"),
                request.stream(), request.scope.get("tarmac.request_id", "-"))
        except ClientDisconnect:
            return Response(status_code=499)  # nobody reads it
        return Response(payload, status_code=status, media_type=JSON)

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /v1/topics/{topic}`` as a bare ASGI app, for the app's fast lane."""
        content_type, length = "", None
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = value.decode("latin-1")
            elif key == b"content-length":
                length = value.decode("latin-1")

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    raise _Gone
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return

        try:
            status, payload = await self.respond(scope["path"][len(TOPICS_PREFIX):],
                                                 content_type, length, chunks(),
                                                 scope.get("tarmac.request_id", "-"))
        except _Gone:
            return  # the client went away
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def topics_router(endpoints: TopicEndpoints) -> APIRouter:
    router = APIRouter(tags=["topics"])
    router.add_api_route(
        TOPICS_PREFIX + "{topic}", endpoints.post, methods=["POST"],
        response_model=TopicResponse,
        summary="Append records to a topic, checked by its stream source's contract",
        description="`topic` is a `type: stream` source of tarmac.yaml or its topic: every "
                    "record must be a JSON object meeting the source's contract (declared "
                    "types and rules, as batch ingestion checks them) with its key field "
                    "present and not null; one bad record refuses the whole request and "
                    "nothing is appended. Another existing topic takes JSON values unchecked. "
                    "The body is {\"records\": [...]}, a JSON array, or NDJSON "
                    "(application/x-ndjson). Valid records are appended in one batch, keyed "
                    "by the source's key field; a missing topic of a declared source is "
                    f"created with its partitions. At most {endpoints.max_records:,} records "
                    "per request.",
        responses={
            400: {"model": ErrorBody, "description": "The body is not JSON."},
            404: ERROR_RESPONSES[404],
            413: ERROR_RESPONSES[413],
            415: {"model": ErrorBody, "description": "Neither JSON nor NDJSON."},
            422: {"model": RecordErrorsBody, "description": "Records refused; one entry per "
                                                            "record and field (loc)."},
            503: ERROR_RESPONSES[503], 500: ERROR_RESPONSES[500]},
        openapi_extra={"requestBody": {"required": True, "content": {
            JSON: {"schema": {"anyOf": [TopicRequest.model_json_schema(),
                                        {"type": "array", "items": {}}]}},
            "application/x-ndjson": {"schema": {"type": "string",
                                                "description": "One JSON record per line."}}}}},
        # the endpoint enforces its own limit (413 in the app's error shape); the framework's
        # is set above it so that it never answers first
        max_body_size=2 * endpoints.max_body_bytes + (1 << 20))
    return router


def topics_concern(project: Project, metrics: Metrics) -> Concern:
    """The topics part of the app: its router and the fast lane. Its readiness touches no
    backend: the stream log is opened by the first request (a log that cannot be reached
    answers that request with 503), so a broker being down never takes predictions out of
    service; ``/ready`` names the log and the stream sources."""
    endpoints = TopicEndpoints(project, metrics)

    def ready() -> Ready:
        names = sorted(n for n, s in project.config.sources.items()
                       if isinstance(s, dict) and s.get("type") == "stream")
        return Ready(True, info={"streams": redact(project.config.streams),
                                 "stream_sources": names})

    return Concern("topics", topics_router(endpoints), ready,
                   (("POST", TOPICS_PREFIX + "{topic}", endpoints.asgi),))


__all__ = ["TopicEndpoints", "TopicRequest", "TopicResponse", "topics_concern",
           "topics_router"]
