"""The metadata catalog: datasets, runs, lineage edges and the audit log, on SQLite or PostgreSQL.

Only the ledger writes to it (``tarmac.ledger``); everything else reads through ``Catalog``.
"""

from tarmac.catalog.records import (
    AuditRecord,
    Column,
    Dataset,
    DatasetVersion,
    Page,
    Run,
    all_items,
    now_us,
    to_datetime,
)
from tarmac.catalog.store import MAX_PAGE, Catalog

__all__ = [
    "MAX_PAGE",
    "AuditRecord",
    "Catalog",
    "Column",
    "Dataset",
    "DatasetVersion",
    "Page",
    "Run",
    "all_items",
    "now_us",
    "to_datetime",
]
