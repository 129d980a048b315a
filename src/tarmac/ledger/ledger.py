"""The ledger: the one choke point every state change goes through.

A change is committed with ``Ledger.commit``: the caller's catalog change, the lineage edges of
the current run and an audit record land in one catalog transaction, or none of them do. Runs
are opened with ``Ledger.run`` (explicitly, or implicitly by a lake write outside any run); a run
that raises is recorded as failed with its error, and a run whose process died is found and
marked failed the next time the project is opened on that host.

High-volume writers never take the audit lock per event: ``Ledger.commit_batch`` appends one
record per commit with the batch's count and a SHA-256 over its ids, and ``Ledger.append``
appends many records under one lock, in one transaction.

Example::

    with p.ledger.run("nightly_summary", params={"region": "north"}) as run:
        p.lake.write("summary", p.sql("SELECT ..."))     # inputs and outputs recorded
    p.ledger.verify().ok
"""

from __future__ import annotations

import contextvars
import getpass
import os
import socket
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from tarmac.catalog import AuditRecord, Catalog, DatasetVersion, Page, Run, all_items, now_us
from tarmac.catalog import store as cat
from tarmac.ledger.chain import (
    GENESIS,
    Verification,
    batch_digest,
    canonical,
    make_record,
    verify,
)
from tarmac.ledger.lineage import Direction, LineageNode, lineage, openlineage_events

_current_run: contextvars.ContextVar[ActiveRun | None] = contextvars.ContextVar(
    "tarmac_current_run", default=None
)


def current_actor() -> str:
    """Who is acting: ``TARMAC_USER``, else the operating-system user."""
    user = os.environ.get("TARMAC_USER", "").strip()
    if user:
        return user
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


@dataclass(frozen=True)
class AuditEntry:
    """One audit record to append with ``Ledger.append``: what was done to what, by whom
    (``actor`` defaults to the current actor), with details (secrets are masked)."""

    action: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)
    actor: str | None = None


@dataclass
class ActiveRun:
    """A run in progress. Lake reads and writes inside it attach themselves as lineage."""

    id: str
    job: str
    actor: str
    implicit: bool = False
    finished: bool = False
    _pending_inputs: list[DatasetVersion] = field(default_factory=list)
    outputs: list[DatasetVersion] = field(default_factory=list)

    def add_input(self, dataset: str, version: int | None) -> None:
        """Record that this run read ``dataset@version`` (written with the next commit)."""
        dv = DatasetVersion(dataset, version)
        if dv not in self._pending_inputs:
            self._pending_inputs.append(dv)


class Ledger:
    """Lineage and the tamper-evident audit trail over a ``Catalog``."""

    def __init__(self, catalog: Catalog, *, namespace: str = "tarmac",
                 lake_uri: str = "lake", lake_root: str | None = None) -> None:
        self.catalog = catalog
        self.namespace = namespace
        self.lake_uri = lake_uri  # the OpenLineage dataset namespace (secrets masked)
        self.lake_root = lake_root  # where the lake is: an empty chain is checked against it
        self.host = socket.gethostname()
        self.reap()

    @property
    def actor(self) -> str:
        return current_actor()

    # -- runs -------------------------------------------------------------------------------

    @property
    def current_run(self) -> ActiveRun | None:
        """The run the calling code is inside, if any."""
        return _current_run.get()

    @contextmanager
    def run(self, job: str, *, params: dict[str, Any] | None = None,
            implicit: bool = False) -> Iterator[ActiveRun]:
        """Open a run; on exit it is marked succeeded, or failed with the error if it raised."""
        active = ActiveRun(id=str(uuid.uuid4()), job=job, actor=self.actor, implicit=implicit)
        with self.catalog.write() as conn:
            cat.insert_run(conn, id=active.id, job=job, status="running", actor=active.actor,
                           started_at=now_us(), params=params or {}, host=self.host,
                           pid=os.getpid())
        token = _current_run.set(active)
        try:
            yield active
        except BaseException as exc:
            _current_run.reset(token)
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self._finish(active, "failed", error=error)
            raise
        _current_run.reset(token)
        self._finish(active, "succeeded")

    @contextmanager
    def ensure_run(self, job: str, *, params: dict[str, Any] | None = None) -> Iterator[ActiveRun]:
        """The current run if there is one, else a new implicit run around this one operation."""
        active = _current_run.get()
        if active is not None:
            yield active
            return
        with self.run(job, params=params, implicit=True) as new:
            yield new

    def _finish(self, active: ActiveRun, status: str, *, error: str | None = None) -> None:
        if active.finished and status == "succeeded":
            return  # an implicit run already closed inside its one commit
        with self.catalog.write() as conn:
            self._flush_inputs(conn, active)
            cat.finish_run(conn, active.id, status=status, ended_at=now_us(), error=error)
            if status == "failed" or not active.implicit:
                details: dict[str, Any] = {"run_id": active.id,
                                           "outputs": [str(o) for o in active.outputs]}
                if error:
                    details["error"] = error[:2000]
                self._append(conn, f"run.{status}", active.job, details, actor=active.actor)

    def reap(self) -> list[str]:
        """Mark runs whose process on this host is gone as failed; returns their ids."""
        with self.catalog.engine.connect() as conn:
            candidates = cat.running_runs(conn, self.host)
        dead = [rid for rid, pid in candidates if not _pid_alive(pid)]
        for rid in dead:
            with self.catalog.write() as conn:
                cat.finish_run(conn, rid, status="failed", ended_at=now_us(),
                               error="the process ended before the run finished "
                                     "(killed or crashed); nothing after its last commit landed")
                self._append(conn, "run.failed", rid, {"run_id": rid, "reason": "process died"})
        return dead

    # -- the choke point --------------------------------------------------------------------

    def commit(
        self,
        action: str,
        target: str,
        details: dict[str, Any] | None = None,
        *,
        change: Callable[[Connection], None] | None = None,
        run: ActiveRun | None = None,
        output: DatasetVersion | None = None,
    ) -> AuditRecord:
        """Apply ``change`` to the catalog and append the audit record, in one transaction.

        With ``run``, its pending input edges and ``output`` are written in the same
        transaction, and the run id goes into the audit details.
        """
        details = dict(details or {})
        with self.catalog.write() as conn:
            if change is not None:
                change(conn)
            if run is not None:
                details.setdefault("run_id", run.id)
                self._flush_inputs(conn, run)
                if output is not None:
                    new = output not in run.outputs  # a version is written once
                    cat.add_edge(conn, run.id, "output", output.dataset, output.version, new=new)
                    run.outputs.append(output)
                if run.implicit and not run.finished:
                    # a lone write's run ends with its commit: one transaction fewer per write
                    cat.finish_run(conn, run.id, status="succeeded", ended_at=now_us())
                    run.finished = True
            return self._append(conn, action, target, details)

    def commit_batch(
        self,
        action: str,
        target: str,
        ids: Iterable[Any],
        details: dict[str, Any] | None = None,
        *,
        change: Callable[[Connection], None] | None = None,
        run: ActiveRun | None = None,
        output: DatasetVersion | None = None,
    ) -> AuditRecord:
        """``commit`` for a high-volume writer: ONE audit record for a whole batch, carrying the
        batch's ``count`` and ``ids_sha256`` (``chain.batch_digest`` over ``ids`` in order), so
        a flush of 10,000 predictions costs one lock and one record, and anyone holding the ids
        can prove the record stands for exactly them.

        Example::

            rec = p.ledger.commit_batch("predictions.flush", "churn", request_ids)
            json.loads(rec.details)["count"]      # len(request_ids)
        """
        count, digest = batch_digest(ids)
        merged = {**(details or {}), "count": count, "ids_sha256": digest}
        return self.commit(action, target, merged, change=change, run=run, output=output)

    def append(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append many audit records in one catalog transaction: the audit lock is taken once,
        the chain head read once, and the records inserted in one statement. All of them land,
        chained in the order given, or none do.

        Example::

            p.ledger.append([AuditEntry("access.read", t, {"rows": n}) for t, n in reads])
        """
        if not entries:
            return []
        actor = self.actor
        with self.catalog.write() as conn:
            head = cat.audit_head(conn)
            seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
            now = now_us()
            records = []
            for entry in entries:
                record = make_record(seq, now, entry.actor or actor, entry.action, entry.target,
                                     canonical(entry.details), prev)
                records.append(record)
                seq, prev = seq + 1, record.hash
            cat.insert_audit_many(conn, records)
        return records

    def _flush_inputs(self, conn: Connection, run: ActiveRun) -> None:
        for dv in run._pending_inputs:
            cat.add_edge(conn, run.id, "input", dv.dataset, dv.version)
        run._pending_inputs.clear()

    def _append(self, conn: Connection, action: str, target: str, details: dict[str, Any],
                *, actor: str | None = None) -> AuditRecord:
        head = cat.audit_head(conn)
        seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
        record = make_record(seq, now_us(), actor or self.actor, action, target,
                             canonical(details), prev)
        cat.insert_audit(conn, record)
        return record

    # -- reading ----------------------------------------------------------------------------

    def audit(self, *, since_us: int | None = None, actor: str | None = None,
              target: str | None = None, action: str | None = None, limit: int = 100,
              cursor: str | None = None) -> Page[AuditRecord]:
        """Audit records, newest first, filtered and paginated."""
        return self.catalog.list_audit(since_us=since_us, actor=actor, target=target,
                                       action=action, limit=limit, cursor=cursor)

    def verify(self, *, anchor: tuple[int, str] | None = None) -> Verification:
        """Check the whole chain; if broken, ``problem`` names the first bad record.

        An empty chain is only intact if the lake holds no table Tarmac wrote: otherwise the
        records of those writes are somewhere else (a catalog re-pointed at a new database)."""
        result = verify(self.catalog.iter_audit(), anchor=anchor)
        if result.ok and result.records == 0 and self.lake_root is not None:
            from tarmac.catalog.lake_check import commit_runs, lake_tables

            written = [n for n in lake_tables(self.lake_root) if commit_runs(self.lake_root, n)]
            if written:
                return Verification(
                    False, 0, None, None, bad_seq=1,
                    problem=f"the audit chain is empty but the lake holds {len(written)} "
                            f"table(s) Tarmac wrote ({', '.join(written[:5])}"
                            f"{', ...' if len(written) > 5 else ''}): their records are in "
                            "another catalog (copy it with `tarmac catalog copy`)")
        return result

    def runs(self, *, job: str | None = None, status: str | None = None, limit: int = 100,
             cursor: str | None = None) -> Page[Run]:
        return self.catalog.list_runs(job=job, status=status, limit=limit, cursor=cursor)

    def get_run(self, run_id: str) -> Run | None:
        return self.catalog.get_run(run_id)

    def lineage(self, table: str, *, direction: Direction = "upstream",
                depth: int = 5) -> LineageNode:
        """The runs and table versions upstream (or downstream) of a table, as a tree."""
        return lineage(self.catalog, table, direction=direction, depth=depth)

    def has_lineage(self, name: str, *, version: int | None = None) -> bool:
        """Whether any run read or wrote ``name`` (``version``: that version exactly), e.g.
        ``model:churn`` at version 3 or ``training_set:risk``. What ``tarmac lineage`` checks
        before drawing a model's or a training set's tree.

        Example: ``p.ledger.has_lineage("model:churn", version=2)``
        """
        return any(self.catalog.runs_touching(name, role, limit=1, version=version,
                                              exact=version is not None)
                   for role in ("output", "input"))

    def openlineage(self, table: str | None = None) -> list[dict[str, Any]]:
        """OpenLineage run events for the runs that read or wrote ``table`` (all if None)."""
        if table is None:
            runs = list(all_items(lambda c: self.catalog.list_runs(limit=1000, cursor=c)))
        else:
            ids = set(self.catalog.runs_touching(table, "output")) | set(
                self.catalog.runs_touching(table, "input"))
            runs = self.catalog.get_runs(sorted(ids))
        return openlineage_events(runs, namespace=self.namespace, lake_uri=self.lake_uri)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed, not yet reaped by its parent) is not a live run
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
