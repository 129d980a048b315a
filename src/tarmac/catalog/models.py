"""Model state in the catalog: training runs, versions, aliases and their history, validations.

Reads take a ``Catalog``; writes take the ``Connection`` of a ledger transaction, so a version, an
alias move or a gate result commits together with its audit record. Alias moves are
compare-and-swap on a generation number: of two racing promotions exactly one lands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tarmac.catalog import _tables as t
from tarmac.catalog._paging import paginate
from tarmac.catalog.records import Page, now_us, to_datetime

if TYPE_CHECKING:
    from tarmac.profile import TableProfile
from tarmac.catalog.store import Catalog
from tarmac.errors import ConflictError, UsageError

_JSON_RUN = ("params", "metrics", "slices", "inputs", "definitions", "environment", "details")
_JSON_VERSION = ("signature", "spec", "metrics", "profile", "tags")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass(frozen=True)
class TrainRun:
    """One training run of a model (failed ones too: they keep their traceback)."""

    run_id: str
    model: str
    seq: int
    status: str
    started_at: int
    actor: str
    version: int | None = None
    reproduces: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    slices: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, int] = field(default_factory=dict)
    definitions: dict[str, int] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    fit_seconds: float | None = None
    ended_at: int | None = None
    error: str | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at) / 1e6

    @property
    def started_at_dt(self) -> datetime:
        return datetime.fromtimestamp(self.started_at / 1e6, UTC)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "model": self.model, "run": self.seq,
                "status": self.status, "version": self.version, "reproduces": self.reproduces,
                "params": self.params, "metrics": self.metrics, "slices": self.slices,
                "inputs": self.inputs, "definitions": self.definitions,
                "environment": self.environment, "details": self.details,
                "fit_seconds": self.fit_seconds, "seconds": self.seconds,
                "started_at": to_datetime(self.started_at), "actor": self.actor,
                "error": self.error}


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version: its artifact, signature, metrics and reference profile."""

    model: str
    version: int
    run_id: str
    flavor: str
    task: str
    artifact: str
    holdout: str
    signature: dict[str, Any]
    spec: dict[str, Any]
    created_at: int
    actor: str
    metrics: dict[str, float] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def reference_profile(self) -> TableProfile:
        """``profile`` typed: the ``tarmac.profile`` statistics of the training features, the
        reference a monitor profiles live traffic ``against``."""
        from tarmac.profile import TableProfile

        return TableProfile.from_dict(self.profile)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "run_id": self.run_id,
                "flavor": self.flavor, "task": self.task, "artifact": self.artifact,
                "holdout": self.holdout, "signature": self.signature, "spec": self.spec,
                "metrics": self.metrics, "description": self.description, "tags": self.tags,
                "created_at": to_datetime(self.created_at), "actor": self.actor}


@dataclass(frozen=True)
class Alias:
    model: str
    alias: str
    version: int
    generation: int
    updated_at: int
    actor: str


@dataclass(frozen=True)
class AliasMove:
    """One entry of an alias's history (a promotion or a rollback)."""

    id: int
    model: str
    alias: str
    from_version: int | None
    to_version: int | None
    action: str
    forced: bool
    reason: str | None
    validation_id: str | None
    at: int
    actor: str

    def to_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "from": self.from_version, "to": self.to_version,
                "action": self.action, "forced": self.forced, "reason": self.reason,
                "at": to_datetime(self.at), "actor": self.actor}


@dataclass(frozen=True)
class Validation:
    """One run of a version's gates: against which champion, and the report."""

    id: str
    model: str
    version: int
    champion: int | None
    status: str
    gates: str
    report: dict[str, Any]
    at: int
    seconds: float
    actor: str


# -- training runs -----------------------------------------------------------------------------


def _after_max(conn: Connection, column: Any, model_column: Any, model: str) -> int:
    return int(conn.execute(select(func.coalesce(func.max(column), 0))
                            .where(model_column == model)).scalar_one()) + 1


def next_seq(conn: Connection, model: str) -> int:
    """The number the model's next training run gets."""
    return _after_max(conn, t.train_runs.c.seq, t.train_runs.c.model, model)


def insert_train_run(conn: Connection, run: TrainRun) -> None:
    values = {k: getattr(run, k) for k in ("run_id", "model", "seq", "status", "version",
                                           "reproduces", "started_at", "ended_at", "actor",
                                           "error")}
    values.update({k: _dumps(getattr(run, k)) for k in _JSON_RUN})
    values["fit_seconds"] = None if run.fit_seconds is None else int(run.fit_seconds * 1e6)
    conn.execute(insert(t.train_runs).values(**values))


def finish_train_run(conn: Connection, run_id: str, **fields: Any) -> None:
    """Update a run's outcome: status, version, metrics, ..., ended_at (now if not given);
    ``details`` are added to the ones the run was opened with."""
    r = t.train_runs.c
    if "details" in fields:
        opened = conn.execute(select(r.details).where(r.run_id == run_id)).scalar_one()
        fields["details"] = {**json.loads(opened), **fields["details"]}
    values = {k: (_dumps(v) if k in _JSON_RUN else v) for k, v in fields.items()}
    if fields.get("fit_seconds") is not None:
        values["fit_seconds"] = int(fields["fit_seconds"] * 1e6)
    values.setdefault("ended_at", now_us())
    conn.execute(update(t.train_runs).where(t.train_runs.c.run_id == run_id).values(**values))


def _train_run(row: Any) -> TrainRun:
    status, error, ended = row.status, row.error, row.ended_at
    if status == "running" and row.ledger_status == "failed":  # the process died mid-run
        status, error, ended = "failed", row.ledger_error, row.ledger_ended
    return TrainRun(
        run_id=row.run_id, model=row.model, seq=row.seq, status=status,
        started_at=row.started_at, actor=row.actor, version=row.version,
        reproduces=row.reproduces, **{k: json.loads(getattr(row, k)) for k in _JSON_RUN},
        fit_seconds=None if row.fit_seconds is None else row.fit_seconds / 1e6,
        ended_at=ended, error=error)


def _train_runs_query() -> Any:
    """Training runs with their ledger run's outcome (which knows about killed processes)."""
    r, lr = t.train_runs, t.runs
    return (select(r, lr.c.status.label("ledger_status"), lr.c.error.label("ledger_error"),
                   lr.c.ended_at.label("ledger_ended"))
            .join(lr, lr.c.id == r.c.run_id, isouter=True))


def train_runs(catalog: Catalog, model: str | None = None, *, status: str | None = None,
               limit: int = 20) -> list[TrainRun]:
    """Training runs, newest first."""
    r = t.train_runs
    query = _train_runs_query().order_by(r.c.started_at.desc(), r.c.run_id).limit(limit)
    if model is not None:
        query = query.where(r.c.model == model)
    if status is not None:
        query = query.where(r.c.status == status)
    with catalog.engine.connect() as conn:
        return [_train_run(row) for row in conn.execute(query).all()]


def get_train_run(catalog: Catalog, run_id: str) -> TrainRun:
    """A training run by id or unique id prefix (as ``tarmac runs`` shows it)."""
    r = t.train_runs
    if len(run_id) < 4:
        raise UsageError(f"run id '{run_id}' is too short: give at least 4 characters")
    with catalog.engine.connect() as conn:
        rows = conn.execute(_train_runs_query().where(
            r.c.run_id.startswith(run_id, autoescape=True)).limit(2)).all()
    if not rows:
        raise UsageError(f"no training run '{run_id}'", hint="`tarmac runs --model NAME` "
                                                             "lists them")
    if len(rows) > 1:
        raise UsageError(f"run id prefix '{run_id}' is ambiguous", hint="give more characters")
    return _train_run(rows[0])


# -- versions ---------------------------------------------------------------------------------


def next_version(conn: Connection, model: str) -> int:
    """The number the model's next version gets."""
    return _after_max(conn, t.model_versions.c.version, t.model_versions.c.model, model)


def insert_version(conn: Connection, mv: ModelVersion) -> None:
    values = {k: getattr(mv, k) for k in ("model", "version", "run_id", "flavor", "task",
                                          "artifact", "holdout", "description", "created_at",
                                          "actor")}
    values.update({k: _dumps(getattr(mv, k)) for k in _JSON_VERSION})
    conn.execute(insert(t.model_versions).values(**values))


def annotate_version(conn: Connection, model: str, version: int, *,
                     description: str | None, tags: dict[str, str]) -> None:
    """Set a version's description (when given) and its tags (replacing them)."""
    v = t.model_versions.c
    values: dict[str, Any] = {"tags": _dumps(tags)}
    if description is not None:
        values["description"] = description
    conn.execute(update(t.model_versions).where((v.model == model) & (v.version == version))
                 .values(**values))


def _version(row: Any) -> ModelVersion:
    return ModelVersion(
        model=row.model, version=row.version, run_id=row.run_id, flavor=row.flavor,
        task=row.task, artifact=row.artifact, holdout=row.holdout,
        created_at=row.created_at, actor=row.actor, description=row.description,
        **{k: json.loads(getattr(row, k)) for k in _JSON_VERSION if k in row._fields})


def versions(catalog: Catalog, model: str, *, limit: int = 100,
             cursor: str | None = None) -> Page[ModelVersion]:
    """A page of a model's versions, newest first (without their reference profiles:
    ``get_version`` has them; a listing does not need kilobytes of statistics per version)."""
    v = t.model_versions
    columns = [c for c in v.c if c.name != "profile"]
    query = select(*columns).where(v.c.model == model)
    with catalog.engine.connect() as conn:
        rows, nxt = paginate(conn, query, [(v.c.version, True)], limit=limit, cursor=cursor)
    return Page([_version(row) for row in rows], nxt)


def get_version(catalog: Catalog, model: str, version: int) -> ModelVersion | None:
    v = t.model_versions
    with catalog.engine.connect() as conn:
        row = conn.execute(select(v).where((v.c.model == model) & (v.c.version == version))
                           ).first()
    return None if row is None else _version(row)


def model_names(catalog: Catalog) -> dict[str, tuple[int, int]]:
    """model -> (number of versions, latest version)."""
    v = t.model_versions.c
    with catalog.engine.connect() as conn:
        rows = conn.execute(select(v.model, func.count(), func.max(v.version))
                            .group_by(v.model).order_by(v.model)).all()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


# -- aliases ------------------------------------------------------------------------------------


def aliases(catalog: Catalog, model: str | None = None, *, limit: int = 100,
            cursor: str | None = None) -> Page[Alias]:
    """A page of aliases (of one model, or of all), by model and alias name."""
    a = t.model_aliases
    query = select(a)
    if model is not None:
        query = query.where(a.c.model == model)
    with catalog.engine.connect() as conn:
        rows, nxt = paginate(conn, query, [(a.c.model, False), (a.c.alias, False)],
                             limit=limit, cursor=cursor)
    return Page([Alias(r.model, r.alias, r.version, r.generation, r.updated_at, r.actor)
                 for r in rows], nxt)


def get_alias(catalog: Catalog, model: str, alias: str) -> Alias | None:
    a = t.model_aliases
    with catalog.engine.connect() as conn:
        r = conn.execute(select(a).where((a.c.model == model) & (a.c.alias == alias))).first()
    return None if r is None else Alias(r.model, r.alias, r.version, r.generation, r.updated_at,
                                        r.actor)


def move_alias(conn: Connection, *, model: str, alias: str, to_version: int,
               expected: Alias | None, action: str, actor: str, forced: bool = False,
               reason: str | None = None, validation_id: str | None = None) -> None:
    """Point ``alias`` at ``to_version`` if it still is where ``expected`` says (compare-and-swap)
    and record the move; a concurrent move makes this raise ``ConflictError``."""
    a = t.model_aliases
    at = now_us()
    if expected is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(a).values(model=model, alias=alias, version=to_version,
                                              generation=1, updated_at=at, actor=actor))
        except IntegrityError:
            raise _conflict(conn, model, alias, to_version) from None
    else:
        done = conn.execute(update(a).where((a.c.model == model) & (a.c.alias == alias)
                                            & (a.c.generation == expected.generation))
                            .values(version=to_version, generation=expected.generation + 1,
                                    updated_at=at, actor=actor))
        if done.rowcount != 1:
            raise _conflict(conn, model, alias, to_version)
    conn.execute(insert(t.alias_history).values(
        model=model, alias=alias, from_version=expected.version if expected else None,
        to_version=to_version, action=action, forced=int(forced), reason=reason,
        validation_id=validation_id, at=at, actor=actor))


def _conflict(conn: Connection, model: str, alias: str, to_version: int) -> ConflictError:
    a = t.model_aliases
    row = conn.execute(select(a.c.version, a.c.actor).where(
        (a.c.model == model) & (a.c.alias == alias))).first()
    now = f"v{row.version} (moved by {row.actor})" if row else "removed"
    return ConflictError(
        f"'{alias}' of model '{model}' moved while this change was being made: it is now {now}; "
        f"not moving it to v{to_version}",
        hint="check `tarmac models show " + model + "`, validate against the new champion "
             "and try again")


def alias_history(catalog: Catalog, model: str, alias: str | None = None,
                  *, limit: int = 50, cursor: str | None = None) -> Page[AliasMove]:
    """A page of alias moves, newest first."""
    h = t.alias_history
    query = select(h).where(h.c.model == model)
    if alias is not None:
        query = query.where(h.c.alias == alias)
    with catalog.engine.connect() as conn:
        rows, nxt = paginate(conn, query, [(h.c.id, True)], limit=limit, cursor=cursor)
    return Page([_move(r) for r in rows], nxt)


def _move(r: Any) -> AliasMove:
    return AliasMove(r.id, r.model, r.alias, r.from_version, r.to_version, r.action,
                     bool(r.forced), r.reason, r.validation_id, r.at, r.actor)


def last_move_to(catalog: Catalog, model: str, alias: str, version: int, *,
                 action: str | None = None) -> AliasMove | None:
    """The newest move of ``alias`` onto ``version`` (of one ``action``, if given): what a
    rollback needs, in one indexed query whatever the length of the history."""
    h = t.alias_history
    query = select(h).where((h.c.model == model) & (h.c.alias == alias)
                            & (h.c.to_version == version))
    if action is not None:
        query = query.where(h.c.action == action)
    with catalog.engine.connect() as conn:
        row = conn.execute(query.order_by(h.c.id.desc()).limit(1)).first()
    return None if row is None else _move(row)


# -- validations -------------------------------------------------------------------------------


def insert_validation(conn: Connection, v: Validation) -> None:
    conn.execute(insert(t.validations).values(
        id=v.id, model=v.model, version=v.version, champion=v.champion, status=v.status,
        gates=v.gates, report=_dumps(v.report), at=v.at, seconds=int(v.seconds * 1e6),
        actor=v.actor))
    results = v.report.get("results", [])
    if results:
        conn.execute(insert(t.gate_results), [
            {"validation_id": v.id, "position": i, "model": v.model, "version": v.version,
             "name": r["name"][:256], "kind": r["kind"], "status": r["status"],
             "value": None if r.get("value") is None else str(r["value"]),
             "threshold": r.get("threshold"), "why": r.get("why") or ""}
            for i, r in enumerate(results)])


def latest_validation(catalog: Catalog, model: str, version: int) -> Validation | None:
    found = validation_history(catalog, model, version, limit=1)
    return found[0] if found else None


def validation_history(catalog: Catalog, model: str, version: int | None = None,
                       *, limit: int = 20) -> list[Validation]:
    """Validations of a model (or one version), newest first."""
    v = t.validations
    query = select(v).where(v.c.model == model).order_by(v.c.at.desc(), v.c.id).limit(limit)
    if version is not None:
        query = query.where(v.c.version == version)
    with catalog.engine.connect() as conn:
        return [Validation(r.id, r.model, r.version, r.champion, r.status, r.gates,
                           json.loads(r.report), r.at, r.seconds / 1e6, r.actor)
                for r in conn.execute(query).all()]
