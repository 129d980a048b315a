"""Evaluating a monitor: one window of a served model's predictions, every declared check, the
results stored, alerts sent and the retraining policy started.

A monitor's windows end on multiples of its ``every`` (UTC, from the epoch) and are ``window``
long, so the window due at a time is always the same window whoever evaluates it: the
scheduler, ``tarmac monitor run`` from cron, or a notebook. Each window is claimed in the catalog
first (``tarmac.catalog.monitors.claim_window``): evaluated once, by one process; a crashed
evaluation is taken over and its rows replaced.

What one evaluation does (``run_monitor``):

1. read the window's predictions (``predictions`` lake table, the model's endpoint, shadows
   left out) and unpack the logged features into typed columns, typed like the reference;
2. **drift** of each feature and of the score against the reference (the profile stored with
   the champion version and its holdout scores, a table or SQL, or an earlier time range of the
   log), with ``tarmac.monitoring.drift``;
3. **quality**: null rates, ranges, new categories, freshness, missing and stale features;
4. **performance** from late labels: this window and every earlier window still inside the
   label delay are joined again, so a window's figure fills in as labels arrive (its rows are
   replaced, never added); incomplete windows are marked, not judged;
5. **SLO**: p99 latency and error rate of the champion's answers;
6. every row goes to ``monitor_results``; the window's summary, with an audit record, to the
   catalog; failing checks to the alert channels (one notice per episode);
7. a decayed performance or drifted input starts the ``on_decay`` / ``on_drift`` policy, and
   loops already running advance (a canary that has served long enough is judged).

Example::

    from tarmac.monitoring.monitor import run_monitor
    evaluation = run_monitor(p, "churn")          # the window due now
    evaluation.verdict, [r.identity for r in evaluation.failing]
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tarmac import faults
from tarmac.catalog import monitors as moncat
from tarmac.errors import TarmacError, UsageError
from tarmac.features.definitions import suggest
from tarmac.humanize import duration
from tarmac.monitoring._drift import ColumnDrift, drift
from tarmac.monitoring._labels import join_labels
from tarmac.monitoring._performance import performance
from tarmac.monitoring.alerts import FIRING_VERDICTS, Alerter, CheckResult, Notice
from tarmac.monitoring.declare import MonitorDefinition, PerformanceCheck, RetrainPolicy
from tarmac.monitoring.results import (
    RESULTS_TABLE,
    ResultRow,
    read_results,
    to_table,
    write_results,
)

if TYPE_CHECKING:
    from tarmac.catalog.models import ModelVersion
    from tarmac.profile import TableProfile
    from tarmac.project import Project

_log = logging.getLogger("tarmac.monitoring")

PREDICTIONS = "predictions"
#: fewest logged predictions an SLO is judged on
SLO_MIN_ROWS = 20
#: earlier windows whose performance is recomputed as late labels arrive, at most
BACKFILL_WINDOWS = 200
#: characters of an error kept on a failed run
ERROR_CHARS = 2000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PREDICTION_COLUMNS = ["id", "time", "endpoint", "model", "version", "role", "shadow",
                       "features", "feature_status", "request", "score", "label",
                       "latency_ms", "error"]


@dataclass(frozen=True)
class Evaluation:
    """What one evaluated window found: every result row, the failing ones, the verdict
    (``passed``, ``failed``, or ``no data`` when nothing could be judged), the notices sent
    and the retraining loop it started or advanced."""

    monitor: str
    model: str
    run_id: str
    window_start: datetime
    window_end: datetime
    version: int | None
    rows: tuple[ResultRow, ...]
    predictions: int
    notices: tuple[Notice, ...] = ()
    loop: moncat.RetrainLoop | None = None
    advanced: tuple[moncat.RetrainLoop, ...] = ()
    seconds: float = 0.0
    attempts: int = 1

    @property
    def failing(self) -> list[ResultRow]:
        return [r for r in self.rows if r.verdict in FIRING_VERDICTS]

    @property
    def undecided(self) -> list[ResultRow]:
        return [r for r in self.rows
                if r.verdict not in FIRING_VERDICTS and r.verdict not in ("passed", "ok",
                                                                          "not drifted")]

    @property
    def verdict(self) -> str:
        if self.failing:
            return "failed"
        return "no data" if len(self.undecided) == len(self.rows) else "passed"

    def summary(self) -> dict[str, Any]:
        """What the catalog keeps of the window (and ``--json`` prints)."""
        return {"monitor": self.monitor, "model": self.model, "version": self.version,
                "run_id": self.run_id, "window_start": self.window_start.isoformat(),
                "window_end": self.window_end.isoformat(), "verdict": self.verdict,
                "predictions": self.predictions, "checks": len(self.rows),
                "failing": [_brief(r) for r in self.failing],
                "undecided": len(self.undecided),
                "alerts": [{"state": n.state, "check": n.alert.result.check,
                            "column": n.alert.result.column, "delivered": n.delivered}
                           for n in self.notices],
                "loop": self.loop.to_dict() if self.loop else None,
                "advanced": [lp.to_dict() for lp in self.advanced]}


def _brief(r: ResultRow) -> dict[str, Any]:
    return {"check": r.check, "metric": r.metric, "column": r.column, "slice": r.slice,
            "verdict": r.verdict, "value": _finite(r.value), "threshold": _finite(r.threshold),
            "effect": r.effect_class, "reason": r.reason}


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else round(v, 6)


# -- declarations and windows ---------------------------------------------------------------


def declared_monitors(project: Project) -> dict[str, MonitorDefinition]:
    """The monitors ``definitions.py`` declares now, by name (two with one name: an error)."""
    from tarmac.features.registry import import_definitions

    path = project.features.definitions_path
    if not path.exists():
        return {}
    module = import_definitions(path)
    found: dict[str, MonitorDefinition] = {}
    for value in vars(module).values():
        if isinstance(value, MonitorDefinition):
            if value.name in found and found[value.name] is not value:
                raise UsageError(f"two monitors are named {value.name!r} in {path}",
                                 hint="give each monitor(...) its own name")
            found[value.name] = value
    return found


def definition_of(project: Project, name: str | MonitorDefinition) -> MonitorDefinition:
    if isinstance(name, MonitorDefinition):
        return name
    found = declared_monitors(project)
    if name not in found:
        raise UsageError(f"no monitor named {name!r} in {project.features.definitions_path}"
                         + suggest(name, found, none=" (it declares no monitors)"),
                         hint="declare it with monitor(...) from tarmac.monitoring.declare")
    return found[name]


def _us(at: datetime) -> int:
    return int((at - EPOCH) / timedelta(microseconds=1))


def _at(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def window_due(definition: MonitorDefinition, at: datetime | None = None
               ) -> tuple[datetime, datetime]:
    """The window evaluated at ``at`` (default now): it ends on the last multiple of
    ``every`` at or before ``at`` and is ``window`` long."""
    at = _utc(at or datetime.now(UTC))
    every = int(definition.every / timedelta(microseconds=1))
    end = _at(_us(at) // every * every)
    return end - definition.window, end


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


# -- reading the window ---------------------------------------------------------------------


def _read_predictions(project: Project, model: str, start: datetime, end: datetime,
                      ) -> pa.Table | None:
    """The endpoint's non-shadow predictions with ``start <= time < end``; ``None`` when the
    prediction log has never been written."""
    if not project.lake.exists(PREDICTIONS):
        return None
    ts = pa.timestamp("us", tz="UTC")
    wanted = ((pc.field("endpoint") == model) & (pc.field("time") >= pa.scalar(start, ts))
              & (pc.field("time") < pa.scalar(end, ts)))
    table = project.lake.read(PREDICTIONS, filter=wanted)
    if "shadow" in table.column_names:
        table = table.filter(pc.invert(pc.fill_null(table.column("shadow"), False)))
    return table


_NUMERIC_JSON = ("BIGINT", "UBIGINT", "DOUBLE")


def unpack_features(table: pa.Table, kinds: dict[str, str]) -> pa.Table:
    """The ``features`` JSON of logged predictions as one typed column per feature (numeric
    as float64, boolean as bool, the rest as text), in one DuckDB pass. A feature whose logged
    values are mostly of another JSON type than its kind (text where numbers were expected) is
    returned as text, so quality and drift see the type change instead of silent nulls."""
    import duckdb

    if not kinds:
        return pa.table({})
    if table.num_rows == 0 or "features" not in table.column_names:
        return pa.table({n: pa.array([], _arrow(k)) for n, k in kinds.items()})
    con = duckdb.connect()
    try:
        con.register("t", table.select(["features"]))
        paths = {n: "'$.\"" + n.replace("'", "''").replace('"', '\\"') + "\"'" for n in kinds}
        types = ", ".join(f"mode(json_type(features, {p})) FILTER (WHERE json_type(features, "
                          f"{p}) NOT IN ('NULL')) AS \"c{i}\"" for i, p in
                          enumerate(paths.values()))
        modes = (con.sql(f"SELECT {types} FROM t").fetchall() or [()])[0]
        exprs = []
        for i, (name, kind) in enumerate(kinds.items()):
            path, seen = paths[name], modes[i] if i < len(modes) else None
            expected = {"numeric": _NUMERIC_JSON, "boolean": ("BOOLEAN",)}.get(kind)
            text = f"json_extract_string(features, {path})"
            if expected is not None and (seen is None or seen in expected):
                sql_type = "DOUBLE" if kind == "numeric" else "BOOLEAN"
                exprs.append(f"TRY_CAST({text} AS {sql_type})")
            else:
                exprs.append(text)
        cols = ", ".join(f"{e} AS \"c{i}\"" for i, e in enumerate(exprs))
        out = con.sql(f"SELECT {cols} FROM t").to_arrow_table()
    finally:
        con.close()
    return pa.table(dict(zip(kinds, out.columns, strict=True)))


def _arrow(kind: str) -> pa.DataType:
    return {"numeric": pa.float64(), "boolean": pa.bool_()}.get(kind, pa.string())


# -- the reference ----------------------------------------------------------------------------


@dataclass
class _Reference:
    profile: TableProfile  # features (and score, when known) as a profile, for drift & quality
    kinds: dict[str, str]  # feature -> kind
    rows: int
    what: str


def _features_of(record: ModelVersion, check_features: Sequence[str] | str,
                 reference: _Reference) -> list[str]:
    names = list(reference.kinds)
    if check_features == "all":
        return names
    missing = [f for f in check_features if f not in reference.kinds]
    if missing:
        raise UsageError(f"drift(features=...) names {', '.join(map(repr, missing))}, not "
                         f"features of model '{record.model}' (features: {', '.join(names)})")
    return list(check_features)


def _reference(project: Project, definition: MonitorDefinition, record: ModelVersion,
               at: datetime) -> _Reference:
    from tarmac.profile import TableProfile, profile

    ref = definition.reference
    if ref == "training":
        stored = record.reference_profile
        if len(stored) == 0:
            raise UsageError(f"model '{record.model}' v{record.version} has no stored training "
                             "profile to compare against",
                             hint="retrain it, or give the monitor reference= a table or a "
                                  "time range of the prediction log")
        columns = list(stored.columns)
        if definition.drift is not None and definition.drift.predictions:
            scores = _holdout_scores(project, record)
            if scores is not None and len(scores) > 0:
                columns += list(profile(pa.table({"score": scores}), sketch=True).columns)
        return _Reference(TableProfile(stored.rows, tuple(columns)),
                          {c.name: str(c.kind) for c in stored.columns}, stored.rows,
                          f"the training profile of v{record.version}")
    stored = record.reference_profile
    kinds: dict[str, str] = {c.name: c.kind for c in stored.columns}
    if not isinstance(ref, str):
        from tarmac.humanize import parse_duration

        since = at - parse_duration(ref["since"])
        until = at - parse_duration(ref["until"]) if ref.get("until") else at
        logged = _read_predictions(project, definition.model, since, until)
        if logged is None or logged.num_rows == 0:
            raise UsageError(f"monitor {definition.name!r}: the reference time range "
                             f"{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC has no "
                             "predictions", hint="widen the range or use reference='training'")
        table = unpack_features(logged, kinds)
        table = table.append_column("score", logged.column("score"))
        what = f"predictions from {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC"
    else:
        from tarmac.lake.lake import is_table_name

        text = ref.strip()
        table = project.lake.read(text) if is_table_name(text) else project.sql(text)
        what = f"'{text[:60]}'"
    if table.num_rows == 0:
        raise UsageError(f"monitor {definition.name!r}: the reference {what} has no rows: "
                         "there is nothing to compare against",
                         hint="check the reference table, query or time range")
    keep = [c for c in table.column_names if c in kinds or c == "score"]
    prof = profile(table.select(keep), sketch=True)
    return _Reference(prof, {c.name: str(c.kind) for c in prof.columns if c.name != "score"},
                      table.num_rows, what)


_HOLDOUT_SCORES: dict[tuple[str, str, int, str], np.ndarray | None] = {}


def _holdout_scores(project: Project, record: ModelVersion) -> np.ndarray | None:
    """The version's scores on its own holdout rows: the reference of its output. Kept per
    process by artifact (a version's artifact and holdout never change), so a scheduler does
    not load and score the model again for every window."""
    key = (str(project.root), record.model, record.version, record.artifact)
    if key not in _HOLDOUT_SCORES:
        if len(_HOLDOUT_SCORES) > 32:
            _HOLDOUT_SCORES.clear()
        _HOLDOUT_SCORES[key] = _score_holdout(project, record)
    return _HOLDOUT_SCORES[key]


def _score_holdout(project: Project, record: ModelVersion) -> np.ndarray | None:
    try:
        holdout = project.models.holdout(record)
        loaded = project.models.get(record.model, record.version)
        scores = loaded.predict_scores(holdout, empty="null")
    except TarmacError as exc:
        _log.warning("no reference for the score of %s v%s: %s", record.model, record.version,
                     exc)
        return None
    if scores is None:
        return None
    scores = np.asarray(scores, dtype=float)
    return scores if scores.ndim == 1 else None


# -- the checks -------------------------------------------------------------------------------


def _drift_rows(definition: MonitorDefinition, reference: _Reference, current: pa.Table,
                features: list[str]) -> list[ResultRow]:
    check = definition.drift
    assert check is not None
    columns = list(features)
    if check.predictions and "score" in current.column_names \
            and "score" in reference.profile.names:
        columns.append("score")
    report = drift(reference.profile, current, columns, alpha=check.alpha,
                   correction=check.correction,  # type: ignore[arg-type]
                   min_effect=check.min_effect,  # type: ignore[arg-type]
                   min_rows=check.min_rows)
    rows = []
    for c in report:
        cuts = report.thresholds.get(c.effect or "")
        floor = cuts[("small", "medium", "large").index(report.min_effect)] \
            if cuts and report.min_effect != "none" else None
        rows.append(ResultRow(
            "drift", c.test or "drift", c.verdict, column=c.column, value=c.statistic,
            threshold=floor, effect_size=c.effect_size, effect_class=c.effect_class,
            p_value=c.p_adjusted, n_reference=c.reference_count, n_current=c.current_count,
            reason="; ".join(x for x in (c.reason, c.note) if x), detail=_sketches(c)))
    return rows


def _sketches(c: ColumnDrift) -> dict[str, Any]:
    return {"kind": c.kind, "effect": c.effect, "statistic": c.statistic,
            "p_value": c.p_value, "reference": c.reference.to_dict() if c.reference else None,
            "current": c.current.to_dict() if c.current else None}


def _slo_rows(definition: MonitorDefinition, logged: pa.Table) -> list[ResultRow]:
    check = definition.slo
    assert check is not None
    served = logged.filter(pc.equal(logged.column("role"), "champion")) \
        if "role" in logged.column_names else logged
    n = served.num_rows
    rows = []
    if check.p99_ms is not None:
        latency = served.column("latency_ms").drop_null().to_numpy() if n else np.array([])
        if len(latency) < SLO_MIN_ROWS:
            rows.append(ResultRow("slo", "p99_ms", "not enough data", threshold=check.p99_ms,
                                  n_current=len(latency),
                                  reason=f"{len(latency)} timed predictions in the window, "
                                         f"under {SLO_MIN_ROWS}"))
        else:
            p99 = float(np.percentile(latency, 99))
            bad = p99 > check.p99_ms
            rows.append(ResultRow("slo", "p99_ms", "breached" if bad else "ok", value=p99,
                                  threshold=check.p99_ms, n_current=len(latency),
                                  reason=f"p99 latency {p99:.1f} ms "
                                         f"{'over' if bad else 'within'} {check.p99_ms:g} ms"))
    if check.error_rate is not None:
        if n < SLO_MIN_ROWS:
            rows.append(ResultRow("slo", "error_rate", "not enough data",
                                  threshold=check.error_rate, n_current=n,
                                  reason=f"{n} predictions in the window, under "
                                         f"{SLO_MIN_ROWS}"))
        else:
            errors = n - served.column("error").null_count
            rate = errors / n
            bad = rate > check.error_rate
            rows.append(ResultRow("slo", "error_rate", "breached" if bad else "ok", value=rate,
                                  threshold=check.error_rate, n_current=n,
                                  reason=f"{errors:,} of {n:,} predictions failed "
                                         f"({rate:.2%}; allowed {check.error_rate:.2%})"))
    return rows


def _performance_rows(project: Project, definition: MonitorDefinition, record: ModelVersion,
                      windows: Sequence[tuple[str, datetime, datetime]], now: datetime,
                      ) -> dict[str, list[ResultRow]]:
    """Performance rows per run id: each window (run id, start, end) joined with the labels
    that have arrived by ``now``."""
    check = definition.performance
    assert check is not None
    first, last = min(w[1] for w in windows), max(w[2] for w in windows)
    logged = _read_predictions(project, definition.model, first, last)
    out: dict[str, list[ResultRow]] = {w[0]: [] for w in windows}
    label = check.labels
    if logged is not None and "role" in logged.column_names:
        logged = logged.filter(pc.equal(logged.column("role"), "champion"))
    if logged is None or logged.num_rows == 0 or not project.lake.exists(label.table):
        why = "no predictions in the window" if logged is None or logged.num_rows == 0 \
            else f"no labels yet: the lake has no table '{label.table}'"
        for run_id, _s, _e in windows:
            out[run_id] = [ResultRow("performance", m, "not enough data", slice="(all)",
                                     reason=why) for m in check.metrics]
        return out
    labels: Any = label.table
    if label.where:
        labels = f"SELECT * FROM {label.table} WHERE {label.where}"
    by_id = check.join == "id" or (check.join == "auto" and "prediction_id" in
                                   project.lake.scan(label.table).schema.names)
    keys = record.spec.get("keys") or []
    if not by_id and len(keys) != 1:
        raise UsageError(f"monitor {definition.name!r}: a join by entity and time needs one "
                         f"entity key, model '{record.model}' has {keys}",
                         hint="give the labels a prediction_id column and join='id'")
    joined = join_labels(project, logged, labels, label_column=label.column,
                         entity=None if by_id else keys[0],
                         timestamp=None if by_id else label.timestamp, delay=check.delay)
    floors = _floors(check, record)
    # the slices declared, else those the model's gates judge (slice_metric(..., by=...))
    slices = list(check.slices) or [str(x) for x in record.spec.get("slices") or []]
    for run_id, start, end in windows:
        part = joined.table.filter((pc.field("time") >= pa.scalar(start, pa.timestamp(
            "us", tz="UTC"))) & (pc.field("time") < pa.scalar(end, pa.timestamp("us", tz="UTC"))))
        if part.num_rows == 0:
            out[run_id] = [ResultRow("performance", m, "not enough data", slice="(all)",
                                     reason="no predictions of the champion in the window")
                           for m in check.metrics]
            continue
        table = performance(part, check.metrics, window=end - start, slices=slices,
                            complete_after=check.delay, min_coverage=check.min_coverage,
                            min_rows=check.min_rows, now=now, origin=start)
        counts = {"labels": joined.summary(),
                  "note": "label counts over the labels table and the predictions of the "
                          "windows judged in this evaluation"}
        for row in table.to_pylist():
            judged = _judge(row, floors, check)
            if row["slice"] == "(all)":
                judged = replace(judged, detail=counts)
            out[run_id].append(judged)
    return out


def _floors(check: PerformanceCheck, record: ModelVersion) -> dict[str, tuple[float | None,
                                                                             str]]:
    """Per metric, the lowest acceptable value and why: the champion's holdout figure less
    ``max_drop``, or ``min[metric]``, whichever is higher."""
    out: dict[str, tuple[float | None, str]] = {}
    for m in check.metrics:
        base = record.metrics.get(m)
        candidates = []
        if base is not None and math.isfinite(base):
            candidates.append((base - check.max_drop,
                               f"v{record.version}'s holdout {m} {base:.3f} less "
                               f"{check.max_drop:g}"))
        if m in check.minimum:
            candidates.append((check.minimum[m], f"the declared minimum {check.minimum[m]:g}"))
        out[m] = max(candidates, key=lambda c: c[0]) if candidates else (None, "")
    return out


def _judge(row: dict[str, Any], floors: dict[str, tuple[float | None, str]],
           check: PerformanceCheck) -> ResultRow:
    floor, why = floors.get(row["metric"], (None, ""))
    value = row["value"]
    common = {"slice": row["slice"], "value": value, "threshold": floor,
              "n_reference": row["n_predictions"], "n_current": row["n_labeled"]}
    if not row["complete"]:
        return ResultRow("performance", row["metric"], "incomplete",
                         reason=row["reason"] or "labels are not complete yet", **common)
    if value is None:
        return ResultRow("performance", row["metric"], "not enough data",
                         reason=row["reason"] or "the metric is undefined", **common)
    if floor is None:
        return ResultRow("performance", row["metric"], "ok",
                         reason=f"{row['metric']} {value:.3f} (no baseline to compare with)",
                         **common)
    decayed = value < floor
    return ResultRow("performance", row["metric"], "decayed" if decayed else "ok",
                     effect_size=value - floor,
                     reason=f"{row['metric']} {value:.3f} {'under' if decayed else 'at or above'}"
                            f" {floor:.3f} ({why}) on {row['n_labeled']:,} labelled of "
                            f"{row['n_predictions']:,} predictions", **common)


# -- evaluating one window ---------------------------------------------------------------------


def evaluate(project: Project, definition: MonitorDefinition, window_start: datetime,
             window_end: datetime, *, run_id: str = "adhoc", now: datetime | None = None,
             ) -> tuple[list[ResultRow], dict[str, list[ResultRow]], ModelVersion | None, int]:
    """Every declared check on one window, nothing stored: the rows of this window, the
    performance rows of earlier windows recomputed (by run id), the champion evaluated and the
    number of predictions in the window."""
    now = _utc(now or datetime.now(UTC))
    model = definition.model
    try:
        record = project.models.version(model, alias="champion")
    except UsageError as exc:
        row = ResultRow("quality", "champion", "not enough data",
                        reason=f"model '{model}' has no champion to monitor: {exc.message}")
        return [row], {}, None, 0
    logged = _read_predictions(project, model, window_start, window_end)
    if logged is None:
        reason = (f"no prediction log yet: model '{model}' has not been served with the "
                  "prediction log on (the lake has no 'predictions' table)")
        empty = [ResultRow("quality", "predictions", "not enough data", reason=reason)]
        if definition.quality is not None and definition.quality.freshness is not None:
            empty.append(ResultRow("quality", "freshness", "failed", reason=reason))  # the log's,
            # as quality_rows names it (column None), so both raise the same alert
        return empty, {}, record, 0
    rows: list[ResultRow] = []
    reference = _reference(project, definition, record, now)
    features = _features_of(record, definition.drift.features if definition.drift else "all",
                            reference)
    current = unpack_features(logged, {f: str(reference.kinds.get(f, "categorical"))
                                       for f in features})
    if "score" in logged.column_names:  # the output of the version judged, not its elders'
        mine = pc.equal(logged.column("version"), record.version)
        current = current.append_column("score", pc.if_else(
            pc.fill_null(mine, False), logged.column("score"), pa.scalar(None, pa.float64())))
    if logged.num_rows == 0:
        rows.append(ResultRow("quality", "predictions", "not enough data", n_current=0,
                              reason=f"no predictions of '{model}' from "
                                     f"{window_start:%Y-%m-%d %H:%M} to "
                                     f"{window_end:%Y-%m-%d %H:%M} UTC"))
    if definition.drift is not None:
        rows += _drift_rows(definition, reference, current, features)
    if definition.quality is not None:
        rows += _quality_rows(project, definition, record, reference, current, logged, now,
                              features)
    backfill: dict[str, list[ResultRow]] = {}
    if definition.performance is not None:
        windows = [(run_id, window_start, window_end)]
        horizon = window_end - definition.performance.delay - definition.window
        for earlier in moncat.monitor_runs(project.catalog, definition.name,
                                           limit=BACKFILL_WINDOWS, status="succeeded"):
            if earlier.run_id != run_id and _at(earlier.window_end) > horizon \
                    and earlier.window_end < _us(window_end):
                windows.append((earlier.run_id, _at(earlier.window_start),
                                _at(earlier.window_end)))
        found = _performance_rows(project, definition, record, windows, now)
        rows += found.pop(run_id)
        backfill = found
    if definition.slo is not None:
        rows += _slo_rows(definition, logged)
    return rows, backfill, record, logged.num_rows


def _quality_rows(project: Project, definition: MonitorDefinition, record: ModelVersion,
                  reference: _Reference, current: pa.Table, logged: pa.Table, now: datetime,
                  features: list[str]) -> list[ResultRow]:
    check = definition.quality
    assert check is not None
    log_newest = None
    if check.freshness is not None:
        log_newest = _newest_prediction(project, definition.model, logged, now,
                                        check.freshness)
    views: dict[str, datetime | None] | None = None
    if check.freshness is not None:
        refs = record.spec.get("feature_refs") or {}
        names = sorted({str(ref).split(":", 1)[0] for ref in refs})
        views = _view_times(project, names)
    from tarmac.monitoring import _quality

    status = logged.column("feature_status") if "feature_status" in logged.column_names \
        else None
    from tarmac.profile import TableProfile

    feature_profile = TableProfile(reference.rows, tuple(
        c for c in reference.profile.columns if c.name in features))
    return _quality.quality_rows(check, feature_profile, current.select(
        [f for f in features if f in current.column_names]), feature_status=status,
        log_newest=log_newest, view_freshness=views, now=now,
        min_rows=definition.drift.min_rows if definition.drift else 100)


def _view_times(project: Project, names: list[str]) -> dict[str, datetime | None]:
    """The newest event each stored or stream view serves; on-demand views (computed per
    request, nothing to be stale) are left out."""
    from tarmac.monitoring._quality import view_freshness

    out: dict[str, datetime | None] = {}
    for name in names:
        try:
            out.update(view_freshness(project, [name]))
        except UsageError:  # an on-demand view: no stored values to age
            continue
    return out


def _newest_prediction(project: Project, model: str, logged: pa.Table, now: datetime,
                       fresh: timedelta) -> datetime | None:
    """The newest logged prediction of ``model``: the window's own when that one is fresh
    enough to decide the check (no need to scan the log), else one aggregate over the log."""
    if logged.num_rows:
        newest = pc.max(logged.column("time")).as_py()
        if newest is not None and now - _utc(newest) <= fresh:
            return _utc(newest)
    if not project.lake.exists(PREDICTIONS):
        return None
    name = model.replace("'", "''")
    found = project.sql(f"SELECT max(time) AS t FROM {PREDICTIONS} WHERE endpoint = '{name}'")
    newest = found.column("t")[0].as_py()
    return _utc(newest) if newest is not None else None


# -- run_monitor: claim, evaluate, store, alert, loop ------------------------------------------


def run_monitor(project: Project, name: str | MonitorDefinition, *, at: datetime | None = None,
                window_end: datetime | None = None, force: bool = False,
                alerts: bool = True, loops: bool = True,
                canary_verdict: Callable[[moncat.RetrainLoop], str] | None = None,
                ) -> Evaluation | None:
    """Evaluate the window of ``name`` due at ``at`` (default now), or the window ending at
    ``window_end`` (a multiple of ``every``: the scheduler catching up), and act on it;
    ``None`` when that window was evaluated already (``force`` evaluates it again) or another
    process is evaluating it now. ``at`` is also the evaluation's clock (which labels count
    as complete).

    The rows go to ``monitor_results``, the window's summary to the catalog with an audit
    record (``monitor.evaluated``), failing checks to the monitor's alert channels, and a
    decay or drift to its retraining policy. An evaluation that raises is recorded as failed
    (and audited) and raised again; the next run takes the window over.

    Example::

        ev = run_monitor(p, "churn", at=datetime(2026, 6, 1, tzinfo=UTC))
        ev.verdict                 # 'failed'
        [r.column for r in ev.failing if r.check == "drift"]    # ['monthly_spend', 'score']
    """
    with project.ledger.guard.acting("validate"):
        return _run_monitor(project, name, at=at, window_end=window_end, force=force,
                            alerts=alerts, loops=loops, canary_verdict=canary_verdict)


def _run_monitor(project: Project, name: str | MonitorDefinition, *,
                 at: datetime | None = None, window_end: datetime | None = None,
                 force: bool = False, alerts: bool = True, loops: bool = True,
                 canary_verdict: Callable[[moncat.RetrainLoop], str] | None = None,
                 ) -> Evaluation | None:
    definition = definition_of(project, name)
    now = _utc(at or datetime.now(UTC))
    start, end = window_due(definition, _utc(window_end) if window_end else now)
    if window_end is not None and end != _utc(window_end):
        raise UsageError(f"monitor {definition.name!r}: windows end on multiples of "
                         f"{duration(definition.every.total_seconds())}, not at "
                         f"{window_end.isoformat()}")
    claim = moncat.claim_window(project.catalog, definition.name, _us(start), _us(end),
                                force=force)
    if claim is None:
        return None
    started = time.monotonic()
    _register(project, definition)
    try:
        rows, backfill, record, count = evaluate(project, definition, start, end,
                                                 run_id=claim.run_id, now=now)
        version = record.version if record else None
        stamp = datetime.now(UTC)
        tables = [to_table(rows, run_id=claim.run_id, monitor=definition.name,
                           model=definition.model, version=version, window_start=start,
                           window_end=end, evaluated_at=stamp)]
        for run_id, earlier in backfill.items():
            found = moncat.get_monitor_run(project.catalog, run_id)
            if found is not None and earlier:
                tables.append(to_table(earlier, run_id=run_id, monitor=definition.name,
                                       model=definition.model, version=version,
                                       window_start=_at(found.window_start),
                                       window_end=_at(found.window_end), evaluated_at=stamp))
        write_results(project, pa.concat_tables(tables))
        faults.point("monitor.after_results", monitor=definition.name, run_id=claim.run_id,
                     window_end=end)
    except Exception as exc:
        error = "".join(traceback.format_exception_only(exc)).strip()[:ERROR_CHARS]
        project.ledger.commit(
            "monitor.failed", f"monitor:{definition.name}",
            {"run_id": claim.run_id, "window_end": end.isoformat(), "error": error},
            change=lambda conn: moncat.finish_run(conn, claim.run_id, status="failed",
                                                  error=error))
        raise
    evaluation = Evaluation(definition.name, definition.model, claim.run_id, start, end,
                            version, tuple(rows), count, attempts=claim.attempts)
    notices: list[Notice] = []
    if alerts and definition.alerts:
        alerter = Alerter(project, definition.alerts, cooldown=definition.cooldown)
        notices = alerter.observe(_check_results(evaluation, definition))
    started_loop, advanced = None, []
    if loops:
        started_loop = _start_policy(project, definition, evaluation, now)
        advanced = _advance(project, definition, now, canary_verdict)
    evaluation = Evaluation(definition.name, definition.model, claim.run_id, start, end,
                            version, tuple(rows), count, tuple(notices), started_loop,
                            tuple(advanced), time.monotonic() - started, claim.attempts)
    summary = evaluation.summary()
    project.ledger.commit(
        "monitor.evaluated", f"monitor:{definition.name}",
        {k: summary[k] for k in ("run_id", "window_start", "window_end", "verdict", "version",
                                 "predictions", "checks", "failing", "undecided")},
        change=lambda conn: moncat.finish_run(
            conn, claim.run_id, status="succeeded", verdict=evaluation.verdict,
            checks=len(rows), failing=len(evaluation.failing),
            undecided=len(evaluation.undecided), summary=summary))
    return evaluation


@dataclass(frozen=True)
class MonitorChange:
    """What ``apply_monitors`` found for one monitor: ``add`` (declared, never registered),
    ``change`` (its declaration differs from the registered one), ``unchanged``, or
    ``undeclared`` (registered, no longer in definitions.py: its history is kept)."""

    name: str
    model: str
    action: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "monitor", "name": self.name, "model": self.model,
                "action": self.action}


def apply_monitors(project: Project, *, dry_run: bool = False) -> list[MonitorChange]:
    """Register the monitors ``definitions.py`` declares (``tarmac apply`` does it with the
    features): new and changed ones get a ``monitor.declared`` audit record; a monitor no
    longer declared is reported, and its results and history stay. With ``dry_run`` nothing
    is registered.

    Example: ``[c.action for c in apply_monitors(p)]  # ['add']``
    """
    project.ledger.guard.check("apply")
    return _apply_monitors(project, dry_run=dry_run)


def _apply_monitors(project: Project, *, dry_run: bool = False) -> list[MonitorChange]:
    declared = declared_monitors(project)
    known = moncat.monitor_records(project.catalog)
    out = []
    for name, definition in sorted(declared.items()):
        was = known.get(name)
        action = "add" if was is None else \
            "unchanged" if was.spec_hash == definition.spec_hash() else "change"
        if action != "unchanged" and not dry_run:
            _register(project, definition)
        out.append(MonitorChange(name, definition.model, action))
    out += [MonitorChange(name, record.model, "undeclared")
            for name, record in sorted(known.items()) if name not in declared]
    return out


def _register(project: Project, definition: MonitorDefinition) -> None:
    spec = definition.spec()
    every = int(definition.every.total_seconds())
    window = int(definition.window.total_seconds())
    changed: list[bool] = []

    def change(conn: Any) -> None:
        changed.append(moncat.put_monitor(conn, definition.name, definition.model, spec,
                                          definition.spec_hash(), every, window))

    known = moncat.monitor_records(project.catalog).get(definition.name)
    if known is not None and known.spec_hash == definition.spec_hash():
        return
    project.ledger.commit("monitor.declared", f"monitor:{definition.name}",
                          {"model": definition.model, "every": duration(every),
                           "window": duration(window), "spec_hash": definition.spec_hash()},
                          change=change)


def _check_results(evaluation: Evaluation, definition: MonitorDefinition) -> list[CheckResult]:
    window = f"{evaluation.window_start:%Y-%m-%d %H:%M}/{evaluation.window_end:%Y-%m-%d %H:%M}"
    out = []
    for r in evaluation.rows:
        if r.check == "performance" and r.slice not in (None, "(all)"):
            continue  # slices are shown, the whole window alerts
        if r.metric in ("missing_features", "stale_features") and r.column is not None:
            continue  # the per-feature share says which; the overall row alerts once
        column = r.column if r.check != "performance" else None
        check = r.check if r.check in ("drift",) else f"{r.check}:{r.metric}"
        value = r.effect_size if r.check == "drift" else r.value  # what the threshold cuts
        out.append(CheckResult(definition.name, check[:64], r.verdict, column, value,
                               r.threshold, r.effect_class, window, evaluation.run_id,
                               definition.model, r.reason[:500]))
    return out


def _start_policy(project: Project, definition: MonitorDefinition, evaluation: Evaluation,
                  now: datetime) -> moncat.RetrainLoop | None:
    decayed = [r for r in evaluation.failing
               if r.check == "performance" and r.verdict == "decayed" and r.slice == "(all)"]
    drifted = [r for r in evaluation.failing if r.check == "drift"]
    policy: RetrainPolicy | None = None
    trigger: list[ResultRow] = []
    if decayed and definition.on_decay is not None:
        policy, trigger, why = definition.on_decay, decayed, "decay"
    elif drifted and definition.on_drift is not None:
        policy, trigger, why = definition.on_drift, drifted, "drift"
    if policy is None:
        return None
    from tarmac.monitoring import loop

    results = project.lake.latest(RESULTS_TABLE)
    return loop.start_loop(project, definition, policy, trigger_run=evaluation.run_id,
                           trigger={"because": why, "monitor": definition.name,
                                    "window_end": evaluation.window_end.isoformat(),
                                    "results_version": results.version() if results else None,
                                    "checks": [_brief(r) for r in trigger]}, now=now)


def _advance(project: Project, definition: MonitorDefinition, now: datetime,
             canary_verdict: Callable[[moncat.RetrainLoop], str] | None,
             ) -> list[moncat.RetrainLoop]:
    if not moncat.retrain_loops(project.catalog, model=definition.model,
                                states=moncat.OPEN_LOOP_STATES, limit=1):
        return []
    from tarmac.monitoring import loop

    return loop.advance_loops(project, [definition], now=now, canary_verdict=canary_verdict)


def latest(project: Project, name: str) -> tuple[moncat.MonitorRun | None, pa.Table]:
    """A monitor's newest evaluated window and its rows (empty when none)."""
    runs = moncat.monitor_runs(project.catalog, name, limit=1)
    if not runs:
        return None, read_results(project, "\0none")
    run = runs[0]
    if not project.lake.exists(RESULTS_TABLE):
        return run, read_results(project, "\0none")
    rows = read_results(project, name)
    return run, rows.filter(pc.equal(rows.column("run_id"), run.run_id))


__all__ = ["Evaluation", "MonitorChange", "apply_monitors", "declared_monitors",
           "definition_of", "evaluate", "latest", "run_monitor", "unpack_features",
           "window_due"]
