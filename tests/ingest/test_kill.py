"""Kill the loading process for real, at every step and at random moments, then rerun: the lake
must end exactly as if the load had run once (no duplicates, no gaps, quarantine included)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import tarmac
from tarmac.catalog import sources as state_store
from tarmac.catalog.sources import Load
from tarmac.project import scaffold

PHASES = ["staged", "planned", "quarantine_committed", "data_committed", "committed"]
LOAD = "import sys, tarmac; tarmac.open(sys.argv[1]).ingest()"


def _company(root: Path, rows: int = 300) -> None:
    """A project with a CSV source (append, no key) and a SQLite source (merge, key, cursor),
    each with records the contract rejects."""
    scaffold(root, name="killme")
    data = root / "data"
    data.mkdir()
    for part in range(2):
        lines = ["event_id,amount,note"]
        lines += [f"{part}-{i},{i * 1.5},n{i}" for i in range(rows)]
        lines.append(f"{part}-bad,not-a-number,x")
        (data / f"events_{part}.csv").write_text("\n".join(lines) + "\n")
    con = sqlite3.connect(data / "crm.db")
    con.execute("CREATE TABLE customers (id INTEGER, email TEXT, updated_at TEXT)")
    con.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                    [(i, f"u{i}@example.com", f"2026-01-{i % 28 + 1:02d}T00:00:00Z")
                     for i in range(rows)] + [(rows, "nocursor@example.com", None)])
    con.commit()
    con.close()
    with (root / "tarmac.yaml").open("a") as f:
        f.write(textwrap.dedent("""\
            sources:
              events: {type: file, path: "data/events_*.csv", columns: {amount: float}}
              crm: {type: sql, url: "sqlite:///data/crm.db", tables: [customers],
                    primary_key: id, cursor: updated_at, batch_size: 50}
            """))


def _state(root: Path) -> dict[str, Any]:
    """What a user can see: table rows, quarantined records, cursors."""
    with tarmac.open(root) as p:
        out: dict[str, Any] = {
            "events": p.sql("SELECT * FROM events ORDER BY event_id").to_pylist(),
            "customers": p.sql("SELECT * FROM customers ORDER BY id").to_pylist(),
            "quarantine": p.sql("SELECT source, \"table\", reason, \"column\", value, record "
                                "FROM quarantine ORDER BY source, record").to_pylist(),
        }
        out["cursors"] = {s.source: s.cursor for s in state_store.list_states(p.catalog)}
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ref") / "proj"
    _company(root)
    with tarmac.open(root) as p:
        results = p.ingest()
        assert all(r.status == "succeeded" for r in results), results
    return _state(root)


def _run(root: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", LOAD, str(root)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=120)


@pytest.mark.parametrize("phase", PHASES)
def test_killed_at_each_step_then_rerun_equals_one_clean_load(
        tmp_path: Path, reference: dict[str, Any], phase: str) -> None:
    root = tmp_path / "proj"
    _company(root)
    killed = _run(root, {"TARMAC_FAULT_KILL_AT": phase})
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    with tarmac.open(root) as p:
        results = p.ingest()
    assert all(r.status == "succeeded" for r in results), results
    if phase in ("planned", "quarantine_committed", "data_committed"):
        # the killed process had staged its plan: this run finished it first
        assert any(r.recovered for r in results)
    assert _state(root) == reference

    with tarmac.open(root) as p:  # and once more: nothing new, nothing doubled
        again = p.ingest()
    assert sum(r.rows_loaded for r in again) == 0
    assert _state(root) == reference


def test_killed_at_random_moments_then_rerun_equals_one_clean_load(tmp_path: Path) -> None:
    ref_root = tmp_path / "ref"
    _company(ref_root, rows=20_000)
    assert _run(ref_root).returncode == 0
    reference = _state(ref_root)

    root = tmp_path / "proj"
    _company(root, rows=20_000)
    for delay in (0.4, 0.9, 1.4, 2.0):  # from mid-read to mid-commit on this machine
        proc = subprocess.Popen([sys.executable, "-c", LOAD, str(root)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    final = _run(root)
    assert final.returncode == 0, final.stderr
    assert _state(root) == reference


def test_a_load_in_progress_is_not_loaded_twice_concurrently(tmp_path: Path) -> None:
    """A second process refuses a stream a live run is loading (no double claims)."""
    root = tmp_path / "proj"
    _company(root)
    with tarmac.open(root) as p, p.ledger.run("ingest.crm") as run:
        with p.catalog.write() as conn:  # this (live) process holds the crm stream
            state_store.start_load(conn, Load("x" * 32, "crm", "customers", "customers",
                                              run.id, 0, "running", 0, None))
        other = subprocess.run(
            [sys.executable, "-c", "import sys, tarmac\n"
             "for r in tarmac.open(sys.argv[1]).ingest(): print(r.source, r.status, r.error)",
             str(root)], capture_output=True, text=True, timeout=120)
    assert other.returncode == 0, other.stderr
    lines = {line.split()[0]: line for line in other.stdout.splitlines()}
    assert f"crm failed source 'crm': stream 'customers' is being loaded by run {run.id}" \
        in lines["crm"]
    assert lines["events"].startswith("events succeeded")
    with tarmac.open(root) as p:
        assert not p.lake.exists("customers")
        assert p.lake.exists("events")
