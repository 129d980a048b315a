"""After a Delta commit: the table's catalog entry, the lineage edge and the audit record, in
one catalog transaction (``Lake._record`` delegates here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tarmac import faults
from tarmac.catalog import Column, DatasetVersion, now_us
from tarmac.catalog import store as cat
from tarmac.lake._delta import Snapshot, rows_added, rows_removed
from tarmac.ledger import ActiveRun

if TYPE_CHECKING:
    from tarmac.lake.lake import Lake, WriteResult


def record(lake: Lake, name: str, snap: Snapshot, operation: str, metrics: dict[str, Any],
           run: ActiveRun, new_cols: list[str], *,
           extra: dict[str, Any] | None = None) -> WriteResult:
    """Record the commit ``snap`` describes; returns what the write did."""
    from tarmac.lake.lake import WriteResult

    faults.point("lake.before_record", table=name, version=snap.version)
    uri, version = lake.uri(name), snap.version
    result = WriteResult(
        table=name, version=version, operation=operation, rows_added=rows_added(metrics),
        rows_updated=int(metrics.get("num_target_rows_updated", 0) or 0),
        rows_deleted=rows_removed(metrics), run_id=run.id, new_columns=tuple(new_cols))
    now = now_us()
    values = {
        "uri": uri, "owner": lake.default_owner or run.actor, "version": version,
        "rows": snap.rows, "bytes": snap.bytes, "files": snap.files, "created_at": now,
        "updated_at": now, "last_run_id": run.id, "last_actor": run.actor,
        "columns": [Column(f.name, str(f.type), f.nullable) for f in snap.schema],
    }
    details: dict[str, Any] = {"version": version, "operation": operation,
                               "rows_added": result.rows_added,
                               "rows_updated": result.rows_updated,
                               "rows_deleted": result.rows_deleted, **(extra or {})}
    if new_cols:
        details["new_columns"] = new_cols
    lake.ledger.commit(
        f"lake.{operation.lower()}", name, details, run=run,
        output=DatasetVersion(name, version),
        change=lambda conn: cat.upsert_dataset(conn, name=name, values=values,
                                               keep_owner=True, keep_column_tags=True))
    return result

