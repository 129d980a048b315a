"""Deployments in the catalog: per endpoint (a model name), the canary version with its share of
traffic and the shadow version served beside the champion alias, and the history of changes.

Reads take a ``Catalog``; writes take the ``Connection`` of a ledger transaction, so a change
commits together with its audit record. A change is compare-and-swap on a generation number: of
two racing changes exactly one lands. ``serving_stamp`` is the cheap marker a server polls to
notice that an alias or a deployment changed (hot reload) without reading either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tarmac.catalog import _tables as t
from tarmac.catalog._paging import paginate
from tarmac.catalog.records import Page, now_us, to_datetime
from tarmac.catalog.store import Catalog
from tarmac.errors import ConflictError


@dataclass(frozen=True)
class Deployment:
    """What serves an endpoint beside its champion: none of it set means champion only."""

    endpoint: str
    canary_version: int | None = None
    canary_percent: float | None = None
    shadow_version: int | None = None
    generation: int = 0  # 0: never deployed (no row)
    updated_at: int | None = None
    actor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "canary": self.canary_version,
                "percent": self.canary_percent, "shadow": self.shadow_version,
                "generation": self.generation,
                "updated_at": to_datetime(self.updated_at) if self.updated_at else None,
                "actor": self.actor}


@dataclass(frozen=True)
class DeploymentChange:
    """One entry of an endpoint's history: the action and the deployment it left."""

    id: int
    endpoint: str
    action: str
    canary_version: int | None
    canary_percent: float | None
    shadow_version: int | None
    reason: str | None
    at: int
    actor: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "endpoint": self.endpoint, "action": self.action,
                "canary": self.canary_version, "percent": self.canary_percent,
                "shadow": self.shadow_version, "reason": self.reason,
                "at": to_datetime(self.at), "actor": self.actor}


def _deployment(r: Any) -> Deployment:
    return Deployment(r.endpoint, r.canary_version, r.canary_percent, r.shadow_version,
                      r.generation, r.updated_at, r.actor)


def get_deployment(catalog: Catalog, endpoint: str) -> Deployment:
    """The endpoint's deployment (generation 0 and nothing set when it was never deployed)."""
    d = t.deployments
    with catalog.engine.connect() as conn:
        r = conn.execute(select(d).where(d.c.endpoint == endpoint)).first()
    return Deployment(endpoint) if r is None else _deployment(r)


def deployments(catalog: Catalog, *, limit: int = 100,
                cursor: str | None = None) -> Page[Deployment]:
    """A page of deployments, by endpoint name."""
    d = t.deployments
    with catalog.engine.connect() as conn:
        rows, nxt = paginate(conn, select(d), [(d.c.endpoint, False)], limit=limit,
                             cursor=cursor)
    return Page([_deployment(r) for r in rows], nxt)


def set_deployment(conn: Connection, *, expected: Deployment, action: str, actor: str,
                   canary_version: int | None, canary_percent: float | None,
                   shadow_version: int | None, reason: str | None = None) -> Deployment:
    """Replace the endpoint's deployment if it still is at ``expected.generation``
    (compare-and-swap) and record the change; a concurrent change raises ``ConflictError``."""
    d = t.deployments
    at = now_us()
    values = {"canary_version": canary_version, "canary_percent": canary_percent,
              "shadow_version": shadow_version, "updated_at": at, "actor": actor}
    generation = expected.generation + 1
    if expected.generation == 0:
        try:
            with conn.begin_nested():
                conn.execute(insert(d).values(endpoint=expected.endpoint, generation=1,
                                              **values))
        except IntegrityError:
            raise _conflict(expected.endpoint) from None
    else:
        done = conn.execute(update(d).where((d.c.endpoint == expected.endpoint)
                                            & (d.c.generation == expected.generation))
                            .values(generation=generation, **values))
        if done.rowcount != 1:
            raise _conflict(expected.endpoint)
    conn.execute(insert(t.deployment_history).values(
        endpoint=expected.endpoint, action=action, canary_version=canary_version,
        canary_percent=canary_percent, shadow_version=shadow_version, reason=reason, at=at,
        actor=actor))
    return Deployment(expected.endpoint, canary_version, canary_percent, shadow_version,
                      generation, at, actor)


def _conflict(endpoint: str) -> ConflictError:
    return ConflictError(f"the deployment of '{endpoint}' changed while this change was being "
                         "made; nothing was changed",
                         hint=f"check `tarmac deploy status {endpoint}` and try again")


def deployment_history(catalog: Catalog, endpoint: str, *, limit: int = 50,
                       cursor: str | None = None) -> Page[DeploymentChange]:
    """A page of an endpoint's deployment changes, newest first."""
    h = t.deployment_history
    query = select(h).where(h.c.endpoint == endpoint)
    with catalog.engine.connect() as conn:
        rows, nxt = paginate(conn, query, [(h.c.id, True)], limit=limit, cursor=cursor)
    return Page([DeploymentChange(r.id, r.endpoint, r.action, r.canary_version,
                                  r.canary_percent, r.shadow_version, r.reason, r.at, r.actor)
                 for r in rows], nxt)


def serving_stamp(catalog: Catalog) -> tuple[int, ...]:
    """A cheap marker that changes whenever an alias moves or a deployment changes (each bumps
    its row's generation; rows are never deleted): what servers poll for hot reload."""
    a, d = t.model_aliases.c, t.deployments.c
    with catalog.engine.connect() as conn:
        aliases = conn.execute(select(func.count(), func.coalesce(func.sum(a.generation), 0))
                               ).one()
        deployed = conn.execute(select(func.count(), func.coalesce(func.sum(d.generation), 0))
                                ).one()
    return int(aliases[0]), int(aliases[1]), int(deployed[0]), int(deployed[1])


__all__ = ["Deployment", "DeploymentChange", "deployment_history", "deployments",
           "get_deployment", "serving_stamp", "set_deployment"]
