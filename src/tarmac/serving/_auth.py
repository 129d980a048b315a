"""API tokens on every HTTP route (``auth:`` in tarmac.yaml).

``auth: required`` asks every request but ``GET /health`` for ``Authorization: Bearer <token>``;
``off`` asks none; ``auto`` (the default) requires tokens when the catalog is PostgreSQL (a
shared deployment) or the server listens beyond loopback, and leaves the embedded laptop
default open. A missing, malformed, unknown, expired or revoked token is answered 401 with the
same body whatever was wrong; a valid token whose role lacks the route's permission is answered
403 naming the permission, and the denial is audited. Routes need ``predict``
(``/v1/predict/...``), ``produce`` (``/v1/topics/...``) or ``read`` (everything else).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

import orjson
from starlette.types import Receive, Scope, Send

from tarmac.access.policy import act_as

if TYPE_CHECKING:
    from tarmac.access.identity import Identity
    from tarmac.project import Project

log = logging.getLogger("tarmac.serving")
OPEN_PATHS = frozenset({"/health"})
_UNAUTHORIZED = orjson.dumps({"error": "unauthorized", "detail": "a valid API token is "
                              "required: Authorization: Bearer tmk_..."})


def required(project: Project, host: str | None) -> bool:
    """Whether this server asks for tokens (see the module's docstring)."""
    mode = project.config.auth
    if mode != "auto":
        return mode == "required"
    if project.config.catalog.startswith("postgresql"):
        return True
    if host is None or host == "localhost":
        return False
    if host in ("", "0.0.0.0", "::"):  # every interface
        return True
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name other than localhost: beyond loopback


def permission_for(method: str, path: str) -> str | None:
    if path in OPEN_PATHS:
        return None
    if path.startswith("/v1/predict/"):
        return "predict"
    if path.startswith("/v1/topics/"):
        return "produce"
    return "read"


class Gate:
    """Checks one request's token and permission; answers 401/403 itself when it fails."""

    def __init__(self, project: Project, identity: Identity) -> None:
        self.project = project
        self.identity = identity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """True when the request may go on; otherwise the answer has been sent."""
        needed = permission_for(scope["method"], scope["path"])
        if needed is None:
            return True
        token = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, rest = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    token = rest.strip()
                break
        principal = self.identity.authenticate(token)
        if principal is None:
            await _answer(send, 401, _UNAUTHORIZED, [(b"www-authenticate", b"Bearer")])
            return False
        resource = None
        if needed == "predict":
            resource = f"model:{scope['path'].removeprefix('/v1/predict/').split('/')[0]}"
        if not self.project.access.permits(principal, needed, resource):
            body = orjson.dumps({"error": "forbidden", "detail": (
                f"user '{principal.user}' (role {principal.role}) lacks the permission "
                f"'{needed}'{f' on {resource[:200]}' if resource else ''} for "
                f"{scope['method']} {scope['path'][:200]}")})
            try:
                self.project.ledger.commit(
                    "access.denied", f"user:{principal.user}",
                    {"permission": needed, "resource": resource and resource[:200],
                     "method": scope["method"],
                     "path": scope["path"][:200], "via": "http"})
            except Exception as exc:  # the denial stands; its record is best effort
                log.error("could not audit a denied request: %s", exc)
            await _answer(send, 403, body, [])
            return False
        scope["tarmac.user"] = principal.user
        act_as(principal)  # the SDK layer checks this request as its user, not the server's
        return True


async def _answer(send: Send, status: int, body: bytes,
                  headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
