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

import contextlib
import contextvars
import getpass
import hmac
import json
import logging
import os
import socket
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection

from tarmac.catalog import AuditRecord, Catalog, DatasetVersion, Page, Run, all_items, now_us
from tarmac.catalog import store as cat
from tarmac.catalog.governed import validation_rows
from tarmac.errors import AuditChainError, UsageError
from tarmac.ledger.anchoring import Anchoring
from tarmac.ledger.anchors import Anchor, AnchorFailed, AnchorPolicy
from tarmac.ledger.chain import (
    GENESIS,
    Verification,
    batch_digest,
    canonical,
    make_record,
    record_hash,
    verify,
)
from tarmac.ledger.export import (
    EXPORT_ACTION,
    AuditExport,
    Tally,
    check_format,
    staged_file,
    write_records,
)
from tarmac.ledger.guard import Guard
from tarmac.ledger.keys import ENV_VAR, AuditKey, KeySetting
from tarmac.ledger.lineage import Direction, LineageNode, lineage, openlineage_events
from tarmac.ledger.replay import (
    TOKEN_ACTIONS,
    USER_ACTIONS,
    VALIDATE_ACTION,
    GovernedState,
    claim_of,
    validation_problem,
)

_log = logging.getLogger(__name__)

#: the record a failed anchor publication leaves (one per attempt, naming each failed target)
ANCHOR_FAILED = "audit.anchor_failed"

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
                 lake_uri: str = "lake", lake_root: str | None = None,
                 key: KeySetting | None = None, anchors: AnchorPolicy | None = None) -> None:
        self.catalog = catalog
        self.namespace = namespace
        self.lake_uri = lake_uri  # the OpenLineage dataset namespace (secrets masked)
        self.lake_root = lake_root  # where the lake is: an empty chain is checked against it
        self.key_setting = key or KeySetting()  # the audit key (outside the catalog), if any
        self.anchors = anchors  # where the chain head is published, and how often
        self._chain_id: str | None = None  # the hash of record 1, once known
        self._opened_us = now_us()
        self._anchoring = Anchoring(anchors, namespace, opened_us=self._opened_us,
                                    record_failure=self._record_anchor_failure)
        self.host = socket.gethostname()
        self.guard = Guard()  # who may do what: ``tarmac.access.policy`` installs the answers
        with contextlib.suppress(UsageError):  # a keyed trail and no key here: the dead runs
            self.reap()                          # wait for a process that has the key

    @property
    def key(self) -> AuditKey | None:
        """The audit key new records are keyed with (None: unkeyed records)."""
        return self.key_setting.key

    def _signing_key(self, head: tuple[int, str, str | None, str | None] | None
                     ) -> AuditKey | None:
        """The key for the next record; refuses (``UsageError``) a configured key that cannot
        be read, an unkeyed record after a keyed one (it would read as a stripped MAC), and a
        key other than the one the trail is keyed with."""
        setting = self.key_setting
        if setting.problem:
            raise UsageError(f"cannot append to the audit trail: {setting.problem}",
                             hint=f"fix the key file, or unset {ENV_VAR} / `audit_key:`")
        if setting.key is None and head is not None and head[2] is not None:
            raise UsageError(
                f"the audit trail is keyed (record {head[0]} carries a MAC) but this process "
                "has no audit key: an unkeyed record after it would break the trail",
                hint=f"set {ENV_VAR}, or `audit_key: PATH` in tarmac.yaml, or put the key "
                     f"file at ~/.config/tarmac/{self.namespace}.key")
        if setting.key is not None and head is not None and head[3] is not None \
                and head[3] != setting.key.key_id:
            raise UsageError(
                f"the audit trail is keyed with key id {head[3]} but this process's audit key "
                f"({setting.key.source}) has id {setting.key.key_id}: wrong audit key",
                hint="use the key the trail was keyed with (rotating keys is not supported)")
        return setting.key

    @property
    def actor(self) -> str:
        """Who the audit trail names: the token's user when access is enforced, else
        ``TARMAC_USER`` or the operating-system user."""
        return self.guard.user or current_actor()

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
                record = self._append(conn, f"run.{status}", active.job, details,
                                      actor=active.actor)
        if status == "failed" or not active.implicit:
            self._maybe_anchor(record)

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
            record = self._append(conn, action, target, details)
        self._maybe_anchor(record)
        return record

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
            key = self._signing_key(head)
            seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
            now = now_us()
            records = []
            for entry in entries:
                record = make_record(seq, now, entry.actor or actor, entry.action, entry.target,
                                     canonical(entry.details), prev, key)
                records.append(record)
                seq, prev = seq + 1, record.hash
            cat.insert_audit_many(conn, records)
        self._maybe_anchor(records[-1])
        return records

    # -- anchors --------------------------------------------------------------------------

    def latest_anchor(self) -> Anchor | None:
        """The newest anchor published for this chain (None: anchors off, an empty chain, or
        none yet); raises ``UsageError`` if the anchor file or objects cannot be read."""
        chain = self._chain()
        return None if chain is None else self._anchoring.latest(chain)

    @property
    def anchor_targets(self) -> list[str]:
        """Where anchors go: the file or object-store prefix, then the webhook (by host)."""
        return self._anchoring.targets

    def _chain(self) -> str | None:
        """The hash of record 1 (None: the chain is empty), cached once seen."""
        if self._chain_id is None:
            first = self.catalog.list_audit(limit=1, newest_first=False).items
            self._chain_id = first[0].hash if first and first[0].seq == 1 else None
        return self._chain_id

    def publish_anchor(self) -> Anchor | None:
        """Publish the chain head now to every anchor target (None: anchors are off, or the
        chain is empty). A target that fails raises ``AnchorFailed`` naming it (after the
        others were published, and the failure recorded as ``audit.anchor_failed``).

        Example: ``p.ledger.publish_anchor()`` -> ``Anchor(seq=120, hash=..., ...)``
        """
        if not self._anchoring.enabled:
            return None
        with self.catalog.engine.connect() as conn:
            head = cat.audit_head(conn)
        chain = self._chain()
        if head is None or chain is None:
            return None
        anchor = Anchor(head[0], head[1], head[2], now_us(), chain)
        failed = self._anchoring.publish(anchor)
        if failed:
            done = [w for w in self.anchor_targets if w not in dict(failed)]
            raise AnchorFailed(
                "; ".join(f"publishing anchor {anchor.seq} to {where} failed: {why}"
                          for where, why in failed)
                + (f" (published to {', '.join(done)})" if done else ""),
                hint="the audit records are committed all the same; the next anchor (or "
                     "`tarmac audit anchor`) publishes the head again")
        return anchor

    def _record_anchor_failure(self, anchor: Anchor, failed: list[tuple[str, str]]) -> int:
        """ONE ``audit.anchor_failed`` record for a publication that failed somewhere; its
        sequence number."""
        with self.catalog.write() as conn:
            return self._append(conn, ANCHOR_FAILED, "audit", {
                "seq": anchor.seq, "hash": anchor.hash,
                "failed": [{"target": w, "error": e} for w, e in failed]}).seq

    def _maybe_anchor(self, head: AuditRecord) -> None:
        """Publish ``head`` if an anchor is due (``tarmac.ledger.anchoring``). The change is
        committed already: a failure to publish is logged and recorded, never raised."""
        if not self._anchoring.enabled:
            return
        try:
            if head.seq == 1:
                self._chain_id = head.hash
            chain = self._chain()
        except Exception as exc:
            _log.warning("could not publish the audit anchor: %s", exc)
            return
        if chain is not None:
            self._anchoring.maybe(head, chain)

    def _flush_inputs(self, conn: Connection, run: ActiveRun) -> None:
        for dv in run._pending_inputs:
            cat.add_edge(conn, run.id, "input", dv.dataset, dv.version)
        run._pending_inputs.clear()

    def _append(self, conn: Connection, action: str, target: str, details: dict[str, Any],
                *, actor: str | None = None) -> AuditRecord:
        head = cat.audit_head(conn)
        key = self._signing_key(head)
        seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
        record = make_record(seq, now_us(), actor or self.actor, action, target,
                             canonical(details), prev, key)
        cat.insert_audit(conn, record)
        return record

    # -- reading ----------------------------------------------------------------------------

    def audit(self, *, since_us: int | None = None, actor: str | None = None,
              target: str | None = None, action: str | None = None, limit: int = 100,
              cursor: str | None = None) -> Page[AuditRecord]:
        """Audit records, newest first, filtered and paginated. Needs ``read:audit`` where
        access is enforced (admins only by default), except inside a governed action that
        reads the trail for its own bookkeeping (``guard.internal``: a trace's promotion
        history, an erasure's progress)."""
        self.guard.check("read:audit")
        return self.catalog.list_audit(since_us=since_us, actor=actor, target=target,
                                       action=action, limit=limit, cursor=cursor)

    def export(self, out: IO[str] | str | os.PathLike[str], *, format: str = "jsonl",
               since_us: int | None = None, until_us: int | None = None,
               actor: str | None = None, action: str | None = None) -> AuditExport:
        """Write every audit record in ``[since_us, until_us)`` (by ``actor``, whose action
        starts with ``action``) to ``out`` as ``format`` (``jsonl`` or ``csv``), oldest first,
        for a SIEM; see ``tarmac.ledger.export`` for the columns. Records are streamed page by
        page, never held in memory together; the export stops at the head it started from.

        Needs ``read:audit`` where access is enforced (admins only by default). The export is
        itself recorded, as ``audit.export`` with its count, range and filters (never the
        contents). ``out`` is a text stream, or a path: then the file appears whole (written
        beside it, mode 0600, and renamed) or not at all.

        Example::

            done = p.ledger.export("audit.jsonl", since_us=now_us() - 30 * 86_400_000_000)
            done.count, done.first_seq, done.last_seq
        """
        check_format(format)
        self.guard.check("read:audit")
        with self.catalog.engine.connect() as conn:
            head = cat.audit_head(conn)
        through = head[0] if head else 0
        records = self.catalog.iter_audit(since_us=since_us, until_us=until_us, actor=actor,
                                          action_prefix=action, through_seq=through)

        def finish(tally: Tally, destination: str, complete: bool = True) -> AuditExport:
            done = AuditExport(tally.count, tally.first, tally.last, format, since_us, until_us,
                               actor, action, destination, complete)
            self.commit(EXPORT_ACTION, "audit", {**done.to_dict(), "through_seq": through})
            return done

        if isinstance(out, str | os.PathLike):
            path = Path(out)
            with staged_file(path) as (fh, staged):
                tally = write_records(records, fh, format)
                fh.flush()
                os.fsync(fh.fileno())
                # recorded before the file appears: an export nobody recorded never exists
                done = finish(tally, str(path))
                os.replace(staged, path)
            return done
        name = getattr(out, "name", None)
        destination = name if isinstance(name, str) else "stream"
        tally = Tally()
        try:
            write_records(records, out, format, tally)
            out.flush()
        except BaseException:
            # records may have left already (a pipe closed part-way): recorded all the same
            with contextlib.suppress(Exception):
                finish(tally, destination, complete=False)
            raise
        return finish(tally, destination)

    def verify(self, *, anchor: tuple[int, str] | None = None, state: bool = True,
               published: bool = True) -> Verification:
        """Check the whole chain; if broken, ``problem`` names the first bad record.

        With an audit key, every keyed record's MAC is checked (a chain re-hashed without the
        key fails); a keyed chain and no key fails as ``no-key``, another key as ``wrong-key``.
        With ``state`` (the default), the aliases, deployments and validations the trail
        replays to are compared with the catalog's rows, and every mismatch is listed in
        ``state`` (``kind`` ``"state"``). Without an explicit ``anchor``, the latest published
        anchor is checked (``published=False``: none), so a tail cut after it is caught.

        An empty chain is only intact if the lake holds no table Tarmac wrote: otherwise the
        records of those writes are somewhere else (a catalog re-pointed at a new database).

        Example::

            result = p.ledger.verify()
            result.ok, result.keyed, result.unkeyed, result.state
        """
        if self.key_setting.problem:
            return Verification(False, 0, None, None, problem=self.key_setting.problem,
                                kind="bad-key")
        pinned: Anchor | None = None
        if anchor is None and published:
            try:
                pinned = self.latest_anchor()
            except UsageError as exc:
                return Verification(False, 0, None, None, problem=exc.message, kind="anchor")
            if pinned is not None:
                anchor = (pinned.seq, pinned.hash)
        replay = GovernedState()
        at_anchor: list[AuditRecord] = []

        def fed() -> Iterator[AuditRecord]:
            for rec in self.catalog.iter_audit():
                replay.feed(rec)
                if anchor is not None and rec.seq == anchor[0]:
                    at_anchor.append(rec)
                yield rec

        result = verify(fed(), anchor=anchor, key=self.key)
        if result.ok and pinned is not None and pinned.mac and at_anchor \
                and at_anchor[0].mac != pinned.mac:
            return Verification(
                False, result.records, result.head_seq, result.head_hash, bad_seq=pinned.seq,
                problem=f"the published anchor says record {pinned.seq} was keyed, but the "
                        f"catalog's record {pinned.seq} carries "
                        f"{'no MAC' if at_anchor[0].mac is None else 'another MAC'}: the MACs "
                        "were stripped or remade", kind="tampered", keyed=result.keyed,
                unkeyed=result.unkeyed, anchor=anchor)
        if result.ok and state:
            problems = replay.compare(self.catalog)
            if problems:
                return Verification(False, result.records, result.head_seq, result.head_hash,
                                    problem=problems[0], kind="state", keyed=result.keyed,
                                    unkeyed=result.unkeyed, state=tuple(problems),
                                    anchor=result.anchor)
        if result.ok and result.records == 0 and self.lake_root is not None:
            from tarmac.catalog.lake_check import commit_runs, lake_tables

            written = [n for n in lake_tables(self.lake_root) if commit_runs(self.lake_root, n)]
            if written:
                return Verification(
                    False, 0, None, None, bad_seq=1, kind="incomplete",
                    problem=f"the audit chain is empty but the lake holds {len(written)} "
                            f"table(s) Tarmac wrote ({', '.join(written[:5])}"
                            f"{', ...' if len(written) > 5 else ''}): their records are in "
                            "another catalog (copy it with `tarmac catalog copy`)")
        return result

    def validation_problem(self, validation_id: str) -> str | None:
        """Why the catalog's validation ``validation_id`` cannot be trusted, or None: it must
        be the validation the newest ``model.validate`` record of its model version names, that
        record must hold (its hash, and its MAC with a key), and the row (status, champion,
        gates, report, gate results) must be what the record says. What ``promote`` checks
        before it believes a validation.

        Example: ``p.ledger.validation_problem(p.models.validations("churn", 2)[0].id)``
        """
        rows = list(validation_rows(self.catalog, [validation_id]))
        if not rows:
            return f"validation {validation_id[:8]} is not in the catalog"
        row = rows[0]
        target = f"model:{row.model}@{row.version}"
        records = list(all_items(lambda c: self.catalog.list_audit(
            target=target, action=VALIDATE_ACTION, limit=500, cursor=c)))  # newest first
        mine = next((r for r in records
                     if json.loads(r.details).get("validation") == validation_id), None)
        claim = None if mine is None else claim_of(mine, json.loads(mine.details))
        if mine is not None and claim is not None:
            broken = self._record_problem(mine)
            if broken:
                return broken
            newest = records[0]
            if newest.seq != mine.seq:
                later = claim_of(newest, json.loads(newest.details))
                status = f" ({later.status})" if later else ""
                return (f"the audit trail's latest validation of {row.model} v{row.version} is "
                        f"record #{newest.seq}{status}, not validation {validation_id[:8]} "
                        f"(record #{mine.seq}): a newer validation row was deleted or this "
                        "one's time was edited")
        return validation_problem(row, claim)

    def alias_problem(self, model: str, alias: str, version: int) -> str | None:
        """Why ``model@alias`` pointing at ``version`` (as the catalog says) is not what the
        audit trail last recorded, or None: the newest ``model.promote`` / ``model.rollback`` /
        ``deploy.promote_canary`` record that moved it must hold and name ``version``. What
        ``promote`` and ``tarmac serve`` check before they trust an alias row.

        Example: ``p.ledger.alias_problem("churn", "champion", 3)`` -> None
        """
        newest: tuple[AuditRecord, int] | None = None
        for target, actions in ((f"model:{model}", ("model.promote", "model.rollback")),
                                (f"endpoint:{model}", ("deploy.promote_canary",))):
            for action in actions:
                for rec in self._records(target, action):
                    if newest is not None and rec.seq < newest[0].seq:
                        break
                    details = json.loads(rec.details)
                    moved = details.get("promotion", details)
                    if isinstance(moved, dict) and moved.get("alias") == alias \
                            and isinstance(moved.get("to"), int):
                        newest = (rec, moved["to"])
                        break
        if newest is None:
            return (f"alias {model}@{alias} is v{version} in the catalog but the audit trail "
                    "never moved it: the row was written outside Tarmac")
        rec, to = newest
        broken = self._record_problem(rec)
        if broken:
            return broken
        if to != version:
            return (f"alias {model}@{alias} is v{version} in the catalog but the audit trail "
                    f"last moved it to v{to} (record #{rec.seq})")
        return None

    def trusted(self, action: str, target: str | None = None) -> list[AuditRecord]:
        """Every ``action`` record (about ``target``), oldest first, each checked on its own
        (hash; MAC with a key): the state decisions read is folded from these, not from the
        catalog rows anyone with write access could edit. An edited record raises
        ``AuditChainError`` naming it (a decision is never made on a record that does not
        hold)."""
        found = list(all_items(lambda c: self.catalog.list_audit(
            target=target, action=action, limit=500, cursor=c, newest_first=False)))
        for rec in found:
            broken = self._record_problem(rec)
            if broken:
                raise AuditChainError(broken, hint="`tarmac audit verify` shows the whole "
                                      "trail; restore the catalog from a backup")
        return found

    def identity_problem(self, user: str, role: str, token_id: str | None = None,
                         digest: str | None = None) -> str | None:
        """Why the catalog's ``user`` with ``role`` (and its token ``token_id`` hashing to
        ``digest``) is not what the audit trail says, or None: what authentication checks
        before it believes a user row or a token row (a role edited to ``admin`` in the
        catalog, or a token inserted there, is refused).

        Example: ``p.ledger.identity_problem("ana", "ml-engineer")`` -> None
        """
        state = GovernedState()
        records = sorted((r for action in (*USER_ACTIONS, *TOKEN_ACTIONS)
                          for r in self.trusted(action, f"user:{user}")), key=lambda r: r.seq)
        for rec in records:
            state.feed(rec)
        said = state.users.get(user)
        if said is None:
            return f"user {user} is in the catalog but the audit trail never added them"
        if said[0] != role:
            return (f"user {user} is {role} in the catalog but the audit trail says "
                    f"{said[0]} (record #{said[1]})")
        if token_id is not None and user not in state.legacy_token_users:
            claim = state.tokens.get(token_id)
            if claim is None:
                return f"token {token_id} is in the catalog but the audit trail never created it"
            if claim[0] != user or claim[1] != digest or claim[3]:
                return (f"token {token_id} in the catalog differs from what the audit trail "
                        f"says (record #{claim[4]})")
        return None

    def _records(self, target: str, action: str) -> Iterator[AuditRecord]:
        """``action`` records about ``target``, newest first, page by page."""
        cursor: str | None = None
        while True:
            page = self.catalog.list_audit(target=target, action=action, limit=50,
                                           cursor=cursor)
            yield from page.items
            if not (cursor := page.next_cursor):
                return

    def _record_problem(self, rec: AuditRecord) -> str | None:
        """Why one audit record does not hold on its own (hash; MAC with a key), or None."""
        if record_hash(rec.seq, rec.time_us, rec.actor, rec.action, rec.target, rec.details,
                       rec.prev_hash) != rec.hash:
            return f"audit record #{rec.seq} ({rec.action} {rec.target}) was edited"
        if rec.mac is not None:
            key = self.key
            if key is None:
                return (f"audit record #{rec.seq} is keyed but no audit key is configured "
                        "to check it")
            if rec.key_id != key.key_id or not hmac.compare_digest(rec.mac, key.mac(rec.hash)):
                return (f"audit record #{rec.seq} ({rec.action} {rec.target}) does not carry "
                        "a valid MAC for the audit key: it was forged or re-hashed")
        return None

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
