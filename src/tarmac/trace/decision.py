"""The decision trace of one logged prediction: what the model saw, which model it was and how
it got there, and why it decided what it decided.

``trace(project, id)`` (``p.trace(id)``, ``tarmac trace ID``) reads the prediction's row from
the ``predictions`` table, then the registry, the feature registry and the audit trail:

- the prediction: time, endpoint, model@version and its role (champion, canary, shadow), the
  raw request, the output (score, label), latency;
- every feature value used, with its event time and status, the feature-view version that was
  registered at the time and the materialization that put it online (its source table
  versions);
- the version's training run (training-set inputs at their table versions, feature
  definitions, parameters, metrics, git commit), the gate reports that admitted it, and who
  moved an alias to it and when (registry history and audit records);
- an explanation: per-feature contributions summing to the model's output
  (``tarmac.trace.explain``).

Whatever cannot be read any more (a deleted model artifact, a holdout set gone) is named in
``missing`` and the rest is still shown: a trace never fails because part of the history did.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tarmac.errors import TarmacError, UsageError, echo
from tarmac.trace import _history as history
from tarmac.trace import _lookup
from tarmac.trace._history import FeatureUse
from tarmac.trace.explain import Explanation, NotExplainable, explain

if TYPE_CHECKING:
    from tarmac.project import Project

_JSON = ("features", "feature_times", "feature_status", "request", "label")


@dataclass
class DecisionTrace:
    """Everything recorded about one prediction (see the module's doc). ``to_dict`` is the
    JSON form, ``summary()`` a few lines of text, ``to_html()`` a self-contained page.

    Example::

        t = p.trace("019ae8b1c4d27a3f9c0e5b11d2f4a6e8")
        t.model, t.version, t.role, t.score
        print(t.summary())
    """

    id: str
    request_id: str | None
    time: datetime | None
    endpoint: str
    model: str
    version: int
    role: str
    score: float | None
    label: Any
    latency_ms: float | None
    error: str | None
    request: dict[str, Any]
    features: list[FeatureUse]
    model_version: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)
    promotions: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    aliases_now: list[str] = field(default_factory=list)
    explanation: Explanation | None = None
    explanation_missing: str | None = None
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "request_id": self.request_id,
            "time": self.time.isoformat() if self.time else None,
            "endpoint": self.endpoint, "model": self.model, "version": self.version,
            "role": self.role, "score": self.score, "label": self.label,
            "latency_ms": self.latency_ms, "error": self.error, "request": self.request,
            "features": [f.to_dict() for f in self.features],
            "model_version": self.model_version, "training": self.training,
            "gates": self.gates, "promotions": self.promotions,
            "deployments": self.deployments, "aliases_now": self.aliases_now,
            "explanation": self.explanation.to_dict() if self.explanation else None,
            "explanation_missing": self.explanation_missing, "missing": self.missing,
        }

    def summary(self, top: int = 3) -> str:
        """A few lines for a person: the decision, the model and how it got there, the largest
        contributions (or why there are none), and what is missing."""
        score = "no score" if self.score is None else f"score {self.score:.4f}"
        when = f"{self.time:%Y-%m-%d %H:%M:%S} UTC" if self.time else "at an unknown time"
        lines = [f"prediction {self.id} at {when}: {self.endpoint} -> {score}, label "
                 f"{json.dumps(self.label, default=str)}",
                 f"  by {self.model}@v{self.version} ({self.role})"]
        run = self.training or {}
        if run:
            commit = ((run.get("environment") or {}).get("git") or {}).get("commit")
            lines.append(f"  trained by run {run.get('run')} ({str(run.get('run_id'))[:12]})"
                         + (f" at commit {commit[:10]}" if commit else "")
                         + f" on {run.get('training_set')} from "
                         + _tables(run.get("inputs") or {}))
        if self.gates:
            g = self.gates[0]
            lines.append(f"  gates {g['status']} at {g['at']} by {g['actor']}")
        promoted = [m for m in self.promotions if m.get("to") == self.version
                    and not m.get("after_prediction")]
        if promoted:
            m = promoted[0]
            lines.append(f"  {m['action']} to {m['alias']} by {m['actor']} at {m['at']}"
                         + (" (forced)" if m.get("forced") else ""))
        made = [d for d in self.deployments if self.role in ("canary", "shadow")
                and d.get(self.role) == self.version and not d.get("after_prediction")]
        if made:
            d = made[0]
            lines.append(f"  made {self.role} ({d['action']}) by {d['actor']} at {d['at']}"
                         + (f": {d['reason']}" if d.get("reason") else ""))
        odd = [f"{f.name}={f.status}" for f in self.features
               if f.status not in (None, "present", "request")]
        if odd:
            lines.append(f"  features not present: {', '.join(odd)}")
        e = self.explanation
        if e is not None:
            parts = ", ".join(f"{c.feature} {c.contribution:+.3f}" for c in e.ranked()[:top])
            lines.append(f"  why ({e.method}, {e.scale}): base {e.base:.3f}; {parts}")
        else:
            lines.append(f"  no explanation: {self.explanation_missing}")
        if self.missing:
            lines.append(f"  missing: {'; '.join(self.missing)}")
        return "\n".join(lines)

    def to_html(self) -> str:
        """The trace as one self-contained HTML page (inline CSS and SVG, no script)."""
        from tarmac.trace._render import html_page

        return html_page(self)

    def __rich__(self) -> Any:
        from tarmac.trace._render import rich_view

        return rich_view(self)


def _tables(inputs: dict[str, int]) -> str:
    return ", ".join(f"{k}@{v}" for k, v in sorted(inputs.items())) or "no recorded tables"


def trace(project: Project, prediction_id: str, *, explain_samples: int = 64,
          seed: int = 0) -> DecisionTrace:
    """The decision trace of the logged prediction ``prediction_id`` (see the module's doc).

    A prediction appears in the log's table about a second after it was answered (the flush
    interval); an id the table does not hold is a UsageError naming it.

    Example::

        t = trace(p, "019ae8b1c4d27a3f9c0e5b11d2f4a6e8")
        t.explanation.base + sum(c.contribution for c in t.explanation.contributions)
    """
    pid = _lookup.check_id(prediction_id)
    row = _lookup.find(project, pid)
    if row is None:
        raise UsageError(
            f"no logged prediction with id '{echo(pid, 60)}'"
            + ("" if project.lake.exists(_lookup.TABLE)
               else " (the project has no prediction log yet: nothing was served)"),
            hint="ids are in each answer's predictions[].id and in `tarmac predictions "
                 "ENDPOINT`; a prediction reaches the log about a second after its answer")
    for key in _JSON:
        text = row.get(key)
        row[key] = json.loads(text) if isinstance(text, str) else text
    name, version = row["model"], int(row["version"])
    when = row.get("time")
    if isinstance(when, datetime) and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    t = DecisionTrace(
        id=row["id"], request_id=row.get("request_id"), time=when, endpoint=row["endpoint"],
        model=name, version=version, role=row.get("role") or "champion",
        score=_number(row.get("score")), label=row.get("label"),
        latency_ms=_number(row.get("latency_ms")), error=row.get("error"),
        request=row.get("request") or {}, features=[])
    models = project.models
    record = None
    try:
        record = models.version(name, version)
    except TarmacError as exc:
        t.missing.append(f"registry entry of {name} v{version}: {exc.message}")
    t.features = history.features(project, row, record, when)
    if record is not None:
        t.model_version = {k: v for k, v in record.to_dict().items()
                           if k not in ("signature", "holdout")}
        t.model_version["inputs"] = [i["name"] for i in record.signature.get("inputs", [])]
        t.training = history.training(project, record.run_id, t.missing)
        t.gates = history.gates(project, name, version)
        at_us = int(when.timestamp() * 1_000_000) if when else None
        t.promotions = history.promotions(project, name, version, at_us)
        t.deployments = history.deployments(project, t.endpoint, version, at_us)
        t.aliases_now = sorted(a for a, v in models.aliases(name).get(name, {}).items()
                               if v == version)
    _explain(project, t, row, record, samples=explain_samples, seed=seed)
    return t


def _number(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return None if math.isnan(f) else f


# -- the explanation ----------------------------------------------------------------------------


def _explain(project: Project, t: DecisionTrace, row: dict[str, Any], record: Any, *,
             samples: int, seed: int) -> None:
    if record is None:
        t.explanation_missing = "the model version is not in the registry"
        return
    if t.error:
        t.explanation_missing = f"the prediction failed ({t.error}): there is no output"
        return
    try:
        model = project.models.get(t.model, t.version)
    except TarmacError as exc:
        t.missing.append(f"model artifact: {exc.message}")
        t.explanation_missing = f"the model artifact cannot be loaded ({exc.message})"
        return
    background = None
    try:
        background = project.models.holdout(record)
    except TarmacError as exc:
        t.missing.append(f"holdout set: {exc.message}")
    values = row.get("features") or {}
    status = row.get("feature_status") or {}
    if t.score is None and all(values.get(n) is None for n in model.signature.input_names):
        t.explanation_missing = (
            "no input had a value (" + ", ".join(
                f"{n}: {status.get(n, 'missing')}" for n in model.signature.input_names[:8])
            + "), so the model gave no score: there is nothing to attribute")
        return
    try:
        frame = model.signature.frame([{n: values.get(n) for n in
                                        model.signature.input_names}])
    except TarmacError as exc:
        t.explanation_missing = f"the logged features do not fit the model: {exc.message}"
        return
    try:
        t.explanation = explain(model, frame, background=background,
                                status=status, samples=samples,
                                seed=seed)
    except (NotExplainable, ValueError, TypeError) as exc:
        t.explanation_missing = echo(str(exc).strip().splitlines()[0] if str(exc).strip()
                                     else type(exc).__name__, 300)
