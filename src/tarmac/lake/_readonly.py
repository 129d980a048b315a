"""SQL over the lake is read-only: writes go through ``p.lake``, which the ledger records.

Two layers. :func:`check_read_only` refuses, before anything runs, every statement that is not
a query (DDL, DML, ``COPY``, ``ATTACH``, ``INSTALL``/``LOAD``, ``SET``, ``PRAGMA``, ``CALL``,
``EXPORT``...), naming it in one line. :func:`sandbox` then confines the DuckDB that runs the
query to the lake's own folder, so even a function that takes a path (``read_csv('/etc/...')``)
cannot read or write anything else.
"""

from __future__ import annotations

import os
import re

import duckdb

from tarmac.errors import SqlError
from tarmac.lake._quote import literal_list

# statement types that only read; EXPLAIN is checked on what it explains (ANALYZE runs it)
_READS = {"SELECT"}
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(?:ANALY[SZ]E\s+)?", re.IGNORECASE)
_PIVOT = re.compile(r"^\s*(?:UN)?PIVOT\b", re.IGNORECASE)  # parsed as MULTI: it reads only
_FIRST_WORD = re.compile(r"[A-Za-z_]+")

HINT = ("queries only (SELECT, WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN); write "
        "lake tables with p.lake.write / merge / delete, which the ledger records")


def check_read_only(sql: str) -> None:
    """Raise ``SqlError`` unless every statement in ``sql`` only reads.

    Example::

        check_read_only("SELECT 1")                      # fine
        check_read_only("COPY (SELECT 1) TO 'x.csv'")    # SqlError: ... COPY statements are refused
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error:
        return  # not parseable: running it reports DuckDB's own syntax error
    for statement in statements:
        kind = statement.type.name
        text = statement.query
        if kind == "EXPLAIN":
            inner = _EXPLAIN.sub("", text, count=1)
            if inner != text:
                check_read_only(inner)
                continue
        if kind in _READS or (kind == "MULTI" and _PIVOT.match(text)):
            continue
        raise SqlError(f"SQL over the lake is read-only: {_name(kind, text)} statements are "
                       "refused", hint=HINT)


def _name(kind: str, text: str) -> str:
    """What the user wrote (``INSTALL``, ``USE``), else DuckDB's statement type."""
    word = _FIRST_WORD.search(text)
    first = word.group(0).upper() if word else ""
    if first in ("WITH", ""):
        return kind.replace("_", " ")
    return first


def sandbox(con: duckdb.DuckDBPyConnection, root: str | None) -> None:
    """Confine the connection's file access to ``root`` (the local lake folder), or to nothing
    (a remote lake is read through Arrow datasets, which need no file access in DuckDB).
    Must run before the connection's first query; it cannot be undone while it lives."""
    dirs: list[str] = []
    if root is not None:
        path = root.removeprefix("file://")
        for folder in dict.fromkeys((os.path.abspath(path), os.path.realpath(path))):
            dirs.append(folder.rstrip(os.sep) + os.sep)
    listing = literal_list(dirs)
    con.execute(f"SET GLOBAL allowed_directories = [{listing}]")
    con.execute("SET GLOBAL enable_external_access = false")
