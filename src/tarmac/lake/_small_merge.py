"""Upsert a few rows into a big table with memory bounded by the rows, not the table.

delta-rs MERGE runs a DataFusion join whose memory grows with the target files it scans: 200
rows merged into 10M took ~800 MiB. This path (written by hand: no library offers it) does what
an upsert by one key needs and no more:

1. pick the files whose key statistics admit one of the incoming keys;
2. read only the key column of each, and leave every file without a hit untouched;
3. rewrite the files with hits batch by batch, dropping the rows whose key is incoming;
4. write the incoming rows as one new file;
5. commit the removed and added files as ONE Delta transaction (atomic, conflict-checked).

It serves merges of up to ``MAX_SOURCE_ROWS`` rows on one key into plain local tables without
schema changes; everything else goes to delta-rs MERGE. Semantics equal
``when_matched_update_all().when_not_matched_insert_all()`` for tables whose key is unique.
"""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.transaction import AddAction, RemoveAction

from tarmac.lake._arrow import conform_table
from tarmac.lake._delta import plain
from tarmac.lake.staging import write_files

MAX_SOURCE_ROWS = 100_000
BATCH_ROWS = 65_536


def eligible(dt: DeltaTable, keys: list[str], source: pa.Table, *, new_columns: list[str],
             local: bool) -> bool:
    """True if this merge can take the bounded-memory path."""
    if not local or len(keys) != 1 or new_columns or not 0 < len(source) <= MAX_SOURCE_ROWS:
        return False
    # writer features whose rules a hand-made commit would have to enforce itself
    if set(dt.protocol().writer_features or []) & {"appendOnly", "invariants",
                                                  "checkConstraints", "generatedColumns",
                                                  "identityColumns"}:
        return False
    key_type = source.schema.field(keys[0]).type
    return (pa.types.is_integer(key_type) or pa.types.is_string(key_type)) and plain(dt)


def merge(dt: DeltaTable, root: str, source: pa.Table, key: str, schema: pa.Schema,
          metadata: dict[str, Any], txn: list[Transaction] | None = None) -> dict[str, Any]:
    """Upsert ``source`` (unique on ``key``, conformed to ``schema``) and commit with
    ``metadata`` (plus the metrics, under ``tarmac.metrics``); returns delta-rs-style metrics."""
    incoming = source.column(key).combine_chunks()
    actions = pa.table(dt.get_add_actions(flatten=True))
    adds: list[AddAction] = []
    removes: list[RemoveAction] = []
    updated = scanned = 0
    now_ms = int(time.time() * 1000)
    for i in _candidates(actions, key, incoming):
        path = actions["path"][i].as_py()
        local = os.path.join(root, unquote(path))
        scanned += 1
        keys = pq.read_table(local, columns=[key])[key].cast(incoming.type)  # views -> plain
        hits = int(pc.sum(pc.is_in(keys, value_set=incoming)).as_py() or 0)
        if hits == 0:
            continue  # the statistics admitted it, but no key matches: the file stays
        updated += hits
        adds.extend(_rewrite(local, root, key, incoming, schema))
        removes.append(RemoveAction(path=path, data_change=True, deletion_timestamp=now_ms,
                                    size=actions["size_bytes"][i].as_py(), partition_values={}))
    adds.extend(write_files(root, [source], schema))
    metrics = {"num_source_rows": len(source), "num_target_rows_updated": updated,
               "num_target_rows_inserted": len(source) - updated, "num_target_rows_deleted": 0,
               "num_target_files_scanned": scanned, "num_target_files_removed": len(removes),
               "num_target_files_added": len(adds), "bounded_memory": True}
    props = CommitProperties(custom_metadata={**metadata, "tarmac.metrics": metrics},
                             app_transactions=txn)
    dt.create_write_transaction([*adds, *removes], mode="append", schema=schema,
                                commit_properties=props)
    return metrics


def _candidates(actions: pa.Table, key: str, incoming: pa.Array) -> list[int]:
    """Indexes of the files whose [min, max] of ``key`` holds at least one incoming key."""
    lo_col, hi_col = f"min.{key}", f"max.{key}"
    if lo_col not in actions.column_names or hi_col not in actions.column_names:
        return list(range(len(actions)))
    keys = np.sort(incoming.to_numpy(zero_copy_only=False))
    out = []
    for i, (lo, hi) in enumerate(zip(actions[lo_col].to_pylist(), actions[hi_col].to_pylist(),
                                     strict=True)):
        if lo is None or hi is None:
            out.append(i)
            continue
        j = np.searchsorted(keys, lo, side="left")
        if j < len(keys) and keys[j] <= hi:
            out.append(i)
    return out


def _rewrite(local: str, root: str, key: str, incoming: pa.Array,
             schema: pa.Schema) -> list[AddAction]:
    """The file without the incoming keys' rows, streamed; no file if no row survives."""
    reader = pq.ParquetFile(local, pre_buffer=False, buffer_size=1 << 20)

    def survivors() -> Any:
        for batch in reader.iter_batches(batch_size=BATCH_ROWS):
            # files other engines wrote may hold view types: conform before computing on them
            table = conform_table(pa.Table.from_batches([batch]), schema)
            yield table.filter(pc.invert(pc.is_in(table[key], value_set=incoming)))

    return write_files(root, survivors(), schema)
