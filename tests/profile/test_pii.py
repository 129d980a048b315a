"""``tarmac.profile.pii`` is public and works without the ingest layer (governance reuses it)."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

import tarmac.ingest.survey as survey
from tarmac.profile import pii


@dataclass
class Declared:  # any object with tags is enough: no ingest ColumnSpec needed
    tags: list[str]


def test_detects_by_name_and_values_on_any_arrow_table() -> None:
    table = pa.table({"contact": ["ann@example.com", "bob@example.org", None],
                      "phone_number": [None, None, None], "qty": [1, 2, 3]})
    found = {(f.column, f.kind, tuple(f.by)) for f in pii.detect_pii(table)}
    assert found == {("contact", "email", ("values",)), ("phone_number", "phone", ("name",))}
    tagged = pii.detect_pii(table, {"contact": Declared(["pii"])})
    assert [f.tagged for f in tagged if f.column == "contact"] == [True]


def test_the_survey_uses_the_same_functions() -> None:
    assert survey.detect_pii is pii.detect_pii and survey.PiiFinding is pii.PiiFinding
    assert {"detect_pii", "looks_like", "luhn_valid", "value_shares", "PiiFinding"} <= \
        set(pii.__all__)
