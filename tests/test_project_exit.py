"""Open projects are closed at interpreter exit (issue 11, item 18): a script that never calls
``close()`` leaves no SQL engine or catalog connections running into teardown."""

from __future__ import annotations

from pathlib import Path

import tarmac
from tarmac import project as project_module


def test_projects_left_open_are_closed_at_exit(tmp_path: Path) -> None:
    tarmac.init(tmp_path / "p")
    p = tarmac.open(tmp_path / "p")
    p.lake.write("t", {"id": [1, 2]})
    assert p.sql("SELECT count(*) AS n FROM t").to_pylist() == [{"n": 2}]
    assert p.lake.duckdb is not None and p in project_module._OPEN
    project_module._close_open_projects()  # what atexit runs
    assert p.lake.duckdb is None and p not in project_module._OPEN


def test_a_closed_project_is_not_closed_again(tmp_path: Path) -> None:
    tarmac.init(tmp_path / "p")
    with tarmac.open(tmp_path / "p") as p:
        assert p in project_module._OPEN
    assert p not in project_module._OPEN
