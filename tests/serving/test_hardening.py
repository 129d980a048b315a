"""What the feature server's trials broke (issue 11, item 11): the same on-demand feature named
twice, huge or duplicated refs, echoed input, an on-demand function's failure, non-finite
on-demand values, a deleted online store, and the access log.

Each test builds on the project of ``test_features_api`` (present, stale and missing customers,
an on-demand ``spend_ratio``).
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tarmac
from tarmac.cli import app as cli_app
from tarmac.errors import echo
from tarmac.project import Project

from .test_features_api import build

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")

DOUBLE = ["spend_ratio:ratio", "spend_ratio:ratio"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    p = build(tmp_path_factory.mktemp("hardening") / "proj")
    yield p
    p.close()


def copy(project: Project, root: Path) -> Project:
    shutil.copytree(project.root, root)
    return tarmac.open(root)


# -- the same feature named twice ------------------------------------------------------------


def test_the_same_on_demand_feature_twice_in_the_sdk(project: Project) -> None:
    got = project.features.online(DOUBLE, [{"customer_id": 1, "basket": 21.0}])
    assert got.features == ["ratio"]
    assert got.rows == [{"ratio": 1.0}] and got.status == [{"ratio": "present"}]
    both = project.features.online(["activity", "activity:sessions", "activity:sessions"],
                                   [{"customer_id": 1}])
    assert both.features == ["sessions", "spend", "region"]


def test_the_same_on_demand_feature_twice_in_the_cli(project: Project) -> None:
    result = CliRunner().invoke(cli_app, [
        "--project", str(project.root), "features", "get", ",".join(DOUBLE),
        "--entity", "customer_id=1,basket=21", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["features"] == ["ratio"]
    assert body["results"][0]["values"] == {"ratio": 1.0}


# -- echoed input ----------------------------------------------------------------------------


def test_echo_clips_long_input() -> None:
    assert echo("churn") == "churn"
    clipped = echo("x" * 1_000_000)
    assert clipped == "x" * 80 + "…(1,000,000 chars)"
    assert echo(["a"]) == "['a']"


def test_an_unknown_huge_name_is_not_echoed_by_the_sdk(project: Project) -> None:
    from tarmac.errors import UsageError

    with pytest.raises(UsageError) as caught:
        project.features.online("y" * 1_000_000, [{"customer_id": 1}])
    assert len(str(caught.value)) < 400
    assert "…(1,000,000 chars)" in str(caught.value)


# -- the online store is never created by a reader --------------------------------------------


def test_a_reader_never_creates_the_online_store(project: Project, tmp_path: Path) -> None:
    p = copy(project, tmp_path / "copy")
    try:
        db = p.root / ".tarmac" / "online.db"
        assert p.features.online_state().ready
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        state = p.features.online_state()
        assert not state.present and not state.ready
        assert state.missing == ["activity", "shops"]
        assert not db.exists()  # reading the state did not recreate the file
        p.features.materialize(full=True)  # a writer creates it again
        assert db.exists() and p.features.online_state().ready
    finally:
        p.close()
