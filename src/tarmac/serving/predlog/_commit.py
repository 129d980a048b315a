"""One flush of one segment's records into the ``predictions`` table: exactly once, audited once.

The Delta commit carries the application-transaction marker ``predictions:<segment>`` at the
number of the segment's records the table then holds. Before committing, the marker says how
many are there already; a writer that crashed after its commit (but before it noted the fact)
is therefore never committed twice, whoever recovers it.

The commit is one implicit ledger run: its inputs are the model versions that made the
predictions (``model:NAME@V``), its output the table version, and its one audit record (the
lake write's) carries the count and a SHA-256 over the prediction ids of that flush.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from tarmac import faults
from tarmac.lake import Lake
from tarmac.ledger.chain import batch_digest
from tarmac.ledger.guard import internal
from tarmac.serving.predlog._record import to_table
from tarmac.serving.predlog._segment import app_id

TABLE = "predictions"


@dataclass(frozen=True)
class Committed:
    """What a segment flush did: rows newly in the table, and the table version (None if the
    table already held them)."""

    rows: int
    version: int | None


def committed_count(lake: Lake, segment: str, table: str = TABLE) -> int:
    """How many of ``segment``'s records ``table`` holds (its marker's version, else 0)."""
    return lake.transaction_version(table, app_id(segment)) or 0


def commit_segment(lake: Lake, segment: str, payloads: Sequence[bytes], total: int,
                   table: str = TABLE) -> Committed:
    """Commit ``payloads`` (the segment's records up to record number ``total``) unless the
    table already holds them; returns what was committed."""
    app = app_id(segment)
    if not payloads or lake.applied(table, (app, total)):
        return Committed(0, None)
    rows = to_table(payloads)
    faults.point("predlog.before_commit", segment=segment, rows=rows.num_rows)
    count, digest = batch_digest(rows.column("id").to_pylist())
    extra = {"segment": segment, "count": count, "ids_sha256": digest,
             "records": [total - count, total], "endpoints": _distinct(rows, "endpoint")}
    ledger = lake.ledger
    with ledger.run("predictions.flush", params={"segment": segment, "rows": count},
                    implicit=True) as run:
        for model, version in _models(rows):
            run.add_input(f"model:{model}", version)
        with internal("the prediction log"):  # the requests were checked (predict)
            result = lake.write(table, rows, txn=(app, total), extra=extra)
    faults.point("predlog.after_commit", segment=segment, version=result.version)
    if result.operation == "SKIPPED":
        return Committed(0, None)
    return Committed(count, result.version)


def _distinct(rows: pa.Table, column: str) -> list[str]:
    return sorted(str(v) for v in pc.unique(rows.column(column)).to_pylist())


def _models(rows: pa.Table) -> list[tuple[str, int]]:
    pairs = rows.select(["model", "version"]).group_by(["model", "version"]).aggregate([])
    return sorted(zip(pairs.column("model").to_pylist(), pairs.column("version").to_pylist(),
                      strict=True))
