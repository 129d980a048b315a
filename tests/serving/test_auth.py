"""API tokens on the HTTP server: `auth: required | off | auto`, 401 with one body whatever was
wrong with the token, 403 naming the permission (audited), /health always open."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from serving.conftest import _cleanup, build_served
from tarmac.access import identity as ident
from tarmac.cli import app as cli
from tarmac.errors import UsageError
from tarmac.project import Project
from tarmac.serving import create_app
from tarmac.serving._auth import required

BODY = {"entities": [{"customer_id": 1}]}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("auth") / "proj"
    p = build_served(root, versions=1)
    with open(root / "tarmac.yaml", "a", encoding="utf-8") as f:
        f.write("auth: required\n")
    p.close()
    import tarmac

    p = tarmac.open(root)
    p.identity.add_user("ana", "analyst")
    p.identity.add_user("vic", "viewer")
    yield p
    _cleanup(p)


def bearer(text: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {text}"}


def test_a_valid_token_is_served_and_a_bad_one_is_401_the_same_way(guarded: Project) -> None:
    good = guarded.identity.create_token("ana", expires="1d")
    revoked = guarded.identity.create_token("ana")
    guarded.identity.revoke(revoked.id)
    expired = guarded.identity.create_token("ana", expires="1s")
    time.sleep(1.1)
    with TestClient(create_app(guarded)) as client:
        assert client.get("/health").status_code == 200  # probes need no token
        ok = client.post("/v1/predict/risk", json=BODY, headers=bearer(good.text))
        assert ok.status_code == 200, ok.text
        bodies = set()
        for headers in ({}, bearer("nonsense"), bearer(revoked.text), bearer(expired.text),
                        bearer(good.text[:-2] + "xx"), {"Authorization": good.text}):
            got = client.post("/v1/predict/risk", json=BODY, headers=headers)
            assert got.status_code == 401 and got.headers["www-authenticate"] == "Bearer"
            bodies.add(got.text)
        assert len(bodies) == 1  # nothing says which part was wrong
        assert "revoked" not in bodies.pop()


def test_a_role_without_the_permission_is_403_naming_it_and_audited(guarded: Project) -> None:
    token = guarded.identity.create_token("vic")
    with TestClient(create_app(guarded)) as client:
        assert client.get("/ready", headers=bearer(token.text)).status_code in (200, 503)
        denied = client.post("/v1/predict/risk", json=BODY, headers=bearer(token.text))
    assert denied.status_code == 403
    assert "'predict'" in denied.json()["detail"] and "viewer" in denied.json()["detail"]
    [record] = [r for r in guarded.ledger.audit() if r.action == "access.denied"][:1]
    assert json.loads(record.details)["permission"] == "predict"


def test_auto_requires_tokens_beyond_loopback_or_with_a_shared_catalog(tmp_path: Path) -> None:
    import tarmac

    p = tarmac.init(tmp_path / "p")
    try:
        assert not required(p, "127.0.0.1") and not required(p, "localhost")
        assert required(p, "0.0.0.0") and required(p, "10.0.0.7")
    finally:
        p.close()


def test_identity_refuses_bad_input(guarded: Project) -> None:
    with pytest.raises(UsageError, match="no role named 'admn'.*admin"):
        guarded.identity.add_user("bob", "admn")
    with pytest.raises(UsageError, match="exists already"):
        guarded.identity.add_user("ana", "viewer")
    with pytest.raises(UsageError, match="no user named 'anna'.*ana"):
        guarded.identity.create_token("anna")
    with pytest.raises(UsageError, match="positive duration"):
        guarded.identity.create_token("ana", expires="0d")
    with pytest.raises(UsageError, match="no token with id"):
        guarded.identity.revoke("0000000000000000")
    assert guarded.identity.authenticate("tmk_" + "0" * 16 + "_" + "a" * 43) is None
    assert ident.Principal("x", "admin", "t").may("erase")


def test_cli_adds_users_and_shows_a_token_once(guarded: Project) -> None:
    runner = CliRunner()
    base = ["-p", str(guarded.root)]
    added = runner.invoke(cli, [*base, "users", "add", "dora", "--role", "data-engineer"])
    assert added.exit_code == 0, added.output
    made = runner.invoke(cli, [*base, "tokens", "create", "--user", "dora", "--expires", "30d",
                               "--json"])
    assert made.exit_code == 0, made.output
    token = json.loads(made.output)
    assert token["token"].startswith("tmk_") and guarded.identity.authenticate(token["token"])
    listed = runner.invoke(cli, [*base, "tokens", "list", "--json"])
    assert token["token"] not in listed.output and token["id"] in listed.output
    assert runner.invoke(cli, [*base, "tokens", "revoke", token["id"]]).exit_code == 0
    guarded.identity._cache.clear()
    assert guarded.identity.authenticate(token["token"]) is None
