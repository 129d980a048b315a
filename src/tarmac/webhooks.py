"""Signed webhook POSTs with bounded retries: what monitoring alerts and audit anchors send.

A body is signed when there is a secret: ``X-Tarmac-Timestamp: <unix seconds>`` and
``X-Tarmac-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` (the receiver
recomputes it with ``sign`` and compares in constant time; the timestamp lets it refuse
replays). Timeouts, connection errors, 429 and 5xx are retried ``retries`` times after
``backoff``, ``2*backoff``, ... seconds, never past ``max_seconds`` in all; any other 4xx fails
at once. ``post`` never raises: it returns a ``Posted`` saying what happened, with no secret
and no expanded URL in its error (a webhook URL often IS the secret: Slack's carry a token).

URLs and secrets may name environment variables as ``tarmac.yaml`` does (``${VAR}``,
``${VAR:-default}``): ``expand`` reads them at send time.

Example::

    got = post("https://siem.example/anchors", b'{"seq":12}', secret=os.environ["S"],
               headers={"Idempotency-Key": "chain-12"}, user_agent="tarmac-anchors")
    got.ok, got.attempts, got.status_code      # (True, 1, 200)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from tarmac.errors import UsageError

SIGNATURE_HEADER = "X-Tarmac-Signature"
TIMESTAMP_HEADER = "X-Tarmac-Timestamp"
KEY_HEADER = "Idempotency-Key"
#: characters of an error kept (in a delivery history, an audit record)
ERROR_CHARS = 300
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 a webhook sends: over ``<timestamp>.<body>`` with ``secret``.

    Example, on the receiving side::

        expected = "sha256=" + sign(secret, request.headers["X-Tarmac-Timestamp"], raw_body)
        hmac.compare_digest(expected, request.headers["X-Tarmac-Signature"])
    """
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                    hashlib.sha256).hexdigest()


def expand(value: str, what: str) -> str:
    """``${VAR}``/``${VAR:-default}`` as ``tarmac.yaml`` expands them (an unset variable with
    no default is a ``UsageError`` naming it; never the value)."""
    def substitute(match: re.Match[str]) -> str:
        var, default = match.group(1), match.group(2)
        found = os.environ.get(var)
        if found is not None and (found or default is None):
            return found
        if default is not None:
            return default
        raise UsageError(f"the webhook {what} uses ${{{var}}} but the environment variable "
                         f"{var} is not set", hint=f"export {var}=...")
    return ENV_REFERENCE.sub(substitute, value)


def clean(text: str, secrets: Sequence[str]) -> str:
    """An error safe to keep: no secret or expanded URL in it, at most ERROR_CHARS."""
    for s in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(s, "***")
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS - 1] + "…"


def display_name(url: str) -> str:
    """How a webhook is named where it is recorded: the URL as written if it names variables
    (``${ALERT_URL}``), else only its scheme, host and port."""
    if ENV_REFERENCE.search(url):
        return url[:256]
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"[:256]


@dataclass(frozen=True)
class Posted:
    """What one ``post`` did: ``ok`` (a 2xx) after ``attempts`` tries, the last HTTP status
    and error (cleaned of secrets), and how long it took."""

    ok: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None
    seconds: float = 0.0


def post(url: str, body: bytes, *, secret: str | None = None, timeout: float = 5.0,
         retries: int = 3, backoff: float = 0.5, max_seconds: float = 30.0,
         headers: Mapping[str, str] | None = None, user_agent: str = "tarmac",
         transport: httpx.BaseTransport | None = None,
         sleep: Callable[[float], None] = time.sleep) -> Posted:
    """POST ``body`` (JSON) to ``url``, signed with ``secret`` if given, retrying what may pass
    on a retry (see the module docstring); never raises. ``url`` and ``secret`` may hold
    ``${VAR}`` references, expanded here."""
    started = time.monotonic()
    secrets: list[str] = []
    try:
        target = expand(url, "url")
        secrets.append(target)
        key = expand(secret, "secret") if secret else None
        if key:
            secrets.append(key)
    except UsageError as exc:
        return Posted(False, 0, error=clean(exc.message, secrets))
    attempts, status, error, retry = 0, None, None, False
    with httpx.Client(timeout=timeout, transport=transport, follow_redirects=False) as client:
        while True:
            attempts += 1
            sent = {"Content-Type": "application/json", "User-Agent": user_agent,
                    **(headers or {})}
            if key:
                stamp = str(int(time.time()))
                sent[TIMESTAMP_HEADER] = stamp
                sent[SIGNATURE_HEADER] = "sha256=" + sign(key, stamp, body)
            retry = False
            try:
                response = client.post(target, content=body, headers=sent)
                status = response.status_code
                if 200 <= status < 300:
                    return Posted(True, attempts, status, seconds=time.monotonic() - started)
                error = f"HTTP {status}: {response.text[:ERROR_CHARS]}"
                retry = status >= 500 or status == 429
            except httpx.TimeoutException as exc:
                status, error, retry = None, f"timed out after {timeout:g}s " \
                                             f"({type(exc).__name__})", True
            except httpx.TransportError as exc:
                status, error, retry = None, f"{type(exc).__name__}: {exc}", True
            except (httpx.HTTPError, ValueError) as exc:  # a malformed URL, and the like
                status, error = None, f"{type(exc).__name__}: {exc}"
            wait = backoff * 2 ** (attempts - 1)
            elapsed = time.monotonic() - started
            if not retry or attempts > retries or elapsed + wait + timeout > max_seconds:
                break
            sleep(wait)
    why = error or "no response"
    if retry and attempts > 1:
        why = f"failed after {attempts} attempts; last: {why}"
    return Posted(False, attempts, status, clean(why, secrets), time.monotonic() - started)


__all__ = ["ENV_REFERENCE", "ERROR_CHARS", "KEY_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER",
           "Posted", "clean", "display_name", "expand", "post", "sign"]
