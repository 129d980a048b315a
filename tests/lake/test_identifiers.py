"""Column names that need quoting in SQL (a quote, a space, a keyword) are read, filtered and
queried as written: every module builds identifiers with the lake's one ``quote_ident``."""

from __future__ import annotations

import pyarrow as pa

from tarmac.lake import literal_list, quote_ident
from tarmac.project import Project


def test_quote_ident_doubles_embedded_quotes() -> None:
    assert quote_ident("plain") == '"plain"'
    assert quote_ident('we"ird') == '"we""ird"'
    assert quote_ident('"; DROP TABLE t; --') == '"""; DROP TABLE t; --"'
    assert literal_list(["a.parquet", "o'k.parquet"]) == "'a.parquet', 'o''k.parquet'"


def test_read_with_columns_and_filter_quotes_awkward_names(project: Project) -> None:
    table = pa.table({'say "hi"': ["a", "b", "c"], "select": [1, 2, 3]})
    project.lake.write("awkward", table)

    out = project.lake.read("awkward", columns=['say "hi"', "select"], filter='"select" >= 2')

    assert out.column_names == ['say "hi"', "select"]
    assert out.column('say "hi"').to_pylist() == ["b", "c"]


def test_sql_over_a_column_with_a_quote(project: Project) -> None:
    project.lake.write("awkward", pa.table({'x"y': [1, 2]}))

    rows = project.sql('SELECT sum("x""y") AS s FROM awkward').to_pylist()

    assert rows == [{"s": 3}]
