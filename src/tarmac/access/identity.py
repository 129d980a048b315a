"""Identity: users with a role, scoped permissions per role, and API tokens.

Roles, from least to most: ``viewer`` (read), ``analyst`` (read, predict), ``data-engineer``
(also write, ingest, produce to topics, apply), ``ml-engineer`` (read, predict, apply, train,
validate, promote, deploy), ``admin`` (everything, including users, erasure and PII). A token is
``tmk_<id>_<secret>``: the id is public (listed, revoked by), the secret is shown once when the
token is created and stored only as its SHA-256. A token may expire (``--expires 30d``) and be
revoked; an expired, revoked, malformed or unknown token, or one of a disabled user, is refused
the same way (``authenticate`` returns ``None``: a caller learns nothing about which part was
wrong).

Tokens are checked by the HTTP server (``auth:`` in tarmac.yaml) and, where access is
enforced, by the SDK and the CLI acting as ``TARMAC_TOKEN``'s user (``tarmac.access.policy``).
A user or token row that does not match the audit trail (a role edited to ``admin``, a token
inserted by hand) authenticates nobody.

Example::

    from tarmac.access.identity import Identity
    ids = Identity(p)
    ids.add_user("ana", "ml-engineer")
    token = ids.create_token("ana", expires="30d")    # token.text is shown once
    ids.authenticate(token.text).user                 # 'ana'
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tarmac.catalog import identity as icat
from tarmac.catalog import now_us
from tarmac.errors import UsageError, echo
from tarmac.features.definitions import suggest
from tarmac.humanize import positive_duration

if TYPE_CHECKING:
    from tarmac.project import Project

log = logging.getLogger("tarmac.access")
ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "analyst": frozenset({"read", "predict"}),
    "data-engineer": frozenset({"read", "predict", "write", "ingest", "produce", "apply"}),
    "ml-engineer": frozenset({"read", "predict", "apply", "train", "validate", "promote",
                              "deploy"}),
    "admin": frozenset({"*"}),
}
PERMISSIONS = ("read", "predict", "write", "ingest", "produce", "apply", "train", "validate",
               "promote", "deploy", "erase", "read:pii", "read:audit", "manage:users")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.@-]{0,127}$")
_TOKEN = re.compile(r"^tmk_([a-f0-9]{16})_([A-Za-z0-9_-]{43})$")
#: how long a checked token is trusted without asking the catalog again (a revocation takes
#: at most this long to reach a running server)
CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class Principal:
    """Who a valid token acts for."""

    user: str
    role: str
    token_id: str

    def may(self, permission: str) -> bool:
        granted = ROLES.get(self.role, frozenset())
        return "*" in granted or permission in granted


@dataclass(frozen=True)
class NewToken:
    """A token just created: ``text`` is the secret, shown once and stored nowhere."""

    id: str
    user: str
    text: str
    expires_at: int | None


def role_of(name: str) -> str:
    if name not in ROLES:
        raise UsageError(f"no role named {echo(name)!r}" + suggest(name, ROLES, none=""),
                         hint=f"roles: {', '.join(ROLES)}")
    return name


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Identity:
    """A project's users and tokens (``p.identity``); every change is audited."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    def users(self) -> list[icat.User]:
        return icat.users(self.project.catalog)

    def add_user(self, name: str, role: str) -> icat.User:
        """A new user with ``role`` (audited as ``user.added``)."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise UsageError(f"user name {echo(name)!r} must start with a letter and hold "
                             "letters, digits, '_', '.', '@' or '-' (at most 128)")
        role_of(role)
        self.project.ledger.guard.check("manage:users")
        if icat.get_user(self.project.catalog, name) is not None:
            raise UsageError(f"user {name!r} exists already",
                             hint=f"change the role with `tarmac users role {name} ROLE`")
        actor, at = self.project.ledger.actor, now_us()
        self.project.ledger.commit("user.added", f"user:{name}", {"role": role},
                                   change=lambda conn: icat.add_user(conn, name, role, at,
                                                                     actor))
        return self._user(name)

    def set_role(self, name: str, role: str) -> icat.User:
        self.project.ledger.guard.check("manage:users")
        before = self._user(name)
        role_of(role)
        self.project.ledger.commit("user.role", f"user:{name}",
                                   {"from": before.role, "to": role},
                                   change=lambda conn: icat.set_role(conn, name, role))
        return self._user(name)

    def _user(self, name: str) -> icat.User:
        found = icat.get_user(self.project.catalog, name)
        if found is None:
            raise UsageError(f"no user named {echo(name)!r}"
                             + suggest(name, [u.name for u in self.users()],
                                       none=" (no users yet)"),
                             hint="add one with `tarmac users add NAME --role ROLE`")
        return found

    def tokens(self, user: str | None = None) -> list[icat.ApiToken]:
        return icat.tokens(self.project.catalog, user)

    def create_token(self, user: str, *, expires: str | timedelta | None = None) -> NewToken:
        """A new token for ``user`` (audited as ``token.created``, without the secret)."""
        self.project.ledger.guard.check("manage:users")
        self._user(user)
        at = now_us()
        expires_at = None
        if expires is not None:
            span = positive_duration(expires, "--expires", "30d")
            expires_at = at + int(span.total_seconds() * 1_000_000)
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = icat.ApiToken(token_id, user, _digest(secret), at, expires_at, None,
                               self.project.ledger.actor)
        self.project.ledger.commit(  # "id" and "digest": the trail can replay the token row
            "token.created", f"user:{user}",                 # ("token" keys are masked)
            {"token": token_id, "id": token_id, "digest": record.secret_sha256,
             "expires_at": expires_at},
            change=lambda conn: icat.add_token(conn, record))
        return NewToken(token_id, user, f"tmk_{token_id}_{secret}", expires_at)

    def revoke(self, token_id: str) -> bool:
        """Revoke a token by its id (audited); False when it was revoked already."""
        self.project.ledger.guard.check("manage:users")
        found = icat.get_token(self.project.catalog, token_id)
        if found is None:
            raise UsageError(f"no token with id {echo(token_id)!r}",
                             hint="`tarmac tokens list` shows the ids")
        done: list[bool] = []

        def change(conn: Any) -> None:
            done.append(icat.revoke_token(conn, token_id, now_us()))

        self.project.ledger.commit("token.revoked", f"user:{found.user}",
                                   {"token": token_id, "id": token_id},
                                   change=change)
        self._cache.clear()
        return bool(done and done[0])

    def authenticate(self, text: str | None) -> Principal | None:
        """The user a token acts for, or ``None`` (malformed, unknown, wrong secret, expired,
        revoked, or a disabled user: all the same to the caller). Checked tokens are cached
        for ``CACHE_SECONDS``."""
        if not text:
            return None
        now = time.monotonic()
        cached = self._cache.get(text)
        if cached is not None and now < cached[0]:
            return cached[1]
        principal, expires_at = self._check(text)
        trust = CACHE_SECONDS
        if expires_at is not None:  # never trusted past its expiry
            trust = min(trust, max(0.0, (expires_at - now_us()) / 1e6))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[text] = (now + trust, principal)
        return principal

    def _check(self, text: str) -> tuple[Principal | None, int | None]:
        m = _TOKEN.match(text)
        if m is None:
            return None, None
        token = icat.get_token(self.project.catalog, m.group(1))
        if token is None or token.revoked_at is not None:
            return None, None
        if not hmac.compare_digest(token.secret_sha256, _digest(m.group(2))):
            return None, None
        if token.expires_at is not None and token.expires_at <= now_us():
            return None, None
        user = icat.get_user(self.project.catalog, token.user)
        if user is None or user.disabled_at is not None:
            return None, None
        problem = self.project.ledger.identity_problem(user.name, user.role, token.id,
                                                       token.secret_sha256)
        if problem:  # a user or token row edited in the catalog is not believed
            log.error("token refused: %s", problem)
            return None, None
        return Principal(user.name, user.role, token.id), token.expires_at


__all__ = ["CACHE_SECONDS", "PERMISSIONS", "ROLES", "Identity", "NewToken", "Principal",
           "role_of"]
