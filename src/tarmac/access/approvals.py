"""Four-eyes on protected aliases: a move waits for approvals from other users.

``tarmac protect churn@champion --role admin --approvals 2`` makes promoting (or rolling back)
``churn@champion`` a request: the promotion's checks run (its gates must pass), then the move is
recorded as a pending request (``alias.requested``) and ``ApprovalRequired`` says so. Each
``tarmac approve churn`` by another user holding the role (``alias.approved``) counts once;
the requester cannot approve their own change. When the count is reached the move is made,
through the same gated promotion (a version whose gates stopped passing meanwhile is refused),
and the request is closed. Approvals are counted from the audit trail, not from the request
row, so an approval typed into the catalog counts for nothing.

Example::

    try:
        p.models.promote("churn", 4)            # as ana
    except ApprovalRequired as pending:
        print(pending.request_id)
    approve_request(p2, "churn")                # as ben, then as cy: the alias moves
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING

from tarmac.catalog import access as acat
from tarmac.catalog import now_us
from tarmac.errors import ApprovalRequired, UsageError
from tarmac.ledger.guard import approved

if TYPE_CHECKING:
    from tarmac.access.policy import Access
    from tarmac.project import Project

REQUESTED, APPROVED, APPLIED, REJECTED = ("alias.requested", "alias.approved",
                                          "alias.applied", "alias.rejected")


def request_move(access: Access, model: str, alias: str, version: int, action: str,
                 reason: str | None) -> None:
    """Called by the guard when a protected alias is about to move: allowed at once (no
    approvals needed, and the user holds the role), or recorded as a request and refused with
    ``ApprovalRequired``."""
    rule = access.rule(model, alias)
    if rule is None:
        return
    access.require_role(rule.role, f"alias:{model}@{alias}")
    if rule.approvals == 0:
        return
    user = access.project.ledger.actor
    open_ = [r for r in acat.requests(access.project.catalog, model=model, alias=alias,
                                      status="pending")
             if r.version == version and r.requested_by == user and r.action == action]
    if open_:
        req = open_[0]
    else:
        req = acat.AliasRequest(secrets.token_hex(8), model, alias, version, action, user,
                                now_us(), reason, (), "pending", None)
        access.project.ledger.commit(
            REQUESTED, f"model:{model}",
            {"request": req.id, "alias": alias, "version": version, "action": action,
             "reason": reason, "approvals": rule.approvals},
            change=lambda conn: acat.add_request(conn, req))
    raise ApprovalRequired(
        f"{model}@{alias} is protected: moving it to v{version} needs {rule.approvals} "
        f"approval(s) from other users with the role {rule.role}; request {req.id} is waiting",
        request_id=req.id, hint=f"another {rule.role} runs `tarmac approve {model} {version}`")


def pending(project: Project, model: str | None = None) -> list[acat.AliasRequest]:
    """Alias changes waiting for approvals (of ``model``)."""
    return acat.requests(project.catalog, model=model, status="pending")


def _find(project: Project, model: str, version: int | None) -> acat.AliasRequest | None:
    found = [r for r in pending(project, model) if version is None or r.version == version]
    if len(found) > 1:
        raise UsageError(f"{len(found)} alias changes of '{model}' are waiting: say which "
                         "version", hint=f"`tarmac approve {model} VERSION`")
    return found[0] if found else None


def approve_request(project: Project, model: str, version: int | None = None, *,
                    reason: str | None = None) -> acat.AliasRequest:
    """Approve the pending change of ``model`` (at ``version``) as the acting user; the alias
    moves when enough distinct users approved. Returns the request as it stands."""
    req = _find(project, model, version)
    if req is None:
        raise UsageError(f"no alias change of '{model}'"
                         + (f" to v{version}" if version is not None else "")
                         + " is waiting for approval")
    access = project.access
    found = access.principal()
    if found is None:
        raise UsageError("approvals need users and tokens: access is not enforced here",
                         hint="set TARMAC_TOKEN to your token")
    rule = access.rule(req.model, req.alias)
    if found.user == req.requested_by:
        access.deny(found, "approve:own-change", f"alias:{req.model}@{req.alias}", via="sdk")
    if rule is not None and found.role not in (rule.role, "admin"):
        access.require_role(rule.role, f"alias:{req.model}@{req.alias}")
    ledger = project.ledger
    said = [r for r in ledger.trusted(APPROVED, f"model:{req.model}")
            if json.loads(r.details).get("request") == req.id]
    already = {r.actor for r in said}
    if found.user in already:
        raise UsageError(f"{found.user} approved request {req.id} already")
    approvers = tuple(sorted(already | {found.user}))
    ledger.commit(APPROVED, f"model:{req.model}",
                  {"request": req.id, "alias": req.alias, "version": req.version,
                   "reason": reason},
                  change=lambda conn: acat.update_request(
                      conn, req.id, approvers=approvers, status="pending", closed_at=None,
                      expected=req.approvers))
    needed = rule.approvals if rule is not None else 0
    if len(approvers) < needed:
        return _reload(project, req.id)
    with approved(req.id):  # the move the approvals allowed; its gates are checked again
        forced = req.action.startswith("force-")  # approved as asked: forced past its gates
        if req.action.endswith("rollback"):
            project.models.rollback(req.model, alias=req.alias, to=req.version,
                                    reason=req.reason, force=forced)
        else:
            project.models.promote(req.model, req.version, alias=req.alias, reason=req.reason,
                                   force=forced)
    ledger.commit(APPLIED, f"model:{req.model}",
                  {"request": req.id, "alias": req.alias, "version": req.version,
                   "requested_by": req.requested_by, "approvers": list(approvers)},
                  change=lambda conn: acat.update_request(
                      conn, req.id, approvers=approvers, status="applied", closed_at=now_us(),
                      expected=approvers))
    return _reload(project, req.id)


def reject_request(project: Project, model: str, version: int | None = None, *,
                   reason: str | None = None) -> acat.AliasRequest:
    """Close a pending alias change without moving the alias (the requester may withdraw
    their own; others need the protection's role)."""
    req = _find(project, model, version)
    if req is None:
        raise UsageError(f"no alias change of '{model}' is waiting for approval")
    access = project.access
    found = access.principal()
    rule = access.rule(req.model, req.alias)
    if found is not None and found.user != req.requested_by and rule is not None \
            and found.role not in (rule.role, "admin"):
        access.require_role(rule.role, f"alias:{req.model}@{req.alias}")
    project.ledger.commit(REJECTED, f"model:{req.model}",
                          {"request": req.id, "alias": req.alias, "version": req.version,
                           "reason": reason},
                          change=lambda conn: acat.update_request(
                              conn, req.id, approvers=req.approvers, status="rejected",
                              closed_at=now_us(), expected=req.approvers))
    return _reload(project, req.id)


def _reload(project: Project, request_id: str) -> acat.AliasRequest:
    return next(r for r in acat.requests(project.catalog) if r.id == request_id)


__all__ = ["APPLIED", "APPROVED", "REJECTED", "REQUESTED",
           "approve_request", "pending", "reject_request", "request_move"]
