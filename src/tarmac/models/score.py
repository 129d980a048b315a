"""Batch scoring: a model version over SQL or a lake table, into a lake table, in one commit.

The input streams through DuckDB in Arrow record batches (memory stays bounded by the batch
size, whatever the input's size); each batch is checked against the version's signature, scored,
and written as uncommitted Parquet files in the output table's folder (``Lake.stage``). Only when
every row is scored are the files made visible, in ONE atomic Delta commit (``commit_files``):
a failure half way leaves the output table as it was.

Where the features come from:

- the input already has every column of the version's signature: they are used as they are;
- else the version was trained on a feature service and the input has its entity keys: the
  features are joined point in time through the feature store's training-set machinery, as of
  the input's timestamp column (the one timestamp column, or ``timestamp=``); an input without
  a timestamp column gets the features as of the scoring time.

Counts reconcile: every input row is in the output, scored, or with ``reject_reason`` set and
no score (a row with no value for any model input: an unknown entity, features never
materialized or stale). ``rows_in == rows_scored + rows_rejected`` is checked before the commit.
An input with no rows is refused (``allow_empty=True`` writes an empty table, with a warning).

It is a governed run ``score:NAME``: the lineage is ``inputs@version, model:NAME@V -> run ->
output@version`` and the audit trail gets a ``model.score`` record with the counts.

Example::

    result = p.models.score("churn", "SELECT customer_id, observed FROM labels", "churn_scores")
    result.rows_in, result.rows_scored, result.output_version
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import numpy as np
import pyarrow as pa

from tarmac.errors import SqlError, TarmacError, UsageError
from tarmac.features.definitions import TYPES
from tarmac.lake import quote_ident
from tarmac.lake.lake import is_table_name
from tarmac.lake.staging import action_to_dict

if TYPE_CHECKING:
    from tarmac.models.registry import LoadedModel, ModelRegistry

Progress = Callable[[int, int], None]  # (rows done, rows in total)
BATCH_ROWS = 65_536
AS_OF = "_score_as_of"
OUTPUTS = ("score", "label", "model", "version", "scored_at", "reject_reason")
EMPTY_REASON = ("no value for any model input (an unknown entity, or features never "
                "materialized or stale)")


@dataclass
class ScoreResult:
    """What a batch scoring did: counts that reconcile, where the output went, the run."""

    model: str
    version: int
    input: str
    output: str
    output_version: int | None
    mode: str
    rows_in: int
    rows_scored: int
    rows_rejected: int
    rejected: dict[str, int]  # reason -> rows
    features: str  # "input" or "feature store: SERVICE as of COLUMN"
    run_id: str
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        out["rows_per_second"] = round(self.rows_per_second, 1)
        return out


@dataclass
class _Plan:
    """The input, resolved: the SQL to read, the columns carried over, where features come from."""

    sql: str
    carried: list[str]
    features: str
    feature_service: str | None = None
    timestamp: str | None = None


def score(registry: ModelRegistry, name: str, input: str, output: str, *,
          version: int | None = None, alias: str | None = None,
          mode: Literal["overwrite", "append"] = "overwrite", timestamp: str | None = None,
          allow_empty: bool = False, batch_rows: int = BATCH_ROWS,
          progress: Progress | None = None) -> ScoreResult:
    """Score ``input`` (SQL text, or a lake table's name) with a version of ``name`` (the
    champion unless ``version`` or ``alias`` is given) into the lake table ``output``."""
    started = time.perf_counter()
    project = registry.project
    lake = project.lake
    if mode not in ("overwrite", "append"):
        raise UsageError(f"mode {mode!r}: expected 'overwrite' or 'append'")
    if not is_table_name(output):
        raise UsageError(f"invalid output table name {output!r}: use lowercase letters, digits "
                         "and underscores, starting with a letter (at most 63 characters)")
    if batch_rows < 1:
        raise UsageError(f"batch_rows must be at least 1, not {batch_rows}")
    if version is None and alias is None:
        alias = "champion"  # never the latest by accident: scoring feeds decisions
    model = registry.get(name, version, alias=alias)
    sql = _input_sql(lake, input)
    scored_at = datetime.now(UTC)
    plan = _plan(project, model, sql, timestamp, scored_at)
    total = _count(project, sql)
    warnings: list[str] = []
    if total == 0:
        if not allow_empty:
            raise UsageError(f"the input has no rows ({_describe(input)}): nothing to score",
                             hint="check the query; pass allow_empty=True (--allow-empty) to "
                                  "write an empty output table anyway")
        warnings.append(f"the input has no rows: '{output}' gets no scores")
    params = {"model": name, "version": model.version, "input": _describe(input),
              "output": output, "mode": mode, "features": plan.features}
    with project.ledger.run(f"score:{name}", params=params) as run:
        run.add_input(f"model:{name}", model.version)
        schema = _output_schema(model, plan, _input_schema(project, model, plan))
        stager = lake.stage(output, f"score-{run.id[:8]}-{uuid.uuid4().hex[:8]}")
        counts = _Counts()
        try:
            reader = _reader(project, model, plan, batch_rows)
            for batch in reader:
                stager.write(_score_batch(model, plan, batch, schema, scored_at, counts))
                if progress is not None:
                    progress(counts.rows_in, total)
            files = [action_to_dict(a) for a in stager.close()]
            counts.check(stager.rows)
        except BaseException:
            stager.abort()
            raise
        details = {"model": f"{name}@{model.version}", "rows_in": counts.rows_in,
                   "rows_scored": counts.scored, "rows_rejected": counts.rejected_rows,
                   "rejected": counts.rejected}
        # every row carries scored_at: an overwrite can never equal the current version
        written = lake.commit_files(output, files, schema, mode=mode, operation="SCORE",
                                    description=f"scores of {name}", extra=details,
                                    compare=False)
        project.ledger.commit("model.score", f"model:{name}@{model.version}",
                              {**details, "output": f"{output}@{written.version}",
                               "input": _describe(input)}, run=run)
    return ScoreResult(name, model.version, _describe(input), output, written.version, mode,
                       counts.rows_in, counts.scored, counts.rejected_rows, counts.rejected,
                       plan.features, run.id, time.perf_counter() - started, warnings)


# -- the input ---------------------------------------------------------------------------------


def _input_sql(lake: Any, input: str) -> str:
    """A lake table's name becomes ``SELECT *`` over it; anything else is SQL text."""
    text = input.strip() if isinstance(input, str) else ""
    if not text:
        raise UsageError("the input is empty: give SQL text or a lake table's name")
    if is_table_name(text):
        if lake.latest(text) is None:
            raise lake.missing(text)
        return f"SELECT * FROM {quote_ident(text)}"
    return text.rstrip().rstrip(";")


def _describe(input: str) -> str:
    text = " ".join(input.split())
    return text if len(text) <= 200 else text[:197] + "..."


def _run_sql(project: Any, sql: str, fn: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
    """Run ``fn`` on a connection with the lake tables ``sql`` reads bound; DuckDB's errors
    (their text names the line and column of the SQL) become a ``SqlError``."""
    from tarmac.lake.sql import connect

    try:
        con = connect(project.lake, sql)
    except SqlError as exc:  # a parse error or an unknown table, found while binding
        raise SqlError(f"the input SQL failed: {exc.message}", hint=exc.hint) from None
    try:
        return fn(con)
    except duckdb.Error as exc:
        raise _sql_error(exc) from None
    finally:
        con.close()


def _sql_error(exc: Exception) -> SqlError:
    return SqlError(f"the input SQL failed: {str(exc).strip()}",
                    hint="`tarmac sql` runs the same query so you can fix it there")


def _count(project: Any, sql: str) -> int:
    found = _run_sql(project, sql, lambda c: c.execute(
        f"SELECT count(*) FROM ({sql}) AS __input").fetchall())
    return int(found[0][0]) if found else 0


def _schema_of(project: Any, sql: str) -> pa.Schema:
    def schema(con: duckdb.DuckDBPyConnection) -> pa.Schema:
        # execute, not sql: DuckDB's binder errors then carry the line and a caret under the
        # token; its warning about an extra copy does not matter for zero rows
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            table: pa.Table = con.execute(
                f"SELECT * FROM ({sql}) AS __input LIMIT 0").to_arrow_table()
            return table.schema

    return _run_sql(project, sql, schema)


def _plan(project: Any, model: LoadedModel, sql: str, timestamp: str | None,
          scored_at: datetime) -> _Plan:
    """Where the model's inputs come from, checked before any row is read."""
    schema = _schema_of(project, sql)
    names = schema.names
    clash = [c for c in names if c in OUTPUTS]
    if clash:
        raise UsageError(f"the input has column(s) {', '.join(clash)}, which the output "
                         f"table adds ({', '.join(OUTPUTS)})",
                         hint="rename them in the SELECT (e.g. `version AS src_version`)")
    wanted = model.signature.input_names
    missing = [c for c in wanted if c not in names]
    who = f"{model.name} v{model.version}"
    if timestamp is not None and timestamp not in names:
        raise UsageError(f"the input has no column '{timestamp}' (timestamp=); its columns: "
                         f"{', '.join(names)}")
    if not missing:
        return _Plan(sql, [c for c in names if c not in wanted], "input", timestamp=timestamp)
    service = model.record.spec.get("features")
    keys = list(model.record.spec.get("keys") or [])
    if not service or not isinstance(service, str | list) or not keys:
        raise UsageError(
            f"the input lacks column(s) {', '.join(missing)}, input(s) of {who} (it takes "
            f"{', '.join(wanted)}); the input's columns: {', '.join(names)}",
            hint="select every signature column (`tarmac models show " + model.name + "`)")
    lacking = [k for k in keys if k not in names]
    if lacking:
        raise UsageError(
            f"the input lacks column {missing[0]!r}, an input of {who}, and the entity key(s) "
            f"{', '.join(lacking)} to fetch its features; its columns: {', '.join(names)}",
            hint=f"select the key column(s) {', '.join(keys)} (and a timestamp column for "
                 "point-in-time features), or every signature column")
    partial = [c for c in wanted if c in names]
    if partial:
        raise UsageError(
            f"the input has some inputs of {who} ({', '.join(partial)}) but lacks "
            f"{', '.join(missing)}: give every one of them, or none (then the feature store "
            f"fetches them by {', '.join(keys)})",
            hint=f"drop {', '.join(partial)} from the SELECT, or add {', '.join(missing)}")
    stamps = [f.name for f in schema if pa.types.is_timestamp(f.type)]
    if timestamp is None and len(stamps) > 1:
        raise UsageError(f"the input has several timestamp columns ({', '.join(stamps)}): say "
                         "which one the features are taken as of",
                         hint=f"timestamp='{stamps[0]}' (--timestamp {stamps[0]})")
    timestamp = timestamp or (stamps[0] if stamps else None)
    carried = [c for c in names if c not in wanted]
    if timestamp is None:  # the features as they are now: every row as of the scoring time
        stamp = scored_at.isoformat(sep=" ")
        sql = f"SELECT *, TIMESTAMPTZ '{stamp}' AS {AS_OF} FROM ({sql}) AS __input"
        where = "now"
    else:
        where = repr(timestamp)
    label = service if isinstance(service, str) else ", ".join(service)
    return _Plan(sql, [c for c in carried if c in names],
                 f"feature store: {label} as of {where}", service if isinstance(service, str)
                 else ",".join(service), timestamp or AS_OF)


def _training_set(project: Any, plan: _Plan) -> Any:
    service = plan.feature_service or ""
    features: str | list[str] = service if "," not in service else service.split(",")
    return project.features.training_set(plan.sql, features, timestamp=plan.timestamp)


def _input_schema(project: Any, model: LoadedModel, plan: _Plan) -> pa.Schema:
    """The schema of the rows read (checked here, inside the run, against the features the
    feature service gives today: a view may have changed since the version was trained)."""
    if plan.feature_service is not None:
        features = _training_set(project, plan).features
        lost = [c for c in model.signature.input_names if c not in features]
        if lost:
            raise UsageError(f"the feature service {plan.feature_service!r} no longer gives "
                             f"{', '.join(lost)}, an input of {model.name} v{model.version}",
                             hint="score with an input that carries the column(s), or retrain")
    return _schema_of(project, plan.sql)


def _reader(project: Any, model: LoadedModel, plan: _Plan,
            batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The input's rows with the model's inputs, batch by batch; a query that fails while it
    streams (a cast that breaks on row 3 million) is a ``SqlError`` like one that fails at once."""
    try:
        if plan.feature_service is not None:
            yield from _rebatch(_training_set(project, plan).batches(), batch_rows)
            return
        from tarmac.lake.sql import connect

        con = connect(project.lake, plan.sql)
        try:
            yield from con.sql(plan.sql).to_arrow_reader(batch_rows)
        finally:
            con.close()
    except (duckdb.Error, pa.ArrowInvalid) as exc:
        raise _sql_error(exc) from None


def _rebatch(reader: pa.RecordBatchReader, rows: int) -> Iterator[pa.RecordBatch]:
    for batch in reader:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


# -- scoring a batch -------------------------------------------------------------------------


class _Counts:
    def __init__(self) -> None:
        self.rows_in = 0
        self.scored = 0
        self.rejected: dict[str, int] = {}

    @property
    def rejected_rows(self) -> int:
        return sum(self.rejected.values())

    def check(self, written: int) -> None:
        if self.rows_in != self.scored + self.rejected_rows or written != self.rows_in:
            raise TarmacError(f"scoring counts do not reconcile: {self.rows_in:,} rows in, "
                              f"{self.scored:,} scored, {self.rejected_rows:,} rejected, "
                              f"{written:,} written; nothing was committed")


def _label_type(model: LoadedModel) -> pa.DataType | None:
    if model.task == "regression":
        return None
    classes = model.predictor.classes
    if classes:
        return pa.array(classes).type
    kind = dict(model.signature.outputs).get("prediction", "int64")
    return TYPES.get(kind, pa.string())


def _output_schema(model: LoadedModel, plan: _Plan, input_schema: pa.Schema) -> pa.Schema:
    fields = [input_schema.field(c) for c in plan.carried if c in input_schema.names]
    fields.append(pa.field("score", pa.float64()))
    label = _label_type(model)
    if label is not None:
        fields.append(pa.field("label", label))
    fields += [pa.field("model", pa.string()), pa.field("version", pa.int64()),
               pa.field("scored_at", pa.timestamp("us", tz="UTC")),
               pa.field("reject_reason", pa.string())]
    return pa.schema(fields)


def _score_batch(model: LoadedModel, plan: _Plan, batch: pa.RecordBatch, schema: pa.Schema,
                 scored_at: datetime, counts: _Counts) -> pa.Table:
    """One batch's output rows: carried columns, score (+ label), model, version, time."""
    n = batch.num_rows
    first = counts.rows_in
    counts.rows_in += n
    sig = model.signature
    try:
        frame = sig.frame(batch.select(sig.input_names).to_pandas())
    except UsageError as exc:
        raise UsageError(f"{model.name} v{model.version}, input rows {first:,} to "
                         f"{first + n - 1:,}: {exc.message}", hint=exc.hint) from None
    empty = sig.empty_rows(frame)
    keep = ~empty
    x = frame[keep] if empty.any() else frame
    score = np.full(n, np.nan)
    label: pa.Array | None = None
    label_type = schema.field("label").type if "label" in schema.names else None
    predictor = model.predictor
    try:
        if len(x):
            got_score, got_label = _predict(predictor, model.task, x)
            if got_score is not None:
                score[keep] = got_score
            if label_type is not None:
                label = _spread(got_label, keep, label_type)
    except TarmacError:
        raise
    except Exception as exc:
        raise TarmacError(f"{model.name} v{model.version} raised {type(exc).__name__} on input "
                          f"rows {first:,} to {first + n - 1:,}: {exc}") from exc
    rejected = int(empty.sum())
    counts.scored += n - rejected
    if rejected:
        counts.rejected[EMPTY_REASON] = counts.rejected.get(EMPTY_REASON, 0) + rejected
    columns: dict[str, pa.Array] = {c: batch.column(c) for c in plan.carried
                                    if c in schema.names}
    columns["score"] = pa.array(score, pa.float64(), from_pandas=True)
    if label_type is not None:
        columns["label"] = label if label is not None else pa.nulls(n, label_type)
    columns["model"] = pa.repeat(pa.scalar(model.name, pa.string()), n)
    columns["version"] = pa.repeat(pa.scalar(model.version, pa.int64()), n)
    columns["scored_at"] = pa.repeat(pa.scalar(scored_at, pa.timestamp("us", tz="UTC")), n)
    columns["reject_reason"] = (pa.nulls(n, pa.string()) if not rejected else
                                pa.array([EMPTY_REASON if e else None for e in empty], pa.string()))
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def _predict(predictor: Any, task: str, x: Any) -> tuple[np.ndarray | None, Any]:
    """(score, label) for the rows of ``x``: P(positive) for a binary classifier (its label by
    the 0.5 threshold), the top class's probability for multiclass, the value for regression;
    one call to the model where its probabilities give the label as well."""
    if task == "regression":
        values = predictor.predict(x)
        return values.astype(np.float64), None
    scores = predictor.scores(x)
    classes = predictor.classes
    if scores is None:
        return None, predictor.predict(x)
    if task == "binary":
        negative, positive = (classes[0], classes[-1]) if classes else (0, 1)
        pick = (scores >= 0.5).astype(np.int64)
        return scores, pa.array([negative, positive]).take(pa.array(pick))
    top = np.argmax(scores, axis=1)
    chosen = pa.array(classes).take(pa.array(top)) if classes else pa.array(top)
    return scores[np.arange(len(top)), top], chosen


def _spread(values: Any, keep: np.ndarray, kind: pa.DataType) -> pa.Array:
    """``values`` (one per kept row) placed at the kept rows of a column with nulls elsewhere."""
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(
        values, from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != kind:
        arr = arr.cast(kind)
    if keep.all():
        return arr
    index = np.cumsum(keep) - 1
    return arr.take(pa.array(index, mask=~keep))


__all__ = ["ScoreResult", "score"]
