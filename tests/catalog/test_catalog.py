"""The catalog on SQLite and the real PostgreSQL: migrations, datasets, runs, cursor pagination."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tarmac.catalog import Catalog
from tarmac.catalog._engine import HEAD_REVISION, current_revision, upgrade
from tarmac.errors import UsageError
from tarmac.ledger import Ledger
from tarmac.ledger.chain import GENESIS, canonical, make_record
from tarmac.project import Project


def fill_runs(p: Project, n: int) -> list[str]:
    ids = []
    for i in range(n):
        with p.ledger.run(f"job_{i % 3}", params={"i": i}) as run:
            ids.append(run.id)
    return ids


def test_migrated_to_head_and_idempotent(any_project: Project) -> None:
    assert current_revision(any_project.catalog.engine) == HEAD_REVISION
    again = Catalog(any_project.config.catalog)  # opening twice must not re-run or fail
    assert current_revision(again.engine) == HEAD_REVISION
    again.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_upgrade_from_first_release_keeps_metadata(backend: str, tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    """A catalog made by the first release (revision 0001), holding runs, lineage and audit
    records, upgrades on open and keeps every row; the audit chain still verifies."""
    url = request.getfixturevalue("pg_url") if backend == "postgres" else \
        f"sqlite:///{tmp_path}/cat.db"
    old = Catalog(url, migrate=False)
    upgrade(old.engine, to="0001")
    assert current_revision(old.engine) == "0001"
    # what the first release wrote, in its own columns (today's code writes today's columns)
    first = make_record(1, 1_700_000_000_000_000, "ann", "lake.write", "customers",
                        canonical({"version": 0}), GENESIS)
    second = make_record(2, 1_700_000_000_000_001, "ann", "run.succeeded", "old_job",
                         canonical({"run_id": "r1"}), first.hash)
    with old.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO runs (id, job, status, actor, started_at, ended_at, error, params, "
            "host, pid) VALUES ('r1', 'old_job', 'succeeded', 'ann', 1, 2, NULL, '{}', 'h', 1)"))
        for rec in (first, second):
            conn.execute(sa.text(
                "INSERT INTO audit_log (seq, time, actor, action, target, details, prev_hash, "
                "hash) VALUES (:seq, :time, :actor, :action, :target, :details, :prev, :hash)"),
                {"seq": rec.seq, "time": rec.time_us, "actor": rec.actor, "action": rec.action,
                 "target": rec.target, "details": rec.details, "prev": rec.prev_hash,
                 "hash": rec.hash})
    old.close()

    new = Catalog(url)
    assert current_revision(new.engine) == HEAD_REVISION
    runs = new.list_runs(limit=10).items
    assert [r.job for r in runs] == ["old_job"] and runs[0].status == "succeeded"
    check = Ledger(new).verify()
    assert check.ok and new.count("audit_log") == 2 and (check.keyed, check.unkeyed) == (0, 2)
    with new.engine.connect() as conn:
        indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("audit_log")}
    assert "ix_audit_actor_time" in indexes
    new.close()


def test_runs_paginate_by_cursor_without_gaps_or_repeats(any_project: Project) -> None:
    ids = fill_runs(any_project, 23)
    seen, cursor, pages = [], None, 0
    while True:
        page = any_project.ledger.runs(limit=5, cursor=cursor)
        seen += [r.id for r in page]
        pages += 1
        if not (cursor := page.next_cursor):
            break
    assert pages == 5
    assert sorted(seen) == sorted(ids) and len(set(seen)) == 23
    newest_first = [r.started_at for r in any_project.ledger.runs(limit=23).items]
    assert newest_first == sorted(newest_first, reverse=True)


def test_runs_filter_by_job_and_status(any_project: Project) -> None:
    fill_runs(any_project, 6)
    with pytest.raises(RuntimeError), any_project.ledger.run("job_0"):
        raise RuntimeError("boom")
    page = any_project.ledger.runs(job="job_0", limit=100)
    assert len(page) == 3 and {r.job for r in page} == {"job_0"}
    failed = any_project.ledger.runs(status="failed", limit=100)
    assert len(failed) == 1 and "RuntimeError: boom" in failed.items[0].error


def test_datasets_page_and_describe_tables(any_project: Project) -> None:
    for name in ("b_table", "a_table", "c_table"):
        any_project.lake.write(name, {"x": [1, 2, 3]})
    first = any_project.catalog.list_datasets(limit=2)
    assert [d.name for d in first] == ["a_table", "b_table"]
    rest = any_project.catalog.list_datasets(limit=2, cursor=first.next_cursor)
    assert [d.name for d in rest] == ["c_table"] and rest.next_cursor is None
    d = any_project.catalog.get_dataset("a_table")
    assert d is not None and (d.rows, d.version, d.files) == (3, 0, 1)
    assert [c.name for c in d.columns] == ["x"] and d.bytes > 0


def test_bad_cursor_and_limit_are_usage_errors(any_project: Project) -> None:
    with pytest.raises(UsageError, match="invalid page cursor"):
        any_project.ledger.runs(cursor="not-a-cursor")
    with pytest.raises(UsageError, match="between 1 and 1000"):
        any_project.ledger.runs(limit=0)


def test_list_queries_use_indexes_on_sqlite(project: Project) -> None:
    """Pages stay fast at scale because every list call is an index range scan."""
    with project.catalog.engine.connect() as conn:
        plan = conn.execute(sa.text(
            "EXPLAIN QUERY PLAN SELECT * FROM runs WHERE (started_at, id) < (5, 'x') "
            "ORDER BY started_at DESC, id DESC LIMIT 101")).all()
        audit = conn.execute(sa.text(
            "EXPLAIN QUERY PLAN SELECT * FROM audit_log WHERE actor = 'a' AND seq < 10 "
            "ORDER BY seq DESC LIMIT 101")).all()
    # a range seek on the index (not a walk from the newest run): the page costs the same deep in
    assert "ix_runs_started" in str(plan) and "TEMP B-TREE" not in str(plan)
    assert "<" in str(plan)
    assert "ix_audit_actor_seq" in str(audit) and "TEMP B-TREE" not in str(audit)


def test_head_revision_constant_matches_alembic() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from tarmac.catalog import _engine

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(_engine.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(cfg).get_current_head() == _engine.HEAD_REVISION


def test_annotate_sets_tags_owner_and_survives_writes(any_project: Project) -> None:
    p = any_project
    p.lake.write("people", {"id": [1], "email": ["a@b.c"]})
    p.lake.annotate("people", owner="crm-team", tags=["pii"], column_tags={"email": ["pii"]})
    p.lake.write("people", {"id": [2], "email": ["d@e.f"], "age": [3]})
    d = p.catalog.get_dataset("people")
    assert d is not None and d.owner == "crm-team" and d.tags == ("pii",)
    assert {c.name: c.tags for c in d.columns} == {"id": (), "email": ("pii",), "age": ()}
    assert p.ledger.audit(action="dataset.annotate", limit=1).items[0].target == "people"
    with pytest.raises(UsageError, match="no column"):
        p.lake.annotate("people", column_tags={"phone": ["pii"]})
