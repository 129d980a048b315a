"""Retention policies: rows older than a table's policy are deleted (and vacuumed) when it is
applied, by `tarmac retention apply` or the scheduler; bad policies are refused with the
reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from conftest import make_project
from tarmac.cli import app
from tarmac.errors import UsageError
from tarmac.monitoring.scheduler import Scheduler
from tarmac.project import Project

NOW = datetime(2026, 6, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


@pytest.fixture
def kept(tmp_path: Path) -> Iterator[Project]:
    p = make_project(tmp_path / "proj")
    days = list(range(0, 500, 10))  # one click every 10 days, 0 to 490 days old
    p.lake.write("clicks", pa.table({
        "event_id": [f"e{d}" for d in days],
        "at": pa.array([NOW - timedelta(days=d) for d in days], TS)}))
    yield p
    p.close()


def test_applying_a_policy_deletes_the_older_rows_only(kept: Project) -> None:
    kept.retention.set("clicks", "400d")
    [plan] = kept.retention.apply(now=NOW, dry_run=True)
    assert plan.rows == 9  # 410 .. 490 days old
    assert kept.lake.read("clicks").num_rows == 50  # a dry run deletes nothing
    [done] = kept.retention.apply(now=NOW)
    assert done.rows == 9 and done.version is not None
    left = kept.lake.read("clicks").column("at").to_pylist()
    assert len(left) == 41 and min(left) >= NOW - timedelta(days=400)
    assert [r.action for r in kept.ledger.audit()][:3] == ["retention.applied", "lake.vacuum",
                                                         "lake.delete"]


def test_the_scheduler_applies_due_policies_hourly(kept: Project) -> None:
    kept.retention.set("clicks", "100d")
    first = Scheduler(kept, clock=lambda: NOW).run(once=True)[0]
    assert first.retention == 39  # 110 .. 490 days old; 100 is not older than 100d
    again = Scheduler(kept, clock=lambda: NOW + timedelta(minutes=10)).run(once=True)[0]
    assert again.retention == 0 and not kept.retention.due(NOW + timedelta(minutes=10))


@pytest.mark.parametrize("table, keep, column, message", [
    ("nope", "400d", None, "no table named 'nope'|nope"),
    ("clicks", "soon", None, "expected a duration"),
    ("clicks", "0d", None, "positive duration"),
    ("clicks", "400d", "event_id", "not a timestamp or date"),
])
def test_bad_policies_are_refused(kept: Project, table: str, keep: str, column: str | None,
                                  message: str) -> None:
    with pytest.raises(UsageError, match=message):
        kept.retention.set(table, keep, column=column)
    assert kept.retention.policies() == []


def test_cli_sets_lists_applies_and_unsets(kept: Project) -> None:
    runner = CliRunner()
    base = ["-p", str(kept.root), "retention"]
    assert runner.invoke(app, [*base, "set", "clicks", "400d"]).exit_code == 0
    listed = runner.invoke(app, [*base, "list", "--json"])
    [policy] = json.loads(listed.output)
    assert (policy["table"], policy["keep"], policy["time_column"]) == ("clicks", "400d", "at")
    applied = runner.invoke(app, [*base, "apply", "--dry-run", "--json"])
    assert applied.exit_code == 0 and '"table": "clicks"' in applied.output
    gone = runner.invoke(app, [*base, "unset", "clicks"])
    assert gone.exit_code == 0 and "dropped" in gone.output
    assert "nothing changed" in runner.invoke(app, [*base, "unset", "clicks"]).output
