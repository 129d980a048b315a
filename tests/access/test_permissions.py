"""Who may do what, where access is enforced: every role against every governed action, over
the SDK, the CLI and HTTP, on SQLite and PostgreSQL; denials audited; grants that restrict a
table; protected aliases that need approvals from other users.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import tarmac
from serving.conftest import _cleanup, build_served
from tarmac.access.identity import ROLES
from tarmac.cli import app as cli
from tarmac.errors import (
    ApprovalRequired,
    AuthenticationRequired,
    PermissionDenied,
    UsageError,
)
from tarmac.project import Project
from tarmac.serving import create_app

USERS = {"vic": "viewer", "ana": "analyst", "dan": "data-engineer", "mel": "ml-engineer",
         "root": "admin"}


class Realm:
    """A served project with auth required, one user per role and each user's token."""

    def __init__(self, root: Path, admin: Project, tokens: dict[str, str]) -> None:
        self.root, self.admin, self.tokens = root, admin, tokens
        self._open: dict[str, Project] = {}

    def as_user(self, user: str) -> Project:
        if user not in self._open:
            self._open[user] = tarmac.open(self.root, token=self.tokens[user])
        return self._open[user]

    def denials(self) -> list[dict[str, Any]]:
        return [json.loads(r.details) | {"user": r.target}
                for r in self.admin.ledger.audit(action="access.denied", limit=1000).items]

    def close(self) -> None:
        for p in self._open.values():
            p.close()
        _cleanup(self.admin)


def build_realm(root: Path, catalog: str | None) -> Realm:
    p = build_served(root, catalog=catalog, versions=2)
    p.close()
    config = yaml.safe_load((root / "tarmac.yaml").read_text())
    config["auth"] = "required"
    config["sources"] = {"people": {"type": "file", "path": "data/people.csv"}}
    (root / "tarmac.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "data").mkdir()
    (root / "data" / "people.csv").write_text("id,name\n1,Ada\n2,Grace\n")
    boot = tarmac.open(root)  # the bootstrap: open until an admin holds a token
    for name, role in USERS.items():
        boot.identity.add_user(name, role)
    tokens = {name: boot.identity.create_token(name).text for name in USERS}
    boot.close()
    admin = tarmac.open(root, token=tokens["root"])
    admin.streams.create_topic("events", 1, exist_ok=True)
    return Realm(root, admin, tokens)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def realm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Realm]:
    catalog = None
    if request.param == "postgres":
        import uuid

        from conftest import PG_URL, require_server

        require_server("PostgreSQL", "127.0.0.1", 5432)
        schema = f"t_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        catalog = f"{PG_URL}?options=-csearch_path%3D{schema}"
    r = build_realm(tmp_path_factory.mktemp("realm") / "proj", catalog)
    yield r
    r.close()
    if catalog is not None:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


# action -> (the permission it needs, what it does through the SDK)
SDK: dict[str, tuple[str, Callable[[Project, str], Any]]] = {
    "read table": ("read", lambda p, u: p.sql("SELECT count(*) AS n FROM signals")),
    "write table": ("write", lambda p, u: p.lake.write(f"scratch_{u}", {"x": [1]})),
    "ingest": ("ingest", lambda p, u: p.ingest(["people"]).raise_for_errors()),
    "apply": ("apply", lambda p, u: p.features.apply()),
    "train": ("train", lambda p, u: p.models.train("risk")),
    "validate": ("validate", lambda p, u: p.models.validate("risk", 2)),
    "promote champion": ("promote", lambda p, u: p.models.promote("risk", 2)),
    "move challenger": ("promote", lambda p, u: p.models.promote(
        "risk", 1, alias="challenger", force=True, reason="the matrix")),
    "deploy": ("deploy", lambda p, u: p.serving.deploy("risk", shadow=1)),
    "erase": ("erase", lambda p, u: p.erase("customer_id=99999999", reason="matrix",
                                            dry_run=True)),
    "manage users": ("manage:users", lambda p, u: p.identity.add_user(f"new_{u}", "viewer")),
    "predict": ("predict", lambda p, u: p.serving.predict("risk", [{"customer_id": 1}])),
    "produce": ("produce", lambda p, u: p.produce("events", [{"n": 1}])),
    "export the audit trail": ("read:audit", lambda p, u: p.ledger.export(io.StringIO())),
    "read the audit trail": ("read:audit", lambda p, u: p.ledger.audit(limit=1)),
}


def may(role: str, permission: str) -> bool:
    granted = ROLES[role]
    return "*" in granted or permission in granted


def test_every_role_against_every_action_through_the_sdk(realm: Realm) -> None:
    wrong = []
    for user, role in USERS.items():
        p = realm.as_user(user)
        for action, (permission, do) in SDK.items():
            try:
                do(p, user)
                outcome = "allowed"
            except PermissionDenied as exc:
                outcome = "denied"
                assert f"'{permission}'" in exc.message and user in exc.message, exc.message
            if outcome != ("allowed" if may(role, permission) else "denied"):
                wrong.append(f"{role} {action}: {outcome}")
    assert not wrong, wrong
    realm.admin.lake.write("pii_probe", {"email": ["z@x.io"]})  # read PII: raw or masked
    realm.admin.lake.annotate("pii_probe", column_tags={"email": ["pii"]})
    for user, role in USERS.items():
        seen = realm.as_user(user).sql("SELECT email FROM pii_probe").column("email")[0].as_py()
        if (seen == "z@x.io") != may(role, "read:pii"):
            wrong.append(f"{role} read PII: saw {seen}")
    assert not wrong, wrong
    denied = {(d["user"], d["permission"]) for d in realm.denials() if d["via"] == "sdk"}
    for user, role in USERS.items():
        for permission, _ in SDK.values():
            if not may(role, permission):
                assert (f"user:{user}", permission) in denied, (user, permission)


# action -> (permission, CLI arguments); each runs in process with TARMAC_TOKEN set
CLI: dict[str, tuple[str, list[str]]] = {
    "read table": ("read", ["sql", "SELECT count(*) AS n FROM signals"]),
    "ingest": ("ingest", ["ingest", "people"]),
    "apply": ("apply", ["apply"]),
    "validate": ("validate", ["validate", "risk", "2"]),
    "promote": ("promote", ["promote", "risk", "2"]),
    "deploy": ("deploy", ["deploy", "risk", "--shadow", "1"]),
    "erase": ("erase", ["erase", "--subject", "customer_id=99999999", "--reason", "m",
                        "--dry-run"]),
    "manage users": ("manage:users", ["tokens", "create", "--user", "vic"]),
    "write table": ("write", ["vacuum", "signals", "--dry-run"]),
    "read the audit log": ("read:audit", ["audit", "log", "-n", "1"]),
    "export the audit trail": ("read:audit", ["audit", "export", "--since", "1h"]),
}


def test_every_role_against_the_cli_commands(realm: Realm) -> None:
    runner = CliRunner()
    wrong = []
    for user, role in USERS.items():
        for action, (permission, args) in CLI.items():
            got = runner.invoke(cli, ["--project", str(realm.root), *args],
                                env={"TARMAC_TOKEN": realm.tokens[user]})
            expected = 0 if may(role, permission) else 3
            if got.exit_code != expected:
                wrong.append(f"{role} {action}: exit {got.exit_code} ({got.output[-300:]})")
            elif expected == 3 and f"lacks the permission '{permission}'" not in got.output:
                wrong.append(f"{role} {action}: {got.output[-300:]}")
    assert not wrong, "\n".join(wrong)


def test_every_role_against_the_http_routes(realm: Realm) -> None:
    routes = {"predict": ("POST", "/v1/predict/risk", {"entities": [{"customer_id": 1}]}),
              "read": ("GET", "/v1/endpoints", None),
              "produce": ("POST", "/v1/topics/events", {"records": [{"n": 1}]})}
    with TestClient(create_app(realm.admin)) as client:
        for user, role in USERS.items():
            for permission, (method, path, body) in routes.items():
                got = client.request(method, path, json=body,
                                     headers={"Authorization": f"Bearer {realm.tokens[user]}"})
                if may(role, permission):
                    assert got.status_code < 400, (role, path, got.text)
                else:
                    assert got.status_code == 403, (role, path, got.text)
                    assert f"'{permission}'" in got.json()["detail"]


def test_without_a_valid_token_nothing_is_allowed(realm: Realm) -> None:
    for token in (None, "", "tmk_0000000000000000_" + "x" * 43, "garbage"):
        p = tarmac.open(realm.root, token=token or "")
        try:
            with pytest.raises(AuthenticationRequired) as exc:
                p.sql("SELECT 1 AS one FROM signals LIMIT 1")
            assert "TARMAC_TOKEN" in exc.value.message and (token or "") not in \
                exc.value.message.replace("TARMAC_TOKEN", "") or not token
        finally:
            p.close()
    got = CliRunner().invoke(cli, ["--project", str(realm.root), "tables"],
                             env={"TARMAC_TOKEN": "tmk_nope"})
    assert got.exit_code == 3 and "not a valid token" in got.output


def test_the_audit_trail_names_the_token_user(realm: Realm) -> None:
    realm.as_user("dan").lake.write("scratch_actor", {"x": [1]})
    p = realm.admin  # (reading the trail needs read:audit)
    record = p.ledger.audit(target="table:scratch_actor", limit=1).items
    writes = [r for r in p.ledger.audit(limit=50).items if "scratch_actor" in r.target]
    assert (record or writes) and all(r.actor == "dan" for r in (record or writes))


def test_a_grant_restricts_a_table_to_its_grantees(realm: Realm) -> None:
    admin = realm.admin
    admin.lake.write("salaries", {"id": [1, 2], "amount": [10, 20]})
    admin.access.grant("analyst", "read:table:salaries")
    admin.access.grant("dan", "write:table:salaries")
    ana, vic, dan = (realm.as_user(u) for u in ("ana", "vic", "dan"))
    for p in (ana, vic, dan):  # grants are cached for a while: these processes see them now
        p.access._grants = None
    assert ana.sql("SELECT count(*) AS n FROM salaries").column("n")[0].as_py() == 2
    with pytest.raises(PermissionDenied, match="'read' on table:salaries"):
        vic.lake.read("salaries")
    with pytest.raises(PermissionDenied, match="'read' on table:salaries"):  # joins too
        vic.sql("SELECT * FROM signals JOIN salaries ON true LIMIT 1")
    dan.lake.write("salaries", {"id": [3], "amount": [30]})
    with pytest.raises(PermissionDenied, match="'write' on table:salaries"):
        realm.as_user("mel").lake.write("salaries", {"id": [4], "amount": [1]})
    assert {(g.subject, g.permission) for g in admin.access.grants()} >= {
        ("role:analyst", "read"), ("user:dan", "write")}
    assert admin.ledger.verify().ok
    assert admin.access.ungrant("analyst", "read:table:salaries") is True  # the last one
    vic.access._grants = None
    assert vic.lake.read("salaries").num_rows == 3  # the viewer's default again


def test_a_grant_typed_into_the_catalog_grants_nothing_and_verify_names_it(
        realm: Realm) -> None:
    admin = realm.admin
    admin.lake.write("secrets_t", {"id": [1]})
    admin.access.grant("admin", "read:table:secrets_t")  # restricted to admins
    with admin.catalog.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO grants (subject, permission, resource, created_at, "
                             "actor) VALUES ('role:viewer', 'read', 'table:secrets_t', 0, 'x')"))
    vic = realm.as_user("vic")
    vic.access._grants = None
    with pytest.raises(PermissionDenied):
        vic.lake.read("secrets_t")
    result = admin.ledger.verify()
    assert not result.ok and "grant of read on table:secrets_t to role:viewer is in the " \
        "catalog but the audit trail never granted it" in result.problem
    with admin.catalog.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM grants WHERE subject = 'role:viewer'"))
    assert admin.ledger.verify().ok


def test_a_role_edited_in_the_catalog_authenticates_nobody(realm: Realm) -> None:
    with realm.admin.catalog.engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET role = 'admin' WHERE name = 'vic'"))
    try:
        p = tarmac.open(realm.root, token=realm.tokens["vic"])
        try:
            with pytest.raises(AuthenticationRequired):
                p.identity.add_user("eve", "admin")
        finally:
            p.close()
    finally:
        with realm.admin.catalog.engine.begin() as conn:
            conn.execute(sa.text("UPDATE users SET role = 'viewer' WHERE name = 'vic'"))


@pytest.mark.parametrize("subject, spec, message", [
    ("nobody", "read:table:signals", "no role named 'nobody'"),
    ("analyst", "read:table:no_such_table", "no table named 'no_such_table'"),
    ("analyst", "read:tables:signals", "must be PERMISSION:KIND:NAME"),
    ("analyst", "train:table:signals", "'train' is not a permission on a table"),
    ("analyst", "predict:model:ghost", "no model named 'ghost'"),
    ("analyst", "promote:alias:risk", "must be MODEL@ALIAS"),
])
def test_bad_grants_say_what_is_wrong(realm: Realm, subject: str, spec: str,
                                      message: str) -> None:
    with pytest.raises(UsageError, match=message):
        realm.admin.access.grant(subject, spec)


def test_a_protected_alias_needs_its_role_and_approvals_from_other_users(realm: Realm) -> None:
    admin = realm.admin
    admin.identity.add_user("mia", "ml-engineer")
    admin.identity.add_user("max", "ml-engineer")
    realm.tokens |= {u: admin.identity.create_token(u).text for u in ("mia", "max")}
    admin.access.protect("risk@guarded", role="ml-engineer", approvals=2)
    admin.access.grant("dan", "promote:alias:risk@guarded")  # the permission, not the role
    admin.access.grant("ml-engineer", "promote:alias:risk@guarded")  # (a grant restricts)
    mel, mia, max_ = (realm.as_user(u) for u in ("mel", "mia", "max"))
    for p in (mel, mia, max_, realm.as_user("dan")):
        p.access._rules = p.access._grants = None
    with pytest.raises(PermissionDenied, match="lacks the role ml-engineer"):
        realm.as_user("dan").models.promote("risk", 2, alias="guarded")
    admin.models.validate("risk", 2)  # fresh gate results, whatever ran before
    with pytest.raises(ApprovalRequired, match="needs 2 approval") as pending:
        mel.models.promote("risk", 2, alias="guarded")
    assert "guarded" not in admin.models.aliases("risk")["risk"]
    from tarmac.access.approvals import approve_request

    with pytest.raises(PermissionDenied, match="approve:own-change"):
        approve_request(mel, "risk", reason="mine")
    assert approve_request(mia, "risk", reason="ok").status == "pending"
    with pytest.raises(UsageError, match="approved request .* already"):
        approve_request(mia, "risk", reason="again")
    done = approve_request(max_, "risk", 2, reason="ok too")
    assert done.status == "applied" and done.approvers == ("max", "mia")
    assert admin.models.aliases("risk")["risk"]["guarded"] == 2
    moves = [r for r in admin.ledger.audit(target="model:risk", limit=50).items
             if r.action in ("alias.requested", "alias.approved", "alias.applied")]
    assert [r.action for r in reversed(moves)][-4:] == [
        "alias.requested", "alias.approved", "alias.approved", "alias.applied"]
    assert pending.value.request_id == done.id
    assert admin.ledger.verify().ok


def test_an_approval_typed_into_the_catalog_counts_for_nothing(realm: Realm) -> None:
    admin = realm.admin
    admin.access.protect("risk@fenced", role="ml-engineer", approvals=2)
    mel = realm.as_user("mel")
    mel.access._rules = None
    with pytest.raises(ApprovalRequired):
        mel.models.promote("risk", 1, alias="fenced", force=True, reason="even forced")
    with admin.catalog.engine.begin() as conn:  # two approvals nobody gave
        conn.execute(sa.text("UPDATE alias_requests SET approvers = '[\"mia\", \"vic\"]' "
                             "WHERE alias = 'fenced'"))
    from tarmac.access.approvals import approve_request

    req = approve_request(admin, "risk", reason="the only real approval")
    assert req.status == "pending" and req.approvers == ("root",)  # counted from the trail
    assert "fenced" not in admin.models.aliases("risk")["risk"]


def test_cli_grants_protect_and_whoami(realm: Realm) -> None:
    runner = CliRunner()
    env = {"TARMAC_TOKEN": realm.tokens["root"]}
    base = ["--project", str(realm.root)]
    me = runner.invoke(cli, [*base, "whoami", "--json"], env=env)
    assert me.exit_code == 0 and json.loads(me.output)["user"] == "root"
    got = runner.invoke(cli, [*base, "grant", "analyst", "read:table:signals"], env=env)
    assert got.exit_code == 0 and "granted read on table:signals to role:analyst" in got.output
    listed = json.loads(runner.invoke(cli, [*base, "grants", "--json"], env=env).output)
    assert {"subject": "role:analyst", "permission": "read", "resource": "table:signals"} \
        .items() <= next(g for g in listed if g["resource"] == "table:signals").items()
    assert runner.invoke(cli, [*base, "ungrant", "analyst", "read:table:signals"],
                         env=env).exit_code == 0
    bad = runner.invoke(cli, [*base, "grant", "analyst", "read:table:nope"], env=env)
    assert bad.exit_code == 2 and "no table named 'nope'" in bad.output
    denied = runner.invoke(cli, [*base, "grant", "analyst", "read:table:signals"],
                           env={"TARMAC_TOKEN": realm.tokens["mel"]})
    assert denied.exit_code == 3 and "'manage:users'" in denied.output
    got = runner.invoke(cli, [*base, "protect", "risk@champion", "--approvals", "1"], env=env)
    assert got.exit_code == 0 and "role admin, 1 approval(s)" in got.output
    listed = json.loads(runner.invoke(cli, [*base, "protections", "--json"], env=env).output)
    assert any(r["alias"] == "risk@champion" and r["approvals"] == 1 for r in listed)
    assert runner.invoke(cli, [*base, "unprotect", "risk@champion"], env=env).exit_code == 0


def test_personal_columns_are_masked_in_the_engine_for_users_without_read_pii(
        realm: Realm) -> None:
    admin = realm.admin
    admin.lake.write("contacts", {"id": [1, 2, 3], "email": ["a@x.io", "b@x.io", None],
                                  "phone": ["+1 555", "+1 556", "+1 557"],
                                  "city": ["Oslo", "Lima", "Pune"]})
    admin.lake.write("orders_pii", {"email": ["a@x.io", "a@x.io", "b@x.io"], "n": [1, 2, 3]})
    admin.lake.annotate("contacts", column_tags={"email": ["pii", "email"],
                                                 "phone": ["pii", "redact"]})
    admin.lake.annotate("orders_pii", column_tags={"email": ["email"]})
    ana = realm.as_user("ana")
    rows = ana.sql("SELECT * FROM contacts ORDER BY id").to_pylist()
    assert [r["city"] for r in rows] == ["Oslo", "Lima", "Pune"]  # untagged: as stored
    assert all(r["phone"] == "[redacted]" for r in rows)
    first, second, missing = (r["email"] for r in rows)
    assert first.startswith("pii_") and len(first) == 20 and first != second and missing is None
    assert "a@x.io" not in json.dumps(rows)
    # the same value gives the same pseudonym in every table: joins still work
    joined = ana.sql("SELECT c.id, sum(o.n) AS n FROM contacts c JOIN orders_pii o "
                     "ON c.email = o.email GROUP BY c.id ORDER BY c.id").to_pylist()
    assert joined == [{"id": 1, "n": 3}, {"id": 2, "n": 3}]
    assert ana.sql("SELECT count(*) AS n FROM contacts WHERE email = 'a@x.io'"
                   ).column("n")[0].as_py() == 0  # the raw value is not there to filter on
    assert ana.lake.read("contacts").column("email").to_pylist()[0] == first
    assert ana.lake.read("contacts", filter="id = 1").column("email").to_pylist() == [first]
    raw = admin.sql("SELECT email, phone FROM contacts WHERE id = 1").to_pylist()
    assert raw == [{"email": "a@x.io", "phone": "+1 555"}]
    admin.access.grant("analyst", "read:pii:table:contacts")
    ana.access._grants = None
    assert ana.sql("SELECT email FROM contacts WHERE id = 1").column("email")[0].as_py() \
        == "a@x.io"
    mel = realm.as_user("mel")
    mel.access._grants = None
    assert mel.sql("SELECT phone FROM contacts WHERE id = 1").column("phone")[0].as_py() \
        == "[redacted]"


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_parquet('{lake}/contacts/*.parquet')",
    "SELECT * FROM query_table('contacts')",
    "SELECT * FROM duckdb_views()",
    "SELECT * FROM signals, read_csv('{lake}/../data/people.csv')",
])
def test_sql_that_reads_around_the_views_is_refused(realm: Realm, sql: str) -> None:
    from tarmac.errors import SqlError

    with pytest.raises(SqlError, match="queries read lake tables by name only"):
        realm.as_user("ana").sql(sql.format(lake=realm.admin.lake.root))


def test_the_quarantines_raw_values_are_redacted_without_read_pii(realm: Realm) -> None:
    realm.admin.lake.write("quarantine", {"reason": ["bad email"], "value": ["a@x.io"],
                                          "record": ['{"email": "a@x.io"}']})
    seen = realm.as_user("dan").sql("SELECT reason, value, record FROM quarantine").to_pylist()
    assert seen == [{"reason": "bad email", "value": "[redacted]", "record": "[redacted]"}]


def test_a_raw_arrow_scan_of_a_table_with_masked_columns_is_refused(realm: Realm) -> None:
    realm.admin.lake.write("scan_pii", {"email": ["s@x.io"], "n": [1]})
    realm.admin.lake.annotate("scan_pii", column_tags={"email": ["email"]})
    with pytest.raises(PermissionDenied, match=r"personal columns \(email\)"):
        realm.as_user("mel").lake.scan("scan_pii")
    assert realm.admin.lake.scan("scan_pii").to_table().column("email")[0].as_py() == "s@x.io"


def test_online_features_from_personal_columns_are_masked_but_models_score_on_the_values(
        realm: Realm, monkeypatch: pytest.MonkeyPatch) -> None:
    from tarmac.features import store

    monkeypatch.setattr(store, "PERSONAL_CACHE_SECONDS", 0.0)  # (30 s: a server's tag cache)
    admin, ana = realm.admin, realm.as_user("ana")
    entity = [{"customer_id": 1}]
    raw = admin.features.online("risk", entity).rows[0]["region"]
    before = ana.serving.predict("risk", entity)["predictions"][0]["score"]
    admin.lake.annotate("signals", column_tags={"region": ["pii"]})  # the view reads it as is
    try:
        ana.access._grants = None
        masked = ana.features.online("risk", entity).rows[0]
        offline = ana.sql("SELECT region FROM signals WHERE customer_id = 1").column(0)[0]
        assert masked["region"] == offline.as_py() != raw  # online == offline: one pseudonym
        assert masked["region"].startswith("pii_") and isinstance(masked["a"], float)
        assert admin.features.online("risk", entity).rows[0]["region"] == raw
        # the model still scores on the value: a prediction shows none of its inputs
        assert ana.serving.predict("risk", entity)["predictions"][0]["score"] \
            == pytest.approx(before)
        with TestClient(create_app(admin)) as client:
            def region(user: str) -> Any:
                got = client.post("/features", json={"features": "risk", "entities": entity},
                                  headers={"Authorization": f"Bearer {realm.tokens[user]}"})
                assert got.status_code == 200, got.text
                return got.json()["results"][0]["values"]["region"]

            assert region("ana") == masked["region"] and region("root") == raw
        admin.access.grant("analyst", "read:pii:table:signals")  # per table, as in SQL
        ana.access._grants = None
        assert ana.features.online("risk", entity).rows[0]["region"] == raw
        admin.access.ungrant("analyst", "read:pii:table:signals")
    finally:
        admin.lake.annotate("signals", column_tags={"region": []})


def test_the_prediction_logs_request_and_features_tagged_personal_read_masked(
        realm: Realm) -> None:
    admin, ana = realm.admin, realm.as_user("ana")
    answer = ana.serving.predict("risk", [{"customer_id": 2}], rows=[{"region": "Ada's town"}])
    [pid] = [x["id"] for x in answer["predictions"]]
    ana.serving.engine.log.flush()
    admin.lake.annotate("predictions", column_tags={"request": ["pii"], "features": ["pii"]})
    try:
        ana.access._grants = None
        sql = f"SELECT request, features, score FROM predictions WHERE id = '{pid}'"
        [seen] = ana.sql(sql).to_pylist()
        [raw] = admin.sql(sql).to_pylist()
        assert "Ada's town" in raw["request"] and "Ada's town" not in json.dumps(seen)
        assert seen["request"].startswith("pii_") and seen["features"].startswith("pii_")
        assert seen["score"] == raw["score"]  # untagged columns as stored
    finally:
        admin.lake.annotate("predictions", column_tags={"request": [], "features": []})
