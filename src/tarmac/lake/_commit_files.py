"""Making staged data files visible in one atomic Delta commit (``Lake.commit_files`` delegates
here): creating the table if needed, adding new columns first, replacing the schema for a full
reload under a changed contract, and committing nothing for an overwrite whose rows are the
table's own."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from deltalake import DeltaTable, Schema, write_deltalake
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from tarmac.errors import SchemaConflictError
from tarmac.lake._arrow import plan_schema
from tarmac.lake._delta import plain, row_count, snapshot
from tarmac.lake._markers import Txn
from tarmac.lake.staging import action_from_dict, rows_in, same_rows

if TYPE_CHECKING:
    from tarmac.lake.lake import Lake, WriteResult


def commit_staged(lake: Lake, name: str, files: list[dict[str, Any]], schema: pa.Schema, *,
                  mode: Literal["append", "overwrite"], txns: tuple[Txn, ...], operation: str,
                  description: str | None, extra: dict[str, Any] | None,
                  compare: bool = True) -> WriteResult:
    """Commit staged ``files`` (add-action entries) to ``name`` with the markers ``txns``;
    the caller has checked the markers are not applied yet."""
    from tarmac.lake.lake import WriteResult

    uri = lake.uri(name)
    actions = [action_from_dict(f) for f in files]
    rows = sum(rows_in(f) for f in files)
    with lake.ledger.ensure_run(f"lake.{mode}", params={"table": name}) as run:
        existing = lake.latest(name)
        if existing is not None and mode == "overwrite" and compare and \
                _unchanged(lake, name, existing, files, rows, schema):
            version = existing.version()
            lake.ledger.commit("lake.unchanged", name,
                               {"version": version, "operation": operation, "rows": rows,
                                **(extra or {})}, run=run)
            return WriteResult(name, version, "UNCHANGED", 0, 0, 0, run.id)
        token = str(uuid.uuid4())
        if existing is None:
            props = lake._props(run, txns, operation=operation, token=token,
                                metrics={"num_added_rows": rows, "num_deleted_rows": 0})
            create_table_with_add_actions(uri, Schema.from_arrow(schema), actions,
                                          mode="append", name=name, description=description,
                                          commit_properties=props,
                                          storage_options=lake.storage_options)
            committed = DeltaTable(uri, version=0, storage_options=lake.storage_options)
            new_cols: list[str] = []
            removed = 0
        else:
            current = pa.schema(existing.schema().to_arrow())
            try:
                target, new_cols = plan_schema(name, current, schema)
            except SchemaConflictError:
                if mode != "overwrite":
                    raise
                # a full reload under a changed contract: the table takes the new schema
                # (an empty overwrite first; the data commit below carries the txn marker,
                # so a crash in between is finished by the rerun)
                cleared = {"num_added_rows": 0, "num_deleted_rows": row_count(existing)}
                write_deltalake(existing, schema.empty_table(), mode="overwrite",
                                schema_mode="overwrite",
                                commit_properties=lake._props(run, metrics=cleared),
                                storage_options=lake.storage_options)
                target, new_cols, mode = schema, [], "append"
            if new_cols:
                existing.alter.add_columns(
                    [f for f in Schema.from_arrow(target).fields if f.name in new_cols])
            removed = row_count(existing) if mode == "overwrite" else 0
            props = lake._props(run, txns, operation=operation, token=token,
                                metrics={"num_added_rows": rows, "num_deleted_rows": removed})
            before = existing.version()
            changes: list[AddAction | RemoveAction] = list(actions)
            existing.create_write_transaction(changes, mode=mode, schema=target,
                                              commit_properties=props)
            committed = lake._committed(name, existing, before, token)
        metrics = {"num_added_rows": rows, "num_deleted_rows": removed}
        return lake._record(name, snapshot(committed), operation, metrics, run, new_cols,
                            extra=extra)


def _unchanged(lake: Lake, name: str, existing: DeltaTable, files: list[dict[str, Any]],
               rows: int, schema: pa.Schema) -> bool:
    """True if the staged ``files`` hold exactly the current version's rows and schema."""
    current = pa.schema(existing.schema().to_arrow())
    if {f.name: f.type for f in current} != {f.name: f.type for f in schema} or \
            not lake.is_local or not plain(existing) or row_count(existing) != rows:
        return False
    root = lake._local_path(name)
    return same_rows([u.removeprefix("file://") for u in existing.file_uris()],
                     [f"{root}/{f['path']}" for f in files], sorted(schema.names))
