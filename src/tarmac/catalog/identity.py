"""Users and API tokens in the catalog. A token's secret is never stored: only its SHA-256
(the secret is 32 random bytes, so a fast hash is enough). Writes take the ``Connection`` of a
ledger transaction, so each change commits with its audit record (``tarmac.access.identity``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from tarmac.catalog import _tables as t
from tarmac.catalog.records import to_datetime
from tarmac.catalog.store import Catalog


@dataclass(frozen=True)
class User:
    name: str
    role: str
    created_at: int
    actor: str
    disabled_at: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "created_at": to_datetime(self.created_at),
                "actor": self.actor, "disabled": self.disabled_at is not None}


@dataclass(frozen=True)
class ApiToken:
    id: str
    user: str
    secret_sha256: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    actor: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "user": self.user, "created_at": to_datetime(self.created_at),
                "expires_at": to_datetime(self.expires_at),
                "revoked_at": to_datetime(self.revoked_at), "actor": self.actor}


def _user(r: Any) -> User:
    return User(r.name, r.role, r.created_at, r.actor, r.disabled_at)


def _token(r: Any) -> ApiToken:
    return ApiToken(r.id, r.user_name, r.secret_sha256, r.created_at, r.expires_at,
                    r.revoked_at, r.actor)


def users(catalog: Catalog) -> list[User]:
    with catalog.engine.connect() as conn:
        return [_user(r) for r in conn.execute(select(t.users).order_by(t.users.c.name)).all()]


def get_user(catalog: Catalog, name: str) -> User | None:
    with catalog.engine.connect() as conn:
        r = conn.execute(select(t.users).where(t.users.c.name == name)).first()
    return _user(r) if r is not None else None


def add_user(conn: Connection, name: str, role: str, at: int, actor: str) -> None:
    conn.execute(insert(t.users).values(name=name, role=role, created_at=at, actor=actor))


def set_role(conn: Connection, name: str, role: str) -> None:
    conn.execute(update(t.users).where(t.users.c.name == name).values(role=role))


def tokens(catalog: Catalog, user: str | None = None) -> list[ApiToken]:
    q = select(t.api_tokens)
    if user is not None:
        q = q.where(t.api_tokens.c.user_name == user)
    with catalog.engine.connect() as conn:
        return [_token(r) for r in conn.execute(q.order_by(t.api_tokens.c.created_at)).all()]


def get_token(catalog: Catalog, token_id: str) -> ApiToken | None:
    with catalog.engine.connect() as conn:
        r = conn.execute(select(t.api_tokens).where(t.api_tokens.c.id == token_id)).first()
    return _token(r) if r is not None else None


def admin_has_token(catalog: Catalog) -> bool:
    """Whether any admin was ever given a token (revoked and expired ones count): where access
    is enforced, it is open until then (the bootstrap)."""
    k, u = t.api_tokens.c, t.users.c
    with catalog.engine.connect() as conn:
        return conn.execute(select(k.id).join(t.users, u.name == k.user_name).where(
            u.role == "admin").limit(1)).first() is not None


def add_token(conn: Connection, token: ApiToken) -> None:
    conn.execute(insert(t.api_tokens).values(
        id=token.id, user_name=token.user, secret_sha256=token.secret_sha256,
        created_at=token.created_at, expires_at=token.expires_at, revoked_at=None,
        actor=token.actor))


def revoke_token(conn: Connection, token_id: str, at: int) -> bool:
    return conn.execute(update(t.api_tokens).where(
        (t.api_tokens.c.id == token_id) & t.api_tokens.c.revoked_at.is_(None)).values(
        revoked_at=at)).rowcount == 1


__all__ = ["ApiToken", "User", "add_token", "admin_has_token", "add_user", "get_token", "get_user",
           "revoke_token", "set_role", "tokens", "users"]
