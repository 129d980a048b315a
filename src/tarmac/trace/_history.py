"""Where a prediction's inputs came from and how its model version got there: the feature
views and materializations behind each value, the training run, gate reports, alias moves and
deployment changes, as plain dicts for ``DecisionTrace``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tarmac.catalog import features as fcat
from tarmac.catalog.records import to_datetime
from tarmac.errors import TarmacError
from tarmac.ledger.guard import internal

if TYPE_CHECKING:
    from tarmac.project import Project

MAX_HISTORY = 500  # alias moves, deployment changes and audit records read per trace


@dataclass(frozen=True)
class FeatureUse:
    """One input of the prediction: the value the model got, where it came from.

    ``source`` is ``view`` (read online from a stored feature view), ``on_demand`` (computed
    at request time) or ``request`` (sent in the request); ``view_version`` is the version of
    the view registered when the prediction was made, ``materialization`` the run that put
    the value online and ``tables`` the source table versions it read.
    """

    name: str
    value: Any
    status: str | None
    event_time: str | None
    source: str
    view: str | None = None
    view_version: int | None = None
    materialization: dict[str, Any] | None = None
    tables: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "status": self.status,
                "event_time": self.event_time, "source": self.source, "view": self.view,
                "view_version": self.view_version, "materialization": self.materialization,
                "tables": self.tables}


# -- features -----------------------------------------------------------------------------------


def features(project: Project, row: dict[str, Any], record: Any,
              when: datetime | None) -> list[FeatureUse]:
    values: dict[str, Any] = row.get("features") or {}
    times: dict[str, Any] = row.get("feature_times") or {}
    status: dict[str, str] = row.get("feature_status") or {}
    names = list(values)
    if record is not None:
        inputs = [i["name"] for i in record.signature.get("inputs", [])]
        names = inputs + [n for n in values if n not in inputs]
    origin = origins(project, record)
    at_us = int(when.timestamp() * 1_000_000) if when else None
    view_versions: dict[str, int | None] = {}
    runs: dict[str, fcat.Materialization | None] = {}
    out = []
    for n in names:
        st = status.get(n)
        view, kind = origin.get(n, (None, None))
        source = "request" if st == "request" else (kind or "unknown")
        use = FeatureUse(n, values.get(n), st, times.get(n), source)
        if view is not None and source != "request":
            if view not in view_versions:
                view_versions[view] = version_at(project, kind or "view", view, at_us)
                runs[view] = materialized_at(project, view, at_us) if kind == "view" \
                    else None
            m = runs[view]
            use = FeatureUse(n, use.value, st, use.event_time, source, view,
                             view_versions[view],
                             None if m is None else {
                                 "run_id": m.run_id, "mode": m.mode,
                                 "ended_at": iso(m.ended_at)},
                             dict(m.inputs) if m is not None else {})
        out.append(use)
    return out


def origins(project: Project, record: Any) -> dict[str, tuple[str, str]]:
    """Feature output name -> (view, "view" | "on_demand") for the model's declared features."""
    if record is None or not record.spec.get("features"):
        return {}
    try:
        resolved = project.features.resolve(record.spec["features"])
    except TarmacError:
        return {}
    out: dict[str, tuple[str, str]] = {}
    for part in resolved.parts:
        for _f, output, _t in part.features:
            out[output] = (part.view.name, "view")
    for d in resolved.demand:
        for _f, output, _t in d.features:
            out[output] = (d.view.name, "on_demand")
    return out


def version_at(project: Project, kind: str, name: str, at_us: int | None) -> int | None:
    """The version of a feature definition registered at ``at_us`` (the latest if unknown)."""
    history = fcat.definition_history(project.catalog, kind, name)
    for d in history:  # newest first
        if at_us is None or d.created_at <= at_us:
            return d.version
    return None


def materialized_at(project: Project, view: str, at_us: int | None
                     ) -> fcat.Materialization | None:
    """The last successful materialization of ``view`` that ended by ``at_us``."""
    for m in fcat.materializations(project.catalog, view, status="succeeded", limit=200):
        if at_us is None or (m.ended_at or m.started_at) <= at_us:
            return m
    return None


def iso(us: int | None) -> str | None:
    when = to_datetime(us) if us is not None else None
    return when.isoformat() if isinstance(when, datetime) else None


# -- the model's history ------------------------------------------------------------------------


def training(project: Project, run_id: str, missing: list[str]) -> dict[str, Any] | None:
    try:
        run = project.models.run(run_id)
    except TarmacError as exc:
        missing.append(f"training run {run_id}: {exc.message}")
        return None
    d = run.to_dict()
    return {k: d.get(k) for k in ("run_id", "run", "status", "started_at", "actor", "params",
                                  "metrics", "inputs", "definitions", "environment",
                                  "fit_seconds", "reproduces")} | {
        # the training set is recorded in the lineage as training_set:NAME@<run number>
        "training_set": f"training_set:{run.model}@{run.seq}",
        "rows_train": (run.details or {}).get("rows_train"),
        "rows_test": (run.details or {}).get("rows_test"),
        "code_hash": (run.details or {}).get("code_hash")}


def gates(project: Project, name: str, version: int) -> list[dict[str, Any]]:
    out = []
    for v in project.models.validations(name, version, limit=5):
        results = v.report.get("results", []) if isinstance(v.report, dict) else []
        out.append({"id": v.id, "status": v.status, "at": iso(v.at), "actor": v.actor,
                    "champion": v.champion, "seconds": v.seconds,
                    "results": [{k: r.get(k) for k in ("name", "status", "value", "threshold",
                                                       "message") if k in r}
                                for r in results]})
    return out


def promotions(project: Project, name: str, version: int,
                at_us: int | None) -> list[dict[str, Any]]:
    """Alias moves to or from ``version`` (newest first), each with the sequence number of the
    audit record that made it (same alias and target version, the closest in time) and
    whether it came after the prediction (``at_us``)."""
    moves = [m for m in project.models.history(name, limit=MAX_HISTORY).items
             if version in (m.to_version, m.from_version)]
    audit: dict[tuple[Any, Any], list[Any]] = {}
    with internal("a trace's promotion history"):  # who promoted it is part of the answer
        records = list(project.ledger.audit(target=f"model:{name}", limit=MAX_HISTORY).items)
        records += [a for a in project.ledger.audit(target=f"endpoint:{name}",
                                                    limit=MAX_HISTORY).items
                    if a.action == "deploy.promote_canary"]
    for a in records:
        try:
            det = json.loads(a.details)
        except ValueError:
            continue
        det = det.get("promotion") or det  # a canary promotion carries the alias move
        if a.action in ("model.promote", "model.rollback", "deploy.promote_canary"):
            audit.setdefault((det.get("alias"), det.get("to")), []).append(a)
    out = []
    for m in moves:
        d = m.to_dict()
        d["at"] = iso(m.at)
        near = sorted(audit.get((m.alias, m.to_version), []), key=lambda a: abs(a.time_us - m.at))
        d["audit_seq"] = near[0].seq if near else None
        d["validation_id"] = m.validation_id
        d["after_prediction"] = at_us is not None and m.at > at_us
        out.append(d)
    return out


def deployments(project: Project, name: str, version: int,
                 at_us: int | None) -> list[dict[str, Any]]:
    """The endpoint's deployment changes that made ``version`` its canary or shadow, or ended
    that (newest first): who, when, what and why, and whether after the prediction."""
    from tarmac.catalog import deployments as dcat

    changes = dcat.deployment_history(project.catalog, name, limit=MAX_HISTORY).items
    out = []
    previous: tuple[int | None, int | None] | None = None
    for ch in reversed(changes):  # oldest first, to see what each change ended
        now = (ch.canary_version, ch.shadow_version)
        if version in now or (previous is not None and version in previous):
            d = ch.to_dict()
            d["at"] = iso(ch.at)
            d["after_prediction"] = at_us is not None and ch.at > at_us
            out.append(d)
        previous = now
    return out[::-1]
