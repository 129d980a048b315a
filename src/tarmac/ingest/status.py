"""Where each declared source stands: its last load, its cursor, the rows in its tables.

``source_status`` is what ``tarmac sources`` prints and the console shows: one row per table a
source loads (or one for a source that has loaded nothing yet), read from the catalog's source
states and load records without touching the sources themselves.

Example::

    from tarmac.ingest.status import source_status
    [(s["source"], s["status"], s["rows"]) for s in source_status(p)]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tarmac.catalog import MAX_PAGE, all_items, to_datetime
from tarmac.catalog import sources as state_store

if TYPE_CHECKING:
    from tarmac.project import Project

__all__ = ["source_status"]

RECENT_LOADS = 1000  # load records read to find each source's last load


def source_status(project: Project) -> list[dict[str, Any]]:
    """One dict per (source, table): ``source``, ``type``, ``location``, ``table``, ``mode``,
    ``primary_key``, ``cursor_column``, ``status`` (of the last load, or ``declared`` /
    ``streams`` before any), ``last_load`` (a UTC datetime), ``error``, ``rows`` (in the
    table now), ``loads``, ``rows_loaded_total`` and ``cursor`` (its value). Raises
    ``ConfigError`` when ``tarmac.yaml`` declares a bad source."""
    specs = project.sources
    catalog = project.catalog
    pages = all_items(lambda c: state_store.list_states(catalog, limit=MAX_PAGE, cursor=c))
    states = {(s.source, s.stream): s for s in pages}
    last: dict[str, Any] = {}
    for recent in state_store.loads(catalog, limit=RECENT_LOADS):
        last.setdefault(recent.source, recent)
    rows: list[dict[str, Any]] = []
    for name, spec in specs.items():
        # a stream source: its own row (totals); the per-partition offsets are in
        # `tarmac stream status`
        mine = [s for (src, stream), s in states.items()
                if src == name and (spec.type != "stream" or stream == name)]
        load = last.get(name)
        base = {"source": name, "type": spec.type, "location": spec.location(),
                "mode": spec.load_mode if spec.type != "stream" else "stream",
                "primary_key": spec.primary_key, "cursor_column": spec.cursor,
                "status": load.status if load else ("declared" if spec.type != "stream"
                                                    else "streams"),
                "last_load": to_datetime(load.started_at) if load else None,
                "error": load.error if load else None}
        if not mine:
            rows.append(base | {"table": spec.table or "-", "rows": None, "cursor": None,
                                "loads": 0})
        for s in mine:
            table = catalog.get_dataset(s.table)
            rows.append(base | {"table": s.table, "rows": table.rows if table else None,
                                "loads": s.seq, "rows_loaded_total": s.rows_total,
                                "cursor": s.cursor["value"] if s.cursor else None})
    return rows
