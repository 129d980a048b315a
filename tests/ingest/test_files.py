"""File sources as they come from the real world, through ``p.ingest`` on a real project.

Text that only looks like a null marker (``NA`` is Namibia's code) is kept; a float column's
``n/a`` is quarantined with its raw text; compressed files (gzip, zstd, bz2, by extension or by
their magic bytes) are read, never loaded as raw bytes; quoted fields with newlines are read
however the file is split into blocks; a file with another delimiter is quarantined whole,
without adding a junk column. Every load is checked against
``read == loaded + quarantined + duplicates``.
"""

from __future__ import annotations

import bz2
import gzip
import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

import tarmac
from tarmac.cli import app
from tarmac.errors import ConfigError
from tarmac.ingest.connectors import open_connector
from tarmac.project import Project

from .conftest import Database, Declare, column, exists, load, quarantined, rows

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


# -- compressed files (item 3) ----------------------------------------------------------------

CSV = "id,name,amount\n" + "".join(f"{i},n{i},{i * 1.5}\n" for i in range(1, 2001))
JSONL = "".join(json.dumps({"id": i, "kind": "click" if i % 2 else "view"}) + "\n"
                for i in range(1, 1001))


def zstd(data: bytes) -> bytes:
    return pa.compress(data, codec="zstd", asbytes=True)  # a standard zstd frame


@pytest.mark.parametrize(("name", "packed", "n"), [
    ("orders.csv.gz", gzip.compress(CSV.encode()), 2000),
    ("orders.csv.bz2", bz2.compress(CSV.encode()), 2000),
    ("orders.csv.zst", zstd(CSV.encode()), 2000),
    ("events.jsonl.zst", zstd(JSONL.encode()), 1000),
    ("events.jsonl.gz", gzip.compress(JSONL.encode()), 1000),
    ("orders.csv", gzip.compress(CSV.encode()), 2000),  # mislabelled: gzip named .csv
    ("events.jsonl.gz", JSONL.encode(), 1000),  # mislabelled: plain text named .gz
])
def test_compressed_files_are_read(project: Project, declare: Declare, name: str,
                                   packed: bytes, n: int) -> None:
    write(project, f"data/{name}", packed)
    p = declare(project, {"src": {"type": "file", "path": f"data/{name}", "primary_key": "id"}})
    r = load(p, "src")
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined, r.files) == (n, n, 0, 1)
    assert r.bytes_read == len(packed)
    assert rows(p, "SELECT count(*) AS n, max(id) AS top FROM src") == [{"n": n, "top": n}]
    if name.startswith("orders"):
        assert rows(p, "SELECT name, amount FROM src WHERE id = 7") == [
            {"name": "n7", "amount": 10.5}]
    connector = open_connector("src", p.sources["src"], p.root)
    assert connector is not None
    sample = connector.sample(connector.streams()[0], 10)  # the survey counts the text's rows
    assert (sample.rows.num_rows, sample.total_rows, sample.estimated) == (10, n, False)


def test_compressed_csv_bigger_than_a_block(project: Project, declare: Declare,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tarmac.ingest.files.CSV_BLOCK", 4096)
    write(project, "data/o.csv.gz", gzip.compress(CSV.encode()))
    p = declare(project, {"o": {"type": "file", "path": "data/*.csv.gz", "batch_size": 300}})
    r = load(p, "o")
    assert (r.rows_read, r.rows_loaded) == (2000, 2000)
    assert column(p, "o", "id") == list(range(1, 2001))


@pytest.mark.parametrize(("content", "says"), [
    (b"PK\x03\x04" + b"\x00" * 64, "is a zip archive"),
    (b"\xfd7zXZ\x00" + b"\x01" * 64, "is an xz file"),
    (b"id,name\x00\x01\x02\n\x00\x00\x00", "is binary data"),
])
def test_archives_and_binary_files_fail_clearly(project: Project, declare: Declare,
                                                content: bytes, says: str) -> None:
    write(project, "data/x.csv", content)
    p = declare(project, {"x": {"type": "file", "path": "data/x.csv"}})
    r = load(p, "x", ok=False)
    assert says in (r.error or ""), r.error
    assert not exists(p, "x")
    write(project, "data/x.csv", "id\n1\n")  # the file is not remembered: a fixed one loads
    assert load(p, "x").rows_loaded == 1


def test_corrupt_gzip_fails_and_is_not_remembered(project: Project, declare: Declare) -> None:
    packed = gzip.compress(CSV.encode())
    path = write(project, "data/o.csv.gz", packed[:10] + b"\xff" * 200 + packed[210:])
    p = declare(project, {"o": {"type": "file", "path": "data/o.csv.gz"}})
    r = load(p, "o", ok=False)
    assert "data/o.csv.gz" in (r.error or "") and "Traceback" not in (r.error or "")
    assert not exists(p, "o")
    path.write_bytes(packed)
    assert load(p, "o").rows_loaded == 2000


def test_a_header_only_csv_is_a_real_empty_file(project: Project, declare: Declare) -> None:
    write(project, "data/e.csv", "id,name\n")
    p = declare(project, {"e": {"type": "file", "path": "data/e.csv"}})
    r = load(p, "e")
    assert (r.rows_read, r.files) == (0, 1)


# -- declarations naming columns the source lacks; duplicate keys (item 6) -------------------


@pytest.mark.parametrize(("options", "key", "says"), [
    ({"primary_key": "ide"}, "sources.o.primary_key", "has no column 'ide'; did you mean 'id'?"),
    ({"primary_key": "id", "cursor": "updated"}, "sources.o.cursor",
     "has no column 'updated'; did you mean 'updated_at'?"),
    ({"columns": {"amuont": "float"}}, "sources.o.columns.amuont",
     "did you mean 'amount'?"),
    ({"primary_key": "zzz"}, "sources.o.primary_key", "(it has: amount, id, updated_at)"),
])
def test_a_misspelled_column_is_a_config_error(project: Project, declare: Declare,
                                               options: dict[str, object], key: str,
                                               says: str) -> None:
    write(project, "data/o.csv", "id,amount,updated_at\n1,2.5,2026-01-01\n")
    p = declare(project, {"o": {"type": "file", "path": "data/o.csv"} | options})
    with pytest.raises(ConfigError) as info:
        p.ingest(["o"])
    message = info.value.message
    assert f"tarmac.yaml: key '{key}'" in message and says in message, message
    assert "\n" not in message
    assert not exists(p, "o") and quarantined(p) == []
    # fixed, the same files load without --full-refresh: they were not remembered
    p = declare(project, {"o": {"type": "file", "path": "data/o.csv", "primary_key": "id",
                                "cursor": "updated_at", "columns": {"amount": "float"}}})
    assert load(p, "o").rows_loaded == 1


def test_a_misspelled_cursor_exits_2_in_the_cli(project: Project, declare: Declare) -> None:
    write(project, "data/o.csv", "id,updated_at\n1,2026-01-01\n")
    p = declare(project, {"o": {"type": "file", "path": "data/o.csv", "primary_key": "id",
                                "cursor": "updatedat"}})
    out = CliRunner().invoke(app, ["--project", str(p.root), "ingest"])
    assert out.exit_code == 2, out.output
    assert "sources.o.cursor" in out.output and "did you mean 'updated_at'?" in out.output
    run = p.catalog.list_runs(limit=5).items[0]
    assert run.job == "ingest.o" and run.status == "failed"


def test_a_json_source_may_lack_a_declared_column_in_a_file(project: Project,
                                                             declare: Declare) -> None:
    write(project, "data/e.jsonl", '{"id": 1}\n{"id": 2}\n')  # "note" comes in later files
    p = declare(project, {"e": {"type": "file", "path": "data/e.jsonl", "primary_key": "id",
                                "columns": {"note": "string"}}})
    assert load(p, "e").rows_loaded == 2


@pytest.mark.parametrize(("extra", "says"), [
    ("sources:\n  a: {type: file, path: a.csv}\n  a: {type: file, path: b.csv}\n",
     "key 'a' appears twice (line"),
    ("sources:\n  a: {type: file, path: a.csv}\nsources:\n  b: {type: file, path: b.csv}\n",
     "key 'sources' appears twice (line"),
    ("lake: ./other\n", "key 'lake' appears twice (line 4 and line"),
])
def test_duplicate_keys_in_tarmac_yaml_are_refused(project: Project, extra: str,
                                                   says: str) -> None:
    path = project.root / "tarmac.yaml"
    path.write_text(path.read_text() + extra)
    with pytest.raises(ConfigError, match=re.escape(says)):
        tarmac.open(project.root)


def test_a_fresh_project_takes_an_appended_sources_block(project: Project) -> None:
    path = project.root / "tarmac.yaml"
    path.write_text(path.read_text() + "sources:\n  a: {type: file, path: a.csv}\n")
    with tarmac.open(project.root) as p:
        assert list(p.sources) == ["a"]


# -- valid CSV that could not be read; files in another delimiter (item 7) -------------------

MULTILINE = "id,note\n" + "".join(f'{i},"first line {i}\nsecond, line {i}"\n'
                                  for i in range(1, 3001))


@pytest.mark.parametrize("declared", [False, True])
def test_quoted_newlines_across_blocks_are_read(project: Project, declare: Declare,
                                                monkeypatch: pytest.MonkeyPatch,
                                                declared: bool) -> None:
    monkeypatch.setattr("tarmac.ingest.files.CSV_BLOCK", 4096)  # the file spans ~30 blocks
    write(project, "data/notes.csv", MULTILINE)
    source = {"type": "file", "path": "data/notes.csv", "primary_key": "id", "batch_size": 500}
    p = declare(project, {"notes": source | ({"newlines_in_values": True} if declared else {})})
    r = load(p, "notes")
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined, r.duplicates) == (3000, 3000, 0, 0)
    assert rows(p, "SELECT count(DISTINCT id) AS n, max(id) AS top FROM notes") == [
        {"n": 3000, "top": 3000}]
    assert column(p, "notes", "note", "id")[2999] == "first line 3000\nsecond, line 3000"


def test_restarts_do_not_read_a_rejected_row_twice(project: Project, declare: Declare,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tarmac.ingest.files.CSV_BLOCK", 4096)
    lines = MULTILINE.splitlines(keepends=True)
    # a broken row early on, then quoted newlines the chunker trips over
    content = lines[0] + "0,a,b,c\n" + "".join(lines[1:])
    write(project, "data/notes.csv", content)
    p = declare(project, {"notes": {"type": "file", "path": "data/notes.csv",
                                    "primary_key": "id", "batch_size": 200}})
    r = load(p, "notes")
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined, r.duplicates) == (3001, 3000, 1, 0)


def test_a_file_in_another_delimiter_is_quarantined_whole(project: Project,
                                                          declare: Declare) -> None:
    write(project, "data/o/a.csv", "id,name,amount\n1,a,1.5\n2,b,2.5\n")
    odd = write(project, "data/o/b.csv", "id;name;amount\n3;c;3.5\n4;d;4.5\n")
    p = declare(project, {"o": {"type": "file", "path": "data/o/*.csv", "primary_key": "id"}})
    r = load(p, "o")
    assert (r.rows_read, r.rows_loaded, r.rows_quarantined, r.files) == (4, 2, 2, 1)
    assert rows(p, "SELECT * FROM o ORDER BY id") == [
        {"id": 1, "name": "a", "amount": 1.5}, {"id": 2, "name": "b", "amount": 2.5}]
    q = quarantined(p, "o")
    assert [x["record"] for x in q] == ["3;c;3.5", "4;d;4.5"]
    assert "separated by ';', not by the source's delimiter ','" in q[0]["reason"]
    assert q[0]["origin"] == f"{odd}:2"
    # not remembered: once re-exported with commas, it loads
    odd.write_text("id,name,amount\n3,c,3.5\n4,d,4.5\n")
    r = load(p, "o")
    assert (r.rows_loaded, r.files) == (2, 1)
    assert column(p, "o", "id") == [1, 2, 3, 4]


def test_tsv_files_are_tab_separated(project: Project, declare: Declare) -> None:
    write(project, "data/t.tsv", "id\tname\n1\tx, y\n")
    p = declare(project, {"t": {"type": "file", "path": "data/t.tsv"}})
    load(p, "t")
    assert rows(p, "SELECT * FROM t") == [{"id": 1, "name": "x, y"}]


# -- files seen, relative to the glob's root (item 8) ----------------------------------------


def test_a_copied_project_does_not_reread_its_files(project: Project, declare: Declare,
                                                    tmp_path: Path) -> None:
    write(project, "data/o/a.csv", "id,v\n1,x\n")
    write(project, "data/o/b.csv", "id,v\n2,y\n")
    p = declare(project, {"o": {"type": "file", "path": "data/o/*.csv"}})  # append, no key
    assert load(p, "o").rows_loaded == 2
    p.close()
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(project.root, copy)  # keeps modification times, as cp -a and mv do
    with tarmac.open(copy) as q:
        r = load(q, "o")
        assert (r.rows_read, r.files) == (0, 0)
        write_to = copy / "data/o/c.csv"
        write_to.write_text("id,v\n3,z\n")
        r = load(q, "o")
        assert (r.rows_read, r.rows_loaded, r.files) == (1, 1, 1)
        assert column(q, "o", "id") == [1, 2, 3]


def test_absolute_paths_remembered_earlier_are_migrated(project: Project, declare: Declare,
                                                        tmp_path: Path) -> None:
    write(project, "data/o/a.csv", "id\n1\n")
    p = declare(project, {"o": {"type": "file", "path": "data/o/*.csv"}})
    load(p, "o")
    with p.catalog.engine.begin() as conn:  # as an earlier version stored them, elsewhere
        conn.execute(sa.text("UPDATE source_files SET path = '/old/place/proj/data/o/' || path"))
    r = load(p, "o")
    assert (r.rows_read, r.files) == (0, 0)
    assert column(p, "o", "id") == [1]


def test_columns_of_a_several_table_source_may_describe_one_table(
        project: Project, declare: Declare, sqlite_db: Database) -> None:
    sqlite_db.run("CREATE TABLE a (id INTEGER, email TEXT)", "CREATE TABLE b (id INTEGER)",
                  "INSERT INTO a VALUES (1, 'x@y.z')", "INSERT INTO b VALUES (2)")
    p = declare(project, {"crm": sqlite_db.source(tables=["a", "b"], primary_key="id",
                                                  columns={"email": {"tags": ["pii"]}})})
    assert [r.status for r in p.ingest(["crm"])] == ["succeeded", "succeeded"]
    p = declare(project, {"crm": sqlite_db.source(tables=["a", "b"], primary_key="idd")})
    with pytest.raises(ConfigError, match=r"source 'crm' \(table 'a'\) has no column 'idd'"):
        p.ingest(["crm"])
