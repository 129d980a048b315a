"""Fault points: hooks run where the code declares them, only inside ``inject``'s block."""

from __future__ import annotations

import pytest

from tarmac import faults
from tarmac.errors import UsageError


def test_a_hook_runs_at_its_point_with_the_context_and_stops_after_the_block(project) -> None:
    seen: list[dict[str, object]] = []
    with faults.inject("lake.before_record", lambda **ctx: seen.append(ctx)):
        project.lake.write("t", {"id": [1, 2]})
    project.lake.write("t", {"id": [3]})

    assert seen == [{"table": "t", "version": 0}]


def test_a_failing_hook_interrupts_the_operation_before_the_catalog_records_it(project) -> None:
    def crash(**_ctx: object) -> None:
        raise RuntimeError("power cut")

    with faults.inject("lake.before_record", crash), pytest.raises(RuntimeError):
        project.lake.write("t", {"id": [1]})

    assert project.catalog.get_dataset("t") is None


def test_an_unknown_point_is_refused_with_the_known_ones() -> None:
    refused = pytest.raises(UsageError, match="no fault point 'lake.before_recrod'.*lake.befo")
    with refused, faults.inject("lake.before_recrod", print):
        pass
