"""The SDK calls the CLI (and the console) make instead of querying the catalog themselves:
``Project.datasets``/``dataset``/``info``, ``Ledger.has_lineage`` and ``tarmac.admin``."""

from __future__ import annotations

from pathlib import Path

import pytest

import tarmac
from tarmac.admin import claim_catalog, copy_catalog
from tarmac.errors import ConfigError
from tarmac.project import Project


def test_datasets_lists_every_table_the_catalog_knows(project: Project) -> None:
    assert project.datasets() == [] and project.dataset("customers") is None
    project.lake.write("customers", {"customer_id": [1, 2, 3]})
    project.lake.write("orders", {"order_id": [1]})
    got = {d.name: d for d in project.datasets()}
    assert set(got) == {"customers", "orders"}
    assert (got["customers"].rows, got["customers"].version) == (3, 0)
    assert project.dataset("customers") == got["customers"]


def test_info_counts_what_the_catalog_holds(project: Project) -> None:
    before = project.info()
    assert before["project"] == "test" and before["tables"] == 0
    assert before["catalog_revision"]  # migrated to head on open
    project.lake.write("customers", {"customer_id": [1]})
    after = project.info()
    assert after["tables"] == 1 and after["audit_records"] > before["audit_records"]
    seq, _, digest = after["audit_head"].partition(":")
    assert int(seq) == after["audit_records"] and len(digest) == 64


def test_has_lineage_knows_which_names_runs_touched(project: Project) -> None:
    with project.ledger.run("train:churn") as run:
        run.add_input("customers", 0)
        project.lake.write("customers_out", {"x": [1]})
    assert project.ledger.has_lineage("customers")  # read by a run
    assert project.ledger.has_lineage("customers", version=0)
    assert not project.ledger.has_lineage("customers", version=7)
    assert not project.ledger.has_lineage("model:nope")


def test_claim_catalog_hands_it_to_the_renamed_project(project: Project) -> None:
    root = project.root
    project.close()
    assert claim_catalog(root) == ("test", "test")  # nothing to do: nothing written
    (root / "tarmac.yaml").write_text((root / "tarmac.yaml").read_text().replace(
        "name: test", "name: renamed"))
    with pytest.raises(ConfigError, match="belongs to project 'test'"):
        tarmac.open(root)
    assert claim_catalog(root) == ("test", "renamed")
    with tarmac.open(root) as p:
        [record] = p.ledger.audit(action="catalog.claim").items
        assert record.target == "renamed" and p.ledger.verify().ok


def test_copy_catalog_dry_run_counts_then_copies(project: Project, tmp_path: Path) -> None:
    project.lake.write("customers", {"customer_id": [1]})
    project.close()
    dest = tmp_path / "copy.db"
    result = copy_catalog(f"sqlite:///{dest}", project=project.root, dry_run=True)
    assert result.source_rows > 0 and result.copied == result.source_rows
    result = copy_catalog(f"sqlite:///{dest}", project=project.root)
    assert result.copied == result.source_rows and result.audit_records > 0
