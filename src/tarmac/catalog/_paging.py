"""Keyset pagination, the one way every catalog list call pages.

A page is ``limit`` rows after the last row of the previous page in a fixed order over indexed
columns, so page 1,000 costs what page 1 costs (no ``OFFSET``), and rows inserted meanwhile do
not shift a page's start. The cursor handed back is the last row's sort key, opaque to callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Select, and_, or_
from sqlalchemy.sql.elements import ColumnElement

from tarmac.catalog.records import decode_cursor, encode_cursor
from tarmac.errors import UsageError

MAX_PAGE = 1000

Key = tuple[ColumnElement[Any], bool]  # (column, descending)


def check_limit(limit: int) -> int:
    """``limit`` if it is a page size the catalog serves (1 to ``MAX_PAGE``), else a clear error."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise UsageError(f"page limit must be between 1 and {MAX_PAGE}, got {limit!r}",
                         hint="page through longer lists with the returned next_cursor")
    return limit


def paginate(conn: Connection, query: Select[Any], keys: Sequence[Key], *, limit: int,
             cursor: str | None) -> tuple[list[Any], str | None]:
    """One page of ``query`` ordered by ``keys`` (unique together, NOT NULL): the rows and the
    cursor of the next page (``None`` on the last one)."""
    check_limit(limit)
    if cursor:
        values = decode_cursor(cursor, len(keys))
        query = query.where(_after(keys, values))
    order = [col.desc() if desc else col.asc() for col, desc in keys]
    rows = list(conn.execute(query.order_by(*order).limit(limit + 1)).all())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(*(getattr(last, _name(col)) for col, _ in keys))


def _after(keys: Sequence[Key], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in the keys' order (mixed directions allowed):
    ``k1 > v1 OR (k1 = v1 AND k2 > v2) OR ...``, each comparison flipped for a descending key."""
    terms = []
    for i, (col, desc) in enumerate(keys):
        beyond = col < values[i] if desc else col > values[i]
        terms.append(and_(*(keys[j][0] == values[j] for j in range(i)), beyond))
    return or_(*terms)


def _name(col: ColumnElement[Any]) -> str:
    name = getattr(col, "key", None) or getattr(col, "name", None)
    if not name:
        raise TypeError(f"a pagination key must be a named column, got {col!r}")
    return str(name)
