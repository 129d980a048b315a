"""A table's governed metadata (owner, description, tags, column tags), changed through the
ledger like a write (``Lake.annotate`` delegates here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tarmac.catalog import Column
from tarmac.catalog import store as cat
from tarmac.errors import UsageError

if TYPE_CHECKING:
    from tarmac.lake.lake import Lake


def annotate(lake: Lake, name: str, *, owner: str | None, description: str | None,
             tags: list[str] | None, column_tags: dict[str, list[str]] | None) -> None:
    """Set the given fields of table ``name`` in the catalog, with an audit record."""
    info = lake.ledger.catalog.get_dataset(name)
    if info is None:
        raise lake.missing(name)
    columns = {c.name: c for c in info.columns}
    unknown = sorted(set(column_tags or {}) - set(columns))
    if unknown:
        raise UsageError(f"table '{name}' has no column(s) {', '.join(unknown)}; columns: "
                         f"{', '.join(columns)}")
    values: dict[str, Any] = {}
    if owner is not None:
        values["owner"] = owner
    if description is not None:
        values["description"] = description
    if tags is not None:
        values["tags"] = tags
    if column_tags:
        values["columns"] = [Column(c.name, c.type, c.nullable,
                                    tuple(sorted(set(column_tags.get(c.name, c.tags)))))
                             for c in info.columns]
    if not values:
        raise UsageError("annotate needs at least one of owner, description, tags, column_tags")
    details = {k: v for k, v in (("owner", owner), ("description", description),
                                 ("tags", tags), ("column_tags", column_tags)) if v is not None}
    lake.ledger.commit("dataset.annotate", name, details,
                       change=lambda conn: cat.upsert_dataset(conn, name=name, values=values))
