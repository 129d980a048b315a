"""The catalog rows that governed decisions read, as plain tuples, for replaying them against the
audit trail (``tarmac.ledger.replay``): every alias, every deployment, every validation with the
digest of its report, every stored gate result, every user's role and every API token.

``report_digest`` is the SHA-256 the ``model.validate`` audit record carries, so a validation row
(status, the champion it was judged against, the gates hash, the report) can be proven to be the
one the trail recorded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from tarmac.catalog import _tables as t
from tarmac.catalog.store import Catalog

_BATCH = 5000


def report_digest(report: dict[str, Any]) -> str:
    """SHA-256 (hex) of a gate report as canonical JSON (sorted keys, no spaces): the same for
    the report in memory and the report read back from the catalog."""
    text = json.dumps(json.loads(json.dumps(report, default=str)), sort_keys=True,
                      separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ValidationRow:
    """One ``validations`` row and the statuses of its ``gate_results`` rows, by position."""

    id: str
    model: str
    version: int
    champion: int | None
    status: str
    gates: str
    report_sha256: str
    report_statuses: tuple[str, ...]  # per gate, from the report
    gate_statuses: tuple[str, ...]  # per gate, from the gate_results rows


def alias_rows(catalog: Catalog) -> dict[tuple[str, str], int]:
    """Every alias: (model, alias) -> version."""
    a = t.model_aliases.c
    with catalog.engine.connect() as conn:
        return {(r.model, r.alias): int(r.version)
                for r in conn.execute(select(a.model, a.alias, a.version))}


def deployment_rows(catalog: Catalog) -> dict[str, tuple[int | None, float | None, int | None]]:
    """Every deployment: endpoint -> (canary version, canary percent, shadow version)."""
    d = t.deployments.c
    with catalog.engine.connect() as conn:
        return {r.endpoint: (r.canary_version, r.canary_percent, r.shadow_version)
                for r in conn.execute(select(d.endpoint, d.canary_version, d.canary_percent,
                                             d.shadow_version))}


def user_rows(catalog: Catalog) -> dict[str, str]:
    """Every user: name -> role."""
    u = t.users.c
    with catalog.engine.connect() as conn:
        return {r.name: r.role for r in conn.execute(select(u.name, u.role))}


def token_rows(catalog: Catalog) -> dict[str, tuple[str, str, int | None, bool]]:
    """Every API token: id -> (user, SHA-256 of its secret, expires_at, revoked)."""
    k = t.api_tokens.c
    with catalog.engine.connect() as conn:
        return {r.id: (r.user_name, r.secret_sha256, r.expires_at, r.revoked_at is not None)
                for r in conn.execute(select(k.id, k.user_name, k.secret_sha256, k.expires_at,
                                             k.revoked_at))}


def validation_rows(catalog: Catalog, ids: list[str] | None = None) -> Iterator[ValidationRow]:
    """Every validation (or those with ``ids``), with its report digest and gate results."""
    v, g = t.validations.c, t.gate_results.c
    with catalog.engine.connect() as conn:
        after = ""
        while True:
            query = select(t.validations).where(v.id > after).order_by(v.id).limit(_BATCH)
            if ids is not None:
                query = query.where(v.id.in_(ids))
            rows = conn.execute(query).all()
            if not rows:
                return
            gates: dict[str, list[tuple[int, str]]] = {}
            for r in conn.execute(select(g.validation_id, g.position, g.status).where(
                    g.validation_id.in_([row.id for row in rows]))):
                gates.setdefault(r.validation_id, []).append((r.position, r.status))
            for row in rows:
                report = json.loads(row.report)
                results = report.get("results", []) if isinstance(report, dict) else []
                yield ValidationRow(
                    row.id, row.model, int(row.version), row.champion, row.status, row.gates,
                    report_digest(report),
                    tuple(str(r.get("status")) for r in results if isinstance(r, dict)),
                    tuple(s for _, s in sorted(gates.get(row.id, []))))
            after = rows[-1].id


__all__ = ["ValidationRow", "alias_rows", "deployment_rows", "report_digest", "token_rows",
           "user_rows", "validation_rows"]
