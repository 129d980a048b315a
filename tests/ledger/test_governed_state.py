"""Governed state replayed from the audit trail: an alias, deployment, validation or gate result
edited in the catalog is named by `tarmac audit verify`, and `promote` refuses a validation that
does not match the trail. One trained project per catalog backend, built once for the module;
each test edits rows and puts them back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import PG_HOST, PG_PORT, PG_URL, require_server
from models.conftest import build
from tarmac.cli import app
from tarmac.errors import PromotionRefused
from tarmac.ledger.keys import ENV_VAR
from tarmac.project import Project


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def governed(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """risk v1 (gates passed) is champion; v2 (trained on noise) failed its gates; v2 is the
    shadow of the endpoint."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(ENV_VAR, raising=False)
        mp.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))
        catalog = None
        if request.param == "postgres":  # one schema for the module (conftest's is per test)
            require_server("PostgreSQL", PG_HOST, PG_PORT)
            schema = f"t_{uuid.uuid4().hex[:12]}"
            admin = sa.create_engine(f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/test")
            with admin.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            request.addfinalizer(lambda: drop(admin, schema))
            catalog = f"{PG_URL}?options=-csearch_path%3D{schema}"
        p = build(tmp_path_factory.mktemp("governed") / "proj", catalog=catalog)
        v1 = p.models.train("risk").version
        v2 = p.models.train("risk", params={"only": "region"}).version
        assert p.models.validate("risk", v1).status == "passed"
        p.models.promote("risk", v1)
        assert p.models.validate("risk", v2).status == "failed"
        p.serving.deploy("risk", shadow=v2)
        yield p
        p.close()


def drop(admin: sa.Engine, schema: str) -> None:
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def sql(p: Project, statement: str, **params: object) -> None:
    with p.catalog.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def failed_validation(p: Project) -> str:
    return p.models.validations("risk", 2)[0].id


def record_of(p: Project, action: str) -> int:
    return p.ledger.audit(action=action, limit=1).items[0].seq


def test_intact_state_verifies(governed: Project) -> None:
    result = governed.ledger.verify()
    assert result.ok and result.state == (), result.problem


def test_an_edited_alias_is_named(governed: Project) -> None:
    sql(governed, "UPDATE model_aliases SET version = 2 WHERE model = 'risk'")
    try:
        result = governed.ledger.verify()
        seq = record_of(governed, "model.promote")
        assert not result.ok and result.kind == "state"
        assert result.problem == ("alias risk@champion is v2 in the catalog but the audit "
                                  f"trail last moved it to v1 (record #{seq})")
        out = CliRunner().invoke(app, ["--project", str(governed.root), "audit", "verify"])
        assert out.exit_code == 1 and "CATALOG DISAGREES WITH THE TRAIL" in out.output
        assert "risk@champion is v2" in out.output
        # decisions read verified state: the edited champion is not trusted...
        with pytest.raises(PromotionRefused, match="the champion in the catalog does not "
                                                   "match the audit trail"):
            governed.models.promote("risk", 1, alias="champion")
        # ...nor served: a fresh server does not route to the edited v2
        from tarmac.serving._routes import Routes

        route = Routes(governed).get("risk")
        assert route is not None and route.champion is None
        assert "does not match the audit trail" in (route.champion_error or "")
    finally:
        sql(governed, "UPDATE model_aliases SET version = 1 WHERE model = 'risk'")


def test_validation_edited_to_passed_is_refused_by_promote(governed: Project) -> None:
    """The issue's trial: a failed validation edited to `passed` (status, and the report's
    gate statuses too) must not make v2 champion, and promote says why."""
    vid = failed_validation(governed)
    report = sa.select(sa.column("report")).select_from(sa.table("validations")).where(
        sa.column("id") == vid)
    with governed.catalog.engine.connect() as conn:
        original = conn.execute(report).scalar_one()
    sql(governed, "UPDATE validations SET status = 'passed' WHERE id = :id", id=vid)
    try:
        with pytest.raises(PromotionRefused) as refused:
            governed.models.promote("risk", 2)
        assert "does not match the audit trail" in refused.value.message
        assert "'passed' in the catalog but the audit trail recorded 'failed'" in \
            refused.value.message
        assert governed.models.aliases("risk") == {"risk": {"champion": 1}}
        result = governed.ledger.verify()
        assert not result.ok and f"validation {vid[:8]} of risk v2 is 'passed'" in result.problem
        # the report alone edited (its gate statuses): the digest in the trail catches it
        sql(governed, "UPDATE validations SET status = 'failed', report = :r WHERE id = :id",
            id=vid, r=original.replace('"failed"', '"passed"'))
        result = governed.ledger.verify()
        assert not result.ok and "gate report was edited" in result.problem
    finally:
        sql(governed, "UPDATE validations SET status = 'failed', report = :r WHERE id = :id",
            id=vid, r=original)
    assert governed.ledger.verify().ok


def test_a_validation_row_written_by_hand_is_refused(governed: Project) -> None:
    """A row that no `model.validate` record stands for, e.g. copied from v1's for v2."""
    passed = governed.models.validations("risk", 1)[0].id
    sql(governed, "UPDATE validations SET version = 2, at = at + 10000000000 WHERE id = :id",
        id=passed)
    try:
        with pytest.raises(PromotionRefused, match="does not match the audit trail"):
            governed.models.promote("risk", 2)
        assert not governed.ledger.verify().ok
    finally:
        sql(governed, "UPDATE validations SET version = 1, at = at - 10000000000 WHERE id = :id",
            id=passed)


def test_edited_gate_result_and_deployment_are_named(governed: Project) -> None:
    vid = failed_validation(governed)
    sql(governed, "UPDATE gate_results SET status = 'passed' WHERE validation_id = :id "
                  "AND position = 0", id=vid)
    sql(governed, "UPDATE deployments SET shadow_version = NULL WHERE endpoint = 'risk'")
    try:
        result = governed.ledger.verify()
        assert not result.ok and len(result.state) == 2
        seq = record_of(governed, "deploy.shadow")
        assert (f"deployment of risk is champion only in the catalog but the audit trail says "
                f"shadow v2 (record #{seq})") in result.state
        assert any(f"validation {vid[:8]} of risk v2: gate result #1 is 'passed'" in s
                   for s in result.state)
    finally:
        sql(governed, "UPDATE gate_results SET status = 'failed' WHERE validation_id = :id "
                      "AND position = 0", id=vid)
        sql(governed, "UPDATE deployments SET shadow_version = 2 WHERE endpoint = 'risk'")


EDITS = {  # (edit, undo, words the problem must hold)
    "alias to v2": ("UPDATE model_aliases SET version = 2", "UPDATE model_aliases SET version = 1",
                    "alias risk@champion"),
    "extra alias": ("INSERT INTO model_aliases (model, alias, version, generation, updated_at, "
                    "actor) VALUES ('risk', 'challenger', 2, 1, 0, 'mallory')",
                    "DELETE FROM model_aliases WHERE alias = 'challenger'",
                    "never moved it"),
    "alias deleted": ("DELETE FROM model_aliases", None, "missing from the catalog"),
    "canary added": ("UPDATE deployments SET canary_version = 2, canary_percent = 50",
                     "UPDATE deployments SET canary_version = NULL, canary_percent = NULL",
                     "deployment of risk"),
    "validation status": ("UPDATE validations SET status = 'passed' WHERE status = 'failed'",
                          "UPDATE validations SET status = 'failed' WHERE version = 2",
                          "validation"),
    "validation champion": ("UPDATE validations SET champion = 7 WHERE version = 2",
                            "UPDATE validations SET champion = 1 WHERE version = 2",
                            "judged against champion v7"),
    "validation gates": ("UPDATE validations SET gates = 'x' WHERE version = 1",
                         None, "gates hash was edited"),
    "gate result": ("UPDATE gate_results SET status = 'error' WHERE version = 1",
                    "UPDATE gate_results SET status = 'passed' WHERE version = 1 AND "
                    "kind <> 'no_regression'", "gate result #"),
}


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edit=st.sampled_from(sorted(EDITS)))
def test_any_catalog_state_edit_is_named(governed: Project, edit: str) -> None:
    """Property: any one edit of a governed row makes verify fail with a problem naming it,
    and putting the row back makes it pass again."""
    if governed.catalog.dialect == "postgresql" and edit not in ("alias to v2", "gate result"):
        return  # the full set runs on SQLite; PostgreSQL runs a sample (module fixture cost)
    change, undo, words = EDITS[edit]
    with governed.catalog.engine.connect() as conn:  # remember the rows, to put them back
        saved = {name: [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {name}"))]
                 for name in ("model_aliases", "deployments", "validations", "gate_results")}
    sql(governed, change)
    try:
        result = governed.ledger.verify()
        assert not result.ok and result.kind == "state" and words in result.problem, \
            result.state
    finally:
        if undo is not None:
            sql(governed, undo)
        restore(governed, saved)
    assert governed.ledger.verify().ok


def restore(p: Project, saved: dict[str, list[dict[str, object]]]) -> None:
    with p.catalog.engine.begin() as conn:
        for name, table_rows in saved.items():
            conn.execute(sa.text(f"DELETE FROM {name}"))
            if table_rows:
                cols = list(table_rows[0])
                conn.execute(sa.text(f"INSERT INTO {name} ({', '.join(cols)}) VALUES "
                                     f"({', '.join(':' + c for c in cols)})"), table_rows)


def test_module_fixture_is_not_left_dirty(governed: Project, tmp_path: Path) -> None:
    assert governed.ledger.verify().ok and governed.models.aliases("risk") == {
        "risk": {"champion": 1}}
