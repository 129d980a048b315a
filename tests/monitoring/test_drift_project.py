"""``p.monitoring.drift`` on a project: lake tables, SQL and a model version's training profile
as the reference (the project of the models tests: 600 customers, two normal signals ``a`` and
``b`` and a ``region``)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest

from models.conftest import build, signal_rows
from tarmac.errors import TableNotFoundError
from tarmac.profile import Histogram, TopK
from tarmac.project import Project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    p = build(tmp_path_factory.mktemp("drift") / "proj")
    shifted = signal_rows(n=600, seed=7, start=1001)
    shifted = shifted.set_column(2, "a", pa.array(shifted.column("a").to_numpy() + 1.0))
    p.lake.write("live", shifted)
    yield p
    p.close()


def test_lake_tables_and_sql_on_either_side(project: Project) -> None:
    report = project.monitoring.drift("signals", "live", columns=["a", "b", "region"])
    assert report.drifted == ["a"] and report["a"].effect_class == "large"
    via_sql = project.monitoring.drift("SELECT a, b, region FROM signals", "live")
    assert via_sql.to_arrow().equals(report.to_arrow())
    # by default the reference's columns: ids and times are tested too, or skipped by kind
    every = project.monitoring.drift("signals", "live")
    assert [r.column for r in every] == ["customer_id", "a", "b", "region"]
    assert every["customer_id"].verdict == "drifted"  # new customers: ids are not features


def test_an_unknown_table_names_the_tables_there_are(project: Project) -> None:
    with pytest.raises(TableNotFoundError, match=r"no lake table named 'nope' \(tables: "):
        project.monitoring.drift("nope", "live")


def test_a_model_versions_training_profile_is_the_reference(project: Project) -> None:
    trained = project.models.train("risk")
    version = project.models.version("risk", trained.version)
    reference = version.reference_profile
    assert isinstance(reference["a"].sketch, Histogram)  # stored at training, full resolution
    assert isinstance(reference["region"].sketch, TopK) and reference["region"].sketch.complete
    report = project.monitoring.drift(reference, "live")
    assert [r.column for r in report] == ["a", "b", "region"]
    assert report.drifted == ["a"]
    assert not any("coarse" in r.note for r in report)
    assert report.reference_rows == reference.rows < 600  # the training part of the split
    assert np.isclose(report["b"].reference_null_rate or 0.0, 0.0)
