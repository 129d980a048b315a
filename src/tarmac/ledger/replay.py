"""Governed state replayed from the audit trail and compared with the catalog.

The hash chain (and its MACs) prove the trail; the rows that decisions read (aliases,
deployments, validations and their gate results) live in ordinary catalog tables that anyone
with write access can edit. Every change to them is audited with enough detail to replay it:

- ``model.promote`` / ``model.rollback`` (target ``model:NAME``): ``alias`` and ``to``;
- ``deploy.*`` (target ``endpoint:NAME``): ``to`` = canary, percent, shadow; and
  ``deploy.promote_canary`` also ``promotion`` = the alias move;
- ``model.validate`` (target ``model:NAME@VERSION``): ``validation`` (id), ``status``,
  ``champion``, and, since keyed audit records, ``gates`` and ``report_sha256``;
- ``user.added`` / ``user.role`` (target ``user:NAME``): ``role`` / ``to``;
- ``access.grant`` / ``access.ungrant`` (target the resource): ``subject`` and ``permission``;
- ``alias.protect`` / ``alias.unprotect`` (target ``model:NAME``): ``alias``, ``role`` and
  ``approvals``;
- ``token.created`` / ``token.revoked`` (target ``user:NAME``): ``id``, ``digest`` (SHA-256 of
  the secret, as the catalog stores it) and ``expires_at``. Tokens created before the records
  carried ``id`` cannot be replayed: that user's tokens are then not compared.

``GovernedState`` folds those records (fed during the chain walk, one pass) and ``compare`` names
every catalog row that disagrees, with the record that says otherwise.

Example::

    state = GovernedState()
    for record in catalog.iter_audit():
        state.feed(record)
    state.compare(catalog)   # ["alias churn@champion is v2 in the catalog but ..."]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tarmac.catalog import AuditRecord, Catalog
from tarmac.catalog.access import grants, protections
from tarmac.catalog.governed import (
    ValidationRow,
    alias_rows,
    deployment_rows,
    token_rows,
    user_rows,
    validation_rows,
)

ALIAS_ACTIONS = ("model.promote", "model.rollback")
USER_ACTIONS = ("user.added", "user.role")
TOKEN_ACTIONS = ("token.created", "token.revoked")
GRANT_ACTIONS = ("access.grant", "access.ungrant")
PROTECT_ACTIONS = ("alias.protect", "alias.unprotect")
VALIDATE_ACTION = "model.validate"
DEPLOY_PREFIX = "deploy."


@dataclass(frozen=True)
class ValidationClaim:
    """What the trail says about one validation: the record's fields that a row must match."""

    seq: int
    model: str
    version: int
    status: str
    champion: int | None
    gates: str | None  # None on records written before they carried it
    report_sha256: str | None


@dataclass
class GovernedState:
    """Aliases, deployments and validations as the audit trail says they are."""

    aliases: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # -> (v, seq)
    deployments: dict[str, tuple[tuple[Any, Any, Any], int]] = field(default_factory=dict)
    validations: dict[str, ValidationClaim] = field(default_factory=dict)
    users: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (role, seq)
    # token id -> (user, digest, expires_at, revoked, seq)
    tokens: dict[str, tuple[str, str | None, int | None, bool, int]] = field(
        default_factory=dict)
    legacy_token_users: set[str] = field(default_factory=set)  # token records without an id
    grants: dict[tuple[str, str, str], int] = field(default_factory=dict)  # -> seq
    protections: dict[tuple[str, str], tuple[str, int, int]] = field(default_factory=dict)

    def feed(self, rec: AuditRecord) -> None:
        """Fold one record in (records must come in sequence order)."""
        action = rec.action
        if action in ALIAS_ACTIONS:
            details = json.loads(rec.details)
            self._move(rec.target.removeprefix("model:"), details, rec.seq)
        elif action.startswith(DEPLOY_PREFIX):
            details = json.loads(rec.details)
            endpoint = rec.target.removeprefix("endpoint:")
            to = details.get("to")
            if isinstance(to, dict):
                self.deployments[endpoint] = (
                    (to.get("canary"), to.get("percent"), to.get("shadow")), rec.seq)
            promotion = details.get("promotion")
            if isinstance(promotion, dict):
                self._move(endpoint, promotion, rec.seq)
        elif action == VALIDATE_ACTION:
            details = json.loads(rec.details)
            claim = claim_of(rec, details)
            if claim is not None:
                self.validations[str(details["validation"])] = claim
        elif action in USER_ACTIONS:
            details = json.loads(rec.details)
            role = details.get("role" if action == "user.added" else "to")
            if isinstance(role, str):
                self.users[rec.target.removeprefix("user:")] = (role, rec.seq)
        elif action in TOKEN_ACTIONS:
            details = json.loads(rec.details)
            user, token = rec.target.removeprefix("user:"), details.get("id")
            if not isinstance(token, str):
                self.legacy_token_users.add(user)
            elif action == "token.created":
                self.tokens[token] = (user, details.get("digest"), details.get("expires_at"),
                                      False, rec.seq)
            elif token in self.tokens:
                owner, digest, expires, _, _ = self.tokens[token]
                self.tokens[token] = (owner, digest, expires, True, rec.seq)

        elif action in GRANT_ACTIONS:
            details = json.loads(rec.details)
            key = (str(details.get("subject")), str(details.get("permission")), rec.target)
            if action == "access.grant":
                self.grants[key] = rec.seq
            else:
                self.grants.pop(key, None)
        elif action in PROTECT_ACTIONS:
            details = json.loads(rec.details)
            where = (rec.target.removeprefix("model:"), str(details.get("alias")))
            if action == "alias.protect":
                self.protections[where] = (str(details.get("role")),
                                           int(details.get("approvals") or 0), rec.seq)
            else:
                self.protections.pop(where, None)

    def _move(self, model: str, details: dict[str, Any], seq: int) -> None:
        alias, to = details.get("alias"), details.get("to")
        if isinstance(alias, str) and isinstance(to, int):
            self.aliases[(model, alias)] = (to, seq)

    def compare(self, catalog: Catalog) -> list[str]:
        """Every catalog row that disagrees with the trail, one sentence each (empty: all
        match)."""
        problems: list[str] = []
        rows = alias_rows(catalog)
        for (model, alias), version in sorted(rows.items()):
            said = self.aliases.get((model, alias))
            if said is None:
                problems.append(f"alias {model}@{alias} is v{version} in the catalog but the "
                                "audit trail never moved it: the row was written outside "
                                "Tarmac")
            elif said[0] != version:
                problems.append(f"alias {model}@{alias} is v{version} in the catalog but the "
                                f"audit trail last moved it to v{said[0]} (record #{said[1]})")
        for (model, alias), (version, seq) in sorted(self.aliases.items()):
            if (model, alias) not in rows:
                problems.append(f"alias {model}@{alias} is missing from the catalog but the "
                                f"audit trail last moved it to v{version} (record #{seq})")
        deployed = deployment_rows(catalog)
        for endpoint in sorted(set(deployed) | set(self.deployments)):
            now = deployed.get(endpoint, (None, None, None))
            said_dep = self.deployments.get(endpoint)
            then = said_dep[0] if said_dep else (None, None, None)
            if tuple(now) != tuple(then):
                where = f" (record #{said_dep[1]})" if said_dep else " (no deploy record)"
                problems.append(f"deployment of {endpoint} is {_deployment(now)} in the catalog "
                                f"but the audit trail says {_deployment(then)}{where}")
        seen: set[str] = set()
        for row in validation_rows(catalog):
            seen.add(row.id)
            problem = validation_problem(row, self.validations.get(row.id))
            if problem:
                problems.append(problem)
        for vid, claim in sorted(self.validations.items(), key=lambda kv: kv[1].seq):
            if vid not in seen:
                problems.append(f"validation {vid[:8]} of {claim.model} v{claim.version} "
                                f"({claim.status}, record #{claim.seq}) is missing from the "
                                "catalog: the row was deleted")
        problems += self._compare_identity(catalog)
        problems += self._compare_access(catalog)
        return problems

    def _compare_access(self, catalog: Catalog) -> list[str]:
        problems = []
        rows = {(g.subject, g.permission, g.resource) for g in grants(catalog)}
        for subject, permission, resource in sorted(rows - set(self.grants)):
            problems.append(f"grant of {permission} on {resource} to {subject} is in the "
                            "catalog but the audit trail never granted it")
        for key in sorted(set(self.grants) - rows):
            problems.append(f"grant of {key[1]} on {key[2]} to {key[0]} is missing from the "
                            f"catalog but the audit trail granted it (record "
                            f"#{self.grants[key]})")
        rules = {(r.model, r.alias): (r.role, r.approvals) for r in protections(catalog)}
        for where in sorted(set(rules) | set(self.protections)):
            now, said = rules.get(where), self.protections.get(where)
            if said is None:
                problems.append(f"protection of {where[0]}@{where[1]} is in the catalog but "
                                "the audit trail never protected it")
            elif now is None:
                problems.append(f"protection of {where[0]}@{where[1]} is missing from the "
                                f"catalog but the audit trail protected it (record "
                                f"#{said[2]})")
            elif now != said[:2]:
                problems.append(f"protection of {where[0]}@{where[1]} is {now[0]} with "
                                f"{now[1]} approval(s) in the catalog but the audit trail "
                                f"says {said[0]} with {said[1]} (record #{said[2]})")
        return problems

    def _compare_identity(self, catalog: Catalog) -> list[str]:
        problems: list[str] = []
        users = user_rows(catalog)
        for name in sorted(set(users) | set(self.users)):
            said = self.users.get(name)
            if name not in users:
                assert said is not None
                problems.append(f"user {name} is missing from the catalog but the audit trail "
                                f"made them {said[0]} (record #{said[1]})")
            elif said is None:
                problems.append(f"user {name} ({users[name]}) is in the catalog but the audit "
                                "trail never added them: the row was written outside Tarmac")
            elif users[name] != said[0]:
                problems.append(f"user {name} is {users[name]} in the catalog but the audit "
                                f"trail last made them {said[0]} (record #{said[1]})")
        tokens = token_rows(catalog)
        for token in sorted(set(tokens) | set(self.tokens)):
            row, claim = tokens.get(token), self.tokens.get(token)
            if claim is None:
                assert row is not None
                if row[0] not in self.legacy_token_users:
                    problems.append(f"token {token} of user {row[0]} is in the catalog but the "
                                    "audit trail never created it: the row was written "
                                    "outside Tarmac")
                continue
            user, digest, expires, revoked, seq = claim
            at = f"(record #{seq})"
            if row is None:
                problems.append(f"token {token} of user {user} is missing from the catalog "
                                f"{at}")
            elif row[0] != user:
                problems.append(f"token {token} belongs to {row[0]} in the catalog but the "
                                f"audit trail created it for {user} {at}")
            elif digest is not None and row[1] != digest:
                problems.append(f"token {token} of user {user}: its secret hash was replaced "
                                f"in the catalog {at}")
            elif row[2] != expires:
                problems.append(f"token {token} of user {user}: its expiry was edited in the "
                                f"catalog {at}")
            elif row[3] != revoked:
                now, then = (("revoked", "active") if row[3] else ("active", "revoked"))
                problems.append(f"token {token} of user {user} is {now} in the catalog but "
                                f"{then} in the audit trail {at}")
        return problems


def claim_of(rec: AuditRecord, details: dict[str, Any]) -> ValidationClaim | None:
    """The validation a ``model.validate`` record describes (None if it names none)."""
    if not details.get("validation"):
        return None
    model, _, version = rec.target.removeprefix("model:").rpartition("@")
    return ValidationClaim(rec.seq, model, int(version) if version.isdigit() else -1,
                           str(details.get("status")), details.get("champion"),
                           details.get("gates"), details.get("report_sha256"))


def validation_problem(row: ValidationRow, claim: ValidationClaim | None) -> str | None:
    """Why a validation row does not match what the trail recorded for it, or None."""
    name = f"validation {row.id[:8]} of {row.model} v{row.version}"
    if claim is None:
        return (f"{name} ({row.status}) is not in the audit trail: the row was written outside "
                "Tarmac")
    at = f"(record #{claim.seq})"
    if (row.model, row.version) != (claim.model, claim.version):
        return (f"{name} is for {row.model} v{row.version} in the catalog but the audit trail "
                f"recorded it for {claim.model} v{claim.version} {at}")
    if row.status != claim.status:
        return (f"{name} is '{row.status}' in the catalog but the audit trail recorded "
                f"'{claim.status}' {at}")
    if row.champion != claim.champion:
        return (f"{name} was judged against champion v{row.champion} in the catalog but "
                f"against v{claim.champion} in the audit trail {at}")
    if claim.gates is not None and row.gates != claim.gates:
        return f"{name}: its gates hash was edited in the catalog {at}"
    if claim.report_sha256 is not None and row.report_sha256 != claim.report_sha256:
        return f"{name}: its gate report was edited in the catalog {at}"
    if row.gate_statuses and row.gate_statuses != row.report_statuses:
        n = max(len(row.gate_statuses), len(row.report_statuses))
        stored = row.gate_statuses + ("(missing)",) * (n - len(row.gate_statuses))
        reported = row.report_statuses + ("(missing)",) * (n - len(row.report_statuses))
        bad = next(i for i in range(n) if stored[i] != reported[i])
        return (f"{name}: gate result #{bad + 1} is '{stored[bad]}' in the catalog but its "
                f"audited report says '{reported[bad]}' {at}")
    return None


def _deployment(value: tuple[Any, Any, Any]) -> str:
    canary, percent, shadow = value
    parts = []
    if canary is not None:
        parts.append(f"canary v{canary} at {percent}%")
    if shadow is not None:
        parts.append(f"shadow v{shadow}")
    return ", ".join(parts) or "champion only"


__all__ = ["GovernedState", "ValidationClaim", "claim_of", "validation_problem"]
