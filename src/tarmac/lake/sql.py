"""SQL over lake tables with DuckDB, in process, without loading whole tables.

Only the tables a query names are bound, each at its latest version or the version/time given in
``as_of``. A plain local Delta table (no deletion vectors, column mapping or partitions) is bound
to DuckDB's native Parquet reader over exactly the files of that version, so filters and
projections push down to row groups; anything else is bound as an Arrow dataset, which pushes
down as well. Reads inside a ledger run are recorded as its inputs. The SQL is read-only
(``_readonly``): other statements are refused, and DuckDB may touch no file outside the lake.

Example::

    query(lake, "SELECT region, count(*) FROM customers GROUP BY 1", as_of={"customers": 3})
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import datetime

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from tarmac.errors import SqlError, UsageError
from tarmac.lake import masking
from tarmac.lake._delta import plain
from tarmac.lake._quote import literal_list, quote_ident
from tarmac.lake._readonly import check_read_only, sandbox
from tarmac.lake.lake import Lake, is_table_name

AsOf = Mapping[str, int | datetime | str]


def query(lake: Lake, sql: str, *, as_of: AsOf | None = None) -> pa.Table:
    """Run a query and return the result as an Arrow table."""
    con = connect(lake, sql, as_of=as_of)
    try:
        result = con.sql(sql)
        return result.to_arrow_table() if result is not None else pa.table({})
    except duckdb.Error as exc:
        raise sql_error(lake, exc) from None
    finally:
        con.close()


def connect(lake: Lake, sql: str, *, as_of: AsOf | None = None,
            bound: dict[str, int] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the query's lake tables bound as views (for streaming use);
    ``bound``, if given, receives the version each table was bound at."""
    check_read_only(sql)
    names = referenced_tables(lake, sql)  # lower case: SQL identifiers are case-insensitive
    pins = {k.lower(): v for k, v in (as_of or {}).items()}
    unused = sorted(set(pins) - names)
    if unused:
        raise UsageError(f"as_of names {', '.join(unused)}, which the query does not read")
    con = _database(lake).cursor()  # a private session: its temp views are its own
    guard = lake.ledger.guard
    if guard.enforced and not guard.inside:  # a user's SQL reads through the masking views
        masking.check_reads_around(con, sql)
    try:
        for name in sorted(names):
            latest = lake.latest(name) if is_table_name(name) else None
            if latest is None:
                continue  # DuckDB reports unknown tables itself; we add the list of tables
            guard.check("read", f"table:{name}")
            pin = pins.get(name)
            if isinstance(pin, str) and pin.isdigit():
                pin = int(pin)
            if pin is None:
                dt = latest
            elif isinstance(pin, int):
                dt = lake.table(name, version=pin)
            else:
                dt = lake.table(name, as_of=pin)
            lake._note_input(name, dt.version())
            if bound is not None:
                bound[name] = dt.version()
            masked = masking.masked_columns(lake, name)
            if masked:
                masking.install(_database(lake), guard.mask_key or b"")
            _bind(con, lake, name, dt, masked)
    except duckdb.Error as exc:
        con.close()
        raise sql_error(lake, exc) from None
    except BaseException:
        con.close()
        raise
    return con


def _database(lake: Lake) -> duckdb.DuckDBPyConnection:
    """One in-process DuckDB per lake: opening one costs ~30 ms, a cursor on it ~1 ms, and
    Parquet footers stay cached across queries."""
    if lake.duckdb is None:
        con = duckdb.connect()
        con.execute("SET GLOBAL TimeZone = 'UTC'")
        con.execute("SET GLOBAL parquet_metadata_cache = true")
        sandbox(con, lake.root if lake.is_local else None)
        lake.duckdb = con
    return lake.duckdb


def referenced_tables(lake: Lake, sql: str) -> set[str]:
    """Table names the query reads. DuckDB's extractor binds the query and fails on some valid
    ones (``JOIN ... USING`` over unknown tables); then lake names among its identifiers do."""
    try:
        return {name.lower() for name in duckdb.get_table_names(sql)}
    except duckdb.ParserException as exc:
        raise sql_error(lake, exc) from None
    except duckdb.Error:
        words = set(re.findall(r'"([^"]+)"|([A-Za-z_][A-Za-z0-9_]*)', sql))
        identifiers = {(quoted or bare).lower() for quoted, bare in words}
        return identifiers & set(lake.tables())


def _bind(con: duckdb.DuckDBPyConnection, lake: Lake, name: str, dt: DeltaTable,
          masked: dict[str, str] | None = None) -> None:
    quoted = quote_ident(name)
    schema_names = set(pa.schema(dt.schema().to_arrow()).names)
    shown = masking.replace_clause(masked or {}, schema_names)
    if lake._missing(dt):  # say which file of which version, not DuckDB's internal SQL
        raise lake.files_gone(name, dt)
    files = dt.file_uris()
    if not files:
        empty = pa.schema(dt.schema().to_arrow()).empty_table()
        con.register(f"__empty_{name}", empty)
        con.execute(f'CREATE TEMP VIEW {quoted} AS SELECT {shown} FROM "__empty_{name}"')
        return
    if lake.is_local and plain(dt):
        listing = literal_list(files)
        source = f"read_parquet([{listing}], union_by_name = true)"
        # a column in the Delta schema that no file has yet (added by an empty write) is NULL
        present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        schema = pa.schema(dt.schema().to_arrow())
        missing = [f.name for f in schema if f.name not in present]
        columns = "*"
        if missing:
            con.register(f"__schema_{name}", schema.empty_table())
            types = dict(con.execute(f'SELECT column_name, column_type FROM '
                                     f'(DESCRIBE "__schema_{name}")').fetchall())
            columns += "".join(f', CAST(NULL AS {types[c]}) AS "{c}"' for c in missing)
        if shown != "*":
            source = f"(SELECT {columns} FROM {source})"
            columns = shown
        con.execute(f"CREATE TEMP VIEW {quoted} AS SELECT {columns} FROM {source}")
    elif shown != "*":  # the raw dataset under a name user SQL may not use (see masking)
        hidden = f"{masking.HIDDEN}{secrets.token_hex(8)}"
        con.register(hidden, lake.dataset(dt))
        con.execute(f'CREATE TEMP VIEW {quoted} AS SELECT {shown} FROM "{hidden}"')
    else:
        con.register(name, lake.dataset(dt))


def sql_error(lake: Lake, exc: Exception) -> SqlError:
    """A DuckDB error as a ``SqlError`` a user can act on: the lake's tables for an unknown
    name, the retention window for a vacuumed version. Callers that run their own SQL over
    ``connect`` (the training set) raise it the same way ``query`` does."""
    message = str(exc).strip()
    tables = ", ".join(lake.tables()) or "none yet"
    if isinstance(exc, duckdb.CatalogException) or "does not exist" in message:
        return SqlError(f"{message}\n  lake tables: {tables}")
    if isinstance(exc, duckdb.IOException) and ("No such file" in message
                                                 or "No files found" in message):
        return SqlError(f"{message}\n  the data files of a version this query reads are gone "
                        "(removed by vacuum): only versions inside the retention window can be "
                        "read")
    return SqlError(message, hint=f"lake tables: {tables}")
