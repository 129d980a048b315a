"""Grants, protected aliases and alias changes awaiting approvals, in the catalog.

Writes take the ``Connection`` of a ledger transaction, so each change commits with its audit
record (``tarmac.access.policy``). What decisions read is the audit trail's account of these
rows (``tarmac.ledger.replay``); the rows are what ``tarmac grants`` lists and what
``tarmac audit verify`` compares with the trail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from tarmac.catalog import _tables as t
from tarmac.catalog.records import to_datetime
from tarmac.catalog.store import Catalog
from tarmac.errors import ConflictError


@dataclass(frozen=True)
class Grant:
    subject: str  # role:NAME or user:NAME
    permission: str
    resource: str  # table:NAME, model:NAME, alias:MODEL@ALIAS
    created_at: int
    actor: str

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "permission": self.permission,
                "resource": self.resource, "created_at": to_datetime(self.created_at),
                "actor": self.actor}


@dataclass(frozen=True)
class Protection:
    model: str
    alias: str
    role: str
    approvals: int
    created_at: int
    actor: str

    def to_dict(self) -> dict[str, Any]:
        return {"alias": f"{self.model}@{self.alias}", "role": self.role,
                "approvals": self.approvals, "created_at": to_datetime(self.created_at),
                "actor": self.actor}


@dataclass(frozen=True)
class AliasRequest:
    id: str
    model: str
    alias: str
    version: int
    action: str
    requested_by: str
    requested_at: int
    reason: str | None
    approvers: tuple[str, ...]
    status: str
    closed_at: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "alias": f"{self.model}@{self.alias}", "version": self.version,
                "action": self.action, "requested_by": self.requested_by,
                "requested_at": to_datetime(self.requested_at), "reason": self.reason,
                "approvers": list(self.approvers), "status": self.status,
                "closed_at": to_datetime(self.closed_at)}


def grants(catalog: Catalog) -> list[Grant]:
    g = t.grants.c
    with catalog.engine.connect() as conn:
        rows = conn.execute(select(t.grants).order_by(g.resource, g.permission, g.subject))
        return [Grant(r.subject, r.permission, r.resource, r.created_at, r.actor) for r in rows]


def add_grant(conn: Connection, grant: Grant) -> None:
    conn.execute(insert(t.grants).values(
        subject=grant.subject, permission=grant.permission, resource=grant.resource,
        created_at=grant.created_at, actor=grant.actor))


def remove_grant(conn: Connection, subject: str, permission: str, resource: str) -> None:
    g = t.grants.c
    conn.execute(delete(t.grants).where(
        (g.subject == subject) & (g.permission == permission) & (g.resource == resource)))


def protections(catalog: Catalog) -> list[Protection]:
    p = t.protected_aliases.c
    with catalog.engine.connect() as conn:
        rows = conn.execute(select(t.protected_aliases).order_by(p.model, p.alias))
        return [Protection(r.model, r.alias, r.role, r.approvals, r.created_at, r.actor)
                for r in rows]


def set_protection(conn: Connection, rule: Protection) -> None:
    p = t.protected_aliases.c
    conn.execute(delete(t.protected_aliases).where((p.model == rule.model)
                                                   & (p.alias == rule.alias)))
    conn.execute(insert(t.protected_aliases).values(
        model=rule.model, alias=rule.alias, role=rule.role, approvals=rule.approvals,
        created_at=rule.created_at, actor=rule.actor))


def remove_protection(conn: Connection, model: str, alias: str) -> None:
    p = t.protected_aliases.c
    conn.execute(delete(t.protected_aliases).where((p.model == model) & (p.alias == alias)))


def _request(r: Any) -> AliasRequest:
    return AliasRequest(r.id, r.model, r.alias, int(r.version), r.action, r.requested_by,
                        r.requested_at, r.reason, tuple(json.loads(r.approvers)), r.status,
                        r.closed_at)


def requests(catalog: Catalog, *, model: str | None = None, alias: str | None = None,
             status: str | None = None) -> list[AliasRequest]:
    q = select(t.alias_requests)
    c = t.alias_requests.c
    if model is not None:
        q = q.where(c.model == model)
    if alias is not None:
        q = q.where(c.alias == alias)
    if status is not None:
        q = q.where(c.status == status)
    with catalog.engine.connect() as conn:
        return [_request(r) for r in conn.execute(q.order_by(c.requested_at))]


def add_request(conn: Connection, req: AliasRequest) -> None:
    conn.execute(insert(t.alias_requests).values(
        id=req.id, model=req.model, alias=req.alias, version=req.version, action=req.action,
        requested_by=req.requested_by, requested_at=req.requested_at, reason=req.reason,
        approvers=json.dumps(list(req.approvers)), status=req.status, closed_at=req.closed_at))


def update_request(conn: Connection, request_id: str, *, approvers: tuple[str, ...],
                   status: str, closed_at: int | None, expected: tuple[str, ...]) -> None:
    """Record approvals (and close the request); ``ConflictError`` (the transaction and its
    audit record roll back) if it was closed or approved by someone else meanwhile."""
    c = t.alias_requests.c
    done = conn.execute(update(t.alias_requests).where(
        (c.id == request_id) & (c.status == "pending")
        & (c.approvers == json.dumps(list(expected)))).values(
        approvers=json.dumps(list(approvers)), status=status, closed_at=closed_at)).rowcount
    if done != 1:
        raise ConflictError(f"alias request {request_id} changed while this was deciding on it",
                            hint="look again with `tarmac approvals` and retry")


__all__ = ["AliasRequest", "Grant", "Protection", "add_grant", "add_request", "grants",
           "protections", "remove_grant", "remove_protection", "requests", "set_protection",
           "update_request"]
