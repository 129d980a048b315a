"""Reading back the commit plan a load saved in the catalog (its ``source_loads`` row), in the
current typed format (``tarmac.lake.commit.CommitPlan``) or in the untyped one older versions
of Tarmac wrote, so a load such a version staged and never finished (killed) is finished by
this one instead of blocking its stream."""

from __future__ import annotations

import base64
from typing import Any

import pyarrow as pa

from tarmac.errors import CommitPlanError
from tarmac.ingest import quarantine
from tarmac.lake import CommitPlan, TableCommit

PAYLOAD = ("source", "stream", "table", "seq", "cursor", "contract", "files", "reset_files",
           "rows_total", "stats", "owner", "tags", "column_tags")


def read_plan(data: Any, *, where: str) -> CommitPlan:
    """The plan stored as ``data``; ``CommitPlanError`` naming ``where`` if it is damaged."""
    if isinstance(data, dict) and "format" not in data and "load_id" in data:
        return _upgrade(data, where)
    return CommitPlan.from_dict(data, where=where)


def _upgrade(data: dict[str, Any], where: str) -> CommitPlan:
    """An older Tarmac's plan dict as a ``CommitPlan`` with the same steps and marker."""
    try:
        source, table = data["source"], data["table"]
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(data["schema"])))
        extra = {"source": source, "load_id": data["load_id"]}
        rejects = TableCommit(quarantine.TABLE, quarantine.SCHEMA,
                              tuple(data["quarantine_files"]), operation="INGEST", extra=extra,
                              description="records loads rejected, with the reason")
        if data["merge_file"]:
            rows = TableCommit(table, schema, mode="merge", merge_file=data["merge_file"],
                               keys=tuple(data["keys"]))
        else:
            rows = TableCommit(table, schema, tuple(data["data_files"]),
                               mode="overwrite" if data["mode"] == "overwrite" else "append",
                               operation="INGEST", description=data.get("description"),
                               extra=extra)
        marker = (f"tarmac.ingest/{source}/{data['stream']}", int(data["seq"]))
        return CommitPlan(data["load_id"], (marker,), (rejects, rows), "ingest.load", source,
                          payload={k: data.get(k) for k in PAYLOAD},
                          cleanup=(data["staging"],) if data.get("staging") else ())
    except KeyError as exc:
        raise CommitPlanError(f"{where} (written by an older Tarmac) is missing field "
                              f"{exc.args[0]!r}") from None
    except (TypeError, ValueError, pa.ArrowInvalid) as exc:
        raise CommitPlanError(f"{where} (written by an older Tarmac) cannot be read: "
                              f"{exc}") from None
