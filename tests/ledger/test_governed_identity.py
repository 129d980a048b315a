"""Users and API tokens replayed from the audit trail: a role raised, a token's secret hash
swapped for one the attacker knows, a revoked token revived or a user inserted by hand in the
catalog is named by `tarmac audit verify`. SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from tarmac.project import Project

EDITS = {  # edit -> words the problem must hold
    "UPDATE users SET role = 'admin' WHERE name = 'ana'":
        "user ana is admin in the catalog but the audit trail last made them analyst",
    "INSERT INTO users (name, role, created_at, actor) VALUES ('eve', 'admin', 0, 'eve')":
        "user eve (admin) is in the catalog but the audit trail never added them",
    "UPDATE api_tokens SET secret_sha256 = :forged WHERE id = :live":
        "its secret hash was replaced in the catalog",
    "UPDATE api_tokens SET revoked_at = NULL WHERE id = :revoked":
        "is active in the catalog but revoked in the audit trail",
    "UPDATE api_tokens SET expires_at = NULL WHERE id = :live":
        "its expiry was edited in the catalog",
    "UPDATE api_tokens SET user_name = 'vic' WHERE id = :live":
        "belongs to vic in the catalog but the audit trail created it for ana",
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_user_or_token_is_named(any_project: Project, edit: str) -> None:
    p = any_project
    p.identity.add_user("ana", "analyst")
    p.identity.add_user("vic", "viewer")
    p.identity.set_role("vic", "analyst")
    live = p.identity.create_token("ana", expires="30d")
    revoked = p.identity.create_token("ana")
    p.identity.revoke(revoked.id)
    assert p.ledger.verify().ok
    with p.catalog.engine.begin() as conn:
        conn.execute(sa.text(edit), {"live": live.id, "revoked": revoked.id,
                                     "forged": hashlib.sha256(b"mallory").hexdigest()})
    result = p.ledger.verify()
    assert not result.ok and result.kind == "state"
    assert EDITS[edit] in result.problem, result.state
