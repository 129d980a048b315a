"""File sources as they come from the real world, through ``p.ingest`` on a real project.

Text that only looks like a null marker (``NA`` is Namibia's code) is kept; a float column's
``n/a`` is quarantined with its raw text; compressed files (gzip, zstd, bz2, by extension or by
their magic bytes) are read, never loaded as raw bytes; quoted fields with newlines are read
however the file is split into blocks; a file with another delimiter is quarantined whole,
without adding a junk column. Every load is checked against
``read == loaded + quarantined + duplicates``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tarmac.project import Project

from .conftest import Declare, column, load, quarantined, rows

MARKERS = ["NA", "NULL", "nan", "n/a", "N/A", "#N/A"]


def write(project: Project, rel: str, content: str | bytes) -> Path:
    path = project.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# -- null markers (item 2) --------------------------------------------------------------------


def test_null_looking_text_is_kept_in_a_string_column(project: Project, declare: Declare) -> None:
    lines = ["id,country"] + [f"{i},{m}" for i, m in enumerate(MARKERS, 1)] + ["7,", '8,""']
    write(project, "data/c.csv", "\n".join(lines) + "\n")
    p = declare(project, {"c": {"type": "file", "path": "data/c.csv", "primary_key": "id",
                                "columns": {"country": "string"}}})
    r = load(p, "c")
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined) == (8, 8, 0)
    # only the empty field is null; a quoted empty string stays an empty string
    assert column(p, "c", "country", "id") == [*MARKERS, None, ""]


def test_undeclared_text_column_keeps_markers_too(project: Project, declare: Declare) -> None:
    write(project, "data/c.csv", "id,code\n1,NA\n2,ZA\n3,\n")
    p = declare(project, {"c": {"type": "file", "path": "data/c.csv"}})
    load(p, "c")
    assert column(p, "c", "code", "id") == ["NA", "ZA", None]


def test_marker_in_a_float_column_is_quarantined_with_its_text(project: Project,
                                                              declare: Declare) -> None:
    lines = ["id,amount", "1,1.5"] + [f"{i},{m}" for i, m in enumerate(MARKERS, 2)] + ["9,"]
    write(project, "data/m.csv", "\n".join(lines) + "\n")
    p = declare(project, {"m": {"type": "file", "path": "data/m.csv", "primary_key": "id",
                                "columns": {"amount": "float"}}})
    r = load(p, "m")
    # "nan" is the float NaN (as Arrow reads an all-number column); the others are no numbers
    bad = [m for m in MARKERS if m != "nan"]
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined) == (8, 3, len(bad))
    got = rows(p, "SELECT id, amount FROM m ORDER BY id")
    assert [g["id"] for g in got] == [1, 4, 9]
    assert got[0]["amount"] == 1.5 and got[1]["amount"] != got[1]["amount"]  # NaN
    assert got[2]["amount"] is None  # the empty field
    q = quarantined(p, "m")
    assert sorted(x["value"] for x in q) == sorted(bad)
    assert {x["reason"] for x in q} == {"'amount' is not a valid float"}
    assert sorted(json.loads(x["record"])["amount"] for x in q) == sorted(bad)


def test_declared_null_values(project: Project, declare: Declare) -> None:
    write(project, "data/m.csv", "id,amount,note\n1,1.5,x\n2,-,-\n3,?,NA\n")
    p = declare(project, {"m": {"type": "file", "path": "data/m.csv", "primary_key": "id",
                                "null_values": ["-", "?"], "columns": {"amount": "float"}}})
    r = load(p, "m")
    assert (r.rows_loaded, r.rows_quarantined) == (3, 0)
    assert rows(p, "SELECT id, amount, note FROM m ORDER BY id") == [
        {"id": 1, "amount": 1.5, "note": "x"}, {"id": 2, "amount": None, "note": None},
        {"id": 3, "amount": None, "note": "NA"}]
