"""``p.models``: train, load, validate, promote and roll back models.

Versions are immutable: an artifact is stored under its SHA-256 and loading checks it. Aliases
(``champion``, ``challenger``, any name) point at versions; moving one is a governed act. A
promotion needs the version's latest validation to have passed against the current champion with
the gates declared now (else ``force`` with a ``reason``, both audited), and it lands as a
compare-and-swap: of two racing promotions one wins, the other gets a ``ConflictError``.

Example::

    p = tarmac.open(".")
    result = p.models.train("churn", params={"max_depth": 6})
    report = p.models.validate("churn", result.version)
    if report.status == "passed":
        p.models.promote("churn", result.version)
    p.models.get("churn", alias="champion").predict(frame)
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tarmac import faults
from tarmac.catalog import MAX_PAGE, Page, all_items, now_us
from tarmac.catalog import models as mcat
from tarmac.catalog.governed import report_digest
from tarmac.errors import PromotionRefused, UsageError
from tarmac.features.definitions import suggest
from tarmac.features.store import OnlineFeatures
from tarmac.models import flavors
from tarmac.models.artifacts import ArtifactStore
from tarmac.models.definitions import ModelDefinition
from tarmac.models.signature import Signature

if TYPE_CHECKING:
    from tarmac.gates import Report
    from tarmac.models.score import ScoreResult
    from tarmac.models.train import Step, TrainResult
    from tarmac.project import Project

CHAMPION = "champion"
EMPTY = ("error", "null", "score")  # what predict does with rows that have no input value


class LoadedModel:
    """A registered version, loaded and verified: ``predict`` takes a frame with its inputs."""

    def __init__(self, record: mcat.ModelVersion, predictor: flavors.Predictor,
                 aliases: list[str]) -> None:
        self.record = record
        self.predictor = predictor
        self.aliases = aliases
        self.signature = Signature.from_dict(record.signature)

    @property
    def name(self) -> str:
        return self.record.model

    @property
    def version(self) -> int:
        return self.record.version

    @property
    def flavor(self) -> str:
        return self.record.flavor

    @property
    def task(self) -> str:
        return self.record.task

    @property
    def metrics(self) -> dict[str, float]:
        return self.record.metrics

    @property
    def estimator(self) -> Any:
        """The trained object itself (an sklearn estimator, a function, ...)."""
        return self.predictor.obj

    def predict(self, frame: pd.DataFrame | pa.Table | list[dict[str, Any]] | OnlineFeatures,
                *, empty: str = "error") -> np.ndarray:
        """Predictions (class labels or values), one per row; columns are matched by name and
        checked against the signature's types. A row with no value for any input (an unknown
        entity, stale features) is refused unless ``empty`` is "null" (its prediction is None)
        or "score" (scored like any row)."""
        return self._run(self.predictor.predict, frame, empty)

    def predict_scores(self, frame: pd.DataFrame | pa.Table | list[dict[str, Any]]
                       | OnlineFeatures, *, empty: str = "error") -> np.ndarray | None:
        """P(positive class) for a binary classifier, class probabilities for multiclass
        (``empty`` as for ``predict``; with "null" such rows score NaN)."""
        return self._run(self.predictor.scores, frame, empty)

    def _run(self, fn: Any, data: Any, empty: str) -> Any:
        if empty not in EMPTY:
            raise UsageError(f"empty={empty!r}: expected one of {', '.join(EMPTY)}")
        frame = self.signature.frame(data)
        mask = self.signature.empty_rows(frame) if empty != "score" else None
        if mask is None or not mask.any():
            return fn(frame)
        if empty == "error":
            self.signature.refuse_empty(mask, data, f"{self.name} v{self.version}")
        keep = ~mask
        got = fn(frame[keep]) if keep.any() else None
        if got is None and keep.any():
            return None
        shape = (len(frame), *(got.shape[1:] if got is not None else ()))
        if got is not None and got.ndim > 1 or fn == self.predictor.scores:
            out = np.full(shape, np.nan)
        else:
            out = np.full(shape, None, dtype=object)
        if got is not None:
            out[keep] = got
        return out

    def __repr__(self) -> str:
        tags = f" ({', '.join(self.aliases)})" if self.aliases else ""
        return f"<LoadedModel {self.name} v{self.version}{tags} {self.flavor}/{self.task}>"


@dataclass
class AliasChange:
    """What ``promote`` or ``rollback`` did."""

    model: str
    alias: str
    from_version: int | None
    to_version: int
    action: str
    changed: bool
    forced: bool = False
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "alias": self.alias, "from": self.from_version,
                "to": self.to_version, "action": self.action, "changed": self.changed,
                "forced": self.forced, "reason": self.reason}


@dataclass(frozen=True)
class PromotionPlan:
    """A checked promotion not written yet (``ModelRegistry.plan_promotion``): ``write(conn)``
    moves the alias (``None`` when it already points there), ``details`` are what the audit
    record of ``model.promote`` says, ``result`` what ``promote`` returns."""

    result: AliasChange
    details: dict[str, Any]
    write: Callable[[Any], None] | None


class ModelRegistry:
    """A project's models: declared in ``definitions.py``, versions and aliases in the catalog."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.artifacts = ArtifactStore(Path(project.config.artifacts))

    # -- declarations -------------------------------------------------------------------------

    def declared(self) -> dict[str, ModelDefinition]:
        """The models ``definitions.py`` declares now."""
        return self._declared()[0]

    def _declared(self) -> tuple[dict[str, ModelDefinition], str]:
        from tarmac.features.registry import import_definitions

        module = import_definitions(self.project.features.definitions_path)
        found: dict[str, ModelDefinition] = {}
        for value in vars(module).values():
            if isinstance(value, ModelDefinition):
                found[value.name] = value
        return found, module.__name__

    def definition(self, name: str) -> ModelDefinition:
        return self._definition(name, self.declared())

    def _definition(self, name: str, found: dict[str, ModelDefinition]) -> ModelDefinition:
        if name not in found:
            raise UsageError(f"no model named '{name}' in {self.project.features.definitions_path}"
                             + suggest(name, found, none=" (it declares no models)"),
                             hint="declare it with @model(name=...) in definitions.py")
        return found[name]

    # -- training ----------------------------------------------------------------------------

    def train(self, name: str, *, params: dict[str, Any] | None = None,
              reproduce: str | None = None, step: Step | None = None) -> TrainResult:
        """Train ``name`` (see ``tarmac train``); ``reproduce`` re-runs a recorded run id.

        Example: each run registers a new version; ``params`` override the declared ones.

        >>> result = p.models.train("risk")
        >>> result.version, result.flavor, result.task, result.rows_train, result.rows_test
        (1, 'sklearn', 'binary', 480, 120)
        >>> result.metrics["roc_auc"] > 0.7
        True
        >>> again = p.models.train("risk", params={"C": 0.1})
        >>> again.version, again.params
        (2, {'C': 0.1, 'only': None})
        """
        from tarmac.models.train import train

        found, module = self._declared()
        definition = self._definition(name, found)
        recorded = mcat.get_train_run(self.project.catalog, reproduce) if reproduce else None
        with self.project.ledger.guard.acting("train", f"model:{name}"):
            return train(self.project, definition, self.artifacts, params=params,
                         reproduce=recorded, module=module, step=step or (lambda _m: None))

    def runs(self, model: str | None = None, *, status: str | None = None,
             limit: int = 20) -> list[mcat.TrainRun]:
        """Training runs, newest first."""
        return mcat.train_runs(self.project.catalog, model, status=status, limit=limit)

    def run(self, run_id: str) -> mcat.TrainRun:
        return mcat.get_train_run(self.project.catalog, run_id)

    # -- reading the registry ------------------------------------------------------------------

    def names(self) -> dict[str, tuple[int, int]]:
        """model -> (number of versions, latest version)."""
        return mcat.model_names(self.project.catalog)

    def versions(self, name: str, *, limit: int = 100,
                 cursor: str | None = None) -> Page[mcat.ModelVersion]:
        """A page of a model's versions, newest first; pass ``next_cursor`` back for more."""
        found = mcat.versions(self.project.catalog, name, limit=limit, cursor=cursor)
        if not found and cursor is None:
            raise self._unknown(name)
        return found

    def aliases(self, name: str | None = None) -> dict[str, dict[str, int]]:
        """model -> alias -> version (of one model, or of all), read page by page."""
        out: dict[str, dict[str, int]] = {}
        catalog = self.project.catalog
        for a in all_items(lambda c: mcat.aliases(catalog, name, limit=MAX_PAGE, cursor=c)):
            out.setdefault(a.model, {})[a.alias] = a.version
        return out

    def history(self, name: str, alias: str | None = None, limit: int = 50,
                cursor: str | None = None) -> Page[mcat.AliasMove]:
        """A page of the model's alias moves, newest first."""
        return mcat.alias_history(self.project.catalog, name, alias, limit=limit, cursor=cursor)

    def card(self, name: str, version: int | None = None, *, alias: str | None = None) -> Any:
        """The model card of a version (the champion, else the latest, by default): the same
        ``ModelCard`` as ``p.model_card`` (``tarmac.trace.card``), which this calls through the
        project (model cards read monitoring and deployments, layers above the registry).

        Example::

            print(p.models.card("churn").to_markdown())
        """
        return self.project.model_card(name, version, alias=alias)

    def version(self, name: str, version: int | None = None, *,
                alias: str | None = None) -> mcat.ModelVersion:
        """A version by number, by alias, or (neither given) the latest."""
        if version is not None and alias is not None:
            raise UsageError("give a version or an alias, not both")
        if alias is not None:
            found = mcat.get_alias(self.project.catalog, name, alias)
            if found is None:
                have = self.aliases(name).get(name, {})
                if not have and not self.names().get(name):
                    raise self._unknown(name)
                listed = ", ".join(f"{a} -> v{v}" for a, v in have.items())
                raise UsageError(f"model '{name}' has no alias '{alias}'"
                                 + (f" (aliases: {listed})" if have else " (no aliases yet)"),
                                 hint=f"tarmac promote {name} VERSION --alias {alias}")
            version = found.version
        if version is None:
            newest = mcat.versions(self.project.catalog, name, limit=1)
            if not newest:
                raise self._unknown(name)
            version = newest[0].version
        record = mcat.get_version(self.project.catalog, name, version)
        if record is None:
            known = self.names().get(name)
            if known is None:
                raise self._unknown(name)
            raise UsageError(f"model '{name}' has no version {version} (versions 1 to {known[1]})")
        return record

    def _unknown(self, name: str) -> UsageError:
        return UsageError(f"no registered model named '{name}'"
                          + suggest(name, self.names(), none=" (none are registered yet)"),
                          hint=f"train it first: tarmac train {name}")

    def get(self, name: str, version: int | None = None, *,
            alias: str | None = None) -> LoadedModel:
        """Load a version (by number or alias; the champion when neither is given, else the
        latest), verifying its artifact's SHA-256."""
        if version is None and alias is None:
            champion = mcat.get_alias(self.project.catalog, name, CHAMPION)
            version = champion.version if champion else None
        record = self.version(name, version, alias=alias)
        aliases = [a for a, v in self.aliases(name).get(name, {}).items()
                   if v == record.version]
        return LoadedModel(record, self._predictor(record), aliases)

    def _predictor(self, record: mcat.ModelVersion) -> flavors.Predictor:
        data = self.artifacts.get(record.artifact,
                                  what=f"the artifact of {record.model} v{record.version}")
        obj = flavors.load(record.flavor, data, self.artifacts.root / "unpacked" / record.artifact)
        return flavors.Predictor(obj, record.flavor, record.task, record.spec.get("classes"))

    def score(self, name: str, input: str, output: str, **options: Any) -> ScoreResult:
        """Batch-score SQL or a lake table into a lake table, in one commit (options and
        behaviour: ``tarmac.models.score``). The champion scores unless ``version=`` or
        ``alias=`` says otherwise; features are joined as of the input's timestamp.

        >>> _ = p.models.promote("risk", p.models.train("risk").version, force=True, reason="go")
        >>> result = p.models.score("risk", "SELECT customer_id, observed FROM labels", "scored")
        >>> result.rows_in, result.rows_scored, result.rows_rejected, result.output_version
        (600, 600, 0, 0)
        >>> p.lake.read("scored").column_names
        ['customer_id', 'observed', 'score', 'label', 'model', 'version', 'scored_at', ...]
        """
        from tarmac.models.score import score

        guard = self.project.ledger.guard
        guard.check("write", f"table:{output}")
        with guard.acting("predict", f"model:{name}"):
            return score(self, name, input, output, **options)

    def import_model(self, source: str, name: str, **options: Any) -> mcat.ModelVersion:
        """Register an MLflow model (directory or ``models:/`` URI) or an ONNX file as a new
        version of ``name`` (see ``tarmac.models.imports``)."""
        from tarmac.models.imports import import_model

        with self.project.ledger.guard.acting("train", f"model:{name}"):
            return import_model(self, source, name, **options)

    def holdout(self, record: mcat.ModelVersion) -> pd.DataFrame:
        """The version's holdout rows, as stored when it was trained (hash verified)."""
        data = self.artifacts.get(record.holdout,
                                  what=f"the holdout set of {record.model} v{record.version}")
        return pq.read_table(io.BytesIO(data)).to_pandas()

    def annotate(self, name: str, version: int, *, description: str | None = None,
                 tags: dict[str, str | None] | None = None) -> mcat.ModelVersion:
        """Describe a version and set or remove (value None) its tags; audited."""
        self.project.ledger.guard.check("train", f"model:{name}")
        record = self.version(name, version)
        merged = dict(record.tags)
        for key, value in (tags or {}).items():
            if not key or not isinstance(key, str):
                raise UsageError(f"tag name {key!r} is not valid")
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = str(value)
        self.project.ledger.commit(
            "model.annotate", f"model:{name}@{record.version}",
            {"description": description, "tags": merged},
            change=lambda conn: mcat.annotate_version(conn, name, record.version,
                                                      description=description, tags=merged))
        return self.version(name, record.version)

    # -- gates and promotion --------------------------------------------------------------------

    def validate(self, name: str, version: int | None = None) -> Report:
        """Run the gates declared for ``name`` on a version's holdout set (the latest version by
        default), against the current champion; the report is stored and audited.

        Example: with no champion yet, the comparisons with it are skipped.

        >>> version = p.models.train("risk").version
        >>> report = p.models.validate("risk", version)
        >>> report.status, report.exit_code
        ('passed', 0)
        >>> for gate in report.results:
        ...     print(gate.status, "|", gate.name)
        passed | roc_auc >= 0.7
        skipped | no regression in roc_auc (tolerance 0.01)
        passed | roc_auc >= 0.5 in every region
        passed | no null predictions
        skipped | signature compatible with champion
        """
        from tarmac.gates import Champion, GateContext, run_gates

        self.project.ledger.guard.check("validate", f"model:{name}")
        definition = self.definition(name)
        record = self.version(name, version)
        champion_alias = mcat.get_alias(self.project.catalog, name, CHAMPION)
        champion = None
        if champion_alias is not None:
            crec = self.version(name, champion_alias.version)
            champion = Champion(crec.version, self._predictor(crec),
                                Signature.from_dict(crec.signature))
        signature = Signature.from_dict(record.signature)
        imported = "label" not in record.spec  # no holdout or label of its own
        if imported:
            holdout, label = self._declared_holdout(definition, record, signature)
        else:
            holdout, label = self.holdout(record), record.spec["label"]["column"]
        ctx = GateContext(model=name, version=record.version, predictor=self._predictor(record),
                          holdout=holdout, features=signature.input_names, label=label,
                          signature=signature, champion=champion)
        started = time.perf_counter()
        report = run_gates(list(definition.gates), ctx)
        validation = mcat.Validation(
            id=str(uuid.uuid4()), model=name, version=record.version,
            champion=champion.version if champion else None, status=report.status,
            gates=definition.gates_hash(), report=report.to_dict(), at=now_us(),
            seconds=time.perf_counter() - started, actor=self.project.ledger.actor)
        failed = [r.name for r in report.results if r.status in ("failed", "error")]
        self.project.ledger.commit(
            "model.validate", f"model:{name}@{record.version}",
            {"status": report.status, "champion": validation.champion,
             "gates_not_met": failed, "validation": validation.id,
             "gates": validation.gates, "report_sha256": report_digest(validation.report),
             **({"holdout": f"declared: {len(holdout):,} rows built today from the "
                            f"declaration of '{name}'"} if imported else {})},
            change=lambda conn: mcat.insert_validation(conn, validation))
        return report

    def _declared_holdout(self, definition: ModelDefinition, record: mcat.ModelVersion,
                          signature: Signature) -> tuple[pd.DataFrame, str]:
        """An imported version's holdout: the rows its ``@model`` declaration gives today
        (``train.declared_holdout``), which must hold every input the version takes."""
        from tarmac.models.train import declared_holdout

        holdout = declared_holdout(self.project, definition)
        missing = [c for c in signature.input_names if c not in holdout.columns]
        if missing:
            raise UsageError(
                f"{record.model} v{record.version} (imported) takes input(s) "
                f"{', '.join(missing)} that the declared features of '{record.model}' "
                f"({definition.features}) do not give: its gates cannot run on them",
                hint="declare features that include every input of the imported model, or "
                     "promote it with --force --reason")
        return holdout, definition.label.column

    def validations(self, name: str, version: int | None = None,
                    limit: int = 20) -> list[mcat.Validation]:
        return mcat.validation_history(self.project.catalog, name, version, limit=limit)

    def promote(self, name: str, version: int, *, alias: str = CHAMPION, force: bool = False,
                reason: str | None = None) -> AliasChange:
        """Point ``alias`` at ``version`` if its gates passed against the current champion.

        Example: a validated version is promoted; one never validated is refused.

        >>> version = p.models.train("risk").version
        >>> p.models.validate("risk", version).status
        'passed'
        >>> change = p.models.promote("risk", version)
        >>> change.alias, change.from_version, change.to_version, change.changed
        ('champion', None, 1, True)
        >>> p.models.aliases("risk")
        {'risk': {'champion': 1}}
        >>> p.models.promote("risk", p.models.train("risk").version)
        Traceback (most recent call last):
        ...
        tarmac.errors.PromotionRefused: not promoting risk v2 to champion: it has never been ...
        """
        plan = self.plan_promotion(name, version, alias=alias, force=force, reason=reason)
        if plan.write is not None:
            self.project.ledger.commit("model.promote", f"model:{name}", plan.details,
                                       change=plan.write)
        return plan.result

    def plan_promotion(self, name: str, version: int, *, alias: str = CHAMPION,
                       force: bool = False, reason: str | None = None) -> PromotionPlan:
        """``promote``'s checks (the gates, ``force`` and its reason), without writing: the
        plan's ``write`` moves the alias inside a caller's catalog transaction (a
        ``Ledger.commit`` change), so a promotion can land together with another change and
        one audit record (``deploy(promote_canary=True)``). Raises what ``promote`` raises."""
        _check_alias(alias)
        guard = self.project.ledger.guard
        guard.check("promote", f"alias:{name}@{alias}")
        if force and not (reason and reason.strip()):
            raise UsageError("a forced promotion needs a reason (it goes into the audit trail)",
                             hint='--force --reason "why this cannot wait"')
        record = self.version(name, version)
        current = mcat.get_alias(self.project.catalog, name, alias)
        if current is not None and current.version == record.version:
            return PromotionPlan(AliasChange(name, alias, current.version, record.version,
                                             "promote", False), {}, None)
        champion = (current if alias == CHAMPION
                    else mcat.get_alias(self.project.catalog, name, CHAMPION))
        validation = mcat.latest_validation(self.project.catalog, name, record.version)
        problem = self._gate_problem(name, record.version, validation, champion)
        faults.point("promote.after_checks", model=name, version=record.version, alias=alias)
        if problem and not force:
            raise PromotionRefused(f"not promoting {name} v{record.version} to {alias}: {problem}",
                             hint=f"tarmac validate {name} {record.version}; or, to override, "
                                  '--force --reason "..." (audited)')
        guard.protected_move(name, alias, record.version,
                             "force-promote" if force and problem else "promote", reason)
        actor = self.project.ledger.actor
        forced = bool(problem) and force

        def write(conn: Any) -> None:
            mcat.move_alias(conn, model=name, alias=alias, to_version=record.version,
                            expected=current, action="promote", actor=actor, forced=forced,
                            reason=reason, validation_id=validation.id if validation else None)

        details: dict[str, Any] = {"alias": alias, "from": current.version if current else None,
                                   "to": record.version,
                                   "validation": validation.id if validation else None}
        if forced:
            details.update(forced=True, reason=reason, overridden=problem)
        elif reason:
            details["reason"] = reason
        return PromotionPlan(AliasChange(name, alias, current.version if current else None,
                                         record.version, "promote", True, forced, reason),
                             details, write)

    def _gate_problem(self, name: str, version: int, validation: mcat.Validation | None,
                      champion: mcat.Alias | None) -> str | None:
        """Why the gate results do not allow promotion, or None if they do."""
        if validation is None:
            return "it has never been validated"
        untrusted = self.project.ledger.validation_problem(validation.id)
        if untrusted:
            return f"its validation in the catalog does not match the audit trail: {untrusted}"
        if champion is not None:
            moved = self.project.ledger.alias_problem(name, CHAMPION, champion.version)
            if moved:
                return f"the champion in the catalog does not match the audit trail: {moved}"
        if validation.status != "passed":
            bad = [r["name"] for r in validation.report.get("results", [])
                   if r["status"] in ("failed", "error")]
            outcome = "failed" if validation.status == "failed" else "could not run every gate"
            return f"its latest validation {outcome} ({'; '.join(bad[:4]) or 'see the report'})"
        now = champion.version if champion else None
        if validation.champion != now:
            then = f"champion v{validation.champion}" if validation.champion else "no champion"
            return (f"its gate results are stale: it was validated against {then}, the "
                    f"champion is now {f'v{now}' if now else 'none'}")
        declared = self.definition(name).gates_hash()
        if validation.gates != declared:
            return "its gate results are stale: the gates declared for it changed since"
        return None

    def rollback(self, name: str, *, alias: str = CHAMPION, to: int | None = None,
                 reason: str | None = None, force: bool = False) -> AliasChange:
        """Move ``alias`` back to the version it pointed at before the current one was promoted
        (or to ``to``, a version that held it before). Returning to a version whose gates never
        passed (it was forced in) needs ``force`` and a ``reason``, like forcing it did."""
        _check_alias(alias)
        guard = self.project.ledger.guard
        guard.check("promote", f"alias:{name}@{alias}")
        if force and not (reason and reason.strip()):
            raise UsageError("a forced rollback needs a reason (it goes into the audit trail)",
                             hint='--force --reason "why"')
        current = mcat.get_alias(self.project.catalog, name, alias)
        if current is None:
            if not self.names().get(name):
                raise self._unknown(name)
            raise UsageError(f"model '{name}' has no {alias} to roll back")
        if to is None:
            into = mcat.last_move_to(self.project.catalog, name, alias, current.version,
                                     action="promote")
            if into is None or into.from_version is None:
                raise UsageError(f"v{current.version} is the first {alias} of '{name}': there is "
                                 "no earlier one to roll back to")
            to = into.from_version
        else:
            self.version(name, to)
            if mcat.last_move_to(self.project.catalog, name, alias, to) is None:
                raise UsageError(f"v{to} of '{name}' has never been {alias}: rollback only "
                                 f"returns to an earlier {alias}",
                                 hint=f"promote it instead: tarmac promote {name} {to}")
            if to == current.version:
                raise UsageError(f"v{to} is already the {alias} of '{name}'")
        validation = mcat.latest_validation(self.project.catalog, name, to)
        untrusted = (None if validation is None
                     else self.project.ledger.validation_problem(validation.id))
        unvetted = validation is None or validation.status != "passed" or bool(untrusted)
        if unvetted and not force:
            why = (f"its validation in the catalog does not match the audit trail: {untrusted}"
                   if untrusted else "its gates never passed (it was forced in)")
            raise PromotionRefused(
                f"not rolling '{name}' {alias} back to v{to}: {why}",
                hint='pass --force --reason "..." (audited), or --to another earlier version')
        guard.protected_move(name, alias, to, "force-rollback" if force and unvetted
                             else "rollback", reason)
        actor = self.project.ledger.actor
        target = to
        forced = unvetted and force

        def change(conn: Any) -> None:
            mcat.move_alias(conn, model=name, alias=alias, to_version=target, expected=current,
                            action="rollback", actor=actor, forced=forced, reason=reason)

        details: dict[str, Any] = {"alias": alias, "from": current.version, "to": target,
                                   "reason": reason}
        if forced:
            details["forced"] = True
        self.project.ledger.commit("model.rollback", f"model:{name}", details, change=change)
        return AliasChange(name, alias, current.version, target, "rollback", True, forced,
                           reason)


def _check_alias(alias: str) -> None:
    import re

    if not re.match(r"^[a-z][a-z0-9_-]{0,63}$", alias or ""):
        raise UsageError(f"alias {alias!r} is not valid: use lower-case letters, digits, '_' "
                         "and '-', starting with a letter")


__all__ = ["CHAMPION", "AliasChange", "LoadedModel", "ModelRegistry", "PromotionPlan"]

