"""The atomic commit path: stage, save a plan, commit with markers, record, replay.

Anything that must land in the lake exactly once (a batch load, a stream sink's micro-batch, a
prediction-log flush) goes through the same five steps:

1. **Stage.** Rows are written as *uncommitted* Parquet files in each table's folder
   (``Committer.stage``): no reader sees them, and a crash leaves only files no version
   references (vacuum removes them).
2. **Plan.** What to commit is described by a ``CommitPlan`` and saved somewhere durable
   *before* anything is committed (the ingest stores it in its load's catalog row;
   ``CommitPlan.save`` writes it to a file atomically).
3. **Commit the data.** Each ``TableCommit`` of the plan becomes one atomic Delta commit that
   carries every one of the plan's application-transaction markers ``(app_id, version)``:
   one per stream, or one per partition of a topic (``Lake.applied``).
4. **Record.** The caller's catalog change (cursor or offsets, counts, retiring the plan) and
   the audit record (``plan.action`` on ``plan.target``, with ``plan_id``) are written in ONE
   catalog transaction.
5. **Replay.** After a crash anywhere, applying the saved plan again finishes it: a table step
   whose markers the table already holds is skipped (``SKIPPED``), and the catalog step is
   skipped if an audit record of this plan exists. The lake ends as if the plan ran once.

A commit whose markers are only partly in the table is refused (``WriteConflictError``):
another commit covered part of the same work, so neither writing nor skipping would be right.
Give one plan only markers that advance together, each past its last committed version.

Example: a flusher committing rows of two partitions in one Delta commit, exactly once::

    from tarmac.lake import Committer

    c = Committer(p.lake)
    c.replay(".tarmac/plans/predictions.json", change=save_offsets)  # finish a crashed flush
    c.write("predictions", batches, markers=[("log/p0", 41), ("log/p1", 17)],
            action="predictions.flush", target="churn", ids=request_ids,
            change=save_offsets, plan_path=".tarmac/plans/predictions.json")

where ``save_offsets(conn, outcome)`` writes the offsets in the catalog transaction (it can
read them back from ``outcome.plan.markers`` or ``outcome.plan.payload`` on a replay).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from tarmac import faults
from tarmac.catalog import all_items, now_us
from tarmac.errors import CommitPlanError, TarmacError, UsageError
from tarmac.lake import _markers
from tarmac.lake._arrow import conform_table
from tarmac.lake._markers import Txn, Txns
from tarmac.lake.staging import action_to_dict, rows_in

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from tarmac.catalog import AuditRecord
    from tarmac.lake.lake import Lake, WriteResult

__all__ = ["CommitOutcome", "CommitPlan", "Committer", "TableCommit"]

FORMAT = 1  # the saved plan's layout; bumped when a field changes meaning
CommitMode = Literal["append", "overwrite", "merge"]
Change = Callable[["Connection", "CommitOutcome"], None]
Details = Callable[["CommitOutcome"], dict[str, Any]]
AfterStep = Callable[["TableCommit", "WriteResult | None"], None]
REPLAY_MARGIN_US = 3_600_000_000  # clock skew tolerated when looking for a plan's audit record


@dataclass(frozen=True)
class TableCommit:
    """One table's part of a plan: staged files to add (``append`` or ``overwrite``), or a
    Parquet file of rows to upsert by ``keys`` (``merge``; a repeated key: the last row wins).

    ``files`` are add-action entries as ``tarmac.lake.staging.action_to_dict`` makes them (and
    ``Committer.stage`` returns); ``schema`` is the schema their rows meet; ``operation``,
    ``description`` and ``extra`` go into the table's history and its ``lake.*`` audit record.
    A step with no files and no merge file commits nothing, except an overwrite (which empties
    the table, creating it if needed).
    """

    table: str
    schema: pa.Schema
    files: tuple[dict[str, Any], ...] = ()
    mode: CommitMode = "append"
    merge_file: str | None = None
    keys: tuple[str, ...] = ()
    operation: str = "WRITE"
    description: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from tarmac.lake.lake import is_table_name

        object.__setattr__(self, "files", tuple(self.files))
        object.__setattr__(self, "keys", tuple(self.keys))
        if not is_table_name(self.table):
            raise UsageError(f"invalid table name {self.table!r} in a commit plan")
        if self.mode not in ("append", "overwrite", "merge"):
            raise UsageError(f"table '{self.table}': unknown commit mode {self.mode!r}: "
                             "expected append, overwrite or merge")
        if (self.mode == "merge") != (self.merge_file is not None) or \
                (self.mode == "merge" and (not self.keys or self.files)):
            raise UsageError(f"table '{self.table}': a merge step takes a merge_file and keys "
                             "(and no staged files); other modes take neither")

    @property
    def rows(self) -> int:
        """Rows this step adds (staged files) or upserts (the merge file)."""
        if self.merge_file is not None:
            return int(pq.ParquetFile(self.merge_file).metadata.num_rows)
        return sum(rows_in(f) for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "mode": self.mode, "files": list(self.files),
                "merge_file": self.merge_file, "keys": list(self.keys),
                "schema": base64.b64encode(self.schema.serialize().to_pybytes()).decode(),
                "operation": self.operation, "description": self.description,
                "extra": dict(self.extra)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableCommit:
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(data["schema"])))
        return cls(table=data["table"], schema=schema, files=tuple(data["files"]),
                   mode=data["mode"], merge_file=data["merge_file"], keys=tuple(data["keys"]),
                   operation=data["operation"], description=data["description"],
                   extra=dict(data["extra"]))


@dataclass(frozen=True)
class CommitPlan:
    """Everything needed to finish a commit after a crash, saved before anything is committed.

    ``id`` names the plan (the audit record carries it as ``plan_id``); ``markers`` are the
    application-transaction markers every Delta commit of the plan carries; ``commits`` are
    the table steps, applied in order; ``action``/``target``/``details`` make the audit record;
    ``payload`` is the caller's own JSON (a cursor, offsets, counts) for rebuilding its catalog
    change on a replay; ``cleanup`` lists folders to delete once the plan is applied.
    """

    id: str
    markers: tuple[Txn, ...]
    commits: tuple[TableCommit, ...]
    action: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)
    cleanup: tuple[str, ...] = ()
    created_us: int = field(default_factory=now_us)

    def __post_init__(self) -> None:
        object.__setattr__(self, "markers", _markers.markers(list(self.markers)))
        object.__setattr__(self, "commits", tuple(self.commits))
        object.__setattr__(self, "cleanup", tuple(str(c) for c in self.cleanup))
        if not self.id or not self.action or not self.target:
            raise UsageError("a commit plan needs an id, an audit action and a target")
        if not self.markers:
            raise UsageError(f"commit plan {self.id}: at least one transaction marker is "
                             "needed, or a replay could not tell what is already committed")
        tables = [c.table for c in self.commits]
        if not tables or len(set(tables)) != len(tables):
            raise UsageError(f"commit plan {self.id}: give one step per table (got "
                             f"{', '.join(tables) or 'none'})")

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-able data (``from_dict`` reads it back)."""
        return {"format": FORMAT, "id": self.id, "markers": [list(m) for m in self.markers],
                "commits": [c.to_dict() for c in self.commits], "action": self.action,
                "target": self.target, "details": self.details, "payload": self.payload,
                "cleanup": list(self.cleanup), "created_us": self.created_us}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "the commit plan") -> CommitPlan:
        """A plan from ``to_dict`` data; ``CommitPlanError`` naming ``where`` if it is not one."""
        if not isinstance(data, dict):
            raise CommitPlanError(f"{where} is not a commit plan: expected a JSON object, got "
                                  f"{type(data).__name__}")
        if data.get("format") != FORMAT:
            raise CommitPlanError(f"{where} has plan format {data.get('format')!r}; this "
                                  f"version of Tarmac reads format {FORMAT}")
        try:
            return cls(id=data["id"], markers=tuple(tuple(m) for m in data["markers"]),
                       commits=tuple(TableCommit.from_dict(c) for c in data["commits"]),
                       action=data["action"], target=data["target"],
                       details=dict(data["details"]), payload=dict(data["payload"]),
                       cleanup=tuple(data["cleanup"]), created_us=int(data["created_us"]))
        except KeyError as exc:
            raise CommitPlanError(f"{where} is missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError, pa.ArrowInvalid, TarmacError) as exc:
            raise CommitPlanError(f"{where} is not a valid commit plan: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=str)

    @classmethod
    def from_json(cls, text: str, *, where: str = "the commit plan") -> CommitPlan:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CommitPlanError(f"{where} is not JSON ({exc}); it may have been cut short "
                                  "or edited by hand") from None
        return cls.from_dict(data, where=where)

    def save(self, path: str | Path) -> None:
        """Write the plan to ``path`` atomically (a temporary file, synced, then renamed): a
        crash leaves the old file or the new one, never half of one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> CommitPlan:
        """The plan saved at ``path``; ``CommitPlanError`` naming the file if it is damaged."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise CommitPlanError(f"commit plan file {path} is not text") from None
        return cls.from_json(text, where=f"commit plan file {path}")


@dataclass(frozen=True)
class CommitOutcome:
    """What applying a plan did: per table the write's result (``operation`` ``SKIPPED`` if the
    table held the commit already, ``UNCHANGED`` for an overwrite with the same rows; None if
    the step had nothing to commit) and the table's version after it (None: no table);
    ``recorded`` is False when the catalog step had been made before (a replay); ``audit`` is
    the audit record written (None then)."""

    plan: CommitPlan
    results: dict[str, WriteResult | None]
    versions: dict[str, int | None]
    recorded: bool = True
    audit: AuditRecord | None = None

    def unchanged(self, table: str) -> bool:
        """True if ``table``'s step was an overwrite with exactly the rows it held."""
        r = self.results.get(table)
        return r is not None and r.operation == "UNCHANGED"

    @property
    def replayed(self) -> bool:
        """True if no table step made a new commit (every one was there already, or empty)."""
        return all(r is None or r.operation in ("SKIPPED", "UNCHANGED")
                   for r in self.results.values())


class Committer:
    """Applies commit plans to a lake exactly once (see the module docstring)."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def stage(self, table: str, data: pa.Table | pa.RecordBatch | Iterable[Any], *,
              schema: pa.Schema | None = None, tag: str | None = None) -> TableCommit:
        """Write ``data`` (a table, a batch, or an iterable of them) as uncommitted files of
        ``table``, conformed to ``schema`` (default: the first batch's); returns the append
        step to put in a plan. Nothing is visible until the plan is applied."""
        parts = [data] if isinstance(data, pa.Table | pa.RecordBatch) else data
        stager = self.lake.stage(table, tag or uuid.uuid4().hex)
        try:
            for part in parts:
                t = pa.Table.from_batches([part]) if isinstance(part, pa.RecordBatch) else part
                if not isinstance(t, pa.Table):
                    raise UsageError(f"stage '{table}': expected Arrow tables or record batches, "
                                     f"got {type(part).__name__}")
                schema = schema or t.schema
                stager.write(conform_table(t, schema))
            files = tuple(action_to_dict(a) for a in stager.close())
        except BaseException:
            stager.abort()
            raise
        if schema is None:
            raise UsageError(f"stage '{table}': no rows and no schema given")
        return TableCommit(table, schema, files)

    def apply(self, plan: CommitPlan, *, change: Change | None = None,
              details: Details | None = None, after_step: AfterStep | None = None
              ) -> CommitOutcome:
        """Apply ``plan`` once: each table step (skipped where the table holds its markers),
        then ``change(conn, outcome)`` and the audit record in one catalog transaction (skipped
        if this plan's audit record exists: its catalog step was made), then the cleanup.

        ``details(outcome)`` gives audit details to add to ``plan.details`` (default: the
        versions made); ``after_step(step, result)`` runs after each table step (whether it
        committed or not). Safe to call again with the same plan after a crash anywhere.
        """
        lake = self.lake
        results: dict[str, WriteResult | None] = {}
        versions: dict[str, int | None] = {}
        for step in plan.commits:
            result = self._commit(step, plan.markers)
            results[step.table] = result
            versions[step.table] = result.version if result is not None else (
                lake.version(step.table) if lake.exists(step.table) else None)
            faults.point("commit.after_step", plan=plan, table=step.table, result=result)
            if after_step is not None:
                after_step(step, result)
        outcome = CommitOutcome(plan, results, versions)
        if outcome.replayed and self._recorded(plan):
            outcome = replace(outcome, recorded=False)
        else:
            audit = {**plan.details, **(details(outcome) if details else {"versions": versions}),
                     "plan_id": plan.id}

            def catalog_change(conn: Connection) -> None:
                if change is not None:
                    change(conn, outcome)

            record = lake.ledger.commit(plan.action, plan.target, audit, change=catalog_change,
                                        run=lake.ledger.current_run)
            outcome = replace(outcome, audit=record)
        faults.point("commit.after_catalog", plan=plan)
        for step in plan.commits:
            if outcome.unchanged(step.table):  # never committed: nobody will reference them
                lake.discard_staged(step.table, list(step.files))
        for folder in plan.cleanup:
            shutil.rmtree(folder, ignore_errors=True)
        return outcome

    def commit(self, plan: CommitPlan, *, path: str | Path, change: Change | None = None,
               details: Details | None = None) -> CommitOutcome:
        """Save ``plan`` at ``path``, apply it, then remove the file (``replay`` finishes it if
        the process dies in between). Refused if a plan is already waiting at ``path``."""
        path = Path(path)
        if path.exists():
            raise UsageError(f"a commit plan is already waiting at {path}: replay it first "
                             "(Committer.replay) so its commit is not lost or doubled")
        plan.save(path)
        outcome = self.apply(plan, change=change, details=details)
        path.unlink(missing_ok=True)
        return outcome

    def replay(self, path: str | Path, *, change: Change | None = None,
               details: Details | None = None) -> CommitOutcome | None:
        """Finish the plan a crashed process left at ``path`` (None if there is none); the
        steps it had made are skipped. ``CommitPlanError`` names the file if it is damaged."""
        path = Path(path)
        if not path.exists():
            return None
        outcome = self.apply(CommitPlan.load(path), change=change, details=details)
        path.unlink(missing_ok=True)
        return outcome

    def write(self, table: str, data: pa.Table | pa.RecordBatch | Iterable[Any], *,
              markers: Txns, action: str, target: str, details: dict[str, Any] | None = None,
              ids: Iterable[Any] | None = None, payload: dict[str, Any] | None = None,
              change: Change | None = None, plan_path: str | Path | None = None,
              schema: pa.Schema | None = None) -> CommitOutcome:
        """Stage ``data`` into ``table`` and commit it exactly once with ``markers``, then
        ``change`` and one audit record (``action`` on ``target`` with ``details``; with
        ``ids``, their ``count`` and ``ids_sha256`` as ``Ledger.commit_batch`` records them).

        With ``plan_path`` the plan is saved there first (call ``replay(plan_path)`` at start
        up); without it, a crash before the catalog step loses that step (the data is kept,
        and a retry with the same markers is skipped). Markers already all in the table: the
        data is not staged again and the result's operation is ``SKIPPED``.
        """
        txns = _markers.markers(markers)
        if self.lake.applied(table, txns):
            done = self.lake._skipped(table)
            return CommitOutcome(self._plan(table, (), txns, action, target, details, payload,
                                            schema or pa.schema([])),
                                 {table: done}, {table: done.version}, recorded=False)
        step = self.stage(table, data, schema=schema)
        if ids is not None:
            from tarmac.ledger.chain import batch_digest

            count, digest = batch_digest(ids)
            details = {**(details or {}), "count": count, "ids_sha256": digest}
        plan = self._plan(table, step.files, txns, action, target, details, payload, step.schema)
        if plan_path is not None:
            return self.commit(plan, path=plan_path, change=change)
        return self.apply(plan, change=change)

    # -- internals ------------------------------------------------------------------------------

    def _plan(self, table: str, files: tuple[dict[str, Any], ...], txns: tuple[Txn, ...],
              action: str, target: str, details: dict[str, Any] | None,
              payload: dict[str, Any] | None, schema: pa.Schema) -> CommitPlan:
        return CommitPlan(uuid.uuid4().hex, txns, (TableCommit(table, schema, files),), action,
                          target, dict(details or {}), dict(payload or {}))

    def _commit(self, step: TableCommit, txns: tuple[Txn, ...]) -> WriteResult | None:
        lake = self.lake
        if step.merge_file is not None:
            return lake.write(step.table, pq.read_table(step.merge_file), mode="merge",
                              keys=list(step.keys), txn=txns, on_duplicate="last",
                              description=step.description)
        if step.files or step.mode == "overwrite":
            mode: Literal["append", "overwrite"] = "overwrite" if step.mode == "overwrite" \
                else "append"
            return lake.commit_files(step.table, list(step.files), step.schema, mode=mode,
                                     txn=txns, operation=step.operation,
                                     description=step.description, extra=step.extra or None)
        return None

    def _recorded(self, plan: CommitPlan) -> bool:
        """True if the audit log holds this plan's record (its catalog step was made): looked
        up among the target's records of the plan's action since the plan was made."""
        catalog = self.lake.ledger.catalog
        since = plan.created_us - REPLAY_MARGIN_US
        for record in all_items(lambda c: catalog.list_audit(
                since_us=since, target=plan.target, action=plan.action, limit=500, cursor=c)):
            try:
                if json.loads(record.details).get("plan_id") == plan.id:
                    return True
            except (ValueError, AttributeError):
                continue
        return False
