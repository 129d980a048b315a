"""Keyed audit records: a key outside the catalog makes a re-hashed chain detectable; a missing,
wrong or unreadable key is said plainly (exit 1, never a traceback). SQLite and PostgreSQL."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import tarmac
from tarmac.catalog import AuditRecord
from tarmac.cli import app
from tarmac.errors import UsageError
from tarmac.ledger.chain import make_record
from tarmac.ledger.keys import ENV_VAR, AuditKey, parse_key
from tarmac.project import Project

KEY_HEX = "ab" * 32
runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_ambient_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key from the developer's environment or home folder."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def cli(p: Project, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--project", str(p.root), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    return result.exit_code, result.output


def reopen(p: Project) -> Project:
    p.close()
    return tarmac.open(p.root)


def record_some(p: Project, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        p.ledger.commit("test.action", f"target_{i}", {"i": i})


def rows(p: Project) -> list[AuditRecord]:
    return list(p.catalog.iter_audit())


def test_key_turned_on_keys_new_records_and_counts_older_ones(
        any_project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    record_some(any_project, 3)
    monkeypatch.setenv(ENV_VAR, KEY_HEX)
    p = reopen(any_project)
    try:
        record_some(p, 3, start=3)
        stored = rows(p)
        key = parse_key(KEY_HEX, ENV_VAR)
        assert [r.mac is None for r in stored] == [True] * 3 + [False] * 3
        assert {r.key_id for r in stored[3:]} == {key.key_id}
        assert all(r.mac == key.mac(r.hash) for r in stored[3:])
        result = p.ledger.verify()
        assert result.ok and (result.keyed, result.unkeyed) == (3, 3)
        code, out = cli(p, "audit", "verify")
        assert code == 0 and "3 keyed record(s)" in out and "3 earlier record(s)" in out
    finally:
        p.close()


def test_rehashed_chain_is_caught_with_the_key(any_project: Project,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A catalog writer edits record 3 and re-hashes 3..5 so every link holds again: the
    hashes verify, the MACs (kept, as the attacker cannot make new ones) do not."""
    monkeypatch.setenv(ENV_VAR, KEY_HEX)
    p = reopen(any_project)
    try:
        record_some(p, 5)
        stored = rows(p)
        prev = stored[1].hash
        with p.catalog.engine.begin() as conn:
            for r in stored[2:]:
                details = '{"i":99}' if r.seq == 3 else r.details
                new = make_record(r.seq, r.time_us, r.actor, r.action, r.target, details, prev)
                conn.execute(sa.text("UPDATE audit_log SET details = :d, prev_hash = :p, "
                                     "hash = :h WHERE seq = :s"),
                             {"d": details, "p": prev, "h": new.hash, "s": r.seq})
                prev = new.hash
        result = p.ledger.verify()
        assert not result.ok and result.kind == "tampered" and result.bad_seq == 3
        assert "valid MAC" in result.problem and "re-hashed" in result.problem
        code, out = cli(p, "audit", "verify")
        assert code == 1 and "TAMPERED" in out and "record 3" in out
        # stripping the MACs from record 3 on does not help either
        with p.catalog.engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_log SET mac = NULL, key_id = NULL "
                                 "WHERE seq >= 3"))
        stripped = p.ledger.verify()
        assert not stripped.ok and stripped.bad_seq == 3 and "stripped" in stripped.problem
    finally:
        p.close()


def test_keyed_chain_without_the_key_or_with_a_wrong_one(
        any_project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, KEY_HEX)
    p = reopen(any_project)
    record_some(p, 2)
    monkeypatch.delenv(ENV_VAR)
    p = reopen(p)
    try:
        result = p.ledger.verify()
        assert not result.ok and result.kind == "no-key"
        code, out = cli(p, "audit", "verify")
        assert code == 1 and "NO AUDIT KEY" in out and "Traceback" not in out
        with pytest.raises(UsageError, match="the audit trail is keyed"):
            p.ledger.commit("test.action", "x")  # an unkeyed record would break the trail
        assert p.catalog.count("audit_log") == 2
        monkeypatch.setenv(ENV_VAR, "cd" * 32)
        code, out = cli(p, "audit", "verify")
        assert code == 1 and "WRONG AUDIT KEY" in out
        assert parse_key("cd" * 32, ENV_VAR).key_id in out
        p = reopen(p)
        with pytest.raises(UsageError, match="wrong audit key"):
            p.ledger.commit("test.action", "x")  # records under another key: refused too
        assert p.catalog.count("audit_log") == 2
    finally:
        p.close()


def test_key_init_writes_a_private_file_once(project: Project, tmp_path: Path) -> None:
    code, out = cli(project, "audit", "key", "init")
    path = tmp_path / "xdg" / "tarmac" / "test.key"
    assert code == 0 and "created" in out and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    code, out = cli(project, "audit", "key", "init")
    assert code != 0 and "already exists" in out
    p = reopen(project)  # the default location is picked up
    try:
        record_some(p, 1)
        assert rows(p)[0].key_id == AuditKey(bytes.fromhex(path.read_text().strip()),
                                             str(path)).key_id
        assert p.ledger.verify().ok
    finally:
        p.close()


def test_configured_key_that_cannot_be_used(project: Project,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`audit_key:` naming a missing file, or a too-short key in the environment: writes are
    refused and verify says why (exit 1), never falling back to unkeyed records."""
    yaml = project.root / "tarmac.yaml"
    yaml.write_text(yaml.read_text() + "audit_key: keys/missing.key\n")
    p = reopen(project)
    try:
        result = p.ledger.verify()
        assert not result.ok and result.kind == "bad-key"
        assert str(project.root / "keys" / "missing.key") in result.problem
        with pytest.raises(UsageError, match="does not exist"):
            p.ledger.commit("test.action", "x")
        code, out = cli(p, "audit", "verify")
        assert code == 1 and "AUDIT KEY UNUSABLE" in out and "Traceback" not in out
        monkeypatch.setenv(ENV_VAR, "short")
        code, out = cli(p, "audit", "verify")
        assert code == 1 and "too short" in out
    finally:
        p.close()


def test_catalog_copy_of_a_keyed_trail_keys_its_own_record(
        project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tarmac.admin import copy_catalog
    from tarmac.catalog import Catalog
    from tarmac.catalog.copy import CatalogCopyError

    monkeypatch.setenv(ENV_VAR, KEY_HEX)
    p = reopen(project)
    record_some(p, 3)
    p.close()
    result = copy_catalog(f"sqlite:///{tmp_path}/copy.db", project=p.root)
    assert result.verified and result.audit_records == 4
    dest = Catalog(f"sqlite:///{tmp_path}/copy.db")
    copied = list(dest.iter_audit())
    dest.close()
    assert copied[-1].action == "catalog.copy" and copied[-1].mac is not None
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(CatalogCopyError, match="no audit key was given"):
        copy_catalog(f"sqlite:///{tmp_path}/copy2.db", project=p.root)
