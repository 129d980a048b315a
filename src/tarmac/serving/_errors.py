"""The error answers every router gives, in one shape: 422 with field-level ``loc``, 404 naming
the unknown thing with the closest known names, 413 for a body over the limit, 503 with
``Retry-After``, 500 for a bug (the trace to the log, the type and request id to the caller).

Helpers return an ``Answer`` (status, JSON bytes), which the hot paths send as they are, or a
``Response`` via ``respond``. The pydantic models describe these bodies in OpenAPI
(``ERROR_RESPONSES``), declared once for every router.

Example::

    return respond(not_found("feature service", name, defs.services))
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from fastapi import Response
from pydantic import BaseModel, Field

from tarmac.errors import TarmacError, echo

log = logging.getLogger("tarmac.serving")

JSON = "application/json"
MAX_ERRORS = 50  # field errors listed in one 422 answer
RETRY_AFTER_S = 5  # what a 503 asks load balancers and probes to wait

Answer = tuple[int, bytes]  # (HTTP status, JSON body)


class FieldError(BaseModel):
    loc: list[str | int] = Field(examples=[["body", "entities", 0, "customer_id"]])
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    detail: list[FieldError]


class ErrorBody(BaseModel):
    detail: str
    hint: str | None = None
    request_id: str | None = Field(None, description="The id the server's log names (also "
                                                     "in the X-Request-ID header).")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown name (the detail suggests the closest)."},
    413: {"model": ErrorBody, "description": "The body is larger than the limit."},
    422: {"model": ValidationErrorBody, "description": "The request is malformed; each error "
                                                       "names the field (loc)."},
    503: {"model": ErrorBody, "description": "A backend cannot be reached, or the server is "
                                             "not ready (Retry-After)."},
    500: {"model": ErrorBody, "description": "A bug ('internal error: <type>', the trace "
                                             "logged), or a failure of user code (named, with "
                                             "the request id; its error is in the log)."},
}


def field_error(loc: list[str | int], msg: str, kind: str) -> dict[str, Any]:
    """One entry of a 422's ``detail``."""
    return {"loc": loc, "msg": msg, "type": kind}


def invalid(errors: list[dict[str, Any]]) -> Answer:
    """422 listing field errors (at most ``MAX_ERRORS``)."""
    return 422, orjson.dumps({"detail": errors[:MAX_ERRORS]})


def body(detail: str, *, hint: str | None = None, **extra: Any) -> bytes:
    out: dict[str, Any] = {"detail": detail}
    if hint:
        out["hint"] = hint
    out.update(extra)
    return orjson.dumps(out)


def from_error(status: int, exc: TarmacError) -> Answer:
    """A TarmacError's message and hint under ``status`` (404, 503 ...)."""
    return status, body(exc.message, hint=exc.hint)


def close_names(name: str, known: Iterable[str], *, n: int = 3) -> list[str]:
    """Up to ``n`` known names close to ``name`` (none for a name far longer than any)."""
    names = sorted(set(known))
    if not names or len(name) > 3 * max(map(len, names)):
        return []
    return difflib.get_close_matches(name, names, n=n, cutoff=0.6)


def not_found(what: str, name: str, known: Iterable[str]) -> Answer:
    """404: ``no <what> named '<name>'`` (clipped), with the closest known names."""
    names = list(known)
    close = close_names(name, names)
    hint = (f"did you mean {', '.join(repr(c) for c in close)}?" if close
            else f"known: {', '.join(sorted(names)[:12])}" if names else None)
    return 404, body(f"no {what} named '{echo(name)}'", hint=hint)


def too_large(limit_bytes: int, hint: str | None = None) -> Answer:
    """413 for a body over ``limit_bytes``."""
    return 413, body(f"the body is larger than {limit_bytes >> 20} MiB", hint=hint)


def unavailable(detail: str, *, hint: str | None = None,
                extra: Mapping[str, Any] | None = None) -> Response:
    """503 with ``Retry-After``: not ready, or a backend cannot be reached."""
    return Response(body(detail, hint=hint, **dict(extra or {})), status_code=503,
                     media_type=JSON, headers={"Retry-After": str(RETRY_AFTER_S)})


def internal(exc: BaseException, request_id: str = "-", where: str = "") -> Answer:
    """500 for a bug: the trace goes to the log under the request id, the caller gets the
    exception's type only (never its text, which may quote data)."""
    log.error("internal error%s (request %s)", f" {where}" if where else "", request_id,
              exc_info=exc)
    return 500, orjson.dumps({"detail": f"internal error: {type(exc).__name__}"})


def respond(answer: Answer, headers: Mapping[str, str] | None = None) -> Response:
    status, payload = answer
    return Response(payload, status_code=status, media_type=JSON, headers=headers)


__all__ = ["ERROR_RESPONSES", "JSON", "Answer", "ErrorBody", "FieldError",
           "ValidationErrorBody", "close_names", "field_error", "from_error", "internal",
           "invalid", "not_found", "respond", "too_large", "unavailable"]
