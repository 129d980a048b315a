"""Anchors: the chain head published automatically outside the project, so a cut tail (and a
keyed chain stripped of every MAC) is caught by a plain `tarmac audit verify`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import tarmac
from tarmac.cli import app
from tarmac.ledger.keys import ENV_VAR
from tarmac.project import Project

runner = CliRunner()


def configure(p: Project, anchor: str) -> Project:
    """Reopen ``p`` with ``audit_anchor: {anchor}`` in its tarmac.yaml."""
    yaml = p.root / "tarmac.yaml"
    yaml.write_text(yaml.read_text() + f"audit_anchor: {{{anchor}}}\n")
    p.close()
    return tarmac.open(p.root)


def record_some(p: Project, n: int) -> None:
    for i in range(n):
        p.ledger.commit("test.action", f"target_{i}", {"i": i})


def anchors(p: Project) -> list[dict[str, object]]:
    assert p.ledger.anchors is not None and p.ledger.anchors.path is not None
    path = p.ledger.anchors.path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def cli(p: Project, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--project", str(p.root), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    return result.exit_code, result.output


def test_tail_cut_after_an_automatic_anchor_is_caught(any_project: Project) -> None:
    p = configure(any_project, "every_records: 3")
    try:
        record_some(p, 7)
        assert [a["seq"] for a in anchors(p)] == [3, 6]
        path = p.ledger.anchors.path  # type: ignore[union-attr]
        assert not str(path).startswith(str(p.root))  # outside the project by default
        assert p.ledger.verify().ok
        with p.catalog.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM audit_log WHERE seq >= 6"))
        result = p.ledger.verify()
        assert not result.ok and result.bad_seq == 6 and "removed from the end" in \
            result.problem
        code, out = cli(p, "audit", "verify")
        assert code == 1 and "TAMPERED" in out
    finally:
        p.close()


def test_anchor_published_after_every_minutes(project: Project) -> None:
    p = configure(project, "every_records: 1000, every_minutes: 0.0001")
    try:
        record_some(p, 1)
        time.sleep(0.02)
        record_some(p, 1)
        assert anchors(p)[-1]["seq"] == 2
    finally:
        p.close()


def test_every_mac_stripped_is_caught_by_the_anchor(any_project: Project,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Stripping the MAC of EVERY record leaves a valid unkeyed chain; the anchor remembers
    that its record was keyed."""
    monkeypatch.setenv(ENV_VAR, "ef" * 32)
    p = configure(any_project, "every_records: 2")
    try:
        record_some(p, 4)
        assert anchors(p)[-1]["mac"] is not None
        with p.catalog.engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_log SET mac = NULL, key_id = NULL"))
        result = p.ledger.verify()
        assert not result.ok and "published anchor says record 4 was keyed" in result.problem
    finally:
        p.close()


def test_a_new_chain_at_the_same_catalog_starts_fresh(project: Project) -> None:
    """`tarmac demo` resets its folder: the old chain's anchors do not judge the new chain."""
    p = configure(project, "every_records: 2")
    try:
        record_some(p, 4)
        catalog_file = Path(p.config.catalog.removeprefix("sqlite:///"))
        root = p.root
        p.close()
        catalog_file.unlink()
        p = tarmac.open(root)
        record_some(p, 1)
        assert p.ledger.latest_anchor() is None and p.ledger.verify().ok
    finally:
        p.close()


def test_anchor_command_and_unreadable_anchor_file(project: Project) -> None:
    p = configure(project, "every_records: 1000")
    try:
        record_some(p, 2)
        code, out = cli(p, "audit", "anchor", "--json")
        published = json.loads(out)
        assert code == 0 and published["anchor"]["seq"] == 2
        path = Path(published["path"])
        assert path.stat().st_mode & 0o077 == 0
        path.write_text(path.read_text() + "not json\n")
        code, out = cli(p, "audit", "verify")
        assert code == 1 and "malformed at line 2" in out and "Traceback" not in out
    finally:
        p.close()


def test_anchors_can_be_turned_off(project: Project) -> None:
    p = configure(project, "enabled: false")
    try:
        record_some(p, 3)
        assert p.ledger.anchors is not None and p.ledger.anchors.path is None
        assert p.ledger.publish_anchor() is None and p.ledger.verify().ok
        code, out = cli(p, "audit", "anchor")
        assert code != 0 and "anchors are off" in out
    finally:
        p.close()
