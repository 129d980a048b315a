"""Personal data masked in the engine for users without ``read:pii``.

A column is personal when the catalog tags it so (``pii``, ``personal``, ``sensitive``, a kind
the survey detects: ``email``, ``phone``, ``name``, ``card``, ``ip``, or ``pii:KIND``; set with
``tarmac tag TABLE COLUMN=TAGS`` / ``lake.annotate(column_tags=...)`` or declared on a source's
columns).
Where access is enforced and the acting user lacks ``read:pii`` on the table, every query binds
the table as a view that replaces those columns before anything else sees them, so masking
holds through joins, views, aggregates and ``lake.read``:

- ``hash`` (the default): ``pii_`` + 16 hex digits of an HMAC-SHA256 of the value under the
  project's masking key. The same value gives the same pseudonym in every table, so joins and
  ``count(DISTINCT ...)`` still work; without the key the value cannot be guessed back from
  it (a dictionary of e-mail addresses is useless). The key is ``TARMAC_MASK_KEY`` or
  ``.tarmac/mask.key`` (32 random bytes, created on first use, mode 0600).
- ``redact`` (a column also tagged ``redact``): ``[redacted]``.

Masked columns read as text. The ingest quarantine's ``value`` and ``record`` columns hold raw
source rows, any column of which may be personal: they are redacted for the same users.

SQL that could read around the views is refused where access is enforced: table functions
other than ``range``, ``generate_series`` and ``unnest`` (``read_parquet`` over the lake's
files, ``query_table``, ``duckdb_views``) and the raw datasets behind masked views.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from tarmac.errors import SqlError
from tarmac.lake._quote import quote_ident

if TYPE_CHECKING:
    from tarmac.lake.lake import Lake

PERSONAL = frozenset({"pii", "personal", "sensitive", "email", "phone", "name", "card", "ip"})
REDACT = "redact"
UDF = "tarmac_mask"
#: raw source values, any column of which may be personal
RAW_COLUMNS = {"quarantine": ("value", "record")}
SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
HIDDEN = "__raw_"  # the prefix of a masked table's raw dataset in the engine


def is_personal(tags: tuple[str, ...] | list[str]) -> bool:
    low = {t.lower() for t in tags}
    return bool(low & PERSONAL) or any(t.startswith(("pii:", "pii.")) for t in low)


def mask_kind(tags: tuple[str, ...] | list[str]) -> str | None:
    """How a value with these tags is masked: ``hash``, ``redact``, or None (not personal)."""
    if not is_personal(tags):
        return None
    return REDACT if REDACT in {t.lower() for t in tags} else "hash"


def pseudonym(key: bytes, text: str) -> str:
    """``pii_`` + 16 hex digits of HMAC-SHA256(key, text): what a masked value reads as."""
    return "pii_" + hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def mask_value(value: object, how: str, key: bytes) -> str | None:
    """One Python value masked as the engine masks a column (null stays null; the text is
    DuckDB's ``CAST(... AS VARCHAR)`` of it for the scalar types features hold, so a masked
    online value equals the masked offline one)."""
    if value is None:
        return None
    if how == REDACT:
        return "[redacted]"
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return pseudonym(key, text)


def masked_columns(lake: Lake, name: str) -> dict[str, str]:
    """The columns of ``name`` the acting user sees masked: column -> ``hash`` | ``redact``
    (empty when access is not enforced or the user holds ``read:pii`` on the table)."""
    guard = lake.ledger.guard
    if not guard.enforced or guard.allows("read:pii", f"table:{name}"):
        return {}
    out = {c: REDACT for c in RAW_COLUMNS.get(name, ())}
    dataset = lake.ledger.catalog.get_dataset(name)
    for column in dataset.columns if dataset is not None else ():
        masked = mask_kind(column.tags)
        if masked is not None:
            out[column.name] = masked
    return out


def replace_clause(masked: dict[str, str], present: set[str] | None = None) -> str:
    """``* REPLACE (...)`` for a SELECT list: the masked columns swapped in place."""
    parts = []
    for column, how in sorted(masked.items()):
        if present is not None and column not in present:
            continue
        q = quote_ident(column)
        if how == REDACT:
            parts.append(f"CASE WHEN {q} IS NULL THEN NULL ELSE '[redacted]' END AS {q}")
        else:
            parts.append(f"{UDF}(CAST({q} AS VARCHAR)) AS {q}")
    return f"* REPLACE ({', '.join(parts)})" if parts else "*"


def install(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """Register the masking function on ``con`` (once; cursors share it). The key stays in
    this process: the function is Python, so no view definition shows it."""
    try:
        con.execute(f"SELECT {UDF}(NULL)")
        return
    except duckdb.Error:
        pass

    def mask(values: pa.Array) -> pa.Array:
        return pa.array([None if v is None else pseudonym(key, v) for v in values.to_pylist()],
                        pa.string())

    con.create_function(UDF, mask, ["VARCHAR"], "VARCHAR",  # type: ignore[call-overload]
                        type="arrow", null_handling="special", side_effects=False)


def check_reads_around(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse SQL that could read the lake around the masking views (see the docstring)."""
    try:
        row = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()
        tree = json.loads(row[0][0]) if row else {}
    except (duckdb.Error, TypeError, ValueError):
        return  # not serializable: DuckDB reports its own error when it runs
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "TABLE_FUNCTION":
                found.append(str(node.get("function", {}).get("function_name", "")))
            if node.get("type") == "BASE_TABLE" and str(node.get("table_name", "")
                                                        ).startswith(HIDDEN):
                found.append(str(node["table_name"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    bad = sorted({f for f in found if f.lower() not in SAFE_TABLE_FUNCTIONS})
    if bad:
        raise SqlError(f"{', '.join(bad)}: this project checks who reads what, so queries read "
                       "lake tables by name only (no file-reading or catalog table functions, "
                       "no raw datasets behind masked views)",
                       hint="SELECT ... FROM table_name")


__all__ = ["HIDDEN", "PERSONAL", "REDACT", "install", "is_personal", "masked_columns",
           "replace_clause"]
