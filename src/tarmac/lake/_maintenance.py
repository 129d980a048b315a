"""Lake maintenance that changes files, not data meaning: delete by predicate, compaction,
vacuum. Each is a Delta commit recorded through the ledger like a write (``Lake`` delegates)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from deltalake.exceptions import DeltaError

from tarmac.errors import UsageError
from tarmac.lake._delta import first_line, hours, snapshot

if TYPE_CHECKING:
    from tarmac.lake.lake import Lake, WriteResult


def delete(lake: Lake, name: str, predicate: str) -> WriteResult:
    """Delete the rows of ``name`` matching a SQL predicate (no new version if none match)."""
    from tarmac.lake.lake import WriteResult

    if not predicate or not predicate.strip():
        raise UsageError("delete needs a predicate; to empty a table, overwrite it")
    dt = lake.table(name)
    with lake.ledger.ensure_run("lake.delete", params={"table": name}) as run:
        before = dt.version()
        try:
            metrics = dt.delete(predicate, commit_properties=lake._props(run))
        except DeltaError as exc:
            raise UsageError(f"cannot delete from '{name}' where {predicate}: "
                             f"{first_line(exc)}") from None
        if dt.version() == before:  # nothing matched: no new version
            return WriteResult(name, before, "DELETE", 0, 0, 0, run.id)
        return lake._record(name, snapshot(dt), "DELETE", metrics, run, [])


def compact(lake: Lake, name: str, z_order: list[str] | None) -> dict[str, Any]:
    """Rewrite small files into large ones (optionally Z-ordered); data is unchanged."""
    dt = lake.table(name)
    with lake.ledger.ensure_run("lake.compact", params={"table": name}) as run:
        before = dt.version()
        props = lake._props(run)
        metrics = (dt.optimize.z_order(z_order, commit_properties=props) if z_order
                   else dt.optimize.compact(commit_properties=props))
        if dt.version() != before:
            lake._record(name, snapshot(dt), "OPTIMIZE", {}, run, [],
                         extra={"files_added": metrics.get("numFilesAdded", 0),
                                "files_removed": metrics.get("numFilesRemoved", 0)})
        return metrics


def vacuum(lake: Lake, name: str, retain: str | timedelta, dry_run: bool) -> list[str]:
    """Delete files no version newer than ``retain`` needs; time travel past it ends."""
    retain_hours = hours(retain)
    dt = lake.table(name)
    if dry_run:
        return dt.vacuum(retention_hours=retain_hours, dry_run=True,
                         enforce_retention_duration=False)
    with lake.ledger.ensure_run("lake.vacuum", params={"table": name}) as run:
        before = dt.version()
        removed = dt.vacuum(retention_hours=retain_hours, dry_run=False,
                            enforce_retention_duration=False,
                            commit_properties=lake._props(run))
        extra = {"retain_hours": retain_hours, "files_removed": len(removed)}
        if dt.version() != before:
            lake._record(name, snapshot(dt), "VACUUM", {}, run, [], extra=extra)
        else:
            lake.ledger.commit("lake.vacuum", name, extra, run=run)
        return removed
