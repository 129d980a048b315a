"""Training sets: point-in-time-correct frames of features for an entity frame.

``training_set`` checks the entity frame against what the resolved features need and returns
a ``TrainingSet``, which computes nothing until read: ``retrieve`` then binds the views' lake
tables (pinned by ``as_of`` when asked), runs the point-in-time join of ``offline`` in DuckDB
and streams the result batch by batch through the on-demand functions (``_on_demand``), the
same code path the online read uses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tarmac.catalog import features as fcat
from tarmac.errors import UsageError
from tarmac.features import registry
from tarmac.features._on_demand import with_on_demand
from tarmac.features.definitions import SQL_TYPES, TYPES, FeatureView, SqlSource
from tarmac.features.offline import (
    BATCH_ROWS,
    ROW,
    Semantics,
    ViewQuery,
    check_entity_schema,
    fine_times,
    indexed,
    prepare_connection,
    q,
    retrieval_sql,
    tiebreak_columns,
)

if TYPE_CHECKING:
    import pandas as pd

    from tarmac.features._resolve import Resolved
    from tarmac.project import Project

EntityFrame = Any  # pandas.DataFrame | pa.Table | pa.RecordBatchReader | SQL text over the lake


class TrainingSet:
    """A point-in-time-correct training frame, computed when first read (streamed by DuckDB)."""

    def __init__(self, project: Project, resolved: Resolved, entities: EntityFrame,
                 entity_schema: pa.Schema, *, timestamp: str, label: str | None,
                 semantics: Semantics, as_of: Mapping[str, int] | None = None) -> None:
        self._project = project
        self.as_of = dict(as_of or {})
        self.resolved = resolved
        self._entities = entities
        self.entity_schema = entity_schema
        self.timestamp = timestamp
        self.label = label
        self.semantics = semantics
        self.inputs: dict[str, int] = {}  # lake table -> version read (once computed)
        self._table: pa.Table | None = None

    @property
    def features(self) -> list[str]:
        """The feature columns, in order (after the entity frame's own columns)."""
        return self.resolved.outputs

    def batches(self) -> pa.RecordBatchReader:
        """Stream the rows (a second call recomputes; ``to_arrow`` keeps the result)."""
        return retrieve(self._project, self)

    def to_arrow(self) -> pa.Table:
        """The whole frame as an Arrow table, computed once and kept."""
        if self._table is None:
            self._table = self.batches().read_all()
        return self._table

    def to_pandas(self) -> pd.DataFrame:
        """The whole frame as a pandas DataFrame."""
        return self.to_arrow().to_pandas()

    def save(self, name: str, *, description: str | None = None) -> int:
        """Store it as a lake table (lineage: source tables -> this table) and record that it
        consumes its features, so ``tarmac apply`` will not silently break it. Returns the
        table version written."""
        project = self._project
        params = {"features": self.resolved.name, "semantics": self.semantics,
                  "timestamp": self.timestamp, "label": self.label}
        with project.ledger.run(f"features.training_set:{name}", params=params) as run:
            data = self._table if self._table is not None else self.batches()
            for table, version in self.inputs.items():  # computed before the run, maybe
                run.add_input(table, version)
            result = project.lake.write(
                name, data, mode="overwrite", replace_schema=True,
                description=description or f"training set: {self.resolved.name} "
                                           f"({self.semantics} time) as of {self.timestamp}")
        refs = self.resolved.refs
        project.ledger.commit(
            "features.consume", f"training_set:{name}", {"refs": sorted(refs)},
            change=lambda conn: fcat.set_consumer(conn, f"training_set:{name}", refs))
        return result.version


def training_set(project: Project, resolved: Resolved, entities: EntityFrame, *,
                 timestamp: str | None, label: str | None, semantics: Semantics,
                 as_of: Mapping[str, int] | None) -> TrainingSet:
    """Check the entity frame against what ``resolved`` needs (join keys and their types, a
    timestamp, the label, request columns, no name clashes) and return the lazy training set:
    every bad input is refused here, before any data is read."""
    schema = _entity_schema(project, entities)
    if timestamp is None:
        stamps = [f.name for f in schema if pa.types.is_timestamp(f.type)]
        if len(stamps) != 1:
            raise UsageError(
                "say which column of the entity frame is its timestamp: "
                + ("it has none" if not stamps else f"it has {', '.join(stamps)}"),
                hint="training_set(..., timestamp='label_time')")
        timestamp = stamps[0]
    check_entity_schema(schema, timestamp, resolved.join_keys)
    if label is not None and label not in schema.names:
        raise UsageError(f"the label column '{label}' is not in the entity frame (its "
                         f"columns: {', '.join(schema.names)})")
    clash = sorted(set(resolved.outputs) & set(schema.names))
    if clash:
        raise UsageError(f"the entity frame already has column(s) {', '.join(clash)}, "
                         "which are also feature names",
                         hint="rename them, or select the features with a prefix")
    for part in resolved.parts:
        _check_keys(part.view, schema)
    missing = [f for f in resolved.request_fields if f not in schema.names]
    if missing:
        raise UsageError(f"on-demand features need request column(s) {', '.join(missing)} "
                         "in the entity frame")
    return TrainingSet(project, resolved, entities, schema, timestamp=timestamp, label=label,
                       semantics=semantics, as_of=as_of)


def _check_keys(view: FeatureView, schema: pa.Schema) -> None:
    """A join key typed int64 by its view cannot be matched with strings, nor vice versa."""
    kinds = getattr(view, "key_types", {})
    for key in view.join_keys:
        got = schema.field(key).type
        want = kinds.get(key)
        numeric = pa.types.is_integer(got)
        if (want == "int64" and not numeric) or (want == "string" and numeric):
            raise UsageError(f"entity frame column '{key}' holds {got} but feature view "
                             f"'{view.name}' keys it by {want}",
                             hint=f"cast the column, e.g. df['{key}'].astype(...)")


def retrieve(project: Project, ts: TrainingSet) -> pa.RecordBatchReader:
    """The training set's rows, streamed: the point-in-time join in DuckDB over the bound
    lake tables, then the on-demand functions batch by batch (``ts.inputs`` records the table
    versions read)."""
    from tarmac.lake.sql import connect, sql_error

    views = []
    for part in ts.resolved.parts:  # the source may have changed since apply
        v = part.view
        schema = registry.source_schema(project, v)
        registry.check_source(v, schema)
        relation = (f"({v.source.query})" if isinstance(v.source, SqlSource)
                    else q(v.source))
        views.append(ViewQuery(v.name, relation, v.join_keys, v.timestamp, v.created,
                               part.ttl_us,
                               [(f, o, SQL_TYPES[t]) for f, o, t in part.features],
                               fine=fine_times(schema, v.timestamp, v.created),
                               tiebreak=tiebreak_columns(v)))
    entity = "__entity"
    sql = retrieval_sql(entity, ts.entity_schema.names, ts.timestamp, views, ts.semantics,
                        fine=fine_times(ts.entity_schema, ts.timestamp))
    binding = sql  # what connect() binds: the views' lake tables, and the entity query's
    if isinstance(ts._entities, str):
        binding = sql.replace(entity, f"({ts._entities})", 1)
    ts.inputs = {}  # the version of each lake table read, as bound
    con = connect(project.lake, binding, bound=ts.inputs, as_of=ts.as_of or None)
    try:
        prepare_connection(con)
        if isinstance(ts._entities, str):  # SQL: numbered by DuckDB, in its own order
            con.execute(f"CREATE TEMP TABLE {entity} AS SELECT *, row_number() OVER () - 1 "
                        f"AS {ROW} FROM ({ts._entities})")
        else:
            con.register(entity, indexed(_entity_reader(ts._entities)))
        reader = con.sql(sql).to_arrow_reader(BATCH_ROWS)
    except Exception as exc:
        con.close()
        if isinstance(exc, UsageError):
            raise
        raise sql_error(project.lake, exc) from None
    hidden = {h for p in ts.resolved.parts for h in p.hidden}
    keep = [n for n in reader.schema.names if n not in hidden]
    demand = ts.resolved.demand

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in reader:
                if demand:
                    batch = with_on_demand(batch, demand)
                yield batch.select(keep + [o for d in demand for _, o, _ in d.features])
        finally:
            con.close()

    schema = reader.schema
    for d in demand:
        for _, out, typ in d.features:
            schema = schema.append(pa.field(out, TYPES[typ]))
    out_schema = pa.schema([schema.field(n) for n in
                            keep + [o for d in demand for _, o, _ in d.features]])
    return pa.RecordBatchReader.from_batches(out_schema, batches())

# -- materialization ---------------------------------------------------------------------


def _entity_schema(project: Project, entities: EntityFrame) -> pa.Schema:
    if isinstance(entities, str):
        from tarmac.lake.sql import query

        return query(project.lake, f"SELECT * FROM ({entities}) LIMIT 0").schema
    if isinstance(entities, pa.Table | pa.RecordBatchReader):
        return entities.schema
    import pandas as pd

    if isinstance(entities, pd.DataFrame):
        return pa.Schema.from_pandas(entities, preserve_index=False)
    raise UsageError(f"the entity frame must be a pandas or Arrow frame or SQL text, got "
                     f"{type(entities).__name__}")


def _entity_reader(entities: pa.Table | pa.RecordBatchReader | pd.DataFrame,
                   ) -> pa.Table | pa.RecordBatchReader:
    if isinstance(entities, pa.Table | pa.RecordBatchReader):
        return entities
    return pa.Table.from_pandas(entities, preserve_index=False)
