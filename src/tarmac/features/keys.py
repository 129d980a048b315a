"""How an entity's key values become the one string the online store files them under.

Python (``encode_key``, on the request path) and DuckDB (``key_sql``, at materialization) must
agree byte for byte, so both live here: values are joined with the unit separator ``\\x1f``,
integers in decimal, strings as they are. ``"42"`` and ``42`` name the same entity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tarmac.lake import quote_ident

SEP = "\x1f"


def encode_key(values: Sequence[Any]) -> str:
    """The online-store key of one entity (its join key values, in declared order)."""
    if len(values) == 1:
        v = values[0]
        return ("true" if v else "false") if isinstance(v, bool) else str(v)
    return SEP.join(("true" if v else "false") if isinstance(v, bool) else str(v)
                    for v in values)


def key_sql(columns: Sequence[str]) -> str:
    """DuckDB expression computing ``encode_key`` of each row's key columns."""
    parts = [f"CAST({quote_ident(c)} AS VARCHAR)" for c in columns]
    return parts[0] if len(parts) == 1 else f"concat_ws(chr(31), {', '.join(parts)})"
