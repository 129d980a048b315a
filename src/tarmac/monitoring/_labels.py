"""Late labels joined to the prediction log, and labels files loaded into the lake.

A label is joined **by prediction id** when the labels carry it (``id_column``, or a
``prediction_id`` column), else **by entity and time**: the latest prediction for that entity
(the same key in the prediction's ``request`` or ``features`` JSON, or a column of that name)
made at or before the label's observation time and no longer than ``delay`` before it. All of
the predictions answering that request row (a champion and its shadows) get the label.

The join runs in DuckDB over Arrow (a lake table is scanned as a dataset, never loaded whole
before the join), and nothing is dropped silently: labels whose key, time or value is null,
labels repeating a prediction already labelled (one is kept: the latest observed, then the last
given) and labels for no known prediction are counted in the ``LabelJoin``, and predictions
without a label yet stay in its table with a null ``actual``.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from tarmac.errors import UsageError
from tarmac.humanize import positive_duration
from tarmac.models.metrics import did_you_mean
from tarmac.monitoring._sources import _is_pandas

if TYPE_CHECKING:
    from tarmac.lake.lake import WriteResult
    from tarmac.project import Project

#: the column of a labels table that, when present, holds the prediction id
PREDICTION_ID = "prediction_id"
#: the lake table ``tarmac labels ingest`` appends to by default
LABELS_TABLE = "labels"
#: the prediction columns a join keeps (those the predictions have), then the label's
KEPT = ("id", "request_id", "time", "endpoint", "model", "version", "role", "score", "label",
        "features", "request")


@dataclass(frozen=True)
class LabelJoin:
    """The prediction log with its labels, and what happened to every label.

    ``table`` has one row per prediction: the prediction's columns (``label`` renamed
    ``predicted``: what the model answered), ``actual`` (the true label, null when none has
    arrived) and ``observed_at`` (the label's time, when given). The counts add up:
    ``labels == joined + duplicates + unknown + invalid``.

    Example::

        j = p.monitoring.join_labels("predictions", "labels", label_column="churned",
                                     entity="customer_id", timestamp="observed_at")
        j.joined, j.unknown, j.duplicates      # (9_412, 31, 4)
        j.table.column("actual")
    """

    table: pa.Table
    by: str  # "id" or "entity+time"
    delay: timedelta
    labels: int  # label rows given
    joined: int  # labels joined to a prediction
    duplicates: int  # labels for a prediction another label already labels (not joined)
    unknown: int  # labels for no known prediction (in ``delay``, for entity+time)
    invalid: int  # labels with a null key, time or value (not joined)
    predictions: int  # prediction rows
    labelled: int  # prediction rows with a label
    unlabelled: int  # prediction rows without a label yet

    def summary(self) -> dict[str, Any]:
        """The counts as a dict (for logs and JSON)."""
        return {"by": self.by, "delay_s": self.delay.total_seconds(), "labels": self.labels,
                "joined": self.joined, "duplicates": self.duplicates, "unknown": self.unknown,
                "invalid": self.invalid, "predictions": self.predictions,
                "labelled": self.labelled, "unlabelled": self.unlabelled}


def as_delay(delay: timedelta | str) -> timedelta:
    """``"30d"`` or a timedelta, checked to be positive."""
    return positive_duration(delay, "delay", "30d")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _relation(data: Any, what: str, project: Project | None,
              tables: Mapping[str, Any] | None) -> pa.Table | pads.Dataset | pa.RecordBatchReader:
    """``data`` as something DuckDB scans: an Arrow table, dataset or reader."""
    if isinstance(data, str):
        name = data.strip()
        if tables is not None and name in tables:
            return _relation(tables[name], what, None, None)
        if project is not None:
            from tarmac.lake.lake import is_table_name

            if is_table_name(name):
                if project.lake.latest(name) is None:
                    raise project.lake.missing(name)
                return project.lake.scan(name)
            return project.sql(data)
        if tables is not None:  # SQL over the tables given
            con = duckdb.connect()
            try:
                for key, value in tables.items():
                    con.register(key, _relation(value, key, None, None))
                return con.sql(data).to_arrow_table()
            except duckdb.Error as exc:
                raise UsageError(f"the {what} SQL failed: {exc}") from None
            finally:
                con.close()
        raise UsageError(f"the {what} {data[:60]!r} is text: a lake table name or SQL needs a "
                         "project", hint="use p.monitoring.join_labels(...) on an open project, "
                         "or pass Arrow tables")
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if _is_pandas(data):
        return pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, pa.Table | pads.Dataset | pa.RecordBatchReader):
        return data
    raise UsageError(f"cannot read the {what} from a {type(data).__name__}: pass an Arrow "
                     "table or dataset, a pandas DataFrame, SQL text or a lake table name")


def _need(schema: pa.Schema, column: str, what: str, option: str) -> None:
    if column not in schema.names:
        raise UsageError(f"{option} {column!r} is not a column of the {what} (columns: "
                         f"{', '.join(schema.names)}){did_you_mean(column, schema.names)}")


def join_labels(project_or_tables: Project | Mapping[str, Any] | None, predictions: Any,
                labels: Any, *, label_column: str, id_column: str | None = None,
                entity: str | None = None, timestamp: str | None = None,
                delay: timedelta | str = "30d", endpoint: str | None = None) -> LabelJoin:
    """Join ``labels`` to ``predictions``: by prediction id when the labels carry it, else by
    entity and time. Returns a ``LabelJoin`` (the joined table and what became of every label).

    ``predictions`` and ``labels`` may each be a lake table name or SQL (with a project), a
    name in ``project_or_tables`` when it is a mapping of names to tables, an Arrow table or
    dataset, or a pandas DataFrame. The predictions need ``id`` and ``time`` (the
    ``predictions`` table has both); ``endpoint`` keeps one endpoint's predictions.

    * ``id_column`` (default ``prediction_id`` when the labels have it): the prediction id.
    * else ``entity``: a column of the labels whose value is the same key in the prediction's
      ``request`` JSON, else its ``features`` JSON (or a prediction column of that name), and
      ``timestamp``: when the label was observed. The label goes to the latest prediction for
      that entity at or before ``timestamp`` and within ``delay`` of it.

    Example, by entity and time:

    >>> import pyarrow as pa
    >>> from datetime import datetime, UTC
    >>> from tarmac.monitoring import join_labels
    >>> t = lambda d: datetime(2026, 1, d, tzinfo=UTC)
    >>> preds = pa.table({"id": ["a", "b", "c"], "time": [t(1), t(5), t(2)],
    ...                   "score": [0.9, 0.2, 0.4],
    ...                   "request": ['{"cust": 7}', '{"cust": 7}', '{"cust": 8}']})
    >>> labels = pa.table({"cust": [7, 9], "churned": [1, 0], "seen": [t(4), t(4)]})
    >>> j = join_labels(None, preds, labels, label_column="churned", entity="cust",
    ...                 timestamp="seen")
    >>> j.joined, j.unknown, j.unlabelled
    (1, 1, 2)
    >>> j.table.sort_by("id").column("actual").to_pylist()
    [1, None, None]
    """
    project: Project | None = None
    tables: Mapping[str, Any] | None = None
    if isinstance(project_or_tables, Mapping):
        tables = project_or_tables
    elif project_or_tables is not None:
        project = project_or_tables
    wait = as_delay(delay)
    preds = _relation(predictions, "predictions", project, tables)
    lab = _relation(labels, "labels", project, tables)
    p_schema, l_schema = preds.schema, lab.schema
    for col in ("id", "time"):
        _need(p_schema, col, "predictions", "column")
    _need(l_schema, label_column, "labels", "label_column")
    if id_column is None and entity is None and PREDICTION_ID in l_schema.names:
        id_column = PREDICTION_ID
    if id_column is not None:
        _need(l_schema, id_column, "labels", "id_column")
        by = "id"
    elif entity is not None:
        _need(l_schema, entity, "labels", "entity")
        if timestamp is None:
            raise UsageError("a join by entity needs timestamp=: the labels' column saying when "
                             "each label was observed")
        by = "entity+time"
    else:
        raise UsageError(f"the labels need a way to find their prediction: id_column= (or a "
                         f"{PREDICTION_ID!r} column), or entity= and timestamp= (labels "
                         f"columns: {', '.join(l_schema.names)})")
    if timestamp is not None:
        _need(l_schema, timestamp, "labels", "timestamp")
    key = id_column if by == "id" else entity
    assert key is not None
    wanted = [c for c in dict.fromkeys([key, label_column, timestamp]) if c is not None]
    lab_table = (lab.to_table(columns=wanted) if isinstance(lab, pads.Dataset)
                 else lab.read_all().select(wanted) if isinstance(lab, pa.RecordBatchReader)
                 else lab.select(wanted))
    lab_table = lab_table.append_column("__row", pa.array(np.arange(lab_table.num_rows)))
    kept = [c for c in KEPT if c in p_schema.names]
    if by == "entity+time":
        assert entity is not None
        have = [c for c in ("request", "features") if c in p_schema.names]
        if entity in p_schema.names:
            pkey = f"CAST(p.{_q(entity)} AS VARCHAR)"
        elif have:
            path = "'$.\"" + entity.replace("'", "''").replace('"', '\\"') + "\"'"
            parts = [f"json_extract_string(p.{c}, {path})" for c in have]
            pkey = f"coalesce({', '.join(parts)})" if len(parts) > 1 else parts[0]
        else:
            raise UsageError(f"the predictions have no {entity!r} column and no request or "
                             "features JSON to read the entity from")
    con = duckdb.connect(config={"temp_directory": _temp(project)})
    try:
        # times without a zone are UTC, also where DuckDB has ICU and a local zone (without
        # ICU the setting is refused and DuckDB's zone is UTC already)
        with contextlib.suppress(duckdb.Error):
            con.execute("SET TimeZone = 'UTC'")
        con.register("preds_in", preds)
        con.register("labels_in", lab_table)
        where = ""
        if endpoint is not None:
            _need(p_schema, "endpoint", "predictions", "column")
            where = "WHERE endpoint = '" + endpoint.replace("'", "''") + "'"
        # the predictions are scanned where they are (a view), never copied whole
        con.execute(f"CREATE TEMP VIEW p AS SELECT * FROM preds_in {where}")
        select = ", ".join(f"p.{_q(c)}" if c != "label" else "p.label AS predicted"
                           for c in kept)
        ts = f"CAST(l.{_q(timestamp)} AS TIMESTAMPTZ)" if timestamp else "CAST(NULL AS TIMESTAMPTZ)"
        con.execute(f"""CREATE TEMP TABLE lv AS
            SELECT CAST(l.{_q(key)} AS VARCHAR) AS k, l.{_q(label_column)} AS actual,
                   {ts} AS observed_at, l.__row AS rn
            FROM labels_in l
            WHERE l.{_q(key)} IS NOT NULL AND l.{_q(label_column)} IS NOT NULL
              {"AND l." + _q(timestamp) + " IS NOT NULL" if timestamp else ""}""")
        total = lab_table.num_rows
        valid = _count(con, "SELECT count(*) FROM lv")
        if by == "id":
            con.execute("""CREATE TEMP TABLE kept AS SELECT k, actual, observed_at FROM lv
                           QUALIFY row_number() OVER (PARTITION BY k
                               ORDER BY observed_at DESC NULLS LAST, rn DESC) = 1""")
            distinct = _count(con, "SELECT count(*) FROM kept")
            joined = _count(con, "SELECT count(*) FROM kept SEMI JOIN p "
                                 "ON kept.k = CAST(p.id AS VARCHAR)")
            duplicates, unknown = valid - distinct, distinct - joined
        else:
            group = "coalesce(CAST(p.request_id AS VARCHAR), CAST(p.id AS VARCHAR))" if (
                "request_id" in p_schema.names) else "CAST(p.id AS VARCHAR)"
            # the narrow part of each prediction: its id, entity key, request and time
            con.execute(f"""CREATE TEMP TABLE pk AS SELECT CAST(p.id AS VARCHAR) AS id,
                            {pkey} AS k, {group} AS g, p.time FROM p""")
            wait_us = int(wait / timedelta(microseconds=1))
            con.execute(f"""CREATE TEMP TABLE matched AS
                WITH r AS (SELECT DISTINCT k, g, time FROM pk WHERE k IS NOT NULL),
                     m AS (SELECT lv.*, r.g AS g, r.time AS ptime
                           FROM lv ASOF LEFT JOIN r
                           ON lv.k = r.k AND lv.observed_at >= r.time)
                SELECT * FROM m WHERE g IS NOT NULL
                  AND ptime >= observed_at - to_microseconds({wait_us})""")
            found = _count(con, "SELECT count(*) FROM matched")
            con.execute("""CREATE TEMP TABLE by_group AS SELECT k, g, actual, observed_at
                           FROM matched QUALIFY row_number() OVER (PARTITION BY g, k
                               ORDER BY observed_at DESC, rn DESC) = 1""")
            joined = _count(con, "SELECT count(*) FROM by_group")
            duplicates, unknown = found - joined, valid - found
            # every prediction of that request row (a champion and its shadows): by its id
            con.execute("""CREATE TEMP TABLE kept AS
                           SELECT pk.id AS k, b.actual, b.observed_at
                           FROM pk JOIN by_group b ON pk.g = b.g AND pk.k = b.k""")
        out = con.sql(f"""SELECT {select}, kept.actual, kept.observed_at
                          FROM p LEFT JOIN kept ON CAST(p.id AS VARCHAR) = kept.k""")
        table = out.to_arrow_table()
    except duckdb.Error as exc:
        raise UsageError(f"joining the labels failed: {exc}") from None
    finally:
        con.close()
    table = _utc(table)
    labelled = table.num_rows - table.column("actual").null_count
    return LabelJoin(table=table, by=by, delay=wait, labels=total, joined=joined,
                     duplicates=duplicates, unknown=unknown, invalid=total - valid,
                     predictions=table.num_rows, labelled=labelled,
                     unlabelled=table.num_rows - labelled)


def _utc(table: pa.Table) -> pa.Table:
    """Time columns labelled UTC (DuckDB without ICU names its zone ``Etc/UTC``)."""
    fields = [f.with_type(pa.timestamp(f.type.unit, tz="UTC"))
              if pa.types.is_timestamp(f.type) and f.type.tz is not None else f
              for f in table.schema]
    return table.cast(pa.schema(fields))


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    rows = con.execute(sql).fetchall()
    return int(rows[0][0]) if rows else 0


def _temp(project: Project | None) -> str:
    """Where DuckDB spills a join bigger than memory."""
    if project is not None and project.root is not None:
        folder = Path(project.root) / ".tarmac" / "tmp"
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)
    return tempfile.gettempdir()


# -- loading labels files ----------------------------------------------------------------------


def read_labels_file(path: str | Path) -> pa.Table:
    """A CSV, JSON Lines or Parquet file as an Arrow table (by its extension)."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no labels file at {str(file)!r}")
    suffix = "".join(file.suffixes[-2:]).lower() if file.suffix == ".gz" else file.suffix.lower()
    try:
        if suffix in (".csv", ".csv.gz", ".tsv"):
            import pyarrow.csv as pcsv

            opts = pcsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
            return pcsv.read_csv(file, parse_options=opts)
        if suffix in (".jsonl", ".ndjson", ".json", ".jsonl.gz"):
            import pyarrow.json as pjson

            return pjson.read_json(file)
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(file)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UsageError(f"cannot read the labels file {str(file)!r}: {exc}") from None
    raise UsageError(f"labels file {str(file)!r}: unknown format {file.suffix!r}; expected "
                     ".csv, .tsv, .jsonl (or .ndjson/.json, one object a line) or .parquet")


def ingest_labels(project: Project, source: str | Path | pa.Table, *, label_column: str,
                  id_column: str | None = None, entity: str | None = None,
                  timestamp: str | None = None, table: str = LABELS_TABLE) -> WriteResult:
    """Append labels (a CSV/JSONL/Parquet file or an Arrow table) to the ``labels`` lake
    table through the lake's write path (a versioned, audited append). The labels must have
    ``label_column`` and either ``id_column`` (the prediction id) or ``entity`` (and, for a
    join by entity, ``timestamp``); a missing one is refused before anything is written.

    Example::

        p.monitoring.ingest_labels("outcomes.csv", label_column="churned",
                                   entity="customer_id", timestamp="observed_at")
    """
    data = source if isinstance(source, pa.Table) else read_labels_file(source)
    where = "the labels" if isinstance(source, pa.Table) else f"labels file {str(source)!r}"
    if id_column is None and entity is None:
        if PREDICTION_ID not in data.column_names:
            raise UsageError(f"{where} need an id column (the prediction id: --id-column, or a "
                             f"{PREDICTION_ID!r} column) or an entity column (--entity) to be "
                             f"joined to predictions (columns: {', '.join(data.column_names)})")
        id_column = PREDICTION_ID
    for option, column in (("label column", label_column), ("id column", id_column),
                           ("entity column", entity), ("timestamp column", timestamp)):
        if column is not None and column not in data.column_names:
            raise UsageError(f"{where} has no {option} {column!r} (columns: "
                             f"{', '.join(data.column_names)})"
                             f"{did_you_mean(column, data.column_names)}")
    if data.num_rows == 0:
        raise UsageError(f"{where} holds no labels (0 rows); nothing was written")
    return project.lake.write(table, data, mode="append",
                              extra={"labels": {"label_column": label_column,
                                                "id_column": id_column, "entity": entity,
                                                "timestamp": timestamp}})
