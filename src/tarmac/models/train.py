"""A tracked training run: training set -> fit -> evaluate on the holdout -> register a version.

Two ledger runs make the lineage ``tables@versions -> training_set:NAME@N -> train:NAME ->
model:NAME@V``: the first builds the point-in-time training set from the label table and the
feature service (inputs recorded as bound), the second calls the user's function on the training
rows, evaluates the returned model on the holdout rows (overall and per slice), stores the model
and the holdout set as content-addressed artifacts and registers the version, all in one
catalog transaction with its audit record. A training function that raises, or returns something
that cannot predict, leaves a failed run with its traceback and registers nothing.

``reproduce`` re-runs a recorded run: the same table versions (time travel), the same feature
definition versions, the same parameters; a deterministic estimator gets the same metrics.
"""

from __future__ import annotations

import io
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.exc import IntegrityError

from tarmac import faults
from tarmac.catalog import DatasetVersion, now_us
from tarmac.catalog import features as fcat
from tarmac.catalog import models as mcat
from tarmac.errors import ConflictError, TarmacError, TrainingError, UsageError
from tarmac.features import registry
from tarmac.features.definitions import Feature, SqlSource, suggest
from tarmac.lake import quote_ident
from tarmac.models import environment, flavors, metrics
from tarmac.models.artifacts import ArtifactStore
from tarmac.models.definitions import ModelDefinition, TrainingData
from tarmac.models.signature import infer, numpy_type

if TYPE_CHECKING:
    import pandas as pd

    from tarmac.features.store import Resolved
    from tarmac.project import Project

Step = Callable[[str], None]
MIN_SLICE_ROWS = 30
_RETRIES = 5


@dataclass
class TrainResult:
    """What ``tarmac train`` reports: the run, the version it registered and its metrics."""

    model: str
    run_id: str
    run: int
    version: int
    flavor: str
    task: str
    params: dict[str, Any]
    metrics: dict[str, float]
    slices: dict[str, Any]
    rows_train: int
    rows_test: int
    inputs: dict[str, int]
    seconds: float
    fit_seconds: float
    artifact: str
    warnings: list[str] = field(default_factory=list)
    reproduces: str | None = None
    reproduced: dict[str, tuple[float | None, float | None]] | None = None

    @property
    def overhead_seconds(self) -> float:
        """Time spent by Tarmac around the user's fit (building data, evaluating, storing)."""
        return self.seconds - self.fit_seconds

    @property
    def reproduced_ok(self) -> bool | None:
        if self.reproduced is None:
            return None
        return all(a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9,
                                                                     abs_tol=1e-12)
                   for a, b in self.reproduced.values())

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "run_id": self.run_id, "run": self.run,
                "version": self.version, "flavor": self.flavor, "task": self.task,
                "params": self.params, "metrics": self.metrics, "slices": self.slices,
                "rows_train": self.rows_train,
                "rows_test": self.rows_test, "inputs": self.inputs,
                "seconds": round(self.seconds, 3), "fit_seconds": round(self.fit_seconds, 3),
                "artifact": self.artifact, "warnings": self.warnings,
                "reproduces": self.reproduces,
                "reproduced": None if self.reproduced is None else {
                    k: {"recorded": a, "now": b} for k, (a, b) in self.reproduced.items()},
                "reproduced_ok": self.reproduced_ok}


@dataclass
class _LabelPlan:
    table: str
    timestamp: str
    split_by: str
    columns: list[str]
    sql: str


def train(project: Project, definition: ModelDefinition, artifacts: ArtifactStore, *,
          params: dict[str, Any] | None = None, reproduce: mcat.TrainRun | None = None,
          module: str | None = None, step: Step = lambda _m: None) -> TrainResult:
    """Run one tracked training of ``definition`` and register the version it produces."""
    started = time.perf_counter()
    name = definition.name
    if reproduce is not None:
        if params:
            raise UsageError("--reproduce re-runs a recorded run with its own parameters; "
                             "do not pass --param with it")
        if reproduce.model != name:
            raise UsageError(f"run {reproduce.run_id[:8]} trained model '{reproduce.model}', "
                             f"not '{name}'")
        run_params = dict(reproduce.params)
        defs = _recorded_definitions(project, reproduce.definitions)
        pins = dict(reproduce.inputs)
    else:
        run_params = definition.resolve_params(params)
        defs = None
        pins = {}
    resolved = project.features.resolve(definition.features, definitions=defs)
    keys = resolved.join_keys
    plan = _label_plan(project, definition, keys, resolved)
    warnings: list[str] = []
    if reproduce is not None and reproduce.details.get("code_hash") != definition.code_hash():
        warnings.append(f"the training function changed since run {reproduce.run_id[:8]}: "
                        "the data and parameters are the recorded ones, the code is today's")
    ledger = project.ledger
    with ledger.run(f"train:{name}", params=run_params) as train_run:
        step(f"building the training set of '{name}' from {plan.table} and features "
             f"{_features_name(definition)}")
        label_spec = {"label": definition.label.spec()}
        with ledger.run(f"training_set:{name}", params=label_spec) as ts_run:
            frame, inputs = _training_frame(project, definition, resolved, plan, pins, defs,
                                            warnings)
            seq = _open_train_run(project, definition, train_run.id, ts_run, run_params,
                                  inputs, _definition_versions(project, resolved, definition,
                                                               defs, reproduce),
                                  reproduce)
        train_run.add_input(f"training_set:{name}", seq)
        try:
            fitted = _fit_and_register(project, definition, artifacts, train_run, seq, resolved,
                                       plan, frame, run_params, module, warnings, step)
        except _Recorded as done:
            raise done.error from None
        except BaseException as exc:  # a crash after the fit (disk full, Ctrl-C): say so
            _record_failure(project, name, train_run.id, TrainingError(
                f"training '{name}' stopped: {type(exc).__name__}: {exc}"),
                traceback.format_exc())
            raise
    reproduced = None
    if reproduce is not None:
        reproduced = {k: (reproduce.metrics.get(k), fitted.metrics.get(k))
                      for k in sorted(set(reproduce.metrics) | set(fitted.metrics))}
    return TrainResult(name, train_run.id, seq, fitted.version, fitted.flavor, fitted.task,
                       run_params, fitted.metrics, fitted.slices, fitted.rows[0], fitted.rows[1],
                       inputs, time.perf_counter() - started, fitted.fit_seconds,
                       fitted.artifact, warnings, reproduce.run_id if reproduce else None,
                       reproduced)


@dataclass
class _Fitted:
    """A fitted, evaluated and stored model, before (``version`` 0) and after registration."""

    flavor: str
    task: str
    classes: list[Any] | None
    metrics: dict[str, float]
    slices: dict[str, Any]
    signature: dict[str, Any]
    artifact: str
    holdout: str
    artifact_bytes: int
    rows: tuple[int, int]  # training, holdout
    fit_seconds: float
    version: int = 0


class _Recorded(Exception):
    """A failure already recorded on the training run; carries the error for the user."""

    def __init__(self, error: TarmacError) -> None:
        super().__init__(error.message)
        self.error = error


def _failed(project: Project, name: str, run_id: str, error: TarmacError,
            trace: str | None = None) -> _Recorded:
    """Record the failure on the training run; the exception to raise carries the error."""
    return _Recorded(_record_failure(project, name, run_id, error, trace))


def _fit_and_register(project: Project, definition: ModelDefinition, artifacts: ArtifactStore,
                      train_run: Any, seq: int, resolved: Resolved, plan: _LabelPlan,
                      frame: pd.DataFrame, run_params: dict[str, Any], module: str | None,
                      warnings: list[str], step: Step) -> _Fitted:
    """Split, fit, evaluate on the holdout, store the artifacts, register the version."""
    name = definition.name
    keys = resolved.join_keys
    features = resolved.outputs
    feature_types = _feature_types(resolved)
    train_idx, test_idx = definition.split.split(frame, plan.split_by, keys)
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise _failed(project, name, train_run.id, TrainingError(
            f"the split {definition.split.test!r} by '{plan.split_by}' leaves "
            f"{len(train_idx):,} training and {len(test_idx):,} holdout rows of "
            f"{len(frame):,}: both need rows", hint="change time_split(test=...)"))
    train_frame = frame.iloc[train_idx].reset_index(drop=True)
    test_frame = frame.iloc[test_idx].reset_index(drop=True)
    data = TrainingData(
        X=train_frame[features], y=train_frame[definition.label.column], frame=train_frame,
        features=list(features), label=definition.label.column, params=dict(run_params),
        categorical=[f for f in features if feature_types[f] in ("string", "bool")],
        numeric=[f for f in features if feature_types[f] not in ("string", "bool")])
    step(f"fitting on {len(train_frame):,} rows ({len(test_frame):,} held out, "
         f"{definition.split.test} by {plan.split_by})")
    fit_started = time.perf_counter()
    try:
        trained = definition.function(data)
    except Exception as exc:
        raise _failed(project, name, train_run.id, TrainingError(
            f"the training function of '{name}' raised {type(exc).__name__}: {exc}",
            hint="the run is recorded as failed with its traceback "
                 "(`tarmac runs --model " + name + "`)"),
            traceback.format_exc()) from None
    fit_seconds = time.perf_counter() - fit_started
    try:
        step("evaluating on the holdout set")
        flavor = flavors.detect(trained)
        task = flavors.task_of(trained, train_frame[definition.label.column])
        predictor = flavors.Predictor(trained, flavor, task)
        x_test = test_frame[features]
        y_test = test_frame[definition.label.column].to_numpy()
        predictions = predictor.predict(x_test)
        scores = predictor.scores(x_test)
        found = metrics.compute(task, y_test, predictions, scores)
        slices = {}
        for column in _slice_columns(definition, test_frame):
            slices[column] = metrics.by_slice(task, test_frame[column], y_test, predictions,
                                              scores, min_rows=MIN_SLICE_ROWS)
        signature = infer(feature_types, features, task, numpy_type(predictions))
        blob = flavors.dumps(trained, module)
    except TarmacError as exc:
        raise _failed(project, name, train_run.id, exc, traceback.format_exc()) from None
    except Exception as exc:
        raise _failed(project, name, train_run.id, TrainingError(
            f"the model '{name}' returned could not be evaluated or saved: "
            f"{type(exc).__name__}: {exc}"), traceback.format_exc()) from None
    step("storing the model and its holdout set (content-addressed)")
    fitted = _Fitted(flavor, task, predictor.classes, found, slices, signature.to_dict(),
                     artifacts.put(blob), artifacts.put(_parquet(test_frame)), len(blob),
                     (len(train_frame), len(test_frame)), fit_seconds)
    profile = _profile(train_frame, [Feature(f, feature_types[f]) for f in features])
    warnings.extend(_empty_features(profile))
    faults.point("train.before_register", model=definition.name, run_id=train_run.id)
    fitted.version = _register(project, definition, train_run, seq, resolved, plan, fitted,
                               profile, warnings)
    return fitted


# -- the label rows and the training set ---------------------------------------------------


@dataclass
class Declared:
    """What a version of a declared model carries from its declaration alone, for one trained
    elsewhere (an import): the spec a trained version has (features, keys, label, split, gates),
    the holdout rows and the reference profile of the training part, as the declaration gives
    them today."""

    spec: dict[str, Any]
    holdout: pd.DataFrame
    profile: dict[str, Any]
    refs: dict[str, str]  # the feature refs the version consumes (lineage)


def declared(project: Project, definition: ModelDefinition) -> Declared:
    """``definition``'s training set built today (labels with their features at each label's
    time), split as it declares: the holdout rows, the training part's profile and the spec."""
    resolved = project.features.resolve(definition.features)
    plan = _label_plan(project, definition, resolved.join_keys, resolved)
    frame, _inputs = _training_frame(project, definition, resolved, plan, {}, None, [])
    train_idx, test_idx = definition.split.split(frame, plan.split_by, resolved.join_keys)
    if len(test_idx) == 0:
        raise UsageError(f"model '{definition.name}': the split {definition.split.test!r} by "
                         f"'{plan.split_by}' leaves no holdout rows of {len(frame):,}",
                         hint="change time_split(test=...)")
    types = _feature_types(resolved)
    profile = _profile(frame.iloc[train_idx].reset_index(drop=True),
                       [Feature(f, types[f]) for f in resolved.outputs])
    return Declared(_spec(definition, resolved, plan),
                    frame.iloc[test_idx].reset_index(drop=True), profile, dict(resolved.refs))


def declared_holdout(project: Project, definition: ModelDefinition) -> pd.DataFrame:
    """The holdout rows ``definition`` gives today (see ``declared``)."""
    return declared(project, definition).holdout


def _spec(definition: ModelDefinition, resolved: Resolved, plan: _LabelPlan) -> dict[str, Any]:
    """A version's record of how it was defined: features, keys, label, split, gates, and
    what its model card shows as declared (owner, intended use, limitations)."""
    return {"features": definition.features, "feature_refs": resolved.refs,
            "keys": resolved.join_keys, "label": definition.label.spec(),
            "timestamp": plan.timestamp, "split": definition.split.spec(),
            "split_by": plan.split_by, "gates": [g.spec() for g in definition.gates],
            "gates_hash": definition.gates_hash(), "slices": _wanted_slices(definition),
            **definition.card_spec()}


def _features_name(definition: ModelDefinition) -> str:
    f = definition.features
    return f"'{f}'" if isinstance(f, str) else ", ".join(f)


def _label_plan(project: Project, definition: ModelDefinition, keys: list[str],
                resolved: Resolved) -> _LabelPlan:
    """Check the label table has the keys, the label and its time, and say what to read."""
    lab = definition.label
    dt = project.lake.latest(lab.table)
    if dt is None:
        raise UsageError(
            f"model '{definition.name}': label table '{lab.table}' does not exist"
            + suggest(lab.table, project.lake.tables(), none=" (the lake has no tables yet)"),
            hint="ingest the labels first (`tarmac ingest`) or fix label(...) in definitions.py")
    schema = pa.schema(dt.schema().to_arrow())
    cols = {f.name: f.type for f in schema}
    where = f"model '{definition.name}': label table '{lab.table}'"
    missing = [k for k in keys if k not in cols]
    if missing:
        raise UsageError(f"{where} lacks the join key(s) {', '.join(missing)} of the features "
                         f"(its columns: {', '.join(cols)})")
    if lab.column not in cols:
        raise UsageError(f"{where} has no column '{lab.column}'" + suggest(lab.column, cols))
    stamps = [n for n, t in cols.items() if pa.types.is_timestamp(t)]
    timestamp = lab.timestamp
    if timestamp is None:
        if len(stamps) != 1:
            raise UsageError(f"{where}: say which column is the time each label observes: "
                             + ("it has no timestamp column" if not stamps
                                else f"it has {', '.join(stamps)}"),
                             hint=f'label("{lab.table}", "{lab.column}", timestamp="...")')
        timestamp = stamps[0]
    elif timestamp not in stamps:
        raise UsageError(f"{where}: timestamp column '{timestamp}' "
                         + ("is missing" + suggest(timestamp, stamps) if timestamp not in cols
                            else f"holds {cols[timestamp]}, not timestamps"))
    split_by = definition.split.by or timestamp
    if split_by not in stamps:
        raise UsageError(f"model '{definition.name}': time_split(by='{split_by}') is not a "
                         f"timestamp column of '{lab.table}'" + suggest(split_by, stamps))
    outputs = set(resolved.outputs)
    extra = [c for c in _wanted_slices(definition) if c in cols and c not in outputs]
    columns = list(dict.fromkeys([*keys, timestamp, lab.column, split_by, *extra]))
    select = ", ".join(quote_ident(c) for c in columns)
    sql = f"SELECT {select} FROM {quote_ident(lab.table)}" \
        + (f" WHERE {lab.where}" if lab.where else "")
    return _LabelPlan(lab.table, timestamp, split_by, columns, sql)


def _wanted_slices(definition: ModelDefinition) -> list[str]:
    by = [getattr(g, "by", None) for g in definition.gates]
    return list(dict.fromkeys([*definition.slices, *(b for b in by if isinstance(b, str))]))


def _slice_columns(definition: ModelDefinition, frame: pd.DataFrame) -> list[str]:
    return [c for c in _wanted_slices(definition) if c in frame.columns]


def _training_frame(project: Project, definition: ModelDefinition, resolved: Resolved,
                    plan: _LabelPlan, pins: dict[str, int],
                    defs: registry.Definitions | None,
                    warnings: list[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The point-in-time training frame (labels + features) and the table versions it read."""
    from tarmac.lake.sql import connect

    label_pin: dict[str, int | datetime | str] | None = (
        {plan.table: pins[plan.table]} if plan.table in pins else None)
    bound: dict[str, int] = {}
    con = connect(project.lake, plan.sql, as_of=label_pin, bound=bound)
    try:
        labels = con.sql(plan.sql).to_arrow_table()
    finally:
        con.close()
    lab = definition.label
    where = f"label table '{plan.table}'" + (f" (where {lab.where})" if lab.where else "")
    if labels.num_rows == 0:
        raise UsageError(f"model '{definition.name}': {where} has no rows")
    import pyarrow.compute as pc

    keep = pc.and_(pc.is_valid(labels[lab.column]), pc.is_valid(labels[plan.timestamp]))
    keep = pc.and_(keep, pc.is_valid(labels[plan.split_by]))
    dropped = labels.num_rows - pc.sum(keep).as_py()
    if dropped:
        labels = labels.filter(keep)
        warnings.append(f"{dropped:,} label rows with a null label or time were left out")
    if labels.num_rows == 0:
        raise UsageError(f"model '{definition.name}': every row of {where} has a null "
                         f"'{lab.column}' or time")
    view_tables = _view_tables(project, resolved) if pins else set()
    view_pins = {t: v for t, v in pins.items() if t in view_tables}
    ts = project.features.training_set(labels, definition.features, timestamp=plan.timestamp,
                                       label=lab.column, as_of=view_pins or None,
                                       definitions=defs)
    table = ts.to_arrow()
    inputs = {**bound, **ts.inputs}
    features = ts.features
    matched = table.num_rows
    if features:
        import pyarrow.compute as pc

        any_value = None
        for f in features:
            valid = pc.is_valid(table[f])
            any_value = valid if any_value is None else pc.or_(any_value, valid)
        matched = pc.sum(any_value).as_py() or 0
    if matched == 0:
        raise UsageError(
            f"model '{definition.name}': none of the {table.num_rows:,} label rows matched any "
            f"feature value: the labels' {', '.join(resolved.join_keys)} and times do not "
            "overlap the feature views' rows",
            hint="check the label keys match the entities and the label times come after the "
                 "feature rows")
    if matched < table.num_rows:
        warnings.append(f"{table.num_rows - matched:,} of {table.num_rows:,} label rows have "
                        "no feature values at their time (kept: the model sees nulls)")
    return table.to_pandas(), inputs


def _view_tables(project: Project, resolved: Resolved) -> set[str]:
    from tarmac.lake.sql import referenced_tables

    tables: set[str] = set()
    for part in resolved.parts:
        src = part.view.source
        if isinstance(src, SqlSource):
            tables |= referenced_tables(project.lake, src.query)
        else:
            tables.add(src.lower())
    return tables


def _feature_types(resolved: Resolved) -> dict[str, str]:
    out = {o: t for p in resolved.parts for _, o, t in p.features if o not in p.hidden}
    out.update({o: t for d in resolved.demand for _, o, t in d.features})
    return out


def _definition_versions(project: Project, resolved: Resolved, definition: ModelDefinition,
                         defs: registry.Definitions | None,
                         reproduce: mcat.TrainRun | None) -> dict[str, int]:
    """kind:name -> registered version of every definition the features come from."""
    if reproduce is not None:
        return dict(reproduce.definitions)
    current = fcat.current_definitions(project.catalog)
    wanted = {("view", p.view.name) for p in resolved.parts}
    wanted |= {("on_demand", d.view.name) for d in resolved.demand}
    wanted |= {("entity", e.name) for p in resolved.parts for e in p.view.entities}
    if isinstance(definition.features, str):
        wanted.add(("service", definition.features))
    return {f"{k}:{n}": current[(k, n)].version for k, n in sorted(wanted) if (k, n) in current}


def _recorded_definitions(project: Project, versions: dict[str, int]) -> registry.Definitions:
    """The feature definitions a run used, rebuilt from the registry's history."""
    chosen: dict[tuple[str, str], fcat.Definition] = {}
    for ref, version in versions.items():
        kind, _, name = ref.partition(":")
        history = {d.version: d for d in fcat.definition_history(project.catalog, kind, name)}
        if version not in history:
            raise UsageError(f"the run used {kind} '{name}' v{version}, which the registry no "
                             "longer has")
        chosen[(kind, name)] = history[version]
    live = project.features.declared().on_demand if any(
        k == "on_demand" for k, _ in chosen) else {}
    return registry.from_specs(chosen, live)


def _parquet(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    return sink.getvalue()


def _empty_features(profile: dict[str, Any]) -> list[str]:
    """Warnings for features without a single value in the training rows: the model learns
    nothing from them, and it usually means stale or missing data (a ttl, a broken join)."""
    return [f"feature '{name}' is null in all {s['count']:,} training rows: the model learns "
            "nothing from it (stale or missing data? check its view's ttl and source)"
            for name, s in profile.items() if s.get("count") and s.get("nulls") == s["count"]]


def _profile(frame: pd.DataFrame, features: list[Feature]) -> dict[str, Any]:
    """The reference profile of the training features (what the monitors compare against),
    in the stored form of ``tarmac.profile.TableProfile.to_dict()``, with each feature's drift
    sketch so that ``p.monitoring.drift(version.reference_profile, live)`` tests at full
    resolution."""
    from tarmac.profile import profile

    table = pa.Table.from_pandas(frame[[f.name for f in features]], preserve_index=False)
    return profile(table, types={f.name: f.dtype for f in features}, sketch=True).to_dict()


# -- the catalog side --------------------------------------------------------------------------


def _open_train_run(project: Project, definition: ModelDefinition, run_id: str, ts_run: Any,
                    params: dict[str, Any], inputs: dict[str, int], versions: dict[str, int],
                    reproduce: mcat.TrainRun | None) -> int:
    """Record the run (status running) and the training set's lineage; returns the run number."""
    name = definition.name
    env = environment.capture(project.root)

    def commit(seq: int) -> None:
        record = mcat.TrainRun(
            run_id=run_id, model=name, seq=seq, status="running", started_at=now_us(),
            actor=project.ledger.actor, reproduces=reproduce.run_id if reproduce else None,
            params=params, inputs=inputs, definitions=versions, environment=env,
            details={"code_hash": definition.code_hash(), "spec": definition.spec()})
        project.ledger.commit("model.training_set", f"training_set:{name}",
                              {"run": seq, "inputs": inputs},
                              change=lambda conn: mcat.insert_train_run(conn, record),
                              run=ts_run, output=DatasetVersion(f"training_set:{name}", seq))

    return _numbered(project, lambda conn: mcat.next_seq(conn, name), commit,
                     f"the training run of '{name}'")


def _numbered(project: Project, next_number: Callable[[Any], int],
              commit: Callable[[int], None], what: str) -> int:
    """Commit under the next free number: the number is read first (the audit details and the
    lineage edge carry it), so a concurrent commit that took it makes this one take the next."""
    for _ in range(_RETRIES):
        with project.catalog.engine.connect() as conn:
            number = next_number(conn)
        try:
            commit(number)
            return number
        except IntegrityError:
            continue
    raise ConflictError(f"could not number {what}: too many concurrent runs")


def _record_failure(project: Project, name: str, run_id: str, error: TarmacError,
                    trace: str | None = None) -> TarmacError:
    """Record the training run as failed with its traceback; returns the error to raise."""
    text = trace or error.message
    project.ledger.commit(
        "model.train_failed", f"model:{name}", {"run_id": run_id, "error": error.message[:500]},
        change=lambda conn: mcat.finish_train_run(conn, run_id, status="failed", error=text))
    return error


def _register(project: Project, definition: ModelDefinition, run: Any, seq: int,
              resolved: Resolved, plan: _LabelPlan, fitted: _Fitted, profile: dict[str, Any],
              warnings: list[str]) -> int:
    """Register the version, finish the run and record the version as a feature consumer."""
    name = definition.name
    spec = {**_spec(definition, resolved, plan), "classes": fitted.classes}

    def commit(version: int) -> None:
        mv = mcat.ModelVersion(
            model=name, version=version, run_id=run.id, flavor=fitted.flavor, task=fitted.task,
            artifact=fitted.artifact, holdout=fitted.holdout, signature=fitted.signature,
            spec=spec, created_at=now_us(), actor=project.ledger.actor, metrics=fitted.metrics,
            profile=profile, description=definition.description or None,
            tags=dict(definition.tags))

        def change(conn: Any) -> None:
            mcat.insert_version(conn, mv)
            mcat.finish_train_run(
                conn, run.id, status="succeeded", version=version, metrics=fitted.metrics,
                slices=fitted.slices, fit_seconds=fitted.fit_seconds,
                details={"rows_train": fitted.rows[0], "rows_test": fitted.rows[1],
                         "flavor": fitted.flavor, "task": fitted.task,
                         "artifacts": {"model": fitted.artifact, "holdout": fitted.holdout},
                         "artifact_bytes": fitted.artifact_bytes, "warnings": warnings})
            fcat.set_consumer(conn, f"model:{name}@{version}", resolved.refs)

        project.ledger.commit(
            "model.register", f"model:{name}",
            {"version": version, "run": seq, "flavor": fitted.flavor,
             "artifact": fitted.artifact, "metrics": fitted.metrics}, change=change, run=run,
            output=DatasetVersion(f"model:{name}", version))

    return _numbered(project, lambda conn: mcat.next_version(conn, name), commit,
                     f"a version of '{name}'")


__all__ = ["Declared", "TrainResult", "declared", "declared_holdout", "train"]
