"""The permission check every governed action passes, installed on the ledger.

The ledger is already the one choke point every write goes through; the guard puts the question
"may the acting user do this?" at the same place, so the lake, the feature store, the registry,
ingestion and serving ask it without importing the access layer that answers it
(``tarmac.access.policy`` installs an ``Authorizer`` when access is enforced; with none
installed, everything is allowed, the embedded laptop default).

``acting(permission, resource)`` checks once for a whole action and marks the work inside it as
part of that action: the writes the action makes on its own behalf (a training run's training
set, an ingestion's quarantine, a promotion's audit) are not asked again, but every *read* is, so
an action cannot read a table its user may not. ``internal(why)`` marks work the system does for
an action checked elsewhere (the prediction log a checked ``predict`` request feeds).

Example::

    with p.ledger.guard.acting("train", "model:churn"):
        ...   # writes inside are the training's own; reads are still checked
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

_INSIDE: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "tarmac_governed_action", default=())


class Authorizer(Protocol):
    """What answers the guard's questions (``tarmac.access.policy.Access``)."""

    @property
    def user(self) -> str | None: ...

    def check(self, permission: str, resource: str | None = None) -> None: ...

    def allows(self, permission: str, resource: str | None = None) -> bool: ...

    def protected_move(self, model: str, alias: str, version: int, action: str,
                       reason: str | None) -> None: ...

    @property
    def mask_key(self) -> bytes: ...


class Guard:
    """Asks the installed ``Authorizer``; allows everything when none is installed."""

    def __init__(self) -> None:
        self.authorizer: Authorizer | None = None

    @property
    def enforced(self) -> bool:
        return self.authorizer is not None

    @property
    def user(self) -> str | None:
        """The authenticated user acting, if any (the audit trail's actor)."""
        return self.authorizer.user if self.authorizer is not None else None

    @property
    def inside(self) -> bool:
        """Whether the calling code runs inside a checked action (its own SQL, not a user's)."""
        return bool(_INSIDE.get())

    @property
    def mask_key(self) -> bytes | None:
        """The key personal data is pseudonymized with (``tarmac.lake.masking``)."""
        return self.authorizer.mask_key if self.authorizer is not None else None

    def check(self, permission: str, resource: str | None = None) -> None:
        """Raise ``PermissionDenied`` (audited) unless the acting user may; inside an action
        already checked, only reads are asked again."""
        if self.authorizer is None:
            return
        if _INSIDE.get() and (not permission.startswith("read") or permission == "read:audit"):
            return  # (the system's own bookkeeping reads the trail: a trace's history, ...)
        self.authorizer.check(permission, resource)

    def allows(self, permission: str, resource: str | None = None) -> bool:
        """Whether the acting user may (no record, no error): for masking and listings."""
        return self.authorizer is None or self.authorizer.allows(permission, resource)

    def protected_move(self, model: str, alias: str, version: int, action: str,
                       reason: str | None = None) -> None:
        """Before ``model@alias`` moves to ``version``: a protected alias needs its role and,
        if declared, approvals (``ApprovalRequired`` records the request). A move the
        approvals allowed (inside ``approved``) goes on."""
        if self.authorizer is None or _APPROVED.get() is not None:
            return
        self.authorizer.protected_move(model, alias, version, action, reason)

    @contextmanager
    def acting(self, permission: str, resource: str | None = None) -> Iterator[None]:
        """Check ``permission`` on ``resource`` once, then run the action's own work."""
        self.check(permission, resource)
        with internal(f"{permission} {resource or ''}".strip()):
            yield


_APPROVED: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tarmac_approved_request", default=None)


@contextmanager
def approved(request_id: str) -> Iterator[None]:
    """The alias move inside was approved (request ``request_id``)."""
    token = _APPROVED.set(request_id)
    try:
        yield
    finally:
        _APPROVED.reset(token)


@contextmanager
def internal(why: str) -> Iterator[None]:
    """Mark the work inside as the system's, for an action checked elsewhere."""
    token = _INSIDE.set((*_INSIDE.get(), why))
    try:
        yield
    finally:
        _INSIDE.reset(token)


__all__ = ["Authorizer", "Guard", "approved", "internal"]
