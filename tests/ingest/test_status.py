"""``source_status``: what ``tarmac sources`` and the console show of each declared source."""

from __future__ import annotations

from tarmac.ingest.status import source_status
from tarmac.project import Project

from .conftest import Declare


def test_a_declared_source_before_and_after_its_first_load(project: Project,
                                                          declare: Declare) -> None:
    data = project.root / "data"
    data.mkdir()
    (data / "orders.csv").write_text("order_id,amount\n1,2.5\n2,3.0\n3,1.0\n")
    p = declare(project, {"orders": {"type": "file", "path": "data/orders.csv",
                                     "primary_key": "order_id"}})
    [before] = source_status(p)
    assert (before["source"], before["status"], before["loads"], before["rows"]) == \
        ("orders", "declared", 0, None)
    p.ingest(["orders"])
    [after] = source_status(p)
    assert (after["status"], after["table"], after["rows"], after["loads"]) == \
        ("committed", "orders", 3, 1)
    assert after["last_load"].tzinfo is not None and after["error"] is None


def test_no_sources_declared_is_an_empty_list(project: Project) -> None:
    assert source_status(project) == []
