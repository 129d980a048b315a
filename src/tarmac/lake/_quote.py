"""Quoting for the SQL text the lake and its users build (DuckDB and PostgreSQL rules alike)."""

from __future__ import annotations

from collections.abc import Iterable


def quote_ident(name: str) -> str:
    """``name`` as a DuckDB/PostgreSQL identifier, embedded quotes doubled: the one quoting
    helper every module that builds SQL text uses (``quote_ident('a"b') == '"a""b"'``)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a SQL string literal, embedded quotes doubled (``"o'k"`` -> ``'o''k'``)."""
    return "'" + text.replace("'", "''") + "'"


def literal_list(texts: Iterable[str]) -> str:
    """Comma-separated string literals, e.g. the file list of ``read_parquet([...])``."""
    return ", ".join(quote_literal(t) for t in texts)
