"""Model cards: what a model version is for, what it learned from, how good it is and how it is
doing, read from the registry, the ledger and the catalog (``tarmac models card``).

A card never loads the model: it renders from what was recorded, so the card of a version whose
artifact was deleted still shows everything else (and says the artifact is missing). Each part
says plainly when there is nothing to show: a model never validated, never promoted, never
deployed or never monitored.

What it shows, and where each part comes from:

- intended use, owner and known limitations, as ``@model(owner=, intended_use=,
  limitations=)`` declared them when the version was trained (its spec records them);
- the training data with its lineage: the training run, its input table versions, the
  training set, the label, the split, row counts, parameters, the code commit, and the ledger's
  upstream tree of ``model:NAME@VERSION``;
- metrics on the holdout set, overall and per slice;
- the gate results of the version's latest validation;
- the alias history (who moved the champion, when, forced or not, why) and the deployment of
  the model's endpoint (which role this version plays: champion, canary, shadow);
- the monitoring status: the monitors watching the model, each one's latest window, its verdict
  and failing checks, the retraining loops that produced or challenged this version, and the
  latest alert deliveries.

Example::

    card = p.model_card("churn")            # the champion (else the latest version)
    Path("card.md").write_text(card.to_markdown())
    Path("card.html").write_text(card.to_html())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tarmac.catalog import deployments as dcat
from tarmac.catalog import monitors as moncat
from tarmac.catalog.alerts import DeliveryRecord
from tarmac.catalog.deployments import Deployment, DeploymentChange
from tarmac.catalog.models import AliasMove, ModelVersion, TrainRun
from tarmac.catalog.monitors import RetrainLoop
from tarmac.catalog.records import to_datetime
from tarmac.errors import TarmacError
from tarmac.monitoring.alerts import alert_history

if TYPE_CHECKING:
    from tarmac.ledger.lineage import LineageNode
    from tarmac.project import Project

CHAMPION = "champion"
#: how far the card's lineage tree reaches upstream of the version (runs deep)
LINEAGE_DEPTH = 4
#: alias moves, deployment changes and alert deliveries shown, newest first
HISTORY_ROWS = 20
ALERT_ROWS = 10


@dataclass(frozen=True)
class LineageStep:
    """One line of the lineage tree: a dataset version or the run that wrote it."""

    depth: int
    kind: str  # "dataset" | "run"
    name: str
    version: int | None = None
    run_id: str | None = None
    started_at: datetime | None = None
    actor: str | None = None
    status: str | None = None
    repeated: bool = False


@dataclass(frozen=True)
class Training:
    """Where the version came from: its training run (or import) and the data it read."""

    run_id: str
    run: TrainRun | None  # None: imported, or the run's row is gone
    training_set: str | None  # "training_set:churn@7", the exact rows it was fitted on
    inputs: dict[str, int]  # lake table -> version read
    features: Any  # the feature service, or the feature refs
    keys: list[str]
    label: dict[str, Any] | None
    split: dict[str, Any] | None
    split_by: str | None
    rows_train: int | None
    rows_test: int | None
    git: dict[str, Any]
    imported: dict[str, Any] | None
    lineage: list[LineageStep]


@dataclass(frozen=True)
class GateRow:
    name: str
    status: str
    value: float | str | None
    threshold: str | None
    why: str


@dataclass(frozen=True)
class GateResults:
    """The version's latest validation."""

    id: str
    status: str
    at: datetime
    actor: str
    champion: int | None  # the champion it was compared with
    seconds: float
    gates: list[GateRow]
    validations: int  # how many times the version was validated (up to 20 counted)


@dataclass(frozen=True)
class MonitorStatus:
    """A monitor watching the model and its latest evaluated window."""

    name: str
    evaluated: bool  # False: declared in definitions.py, no window evaluated yet
    window_start: datetime | None = None
    window_end: datetime | None = None
    status: str | None = None  # of the window's run: succeeded, failed, running
    verdict: str | None = None  # passed, failed, no data
    version: int | None = None  # the version the window judged
    predictions: int | None = None
    checks: int | None = None
    failing: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class ModelCard:
    """Everything a model card shows about one version; ``to_markdown`` and ``to_html`` render
    it (for a pull request and for people)."""

    project: str
    model: str
    version: int
    flavor: str
    task: str
    created_at: datetime
    actor: str
    description: str | None
    tags: dict[str, str]
    aliases: list[str]  # this version's aliases now
    model_aliases: dict[str, int]  # every alias of the model now
    latest: int  # the model's newest version
    declared: bool  # False: trained before Tarmac recorded owner / intended use / limitations
    owner: str | None
    intended_use: str | None
    limitations: list[str] | None
    artifact: str
    artifact_present: bool
    training: Training
    metrics: dict[str, float]
    slices: dict[str, dict[str, dict[str, float]]]  # column -> slice -> metric -> value
    gates: GateResults | None
    history: list[AliasMove]
    deployment: Deployment | None  # None: the endpoint was never deployed
    deployment_changes: list[DeploymentChange]
    monitors: list[MonitorStatus]
    loops: list[RetrainLoop]  # retraining loops that produced or challenged this version
    alerts: list[DeliveryRecord]
    generated_at: datetime
    notes: list[str] = field(default_factory=list)  # what could not be read, and why

    @property
    def roles(self) -> list[str]:
        """What this version does on the model's endpoint now: champion, canary, shadow."""
        found = ["champion"] if self.model_aliases.get(CHAMPION) == self.version else []
        d = self.deployment
        if d is not None and d.canary_version == self.version:
            found.append(f"canary ({d.canary_percent:g}% of traffic)"
                         if d.canary_percent is not None else "canary")
        if d is not None and d.shadow_version == self.version:
            found.append("shadow")
        return found

    def to_markdown(self) -> str:
        """The card as Markdown (for a pull request or a wiki); every recorded text escaped."""
        from tarmac.trace._card_render import markdown

        return markdown(self)

    def to_html(self) -> str:
        """The card as one self-contained HTML page: inline CSS, no script, no external
        resource; every recorded text escaped."""
        from tarmac.trace._card_render import html

        return html(self)


def model_card(project: Project, name: str, version: int | None = None, *,
               alias: str | None = None) -> ModelCard:
    """The card of ``name`` at ``version`` (or ``alias``; neither: the champion, else the
    latest version). An unknown model or version raises ``UsageError`` naming what exists.

    Example::

        card = model_card(p, "churn", 3)
        card.gates.status, card.roles, [m.verdict for m in card.monitors]
    """
    registry = project.models
    if version is None and alias is None and registry.aliases(name).get(name, {}).get(
            CHAMPION) is not None:
        alias = CHAMPION
    record = registry.version(name, version, alias=alias)  # unknown model / version: UsageError
    notes: list[str] = []
    model_aliases = registry.aliases(name).get(name, {})
    spec = record.spec
    declared = any(k in spec for k in ("owner", "intended_use", "limitations"))
    limitations = spec.get("limitations")
    training = _training(project, record, notes)
    validations = registry.validations(name, record.version)
    deployment = dcat.get_deployment(project.catalog, name)
    changes = list(dcat.deployment_history(project.catalog, name, limit=HISTORY_ROWS))
    monitors = _monitors(project, name, notes)
    return ModelCard(
        project=project.name, model=name, version=record.version, flavor=record.flavor,
        task=record.task, created_at=_dt(record.created_at), actor=record.actor,
        description=record.description, tags=dict(record.tags),
        aliases=sorted(a for a, v in model_aliases.items() if v == record.version),
        model_aliases=model_aliases, latest=registry.names()[name][1], declared=declared,
        owner=spec.get("owner"), intended_use=spec.get("intended_use"),
        limitations=list(limitations) if limitations is not None else None,
        artifact=record.artifact,
        artifact_present=registry.artifacts.path(record.artifact).is_file(),
        training=training, metrics=dict(record.metrics),
        slices=_slices(training.run, validations[0].report if validations else None),
        gates=_gates(validations), history=list(registry.history(name, limit=HISTORY_ROWS)),
        deployment=deployment if deployment.generation else None, deployment_changes=changes,
        monitors=monitors,
        loops=[lp for lp in moncat.retrain_loops(project.catalog, model=name, limit=200)
               if record.version in (lp.version, lp.champion)][:HISTORY_ROWS],
        alerts=_alerts(project, monitors),
        generated_at=datetime.now(UTC), notes=notes)


def _dt(us: int) -> datetime:
    found = to_datetime(us)
    assert found is not None
    return found


def _training(project: Project, record: ModelVersion, notes: list[str]) -> Training:
    spec = record.spec
    run: TrainRun | None = None
    if "imported" not in spec:
        try:
            run = project.models.run(record.run_id)
        except TarmacError:
            notes.append(f"the training run {record.run_id[:8]} is not in the catalog: the "
                         "training data shown is what the version's own record keeps")
    details = run.details if run is not None else {}
    return Training(
        run_id=record.run_id, run=run,
        training_set=f"training_set:{record.model}@{run.seq}" if run is not None else None,
        inputs=dict(run.inputs) if run is not None else {},
        features=spec.get("features"), keys=list(spec.get("keys") or []),
        label=spec.get("label"), split=spec.get("split"), split_by=spec.get("split_by"),
        rows_train=details.get("rows_train"), rows_test=details.get("rows_test"),
        git=dict((run.environment.get("git") or {}) if run is not None else {}),
        imported=spec.get("imported"),
        lineage=_lineage(project.ledger.lineage(f"model:{record.model}@{record.version}",
                                                depth=LINEAGE_DEPTH)))


def _lineage(root: LineageNode) -> list[LineageStep]:
    """The upstream tree, depth first, below the version itself (the card's own subject)."""
    out: list[LineageStep] = []

    def walk(node: LineageNode, depth: int) -> None:
        r = node.run
        out.append(LineageStep(depth, node.kind, node.name, node.version,
                               r.id if r else None, r.started_at if r else None,
                               r.actor if r else None, r.status if r else None, node.repeated))
        for child in node.children:
            walk(child, depth + 1)

    for child in root.children:
        walk(child, 0)
    return out


def _slices(run: TrainRun | None, report: dict[str, Any] | None
            ) -> dict[str, dict[str, dict[str, float]]]:
    """Holdout metrics per slice as training measured them; for a version without them (an
    import) the per-slice values its slice gates measured."""
    if run is not None and run.slices:
        return {col: {s: dict(m) for s, m in per.items()} for col, per in run.slices.items()}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in (report or {}).get("results", []):
        d = r.get("details") or {}
        if not isinstance(d.get("slices"), dict) or "by" not in d or "metric" not in d:
            continue
        per = out.setdefault(str(d["by"]), {})
        for s, found in d["slices"].items():
            row = per.setdefault(str(s), {"rows": found.get("rows")})
            if found.get("value") is not None:
                row[str(d["metric"])] = found["value"]
    return out


def _gates(validations: list[Any]) -> GateResults | None:
    if not validations:
        return None
    v = validations[0]
    rows = [GateRow(r.get("name", "?"), r.get("status", "?"), r.get("value"),
                    r.get("threshold"), r.get("why", ""))
            for r in v.report.get("results", [])]
    return GateResults(v.id, v.status, _dt(v.at), v.actor, v.champion, v.seconds, rows,
                       len(validations))


def _monitors(project: Project, name: str, notes: list[str]) -> list[MonitorStatus]:
    """The monitors of ``name`` the catalog knows (evaluated at least once) with their latest
    window, then those ``definitions.py`` declares that never ran."""
    out: list[MonitorStatus] = []
    records = {n: r for n, r in moncat.monitor_records(project.catalog).items()
               if r.model == name}
    for monitor in records:
        runs = moncat.monitor_runs(project.catalog, monitor, limit=1)
        if not runs:
            out.append(MonitorStatus(monitor, evaluated=False))
            continue
        run = runs[0]
        summary = run.summary or {}
        out.append(MonitorStatus(
            monitor, True, _dt(run.window_start), _dt(run.window_end), run.status, run.verdict,
            summary.get("version"), summary.get("predictions"), run.checks,
            list(summary.get("failing") or []), run.error))
    try:
        declared = project.monitoring.monitors()
    except TarmacError as exc:  # a broken definitions file must not hide the rest of the card
        notes.append(f"the declared monitors could not be read: {exc.message}")
        declared = {}
    out += [MonitorStatus(m, evaluated=False) for m, d in sorted(declared.items())
            if d.model == name and m not in records]
    return out


def _alerts(project: Project, monitors: list[MonitorStatus]) -> list[DeliveryRecord]:
    found = [d for m in monitors if m.evaluated
             for d in alert_history(project, m.name, limit=ALERT_ROWS)]
    return sorted(found, key=lambda d: (d.at, d.id), reverse=True)[:ALERT_ROWS]


__all__ = ["GateResults", "GateRow", "LineageStep", "ModelCard", "MonitorStatus", "Training",
           "model_card"]
