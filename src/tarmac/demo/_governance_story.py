"""The demo's governance beat: who may do what, shown by a promotion an analyst is refused.

Kestrel's admin (``olga``) and an analyst (``ben``) get users and tokens. Acting as ben, with
her token, the demo tries to promote a churn version: her role (read, predict) lacks
``promote``, so the registry refuses before touching anything, says which permission was
missing, and the denial lands in the audit trail. The demo project itself stays on the laptop
default (the embedded catalog without ``TARMAC_TOKEN`` is not checked), so every command of
the README's tour still works without a token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tarmac
from tarmac.errors import PermissionDenied

Step = Callable[[str], None]


def governance_story(p: Any, step: Step) -> dict[str, Any]:
    """Add olga (admin) and ben (analyst), then try a promotion as ben; returns what happened
    (``refused``: the error's message, ``denial``: the audit record's sequence number)."""
    step("governance: users and tokens for Kestrel's admin (olga) and an analyst (ben)")
    known = {u.name for u in p.identity.users()}
    for name, role in (("olga", "admin"), ("ben", "analyst")):
        if name not in known:
            p.identity.add_user(name, role)
    p.identity.create_token("olga", expires="1d")  # an admin holds a token: checks are on
    token = p.identity.create_token("ben", expires="1d")
    versions = p.models.versions("churn")
    target = max(v.version for v in versions)
    step(f"acting as ben (TARMAC_TOKEN): promote churn v{target}? analysts may read and "
         "predict, not promote")
    out: dict[str, Any] = {"user": "ben", "role": "analyst", "version": target}
    with tarmac.open(p.root, token=token.text) as as_ben:
        try:
            as_ben.models.promote("churn", target, reason="ben would like it live")
            out["refused"] = None
        except PermissionDenied as exc:
            out["refused"] = exc.message
    denials = p.ledger.audit(action="access.denied", limit=1).items
    out["denial"] = denials[0].seq if denials else None
    out["ok"] = bool(out["refused"]) and out["denial"] is not None
    return out


__all__ = ["governance_story"]
